#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Print the directory of an unpacked Debian udev package (cached), for the
# VM suites that need a real udevd to apply packaging/udev/*.rules.
#
#	scripts/pkg/udev.sh		fetch (once) and print the directory
#	scripts/pkg/udev.sh --cached	print the last fetched one (no apt: for
#					the VM, where apt is slow and offline)
#
# The build machine need not run udev, and installing the package there
# would upgrade systemd; the VM suites run its udevadm from the cache
# instead.  The version is the installed systemd's when apt still has it
# (udevadm uses systemd's private library), else the candidate.

set -euo pipefail

VB_PROG=pkg-udev
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

main()
{
	local ver out tmp

	if [[ "${1:-}" = --cached ]]; then
		out=$(readlink -e "$VB_CACHE/pkg/udev") || vb_die "no udev in $VB_CACHE/pkg: run $0 first"
		echo "$out"
		return
	fi
	ver=$(dpkg-query -W -f='${Version}' systemd 2>/dev/null || true)
	if [[ -z "$ver" ]] || ! apt-cache madison udev 2>/dev/null |
		awk -F'|' '{ gsub(/ /, "", $2); print $2 }' | grep -qxF "$ver"; then
		ver=$(apt-cache policy udev | awk '/Candidate:/ { print $2; exit }')
	fi
	[[ -n "$ver" && "$ver" != "(none)" ]] || vb_die "apt offers no udev package"
	out=$VB_CACHE/pkg/udev-$ver
	if [[ ! -x "$out/bin/udevadm" ]]; then
		mkdir -p "$VB_CACHE/pkg"
		vb_lock "$VB_CACHE/pkg/.lock"
		tmp=$(mktemp -d "$VB_CACHE/pkg/.tmp.XXXXXX")
		(cd "$tmp" && apt-get download -q -o APT::Sandbox::User="$(id -un)" \
			"udev=$ver" >&2) || { rm -rf "$tmp"; vb_die "apt-get download udev=$ver failed"; }
		rm -rf "$out"
		dpkg -x "$tmp"/udev_*.deb "$out"
		rm -rf "$tmp"
	fi
	"$out/bin/udevadm" --version >/dev/null || vb_die "$out/bin/udevadm does not run here"
	ln -sfn "$(basename "$out")" "$VB_CACHE/pkg/udev"
	echo "$out"
}

main "$@"
