#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Inside the L1 VM of scripts/bench/req-cost.sh and trace-cost.sh (vm-run.sh,
# under the vbcount plugin): VHOST_BLK_COST_REPS rounds of one vbreq run per
# configuration, in the order of
#   VHOST_BLK_COST_CFGS  "NAME=KO[+trace] ...": the module each configuration
#                        loads, "+trace": with every vhost_blk trace event
#                        enabled (into the ftrace buffer)
# A first run, "warm" (the first configuration), is not counted: the first
# run after boot costs more (background of the boot).
# Each run loads its module afresh, runs
#   vbreq --dev /dev/ram0 --requests VHOST_BLK_COST_REQUESTS $VHOST_BLK_COST_VBREQ
# and appends "RUN CFG REP BASE SIZE RC MOD:BASE:SIZE..." to
# $VHOST_BLK_OUT/runs.txt (BASE, SIZE: vhost_blk's memory, from
# /proc/modules; then the same for vhost and vhost_iotlb); vbreq executes
# exactly two markers per run, so run k (from 0) is the interval between
# markers 2k and 2k+1.  Symbols for scripts/bench/req-cost.py --profile:
# $VHOST_BLK_OUT/kallsyms (at the end) and syms-CFG (the module's base and
# its symbols at the configuration's first load).
set -u
T=/sys/kernel/tracing
OUT=${VHOST_BLK_OUT:?}
REPS=${VHOST_BLK_COST_REPS:-3}
N=${VHOST_BLK_COST_REQUESTS:-2000}
VBREQ=${VHOST_BLK_COST_TOOLS:?}/vbreq
read -ra VBREQ_ARGS <<<"${VHOST_BLK_COST_VBREQ:-}"
declare -A KO TRACE
CFGS=()
for spec in ${VHOST_BLK_COST_CFGS:?}; do
	cfg=${spec%%=*} ko=${spec#*=}
	CFGS+=("$cfg")
	TRACE[$cfg]=0
	[ "${ko%+trace}" = "$ko" ] || TRACE[$cfg]=1
	KO[$cfg]=${ko%+trace}
done
KO[warm]=${KO[${CFGS[0]}]} TRACE[warm]=0

# "NAME:BASE:SIZE" of a loaded module ("NAME:0:0" when it is not loaded).
range()
{
	awk -v m="$1" '$1 == m { r = m ":" $6 ":" $2 } END { print r ? r : m ":0:0" }' /proc/modules
}

[ -d $T/events ] || mount -t tracefs nodev $T
: >"$OUT/runs.txt"
rc=0
for rep in $(seq 0 "$REPS"); do
	cfgs=("${CFGS[@]}")
	[ "$rep" = 0 ] && cfgs=(warm)
	for cfg in "${cfgs[@]}"; do
		rmmod vhost_blk 2>/dev/null
		insmod "${KO[$cfg]}" || { echo "insmod ${KO[$cfg]} failed"; exit 1; }
		if [ "${TRACE[$cfg]}" = 1 ]; then
			: >$T/trace
			echo 1 >$T/events/vhost_blk/enable
			echo 1 >$T/tracing_on
		fi
		read -r base size < <(awk '$1 == "vhost_blk" { print $6, $2 }' /proc/modules)
		if [ ! -e "$OUT/syms-$cfg" ]; then
			{ echo "$base 0 base"; grep '\[vhost_blk\]$' /proc/kallsyms; } >"$OUT/syms-$cfg"
		fi
		"$VBREQ" --dev /dev/ram0 --requests "$N" "${VBREQ_ARGS[@]}"
		r=$?
		[ $r -eq 0 ] || rc=1
		if [ "${TRACE[$cfg]}" = 1 ]; then
			echo 0 >$T/events/vhost_blk/enable
			echo "# $cfg: $(grep -c vhost_blk_req_done $T/trace) vhost_blk_req_done events in the buffer"
			: >$T/trace
		fi
		echo "RUN $cfg $rep $base $size $r $(range vhost) $(range vhost_iotlb)" | tee -a "$OUT/runs.txt"
	done
done
cat /proc/kallsyms >"$OUT/kallsyms"
rmmod vhost_blk
insmod "$VHOST_BLK_BUILD/vhost_blk.ko"
exit $rc
