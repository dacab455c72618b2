#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The L1 half of `make bench` (runs inside the L1 VM via scripts/vm-run.sh,
# whose QEMU carries the vbcount plugin).  For every backing device and
# back end it runs the fio workloads, each bracketed by two markers
# (scripts/bench/vbmark) so that the plugin snapshots the instruction
# counts of the whole emulated machine exactly around the fio process:
#
#   native      fio (io_uring) in L1 on the device itself
#   vhost-blk   L2 guest (KVM) on -device vhost-blk-pci
#   vhost-blk-wpv  the same with worker-per-virtqueue=on (one vhost worker
#               per queue; 6.5+, VHOST_BLK_BENCH_BACKENDS asks for it)
#   iothread    L2 guest on virtio-blk-pci, iothread, aio=io_uring, cache=none
#   aio-native  L2 guest on virtio-blk-pci, aio=native, cache=none
#   vhost-user  L2 guest on vhost-user-blk-pci served by qemu-storage-daemon
#
# Each cell runs every repetition at two lengths (S and 3*S seconds) so that
# the fixed cost of a fio run cancels, and each session measures its idle
# rate (markers around a sleep) to take out the time-proportional
# background.  Everything lands in $VHOST_BLK_OUT: marks.txt (one label per
# marker, in execution order), fio JSON (native-*.json; in the L2 serial
# logs l2-*.log the L2-FIO lines: the JSON's read/write figures, which keeps
# the slow emulated serial port short), kallsyms, modules.  scripts/bench/analyze.py
# turns it into results.
#
# Knobs (environment, set by scripts/bench/bench.sh):
#   VHOST_BLK_BENCH_BACKENDS   default "native vhost-blk iothread aio-native vhost-user"
#   VHOST_BLK_BENCH_DEVICES    default "brd nullb file" (file: a raw image on
#                              ext4 on a RAM disk, the cost of a file backend)
#   VHOST_BLK_BENCH_WORKLOADS  NAME:RW:BS:QD ..., default the five of issue 10
#   VHOST_BLK_BENCH_QUEUES     default "1 4" (L2 vCPUs = queues = fio jobs)
#   VHOST_BLK_BENCH_SECONDS    short run length S, default 3
#   VHOST_BLK_BENCH_REPS       repetitions, default 3
#   VHOST_BLK_BENCH_IDLE       idle interval seconds, default S
#   VHOST_BLK_BENCH_TOOLS      dir with vbmark
#   VHOST_BLK_BENCH_L2_ENGINE  fio engine in L2 (default libaio)
#   VHOST_BLK_BENCH_FIO_EXTRA  more fio options for every run (default none)
#   VHOST_BLK_BENCH_VCPU_CPUS  L1 CPU list (taskset -c) for the L2 VMM: its
#                              vCPU and main threads (default: not pinned)
#   VHOST_BLK_BENCH_IO_CPUS    L1 CPU list for the I/O threads, pinned once
#                              the L2 guest has booted: vhost workers
#                              ("vhost-PID", kernel thread or VMM thread),
#                              the VMM's iothread ("IO io0"), the storage
#                              daemon (default: not pinned)
#   VHOST_BLK_BENCH_POLL       1: keep the spin-waits of production, KVM's
#                              halt polling in L1 and the QEMU iothreads'
#                              adaptive polling; default 0: both off
set -uo pipefail

