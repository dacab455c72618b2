#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the tiny L2 guest used on vhost-blk-pci: a minimal 64-bit kernel
# from Debian's linux-source-6.1 and an initramfs with busybox, a static
# fio (built from Debian's fio source package) and mke2fs/e2fsck.
#
#   scripts/guest-build.sh     build what is missing, then print
#                              GUEST_KERNEL=<bzImage> and GUEST_INITRD=<cpio.gz>
#
# Cache: $CACHE/guest/linux-<ver>/            whole source tree (extracted once)
#        $CACHE/guest/kernel-<ver>-<cfghash>/  bzImage
#        $CACHE/guest/fio-<ver>/fio            static fio
#        $CACHE/guest/initramfs-<hash>.cpio.gz
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
for lib in "$REPO"/scripts/lib*.sh; do
	[ -e "$lib" ] && . "$lib"
done
CACHE=${VB_CACHE:-${VHOST_BLK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vhost-blk}}
. "$REPO/scripts/guest/apt.sh"

say() { echo "guest-build: $*" >&2; }
die() { echo "guest-build: error: $*" >&2; exit 1; }

GDIR=$CACHE/guest
JOBS=${VHOST_BLK_JOBS:-2}
mkdir -p "$GDIR"
# One build at a time (several suites/engineers may ask concurrently).
exec 9>"$GDIR/.lock"
flock 9

need_pkgs build-essential bc flex bison libelf-dev libssl-dev xz-utils \
	busybox-static e2fsprogs cpio gzip dpkg-dev libaio-dev zlib1g-dev

# Options on top of tinyconfig (which is 32-bit here: 64BIT explicitly).
# For a guest under nested KVM, where every VM exit costs about a
# millisecond (TCG runs the L1 hypervisor's exit handler):
# HYPERVISOR_GUEST PARAVIRT KVM_GUEST give kvm-clock (without it the guest
# cannot calibrate its TSC there, having no HPET or PM timer without ACPI,
# and runs on jiffies) and PV EOI; NO_HZ_IDLE and HZ_100 instead of
# tinyconfig's periodic 250 Hz tick spare the exits of idle ticks.  Under
# TCG they change nothing that matters.
# PCIEPORTBUS HOTPLUG_PCI HOTPLUG_PCI_PCIE: native PCIe hot-plug (pciehp)
# in QEMU's pcie-root-port slots; the guest has no ACPI, so QEMU runs with
# native hot-plug on q35 (tests/vm/57-hotplug.sh).
KCONFIG_ON="64BIT PRINTK PRINTK_TIME TTY SERIAL_8250 SERIAL_8250_CONSOLE
BLK_DEV_INITRD RD_GZIP DEVTMPFS DEVTMPFS_MOUNT PROC_FS SYSFS BINFMT_ELF
BINFMT_SCRIPT PCI PCI_MSI VIRTIO_MENU VIRTIO_PCI VIRTIO_MMIO
VIRTIO_MMIO_CMDLINE_DEVICES VIRTIO_BLK BLOCK BLK_DEV MULTIUSER AIO IO_URING
FUTEX EPOLL SIGNALFD TIMERFD EVENTFD SHMEM TMPFS POSIX_TIMERS FILE_LOCKING
SYSVIPC EXT4_FS KERNEL_LZ4 SMP X86_MPPARSE HYPERVISOR_GUEST PARAVIRT
KVM_GUEST NO_HZ_IDLE HIGH_RES_TIMERS HZ_100 PCIEPORTBUS HOTPLUG_PCI
HOTPLUG_PCI_PCIE"
KCONFIG_OFF="HZ_PERIODIC HZ_250"
KCONFIG_VAL="NR_CPUS=4"

# --- kernel -----------------------------------------------------------------
ksrc_tarball() {
	local t=/usr/src/linux-source-6.1.tar.xz
	if [ -e "$t" ]; then
		echo "$t"
		return
	fi
	local dl=$GDIR/dl
	mkdir -p "$dl"
	if ! ls "$dl"/usr/src/linux-source-6.1.tar.xz >/dev/null 2>&1; then
		say "downloading linux-source-6.1"
		(cd "$dl" && rm -f linux-source-6.1_*.deb &&
			apt-get download -qq linux-source-6.1 >&2 &&
			dpkg -x linux-source-6.1_*.deb "$dl" && rm -f linux-source-6.1_*.deb)
	fi
	echo "$dl/usr/src/linux-source-6.1.tar.xz"
}

