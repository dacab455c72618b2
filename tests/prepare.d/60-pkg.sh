#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Packaging engineer: what the packaging VM suites need, made on the host.
#   - Debian's udev, unpacked in the cache: tests/vm/60-autoload.sh runs its
#     udevd to apply packaging/udev/60-vhost-blk.rules;
#   - make deb, Debian's linux-source-6.1 (at the 6.1 kernel's version) and
#     the 6.12 kernel (its headers are the second kernel DKMS builds for):
#     tests/vm/65-dkms.sh, which runs on the 6.1 line.
set -uo pipefail
n=0
step()
{
	local name=$1 out
	shift
	n=$((n + 1))
	if out=$("$@" 2>&1); then
		echo "ok $n - $name"
	else
		printf '%s\n' "$out" | tail -n 20 | sed 's/^/# /'
		echo "not ok $n - $name"
	fi
}
step "udev unpacked in the cache (scripts/pkg/udev.sh)" scripts/pkg/udev.sh
step "make deb" make --no-print-directory deb
if [[ " ${VHOST_BLK_LINES:-6.1 6.12} " == *" 6.1 "* ]]; then
	step "linux-source-6.1 package in the cache" scripts/pkg/source-deb.sh 6.1
	step "kernel 6.12 in the cache (second kernel for DKMS)" scripts/kernel.sh fetch 6.12
fi
echo "1..$n"