REPO=${VHOST_BLK_REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
OUT=${VHOST_BLK_OUT:?run me through scripts/vm-run.sh}
BACKENDS=${VHOST_BLK_BENCH_BACKENDS:-native vhost-blk iothread aio-native vhost-user}
DEVICES=${VHOST_BLK_BENCH_DEVICES:-brd nullb file}
WORKLOADS=${VHOST_BLK_BENCH_WORKLOADS:-randread-qd1:randread:4k:1 randread-qd32:randread:4k:32 randwrite-qd1:randwrite:4k:1 randwrite-qd32:randwrite:4k:32 seqread-128k:read:128k:8}
QUEUES=${VHOST_BLK_BENCH_QUEUES:-1 4}
SECS=${VHOST_BLK_BENCH_SECONDS:-3}
REPS=${VHOST_BLK_BENCH_REPS:-3}
IDLE=${VHOST_BLK_BENCH_IDLE:-$SECS}
TOOLS=${VHOST_BLK_BENCH_TOOLS:?}
L2ENGINE=${VHOST_BLK_BENCH_L2_ENGINE:-libaio}
MARK=$TOOLS/vbmark
VCPU_CPUS=${VHOST_BLK_BENCH_VCPU_CPUS:-}
IO_CPUS=${VHOST_BLK_BENCH_IO_CPUS:-}
# on CPUS: the taskset prefix for CPUS (nothing for an empty list).
on() {
	[ -z "$1" ] || echo taskset -c "$1"
}
# pin_io PID: move the I/O threads of VMM PID to IO_CPUS.
pin_io() {
	local p=$1 t
	for t in $(pgrep -x "vhost-$p") /proc/"$p"/task/*; do
		t=${t##*/}
		case $(cat "/proc/$t/comm" 2>/dev/null) in
		vhost-* | "IO io0") taskset -pc "$IO_CPUS" "$t" >/dev/null ;;
		esac
	done
}
# The allowed CPUs of every thread of PID and of its vhost kernel threads.
where() {
	local t
	for t in $(pgrep -x "vhost-$1") /proc/"$1"/task/*; do
		t=${t##*/}
		printf '%s=%s ' "$(tr ' ' _ <"/proc/$t/comm")" "$(taskset -pc "$t" | sed 's/.*: //')"
	done
}
MARKS=$OUT/marks.txt
fail=0

say() { echo "bench[L1]: $*"; }

# mark LABEL: record the label and the time on this machine's clock (the
# guest's: what its timer ticks follow, also under -icount), then execute
# the marker instruction.
mark() {
	echo "$1 @$(date +%s.%N)" >>"$MARKS"
	"$MARK"
}

: >"$MARKS"
# One guest kernel, initramfs, QEMU and storage daemon for every session:
# the paths bench.sh wrote into the output dir (else the cache's l2.env,
# which other runs may rewrite; scripts/guest/l2.sh would read it).
L2ENV=$OUT/l2.env
[ -r "$L2ENV" ] || L2ENV=$VHOST_BLK_CACHE/l2.env
if [ -z "${GUEST_KERNEL:-}" ] && [ -r "$L2ENV" ]; then
	set -a
	# shellcheck disable=SC1090 # written by bench.sh
	. "$L2ENV"
	set +a
fi
QSD=${QSD:-}
echo "${QEMU:-} ${GUEST_KERNEL:-} ${GUEST_INITRD:-} $QSD" >"$OUT/l2-guest"
# The L2 guest under KVM (scripts/guest/l2.sh's knob; it falls back to
# TCG only when told so or when /dev/kvm does not work).
export VHOST_BLK_L2_ACCEL=${VHOST_BLK_L2_ACCEL:-kvm}
cat /proc/kallsyms >"$OUT/kallsyms"
cat /proc/modules >"$OUT/modules"
uname -r >"$OUT/l1-kernel"
modprobe -d "$VHOST_BLK_MODROOT" kvm_amd 2>/dev/null || true
[ -c /dev/kvm ] || say "warning: no /dev/kvm in L1 (is L1 running with -cpu max?)"
# A spin-wait executes instructions for as long as it waits: its count
# measures how fast the emulated CPU is, not the work of an I/O.  Without
# them every back end's cost is the work it does (Documentation/performance.rst).
POLL=${VHOST_BLK_BENCH_POLL:-0}
IOTHREAD=iothread,id=io0
if [ "$POLL" = 0 ]; then
	echo 0 >/sys/module/kvm/parameters/halt_poll_ns
	IOTHREAD=$IOTHREAD,poll-max-ns=0
fi
say "spin-waits: halt_poll_ns=$(cat /sys/module/kvm/parameters/halt_poll_ns), $IOTHREAD"
mark "start"

