#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# End-to-end: an L2 Linux guest (unmodified virtio_blk) on QEMU's
# vhost-blk-pci device, served by vhost_blk.ko in this (L1) VM.  Runs inside
# the L1 VM (scripts/vm-suites.sh); prints TAP.
#
# Nested boots are expensive, so ONE QEMU run (2 vCPUs) covers the guest
# cases: scripts/guest/l2.sh boots the tiny guest with five vhost-blk-pci
# disks and runs a list of steps that print one L2-RESULT line per case:
#   vda  /dev/ram0, 1 queue      serial (GET_ID), queue limits from the
#                                fixed config (seg_max, size_max, write-
#                                zeroes), fio write+verify 4k, mixed block
#                                sizes and 4 MiB requests, a pattern L1
#                                reads back
#   vdb  null_blk with a write   fsync -> FLUSH must reach the backend
#        cache, 1 queue          (flush counter of its /sys/block/*/stat)
#   vdc  /dev/ram2, readonly=on  RO flag, writes rejected, backend unchanged
#   vdd  /dev/ram1, 4 queues     fio write+verify, one job per queue of
#                                the two the guest uses (2 vCPUs); on
#                                6.5+ with worker-per-virtqueue=on: L1
#                                counts QEMU's vhost worker threads (the
#                                five disks' own plus three for vdd),
#                                again after the system_reset below, and
#                                the guest verifies vdd's two queues
#                                again after the reboot
#   vda  again                   fio write+verify while L1 does stop /
#                                cont on the QMP monitor (data plane
#                                drained and restarted under I/O; the stop
#                                flushes vdb's backend); then, with a
#                                module that lacks VHOST_BLK_CAP_EXACT_LOG,
#                                a migration attempt must hit the blocker
#   vde  /dev/ram3, 1 queue      ext4: mkfs, files, sync, fsck -n, then
#                                L1 does system_reset while fio runs on
#                                vdd's two queues (device reset + restart
#                                in the same QEMU); fsck -n and checksums
# Then, without a guest: QEMU accepts pre-opened backendfd=/vhostfd=, and
# fails with its message on a bad backend path, num-queues=17,
# logical_block_size=3000 and a missing /dev/vhost-blk; QEMU's copies of
# the module's limits equal <linux/vhost_blk.h>; worker-per-virtqueue=on
# is accepted on 6.5+ and refused with its message before 6.5.
set -uo pipefail
. "$(dirname "$0")/../../scripts/guest/l2lib.sh"

l2_begin e2e 36
l2_need_disks ram0 ram1 ram2 ram3

# null_blk with a volatile write cache: its stat counts flush requests.
NULLB=/sys/kernel/config/nullb/e2e
nullb_dev=
[ -d /sys/kernel/config/nullb ] || modprobe null_blk nr_devices=0 2>/dev/null
if [ -d /sys/kernel/config/nullb ]; then
	rmdir "$NULLB" 2>/dev/null
	if mkdir "$NULLB" 2>/dev/null; then
		echo 64 >"$NULLB/size"
		echo 1 >"$NULLB/memory_backed"
		echo 16 >"$NULLB/cache_size"
		echo 1 >"$NULLB/power"
		# 6.x names the disk after the configfs directory, older ones nullbN
		idx=$(cat "$NULLB/index" 2>/dev/null)
		for _ in $(seq 20); do
			for d in /dev/e2e "/dev/nullb$idx"; do
				[ -b "$d" ] && nullb_dev=$d
			done
			[ -n "$nullb_dev" ] && break
			sleep 0.1
		done
	fi
fi
flushes() { awk '{ print $16 }' "/sys/block/$(basename "$1")/stat"; }

# The vhost worker ioctls (VHOST_NEW_WORKER, ...) exist since Linux 6.5.
IFS=. read -r kmaj kmin _ <<<"$(uname -r)"
if [ "$kmaj" -gt 6 ] || { [ "$kmaj" -eq 6 ] && [ "$kmin" -ge 5 ]; }; then
	WORKERS=1
	VDD_OPTS=,worker-per-virtqueue=on
