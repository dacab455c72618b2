#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# 30-stress.sh - randomised completion/notification stress of vhost-blk, with
# the runtime stack figure, shorter runs on files (ext4, xfs; O_DIRECT and
# the page cache) and with read-only toggling, and a runtime check of what
# runs in the kick (eventfd wake-up) and bio completion paths.  Runs inside
# the VM (TAP).
#
#   VHOST_BLK_STRESS_SECONDS  stress duration (default 40)
#   VHOST_BLK_STRESS_FILE_SECONDS  duration of each file / read-only run
#                             (default 4)
#   VHOST_BLK_STRESS_SEED     seed (default: from the clock, printed)
#   VHOST_BLK_STRESS_TRACE    1: also measure with ftrace (parts 2 and 3);
#                             the default unless VHOST_BLK_TCG_THREAD=multi:
#                             enabling/disabling ftrace live-patches kernel
#                             text, and under QEMU 7.2's multi-threaded TCG
#                             that crashed the guest here ("Oops: int3" in
#                             hrtimer_cancel, 6.12); the VM runner's default
#                             is single-threaded TCG.
#   VHOST_BLK_STRESS_ONLY=stack  only the stress + stack measurement
# Writes $VHOST_BLK_OUT/stack-runtime.txt (deepest stack, vhost-blk frames
# marked) when VHOST_BLK_OUT is set.
set -u
. "$(dirname "$0")/../../scripts/lib.sh"
TOOL=$(vb_selftest_bin vblk_stress)
SECS=${VHOST_BLK_STRESS_SECONDS:-40}
SEED=${VHOST_BLK_STRESS_SEED:-$(( $(date +%s) % 100000 ))}
DEV=/dev/ram2
T=/sys/kernel/tracing
OUTDIR=${VHOST_BLK_OUT:-/tmp}
STACK_LIMIT=8192	# far below 8 KiB (x86_64 stacks are 16 KiB): Documentation/robustness.rst
FSDIR=/tmp/vblk-stress-fs
XFS_LOOP=
finish() { tap_done; exit $?; }
fs_cleanup() {
	umount "$FSDIR/ext4" "$FSDIR/xfs" 2>/dev/null
	[ -n "$XFS_LOOP" ] && losetup -d "$XFS_LOOP" 2>/dev/null
	rm -rf "$FSDIR"
}
trap fs_cleanup EXIT

# stress_case DESC SECONDS ARGS... - one vblk_stress run (seed $SEED, ARGS:
# --dev and options), one TAP case
stress_case()
{
	local desc=$1 secs=$2 log=/tmp/vblk_stress.log rc
	shift 2
	timeout $((secs + 240)) "$TOOL" --seed "$SEED" --seconds "$secs" "$@" >$log 2>&1
	rc=$?
	grep '^# \(vblk_stress\|requests\|statuses\|epochs\|backing\|read-only\)' $log
	if [ $rc -eq 0 ] && grep -q '^STRESS OK' $log; then
		ok "stress: $desc: every request completed once with the expected status and data ($(sed -n 's/^STRESS OK seed=[0-9]* //p' $log))"
	else
		[ $rc -eq 124 ] && echo "# the stress tool itself hung (timeout)"
		grep -v '^# epoch' $log | tail -40 | sed 's/^\([^#]\)/# \1/'
		notok "stress: $desc, seed $SEED (rc $rc): $(grep -m1 'FAIL' $log)"
	fi
}

if [ ! -x "$TOOL" ]; then
	notok "stress: $TOOL missing (tests/prepare.d/10-selftests.sh)"
	finish
fi
if [ ! -c /dev/vhost-blk ] || [ ! -b $DEV ]; then
	notok "stress: /dev/vhost-blk and $DEV present"
	finish
fi
[ -d $T/options ] || mount -t tracefs nodev $T 2>/dev/null

# ---- 1. stress under the ftrace stack tracer ----------------------------
# The stack tracer checks the stack depth at the entry of the functions in
# stack_trace_filter: vhost-blk's data-path functions, and below them the
# ram disk's (brd_*: only this test's I/O reaches /dev/ram2) and bio_endio.
# brd completes bios synchronously, so vhost-blk's end_io runs nested in
# the worker's submit_bio: the deepest vhost-blk case.  open/ioctl/release/
# detach (device setup from a syscall) are left out: data path only.  The vhost core's
# own entry points are left out on purpose: the deepest of them is the
# kick (eventfd_write from a syscall), where no vhost-blk code runs
# (checked in part 3).  The tool switches the tracer off before it reads
# the ram disk directly for its final check.
if [ "${VHOST_BLK_TCG_THREAD:-single}" = multi ]; then
	TRACE=${VHOST_BLK_STRESS_TRACE:-0}
