#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the vhost-blk selftests on the host, once per kernel line, with
# that line's kselftest_harness.h (from scripts/kernel.sh path LINE):
#	build/selftests/<line>/vhost_blk_test, libvblk_guest.a and the
#	robustness tools vblk_stress, vblk_fault, vblk_fuzz
# (selftests/vhost_blk/Makefile).  Kernel independent userspace: needs only
# the harness and include/uapi/linux/vhost_blk.h.  Idempotent (make
# decides).  Prints TAP.  The lines: VB_LINES (scripts/lib.sh).
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"

REPO=$VB_REPO
LINES=$VB_LINES

n=0
rc=0
set -- $LINES
echo "1..$#"
for line in $LINES; do
	n=$((n + 1))
	out=$REPO/build/selftests/$line
	mkdir -p "$out"
	log=$out/build.log
	if ! kdir=$("$REPO/scripts/kernel.sh" path "$line" 2>"$log"); then
		echo "not ok $n - prepare: selftests for $line (scripts/kernel.sh path $line failed)"
		tail -5 "$log" | sed 's/^/# /'
		rc=1
		continue
	fi
	ksft=$kdir/src/tools/testing/selftests
	if make -C "$REPO/selftests/vhost_blk" KSFT_DIR="$ksft" OUT="$out" \
		>>"$log" 2>&1; then
		echo "ok $n - prepare: selftests and tools for $line ($out/vhost_blk_test, vblk_stress, vblk_fault, vblk_fuzz)"
	else
		echo "not ok $n - prepare: selftests for $line"
		tail -20 "$log" | sed 's/^/# /'
		rc=1
	fi
done
exit $rc
