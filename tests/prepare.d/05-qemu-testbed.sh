#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build (or find in the cache) the test bed's QEMU, which scripts/vm-run.sh
# boots the L1 VM on under TCG (Documentation/testing.rst, "The test bed's
# QEMU"), before any VM starts: vm-run would build it on first use, but
# here its time shows as a stage of its own.  Prints TAP.
set -uo pipefail

. "$(dirname "$0")/../../scripts/lib.sh"
log=$VB_CACHE/prepare-qemu-testbed.log
mkdir -p "$VB_CACHE"

echo "1..1"
# vm-run's cached KVM probe, if it ran already
probe=$(cat "$VB_CACHE/vm/accel-$(uname -n)-$(uname -r)" 2>/dev/null)
if [ -n "${VHOST_BLK_QEMU:-}" ] || [ "${VHOST_BLK_ACCEL:-$probe}" = kvm ]; then
	echo "ok 1 - prepare: test bed QEMU # SKIP L1 runs on ${VHOST_BLK_QEMU:-KVM}"
	exit 0
fi
if qb=$("$VB_REPO/scripts/qemu-build.sh" --testbed 2>"$log"); then
	echo "ok 1 - prepare: test bed QEMU for the L1 VM ($qb)"
else
	echo "not ok 1 - prepare: test bed QEMU for the L1 VM"
	tail -20 "$log" | sed 's/^/# /'
	exit 1
fi
