#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build qemu-system-x86_64 with the vhost-blk-pci series applied, or the
# test bed's QEMU that runs the L1 VM.
#
#   scripts/qemu-build.sh            build if needed, print the build dir
#   scripts/qemu-build.sh --path     same (the build dir holds qemu-system-x86_64
#                                    and qemu-storage-daemon)
#   scripts/qemu-build.sh --src      print the patched source tree
#   scripts/qemu-build.sh --key      print the cache key, build nothing
#   scripts/qemu-build.sh --recipe   print the build recipe the key hashes
#   scripts/qemu-build.sh --testbed [--src|--key|--recipe]
#                                    the same for the test bed's QEMU
#
# Source: Debian bookworm's `qemu` source package (fetched with
# `apt-get source`, Debian's patches applied by dpkg-source), committed to a
# git tree, then `git am qemu-patches/*.patch`.  The result is cached in
# $CACHE/qemu/<srcver>-<key>/ and rebuilt only when missing.  The key hashes
# everything in this tree the build depends on: the patch series, the
# configure options, the edit to the build tree and the ninja targets; a
# change to any of them builds into a new directory (the old one is kept).
# The QEMU under test is configured with the vhost-user-blk export, and
# its build dir also holds qemu-storage-daemon (the bench's vhost-user-blk
# back end, Documentation/performance.rst).
#
# --testbed builds the same source with tests/qemu-testbed/*.patch instead:
# fixes to QEMU's TCG emulation of AMD SVM that the L1 VM needs to run its
# own guests under KVM (see Documentation/testing.rst, "L2 under KVM").
# scripts/vm-run.sh boots L1 with it; it is never the QEMU under test.
# Only qemu-system-x86_64 (no storage daemon).  Cached in
# $CACHE/qemu/<srcver>-testbed-<key>/.
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

# The build recipe besides the source and the series: every line of it
# goes into the cache key.  Both flavours share the configure options; the
# QEMU under test adds the vhost-user-blk export (it needs vhost-user and
# the tools, both enabled) and builds qemu-storage-daemon.
CONFIGURE_OPTS=(--target-list=x86_64-softmmu --without-default-features
	--enable-kvm --enable-vhost-kernel --enable-vhost-user
	--enable-linux-aio --enable-linux-io-uring --enable-virtfs
	--enable-attr --enable-cap-ng --enable-tools --enable-plugins
	--disable-install-blobs --disable-docs --disable-werror)
TARGETS=(qemu-system-x86_64)
if [ -z "$FLAVOUR" ]; then
	CONFIGURE_OPTS+=(--enable-vhost-user-blk-server)
	TARGETS+=(storage-daemon/qemu-storage-daemon)
fi
# Built when possible, never required: the instruction-counting plugin.
OPTIONAL_TARGETS=(tests/plugin/libinsn.so)
# The +dfsg tarball has no firmware blobs: do not unpack the edk2 ones.
# (Build-tree-only edit of meson.build, not part of the series.)
TREE_EDIT='s/unpack_edk2_blobs = bzip2.found()/unpack_edk2_blobs = false/'

BUILD_DEPS="ninja-build meson pkg-config libglib2.0-dev libpixman-1-dev
libfdt-dev zlib1g-dev libaio-dev liburing-dev libcap-ng-dev libattr1-dev
flex bison dpkg-dev git python3 build-essential"

. "$REPO/scripts/guest/apt.sh"

need_pkgs $BUILD_DEPS
ensure_deb_src qemu || die "cannot get the qemu source package"

# The version apt-get source would fetch (the highest one).
SRCVER=$(apt-cache showsrc qemu | sed -n 's/^Version: //p' | sort -V | tail -1)
[ -n "$SRCVER" ] || die "cannot resolve the qemu source version"
# The recipe as text: what the key hashes after the series, and what the
# build dir keeps (recipe.txt) to say how it was made.
recipe() {
	printf 'configure %s\n' "${CONFIGURE_OPTS[@]}"
	printf 'target %s\n' "${TARGETS[@]}"
	printf 'optional-target %s\n' "${OPTIONAL_TARGETS[@]}"
	printf 'tree-edit meson.build %s\n' "$TREE_EDIT"
}
KEY=$(shopt -s nullglob; p=("$PATCHDIR"/*.patch)
	{ [ ${#p[@]} -eq 0 ] || cat "${p[@]}"; recipe; } | sha256sum | cut -c1-12)
SAFEVER=$(echo "$SRCVER" | tr ':~+' '_._')
TOP=$CACHE/qemu/$SAFEVER-$FLAVOUR$KEY
SRC=$TOP/src
BLD=$TOP/build
[ "$mode" = --key ] && { echo "$SAFEVER-$FLAVOUR$KEY"; exit 0; }
[ "$mode" = --recipe ] && { recipe; exit 0; }

# Done: every required target is next to qemu-system-x86_64.
built() {
	local t
	[ -e "$TOP/.done" ] || return 1
	for t in "${TARGETS[@]}"; do
		[ -x "$BLD/${t##*/}" ] || return 1
	done
}
if built; then
	[ "$mode" = "--src" ] && echo "$SRC" || echo "$BLD"
	exit 0
fi

# One build at a time (several suites/engineers may ask concurrently).
mkdir -p "$CACHE/qemu"
exec 9>"$CACHE/qemu/.lock"
flock 9
if built; then
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

sed -i "$TREE_EDIT" meson.build

mkdir -p "$BLD"
cd "$BLD"
recipe >"$TOP/recipe.txt"
say "configuring"
"$SRC"/configure "${CONFIGURE_OPTS[@]}" \
	>"$TOP/configure.log" 2>&1 || { tail -30 "$TOP/configure.log" >&2; die "configure failed"; }
say "building ${TARGETS[*]} (ninja -j${VHOST_BLK_JOBS:-2}; ~6 min on 2 cores)"
ninja -j"${VHOST_BLK_JOBS:-2}" "${TARGETS[@]}" >"$TOP/build.log" 2>&1 ||
	{ tail -40 "$TOP/build.log" >&2; die "build failed, see $TOP/build.log"; }
ninja -j"${VHOST_BLK_JOBS:-2}" "${OPTIONAL_TARGETS[@]}" >>"$TOP/build.log" 2>&1 || true
# Every program next to qemu-system-x86_64 (the storage daemon is built
# in storage-daemon/).
for t in "${TARGETS[@]}"; do
	[ "$t" = "${t##*/}" ] || ln -sfn "$t" "$BLD/${t##*/}"
done
touch "$TOP/.done"
echo "$BLD"
