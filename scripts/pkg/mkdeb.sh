#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the Debian packages of vhost-blk with dpkg-deb (make deb):
#
#	scripts/pkg/mkdeb.sh [OUTDIR]	default OUTDIR: build/deb
#
#   vhost-blk-dkms_<v>_all.deb		/usr/src/vhost-blk-<v>/ (the module's
#					source, dkms.conf, dkms-build.sh) and
#					the udev rule; DKMS builds it
#   vhost-blk-qemu-patches_<v>_all.deb	/usr/share/vhost-blk/qemu-patches/
#
# The version is 0.1.<number of commits> (VHOST_BLK_DEB_VERSION overrides).
# Prints the paths of the packages.

set -euo pipefail

VB_PROG=mkdeb
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

P=$VB_REPO/packaging

# subst FILE - FILE with @VERSION@ replaced.
subst()
{
	sed "s/@VERSION@/$VERSION/g" "$1"
}

# finish ROOT NAME - control file, docs, md5sums, then the .deb.
finish()
{
	local root=$1 name=$2 doc deb

	doc=$root/usr/share/doc/$name
	mkdir -p "$doc" "$root/DEBIAN"
	install -m 644 "$P/deb/copyright" "$doc/copyright"
	printf '%s (%s) unstable; urgency=medium\n\n  * Built from the vhost-blk repository (%s).\n\n -- vhost-blk developers <vhost-blk@localhost>  %s\n' \
		"$name" "$VERSION" "$COMMIT" "$DATE" | gzip -9n >"$doc/changelog.gz"
	subst "$P/deb/$name.control" |
		sed "s/@SIZE@/$(du -sk --exclude=DEBIAN "$root" | cut -f1)/" >"$root/DEBIAN/control"
	for s in postinst prerm; do
		if [[ -f "$P/deb/$name.$s" ]]; then
			subst "$P/deb/$name.$s" >"$root/DEBIAN/$s"
			chmod 755 "$root/DEBIAN/$s"
		fi
	done
	(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
		xargs -0 md5sum >DEBIAN/md5sums)
	deb=$OUT/${name}_${VERSION}_all.deb
	dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
	echo "$deb"
}

dkms_pkg()
{
	local root=$TMP/dkms src

	src=$root/usr/src/vhost-blk-$VERSION
	mkdir -p "$src"
	(cd "$VB_REPO" && git ls-files -z Kbuild drivers include 2>/dev/null ||
		find Kbuild drivers include -type f -print0) |
		(cd "$VB_REPO" && xargs -0 cp --parents -t "$src")
	subst "$P/dkms/dkms.conf" >"$src/dkms.conf"
	install -m 755 "$P/dkms/dkms-build.sh" "$src/dkms-build.sh"
	install -D -m 644 "$P/udev/60-vhost-blk.rules" "$root/lib/udev/rules.d/60-vhost-blk.rules"
	finish "$root" vhost-blk-dkms
}

qemu_pkg()
{
	local root=$TMP/qemu dst p

	dst=$root/usr/share/vhost-blk/qemu-patches
	mkdir -p "$dst"
	for p in "$VB_REPO"/qemu-patches/*.patch; do
		install -m 644 "$p" "$dst/"
		basename "$p" >>"$dst/series"
	done
	install -D -m 644 "$P/deb/vhost-blk-qemu-patches.README" \
		"$root/usr/share/doc/vhost-blk-qemu-patches/README"
	finish "$root" vhost-blk-qemu-patches
}

main()
{
	OUT=${1:-$VB_REPO/build/deb}
	COMMIT=$(git -C "$VB_REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
	VERSION=${VHOST_BLK_DEB_VERSION:-0.1.$(git -C "$VB_REPO" rev-list --count HEAD 2>/dev/null || echo 0)}
	DATE=$(date -R -d "@$(git -C "$VB_REPO" log -1 --format=%ct 2>/dev/null || date +%s)")
	mkdir -p "$OUT"
	OUT=$(cd "$OUT" && pwd)
	rm -f "$OUT"/vhost-blk-*.deb
	TMP=$(mktemp -d)
	trap 'rm -rf "$TMP"' EXIT
	umask 022
	dkms_pkg
	qemu_pkg
}

main "$@"