# Device setup.  brd: /dev/ram0 (vm-run.sh loads brd, 128 MiB).
# null_blk: configfs device nullb0, 1 GiB, irqmode=1 (softirq completion).
# file: a raw image file of 96 MiB, written in full, on ext4 on /dev/ram1
# (every back end opens it O_DIRECT).
FILE_IMG=/tmp/vbbench-fs/disk.raw
dev_path() {
	case $1 in
	brd) echo /dev/ram0 ;;
	nullb) echo /dev/nullb0 ;;
	file) echo "$FILE_IMG" ;;
	esac
}
# QEMU's block driver for the device: a file is not a host_device.
dev_driver() {
	[ "$1" = file ] && echo file || echo host_device
}
setup_file() {
	[ -f "$FILE_IMG" ] && return 0
	modprobe -d "$VHOST_BLK_MODROOT" ext4 2>/dev/null
	mkdir -p "${FILE_IMG%/*}" &&
		mkfs.ext4 -q -F /dev/ram1 &&
		mount /dev/ram1 "${FILE_IMG%/*}" &&
		dd if=/dev/zero of="$FILE_IMG" bs=1M count=96 oflag=direct status=none
}
setup_nullb() {
	local d=/sys/kernel/config/nullb/nullb0
	[ -b /dev/nullb0 ] && return 0
	mkdir -p "$d" || return 1
	echo 1024 >"$d/size"
	# 512-byte sectors like brd: every back end presents the same
	# logical block size (vhost-blk-pci refuses one below the device's).
	echo 512 >"$d/blocksize"
	echo 1 >"$d/irqmode"
	echo 0 >"$d/memory_backed"
	echo 2 >"$d/queue_mode"
	echo 4 >"$d/submit_queues"
	echo 1 >"$d/power"
	udevadm settle 2>/dev/null
	for _ in $(seq 50); do [ -b /dev/nullb0 ] && return 0; sleep 0.1; done
	return 1
}

# fio options for workload spec NAME:RW:BS:QD, runtime SEC, JOBS jobs.
fio_args() {
	local spec=$1 sec=$2 jobs=$3 rw bs qd
	IFS=: read -r _ rw bs qd <<<"$spec"
	echo "--name=bench --rw=$rw --bs=$bs --iodepth=$qd --numjobs=$jobs" \
		"--group_reporting --direct=1 --time_based --runtime=$sec" \
		"--norandommap --randrepeat=0 --output-format=json ${VHOST_BLK_BENCH_FIO_EXTRA:-}"
}

run_native() {
	local dev=$1 q=$2 spec name r len path
	path=$(dev_path "$dev")
	for i in $(seq "$REPS"); do
		mark "idle native/$dev/q$q/i$i begin"
		sleep "$IDLE"
		mark "idle native/$dev/q$q/i$i end"
	done
	for spec in $WORKLOADS; do
		name=${spec%%:*}
		# shellcheck disable=SC2046 # word lists
		fio $(fio_args "$spec" 1 "$q") --ioengine=io_uring --filename="$path" \
			--output=/dev/null >/dev/null 2>&1
		for r in $(seq "$REPS"); do
			for len in "$SECS" $((SECS * 3)); do
				local tag="native/$dev/$name/q$q/r$r/s$len"
				mark "run $tag begin"
				# shellcheck disable=SC2046 # word lists
				fio $(fio_args "$spec" "$len" "$q") --ioengine=io_uring \
					--filename="$path" \
					--output="$OUT/native-$dev-$name-q$q-r$r-s$len.json" \
					>/dev/null 2>"$OUT/native.err"
				local rc=$?
				mark "run $tag end"
				[ $rc -eq 0 ] || { say "fio failed: $tag"; cat "$OUT/native.err"; fail=1; }
			done
		done
	done
}

# QEMU arguments of an L2 back end on device DEV (at PATH) with Q queues.
backend_args() {
	local be=$1 path=$2 q=$3 drv
	drv=$(dev_driver "$4")
	case $be in
	vhost-blk)
		echo "-device vhost-blk-pci,backend=$path,num-queues=$q" ;;
	vhost-blk-wpv)
		echo "-device vhost-blk-pci,backend=$path,num-queues=$q,worker-per-virtqueue=on" ;;
	iothread)
		# QEMU names its threads (the iothread "IO io0") only with
		# debug-threads=on: pin_io needs the name.
		[ -z "$IO_CPUS" ] || echo "-name l2,debug-threads=on"
		echo "-object $IOTHREAD" \
			"-blockdev node-name=d0,driver=$drv,filename=$path,cache.direct=on,aio=io_uring" \
			"-device virtio-blk-pci,drive=d0,iothread=io0,num-queues=$q" ;;
	aio-native)
		echo "-blockdev node-name=d0,driver=$drv,filename=$path,cache.direct=on,aio=native" \
			"-device virtio-blk-pci,drive=d0,num-queues=$q" ;;
	vhost-user)
		echo "-object memory-backend-memfd,id=mem0,size=${L2MEM}M,share=on" \
			"-machine memory-backend=mem0" \
			"-chardev socket,id=vub0,path=/tmp/vub.sock" \
			"-device vhost-user-blk-pci,chardev=vub0,num-queues=$q" ;;
	esac
}

