#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Build vhost_blk.ko for DKMS (run by dkms in its build directory):
#
#	dkms-build.sh build KERNELVER KERNEL_SOURCE_DIR
#	dkms-build.sh clean
#
# The module includes drivers/vhost/vhost.h of the kernel it is built for.
# Debian's linux-headers packages do not ship that file, so it is looked
# for, in this order:
#   1. KERNEL_SOURCE_DIR/drivers/vhost/ or /lib/modules/KVER/source/...
#      (a full kernel tree: self-built kernels);
#   2. /usr/src/linux-source-X.Y/drivers/vhost/ (an unpacked linux-source);
#   3. /usr/src/linux-source-X.Y.tar.xz (the linux-source-X.Y package):
#      only vhost.h is extracted, into this build directory.
# X.Y is the kernel's major.minor; VHOST_BLK_SRCDIR replaces /usr/src in 2
# and 3 (for sources kept elsewhere).  When none is there the build fails
# with a message that says which package to install.  vhost.h describes
# structures that vhost.ko and vhost_blk.ko share: the source must be of
# the same kernel version as the running kernel (a warning is printed
# when dpkg knows both versions and they differ).

set -eu
SRCDIR=${VHOST_BLK_SRCDIR:-/usr/src}

# dkms keeps this output in make.log; the package's postinst shows the
# lines that start with "vhost-blk:".
msg()
{
	echo "vhost-blk: $*"
}

find_vhost()
{
	local_kver=$1
	local_kdir=$2
	mm=$(echo "$local_kver" | sed -n 's/^\([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p')
	for d in "$local_kdir/drivers/vhost" "/lib/modules/$local_kver/source/drivers/vhost" \
		"$SRCDIR/linux-source-$mm/drivers/vhost"; do
		if [ -f "$d/vhost.h" ]; then
			VHOST_SRC=$d
			return 0
		fi
	done
	tarball=$SRCDIR/linux-source-$mm.tar.xz
	if [ -f "$tarball" ]; then
		msg "extracting drivers/vhost/vhost.h from $tarball (takes a while)"
		rm -rf vhost-src
		mkdir vhost-src
		# --occurrence: stop reading at the member, about 3/4 into the archive.
		xz -dc "$tarball" | tar -x -C vhost-src --strip-components=3 \
			--occurrence=1 "linux-source-$mm/drivers/vhost/vhost.h" || true
		if [ -f vhost-src/vhost.h ]; then
			VHOST_SRC=$PWD/vhost-src
			return 0
		fi
	fi
	msg "error: drivers/vhost/vhost.h of Linux $mm is needed to build for $local_kver;"
	msg "it is not part of the kernel headers.  Install the kernel source:"
	msg "  apt-get install linux-source-$mm"
	msg "then build again: dkms autoinstall -k $local_kver"
	return 1
}

check_version()
{
	src=$(dpkg-query -W -f='${Version}' "linux-source-$mm" 2>/dev/null) || return 0
	img=$(dpkg-query -W -f='${Version}' "linux-image-$1" "linux-image-$1-unsigned" \
		"linux-headers-$1" 2>/dev/null | head -n1) || true
	if [ -n "$src" ] && [ -n "$img" ] && [ "$src" != "$img" ]; then
		msg "warning: linux-source-$mm is $src but kernel $1 is $img;"
		msg "warning: vhost.h must match the running kernel's vhost.ko"
	fi
	return 0
}

case "${1:-}" in
build)
	[ $# -eq 3 ] || { echo "usage: $0 build KERNELVER KERNEL_SOURCE_DIR" >&2; exit 2; }
	find_vhost "$2" "$3"
	case "$VHOST_SRC" in
	"$SRCDIR"/linux-source-*|"$PWD"/vhost-src) check_version "$2" ;;
	esac
	msg "building for $2 with $VHOST_SRC/vhost.h"
	exec make -C "$3" M="$PWD" VHOST_SRC="$VHOST_SRC" KERNELRELEASE="$2" modules
	;;
clean)
	rm -rf vhost-src ./*.o ./*.ko ./*.mod ./*.mod.c .*.cmd modules.order Module.symvers \
		drivers/vhost/*.o drivers/vhost/.*.cmd
	;;
*)
	echo "usage: $0 build KERNELVER KERNEL_SOURCE_DIR | clean" >&2
	exit 2
	;;
esac
