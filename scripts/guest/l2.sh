#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot the tiny L2 guest once (inside the L1 VM, or anywhere QEMU runs) and
# run a list of guest-side steps in it.
#
#   scripts/guest/l2.sh --steps FILE --log FILE [--timeout SEC]
#                       [--tcg-timeout SEC] [--smp N] [--mem MB]
#                       [--reboot-ok] [--quiet] [--append KERNEL-ARGS]
#                       -- QEMU-ARGS...
#
# VHOST_BLK_L2_ACCEL picks the accelerator: auto (the default), kvm
# (-accel kvm -cpu host) or tcg; "l2: accel=kvm|tcg" on stderr says which
# ran.  auto is kvm when QEMU can create a KVM VM here, unless
# scripts/vm-run.sh says (VHOST_BLK_L2_KVM=0) that L1 runs on an emulator
# other than the test bed's: in the L1 VM kvm_amd runs on TCG's emulated
# SVM, which needs the test bed's fix (Documentation/testing.rst).  The
# guest boots with no-kvmapf (no asynchronous page faults; harmless under
# TCG); --append adds kernel parameters.  --timeout bounds a KVM run
# (default 300 s), --tcg-timeout a TCG one (default: 4 x --timeout;
# nested TCG is slow).
#
# QEMU-ARGS add the devices, e.g. -device vhost-blk-pci,backend=/dev/ram0.
# FILE is a shell fragment sourced by the guest's /init (helpers: ok, fail,
# check, show, log; see scripts/guest/init); it is appended to the cached
# initramfs as a second cpio archive.  The serial console goes to the log.
# The run ends when QEMU exits, or shortly after the guest printed L2-DONE
# (with --reboot-ok the guest may reboot in between; QEMU is then stopped
# with SIGTERM after L2-DONE).  Exit status: 0 after L2-DONE, 124 on
# timeout, 2 on bad usage, 3 when the guest panicked before L2-DONE (it
# reboots, and -no-reboot makes QEMU exit 0), else QEMU's.
# Timings go to stderr:
#   l2: accel=kvm booted in X s, done in Y s (exit N)
# (with --quiet: "booted at X s of its uptime", the guest's clock).
# --quiet: nothing runs in this machine while the guest does (for
# scripts/bench/, whose instruction counts would include it): no polling of
# the log, one sleeping watchdog for the timeout; the run ends when QEMU
# exits (the guest's /init powers off after its steps, -no-reboot) and
# the boot time is the guest's own (L2-BOOTED uptime).
# On a timeout, l2.sh first asks QEMU (on a monitor socket of its own) for
# the state of the stuck guest: LOG.diag gets "info cpus", the registers
# and local APIC of every vCPU and the virtqueues of every virtio device;
# stderr gets each vCPU's RIP, RFLAGS and halted state.
#
# Paths come from this checkout's build/l2.env (VB_L2_ENV, written by
# tests/prepare.d/50-qemu-guest.sh), else from $VB_CACHE/l2.env (written by
# scripts/demo.sh too), unless QEMU, GUEST_KERNEL, GUEST_INITRD are set.
set -euo pipefail

. "$(dirname "$0")/../lib.sh"
if [ -z "${QEMU:-}" ] || [ -z "${GUEST_KERNEL:-}" ] || [ -z "${GUEST_INITRD:-}" ]; then
	env=$VB_L2_ENV
	[ -r "$env" ] || env=$VB_CACHE/l2.env
	[ -r "$env" ] || {
		echo "l2: $VB_L2_ENV missing: run tests/prepare.d/50-qemu-guest.sh" >&2
		exit 2
	}
	. "$env"
fi

steps= log= timeout=300 tcg_timeout= smp=1 mem=256 reboot_ok=0 quiet=0 append=
while [ $# -gt 0 ]; do
	case $1 in
	--steps) steps=$2; shift 2 ;;
	--log) log=$2; shift 2 ;;
	--timeout) timeout=$2; shift 2 ;;
	--tcg-timeout) tcg_timeout=$2; shift 2 ;;
	--smp) smp=$2; shift 2 ;;
	--mem) mem=$2; shift 2 ;;
	--reboot-ok) reboot_ok=1; shift ;;
	--quiet) quiet=1; shift ;;
	--append) append=$2; shift 2 ;;
	--) shift; break ;;
	*) echo "l2: unknown option $1" >&2; exit 2 ;;
	esac
done
[ -n "$steps" ] && [ -n "$log" ] || { echo "l2: --steps and --log are required" >&2; exit 2; }

# diag SOCKET - the guest's vCPU and virtqueue state, from QEMU's monitor
diag() {
	PYTHONPATH=$(dirname "$0") timeout 60 python3 - "$1" "$smp" <<'PY'
import re, sys
import qmp
q = qmp.QMP(sys.argv[1], timeout=20, reply_timeout=20)
def hmp(line, show=True):
    out = q.cmd("human-monitor-command",
                **{"command-line": line}).get("return", "")
    if show:
        print("### " + line + "\n" + out)
    return out
hmp("info status")
hmp("info cpus")
hmp("info registers -a")
for cpu in range(int(sys.argv[2])):
    hmp("cpu %d" % cpu, False)
    hmp("info lapic")
for path in re.findall(r"^(/machine/\S+)", hmp("info virtio"), re.M):
    for vq in range(16):
        if "Invalid" in hmp("info virtio-queue-status %s %d" % (path, vq)):
            break
        hmp("info virtio-vhost-queue-status %s %d" % (path, vq))
PY
}