# The L2 guest's steps: write vbmark, then for each workload and
# repetition the two lengths, each between markers, fio's JSON on serial.
l2_steps() {
	local tag=$1 q=$2 spec name r len esc
	esc=$(od -An -v -to1 "$MARK" | tr -s ' \n' ' ' | sed 's/ *$//; s/^ *//; s/ /\\/g; s/^/\\/')
	cat <<EOF
printf '$esc' >/bin/vbmark
chmod +x /bin/vbmark
mark() { echo "L2-MARK \$1 @\$(cut -d' ' -f1 /proc/uptime)"; /bin/vbmark; }
log "disk: \$(cat /sys/block/vda/size) sectors, \$(ls /sys/block/vda/mq | wc -l) queues, \$(nproc) cpus"
# L1 copies the VMM's maps right after the boot: not inside a measurement.
sleep 3
for i in \$(seq $REPS); do
	mark "idle $tag/q$q/i\$i begin"
	sleep $IDLE
	mark "idle $tag/q$q/i\$i end"
done
EOF
	for spec in $WORKLOADS; do
		name=${spec%%:*}
		# A first, unmeasured run: the first one in a fresh guest pays
		# its page faults (nested paging) on top.
		echo "fio $(fio_args "$spec" 1 "$q") --ioengine=$L2ENGINE --filename=/dev/vda --output=/dev/null >/dev/null 2>&1"
		for r in $(seq "$REPS"); do
			for len in "$SECS" $((SECS * 3)); do
				local id="$tag/$name/q$q/r$r/s$len"
				cat <<EOF
mark "run $id begin"
fio $(fio_args "$spec" "$len" "$q") --ioengine=$L2ENGINE --filename=/dev/vda --output=/tmp/o.json >/tmp/fio.err 2>&1
rc=\$?
mark "run $id end"
if [ \$rc -eq 0 ]; then grep -E '^ *"(read|write|trim|sync|total_ios|iops|50.000000|99.000000)" :' /tmp/o.json | sed 's|^ *|L2-FIO $id |'; ok "$id"; else fail "$id"; sed 's/^/L2-LOG /' /tmp/fio.err; fi
EOF
			done
		done
	done
}

# The vhost-user-blk back end: qemu-storage-daemon (from the same pinned
# QEMU build) exports DEV at PATH with Q queues on /tmp/vub.sock, its
# requests in its main loop (no iothread: no polling) with io_uring on
# O_DIRECT like the iothread back end.  Sets QSD_PID; fails if the
# daemon exits or its socket does not appear within 30 s.
start_qsd() {
	local dev=$1 path=$2 q=$3
	rm -f /tmp/vub.sock
	[ -x "$QSD" ] || { echo "no qemu-storage-daemon ('$QSD')" >"$OUT/qsd-$dev-q$q.log"; return 1; }
	# shellcheck disable=SC2046 # the taskset prefix
	$(on "$IO_CPUS") "$QSD" \
		--blockdev "driver=$(dev_driver "$dev"),node-name=d0,filename=$path,cache.direct=on,aio=io_uring" \
		--export "type=vhost-user-blk,id=e0,node-name=d0,addr.type=unix,addr.path=/tmp/vub.sock,writable=on,num-queues=$q" \
		>"$OUT/qsd-$dev-q$q.log" 2>&1 &
	QSD_PID=$!
	for _ in $(seq 300); do
		[ -S /tmp/vub.sock ] && return 0
		kill -0 "$QSD_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill "$QSD_PID" 2>/dev/null
	wait "$QSD_PID" 2>/dev/null
	return 1
}

