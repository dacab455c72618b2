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
# and every trace_*_enabled() false), scripts/bench/vbcount.c against the
# pinned QEMU source's qemu-plugin.h and scripts/bench/vbreq.c; boots L1
# under TCG (one TCG thread) with vbcount.so,profile=on,profile_pct=100 and
# runs scripts/bench/trace-cost-l1.sh there: one uncounted warm-up run, then
# VHOST_BLK_TRACE_COST_REPS (default 3) rounds of out/off/on, each vbreq run VHOST_BLK_TRACE_COST_REQUESTS
# (default 2000) requests at queue depth 1 between two markers.  Prints,
# per run and per configuration (mean, min, max):
#   module/req  instructions executed in vhost_blk.ko's memory per request
#               (sum of the translated blocks that start there)
#   total/req   instructions of the whole machine per request (the vbreq
#               process, the syscalls, the vhost worker, brd, ftrace, and
#               the VM's background between the markers)
# Output and logs in DIR (VHOST_BLK_TRACE_COST_OUT, default
# build/trace-cost-LINE): results.txt, runs.txt, plugin.log, console.log.
set -euo pipefail
VB_PROG=trace-cost
. "$(dirname "$0")/../lib.sh"
REPO=$VB_REPO
line=${1:-6.1}
# Module instructions are counted in /proc/modules' range: one allocation
# (code and data) up to 6.3, code and data apart from 6.4 on.
[ "$line" = 6.1 ] || vb_die "LINE must be 6.1 (the module's range, see above)"
out=${VHOST_BLK_TRACE_COST_OUT:-$REPO/build/trace-cost-$line}
export VHOST_BLK_TRACE_COST_REPS=${VHOST_BLK_TRACE_COST_REPS:-3}
export VHOST_BLK_TRACE_COST_REQUESTS=${VHOST_BLK_TRACE_COST_REQUESTS:-2000}

make -C "$REPO" -s module LINE="$line"
kdir=$("$REPO/scripts/kernel.sh" path "$line")
abi=$(basename "$kdir")
rm -rf "$out"
mkdir -p "$out/tools"

# The same build directory again, with the tracepoints compiled out.
cp -a "$REPO/build/$abi" "$out/notrace"
make -C "$kdir/build" M="$out/notrace" VHOST_SRC="$kdir/src/drivers/vhost" \
	KCFLAGS=-DNOTRACE W=1 modules >"$out/notrace.log" 2>&1 ||
	{ tail -20 "$out/notrace.log"; vb_die "the -DNOTRACE build failed"; }
! grep -i 'warning:' "$out/notrace.log" || vb_die "the -DNOTRACE build has warnings"
if objdump -t "$out/notrace/vhost_blk.ko" | grep -q __tracepoint_vhost_blk; then
	vb_die "the -DNOTRACE module still has vhost_blk tracepoints"
fi

qsrc=$("$REPO/scripts/qemu-build.sh" --src)
read -ra glib <<<"$(pkg-config --cflags glib-2.0)"
gcc -O2 -Wall -Wextra -Wno-unused-parameter -Werror -shared -fPIC \
	-I"$qsrc/include/qemu" "${glib[@]}" -o "$out/tools/vbcount.so" \
	"$REPO/scripts/bench/vbcount.c"
gcc -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -I"$REPO/include/uapi" \
	-I"$REPO/selftests/vhost_blk" -o "$out/tools/vbreq" \
	"$REPO/scripts/bench/vbreq.c" "$REPO/selftests/vhost_blk/vblk_guest.c" -lpthread

vb_log "booting L1 ($line) under vbcount, $VHOST_BLK_TRACE_COST_REPS x out/off/on x $VHOST_BLK_TRACE_COST_REQUESTS requests"
rc=0
VB_BENCH_PLUGINS="$out/tools/vbcount.so,profile=on,profile_pct=100" \
	VB_BENCH_PLUGIN_LOG=$out/plugin.log \
	VHOST_BLK_QEMU=$REPO/scripts/bench/l1-qemu.sh VHOST_BLK_ACCEL=tcg \
	VHOST_BLK_TCG_THREAD=single VHOST_BLK_TRACE_COST_TOOLS=$out/tools \
	VHOST_BLK_TRACE_COST_NOTRACE=$out/notrace/vhost_blk.ko \
	"$REPO/scripts/vm-run.sh" "$line" --no-kfence --timeout 3600 \
	--log "$out/console.log" --out "$out" -- "$REPO/scripts/bench/trace-cost-l1.sh" || rc=$?
[ $rc -eq 0 ] || vb_warn "the L1 run exited with $rc"

python3 - "$out" "$VHOST_BLK_TRACE_COST_REQUESTS" <<'PY' | tee "$out/results.txt"
import collections, re, sys
out, n = sys.argv[1], int(sys.argv[2])
marks, prof = [], collections.defaultdict(list)
for l in open(out + "/plugin.log", errors="replace"):
    m = re.match(r"vbcount: mark (\d+) ns=\d+ total=(\d+)", l)
    if m:
        marks.append((int(m.group(1)), int(m.group(2))))
        continue
    m = re.match(r"vbcount: prof (\d+) 0x([0-9a-f]+) 0x[0-9a-f]+ (\d+) \d+", l)
    if m:
        prof[int(m.group(1))].append((int(m.group(2), 16), int(m.group(3))))
runs = [l.split()[1:] for l in open(out + "/runs.txt") if l.startswith("RUN ")]
if len(marks) != 2 * len(runs) or any(r[4] != "0" for r in runs):
    sys.exit("trace-cost: %d markers for %d runs (failed: %s)"
             % (len(marks), len(runs), [r for r in runs if r[4] != "0"]))
per = collections.defaultdict(list)
print("run  cfg  module/req  total/req")
for k, (cfg, rep, base, size, _) in enumerate(runs):
    (_, t0), (seq, t1) = marks[2 * k], marks[2 * k + 1]
    lo, hi = int(base, 16), int(base, 16) + int(size)
    mod = sum(i for va, i in prof[seq] if lo <= va < hi)
    if cfg == "warm":
        continue
    per[cfg].append((mod / n, (t1 - t0) / n))
    print("%-4s %-4s %10.1f %10.1f" % (rep, cfg, mod / n, (t1 - t0) / n))
print("\n%d requests per run; mean [min, max] over %d runs" % (n, len(per["off"])))
for cfg in ("out", "off", "on"):
    for i, what in ((0, "module/req"), (1, "total/req")):
        v = [x[i] for x in per[cfg]]
        print("%-4s %-11s %10.1f [%.1f, %.1f]" % (cfg, what, sum(v) / len(v), min(v), max(v)))
PY
exit $rc
