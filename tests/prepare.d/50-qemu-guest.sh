#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build (or find in the cache) what tests/vm/50-e2e.sh needs: QEMU with the
# vhost-blk-pci series and the tiny L2 guest; record their paths in
# $CACHE/l2.env for scripts/guest/l2.sh.  Prints TAP.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${VB_CACHE:-${VHOST_BLK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vhost-blk}}
mkdir -p "$CACHE"
log=$CACHE/prepare-qemu-guest.log

echo "1..2"
if qbuild=$("$REPO/scripts/qemu-build.sh" 2>"$log"); then
	echo "ok 1 - prepare: qemu-system-x86_64 with vhost-blk-pci ($qbuild)"
else
	echo "not ok 1 - prepare: qemu-system-x86_64 with vhost-blk-pci"
	tail -20 "$log" | sed 's/^/# /'
	qbuild=
fi
if genv=$("$REPO/scripts/guest-build.sh" 2>>"$log"); then
	echo "ok 2 - prepare: L2 guest kernel + initramfs"
else
	echo "not ok 2 - prepare: L2 guest kernel + initramfs"
	tail -20 "$log" | sed 's/^/# /'
	genv=
fi
if [ -n "$qbuild" ] && [ -n "$genv" ]; then
	{ echo "QEMU=$qbuild/qemu-system-x86_64"; echo "$genv"; } >"$CACHE/l2.env.tmp"
	mv "$CACHE/l2.env.tmp" "$CACHE/l2.env"
	exit 0
fi
rm -f "$CACHE/l2.env"
exit 1
