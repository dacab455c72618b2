#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Install the Debian packages listed in scripts/deps.list and
# scripts/deps.d/*.list that are not installed yet.  Instant when nothing is
# missing.  Needs root (or sudo) only when something must be installed.
#
#	scripts/deps.sh			install what is missing
#	scripts/deps.sh --list		print the wanted packages
#	scripts/deps.sh --missing	print the missing ones, install nothing

set -euo pipefail

VB_PROG=deps.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

wanted()
{
	local f

	for f in "$VB_REPO/scripts/deps.list" "$VB_REPO"/scripts/deps.d/*.list; do
		[[ -r "$f" ]] || continue
		sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$f"
	done | sort -u
}

# Packages of "$@" not in state "ii".
missing()
{
	local p

	for p in "$@"; do
		[[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null)" = "ii " ]] ||
			printf '%s\n' "$p"
	done
}

main()
{
	local pkgs todo

	mapfile -t pkgs < <(wanted)
	case "${1:-}" in
	--list)
		printf '%s\n' "${pkgs[@]}"
		return
		;;
	--missing)
		missing "${pkgs[@]}"
		return
		;;
	"")
		;;
	*)
		sed -n '4,10s/^#\t\{0,1\}//p' "$0" >&2
		exit 2
		;;
	esac

	mapfile -t todo < <(missing "${pkgs[@]}")
	[[ ${#todo[@]} -eq 0 ]] && return 0
	vb_log "installing ${todo[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if ! vb_as_root apt-get install -y -q --no-install-recommends "${todo[@]}" >&2; then
		vb_log "install failed, refreshing the apt lists and retrying"
		vb_as_root apt-get update -q >&2
		vb_as_root apt-get install -y -q --no-install-recommends "${todo[@]}" >&2 ||
			vb_die "could not install: ${todo[*]}"
	fi
	mapfile -t todo < <(missing "${todo[@]}")
	[[ ${#todo[@]} -eq 0 ]] || vb_die "still missing after install: ${todo[*]}"
}

main "$@"
