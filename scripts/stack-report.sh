#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# stack-report.sh - stack budget of vhost_blk.ko (see Documentation/robustness.rst)
#
#	scripts/stack-report.sh [--no-build] [--runtime] [LINE...]
#
# For each kernel line (default: $VHOST_BLK_LINES or "6.1 6.12"):
#  - builds the module with -fstack-usage -fcallgraph-info=su in
#    build/<abi>/stack/ (a separate copy: the normal build is untouched);
#  - prints every function's frame, the deepest call chain inside the
#    module and what the bio end_io callback can reach
#    (scripts/stack-callgraph.pl; "BUDGET FAIL" lines on a violation);
#  - cross-checks the frames with the kernel's checkstack.pl on the .ko;
#  - with --runtime: boots the line's VM (single-threaded TCG: ftrace text
#    patching is not safe under multi-threaded TCG here), runs the stress
#    tool under the ftrace stack tracer and function_graph
#    (tests/vm/30-stress.sh, VHOST_BLK_STRESS_TRACE=1) and prints the
#    deepest stack seen, vhost-blk frames marked, and the kick / end_io
#    context checks (TAP in build/<abi>/stack/runtime-tap.txt).
# The static report is in build/<abi>/stack/report.txt, the runtime one in
# build/<abi>/stack/runtime.txt.  Exit status 1 when a budget is exceeded.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO" || exit 1
BUILD=1
RUNTIME=0
LINES=()
while [ $# -gt 0 ]; do
	case $1 in
	--no-build) BUILD=0 ;;
	--runtime) RUNTIME=1 ;;
	-h|--help) sed -n '4,20s/^#\t\{0,1\}//p' "$0"; exit 0 ;;
	*) LINES+=("$1") ;;
	esac
	shift
done
[ ${#LINES[@]} -gt 0 ] || read -r -a LINES <<<"${VHOST_BLK_LINES:-6.1 6.12}"

# build_stack LINE: prints the output directory
build_stack()
{
	local line=$1 kdir abi out
	kdir=$(scripts/kernel.sh path "$line") || return 1
	abi=$(basename "$kdir")
	out=$REPO/build/$abi/stack
	if [ "$BUILD" = 1 ]; then
		rm -rf "$out" && mkdir -p "$out"
		tar -cf - --exclude='*.o' --exclude='*.ko' --exclude='*.mod' \
			--exclude='*.mod.c' --exclude='.*.cmd' --exclude='*.su' \
			--exclude='*.ci' Kbuild drivers include | tar -xf - -C "$out"
		if ! make -C "$kdir/build" M="$out" VHOST_SRC="$kdir/src/drivers/vhost" \
			KCFLAGS="-fstack-usage -fcallgraph-info=su" modules \
			>"$out/build.log" 2>&1; then
			cat "$out/build.log" >&2
			echo "error: stack build for $line failed" >&2
			return 1
		fi
	fi
	[ -f "$out/vhost_blk.ko" ] || { echo "error: no $out/vhost_blk.ko" >&2; return 1; }
	echo "$out"
}

rc=0
for line in "${LINES[@]}"; do
	out=$(build_stack "$line") || { rc=1; continue; }
	kdir=$(scripts/kernel.sh path "$line")
	abi=$(basename "$kdir")
	{
		echo "== vhost_blk.ko stack budget, $line ($abi)"
		echo "-- checkstack.pl on the .ko (x86_64, frames >= 0 bytes)"
		objdump -d "$out/vhost_blk.ko" |
			perl "$kdir/src/scripts/checkstack.pl" x86_64 0 2>/dev/null \
			>"$out/checkstack.txt"
		sed 's/^/CHECKSTACK /' "$out/checkstack.txt"
		echo "-- frames (max of gcc -fstack-usage and checkstack), chains (-fcallgraph-info)"
		perl scripts/stack-callgraph.pl --checkstack "$out/checkstack.txt" "$out"
		echo "status=$?"
	} >"$out/report.txt"
	cat "$out/report.txt"
	grep -q '^status=0$' "$out/report.txt" || rc=1

	if [ "$RUNTIME" = 1 ]; then
		echo "-- runtime: ftrace stack tracer while the stress tool runs ($line)"
		make --no-print-directory module LINE="$line" >/dev/null || { rc=1; continue; }
		VHOST_BLK_LINES=$line tests/prepare.d/10-selftests.sh >/dev/null || { rc=1; continue; }
		vmout=$REPO/build/$abi/stack/vm
		rm -rf "$vmout" && mkdir -p "$vmout"
		VHOST_BLK_TCG_THREAD=single VHOST_BLK_STRESS_TRACE=1 \
			VHOST_BLK_STRESS_SECONDS=${VHOST_BLK_STRESS_SECONDS:-15} \
			scripts/vm-run.sh "$line" --timeout 900 --out "$vmout" \
			-- tests/vm/30-stress.sh | tee "$out/runtime-tap.txt" || rc=1
		if [ -f "$vmout/stack-runtime.txt" ]; then
			cp "$vmout/stack-runtime.txt" "$out/runtime.txt"
			cat "$out/runtime.txt"
		else
			echo "error: no runtime stack figure from the VM" >&2
			rc=1
		fi
	fi
done
exit $rc
