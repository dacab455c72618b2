#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# 60-autoload.sh - /dev/vhost-blk works like /dev/vhost-net (VM suite, TAP):
# the module declares its fixed misc minor and devname alias, so a boot
# creates the node from modules.devname before the module is loaded
# ("kmod static-nodes" + "systemd-tmpfiles --create", as Debian's
# kmod-static-nodes and systemd-tmpfiles-setup-dev services do); udevd
# applies packaging/udev/60-vhost-blk.rules (group kvm, mode 0660) to it;
# a user outside group kvm cannot open it (and loads nothing), a user in
# the group can, and that open loads vhost_blk through the kernel's
# request_module() and modprobe.
#
# Runs in an overlay root (scripts/pkg/vmroot.sh) where the module is
# installed in /lib/modules/<abi>/updates and depmod'ed; udevd is Debian's
# (scripts/pkg/udev.sh unpacks it).  At the end vhost_blk is loaded again
# for the suites that follow.
set -u
REPO=${VHOST_BLK_REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
KO=${VHOST_BLK_BUILD:-}/vhost_blk.ko
ABI=${VHOST_BLK_ABI:-$(uname -r)}
# shellcheck source=scripts/pkg/vmroot.sh
. "$REPO/scripts/pkg/vmroot.sh"
# shellcheck source=scripts/pkg/suite.sh
. "$REPO/scripts/pkg/suite.sh"
cleanup() {
	udevd_stop
	vr_teardown
	loaded || insmod "$KO" || echo "# could not load $KO again"
}
finish() { pkg_finish cleanup; }
trap cleanup EXIT

aliases=$(modinfo -F alias "$KO" 2>&1)
t "modinfo: aliases char-major-10-254 and devname:vhost-blk" \
	test "$(sort <<<"$aliases" | tr '\n' ' ')" = "char-major-10-254 devname:vhost-blk " ||
	echo "# aliases: $aliases"

t "rmmod vhost_blk" rmmod vhost_blk || finish
t "no /dev/vhost-blk without the module" test ! -e /dev/vhost-blk

if vr_setup /tmp/vb-autoload; then ok "overlay root"; else notok "overlay root"; finish; fi
root=$VR_ROOT
install_module() {
	install -D -m 644 "$KO" "$root/lib/modules/$ABI/updates/vhost_blk.ko" && vr_modtree
}
t "install vhost_blk.ko in /lib/modules/$ABI/updates, depmod" install_module || finish
t "modules.devname: vhost_blk vhost-blk c10:254" \
	grep -qx 'vhost_blk vhost-blk c10:254' "$root/lib/modules/$ABI/modules.devname"

# What a Debian system has: the kvm group (udev's postinst creates it), the
# rule from the package, two users.
install -D -m 644 "$REPO/packaging/udev/60-vhost-blk.rules" "$root/lib/udev/rules.d/60-vhost-blk.rules"
vr_run getent group kvm >/dev/null || vr_run groupadd --system kvm
t "users vbkvm (in kvm) and vbother" \
	eval 'vr_run useradd -M -G kvm vbkvm && vr_run useradd -M vbother'

# Boot: the node from modules.devname, before any module is loaded.
static_nodes() {
	mkdir -p "$root/run/tmpfiles.d" &&
	vr_run kmod static-nodes --format=tmpfiles --output=/run/tmpfiles.d/static-nodes.conf &&
	vr_run systemd-tmpfiles --prefix=/dev --create --boot /run/tmpfiles.d/static-nodes.conf
}
t "static node from modules.devname (kmod static-nodes, systemd-tmpfiles)" static_nodes
t "/dev/vhost-blk is char 10:254, module not loaded" \
	eval 'test -c /dev/vhost-blk && test "$(stat -c %t:%T /dev/vhost-blk)" = a:fe && ! loaded'

t "udevd started" udevd_start
perms() { vr_run stat -c '%G %a' /dev/vhost-blk; }
# udevd applies static_node= permissions when it has read the rules.
for _ in $(seq 50); do
	[ "$(perms)" = "kvm 660" ] && break
	sleep 0.2
done
t "static node: group kvm, mode 0660 (udev rule)" test "$(perms)" = "kvm 660" ||
	echo "# /dev/vhost-blk: $(perms)"

t "vr_modprobe_helper" vr_modprobe_helper
other=$(vr_run setpriv --reuid=vbother --regid=vbother --init-groups \
	bash -c 'exec 3<>/dev/vhost-blk' 2>&1)
other_rc=$?
echo "# vbother: $other"
t "user outside kvm: open fails with EACCES" \
	eval '[ $other_rc -ne 0 ] && grep -q "Permission denied" <<<"$other"'
t "... and the module is still not loaded" eval '! loaded'
t "user in kvm: open succeeds" vr_run setpriv --reuid=vbkvm --regid=vbkvm --init-groups \
	bash -c 'exec 3<>/dev/vhost-blk'
t "... and that open loaded vhost_blk" loaded
vr_run /run/vbudev/udevadm settle --timeout=10 >/dev/null 2>&1
t "after the add event: still group kvm, mode 0660" test "$(perms)" = "kvm 660" ||
	echo "# /dev/vhost-blk: $(perms)"
finish
