#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build qemu-system-x86_64 with the vhost-blk-pci series applied, or the
# test bed's QEMU that runs the L1 VM.
#
#   scripts/qemu-build.sh            build if needed, print the build dir
#   scripts/qemu-build.sh --path     same (the build dir holds qemu-system-x86_64)
#   scripts/qemu-build.sh --src      print the patched source tree
#   scripts/qemu-build.sh --testbed [--src]
#                                    the same for the test bed's QEMU
#
# Source: Debian bookworm's `qemu` source package (fetched with
# `apt-get source`, Debian's patches applied by dpkg-source), committed to a
# git tree, then `git am qemu-patches/*.patch`.  The result is cached in
# $CACHE/qemu/<srcver>-<serieshash>/ and rebuilt only when missing.
#
# --testbed builds the same source with tests/qemu-testbed/*.patch instead:
# fixes to QEMU's TCG emulation of AMD SVM that the L1 VM needs to run its
# own guests under KVM (see Documentation/testing.rst, "L2 under KVM").
# scripts/vm-run.sh boots L1 with it; it is never the QEMU under test.
# Cached in $CACHE/qemu/<srcver>-testbed-<serieshash>/.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
for lib in "$REPO"/scripts/lib*.sh; do
	[ -e "$lib" ] && . "$lib"
done
CACHE=${VB_CACHE:-${VHOST_BLK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vhost-blk}}

say() { echo "qemu-build: $*" >&2; }
die() { echo "qemu-build: error: $*" >&2; exit 1; }

PATCHDIR=$REPO/qemu-patches
FLAVOUR=
if [ "${1:-}" = --testbed ]; then
	PATCHDIR=$REPO/tests/qemu-testbed
	FLAVOUR=testbed-
	shift
fi
mode=${1:-}

BUILD_DEPS="ninja-build meson pkg-config libglib2.0-dev libpixman-1-dev
libfdt-dev zlib1g-dev libaio-dev liburing-dev libcap-ng-dev libattr1-dev
flex bison dpkg-dev git python3 build-essential"

. "$REPO/scripts/guest/apt.sh"

need_pkgs $BUILD_DEPS
ensure_deb_src qemu || die "cannot get the qemu source package"

# The version apt-get source would fetch (the highest one).
SRCVER=$(apt-cache showsrc qemu | sed -n 's/^Version: //p' | sort -V | tail -1)
[ -n "$SRCVER" ] || die "cannot resolve the qemu source version"
SERIESHASH=$(shopt -s nullglob; p=("$PATCHDIR"/*.patch)
	{ [ ${#p[@]} -eq 0 ] || cat "${p[@]}"; } | sha256sum | cut -c1-12)
SAFEVER=$(echo "$SRCVER" | tr ':~+' '_._')
TOP=$CACHE/qemu/$SAFEVER-$FLAVOUR$SERIESHASH
SRC=$TOP/src
BLD=$TOP/build

if [ -x "$BLD/qemu-system-x86_64" ] && [ -e "$TOP/.done" ]; then
	[ "$mode" = "--src" ] && echo "$SRC" || echo "$BLD"
	exit 0
fi

# One build at a time (several suites/engineers may ask concurrently).
mkdir -p "$CACHE/qemu"
exec 9>"$CACHE/qemu/.lock"
flock 9
if [ -x "$BLD/qemu-system-x86_64" ] && [ -e "$TOP/.done" ]; then
	[ "$mode" = "--src" ] && echo "$SRC" || echo "$BLD"
	exit 0
fi

mkdir -p "$CACHE/qemu/dl/$SAFEVER"
DL=$CACHE/qemu/dl/$SAFEVER
if ! ls "$DL"/*.dsc >/dev/null 2>&1; then
	say "fetching qemu $SRCVER source"
	(cd "$DL" && apt-get source --download-only -qq "qemu=$SRCVER" >&2)
fi
DSC=$(ls "$DL"/*.dsc | head -1)

rm -rf "$TOP"
mkdir -p "$TOP"
say "extracting $(basename "$DSC") (Debian patches applied)"
dpkg-source --no-check -x "$DSC" "$SRC" >&2
rm -f "$TOP"/*.orig.tar.* "$TOP"/*.debian.tar.*

say "committing the Debian tree and applying ${PATCHDIR#"$REPO"/}/"
cd "$SRC"
git init -q
git config user.name "vhost-blk build"
git config user.email "vhost-blk@localhost"
git add -A -f .
git commit -q -m "qemu $SRCVER (Debian source, Debian patches applied)"
shopt -s nullglob
patches=("$PATCHDIR"/*.patch)
if [ ${#patches[@]} -gt 0 ]; then
	git am -q --committer-date-is-author-date "${patches[@]}" >&2 ||
		die "git am of ${PATCHDIR#"$REPO"/}/ failed (see $SRC)"
fi
[ "$mode" = "--src" ] && { echo "$SRC"; exit 0; }

# The +dfsg tarball has no firmware blobs: do not unpack the edk2 ones.
# (Build-tree-only tweak, not part of the series.)
sed -i 's/unpack_edk2_blobs = bzip2.found()/unpack_edk2_blobs = false/' meson.build

mkdir -p "$BLD"
cd "$BLD"
say "configuring"
"$SRC"/configure --target-list=x86_64-softmmu --without-default-features \
	--enable-kvm --enable-vhost-kernel --enable-vhost-user \
	--enable-linux-aio --enable-linux-io-uring --enable-virtfs \
	--enable-attr --enable-cap-ng --enable-tools --enable-plugins \
	--disable-install-blobs --disable-docs --disable-werror \
	>"$TOP/configure.log" 2>&1 || { tail -30 "$TOP/configure.log" >&2; die "configure failed"; }
say "building (ninja -j${VHOST_BLK_JOBS:-2}; ~5 min on 2 cores)"
ninja -j"${VHOST_BLK_JOBS:-2}" qemu-system-x86_64 >"$TOP/build.log" 2>&1 ||
	{ tail -40 "$TOP/build.log" >&2; die "build failed, see $TOP/build.log"; }
# The instruction-counting plugin (optional, for measurements).
ninja -j"${VHOST_BLK_JOBS:-2}" tests/plugin/libinsn.so >>"$TOP/build.log" 2>&1 || true
touch "$TOP/.done"
echo "$BLD"
