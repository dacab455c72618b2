#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make bench`: compare vhost-blk-pci with QEMU's own data planes on the same
# backing device, instruction counts per I/O as the headline.
#
#   scripts/bench/bench.sh [--quick] [--line 6.1|6.12] [--profile]
#                          [--no-baseline] [--out DIR]
#
# Builds (or takes from the cache) what it needs through the repository's
# scripts: the Debian kernel and vhost_blk.ko, QEMU with vhost-blk-pci and
# its qemu-storage-daemon, the tiny L2 guest, and two TCG plugins for the L1
# QEMU (QEMU's tests/plugin/bb.c, a whole-run cross-check, and
# scripts/bench/vbcount.c, which snapshots per-vCPU instruction counts at
# markers).  Then it boots L1 (TCG, -cpu max: nested SVM) once and runs
# scripts/bench/l1.sh there, and scripts/bench/analyze.py on the results:
# a table on stdout, DIR/results.json, DIR/*.svg (DIR: build/bench).
#
#   --quick     a tiny matrix for development (brd, 1 queue, randread QD1
#               and QD32, 2 s runs, 2 repetitions)
#   --profile   also count instructions per translated block and map them
#               to L1 kernel symbols (DIR/profile.txt); slows L1 down
#   --line L    the L1 kernel line (default 6.1)
#   --no-baseline  skip the first L1 run without plugins; without it no
#               cell can be checked for perturbation (counted IOPS far below
#               uncounted: VHOST_BLK_BENCH_MAX_SLOWDOWN, default 1.5)
#
# Matrix knobs (environment, see scripts/bench/l1.sh): VHOST_BLK_BENCH_BACKENDS,
# _DEVICES, _WORKLOADS, _QUEUES, _SECONDS, _REPS, _IDLE.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
VB_PROG=bench
. "$REPO/scripts/lib.sh"
. "$REPO/scripts/guest/apt.sh"
CACHE=$VB_CACHE

quick=0 profile=0 baseline=1 line=6.1 out=$REPO/build/bench
while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=1; shift ;;
	--profile) profile=1; shift ;;
	--no-baseline) baseline=0; shift ;;
	--line) line=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	-h|--help) sed -n '4,25s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) vb_die "unknown option $1 (see --help)" ;;
	esac
done
if [ "$quick" = 1 ]; then
	: "${VHOST_BLK_BENCH_DEVICES:=brd}" "${VHOST_BLK_BENCH_QUEUES:=1}"
	: "${VHOST_BLK_BENCH_WORKLOADS:=randread-qd1:randread:4k:1 randread-qd32:randread:4k:32}"
	: "${VHOST_BLK_BENCH_SECONDS:=2}" "${VHOST_BLK_BENCH_REPS:=2}"
fi
export VHOST_BLK_BENCH_BACKENDS VHOST_BLK_BENCH_DEVICES VHOST_BLK_BENCH_WORKLOADS \
	VHOST_BLK_BENCH_QUEUES VHOST_BLK_BENCH_SECONDS VHOST_BLK_BENCH_REPS \
	VHOST_BLK_BENCH_IDLE 2>/dev/null || true

T0=$(date +%s)
n=0
stage() {
	n=$((n + 1))
	echo "==> [$n/9 +$(($(date +%s) - T0))s] $*"
}

stage "installing dependencies (apt)"
mkdir -p "$CACHE"
{ "$REPO/scripts/deps.sh" && need_pkgs gnuplot-nox python3 qemu-system-x86 fio; } \
	>"$CACHE/bench-deps.log" 2>&1 || { tail -20 "$CACHE/bench-deps.log"; vb_die "installing packages failed"; }

stage "fetching Debian's $line kernel"
"$REPO/scripts/kernel.sh" path "$line" >/dev/null

stage "building vhost_blk.ko ($line)"
make -C "$REPO" -s module LINE="$line"

stage "building QEMU with vhost-blk-pci and the L2 guest (cached; ~10 min the first time)"
QB=$("$REPO/scripts/qemu-build.sh")
QSRC=$("$REPO/scripts/qemu-build.sh" --src)
GENV=$("$REPO/scripts/guest-build.sh")
# The paths for L1 (scripts/bench/l1.sh reads the copy in its output dir:
# the cache's l2.env may be rewritten by other runs while L1 boots).
L2ENV=$(printf 'QEMU=%s\nQSD=%s\n%s\n' "$QB/qemu-system-x86_64" "$QB/qemu-storage-daemon" "$GENV")
echo "$L2ENV" >"$CACHE/l2.env.tmp"
mv "$CACHE/l2.env.tmp" "$CACHE/l2.env"