# kvm_works - QEMU can create a KVM VM here (a missing module, a /dev/kvm
# without SVM/VMX support or without permission all fail at once).
kvm_works() {
	[ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
	echo quit | timeout 30 "$QEMU" -M none -accel kvm -nodefaults -display none \
		-monitor stdio >/dev/null 2>&1
}

accel=${VHOST_BLK_L2_ACCEL:-auto}
case $accel in
kvm|tcg) ;;
auto) if [ "${VHOST_BLK_L2_KVM:-1}" = 1 ] && kvm_works; then accel=kvm; else accel=tcg; fi ;;
*) echo "l2: VHOST_BLK_L2_ACCEL must be tcg, kvm or auto, not '$accel'" >&2; exit 2 ;;
esac
if [ "$accel" = kvm ]; then
	accel_args=(-accel kvm -cpu host)
else
	accel_args=(-accel tcg -cpu max)
	timeout=${tcg_timeout:-$((4 * timeout))}
fi
echo "l2: accel=$accel (timeout ${timeout}s)" >&2

work=$(mktemp -d /tmp/l2.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/root"
install -m 0644 "$steps" "$work/root/steps.sh"
(cd "$work/root" && echo steps.sh | cpio -o -H newc --quiet -R 0:0 | gzip) >"$work/steps.cpio.gz"
cat "$GUEST_INITRD" "$work/steps.cpio.gz" >"$work/initrd"

args=(-M q35 "${accel_args[@]}" -smp "$smp" -m "$mem"
	-nodefaults -no-user-config -display none -monitor none
	-qmp "unix:$work/diag.sock,server=on,wait=off"
	-serial "file:$log"
	-L /usr/share/qemu -L /usr/share/seabios -bios qboot.rom
	-kernel "$GUEST_KERNEL" -initrd "$work/initrd"
	-append "console=ttyS0 reboot=t panic=-1 loglevel=4 no-kvmapf${append:+ $append}")
[ "$reboot_ok" = 1 ] || args+=(-no-reboot)

: >"$log"
t0=$(date +%s.%N)
"$QEMU" "${args[@]}" "$@" 2>"$work/qemu.err" &
qpid=$!
booted= done_at= rc=
# Say why the guest is stuck, then stop QEMU.
stuck() {
	echo "l2: timeout after ${timeout}s, killing QEMU (state: $log.diag)" >&2
	diag "$work/diag.sock" >"$log.diag" 2>&1
	awk '/^CPU#/ { c = $1 } /^RIP=/ { print "l2: " c, $1, $2, $(NF - 1), $NF }' \
		"$log.diag" >&2
	kill -TERM "$qpid" 2>/dev/null || true
	sleep 2
	kill -KILL "$qpid" 2>/dev/null || true
}
if [ "$quiet" = 1 ]; then
	(sleep "$timeout"; touch "$work/timeout"; stuck) &
	wpid=$!
	wait "$qpid" && rc=0 || rc=$?
	kill "$wpid" 2>/dev/null || true
	wait "$wpid" 2>/dev/null || true
	[ -e "$work/timeout" ] && rc=124
	booted=$(sed -n 's/^L2-BOOTED uptime=\([0-9.]*\).*/\1/p' "$log" | head -1)
fi
while [ "$quiet" = 0 ]; do
	now=$(date +%s.%N)
	el=$(awk -v a="$t0" -v b="$now" 'BEGIN { printf "%.1f", b - a }')
	if [ -z "$booted" ] && grep -q '^L2-BOOTED' "$log" 2>/dev/null; then
		booted=$el
	fi
	if ! kill -0 "$qpid" 2>/dev/null; then
		wait "$qpid" && rc=0 || rc=$?
		break
	fi
	if grep -q '^L2-DONE' "$log" 2>/dev/null; then
		[ -n "$done_at" ] || done_at=$el
		# give QEMU a moment to exit by itself (reboot -f + -no-reboot)
		if awk -v a="$done_at" -v b="$el" 'BEGIN { exit !(b - a > 5) }'; then
			kill -TERM "$qpid" 2>/dev/null || true
			wait "$qpid" || true
			rc=0
			break
		fi
	fi
	if awk -v e="$el" -v t="$timeout" 'BEGIN { exit !(e > t) }'; then
		stuck
		wait "$qpid" || true
		rc=124
		break
	fi
	sleep 0.3
done
end=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
if [ -s "$work/qemu.err" ]; then
	sed 's/^/qemu: /' "$work/qemu.err" >&2
	sed 's/^/qemu: /' "$work/qemu.err" >>"$log"
fi
if grep -q '^L2-DONE' "$log"; then
	[ "$rc" != 124 ] && rc=0
elif [ "$rc" = 0 ] && grep -aq 'Kernel panic - not syncing' "$log"; then
	echo "l2: the guest panicked (see $log)" >&2
	rc=3
fi
how="booted in ${booted:-?} s"
[ "$quiet" = 0 ] || how="booted at ${booted:-?} s of its uptime"
echo "l2: accel=$accel $how, done in $end s (exit $rc)" >&2
exit "$rc"
