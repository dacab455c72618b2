#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Inside the L1 VM of scripts/bench/trace-cost.sh (vm-run.sh, under the
# vbcount plugin): VHOST_BLK_TRACE_COST_REPS rounds of three vbreq runs,
# one per build/state of the vhost_blk trace events:
#   out  vhost_blk.ko built with -DNOTRACE (no tracepoint in it)
#   off  the normal module, events disabled (static keys off)
#   on   the normal module, all vhost_blk events enabled (ftrace buffer)
# A first run, "warm" (the normal module, events off), is not counted: the
# first run after boot costs more (background of the boot).
# Each run loads its module afresh and appends "RUN CFG REP BASE SIZE RC"
# to $VHOST_BLK_OUT/runs.txt (BASE, SIZE: the module's memory, from
# /proc/modules); vbreq executes exactly two markers per run, so run k
# (from 0) is the interval between markers 2k and 2k+1.
set -u
T=/sys/kernel/tracing
OUT=${VHOST_BLK_OUT:?}
REPS=${VHOST_BLK_TRACE_COST_REPS:-3}
N=${VHOST_BLK_TRACE_COST_REQUESTS:-2000}
VBREQ=${VHOST_BLK_TRACE_COST_TOOLS:?}/vbreq
declare -A KO=([out]=${VHOST_BLK_TRACE_COST_NOTRACE:?} [off]=$VHOST_BLK_BUILD/vhost_blk.ko
	[on]=$VHOST_BLK_BUILD/vhost_blk.ko [warm]=$VHOST_BLK_BUILD/vhost_blk.ko)

[ -d $T/events ] || mount -t tracefs nodev $T
: >"$OUT/runs.txt"
rc=0
for rep in $(seq 0 "$REPS"); do
	cfgs="out off on"
	[ "$rep" = 0 ] && cfgs=warm
	for cfg in $cfgs; do
		rmmod vhost_blk 2>/dev/null
		insmod "${KO[$cfg]}" || { echo "insmod ${KO[$cfg]} failed"; exit 1; }
		if [ "$cfg" = on ]; then
			: >$T/trace
			echo 1 >$T/events/vhost_blk/enable
			echo 1 >$T/tracing_on
		fi
		read -r base size < <(awk '$1 == "vhost_blk" { print $6, $2 }' /proc/modules)
		"$VBREQ" --dev /dev/ram0 --requests "$N"
		r=$?
		[ $r -eq 0 ] || rc=1
		if [ "$cfg" = on ]; then
			echo 0 >$T/events/vhost_blk/enable
			echo "# on: $(grep -c vhost_blk_req_done $T/trace) vhost_blk_req_done events in the buffer"
			: >$T/trace
		fi
		echo "RUN $cfg $rep $base $size $r" | tee -a "$OUT/runs.txt"
	done
done
rmmod vhost_blk
insmod "$VHOST_BLK_BUILD/vhost_blk.ko"
exit $rc