run_l2() {
	local be=$1 dev=$2 q=$3 path tag log steps want got qsd=
	path=$(dev_path "$dev")
	tag="$be/$dev"
	log=$OUT/l2-$be-$dev-q$q.log
	steps=$OUT/steps-$be-$dev-q$q.sh
	L2MEM=$((256 + 64 * q))
	l2_steps "$tag" "$q" >"$steps"
	if [ "$be" = vhost-user ]; then
		start_qsd "$dev" "$path" "$q" || {
			say "L2 session $be/$dev/q$q not run: qemu-storage-daemon did not start"
			sed 's/^/  qsd: /' "$OUT/qsd-$dev-q$q.log"
			fail=1
			return
		}
		qsd=$QSD_PID
	fi
	say "L2 on $be ($dev, $q queue(s)): $(echo "$WORKLOADS" | wc -w) workloads x $REPS x (${SECS}+$((SECS * 3)))s"
	# shellcheck disable=SC2046 # word lists
	$(on "$VCPU_CPUS") "$REPO/scripts/guest/l2.sh" --quiet --steps "$steps" --log "$log" \
		--timeout "${VHOST_BLK_BENCH_L2_TIMEOUT:-1800}" --smp "$q" --mem "$L2MEM" -- \
		$(backend_args "$be" "$path" "$q" "$dev") 2>"$log.err" &
	local l2pid=$! rc
	# The user-space maps of the VMM (and daemon), for the profile.
	for _ in $(seq 600); do
		grep -aq '^L2-BOOTED' "$log" 2>/dev/null && break
		kill -0 "$l2pid" 2>/dev/null || break
		sleep 0.2
	done
	for p in $(pgrep -P "$l2pid") $qsd; do
		cat "/proc/$p/maps" >"$OUT/maps-$be-$dev-q$q-$p" 2>/dev/null
		[ -z "$IO_CPUS" ] || pin_io "$p"
		[ -z "$VCPU_CPUS$IO_CPUS" ] || say "threads on CPUs: $(where "$p")"
	done
	wait "$l2pid"
	rc=$?
	sed 's/^/  /' "$log.err"
	[ -n "$qsd" ] && { kill "$qsd" 2>/dev/null; wait "$qsd" 2>/dev/null; }
	# The guest's markers, in order, into the global list.
	grep -a '^L2-MARK ' "$log" | tr -d '\r' | sed 's/^L2-MARK //' >>"$MARKS"
	mark "sync $be/$dev/q$q"
	# Every fio run of the session reports ok or not ok: a guest that
	# ended early (QEMU exiting with status 0 after the first workload
	# was seen once) leaves runs that report nothing.
	want=$(($(echo "$WORKLOADS" | wc -w) * REPS * 2))
	got=$(grep -ac "^L2-RESULT ok $tag/" "$log")
	if [ $rc -ne 0 ] || grep -aq '^L2-RESULT not ok' "$log"; then
		say "L2 session $be/$dev/q$q failed (exit $rc)"
		grep -a '^L2-RESULT not ok\|^L2-LOG' "$log" | head -20
		fail=1
	elif [ "$got" -ne "$want" ]; then
		say "L2 session $be/$dev/q$q ended early: $got of $want fio runs reported ok (exit $rc)"
		tail -5 "$log" | sed 's/^/  /'
		fail=1
	fi
}

for dev in $DEVICES; do
	case $dev in
	nullb) setup_nullb || { say "cannot create null_blk nullb0"; fail=1; continue; } ;;
	brd) [ -b /dev/ram0 ] || { say "no /dev/ram0"; fail=1; continue; } ;;
	file) setup_file || { say "cannot make $FILE_IMG on /dev/ram1"; fail=1; continue; } ;;
	*) say "unknown device $dev"; fail=1; continue ;;
	esac
	for q in $QUEUES; do
		for be in $BACKENDS; do
			case $be in
			native) say "native fio on $dev, $q job(s)"; run_native "$dev" "$q" ;;
			vhost-blk|vhost-blk-wpv|iothread|aio-native|vhost-user) run_l2 "$be" "$dev" "$q" ;;
			*) say "unknown back end $be"; fail=1 ;;
			esac
		done
	done
done
mark "stop"
say "done ($(wc -l <"$MARKS") markers)"
exit $fail
