# SPDX-License-Identifier: GPL-2.0
# Shared apt helpers for qemu-build.sh / guest-build.sh (sourced).

# need_pkgs PKG...: install the packages that are not installed yet.
need_pkgs() {
	local missing=() p
	for p in "$@"; do
		[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" = \
			"install ok installed" ] || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "apt: installing ${missing[*]}" >&2
	apt-get update -qq >&2 || true
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}

VHOST_BLK_SRCFILE=/etc/apt/sources.list.d/vhost-blk-deb-src.sources

have_src() {
	local out
	out=$(apt-cache showsrc "$1" 2>/dev/null || true)
	[[ "$out" == *"Version:"* ]]
}

# ensure_deb_src PKG: make `apt-get source PKG` work by adding deb-src
# entries for the same Debian archive and suites apt already uses, in a
# separate file.
ensure_deb_src() {
	have_src "$1" && return 0
	echo "apt: adding deb-src entries ($VHOST_BLK_SRCFILE)" >&2
	local tmp f
	tmp=$(mktemp)
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -e "$f" ] && [ "$f" != "$VHOST_BLK_SRCFILE" ] || continue
		awk 'BEGIN { RS = ""; ORS = "\n\n" }
		     /(^|\n)Types:[ \t]*deb([ \t]|\n|$)/ && /debian\.(org|net)/ {
			sub(/Types:[ \t]*deb/, "Types: deb-src"); print }' "$f" >>"$tmp"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -e "$f" ] || continue
		grep -E '^deb[[:space:]].*debian\.(org|net)' "$f" |
			awk '{ c = ""; for (i = 4; i <= NF; i++) c = c " " $i
			       print "Types: deb-src\nURIs: " $2 "\nSuites: " $3 "\nComponents:" c "\n" }' \
			>>"$tmp" || true
	done
	if [ ! -s "$tmp" ]; then
		rm -f "$tmp"
		echo "apt: no Debian apt source found to mirror as deb-src" >&2
		return 1
	fi
	install -m 0644 "$tmp" "$VHOST_BLK_SRCFILE"
	rm -f "$tmp"
	apt-get update -qq >&2
	have_src "$1" || {
		echo "apt: apt-cache showsrc $1 finds nothing even with $VHOST_BLK_SRCFILE" >&2
		return 1
	}
}
