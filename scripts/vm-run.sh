#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot a Debian kernel line in a QEMU VM (L1) and run one command in it.
#
#	scripts/vm-run.sh LINE [options] -- CMD [ARGS...]
#	scripts/vm-run.sh LINE --shell
#
# The VM shares the host root read-only over 9p and runs CMD, as root, in a
# chroot of it: host paths work unchanged; /tmp, /run, /dev/shm are tmpfs.
# Before CMD it loads vhost_iotlb, vhost, brd, null_blk, dm-mod, the dm
# targets the tests use, configfs and build/<abi>/vhost_blk.ko.
#
# CMD's stdout and stderr go (merged, live) to our stdout.  The kernel
# console goes to a log file.  The exit status is CMD's, unless the VM
# itself failed:
#	124	timeout (the last console lines are printed)
#	125	the kernel printed BUG/WARNING/Oops/KFENCE/... (lines printed)
#	126	the VM stopped without CMD's exit status (panic, crash, ...)
#	1	any other runner failure
#
# Options:
#	--timeout SEC	kill the VM after SEC seconds (default 1800; 0: none)
#	--kfence	boot with kfence.sample_interval=1 (the default for the
#			lines in VHOST_BLK_KFENCE_LINES, default "6.12")
#	--no-kfence	boot without it
#	--log FILE	keep the console log in FILE (dmesg at the end in FILE.dmesg)
#	--out DIR	writable directory shared with the VM (default: temporary);
#			CMD sees it as $VHOST_BLK_OUT
#	--result FILE	write vm=ok|timeout|kernel-error|died|error, cmd_rc=N
#	--no-module	do not load vhost_blk.ko (runner development only)
#	--shell		interactive shell on the console instead of CMD
#	--verbose	copy the console to stderr while it runs
#	--append ARGS	extra kernel command line
#
# Environment: VHOST_BLK_ACCEL=tcg|kvm (default: probe once, cached),
# VHOST_BLK_TCG_THREAD=single|multi (TCG vCPU threads, default single),
# VHOST_BLK_TSC_KHZ (L1's TSC kHz under TCG, default the host's; off),
# VHOST_BLK_VM_MEM (MiB, default 3072), VHOST_BLK_VM_SMP (default 2),
# VHOST_BLK_QEMU (default: under TCG the test bed's QEMU, built once by
# scripts/qemu-build.sh --testbed; under KVM qemu-system-x86_64),
# VHOST_BLK_QEMU_ARGS (more options for it, split at blanks: the TCG
# plugins and -icount of scripts/bench/).
#
# CMD runs with VHOST_BLK_LINE, VHOST_BLK_ABI, VHOST_BLK_BUILD (repo/build/<abi>),
# VHOST_BLK_REPO, VHOST_BLK_KERNEL (the cached kernel dir), VHOST_BLK_MODROOT
# (use "modprobe -d $VHOST_BLK_MODROOT NAME" to load more modules),
# VHOST_BLK_OUT (writable, kept on the host) and VHOST_BLK_CACHE set, and
# every VHOST_BLK_* variable of the caller's environment.  In the VM, kvm_amd
# (or kvm_intel) is loaded when the virtual CPU supports it: L2 guests run
# under KVM there (scripts/guest/l2.sh).

set -euo pipefail

VB_PROG=vm-run
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Modules stage 1 (initramfs) loads to mount the host root.
STAGE1_MODS="virtio_pci 9pnet_virtio 9p"

QEMU=${VHOST_BLK_QEMU:-qemu-system-x86_64}
MEM=${VHOST_BLK_VM_MEM:-3072}
SMP=${VHOST_BLK_VM_SMP:-2}
P9OPTS="trans=virtio,version=9p2000.L,msize=262144,cache=loose"

usage()
{
	sed -n '4,52s/^#\t\{0,1\}//p' "$0" >&2
	exit 2
}

# Quote a string for a POSIX shell.
sq()
{
	printf "'%s'" "${1//\'/\'\\\'\'}"
}