else
	WORKERS=0
	VDD_OPTS=
fi

dd if=/dev/zero of=/dev/ram0 bs=1M count=64 status=none
dd if=/dev/zero of=/dev/ram1 bs=1M count=16 status=none
dd if=/dev/zero of=/dev/ram3 bs=1M count=16 status=none
dd if=/dev/urandom of=/dev/ram2 bs=1M count=4 status=none
ro_sum_before=$(sha256sum </dev/ram2 | cut -d' ' -f1)
fl_before=0
[ -n "$nullb_dev" ] && fl_before=$(flushes "$nullb_dev")

cat >"$OUT/steps.sh" <<'STEPS'
FIO="fio --direct=1 --ioengine=libaio --verify=crc32c --verify_fatal=1"
if mount -t ext4 -o ro /dev/vde /mnt 2>/dev/null && [ -e /mnt/PHASE1 ]; then
	umount /mnt
	log "phase 2 (after the guest reboot)"
	echo "L2-PHASE2"
	check fio-verify-2q-after-reset $FIO --name=mq2 --filename=/dev/vdd \
		--rw=randwrite --bs=4k --iodepth=8 --numjobs=2 --offset_increment=1M \
		--size=512K --cpus_allowed_policy=split --cpus_allowed=0-1
	check ext4-fsck-after-reboot e2fsck -fn /dev/vde
	mount -t ext4 /dev/vde /mnt
	check ext4-checksums-after-reboot sh -c 'cd /mnt && sha256sum -c SUMS'
	umount /mnt
else
	umount /mnt 2>/dev/null
	check serial-get-id sh -c '[ "$(cat /sys/block/vda/serial)" = e2e-serial-1 ]'
	# seg_max 64 x size_max 64 KiB = VHOST_BLK_MAX_DATA_BYTES, whatever
	# the guest's page size; write zeroes: VHOST_BLK_MAX_DWZ_SECTORS
	q=/sys/block/vda/queue
	log "vda: max_segments $(cat $q/max_segments) max_segment_size" \
		"$(cat $q/max_segment_size) logical_block_size" \
		"$(cat $q/logical_block_size) write_zeroes_max_bytes" \
		"$(cat $q/write_zeroes_max_bytes)"
	check config-limits sh -c "[ \$(cat $q/max_segments) = 64 ] &&
		[ \$(cat $q/max_segment_size) = 65536 ] &&
		[ \$(cat $q/logical_block_size) = 512 ] &&
		[ \$(cat $q/physical_block_size) = 512 ] &&
		[ \$(cat $q/write_zeroes_max_bytes) = 33554432 ]"
	check fio-verify-4k-1q $FIO --name=a --filename=/dev/vda --rw=randwrite \
		--bs=4k --iodepth=16 --size=512K
	check fio-verify-mixed-bs $FIO --name=b --filename=/dev/vda --offset=16M \
		--rw=randwrite --bssplit=512/10:4k/40:16k/25:64k/15:256k/10 \
		--iodepth=8 --size=512K
	echo 4096 >/sys/block/vda/queue/max_sectors_kb
	check fio-verify-4m-requests $FIO --name=big --filename=/dev/vda \
		--offset=4M --rw=write --bs=4M --iodepth=2 --size=8M
	# guest writes, L1 reads back (1 MiB at 32 MiB of vda)
	dd if=/dev/urandom of=/tmp/pattern bs=64k count=16 2>/dev/null
	echo "L2-SHA $(sha256sum /tmp/pattern | cut -d' ' -f1)"
	check guest-write-for-l1 dd if=/tmp/pattern of=/dev/vda bs=64k seek=512 conv=fsync
	check flush-fsync sh -c 'grep -q "write back" /sys/block/vdb/queue/write_cache &&
		dd if=/dev/urandom of=/dev/vdb bs=64k count=4 conv=fsync'
	check readonly-flag sh -c '[ "$(cat /sys/block/vdc/ro)" = 1 ]'
	check readonly-write-rejected sh -c '! dd if=/dev/zero of=/dev/vdc bs=4k count=1 conv=fsync'
	check mq-queues sh -c '[ $(ls /sys/block/vdd/mq | wc -l) -ge 2 ]'
	check fio-verify-2q $FIO --name=mq --filename=/dev/vdd --rw=randwrite \
		--bs=4k --iodepth=8 --numjobs=2 --offset_increment=1M --size=512K \
		--cpus_allowed_policy=split --cpus_allowed=0-1
	echo "L2-STOPCONT-BEGIN"
	check fio-verify-stop-cont $FIO --name=sc --filename=/dev/vda \
		--offset=48M --rw=randwrite --bs=4k --iodepth=16 --size=512K
	check ext4-mkfs mkfs.ext4 -q -F /dev/vde
	mount -t ext4 /dev/vde /mnt
	for i in 1 2 3 4; do
		dd if=/dev/urandom of=/mnt/file$i bs=16k count=$((i * 4)) 2>/dev/null
	done
	(cd /mnt && sha256sum file* >SUMS)
	sync
	umount /mnt
	check ext4-fsck e2fsck -fn /dev/vde
	mount -t ext4 /dev/vde /mnt && touch /mnt/PHASE1 && umount /mnt && sync
	# L1 resets the machine (system_reset) while fio runs on two queues
	echo "L2-RESET-ME"
	fio --direct=1 --ioengine=libaio --name=rst --filename=/dev/vdd \
		--rw=randwrite --bs=4k --iodepth=16 --numjobs=2 --size=2M \
		--offset_increment=4M --time_based --runtime=600 \
		--cpus_allowed_policy=split --cpus_allowed=0-1 >/dev/null 2>&1
	log "no system_reset came"
	reboot -f
	sleep 60
