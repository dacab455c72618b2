#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# 65-dkms-build.sh - how the vhost-blk-dkms package finds vhost.h (host
# suite, TAP).  Debian's dkms builds the packaged source
# (build/deb/vhost-blk-dkms_*.deb, unpacked) for the cached 6.1 kernel in
# a private dkms tree, with VHOST_BLK_SRCDIR standing for /usr/src:
#   - with no kernel source there, the build fails and make.log says which
#     package to install;
#   - with the linux-source-6.1.tar.xz of Debian's package (at the kernel's
#     version) there, dkms-build.sh extracts vhost.h from it and the module
#     builds, for that kernel.
# The VM suite tests/vm/65-dkms.sh installs the package with apt and dkms
# for real (with unpacked sources: extracting from the tarball under TCG
# takes minutes, natively ~15 s).
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO" || exit 1
. "$REPO/scripts/lib.sh"
finish() { tap_done; exit $?; }

if [[ " ${VHOST_BLK_LINES:-6.1 6.12} " != *" 6.1 "* ]]; then
	echo "1..0 # SKIP needs the 6.1 line"
	exit 0
fi
T=$REPO/build/dkms-host
rm -rf "$T"
mkdir -p "$T/pkg" "$T/tree" "$T/nosrc" "$T/src"
deb=$(ls build/deb/vhost-blk-dkms_*_all.deb 2>/dev/null | tail -n1)
kdir=$(scripts/kernel.sh path 6.1 2>/dev/null)
srcdeb=$(scripts/pkg/source-deb.sh 6.1 2>/dev/null)
if [ -z "$deb" ] || [ -z "$kdir" ] || [ -z "$srcdeb" ] || ! command -v dkms >/dev/null; then
	notok "inputs: build/deb (make deb), kernel 6.1, linux-source-6.1 deb, dkms"
	finish
fi
abi=${kdir##*/}
dpkg-deb -x "$deb" "$T/pkg"
ver=$(dpkg-deb -f "$deb" Version)
src=$T/pkg/usr/src
dk() { dkms "$@" --dkmstree "$T/tree" --sourcetree "$src"; }
log=$T/tree/vhost-blk/$ver/build/make.log
if dk add -m vhost-blk -v "$ver" >/dev/null; then
	ok "dkms add vhost-blk/$ver"
else
	notok "dkms add vhost-blk/$ver"
	finish
fi

# No source at all: a clear failure.
out=$(VHOST_BLK_SRCDIR=$T/nosrc dk build -m vhost-blk -v "$ver" -k "$abi" \
	--kernelsourcedir "$kdir/build" 2>&1)
rc=$?
msg=$(grep '^vhost-blk:' "$log" 2>/dev/null)
sed 's/^/# /' <<<"$msg"
if [ $rc -ne 0 ] && grep -qF 'vhost-blk:   apt-get install linux-source-6.1' <<<"$msg" &&
	grep -qF "drivers/vhost/vhost.h of Linux 6.1 is needed to build for $abi" <<<"$msg"; then
	ok "no kernel source: the build fails and make.log names linux-source-6.1"
else
	notok "no kernel source: the build fails and make.log names linux-source-6.1 (rc $rc)"
	sed 's/^/# /' <<<"$out" | tail -5
fi

# Debian's tarball: vhost.h is extracted from it.
t0=$SECONDS
dpkg-deb --fsys-tarfile "$srcdeb" | tar -xf - -C "$T/src" --strip-components=3 \
	./usr/src/linux-source-6.1.tar.xz
out=$(VHOST_BLK_SRCDIR=$T/src dk build -m vhost-blk -v "$ver" -k "$abi" \
	--kernelsourcedir "$kdir/build" 2>&1)
rc=$?
ko=$T/tree/vhost-blk/$ver/$abi/x86_64/module/vhost_blk.ko
[ -f "$ko" ] || ko=$(ls "$ko".* 2>/dev/null | head -n1)
echo "# $((SECONDS - t0)) s"
if [ $rc -eq 0 ] && [ -n "$ko" ] && [ -f "$ko" ] &&
	modinfo -F vermagic "$ko" | grep -q "^$abi " &&
	grep -q "extracting drivers/vhost/vhost.h from $T/src/linux-source-6.1.tar.xz" \
		"$T/tree/vhost-blk/$ver/$abi/x86_64/log/make.log" 2>/dev/null; then
	ok "linux-source-6.1.tar.xz: vhost.h extracted, module built for $abi"
else
	notok "linux-source-6.1.tar.xz: vhost.h extracted, module built for $abi (rc $rc)"
	sed 's/^/# /' <<<"$out" | tail -10
fi
rm -rf "$T"
finish
