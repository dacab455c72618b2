#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build (or find in the cache) what tests/vm/50-e2e.sh needs: QEMU with the
# vhost-blk-pci series (and its qemu-storage-daemon, the vhost-user-blk
# server) and the tiny L2 guest; record their paths (QEMU, QSD,
# GUEST_KERNEL, GUEST_INITRD) in build/l2.env (VB_L2_ENV) for
# scripts/guest/l2.sh, and in $CACHE/l2.env for the tools that read that
# one.  Prints TAP.
set -uo pipefail

. "$(dirname "$0")/../../scripts/lib.sh"
REPO=$VB_REPO
CACHE=$VB_CACHE
mkdir -p "$CACHE" "$(dirname "$VB_L2_ENV")"
log=$CACHE/prepare-qemu-guest.log

echo "1..2"
if qbuild=$("$REPO/scripts/qemu-build.sh" 2>"$log") &&
	[ -x "$qbuild/qemu-system-x86_64" ] && [ -x "$qbuild/qemu-storage-daemon" ]; then
	echo "ok 1 - prepare: qemu-system-x86_64 with vhost-blk-pci, qemu-storage-daemon ($qbuild)"
else
	echo "not ok 1 - prepare: qemu-system-x86_64 with vhost-blk-pci, qemu-storage-daemon"
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
	{ echo "QEMU=$qbuild/qemu-system-x86_64"; echo "QSD=$qbuild/qemu-storage-daemon"
	  echo "$genv"; } >"$VB_L2_ENV.tmp"
	cp "$VB_L2_ENV.tmp" "$CACHE/l2.env.tmp.$$"
	mv "$CACHE/l2.env.tmp.$$" "$CACHE/l2.env"
	mv "$VB_L2_ENV.tmp" "$VB_L2_ENV"
	exit 0
fi
rm -f "$VB_L2_ENV"
exit 1
