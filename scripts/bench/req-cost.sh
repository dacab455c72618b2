#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# What one request costs with two builds of vhost_blk.ko, in instructions:
# the working tree's against GITREV's, for a before/after measurement of a
# change to drivers/vhost/blk.c.
#
#   scripts/bench/req-cost.sh [--base GITREV] [--qd Q] [--queues M]
#                             [--profile K] [6.1]
#
# Builds vhost_blk.ko for LINE from the working tree (make module: "new")
# and from GITREV (default HEAD: "base"; git archive of Kbuild, drivers and
# include into DIR/base), scripts/bench/vbcount.c and vbreq.c
# (scripts/bench/cost-lib.sh); boots L1 under TCG (one TCG thread: exact
# counts) with vbcount.so,profile=on,profile_pct=100 and runs
# scripts/bench/req-cost-l1.sh there: one uncounted warm-up run, then
# VHOST_BLK_REQ_COST_REPS (default 5) rounds of base/new, each module
# loaded afresh and vbreq running VHOST_BLK_REQ_COST_REQUESTS (default
# 2000) requests on /dev/ram0 (brd) between two markers: 4 KiB writes and
# reads alternately, at queue depth Q (default 1) on each of M queues
# (default 1; one thread per queue).  Prints per run and per build (mean,
# min, max), then new - base (scripts/bench/req-cost.py):
#   module/req  instructions in translated blocks that start in
#               vhost_blk.ko's memory, per request: exact, the same in
#               every run unless the load's timing changes its path
#   vhost/req   the same over vhost_blk, vhost and vhost_iotlb
#   total/req   the whole machine between the markers, per request (vbreq,
#               syscalls, the vhost worker, brd, scheduling, and the VM's
#               background: its spread is a few hundred)
# With --profile K, the K kernel symbols whose instructions per request
# changed most.  Output and logs in DIR (VHOST_BLK_REQ_COST_OUT, default
# build/req-cost-LINE): results.txt, runs.txt, plugin.log, console.log.
set -euo pipefail
VB_PROG=req-cost
. "$(dirname "$0")/../lib.sh"
. "$VB_REPO/scripts/bench/cost-lib.sh"
base=HEAD qd=1 queues=1 profile=()
while [ $# -gt 0 ]; do
	case $1 in
	--base) base=$2; shift 2 ;;
	--qd) qd=$2; shift 2 ;;
	--queues) queues=$2; shift 2 ;;
	--profile) profile=(--profile "$2"); shift 2 ;;
	-*) sed -n '7,8s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
	*) break ;;
	esac
done
line=${1:-6.1}
out=${VHOST_BLK_REQ_COST_OUT:-$VB_REPO/build/req-cost-$line}
export VHOST_BLK_COST_REPS=${VHOST_BLK_REQ_COST_REPS:-5}
export VHOST_BLK_COST_REQUESTS=${VHOST_BLK_REQ_COST_REQUESTS:-2000}
export VHOST_BLK_COST_VBREQ="--qd $qd --queues $queues"
rev=$(git -C "$VB_REPO" rev-parse --verify "$base^{commit}") || vb_die "no commit $base"

cost_prepare "$line" "$out"
mkdir -p "$out/base" "$out/new"
cp "$VB_REPO/build/$COST_ABI/vhost_blk.ko" "$out/new/"
git -C "$VB_REPO" archive "$rev" Kbuild drivers include | tar -xf - -C "$out/base"
cost_module "$out/base"

vb_log "base $(git -C "$VB_REPO" log -1 --format='%h %s' "$rev")"
vb_log "new  the working tree ($(git -C "$VB_REPO" describe --always --dirty))"
vb_log "booting L1 ($line) under vbcount, $VHOST_BLK_COST_REPS x base/new x $VHOST_BLK_COST_REQUESTS requests (queue depth $qd, $queues queue(s))"
rc=0
cost_l1 "$line" "$out" "base=$out/base/vhost_blk.ko new=$out/new/vhost_blk.ko" || rc=$?
"$VB_REPO/scripts/bench/req-cost.py" "$out" "$VHOST_BLK_COST_REQUESTS" base new \
	--diff base new "${profile[@]}" | tee "$out/results.txt"
exit $rc