else
	TRACE=${VHOST_BLK_STRESS_TRACE:-1}
fi
stack_on=0
if [ "$TRACE" = 1 ] && [ -w /proc/sys/kernel/stack_tracer_enabled ] && [ -e $T/stack_max_size ]; then
	echo 0 >/proc/sys/kernel/stack_tracer_enabled
	# the data path only (open/ioctl/release/detach are syscall-time setup)
	: >$T/stack_trace_filter
	for f in 'vhost_blk_handle_*' vhost_blk_dispatch vhost_blk_rw vhost_blk_dwz \
		 'vhost_blk_complete*' vhost_blk_bio_end_io vhost_blk_req_put \
		 'brd_*' bio_endio; do
		echo "$f" >>$T/stack_trace_filter 2>/dev/null
	done
	echo 0 >$T/stack_max_size
	echo 1 >/proc/sys/kernel/stack_tracer_enabled && stack_on=1
fi

echo "# stress: seed $SEED, $SECS s on $DEV (reproduce: VHOST_BLK_STRESS_SEED=$SEED)"
VHOST_BLK_STRESS_STACK_TRACER_OFF=1 stress_case "16 queues, ${SECS}s, seed $SEED" "$SECS" --dev $DEV
[ $stack_on = 1 ] && echo 0 >/proc/sys/kernel/stack_tracer_enabled

# ---- 2. the runtime stack figure ----------------------------------------
if [ $stack_on = 1 ]; then
	max=$(cat $T/stack_max_size)
	rep=$OUTDIR/stack-runtime.txt
	{
		echo "== runtime stack, $(uname -r): stack tracer maximum while vblk_stress ran"
		echo "stack_max_size=$max"
		echo "(frames marked '<== vhost-blk' are vhost_blk.ko's, 'vhost core' the vhost module's)"
		awk '/vhost_blk_/ {print $0 "   <== vhost-blk"; next}
		     /vhost_/ {print $0 "   <-- vhost core"; next} {print}' $T/stack_trace
	} >"$rep"
	sed 's/^/# /' "$rep"
	nvb=$(grep -c 'vhost_blk_.*<== vhost-blk$' "$rep")
	if [ "$max" -gt 0 ] && [ "$max" -lt $STACK_LIMIT ] && [ "$nvb" -gt 0 ]; then
		ok "stack: deepest stack through vhost-blk under stress is $max bytes (< $STACK_LIMIT), $nvb vhost-blk frames in it"
	elif [ "$nvb" -eq 0 ]; then
		notok "stack: the deepest traced stack has no vhost-blk frame (max $max): measurement void"
	else
		notok "stack: deepest stack through vhost-blk is $max bytes (>= $STACK_LIMIT)"
	fi
	echo 0 >$T/stack_max_size
	: >$T/stack_trace_filter
elif [ "$TRACE" = 1 ]; then
	notok "stack: runtime stack figure: no ftrace stack tracer in this kernel"
fi
[ "${VHOST_BLK_STRESS_ONLY:-}" = stack ] && finish

# ---- 3. files, read-only toggling ---------------------------------------
# The same traffic, shorter, where part 1 does not go: a 64 MiB file on
# ext4 (on /dev/ram3) and on xfs (on a loop device over a sparse file:
# xfs wants 300 MiB), each opened O_DIRECT and not (the page cache), and
# with SET_READONLY flipped every 0-2 ms by another thread (a write,
# discard or write-zeroes then lands whole or fails with IOERR and changes
# nothing; both must happen).
XSECS=${VHOST_BLK_STRESS_FILE_SECONDS:-4}
stress_case "brd, read-only toggling, ${XSECS}s" "$XSECS" --dev $DEV --ro-toggle
ext4=
[ -b /dev/ram3 ] && ext4=$(vb_fs_file ext4 /dev/ram3 "$FSDIR/ext4")
xfs=
if modprobe -d "${VHOST_BLK_MODROOT:-/}" loop 2>/dev/null && mkdir -p "$FSDIR" &&
   truncate -s 320M "$FSDIR/xfs.img" && XFS_LOOP=$(losetup -f --show "$FSDIR/xfs.img"); then
	xfs=$(vb_fs_file xfs "$XFS_LOOP" "$FSDIR/xfs")