# modorder MODDIR NAMES... - print the .ko paths (relative to MODDIR) to load
# NAMES with their dependencies, dependencies first.  Built-in ones are skipped.
modorder()
{
	local dir=$1
	shift
	awk -v want="$*" '
	function norm(p,  b) {
		b = p; sub(/.*\//, "", b); sub(/\.ko(\.[a-z]+)?:?$/, "", b)
		gsub(/-/, "_", b); return b
	}
	function visit(n,  k, a, i) {
		if (seen[n]++ || (n in builtin)) return
		if (!(n in path)) { print "no module " n > "/dev/stderr"; err = 1; return }
		k = split(deps[n], a, " ")
		for (i = k; i >= 1; i--) visit(a[i])
		print path[n]
	}
	FILENAME ~ /builtin$/ { builtin[norm($1)] = 1; next }
	{
		n = norm($1); p = $1; sub(/:$/, "", p); path[n] = p; deps[n] = ""
		for (i = 2; i <= NF; i++) deps[n] = deps[n] " " norm($i)
	}
	END {
		k = split(want, w, " ")
		for (i = 1; i <= k; i++) { x = w[i]; gsub(/-/, "_", x); visit(x) }
		exit err
	}' "$dir/modules.builtin" "$dir/modules.dep"
}

stage1_init()
{
	cat <<'EOF'
#!/bin/sh
# vhost-blk VM stage 1: mount the host root and the output share, then run
# the stage 2 script vm-run.sh wrote into the output share.
export PATH=/bin
fail()
{
	echo "vb-stage1: error: $*"
	reboot -f
}
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "vb-stage: stage1 $(cut -d' ' -f1 /proc/uptime)"
for m in $(cat /modules/order); do
	insmod "/modules/$m" || fail "insmod $m"
done
if grep -q 'vb\.probe' /proc/cmdline; then
	echo "vb-probe-ok"
	reboot -f
fi
mkdir -p /host /out
mount -t 9p -o "$(cat /modules/p9opts),ro" hostroot /host || fail "mount host root"
mount -t 9p -o "$(cat /modules/p9opts)" vbout /out || fail "mount output share"
[ -r /out/stage2.sh ] || fail "no /out/stage2.sh"
exec sh /out/stage2.sh
EOF
}

# build_initramfs KDIR ABI - print the path of the cached initramfs for ABI.
build_initramfs()
{
	local kdir=$1 abi=$2 moddir hash out tmp m mods

	moddir=$kdir/modules/lib/modules/$abi
	hash=$({ stage1_init; echo "$STAGE1_MODS $P9OPTS"; busybox | head -n1; } |
		md5sum | cut -c1-12)
	out=$VB_CACHE/vm/initramfs-$abi-$hash.cpio
	if [[ -s "$out" ]]; then
		echo "$out"
		return
	fi
	# shellcheck disable=SC2086 # a list of names
	mods=$(modorder "$moddir" $STAGE1_MODS) || vb_die "cannot resolve $STAGE1_MODS for $abi"
	tmp=$(mktemp -d)
	mkdir -p "$tmp"/{bin,dev,proc,sys,modules}
	cp "$(command -v busybox)" "$tmp/bin/busybox"
	for m in $("$tmp/bin/busybox" --list); do
		[[ "$m" = busybox ]] || ln -s busybox "$tmp/bin/$m"
	done
	: >"$tmp/modules/order"
	for m in $mods; do
		cp "$moddir/$m" "$tmp/modules/"
		basename "$m" >>"$tmp/modules/order"
	done
	echo "$P9OPTS" >"$tmp/modules/p9opts"
	stage1_init >"$tmp/init"
	chmod +x "$tmp/init"
	mkdir -p "$(dirname "$out")"
	(cd "$tmp" && find . | sort | cpio -o -H newc --quiet) >"$out.tmp"
	mv "$out.tmp" "$out"
	rm -rf "$tmp"
	echo "$out"
}

# stage2 - the script the VM runs after mounting the host root (busybox sh).
stage2()
{
	cat <<EOF
#!/bin/sh
# Generated by scripts/vm-run.sh.
R=/host
MODROOT=$(sq "$KDIR/modules")
MODULE=$(sq "$MODULE")
SHELL_MODE=$SHELL_MODE
KEEP=$(sq "$VB_REPO $VB_CACHE")
EOF
	cat <<'EOF'
stage() { echo "vb-stage: $1 $(cut -d' ' -f1 /proc/uptime)"; }
fail() { echo "vb-stage2: error: $*"; dmesg >/out/dmesg.txt; sync; reboot -f; }
stage stage2
# The repository and the cache may live under /tmp or /run on the host (a
# CI clone, say): keep them visible through the tmpfs mounted over those.
mkdir -p /hostview
mount -o bind $R /hostview || fail "bind the host root"
mount -t tmpfs -o mode=1777 tmp $R/tmp || fail "mount /tmp"
mount -t tmpfs -o mode=755 run $R/run || fail "mount /run"
for p in $KEEP; do
	case "$p" in
	/tmp/*|/run/*)
		mkdir -p "$R$p"
		mount -o bind "/hostview$p" "$R$p" || fail "bind $p"
		;;
	esac
done
mount -t devtmpfs dev $R/dev || fail "mount /dev"
mkdir -p $R/dev/pts $R/dev/shm
ln -sf /proc/self/fd $R/dev/fd
ln -sf /proc/self/fd/0 $R/dev/stdin
ln -sf /proc/self/fd/1 $R/dev/stdout
ln -sf /proc/self/fd/2 $R/dev/stderr
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $R/dev/pts
mount -t tmpfs -o mode=1777 shm $R/dev/shm
mount -t proc proc $R/proc || fail "mount /proc"
mount -t sysfs sys $R/sys || fail "mount /sys"
mkdir -p $R/run/vhost-blk
mount -o bind /out $R/run/vhost-blk || fail "bind the output share"
in_root() { chroot $R /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
in_root modprobe -d "$MODROOT" -a configfs vhost_iotlb vhost dm-mod dm-delay \
	dm-flakey dm-log-writes dm-zero || fail "modprobe"
in_root modprobe -d "$MODROOT" brd rd_nr=4 rd_size=131072 || fail "modprobe brd"
in_root modprobe -d "$MODROOT" null_blk nr_devices=0 || fail "modprobe null_blk"
# KVM for nested guests (L2): TCG's -cpu max emulates AMD SVM with nested
# paging, so kvm_amd loads; under a KVM L1 either may fit.  Not fatal: L2
# runners fall back to TCG when /dev/kvm does not work.
in_root modprobe -d "$MODROOT" kvm_amd 2>/dev/null ||
	in_root modprobe -d "$MODROOT" kvm_intel 2>/dev/null ||
	echo "vb-stage2: no kvm_amd/kvm_intel: L2 guests will use TCG"
mount -t configfs configfs $R/sys/kernel/config || fail "mount configfs"
mount -t tracefs tracefs $R/sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs $R/sys/kernel/debug 2>/dev/null
if [ -n "$MODULE" ]; then
	in_root insmod "$MODULE" || fail "insmod $MODULE"
fi
stage modules
if [ "$SHELL_MODE" = 1 ]; then
	in_root setsid -c /bin/bash /run/vhost-blk/cmd.sh </dev/ttyS0 >/dev/ttyS0 2>&1
else
	in_root /bin/bash /run/vhost-blk/cmd.sh </dev/null >>/out/output 2>&1
fi
echo $? >/out/rc.tmp
mv /out/rc.tmp /out/rc
stage command
dmesg >/out/dmesg.txt
sync
stage end
reboot -f
EOF
}

# cmd_script CMD... - the bash script run in the chroot (stdin/out set up).
cmd_script()
{
	local v

	echo '#!/bin/bash'
	echo '# Generated by scripts/vm-run.sh.'
	# The caller's VHOST_BLK_* knobs pass through; ours are set after them.
	for v in $(compgen -e | grep '^VHOST_BLK_' || true); do
		printf 'export %s=%q\n' "$v" "${!v}"
	done
	for v in HOME="$HOME" TERM="${TERM:-dumb}" LANG=C.UTF-8 \
		VHOST_BLK_LINE="$LINE" VHOST_BLK_ABI="$ABI" \
		VHOST_BLK_BUILD="$VB_REPO/build/$ABI" VHOST_BLK_REPO="$VB_REPO" \
		VHOST_BLK_KERNEL="$KDIR" VHOST_BLK_MODROOT="$KDIR/modules" \
		VHOST_BLK_CACHE="$VB_CACHE" VHOST_BLK_OUT=/run/vhost-blk \
		VHOST_BLK_IN_VM=1 VHOST_BLK_L2_KVM="$L2_KVM"; do
		printf 'export %q\n' "$v"
	done
	printf 'cd %q 2>/dev/null || cd /\n' "$PWD"
	if [[ "$SHELL_MODE" = 1 ]]; then
		[[ -n "$ROWS" ]] && printf 'stty rows %q cols %q\n' "$ROWS" "$COLS"
		echo 'echo "vhost-blk VM ($VHOST_BLK_ABI): modules loaded; exit or Ctrl-D powers off."'
		echo 'PS1="vm-$VHOST_BLK_LINE:\w# " exec /bin/bash --norc -i'
	else
		printf 'exec'
		printf ' %q' "${CMD[@]}"
		printf '\n'
	fi
}

# accel - print tcg or kvm.  KVM is used only when a stock kernel is seen to
# boot with it; the answer is cached per host kernel.
accel()
{
	local cache ans

	if [[ -n "${VHOST_BLK_ACCEL:-}" ]]; then
		echo "$VHOST_BLK_ACCEL"
		return
	fi
	if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
		echo tcg
		return
	fi
	cache=$VB_CACHE/vm/accel-$(uname -n)-$(uname -r)
	if [[ -r "$cache" ]]; then
		cat "$cache"
		return
	fi
	vb_log "probing KVM once (a stock kernel must boot with it within 30 s)"
	ans=tcg
	if timeout -k 5 30 "$QEMU" -M pc -accel kvm -cpu host -smp 1 -m 512 \
		-nodefaults -no-user-config -display none -no-reboot \
		-kernel "$KERNEL" -initrd "$INITRD" \
		-append "console=ttyS0 panic=-1 vb.probe=1" \
		-serial stdio </dev/null 2>/dev/null | grep -q vb-probe-ok; then
		ans=kvm
	fi
	vb_log "KVM probe: using $ans (cached in $cache)"
	mkdir -p "$(dirname "$cache")"
	echo "$ans" >"$cache"
	echo "$ans"
}

# Print the guest-side stage times from the console's vb-stage markers.
guest_times()
{
	awk '/^vb-stage: / {
		if (prev != "") printf "  %-14s %7.1fs\n", prev " -> " $2 ":", $3 - t
		else printf "  %-14s %7.1fs\n", "kernel boot:", $3
		prev = $2; t = $3
	}' "$CONSOLE" | sed 's/^/vm-run:   /' >&2
}

# Lines of the console log and the final dmesg that fail the run.
kernel_errors()
{
	vb_kernel_errors "$CONSOLE" "$OUT/dmesg.txt"
}

result()
{
	[[ -n "$RESULT" ]] || return 0
	printf 'vm=%s\ncmd_rc=%s\n' "$1" "$2" >"$RESULT"
}

main()
{
	local timeout=1800 kfence="" verbose=0 append="" nomod=0 t0 t1 qrc=0 rc errs
	local accel_opts qpid tpid cpid serial tsc_khz

	[[ $# -ge 1 ]] || usage
	LINE=$1
	shift
	LOG="" OUT="" RESULT="" SHELL_MODE=0 CMD=()
	while [[ $# -gt 0 ]]; do
		case "$1" in
		--timeout) timeout=$2; shift 2 ;;
		--kfence) kfence=1; shift ;;
		--no-kfence) kfence=0; shift ;;
		--log) LOG=$2; shift 2 ;;
		--out) OUT=$2; shift 2 ;;
		--result) RESULT=$2; shift 2 ;;
		--no-module) nomod=1; shift ;;
		--shell) SHELL_MODE=1; shift ;;
		--verbose) verbose=1; shift ;;
		--append) append="$append $2"; shift 2 ;;
		--) shift; CMD=("$@"); break ;;
		-h|--help) usage ;;
		*) vb_die "unknown option $1 (see --help)" ;;
		esac
	done
	[[ "$SHELL_MODE" = 1 || ${#CMD[@]} -gt 0 ]] || vb_die "no command given (-- CMD ...)"
	[[ -n "$RESULT" ]] && rm -f "$RESULT"

	vb_stage_begin "kernel $LINE"
	KDIR=$("$VB_REPO/scripts/kernel.sh" path "$LINE") || { result error -; exit 1; }
	ABI=$(basename "$KDIR")
	# The decompressed kernel boots ~7 s faster under TCG (PVH entry).
	KERNEL=$KDIR/vmlinux
	[[ -f "$KERNEL" ]] || KERNEL=$KDIR/vmlinuz
	MODULE=$VB_REPO/build/$ABI/vhost_blk.ko
	if [[ "$nomod" = 1 ]]; then
		MODULE=""
	elif [[ ! -f "$MODULE" ]]; then
		result error -
		vb_die "$MODULE is missing: run 'make module LINE=$LINE' first"
	fi
	vb_stage_begin "initramfs"
	INITRD=$(build_initramfs "$KDIR" "$ABI")

	TMPOUT=""
	if [[ -z "$OUT" ]]; then
		OUT=$(mktemp -d "${TMPDIR:-/tmp}/vhost-blk-vm.XXXXXX")
		TMPOUT=$OUT
	fi
	mkdir -p "$OUT"
	OUT=$(cd "$OUT" && pwd)
	rm -f "$OUT"/{rc,rc.tmp,output,dmesg.txt,stage2.sh,cmd.sh,qemu.log}
	CONSOLE=${LOG:-$OUT/console.log}
	mkdir -p "$(dirname "$CONSOLE")"
	: >"$CONSOLE"
	: >"$OUT/output"
	ROWS="" COLS=""
	if [[ "$SHELL_MODE" = 1 ]] && [[ -t 0 ]]; then
		read -r ROWS COLS < <(stty size 2>/dev/null) || true
	fi

	vb_stage_begin "accel"
	case "$(accel)" in
	kvm) accel_opts=(-accel kvm -cpu host) ;;
	# One TCG thread for all vCPUs by default: with multi-threaded TCG
	# the 6.12 guest sometimes executed a stale int3 after the kernel's
	# live text patching (static keys, ftrace) had completed on another
	# vCPU ("Oops: int3" in ttwu_do_activate, 2 of 4 runs of the stress
	# suite; 0 of 3 single-threaded, which was not slower on 2 cores).
	#
	# tsc_early_khz: TCG's TSC counts at the host's rate, but the kernel
	# calibrates it at boot, against the PIT and the HPET that QEMU's
	# starved threads tick late on a loaded host: in a make check whose
	# three VMs booted beside four benchmark VMs, 6.12 took the PIT's
	# value ("PIT calibration deviates from HPET: 496511 2594515"), its
	# clock ran 5x fast and the kselftests, the trace and stress suites
	# hit their timeouts.  So L1 is told the host's "cpu MHz"
	# (VHOST_BLK_TSC_KHZ overrides it; "off" calibrates).
	#
	# no_timer_check: at boot the kernel spins for a fixed number of TSC
	# cycles (tens of ms) and wants more than four timer ticks meanwhile;
	# QEMU raises them from its main loop thread, which on a loaded host
	# (five VMs booting at once beside a build) missed the window: 4 of
	# 5 VMs panicked, "IO-APIC + timer doesn't work!".  The timer works.
	#
	# tsc=reliable: TCG's TSC is one counter for all vCPUs, but with
	# -cpu max (AMD, no constant_tsc) the kernel marks it unstable at
	# boot and falls back to the HPET.  KVM in this VM then runs its
	# guests without a master clock ("SMP vm created on host with
	# unstable TSC"), and a 2-vCPU L2 guest under KVM lost timer
	# wake-ups: "rcu_sched kthread timer wakeup didn't happen" on an
	# idle vCPU, boots that did not finish in 40 s (8 of 9 runs; with
	# tsc=reliable 0 of 4: each booted in 8-14 s).
	*) accel_opts=(-accel "tcg,thread=${VHOST_BLK_TCG_THREAD:-single}" -cpu max)
	   append="$append tsc=reliable no_timer_check"
	   tsc_khz=${VHOST_BLK_TSC_KHZ:-$(awk -F: '/^cpu MHz/ { printf "%d", $2 * 1000; exit }' /proc/cpuinfo)}
	   [[ -z "$tsc_khz" || "$tsc_khz" = off ]] || append="$append tsc_early_khz=$tsc_khz" ;;
	esac
	# Under TCG the L1 VM runs its own guests on TCG's emulation of AMD
	# SVM; Debian's QEMU 7.2 delivers an injected interrupt twice there
	# (tests/qemu-testbed/), so L1 runs on the test bed's build of it.
	if [[ -z "${VHOST_BLK_QEMU:-}" && "${accel_opts[1]}" != kvm ]]; then
		vb_stage_begin "test bed QEMU"
		QEMU=$("$VB_REPO/scripts/qemu-build.sh" --testbed)/qemu-system-x86_64 ||
			{ result error -; vb_die "cannot build the test bed's QEMU (scripts/qemu-build.sh --testbed; VHOST_BLK_QEMU overrides)"; }
		# A build without blobs: the firmware of Debian's packages.
		accel_opts+=(-L /usr/share/qemu -L /usr/share/seabios)
	fi
	# L2 guests may use KVM in L1 (l2.sh's "auto") when L1's SVM is real
	# or the test bed's; not on another emulator's.
	L2_KVM=0
	[[ "${accel_opts[1]}" = kvm || -z "${VHOST_BLK_QEMU:-}" ]] && L2_KVM=1
	stage2 >"$OUT/stage2.sh"
	cmd_script >"$OUT/cmd.sh"
	if [[ -z "$kfence" ]]; then
		vb_kfence "$LINE" && kfence=1
	fi
	[[ "$kfence" = 1 ]] && append="$append kfence.sample_interval=1"
	if [[ "$SHELL_MODE" = 1 ]]; then
		serial=(-chardev "stdio,id=con,mux=on,signal=off,logfile=$CONSOLE"
			-serial chardev:con -mon chardev=con)
		append="$append loglevel=4"
		timeout=0
	else
		serial=(-serial "file:$CONSOLE")
		append="$append loglevel=7"
	fi

	vb_stage_begin "vm $LINE ($ABI, ${accel_opts[1]})"
	t0=$(vb_now)
	set -- "$QEMU" -M pc "${accel_opts[@]}" -smp "$SMP" -m "$MEM" \
		-nodefaults -no-user-config -display none -no-reboot \
		-kernel "$KERNEL" -initrd "$INITRD" \
		-append "console=ttyS0 panic=-1$append" \
		-virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" \
		-virtfs "local,path=$OUT,mount_tag=vbout,security_model=none,multidevs=remap" \
		"${serial[@]}"
	read -ra extra <<<"${VHOST_BLK_QEMU_ARGS:-}"
	set -- "$@" "${extra[@]}"
	if [[ "$SHELL_MODE" = 1 ]]; then
		"$@" 2>"$OUT/qemu.log" || qrc=$?
	else
		if [[ "$timeout" -gt 0 ]]; then
			set -- timeout -k 10 "$timeout" "$@"
		fi
		"$@" </dev/null 2>"$OUT/qemu.log" &
		qpid=$!
		tail -n +1 -F --pid="$qpid" "$OUT/output" 2>/dev/null &
		tpid=$!
		cpid=""
		if [[ "$verbose" = 1 ]]; then
			tail -n +1 -F --pid="$qpid" "$CONSOLE" >&2 2>/dev/null &
			cpid=$!
		fi
		wait "$qpid" || qrc=$?
		wait "$tpid" || true
		[[ -n "$cpid" ]] && { wait "$cpid" || true; }
	fi
	t1=$(vb_now)
	vb_stage_end
	[[ -f "$OUT/dmesg.txt" && -n "$LOG" ]] && cp "$OUT/dmesg.txt" "$LOG.dmesg"
	guest_times

	rc=$(cat "$OUT/rc" 2>/dev/null || echo "")
	errs=$(kernel_errors)
	if [[ "$qrc" -eq 124 || "$qrc" -eq 137 ]] && [[ "$SHELL_MODE" = 0 ]]; then
		vb_log "TIMEOUT: the VM did not finish within ${timeout}s; last console lines ($CONSOLE):"
		tail -n 40 "$CONSOLE" | sed 's/^/  | /' >&2
		[[ -n "$errs" ]] && { vb_log "kernel errors:"; printf '  ! %s\n' "$errs" >&2; }
		result timeout "${rc:--}"
		exit 124
	fi
	if [[ -n "$errs" ]]; then
		vb_log "FAIL: the kernel reported errors ($CONSOLE):"
		printf '%s\n' "$errs" | sed 's/^/  ! /' >&2
		vb_log "the first report in full (up to 30 lines):"
		tr -d '\r' <"$CONSOLE" | grep -E -A29 -m1 "$VB_KERNEL_ERROR_RE" | sed 's/^/  | /' >&2 || true
		result kernel-error "${rc:--}"
		exit 125
	fi
	if [[ -z "$rc" ]]; then
		vb_log "FAIL: the VM stopped without the command's exit status (QEMU status $qrc); last console lines ($CONSOLE):"
		tail -n 40 "$CONSOLE" | sed 's/^/  | /' >&2
		grep -v 'Multiple devices detected' "$OUT/qemu.log" | sed 's/^/  qemu: /' >&2 || true
		result died -
		exit 126
	fi
	vb_log "command exited with status $rc; VM ran $(vb_elapsed "$t0" "$t1")s"
	result ok "$rc"
	# A temporary output share is only kept when something went wrong.
	[[ -n "$TMPOUT" && "$rc" = 0 ]] && rm -rf "$TMPOUT"
	exit "$rc"
}

main "$@"
