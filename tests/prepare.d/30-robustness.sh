#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the robustness tools (stress, fuzz) on the host into build/tools/,
# on top of the selftests' guest-driver library (selftests/vhost_blk/
# vblk_guest.c).  Userspace, kernel independent: one build serves both
# kernel lines.  Idempotent (rebuilds only when a source is newer).  TAP.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
SRC=$REPO/selftests/vhost_blk
OUT=$REPO/build/tools
CFLAGS="-O2 -g -Wall -Wextra -Werror -D_GNU_SOURCE -I$REPO/include/uapi -I$SRC"
mkdir -p "$OUT"
n=0
rc=0
tools=(vblk_stress vblk_fault vblk_fuzz)
for t in "${tools[@]}"; do
	n=$((n + 1))
	if [ ! -f "$SRC/$t.c" ]; then
		echo "ok $n - prepare: $t # SKIP $SRC/$t.c not written yet"
		continue
	fi
	bin=$OUT/$t
	if [ -x "$bin" ] && [ "$bin" -nt "$SRC/$t.c" ] && [ "$bin" -nt "$SRC/vblk_guest.c" ] &&
	   [ "$bin" -nt "$SRC/vblk_guest.h" ] && [ "$bin" -nt "$REPO/include/uapi/linux/vhost_blk.h" ]; then
		echo "ok $n - prepare: $t (up to date)"
		continue
	fi
	# shellcheck disable=SC2086
	if gcc $CFLAGS -o "$bin.tmp" "$SRC/$t.c" "$SRC/vblk_guest.c" -lpthread \
		>"$OUT/$t.log" 2>&1 && mv "$bin.tmp" "$bin"; then
		echo "ok $n - prepare: $t ($bin)"
	else
		echo "not ok $n - prepare: $t"
		sed 's/^/# /' "$OUT/$t.log" | head -30
		rc=1
	fi
done
echo "1..$n"
exit $rc
