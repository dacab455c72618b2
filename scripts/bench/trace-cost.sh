#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# What the vhost_blk trace events cost per request, in instructions:
# events compiled out (-DNOTRACE), built in but disabled (static keys), and
# enabled (all four, into the ftrace buffer).
#
#   scripts/bench/trace-cost.sh [6.1]
#
# Builds vhost_blk.ko for LINE twice (the normal one, and a copy of its
# build with KCFLAGS=-DNOTRACE, which makes every trace_*() an empty inline
# and every trace_*_enabled() false), scripts/bench/vbcount.c and
# scripts/bench/vbreq.c (scripts/bench/cost-lib.sh); boots L1 under TCG
# (one TCG thread) with vbcount.so,profile=on,profile_pct=100 and runs
# scripts/bench/req-cost-l1.sh there: one uncounted warm-up run, then
# VHOST_BLK_TRACE_COST_REPS (default 3) rounds of out/off/on, each vbreq run VHOST_BLK_TRACE_COST_REQUESTS
# (default 2000) requests at queue depth 1 between two markers.  Prints,
# per run and per configuration (mean, min, max; scripts/bench/req-cost.py):
#   module/req  instructions executed in vhost_blk.ko's memory per request
#               (sum of the translated blocks that start there)
#   vhost/req   the same over vhost_blk, vhost and vhost_iotlb
#   total/req   instructions of the whole machine per request (the vbreq
#               process, the syscalls, the vhost worker, brd, ftrace, and
#               the VM's background between the markers)
# Output and logs in DIR (VHOST_BLK_TRACE_COST_OUT, default
# build/trace-cost-LINE): results.txt, runs.txt, plugin.log, console.log.
set -euo pipefail
VB_PROG=trace-cost
. "$(dirname "$0")/../lib.sh"
. "$VB_REPO/scripts/bench/cost-lib.sh"
line=${1:-6.1}
out=${VHOST_BLK_TRACE_COST_OUT:-$VB_REPO/build/trace-cost-$line}
export VHOST_BLK_COST_REPS=${VHOST_BLK_TRACE_COST_REPS:-3}
export VHOST_BLK_COST_REQUESTS=${VHOST_BLK_TRACE_COST_REQUESTS:-2000}

cost_prepare "$line" "$out"
# The same build directory again, with the tracepoints compiled out.
cp -a "$VB_REPO/build/$COST_ABI" "$out/notrace"
cost_module "$out/notrace" KCFLAGS=-DNOTRACE
if objdump -t "$out/notrace/vhost_blk.ko" | grep -q __tracepoint_vhost_blk; then
	vb_die "the -DNOTRACE module still has vhost_blk tracepoints"
fi

vb_log "booting L1 ($line) under vbcount, $VHOST_BLK_COST_REPS x out/off/on x $VHOST_BLK_COST_REQUESTS requests"
ko=$VB_REPO/build/$COST_ABI/vhost_blk.ko
rc=0
cost_l1 "$line" "$out" "out=$out/notrace/vhost_blk.ko off=$ko on=$ko+trace" || rc=$?
"$VB_REPO/scripts/bench/req-cost.py" "$out" "$VHOST_BLK_COST_REQUESTS" out off on |
	tee "$out/results.txt"
exit $rc
