# SPDX-License-Identifier: GPL-2.0
#
# libvirt in the overlay root of scripts/pkg/vmroot.sh, for the libvirt
# blocks of Documentation/admin-guide.rst (sourced by tests/vm/65-dkms.sh).
#
# The host's libvirt packages (scripts/deps.d/pkg.list: libvirt-daemon,
# libvirt-daemon-driver-qemu, libvirt-clients) are in the lower layer; what
# libvirt-daemon-system would add on a real machine is done here by hand:
# the libvirt-qemu user (in group kvm, with its own group, as that package's
# postinst creates it) and libvirt's directories.  Its systemd units are
# replaced by starting virtlogd and libvirtd directly.
#
#	lv_setup KERNEL INITRD	users, directories, cgroup2, and the guest's
#				kernel and initramfs where the guide's domain
#				boots them from
#	lv_start		start (or restart) virtlogd and libvirtd with
#				the overlay's /etc/libvirt/qemu.conf
#	lv_stop			stop them (by their pid files)
#	lv_qemu_pid		pid of the running QEMU of domain vm1
#
# The test VM runs everything in a chroot of the host root.  libvirt enters
# a QEMU's mount namespace with setns(), which resets the root to the
# namespace's root: the VM's initramfs, not the chroot.  So QEMU runs
# without a private /dev here (namespaces = [] is added to qemu.conf); the
# device cgroup, which does not depend on the root, is in force.

LV_BOOT=/var/lib/libvirt/boot
LV_SERIAL=/var/log/libvirt/qemu/vm1-serial.log

lv_setup()
{
	local kernel=$1 initrd=$2 d

	vr_run getent group kvm >/dev/null || vr_run addgroup --quiet --system kvm || return 1
	vr_run adduser --quiet --system --ingroup kvm --disabled-login --disabled-password \
		--home /var/lib/libvirt --no-create-home libvirt-qemu || return 1
	vr_run addgroup --quiet --system libvirt-qemu &&
		vr_run adduser --quiet libvirt-qemu libvirt-qemu || return 1
	for d in /etc/libvirt/qemu /var/log/libvirt/qemu /var/lib/libvirt/qemu \
		/var/cache/libvirt/qemu "$LV_BOOT"; do
		mkdir -p "$VR_ROOT$d" || return 1
	done
	vr_run chown libvirt-qemu:libvirt-qemu /var/lib/libvirt/qemu || return 1
	install -m 644 "$kernel" "$VR_ROOT$LV_BOOT/vm1-vmlinuz" &&
		install -m 644 "$initrd" "$VR_ROOT$LV_BOOT/vm1-initrd" || return 1
	# The device cgroup: cgroup v2, where libvirt attaches a BPF device
	# filter to each QEMU's cgroup.
	if ! mountpoint -q "$VR_ROOT/sys/fs/cgroup"; then
		mount -t cgroup2 vbcgroup "$VR_ROOT/sys/fs/cgroup" || return 1
	fi
}

lv_stop()
{
	local f pid i

	for f in libvirtd virtlogd; do
		pid=$(cat "$VR_ROOT/run/$f.pid" 2>/dev/null) || continue
		kill "$pid" 2>/dev/null || continue
		for i in $(seq 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
	done
	return 0
}

lv_start()
{
	local i

	lv_stop
	grep -q '^namespaces' "$VR_ROOT/etc/libvirt/qemu.conf" 2>/dev/null ||
		echo 'namespaces = []' >>"$VR_ROOT/etc/libvirt/qemu.conf"
	vr_run virtlogd -d && vr_run libvirtd -d || return 1
	# libvirtd probes the QEMU binaries it finds before it answers.
	for i in $(seq 60); do
		vr_run timeout 20 virsh -q -c qemu:///system uri >/dev/null 2>&1 && return 0
		sleep 1
	done
	echo "libvirtd did not answer in 60 s"
	return 1
}

lv_qemu_pid()
{
	cat "$VR_ROOT/run/libvirt/qemu/vm1.pid" 2>/dev/null
}
