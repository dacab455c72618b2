# SPDX-License-Identifier: GPL-2.0
#
# A writable root inside the test VM, for the packaging suites (sourced).
#
# The VM runs commands in a chroot of the host root, shared read-only over
# 9p.  Installing packages needs a writable /, /etc, /usr, /var and
# /lib/modules, so vr_setup puts an overlay on top of it: the 9p root is
# the lower layer, a tmpfs the upper one.  Everything written goes to the
# tmpfs and is gone when the VM powers off; vr_teardown unmounts it all.
#
#	vr_setup DIR		overlay root at DIR/root (DIR on a tmpfs)
#	vr_run CMD...		run CMD in it (as root, clean environment)
#	vr_modtree		/lib/modules/<abi> in it: the running kernel's
#				drivers/vhost modules from the cache, depmod'ed
#	vr_modprobe_helper	the kernel's request_module() runs the overlay's
#				/sbin/modprobe (restored by vr_teardown)
#	vr_teardown
#
# Needs VHOST_BLK_MODROOT and VHOST_BLK_ABI (set by scripts/vm-run.sh).

VR_DIR=""
VR_ROOT=""
VR_OLD_MODPROBE=""

vr_setup()
{
	local m

	VR_DIR=$1
	VR_ROOT=$VR_DIR/root
	modprobe -d "$VHOST_BLK_MODROOT" overlay || return 1
	mkdir -p "$VR_DIR"
	mount -t tmpfs -o mode=755 vbpkg "$VR_DIR" || return 1
	mkdir -p "$VR_DIR/upper" "$VR_DIR/work" "$VR_ROOT"
	mount -t overlay vbroot \
		-o "lowerdir=/,upperdir=$VR_DIR/upper,workdir=$VR_DIR/work" "$VR_ROOT" ||
		return 1
	# Mounts below / are not part of the lower layer: bring in the ones
	# a package installation and the tests use.
	for m in proc sys dev; do
		mount --rbind "/$m" "$VR_ROOT/$m" || return 1
	done
	mount -t tmpfs -o mode=755 vbrun "$VR_ROOT/run" || return 1
	mount -t tmpfs -o mode=1777 vbtmp "$VR_ROOT/tmp" || return 1
	# The repository and the cache may live under /tmp or /run.
	for m in "$VHOST_BLK_REPO" "$VHOST_BLK_CACHE" "${VHOST_BLK_OUT:-}"; do
		case "$m" in
		/tmp/*|/run/*)
			mkdir -p "$VR_ROOT$m"
			mount --bind "$m" "$VR_ROOT$m" || return 1
			;;
		esac
	done
}

vr_run()
{
	chroot "$VR_ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

vr_modtree()
{
	local abi=$VHOST_BLK_ABI src

	src=$VHOST_BLK_MODROOT/lib/modules/$abi
	# Only drivers/vhost: depmod over all ~4000 modules of the tree took
	# 84 s over 9p under TCG, over these few it takes a second.
	mkdir -p "$VR_ROOT/lib/modules/$abi/kernel/drivers"
	ln -sfn "$src/kernel/drivers/vhost" "$VR_ROOT/lib/modules/$abi/kernel/drivers/vhost"
	cp "$src"/modules.order "$src"/modules.builtin* "$VR_ROOT/lib/modules/$abi/"
	vr_run depmod "$abi"
}

# The kernel runs /proc/sys/kernel/modprobe in the root of PID 1, the VM's
# initramfs, which sees the host root at /host: a small script there
# enters the overlay root and runs its modprobe.
vr_modprobe_helper()
{
	local top=/proc/1/root

	[ -d "$top/host" ] || return 1
	VR_OLD_MODPROBE=$(cat /proc/sys/kernel/modprobe)
	printf '#!/bin/sh\nexec /bin/chroot /host%s /sbin/modprobe "$@"\n' \
		"$VR_ROOT" >"$top/vb-modprobe" || return 1
	chmod 755 "$top/vb-modprobe"
	echo /vb-modprobe >/proc/sys/kernel/modprobe
}

vr_teardown()
{
	[ -n "$VR_OLD_MODPROBE" ] && echo "$VR_OLD_MODPROBE" >/proc/sys/kernel/modprobe
	VR_OLD_MODPROBE=""
	[ -n "$VR_DIR" ] || return 0
	umount -R "$VR_ROOT" 2>/dev/null || umount -R -l "$VR_ROOT" 2>/dev/null
	umount "$VR_DIR" 2>/dev/null || umount -l "$VR_DIR" 2>/dev/null
	VR_DIR=""
	return 0
}
