#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Packaging engineer: what the packaging VM suites need, built on the host.
#   - Debian's udev, unpacked in the cache (tests/vm/60-autoload.sh runs
#     its udevd to apply packaging/udev/60-vhost-blk.rules).
set -euo pipefail
echo "1..1"
if out=$(scripts/pkg/udev.sh 2>&1); then
	echo "ok 1 - udev unpacked in the cache: ${out##*/}"
else
	printf '# %s\n' "$out"
	echo "not ok 1 - udev unpacked in the cache (scripts/pkg/udev.sh)"
fi