stage "building the test bed's QEMU for L1, the plugins and vbmark (cached)"
# L1 runs on the test bed's QEMU (Documentation/testing.rst): the same
# pinned source, so the plugins are built against its qemu-plugin.h.
L1Q=$("$REPO/scripts/qemu-build.sh" --testbed)
key=$(cat "$REPO/scripts/bench/vbcount.c" "$REPO/scripts/bench/vbmark.c" | sha256sum | cut -c1-12)
TOOLS=$CACHE/bench/tools-$(basename "$(dirname "$QB")")-l1_$(basename "$L1Q")-$key
if [ ! -e "$TOOLS/.done" ]; then
	rm -rf "$TOOLS"
	mkdir -p "$TOOLS"
	read -ra glib <<<"$(pkg-config --cflags glib-2.0)"
	cflags=(-O2 -Wall -shared -fPIC -I"$QSRC/include/qemu" "${glib[@]}")
	gcc "${cflags[@]}" -o "$TOOLS/libbb.so" "$QSRC/tests/plugin/bb.c"
	gcc "${cflags[@]}" -Wextra -Wno-unused-parameter -Werror \
		-o "$TOOLS/vbcount.so" "$REPO/scripts/bench/vbcount.c"
	gcc -Os -Wall -Werror -nostdlib -static -s -Wl,-N -Wl,--build-id=none \
		-Wl,--no-warn-rwx-segments -fno-asynchronous-unwind-tables \
		-o "$TOOLS/vbmark" "$REPO/scripts/bench/vbmark.c"
	touch "$TOOLS/.done"
fi

mkdir -p "$out"
raw=$out/raw base=$out/raw-uncounted
rm -rf "$raw" "$base"
mkdir -p "$raw"
echo "$L2ENV" >"$raw/l2.env"
# One TCG thread per L1 vCPU: with one thread for all of them (vm-run.sh's
# default) a vCPU that does not halt keeps the others off the host CPU
# for TCG's 100 ms round-robin period, and the nested guest's I/O, which
# crosses vCPUs (guest vCPU -> vhost worker or QEMU thread -> guest vCPU),
# stalled at a few I/Os per second.  Several threads need per-vCPU counts.
export VHOST_BLK_TCG_THREAD=${VHOST_BLK_TCG_THREAD:-multi}
if [ "$VHOST_BLK_TCG_THREAD" = multi ]; then
	vbopts=,percpu=on bbopts=''
else
	vbopts='' bbopts=,inline=on
fi
[ "$profile" = 1 ] && vbopts="$vbopts,profile=on"
plugins="$TOOLS/vbcount.so$vbopts $TOOLS/libbb.so$bbopts"
# L1's TSC frequency: scripts/vm-run.sh gives every TCG L1 the host's
# (VHOST_BLK_TSC_KHZ); analyze.py checks L1's clock against the host's.
# One L1 run of the matrix: $1 output dir, $2 plugins ("" for none).
# VHOST_BLK_BENCH_L1_ARGS: more L1 QEMU options (e.g. -icount).
run_l1() {
	local a p
	a=${VHOST_BLK_BENCH_L1_ARGS:-}
	for p in $2; do
		a="$a -plugin $p"
	done
	[ -z "$2" ] || a="$a -d plugin -D $1/plugin.log"
	VHOST_BLK_QEMU_ARGS=$a VHOST_BLK_ACCEL=tcg VHOST_BLK_BENCH_TOOLS=$TOOLS \
		"$REPO/scripts/vm-run.sh" "$line" --no-kfence --timeout "${VHOST_BLK_BENCH_TIMEOUT:-14400}" \
		--log "$1/console.log" --out "$1" -- "$REPO/scripts/bench/l1.sh"
}
set +e
if [ "$baseline" = 1 ]; then
	stage "booting L1 ($line) without plugins: the uncounted IOPS of every cell"
	mkdir -p "$base"
	echo "$L2ENV" >"$base/l2.env"
	run_l1 "$base" "" || vb_warn "the uncounted L1 run exited with $? (its cells are not gated)"
else
	stage "no uncounted baseline (--no-baseline): cells are not checked for perturbation"
fi
stage "booting L1 ($line, TCG -cpu max with the plugins) and running the matrix"
run_l1 "$raw" "$plugins"
rc=$?
set -e
[ $rc -eq 0 ] || vb_warn "the L1 run exited with $rc (partial results are analysed)"

stage "analysing"
aargs=(--raw "$raw" --out "$out" --max-slowdown "${VHOST_BLK_BENCH_MAX_SLOWDOWN:-1.5}")
[ "$baseline" = 1 ] && aargs+=(--baseline "$base")
[ "$profile" = 1 ] && aargs+=(--profile "$REPO/build/$(basename "$("$REPO/scripts/kernel.sh" path "$line")")/vhost_blk.ko")
python3 "$REPO/scripts/bench/analyze.py" "${aargs[@]}"

stage "plots"
if command -v gnuplot >/dev/null && ls "$out"/*.gp >/dev/null 2>&1; then
	for gp in "$out"/*.gp; do
		(cd "$out" && gnuplot "$(basename "$gp")") || vb_warn "gnuplot $gp failed"
	done
	printf '  %s\n' "$out"/*.svg
fi
echo "results: $out/results.json (total $(($(date +%s) - T0)) s)"
exit $rc
