#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# 65-dkms.sh - the Debian packages of "make deb" and the commands of
# Documentation/admin-guide.rst, in the 6.1 VM (VM suite, TAP; on other
# lines it reports a skip plan).
# make-check: own-vm lines=6.1
# (its 6 minutes run in a VM of their own, beside the lines' VMs: it needs
# nothing an earlier suite leaves behind, and it leaves vhost_blk loaded.)
#
# In an overlay root (scripts/pkg/vmroot.sh) that looks like a Debian
# system with two kernels' headers (/lib/modules/<abi>/build links to the
# cached headers of the running 6.1 kernel and of 6.12) and their sources
# unpacked in /usr/src/linux-source-X.Y/ (the files the project takes from
# Debian's linux-source packages are in the kernel cache; that the build
# finds vhost.h in the package's tarball is tested on the host, by
# tests/host/65-dkms-build.sh: under TCG the extraction takes minutes):
#   - every block of the admin guide runs, in document order, as root or
#     as the users alice (in kvm) and bob (not), with the project's QEMU as
#     qemu-system-x86_64 (scripts/pkg/doc-blocks.py extracts them; a block
#     without an ".. admin-test:" tag fails the suite).  Its "install"
#     block installs vhost-blk-dkms with apt-get: Debian's dkms builds and
#     installs the module for the running kernel;
#   - modprobe loaded that build (build ID), /dev/vhost-blk opens;
#   - the kernel's header_postinst.d hook (what installing a headers
#     package runs) makes dkms build it for 6.12;
#   - the guide's "remove" block purges it: gone from both kernels, and no
#     file left behind (the overlay's upper layer is compared with its
#     state before the installation);
#   - vhost-blk-qemu-patches installs the series and purges cleanly.
# The guide's libvirt blocks run Debian's libvirtd (scripts/pkg/libvirt.sh)
# with the guide's qemu.conf lines; its domain XML boots the small guest of
# the end-to-end suite (L2, under KVM: the guide's domain type; when that
# guest stalls, the same domain as type qemu, under TCG), whose init
# checks the vhost-blk disk, writes and reads it and prints a marker on the
# serial console that libvirt writes to a file.  Between the guide's start
# and stop blocks the suite checks that QEMU runs as libvirt-qemu in a
# cgroup of its own, holding /dev/vhost-blk and the backend open; after
# them, that no process holds /dev/vhost-blk, the module is unused and the
# backend has the guest's data.  Then, with /dev/vhost-blk left out of
# cgroup_device_acl, the same domain must fail to start (the ACL is needed).
# At the end vhost_blk (the build/<abi> one) is loaded again.
set -u
REPO=${VHOST_BLK_REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
KO=${VHOST_BLK_BUILD:-}/vhost_blk.ko
ABI=${VHOST_BLK_ABI:-$(uname -r)}
CACHE=${VHOST_BLK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vhost-blk}
DOC=$REPO/Documentation/admin-guide.rst
if [ "${VHOST_BLK_LINE:-}" != 6.1 ]; then
	echo "1..0 # SKIP the package suite runs on the 6.1 line only"
	exit 0
fi
# shellcheck source=scripts/pkg/vmroot.sh
. "$REPO/scripts/pkg/vmroot.sh"
# shellcheck source=scripts/pkg/libvirt.sh
. "$REPO/scripts/pkg/libvirt.sh"
# shellcheck source=scripts/pkg/suite.sh
. "$REPO/scripts/pkg/suite.sh"
cleanup() {
	udevd_stop
	[ -n "$VR_DIR" ] && lv_stop
	if [ -n "$VR_DIR" ] && pgrep -f qemu-system >/dev/null; then
		pkill -f qemu-system
		sleep 1
	fi
	vr_teardown
	dmsetup remove vm1-disk 2>/dev/null
	dmsetup remove vm2-disk 2>/dev/null
	loaded || insmod "$KO" || echo "# could not load $KO again"
}
finish() { pkg_finish cleanup; }
trap cleanup EXIT

DEBDIR=$REPO/build/deb
DKMS_DEB=$(ls "$DEBDIR"/vhost-blk-dkms_*_all.deb 2>/dev/null | tail -n1)
QEMU_DEB=$(ls "$DEBDIR"/vhost-blk-qemu-patches_*_all.deb 2>/dev/null | tail -n1)
K61=$CACHE/kernels/$ABI
K612=$(readlink -f "$CACHE/kernels/line-6.12")
ABI2=${K612##*/}
QEMU=$(sed -n 's/^QEMU=//p' "$CACHE/l2.env" 2>/dev/null)
GUEST_KERNEL=$(sed -n 's/^GUEST_KERNEL=//p' "$CACHE/l2.env" 2>/dev/null)
GUEST_INITRD=$(sed -n 's/^GUEST_INITRD=//p' "$CACHE/l2.env" 2>/dev/null)
t "inputs: make deb, 6.12 headers, QEMU, guest (tests/prepare.d)" \
	test -f "$DKMS_DEB" -a -f "$QEMU_DEB" -a -d "$K612/build/include" -a -x "$QEMU" \
	-a -f "$GUEST_KERNEL" -a -f "$GUEST_INITRD" || finish
VER=$(dpkg-deb -f "$DKMS_DEB" Version)
BLOCKS=/tmp/vb-admin-blocks
rm -rf "$BLOCKS"
mapfile -t blocks < <("$REPO/scripts/pkg/doc-blocks.py" "$DOC" "$BLOCKS")
t "admin-guide.rst: every code block is tagged (${#blocks[@]} blocks)" \
	"$REPO/scripts/pkg/doc-blocks.py" "$DOC" "$BLOCKS" || finish

if vr_setup /tmp/vb-dkms; then ok "overlay root"; else notok "overlay root"; finish; fi
root=$VR_ROOT
# Two kernels as the headers packages would leave them: the modules (only
# drivers/vhost, see vr_modtree) and the build link.
kernel_tree() {
	local abi=$1 kdir=$2 src
	src=$kdir/modules/lib/modules/$abi
	mkdir -p "$root/lib/modules/$abi/kernel/drivers"
	ln -s "$src/kernel/drivers/vhost" "$root/lib/modules/$abi/kernel/drivers/vhost"
	cp "$src"/modules.order "$src"/modules.builtin* "$root/lib/modules/$abi/"
	ln -s "$kdir/build" "$root/lib/modules/$abi/build"
	vr_run depmod "$abi"
}
t "kernel trees $ABI and $ABI2 with their headers" \
	eval 'kernel_tree "$ABI" "$K61" && kernel_tree "$ABI2" "$K612"' || finish
# The kernels' sources, unpacked by an administrator.
for l in 6.1:$K61 6.12:$K612; do
	mkdir -p "$root/usr/src/linux-source-${l%%:*}/drivers"
	cp -r "${l#*:}/src/drivers/vhost" "$root/usr/src/linux-source-${l%%:*}/drivers/"
done

# The machine the guide speaks of: group kvm (udev's postinst creates it)
# owning /dev/kvm (udev's rule), users alice and bob, two logical volumes,
# the project's QEMU as qemu-system-x86_64.
machine() {
	local sectors
	vr_run getent group kvm >/dev/null || vr_run groupadd --system kvm || return 1
	vr_run useradd -M -d /tmp alice && vr_run useradd -M -d /tmp bob || return 1
	modprobe -d "$VHOST_BLK_MODROOT" kvm_amd 2>/dev/null ||
		modprobe -d "$VHOST_BLK_MODROOT" kvm_intel || return 1
	vr_run chgrp kvm /dev/kvm && chmod 660 /dev/kvm || return 1
	sectors=$(blockdev --getsz /dev/ram1) || return 1
	# No udev in the VM: make the /dev/mapper nodes ourselves.
	dmsetup create vm1-disk --noudevsync --table "0 $sectors linear /dev/ram1 0" &&
		dmsetup create vm2-disk --noudevsync --table "0 $sectors linear /dev/ram2 0" &&
		dmsetup mknodes vm1-disk && dmsetup mknodes vm2-disk || return 1
	# The cache may be under root's home, closed to alice: a copy of the
	# binary (firmware from Debian's qemu-system-data and seabios).
	install -D -m 755 "$QEMU" "$root/usr/local/lib/vhost-blk-test/qemu-system-x86_64" &&
	printf '#!/bin/sh\nexec %s -L /usr/share/qemu -L /usr/share/seabios "$@"\n' \
		/usr/local/lib/vhost-blk-test/qemu-system-x86_64 \
		>"$root/usr/local/bin/qemu-system-x86_64" &&
		chmod 755 "$root/usr/local/bin/qemu-system-x86_64"
}
# dpkg's database, as it is now: copied into the overlay, and read again
# while it does not parse (the host may be installing packages right now).
dpkg_db() {
	local i
	for i in 1 2 3 4 5 6; do
		cp /var/lib/dpkg/status "$root/var/lib/dpkg/status" &&
			vr_run dpkg --audit >/dev/null 2>&1 &&
			vr_run dpkg-query -W dkms >/dev/null 2>&1 && return 0
		sleep 5
	done
	return 1
}
t "dpkg database (with dkms) readable" dpkg_db || finish
t "users alice (kvm) and bob, /dev/kvm, /dev/mapper/vm1-disk, vm2-disk, QEMU" machine ||
	finish

# The guest libvirt boots: the end-to-end suite's kernel and initramfs, with
# steps for scripts/guest/init.  It stays up after its marker: the guide
# stops it with virsh destroy.
PATTERN=vhost-blk-libvirt
guest_initrd() {
	local w=/tmp/vb-lv-guest
	rm -rf "$w" && mkdir -p "$w/root" || return 1
	cat >"$w/root/steps.sh" <<STEPS
check "vda is vm1-disk (serial)" grep -qx vm1-disk /sys/block/vda/serial
check "vda has 1 queue" sh -c '[ \$(ls /sys/block/vda/mq | wc -l) -eq 1 ]'
yes $PATTERN | head -c 1048576 >/tmp/pat
check "write 1 MiB to vda (O_DIRECT)" dd if=/tmp/pat of=/dev/vda bs=64k oflag=direct
check "read it back (O_DIRECT)" sh -c 'dd if=/dev/vda of=/tmp/back bs=64k count=16 iflag=direct && cmp /tmp/pat /tmp/back'
echo VB-LIBVIRT-DONE
sleep 3600
STEPS
	(cd "$w/root" && echo steps.sh | cpio -o -H newc --quiet -R 0:0 | gzip) >"$w/steps.gz" &&
		cat "$GUEST_INITRD" "$w/steps.gz" >"$w/initrd" || return 1
	lv_setup "$GUEST_KERNEL" "$w/initrd"
}
t "libvirt: user libvirt-qemu, its directories, cgroup2, the guest's kernel" guest_initrd ||
	finish

# What the overlay's upper layer holds that the host root does not have:
# directories that exist below are only copied up.  Logs, dpkg's and apt's
# state, depmod's indexes and dkms's signing key are expected to change.
snapshot() {
	(cd "$VR_DIR/upper" && find . \( -path ./var/log -o -path ./var/cache -o \
		-path ./var/lib/dpkg -o -path ./var/lib/apt -o -path ./tmp -o -path ./run -o \
		-path ./etc/libvirt -o -path ./var/lib/libvirt -o \
		-name 'modules.*' -o -path './var/lib/dkms/mok.*' \) -prune -o -print | sort |
		while read -r p; do
			[ -d "$VR_DIR/upper/$p" ] && [ -d "/$p" ] && continue
			echo "$p"
		done)
}
snapshot >/tmp/vb-dkms.before

# as USER CMD: run CMD (a shell command line) in the overlay as USER (root
# in $ASDIR).
ASDIR=$DEBDIR
as() {
	local user=$1
	shift
	if [ "$user" = root ]; then
		vr_run bash -c "cd '$ASDIR' && $1"
	else
		vr_run setpriv --reuid="$user" --regid="$user" --init-groups \
			env HOME=/tmp USER="$user" bash -c "cd /tmp && $1"
	fi
}
# Wait (bounded) until no QEMU of the guide's users runs any more.
qemu_gone() {
	local i
	for i in $(seq 100); do
		pgrep -f qemu-system >/dev/null || return 0
		sleep 0.2
	done
	return 1
}
# The guide's domain XML, as vm1.xml where its commands run.
xml_block() {
	xmllint --noout "$1/text" && cp "$1/text" "$root$ASDIR/vm1.xml"
}
# The guide's qemu.conf lines, then libvirtd (re)started with them.
qemuconf_block() {
	cp "$1/text" "$root/etc/libvirt/qemu.conf" && lv_start
}
LV_T0=0
LV_ACCEL=kvm
LV_LOG=/tmp/vb-lv-serial
# lv_marker SEC [QUIET]: wait (at most SEC s from virsh define) for the
# guest's marker on its serial console; fails at once if QEMU is gone, and
# after QUIET s without a new byte on the console (a stalled guest).
lv_marker() {
	local size last=0 t_last=$SECONDS
	while [ $((SECONDS - LV_T0)) -lt "$1" ]; do
		# The serial console ends its lines with CR LF.
		tr -d '\r' <"$root$LV_SERIAL" >"$LV_LOG" 2>/dev/null
		grep -q '^VB-LIBVIRT-DONE' "$LV_LOG" && return 0
		[ -n "$(lv_qemu_pid)" ] || return 1
		size=$(stat -c %s "$LV_LOG" 2>/dev/null || echo 0)
		if [ "$size" != "$last" ]; then
			last=$size
			t_last=$SECONDS
		elif [ -n "${2:-}" ] && [ $((SECONDS - t_last)) -ge "$2" ]; then
			echo "# no console output for $2 s"
			return 1
		fi
		sleep 0.5
	done
	return 1
}
# What the guest and its QEMU did when no marker came: the serial console,
# QEMU's log, the CPU time of each QEMU thread (a stalled vCPU under KVM
# spins: its time keeps growing) and L1's kvm messages.
lv_diag() {
	local pid i t
	echo "# no marker under $LV_ACCEL after $((SECONDS - LV_T0)) s: console, QEMU log, threads"
	tail -n 25 "$LV_LOG" 2>/dev/null | sed 's/^/# serial: /'
	tail -n 15 "$root/var/log/libvirt/qemu/vm1.log" 2>/dev/null | sed 's/^/# vm1.log: /'
	pid=$(lv_qemu_pid)
	for i in 1 2; do
		[ -n "$pid" ] && for t in /proc/"$pid"/task/*; do
			echo "# thread $(cat "$t/comm" 2>/dev/null): state, utime, stime $(cut -d' ' -f3,14,15 "$t/stat" 2>/dev/null)"
		done
		sleep 5
	done
	dmesg | grep -i 'kvm\|rcu' | tail -n 10 | sed 's/^/# L1: /'
	cp "$LV_LOG" "${VHOST_BLK_OUT:-/tmp}/libvirt-vm1-$LV_ACCEL-serial.log" 2>/dev/null
	cp "$root/var/log/libvirt/qemu/vm1.log" "${VHOST_BLK_OUT:-/tmp}/libvirt-vm1-$LV_ACCEL.log" 2>/dev/null
}
# While the guide's domain runs: the guest's results on its console, and
# the QEMU that libvirt started.  The guide's domain is type kvm (L2 under
# KVM in this TCG VM).  When its guest gives no marker in 180 s, or its
# console stays silent for 60 s (nested KVM here still stalls a guest now
# and then: Documentation/testing.rst; seen at PCI enumeration, its vCPU
# thread busy), the same domain is started again as type qemu (TCG,
# without the host CPU model), and the same cases run on that guest; their
# names say which accelerator ran.
lv_running() {
	local pid i name fds=""
	LV_ACCEL=kvm
	if ! lv_marker 180 60; then
		lv_diag
		echo "# libvirt: the same domain again under TCG (type qemu)"
		sed -e "s/<domain type='kvm'/<domain type='qemu'/" \
			-e "/<cpu mode='host-passthrough'\/>/d" "$root$ASDIR/vm1.xml" >"$root$ASDIR/vm1-tcg.xml"
		vr_run virsh destroy vm1 >/dev/null 2>&1
		vr_run virsh undefine vm1 >/dev/null 2>&1
		: >"$root$LV_SERIAL"
		LV_ACCEL=tcg
		LV_T0=$SECONDS
		t "libvirt: vm1 defined and started as type qemu (TCG)" \
			vr_run bash -c "cd $ASDIR && grep -q \"<domain type='qemu'\" vm1-tcg.xml &&
				virsh define vm1-tcg.xml && virsh start vm1"
		lv_marker 600 || lv_diag
	fi
	echo "# libvirt guest: accel=$LV_ACCEL, marker after $((SECONDS - LV_T0)) s (since virsh define)"
	grep -a '^L2-\|^VB-' "$LV_LOG" 2>/dev/null | sed 's/^/# /'
	for name in "vda is vm1-disk (serial)" "vda has 1 queue" \
		"write 1 MiB to vda (O_DIRECT)" "read it back (O_DIRECT)"; do
		if grep -qxF "L2-RESULT ok $name" "$LV_LOG" 2>/dev/null; then
			ok "libvirt guest (accel=$LV_ACCEL): $name"
		else
			notok "libvirt guest (accel=$LV_ACCEL): $name"
		fi
	done
	pid=$(lv_qemu_pid)
	t "libvirt: QEMU runs as libvirt-qemu" \
		eval '[ -n "$pid" ] && [ "$(stat -c %u /proc/$pid)" = "$(vr_run id -u libvirt-qemu)" ]'
	for i in /proc/"$pid"/fd/*; do
		fds+="$(stat -L -c '%F %t:%T' "$i" 2>/dev/null)"$'\n'
	done
	t "libvirt: QEMU holds /dev/vhost-blk and the backend open" \
		eval 'grep -qx "character special file a:fe" <<<"$fds" &&
			grep -qx "block special file $(stat -L -c %t:%T /dev/mapper/vm1-disk)" <<<"$fds"'
	t "libvirt: QEMU is in a cgroup of its own (the device ACL applies)" \
		eval 'cat /proc/$pid/cgroup; ! grep -qx "0::/" /proc/$pid/cgroup'
}
# After the guide's virsh destroy and undefine.
lv_stopped() {
	local i holders=""
	for i in /proc/[0-9]*/fd/*; do
		[ "$(stat -L -c '%F %t:%T' "$i" 2>/dev/null)" = "character special file a:fe" ] &&
			holders+=" $i"
	done
	t "libvirt: no process holds /dev/vhost-blk open" eval 'echo "$holders"; [ -z "$holders" ]'
	t "libvirt: vhost_blk unused (refcnt 0)" \
		eval '[ "$(cat /sys/module/vhost_blk/refcnt)" = 0 ]'
	t "libvirt: the backend has what the guest wrote" \
		eval 'cmp <(head -c 1048576 /dev/mapper/vm1-disk) <(yes "$PATTERN" | head -c 1048576)'
	t "libvirt: no domain left" eval '[ -z "$(vr_run virsh list --all --name | tr -d "[:space:]")" ]'
	# Without /dev/vhost-blk in cgroup_device_acl, QEMU may not open it.
	sed -i 's|"/dev/vhost-blk", ||' "$root/etc/libvirt/qemu.conf"
	t "libvirt: restarted without /dev/vhost-blk in cgroup_device_acl" lv_start
	t "... the domain does not start: QEMU may not open /dev/vhost-blk" \
		eval 'vr_run bash -c "cd $ASDIR && virsh define vm1.xml >/dev/null &&
			! timeout 120 virsh start vm1 && virsh undefine vm1" 2>&1 |
			tee /dev/stderr | grep -q "cannot open /dev/vhost-blk: Operation not permitted"'
}
RAN=0
# run_group GROUP: every block of that group, in document order.
run_group() {
	local group=$1 b d mode prompt cmd user out rc all e
	for b in "${blocks[@]}"; do
		case "$b" in [0-9]*-"$group"-*) ;; *) continue ;; esac
		d=$BLOCKS/$b
		mode=${b##*-}
		RAN=$((RAN + 1))
		if [ "$mode" = xml ]; then
			t "admin-guide $b: domain XML well formed, saved as vm1.xml" xml_block "$d"
			continue
		fi
		if [ "$mode" = qemu.conf ]; then
			t "admin-guide $b: /etc/libvirt/qemu.conf, libvirtd (re)started" \
				qemuconf_block "$d"
			continue
		fi
		[ "$mode" = start ] && LV_T0=$SECONDS
		all=""
		while IFS=$'\t' read -r prompt cmd; do
			user=root
			[ "$prompt" = '$' ] && user=alice
			[ "$prompt" = '$' ] && [ "$mode" = other ] && user=bob
			[ "$mode" = simulate ] && cmd=${cmd/apt-get /apt-get -s }
			out=$(as "$user" "$cmd" 2>&1)
			rc=$?
			all+=$out$'\n'
			sed 's/^/# /' <<<"$out" | tail -12
			if [ "$user" = bob ]; then
				[ $rc -ne 0 ] && ok "admin-guide $b ($user, fails): $cmd" ||
					notok "admin-guide $b ($user, must fail): $cmd"
			elif [ $rc -eq 0 ]; then
				ok "admin-guide $b ($user): $cmd"
			else
				notok "admin-guide $b ($user): $cmd (rc $rc)"
			fi
		done <"$d/cmds"
		while IFS= read -r e; do
			if grep -qxF -- "$e" <<<"$all"; then
				ok "admin-guide $b: output has '$e'"
			else
				notok "admin-guide $b: output has '$e'"
			fi
		done <"$d/expect"
		grep -q qemu-system "$d/cmds" && { qemu_gone || notok "admin-guide $b: QEMU still running"; }
		[ "$group-$mode" = libvirt-start ] && lv_running
		[ "$group-$mode" = libvirt-stop ] && lv_stopped
	done
}

# udevd applies the rule the package installs to the node that loading the
# module creates.
t "udevd started" udevd_start

t "rmmod vhost_blk" rmmod vhost_blk || finish
run_group install
t "dkms status: installed for $ABI" \
	eval 'vr_run dkms status -m vhost-blk -v "$VER" -k "$ABI" | grep -q ": installed"'
run_group load
run_group monitor
vr_run /run/vbudev/udevadm settle --timeout=20 >/dev/null 2>&1
t "/dev/vhost-blk: group kvm, mode 0660 (the package's udev rule)" \
	eval '[ "$(vr_run stat -c "%G %a" /dev/vhost-blk)" = "kvm 660" ]'
dkms_ko=$(vr_run modinfo -n vhost_blk 2>&1)
echo "# modinfo -n: $dkms_ko"
# The module has no srcversion (no MODULE_VERSION): its build ID tells the
# file that was loaded (the last 20 bytes of the note in sysfs).
loaded_id=$(od -An -v -tx1 /sys/module/vhost_blk/notes/.note.gnu.build-id 2>&1 |
	tr -d ' \n' | tail -c 40)
file_id=$(readelf -n "$root$dkms_ko" 2>&1 | awk '/Build ID:/ { print $3 }')
echo "# build ID: loaded $loaded_id, $dkms_ko $file_id"
t "the loaded module is the dkms build in /lib/modules/$ABI/updates/dkms/ (build ID)" \
	eval 'case "$dkms_ko" in /lib/modules/$ABI/updates/dkms/vhost_blk.ko) ;; *) false ;; esac &&
	[ ${#file_id} -eq 40 ] && [ "$loaded_id" = "$file_id" ]'
t "the udev rule is installed" test -f "$root/lib/udev/rules.d/60-vhost-blk.rules"
run_group perms
run_group qemu
ASDIR=/tmp
run_group libvirt
ASDIR=$DEBDIR
lv_stop
run_group trouble

t "a new kernel's headers: dkms builds for $ABI2 (header_postinst.d hook)" \
	vr_run /etc/kernel/header_postinst.d/dkms "$ABI2"
ko2=$(ls "$root/lib/modules/$ABI2/updates/dkms/"vhost_blk.ko* 2>/dev/null | head -n1)
t "... /lib/modules/$ABI2/updates/dkms/vhost_blk.ko built for $ABI2" \
	eval '[ -n "$ko2" ] && vr_run modinfo -F vermagic "${ko2#"$root"}" | grep -q "^$ABI2 "'

run_group remove
t "no vhost_blk module, source or dkms state left" \
	eval '! ls -d "$root"/lib/modules/*/updates/dkms/vhost_blk* "$root"/usr/src/vhost-blk-* \
		"$root"/var/lib/dkms/vhost-blk 2>/dev/null | grep .'
t "modules.dep of both kernels no longer names vhost_blk" \
	eval '! grep -l vhost_blk "$root/lib/modules/$ABI/modules.dep" "$root/lib/modules/$ABI2/modules.dep"'
snapshot >/tmp/vb-dkms.after
t "no file left behind (overlay upper layer as before the install)" \
	diff /tmp/vb-dkms.before /tmp/vb-dkms.after
t "every admin-guide block ran ($RAN of ${#blocks[@]})" test "$RAN" -eq "${#blocks[@]}"

before=$(snapshot)
t "dpkg -i $(basename "$QEMU_DEB")" vr_run dpkg -i "$QEMU_DEB"
same_patches() {
	local p
	for p in "$REPO"/qemu-patches/*.patch; do
		cmp "$p" "$root/usr/share/vhost-blk/qemu-patches/${p##*/}" || return 1
	done
	(cd "$REPO/qemu-patches" && ls ./*.patch | sed 's|^\./||') |
		diff - "$root/usr/share/vhost-blk/qemu-patches/series"
}
t "... the series, as in qemu-patches/" same_patches
t "dpkg --purge vhost-blk-qemu-patches leaves nothing" \
	eval 'vr_run dpkg --purge vhost-blk-qemu-patches && diff <(echo "$before") <(snapshot)'
finish