fi
file_case() {	# FS FILE OPTIONS...
	local fs=$1 f=$2
	shift 2
	if [ -z "$f" ]; then
		notok "stress: file on $fs${*:+ $*}: no $fs file (see the messages above)"
		return
	fi
	stress_case "file on $fs${*:+ $*}, ${XSECS}s" "$XSECS" --dev "$f" "$@"
}
file_case ext4 "$ext4" --direct --ro-toggle
file_case ext4 "$ext4"
file_case xfs "$xfs" --direct
file_case xfs "$xfs" --ro-toggle
fs_cleanup

if [ "$TRACE" != 1 ]; then
	skip "stack: runtime stack figure and kick / end_io contexts" \
		"VHOST_BLK_STRESS_TRACE=$TRACE (ftrace off under multi-threaded TCG)"
	finish
fi

# ---- 4. what runs in the kick path and in bio completion -----------------
# function_graph below eventfd_write (the kick: the same wake-up KVM's
# ioeventfd does from the vCPU exit path) must show no vhost-blk function;
# below vhost_blk_bio_end_io nothing that sleeps, allocates, copies to guest
# memory or submits I/O.
graph_run()
{
	local root=$1 out=$2
	echo nop >$T/current_tracer
	echo 0 >$T/tracing_on
	: >$T/trace
	echo "$root" >$T/set_graph_function || return 1
	echo 0 >$T/options/funcgraph-irqs 2>/dev/null
	echo 8192 >$T/buffer_size_kb
	echo function_graph >$T/current_tracer || return 1
	echo 1 >$T/tracing_on
	timeout 120 "$TOOL" --dev $DEV --seed "$((SEED + 1))" --seconds 4 --no-detach >/dev/null 2>&1
	local rc=$?
	echo 0 >$T/tracing_on
	cat $T/trace >"$out"
	cp "$out" "$OUTDIR/" 2>/dev/null
	echo nop >$T/current_tracer
	: >$T/set_graph_function
	return $rc
}
if grep -qw function_graph $T/available_tracers 2>/dev/null; then
	g=/tmp/graph-kick.txt
	if graph_run eventfd_write $g; then
		calls=$(grep -c 'eventfd_write' $g)
		bad=$(grep -o 'vhost_blk_[a-z_0-9]*' $g | sort -u | tr '\n' ' ')
		wq=$(grep -c 'vhost_work_queue\|vhost_vq_work_queue\|vhost_poll_wakeup' $g)
		if [ "$calls" -gt 0 ] && [ -z "$bad" ]; then
			ok "context: the kick (eventfd_write, $calls traced) runs no vhost-blk code, only the vhost core's queueing ($wq queue/wakeup calls)"
		else
			notok "context: kick path: ${calls} eventfd_write traced, vhost-blk functions under it: ${bad:-none}"
			grep -B2 -A2 'vhost_blk_' $g | head -20 | sed 's/^/# /'
		fi
	else
		notok "context: function_graph run below eventfd_write failed"
	fi
	g=/tmp/graph-endio.txt
	if graph_run vhost_blk_bio_end_io $g; then
		calls=$(grep -c 'vhost_blk_bio_end_io' $g)
		# exact function names (preemption at a spin_unlock shows up as
		# preempt_schedule/__schedule: that is not end_io sleeping)
		deny='mutex_lock|mutex_lock_interruptible|mutex_lock_killable|down|down_read|down_write|__kmalloc|__kmalloc_noprof|kmalloc_trace|kmalloc_trace_noprof|__kmalloc_node|kmem_cache_alloc|kmem_cache_alloc_noprof|kmem_cache_alloc_lru|vmalloc|__vmalloc_node_range|alloc_pages|__alloc_pages|__alloc_pages_noprof|__get_free_pages|_copy_to_user|copy_to_user|__copy_to_user|_copy_to_iter|copy_page_to_iter|__put_user_1|schedule|msleep|submit_bio|submit_bio_noacct|bio_alloc_bioset|vhost_add_used|vhost_add_used_n|vhost_signal|eventfd_signal|set_page_dirty_lock|pin_user_pages_fast|get_user_pages_fast|iov_iter_get_pages2'
		bad=$(grep -oE "[ |]($deny)\(\)" $g | tr -d ' |()' | sort -u | tr '\n' ' ')
		if [ "$calls" -gt 0 ] && [ -z "$bad" ]; then
			ok "context: bio completion (vhost_blk_bio_end_io, $calls traced) only records and queues: $(grep -oE '[a-z_0-9]+\(\)' $g | sort -u | tr -d '()' | tr '\n' ' ' | cut -c1-200)"
		else
			notok "context: bio completion: $calls traced, forbidden calls under it: ${bad:-none}"
		fi
	else
		notok "context: function_graph run below vhost_blk_bio_end_io failed"
	fi
else
	notok "context: no function_graph tracer in this kernel"
fi
finish
