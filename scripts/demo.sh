#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make demo`: from a fresh clone, install and build what is needed, boot
# the L1 VM (Debian's 6.1 kernel under TCG), load vhost_blk, start an L2
# guest on QEMU's vhost-blk-pci backed by a RAM disk, run fio in it and
# print fio's result and a one-line verdict.  A progress line per stage.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
VB_PROG=demo
for lib in "$REPO"/scripts/lib*.sh; do
	[ -e "$lib" ] && . "$lib"
done
CACHE=${VB_CACHE:-${VHOST_BLK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vhost-blk}}
LINE=${VHOST_BLK_DEMO_LINE:-6.1}
T0=$(date +%s)
n=0
stage() {
	n=$((n + 1))
	echo "==> [$n/6 +$(( $(date +%s) - T0 ))s] $*"
}

stage "installing dependencies (apt)"
if [ -x "$REPO/scripts/deps.sh" ]; then
	"$REPO/scripts/deps.sh" >/dev/null
fi

stage "fetching Debian's $LINE kernel (image, headers, source)"
KDIR_TOP=$("$REPO/scripts/kernel.sh" path "$LINE")
ABI=$(basename "$KDIR_TOP")

stage "building vhost_blk.ko for $ABI"
mkdir -p "$CACHE"
make -C "$REPO" -s module LINE="$LINE" >"$CACHE/demo-module.log" 2>&1 || {
	tail -20 "$CACHE/demo-module.log"
	echo "VERDICT: FAIL - the module did not build"
	exit 1
}

stage "building QEMU with vhost-blk-pci (cached; ~5 min the first time)"
QB=$("$REPO/scripts/qemu-build.sh")

stage "building the tiny L2 guest kernel + initramfs with fio (cached; ~6 min the first time)"
GENV=$("$REPO/scripts/guest-build.sh")
{ echo "QEMU=$QB/qemu-system-x86_64"; echo "$GENV"; } >"$CACHE/l2.env"

stage "booting the L1 VM ($LINE kernel, TCG), loading vhost_blk, running the L2 guest on vhost-blk-pci + fio (a few minutes under nested TCG)"
set +e
"$REPO/scripts/vm-run.sh" "$LINE" --timeout "${VHOST_BLK_DEMO_VM_TIMEOUT:-1200}" \
	--log "$CACHE/demo-vm.log" -- "$REPO/scripts/guest/demo-l1.sh" | tee "$CACHE/demo.out" |
	grep --line-buffered -v '^L2-'
rc=${PIPESTATUS[0]}
set -e
if ! grep -q '^VERDICT:' "$CACHE/demo.out"; then
	echo "VERDICT: FAIL - the VM did not finish the demo (exit $rc; log: $CACHE/demo-vm.log)"
	exit 1
fi
echo "(total $(( $(date +%s) - T0 ))s)"
exit "$rc"