fi
STEPS

# L1 side of the stop/cont case: once the guest starts that fio, pause
# the VM on the monitor for a few seconds, resume it, then try to migrate.
caps=$(l2_caps)
python3 -u - "$QMP" "/sys/block/$(basename "${nullb_dev:-none}")/stat" \
	"$SERIAL" "$caps" >"$OUT/qmp.out" 2>&1 <<'PY' &
import json, os, sys, time
import qmp
sock, stat, serial, caps = sys.argv[1:5]
EXACT_LOG = int(caps) & 1
def workers():
    """The vhost worker threads of the QEMU on sock (6.4+), -1 if none."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if not f.read().startswith("qemu-system"):
                    continue
            with open(f"/proc/{pid}/cmdline") as f:
                if sock not in f.read():
                    continue
            return qmp.vhost_workers(pid)
        except OSError:
            continue
    return -1
def flushes():
    try:
        with open(stat) as f:
            return int(f.read().split()[15])	# field 16: flush I/Os
    except (OSError, IndexError, ValueError):
        return -1
q = qmp.QMP(sock)
qmp.wait_log(serial, "L2-STOPCONT-BEGIN", 1200)
print("QMP-WORKERS", workers())
time.sleep(15)	# fio starts slowly in the nested guest
before = flushes()
r = q.cmd("stop")
print("QMP-STOP", "ok" if "return" in r else r)
time.sleep(5)
r = q.cmd("query-status")
print("QMP-STATUS", r.get("return", {}).get("status"))
print("QMP-FLUSHES", before, flushes())
r = q.cmd("cont")
print("QMP-CONT", "ok" if "return" in r else r)
if not EXACT_LOG:
    r = q.cmd("migrate", uri="exec:cat >/dev/null")
    print("QMP-MIGRATE", json.dumps(r))
sys.stdout.flush()
# system_reset once the guest runs fio on vdd's queues
qmp.wait_log(serial, "L2-RESET-ME", 1200)
time.sleep(10)	# fio starts slowly in the nested guest
r = q.cmd("system_reset")
print("QMP-RESET", "ok" if "return" in r else r)
sys.stdout.flush()
qmp.wait_log(serial, "L2-PHASE2", 1200)
print("QMP-WORKERS-AFTER-RESET", workers())
PY
l2_bg $!

# ---- the notification path --------------------------------------------
# Under KVM a guest kick is an MMIO write that KVM's ioeventfd turns into an
# eventfd signal for the vhost worker (kvm.ko: ioeventfd_write), and a
# completion is the worker signalling the call eventfd, which KVM's irqfd
# injects as an MSI (irqfd_wakeup); QEMU is not involved.  kprobes count
# both, and kvm_send_userspace_msi counts MSIs QEMU injects itself
# (KVM_SIGNAL_MSI).  QEMU's trace log counts kicks that reached QEMU
# (virtio_pci_notify_write[_pio]: its virtio-pci notify handler;
# virtio_queue_notify: its virtqueue code) and interrupts it sent for the
# device itself (virtio_pci_notify: under TCG that is how QEMU relays the
# vhost call eventfd; virtio_notify: its own virtqueue code);
# virtio_set_status lines show that the trace log works at all.
TR=/sys/kernel/tracing
KPROBES="ioeventfd_write irqfd_wakeup kvm_send_userspace_msi"
kprobes_del() {
	[ -d $TR/events/vb_e2e ] || return 0
	echo 0 >$TR/events/vb_e2e/enable
	for f in $KPROBES; do
		echo "-:vb_e2e/$f" >>$TR/kprobe_events
	done
}
kprobes_add() {
	kprobes_del 2>/dev/null
	for f in $KPROBES; do
		echo "p:vb_e2e/$f kvm:$f" >>$TR/kprobe_events || return 1
	done
	echo 1 >$TR/events/vb_e2e/enable
}
# hits NAME: how often the kprobe NAME fired
hits() { awk -v n="$1" '$1 == n { print $2 }' $TR/kprobe_profile; }
kp_err=
[ -d $TR/events ] || mount -t tracefs nodev $TR 2>/dev/null
kprobes_add 2>"$OUT/kprobes.err" || kp_err="kprobes on kvm.ko: $(cat "$OUT/kprobes.err")"
TRACE=$OUT/qemu-trace.log
rm -f "$TRACE"

l2_run --timeout 1150 --smp 2 --reboot-ok -- \
	-trace virtio_pci_notify_write -trace virtio_pci_notify_write_pio \
	-trace virtio_queue_notify \
	-trace virtio_pci_notify -trace virtio_notify -trace virtio_set_status \
	-D "$TRACE" \
	-device vhost-blk-pci,backend=/dev/ram0,serial=e2e-serial-1,num-queues=1 \
	-device "vhost-blk-pci,backend=${nullb_dev:-/dev/null},num-queues=1" \
	-device vhost-blk-pci,backend=/dev/ram2,readonly=on,num-queues=1 \
	-device "vhost-blk-pci,backend=/dev/ram1,num-queues=4$VDD_OPTS" \
	-device vhost-blk-pci,backend=/dev/ram3,num-queues=1
for f in $KPROBES; do
	eval "kp_$f=\$(hits $f)"
done
kprobes_del

l2_results serial-get-id config-limits fio-verify-4k-1q \
	fio-verify-mixed-bs fio-verify-4m-requests guest-write-for-l1
want=$(grep -a '^L2-SHA' "$OUT/serial.log" | awk '{ print $2 }' | tr -d '\r')
got=$(dd if=/dev/ram0 bs=64k skip=512 count=16 status=none | sha256sum | cut -d' ' -f1)
if [ -n "$want" ] && [ "$want" = "$got" ]; then
	ok "L1 reads back what the guest wrote"
else
	notok "L1 reads back what the guest wrote (guest ${want:-none}, L1 $got)"
fi

l2_results flush-fsync
if [ -z "$nullb_dev" ]; then
	notok "FLUSH reaches the backend (could not set up null_blk with a write cache)"
else
	fl_after=$(flushes "$nullb_dev")
	if [ "$fl_after" -gt "$fl_before" ]; then
		ok "FLUSH reaches the backend ($nullb_dev flushes $fl_before -> $fl_after)"
	else
		notok "FLUSH reaches the backend ($nullb_dev flushes $fl_before -> $fl_after)"
	fi
	{ echo 0 >"$NULLB/power"; rmdir "$NULLB"; } 2>/dev/null
fi

l2_results readonly-flag readonly-write-rejected
ro_sum_after=$(sha256sum </dev/ram2 | cut -d' ' -f1)
if [ "$ro_sum_before" = "$ro_sum_after" ]; then
	ok "read-only backend unchanged"
else
	notok "read-only backend unchanged"
fi

l2_results mq-queues fio-verify-2q fio-verify-stop-cont
if grep -q '^QMP-STOP ok' "$OUT/qmp.out" && grep -q '^QMP-STATUS paused' "$OUT/qmp.out" &&
	grep -q '^QMP-CONT ok' "$OUT/qmp.out"; then
	ok "stop/cont on the monitor during guest I/O"
else
	notok "stop/cont on the monitor during guest I/O"
	diag <"$OUT/qmp.out"
fi
# stop = detach, flush, vhost_dev_stop: the backend of vdb sees a flush
# while the guest is paused
read -r _ fl_stop0 fl_stop1 < <(grep '^QMP-FLUSHES' "$OUT/qmp.out")
if [ -n "$nullb_dev" ] && [ "${fl_stop1:--1}" -gt "${fl_stop0:--1}" ] &&
	[ "${fl_stop0:--1}" -ge 0 ]; then
	ok "VM stop flushes the backend (flushes $fl_stop0 -> $fl_stop1)"
else
	notok "VM stop flushes the backend (flushes ${fl_stop0:-?} -> ${fl_stop1:-?})"
fi
if [ -n "$caps" ] && ((caps & 1)); then
	skip "migration not blocked: module reports VHOST_BLK_CAP_EXACT_LOG" "migration runs are in 55-migrate.sh"
elif grep -Eq '^QMP-MIGRATE.*"error".*vhost-blk: migration disabled: .*VHOST_BLK_CAP_EXACT_LOG' "$OUT/qmp.out"; then
	ok "migration blocked: module lacks VHOST_BLK_CAP_EXACT_LOG"
else
	notok "migration blocked: module lacks VHOST_BLK_CAP_EXACT_LOG"
	diag <"$OUT/qmp.out"
fi
if grep -q '^QMP-RESET ok' "$OUT/qmp.out"; then
	ok "system_reset while fio runs on two queues"
else
	notok "system_reset while fio runs on two queues"
	diag <"$OUT/qmp.out"
fi
l2_results ext4-mkfs ext4-fsck \
	ext4-fsck-after-reboot ext4-checksums-after-reboot \
	fio-verify-2q-after-reset
# 6.5+: five disks, each with the worker of its device, plus one per
# queue of vdd beyond the first; before 6.4 the workers are kernel
# threads, none of them a thread of QEMU.
want_workers=0
[ "$WORKERS" = 1 ] && want_workers=8
for when in "" -AFTER-RESET; do
	got=$(sed -n "s/^QMP-WORKERS$when //p" "$OUT/qmp.out")
	what="QEMU's vhost worker threads${when:+ after system_reset}: ${got:-none seen}, want $want_workers"
	if [ "$WORKERS" = 1 ]; then
		what="$what (5 devices + 3 for vdd's worker-per-virtqueue=on)"
	else
		what="$what (kernel threads before 6.4)"
	fi
	if [ "${got:--1}" = "$want_workers" ]; then
		ok "$what"
	else
		notok "$what"
		diag <"$OUT/qmp.out"
	fi
done
l2_completed

accel=$(sed -n 's/^l2: accel=\([a-z]*\).*/\1/p' "$OUT/l2.err" | head -n1)
# tcount EVENT: lines of QEMU's trace log for EVENT
tcount() { grep -c "^\([0-9]*@[0-9.]*:\)\{0,1\}$1 " "$TRACE" 2>/dev/null; }
kicks="${kp_ioeventfd_write:-?} kicks through KVM ioeventfd"
irqs="${kp_irqfd_wakeup:-?} completions through KVM irqfd"
msis="${kp_kvm_send_userspace_msi:-?} MSIs injected by QEMU"
if [ "$accel" != kvm ]; then
	why="L2 ran under ${accel:-?}, not KVM (VHOST_BLK_L2_ACCEL=kvm|auto; scripts/guest/l2.sh)"
	skip "kicks and completions bypass QEMU (KVM ioeventfd/irqfd)" "$why"
	skip "QEMU's virtqueue handlers never ran" "$why"
elif [ -n "$kp_err" ]; then
	notok "kicks and completions bypass QEMU (KVM ioeventfd/irqfd): $kp_err"
	notok "QEMU's virtqueue handlers never ran: $kp_err"
else
	if [ "${kp_ioeventfd_write:-0}" -ge 500 ] && [ "${kp_irqfd_wakeup:-0}" -ge 500 ] &&
		[ "${kp_kvm_send_userspace_msi:-1}" = 0 ]; then
		ok "kicks and completions bypass QEMU: $kicks, $irqs, $msis"
	else
		notok "kicks and completions bypass QEMU: $kicks, $irqs (want >= 500 each), $msis (want 0)"
	fi
	kq=$(tcount virtio_pci_notify_write) kp=$(tcount virtio_pci_notify_write_pio)
	# QEMU runs a queue's handler once itself at each status change of
	# its device: when the data plane starts (a kick "for requests
	# already in the vring") and when it stops (it drains the kick
	# eventfd's count, which vhost's poll never reads, at every stop,
	# reset and VM stop that follows guest kicks); vhost-blk-pci's
	# handler then returns at once.  Those are not counted; any other
	# virtio_queue_notify, e.g. a guest kick QEMU handled, is.
	kn=$(awk '{ sub(/^[0-9]*@[0-9.]*:/, "") }
		$1 == "virtio_set_status" { gen[$3]++; next }
		$1 == "virtio_queue_notify" {
			if (!seen[$3, gen[$3], $5]++) next
			n++
		}
		END { print n + 0 }' "$TRACE" 2>/dev/null)
	qi=$(tcount virtio_pci_notify) qv=$(tcount virtio_notify) vs=$(tcount virtio_set_status)
	what="kicks $kq+$kp+$kn, interrupts $qi+$qv handled by QEMU, $vs status changes traced"
	if [ "$vs" -gt 0 ] && [ $((kq + kp + kn + qi + qv)) = 0 ]; then
		ok "QEMU's virtqueue handlers never ran ($what)"
	else
		notok "QEMU's virtqueue handlers never ran ($what; want 0, and > 0 status changes)"
		grep -m5 'virtio_pci_notify\|virtio_notify\|virtio_queue_notify' "$TRACE" 2>/dev/null | diag
	fi
fi

# ---------------------------------------------------------- error paths --
qemu_err() {
	timeout 60 "$@" -M q35 -accel tcg -nodefaults -display none \
		-L /usr/share/qemu -L /usr/share/seabios 2>&1 >/dev/null
}
err=$(qemu_err "$QEMU" -device vhost-blk-pci,backend=/nonexistent/disk)
if [[ "$err" == *"cannot open backend"*"/nonexistent/disk"* ]]; then
	ok "bad backend path: clear error"
else
	notok "bad backend path: clear error"
	echo "$err" | diag
fi

# pre-opened fds (how libvirt passes them): realize must succeed; QEMU
# then waits (-S) until the timeout stops it.
err=$( exec 5<>/dev/ram0 6<>/dev/vhost-blk
	qemu_err timeout 20 "$QEMU" -S -device vhost-blk-pci,backendfd=5,vhostfd=6 )
rc=$?
if [ $rc -eq 124 ] && [[ "$err" != *vhost-blk:* ]]; then
	ok "backendfd= and vhostfd= (pre-opened fds) accepted"
else
	notok "backendfd= and vhostfd= (pre-opened fds) accepted (exit $rc)"
	echo "$err" | diag
fi
# worker-per-virtqueue=on: realized on 6.5+ (QEMU then waits, -S, until
# the timeout stops it), refused with its message before.
err=$(qemu_err timeout 20 "$QEMU" -S \
	-device vhost-blk-pci,backend=/dev/ram0,num-queues=2,worker-per-virtqueue=on)
rc=$?
wmsg="vhost-blk: worker-per-virtqueue=on needs the vhost worker ioctls of Linux 6.5 or later"
if [ "$WORKERS" = 1 ] && [ $rc -eq 124 ] && [[ "$err" != *vhost-blk:* ]]; then
	ok "worker-per-virtqueue=on accepted on $(uname -r)"
elif [ "$WORKERS" = 0 ] && [[ "$err" == *"$wmsg"* ]]; then
	ok "worker-per-virtqueue=on refused on $(uname -r): clear error"
else
	notok "worker-per-virtqueue=on on $(uname -r) (exit $rc)"
	echo "$err" | diag
fi
err=$(qemu_err "$QEMU" -device vhost-blk-pci,backend=/dev/ram0,num-queues=17)
if [[ "$err" == *"num-queues=17 is not supported"* ]]; then
	ok "unsupported property: clear error"
else
	notok "unsupported property: clear error"
	echo "$err" | diag
fi

err=$(qemu_err "$QEMU" -device vhost-blk-pci,backend=/dev/ram0,logical_block_size=3000)
if [[ "$err" == *"logical_block_size=3000 is not supported"* ]]; then
	ok "logical_block_size=3000 refused at realize"
else
	notok "logical_block_size=3000 refused at realize"
	echo "$err" | diag
fi

# QEMU's copies of the module's limits (include/hw/virtio/vhost-blk.h of
# the patched QEMU source) equal include/uapi/linux/vhost_blk.h.
abi_values() {	# HEADER: NAME=VALUE lines, evaluated by the C preprocessor
	local n
	for n in VHOST_BLK_MAX_VQS VHOST_BLK_MAX_DATA_BYTES VHOST_BLK_MAX_DWZ_SEGS \
		VHOST_BLK_MAX_DWZ_SECTORS VHOST_BLK_SERIAL_BYTES \
		VHOST_BLK_CAP_EXACT_LOG; do
		grep -E "^#define[[:space:]]+$n[[:space:]]" "$1" | head -1
		echo "KEY_$n=$n"
	done | cpp -P 2>/dev/null | grep = |
		while IFS== read -r name expr; do
			echo "${name#KEY_}=$((${expr//[UL]/}))"
		done
}
qsrc=$(dirname "$QEMU")/../src/include/hw/virtio/vhost-blk.h
want=$(abi_values "$VB_REPO/include/uapi/linux/vhost_blk.h")
got=$( [ -r "$qsrc" ] && abi_values "$qsrc")
if [ -n "$want" ] && [ "$want" = "$got" ]; then
	ok "QEMU's vhost-blk limits equal the uapi header ($(echo $want))"
else
	notok "QEMU's vhost-blk limits equal the uapi header"
	diff <(echo "$want") <(echo "$got") | diag
fi

# /dev/vhost-blk missing (module not loaded): hidden in a private mount
# namespace, so the loaded module stays for the other suites.
fake=$(mktemp -d /tmp/e2e-dev.XXXXXX)
cp -a /dev/null /dev/zero /dev/urandom /dev/ram0 "$fake/"
err=$(qemu_err unshare -m sh -c 'mount --bind "$0" /dev && exec "$@"' \
	"$fake" "$QEMU" -device vhost-blk-pci,backend=/dev/ram0)
rm -rf "$fake"
if [[ "$err" == *"/dev/vhost-blk does not exist"*"module loaded"* ]]; then
	ok "module missing: clear error"
else
	notok "module missing: clear error"
	echo "$err" | diag
fi
l2_done
