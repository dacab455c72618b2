#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Print the path of Debian's linux-source-LINE package at the version of the
# cached LINE kernel, downloaded once into the cache (for the package suite,
# which installs it in the VM as an administrator would).
#
#	scripts/pkg/source-deb.sh LINE

set -euo pipefail

VB_PROG=pkg-source-deb
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

main()
{
	local line=${1:?usage: $0 LINE} kdir ver dir deb

	kdir=$("$VB_REPO/scripts/kernel.sh" path "$line")
	ver=$(cat "$kdir/VERSION")
	dir=$VB_CACHE/pkg/debs
	deb=$dir/linux-source-${line}_${ver}_all.deb
	if [[ ! -s "$deb" ]]; then
		mkdir -p "$dir"
		vb_lock "$dir/.lock"
		(cd "$dir" && apt-get download -q -o APT::Sandbox::User="$(id -un)" \
			"linux-source-$line=$ver" >&2) || vb_die "apt-get download linux-source-$line=$ver failed"
		# Older versions are of no use any more.
		find "$dir" -name "linux-source-${line}_*_all.deb" ! -name "${deb##*/}" -delete
	fi
	[[ -s "$deb" ]] || vb_die "no $deb after the download"
	echo "$deb"
}

main "$@"