build_kernel() {
	local tarball ver tree hash kdir
	tarball=$(ksrc_tarball)
	# The version is in the tree's Makefile; key by the tarball's identity.
	ver=$(stat -c '%s-%Y' "$tarball")
	tree=$GDIR/linux-$ver
	hash=$( { echo "$KCONFIG_ON"; echo "$KCONFIG_OFF"; echo "$KCONFIG_VAL"; } |
		sha256sum | cut -c1-12)
	kdir=$GDIR/kernel-$ver-$hash
	if [ -s "$kdir/bzImage" ]; then
		echo "$kdir/bzImage"
		return
	fi
	if [ ! -e "$tree/.extracted" ]; then
		say "extracting the whole linux-source-6.1 tree (once, ~1-2 min)"
		rm -rf "$tree" "$tree.tmp"
		mkdir -p "$tree.tmp"
		tar -xf "$tarball" -C "$tree.tmp" --strip-components=1
		mv "$tree.tmp" "$tree"
		touch "$tree/.extracted"
	fi
	rm -rf "$kdir"
	mkdir -p "$kdir/obj"
	say "configuring the L2 kernel (tinyconfig + $(echo $KCONFIG_ON | wc -w) options)"
	make -s -C "$tree" O="$kdir/obj" tinyconfig >&2
	local o args=()
	for o in $KCONFIG_ON; do args+=(--enable "$o"); done
	for o in $KCONFIG_OFF; do args+=(--disable "$o"); done
	for o in $KCONFIG_VAL; do args+=(--set-val "${o%%=*}" "${o#*=}"); done
	"$tree/scripts/config" --file "$kdir/obj/.config" "${args[@]}"
	make -s -C "$tree" O="$kdir/obj" olddefconfig >&2
	# olddefconfig must keep what was asked for.
	for o in $KCONFIG_ON; do
		grep -q "^CONFIG_$o=y" "$kdir/obj/.config" ||
			say "warning: CONFIG_$o did not stick"
	done
	say "building the L2 kernel (make -j$JOBS bzImage, ~4 min on 2 cores)"
	make -C "$tree" O="$kdir/obj" -j"$JOBS" bzImage >"$kdir/build.log" 2>&1 ||
		{ tail -30 "$kdir/build.log" >&2; die "kernel build failed"; }
	cp "$kdir/obj/arch/x86/boot/bzImage" "$kdir/bzImage"
	cp "$kdir/obj/.config" "$kdir/config"
	rm -rf "$kdir/obj"
	echo "$kdir/bzImage"
}

# --- static fio ---------------------------------------------------------------
build_fio() {
	ensure_deb_src fio || die "cannot get the fio source package"
	local ver dir
	ver=$(apt-cache showsrc fio | sed -n 's/^Version: //p' | sort -V | tail -1)
	dir=$GDIR/fio-$ver
	if [ -x "$dir/fio" ]; then
		echo "$dir/fio"
		return
	fi
	rm -rf "$dir"
	mkdir -p "$dir/dl"
	say "fetching and building a static fio $ver"
	(cd "$dir/dl" && apt-get source -qq "fio=$ver" >/dev/null 2>&1) ||
		die "apt-get source fio failed"
	local src
	src=$(find "$dir/dl" -mindepth 1 -maxdepth 1 -type d | head -1)
	(cd "$src" &&
		./configure --build-static --disable-numa --disable-rdma \
			--disable-rados --disable-rbd --disable-http \
			--disable-gfapi --disable-pmem --disable-libnfs \
			--disable-tcmalloc --disable-native --disable-xnvme \
			--disable-libzbc --disable-dfs >"$dir/configure.log" 2>&1 &&
		make -j"$JOBS" fio >"$dir/build.log" 2>&1) ||
		{ tail -20 "$dir"/*.log >&2; die "fio build failed"; }
	cp "$src/fio" "$dir/fio"
	strip "$dir/fio"
	rm -rf "$dir/dl"
	echo "$dir/fio"
}

# --- initramfs ----------------------------------------------------------------
copy_with_libs() {	# copy_with_libs ROOT BINARY...
	local root=$1 bin lib
	shift
	for bin in "$@"; do
		install -D -m 0755 "$bin" "$root/bin/$(basename "$bin")"
		for lib in $(ldd "$bin" 2>/dev/null | grep -o '/[^ ]*'); do
			[ -e "$lib" ] || continue
			install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
		done
	done
}

build_initramfs() {
	local fio=$1 hash out root
	hash=$( { sha256sum "$fio" /bin/busybox /sbin/mke2fs /sbin/e2fsck \
		"$REPO"/scripts/guest/init; echo v1; } | sha256sum | cut -c1-12)
	out=$GDIR/initramfs-$hash.cpio.gz
	if [ -s "$out" ]; then
		echo "$out"
		return
	fi
	say "building the L2 initramfs"
	root=$(mktemp -d)
	mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,mnt,etc,root}
	install -m 0755 /bin/busybox "$root/bin/busybox"
	install -m 0755 "$fio" "$root/bin/fio"
	copy_with_libs "$root" /sbin/mke2fs /sbin/e2fsck
	ln -s mke2fs "$root/bin/mkfs.ext4"
	ln -s e2fsck "$root/bin/fsck.ext4"
	[ -e /etc/mke2fs.conf ] && install -m 0644 /etc/mke2fs.conf "$root/etc/"
	install -m 0755 "$REPO/scripts/guest/init" "$root/init"
	(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 |
		gzip -9) >"$out.tmp"
	rm -rf "$root"
	mv "$out.tmp" "$out"
	echo "$out"
}

KERNEL=$(build_kernel)
FIO=$(build_fio)
INITRD=$(build_initramfs "$FIO")
echo "GUEST_KERNEL=$KERNEL"
echo "GUEST_INITRD=$INITRD"
