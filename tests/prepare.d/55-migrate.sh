#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# What tests/vm/55-migrate.sh needs besides the L2 guest (50-qemu-guest.sh):
#   build/guest-tools/dmaprobe      static; the guest's side of the dirty-log
#                                   check (scripts/guest/dmaprobe.c)
#   build/<abi>-nolog/vhost_blk_nolog.ko
#                                   per line: the negative control, built
#                                   with VHOST_BLK_NO_DIRTY_LOG=1 (Kbuild);
#                                   its own name, so nothing loads it by
#                                   mistake in place of vhost_blk.ko
# Idempotent (make decides).  Prints TAP.  The lines: VB_LINES
# (scripts/lib.sh).
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"

REPO=$VB_REPO
LINES=$VB_LINES
OUT=$REPO/build/guest-tools
SRC=$REPO/scripts/guest
mkdir -p "$OUT"

# shellcheck disable=SC2086 # one word per line
set -- $LINES
echo "1..$(($# + 1))"
n=0
rc=0

# step WHAT LOG CMD... - one TAP line: CMD (output in LOG) built WHAT
step()
{
	local what=$1 log=$2

	shift 2
	n=$((n + 1))
	if "$@" >"$log" 2>&1; then
		echo "ok $n - prepare: $what"
	else
		echo "not ok $n - prepare: $what"
		tail -20 "$log" | sed 's/^/# /'
		rc=1
	fi
}

# the guest's probe: static (the L2 initramfs has no libc)
step "dmaprobe ($OUT/dmaprobe)" "$OUT/dmaprobe.log" \
	make -s -C "$OUT" -f /dev/null dmaprobe VPATH="$SRC" \
	CFLAGS="-O2 -Wall -Wextra -Werror" LDFLAGS=-static
for line in $LINES; do
	step "vhost_blk_nolog.ko for $line (negative control of 55-migrate)" \
		"$OUT/nolog-$line.log" make -C "$REPO" --no-print-directory \
		module LINE="$line" VHOST_BLK_NO_DIRTY_LOG=1
done
exit $rc
