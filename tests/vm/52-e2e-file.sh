#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# End-to-end on raw image files: an L2 guest on vhost-blk-pci disks whose
# backends are regular files in this (L1) VM.  Runs inside the L1 VM
# (scripts/vm-suites.sh); prints TAP.
#
# Filesystems are made here on RAM disks (tmpfs has no O_DIRECT before
# Linux 6.6): ext4 on /dev/ram3, xfs on a loop device over a sparse file
# in /tmp (mkfs.xfs wants 300 MiB), ramfs (no O_DIRECT at all).
# One nested QEMU run (2 vCPUs), QEMU with an ioctl() shim (LD_PRELOAD,
# below) that can fake kernel failures:
#   vda  ext4 file, 32 MiB + 1000 bytes,   capacity rounded down to whole
#        O_DIRECT (the default),           4 KiB blocks; fio write+verify
#        logical_block_size=4096           (crc32c); a pattern L1 reads
#                                          back from the file
#   vdb  xfs file, O_DIRECT                fio write+verify, mixed sizes
#   vdc  ext4 file, direct=off             fio write+verify; a pattern
#        (page cache)                      L1 reads back
#   vdd  ramfs file, direct=off            fio write+verify
#   vde  ext4 file, readonly=on            RO flag, writes rejected, file
#                                          unchanged
#   vdf  ext4 file, num-queues=4           a driver on 2 of the 4 queues
#                                          (2 vCPUs) runs fio, then is
#                                          rebound with one queue
#                                          (num_request_queues=1) and runs
#                                          fio again: QEMU must clear the
#                                          rings of the queues the new
#                                          driver did not enable before
#                                          it attaches (seen in the shim's
#                                          ioctl log), so the kernel never
#                                          serves a stale ring
# then L1 stops the VM on the QMP monitor with a detach that fails: the
# device must be marked broken (virtio_error: NEEDS_RESET, "broken" in
# x-query-virtio-status) and a migration must fail in pre_save.
# Then, without a guest, one QEMU (-S, q35 with PCIe root ports) gets
# device_add over QMP with bad backends, each of which must fail with its
# message and leave no descriptor open: a missing file, a directory, a
# FIFO, a file on a filesystem without O_DIRECT, a file smaller than one
# block, and a module that refuses files (an older one answers ENOTBLK;
# emulated with the same shim).  A good file then plugs (positive
# control).
set -uo pipefail
. "$(dirname "$0")/../../scripts/guest/l2lib.sh"
FS=/tmp/e2e-file.fs

XFS_LOOP=
cleanup() {
	umount "$FS/xfs" "$FS/ramfs" 2>/dev/null
	[ -n "$XFS_LOOP" ] && losetup -d "$XFS_LOOP" 2>/dev/null
	umount "$FS/ext4" 2>/dev/null
	rm -rf "$FS"
}

l2_begin e2e-file 27
l2_need_disks ram3

trap cleanup EXIT
cleanup
mkdir -p "$FS/ext4" "$FS/xfs" "$FS/ramfs"
modprobe -d "${VHOST_BLK_MODROOT:-/}" ext4 2>/dev/null
mkfs.ext4 -q -F /dev/ram3 >/dev/null 2>&1 && mount -t ext4 /dev/ram3 "$FS/ext4" ||
	l2_bail "cannot make ext4 on /dev/ram3"
modprobe -d "${VHOST_BLK_MODROOT:-/}" loop 2>/dev/null
modprobe -d "${VHOST_BLK_MODROOT:-/}" xfs 2>/dev/null
truncate -s 320M "$FS/xfs.img" &&
	XFS_LOOP=$(losetup -f --show "$FS/xfs.img") &&
	mkfs.xfs -q -f "$XFS_LOOP" >/dev/null 2>&1 &&
	mount -t xfs "$XFS_LOOP" "$FS/xfs" || l2_bail "cannot make xfs on a loop device"
mount -t ramfs ramfs "$FS/ramfs" || l2_bail "cannot mount ramfs"

# vda: not a multiple of its 4 KiB blocks: the guest sees 65536 sectors
dd if=/dev/zero of="$FS/ext4/direct.img" bs=1M count=32 status=none
truncate -s $((32 * 1024 * 1024 + 1000)) "$FS/ext4/direct.img"
dd if=/dev/zero of="$FS/xfs/direct.img" bs=1M count=16 status=none
dd if=/dev/zero of="$FS/ext4/buffered.img" bs=1M count=16 status=none
dd if=/dev/zero of="$FS/ramfs/buffered.img" bs=1M count=8 status=none
dd if=/dev/urandom of="$FS/ext4/ro.img" bs=1M count=2 status=none
dd if=/dev/zero of="$FS/ext4/mq.img" bs=1M count=8 status=none
ro_sum_before=$(sha256sum <"$FS/ext4/ro.img" | cut -d' ' -f1)

# An ioctl() shim (LD_PRELOAD) emulates two kernel answers: an older
# module refuses a regular file with ENOTBLK (for a file whose path
# contains "old-module"), and a detach (VHOST_BLK_SET_BACKEND -1) fails
# with EIO while the file $VB_FAIL_DETACH exists (after the real detach).
# With $VB_IOCTL_LOG set it logs VHOST_SET_VRING_ADDR and
# VHOST_BLK_SET_BACKEND calls ("FD ADDR INDEX DESC", "FD BACKEND ARG").
cat >"$OUT/enotblk.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <linux/vhost.h>
#include <linux/vhost_blk.h>

int ioctl(int fd, unsigned long req, ...)
{
	static int (*real)(int, unsigned long, ...);
	char link[64], target[4096];
	va_list ap;
	void *arg;
	ssize_t len;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (!real)
		real = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
	if (getenv("VB_IOCTL_LOG") &&
	    (req == VHOST_SET_VRING_ADDR || req == VHOST_BLK_SET_BACKEND)) {
		FILE *log = fopen(getenv("VB_IOCTL_LOG"), "a");

		if (log) {
			if (req == VHOST_SET_VRING_ADDR)
				fprintf(log, "%d ADDR %u %llu\n", fd,
					((struct vhost_vring_addr *)arg)->index,
					(unsigned long long)
					((struct vhost_vring_addr *)arg)->desc_user_addr);
			else
				fprintf(log, "%d BACKEND %d\n", fd, *(int *)arg);
			fclose(log);
		}
	}
	if (req == VHOST_BLK_SET_BACKEND && *(int *)arg == -1 &&
	    getenv("VB_FAIL_DETACH") && !access(getenv("VB_FAIL_DETACH"), F_OK)) {
		real(fd, req, arg);
		errno = EIO;
		return -1;
	}
	if (req == VHOST_BLK_SET_BACKEND && *(int *)arg >= 0) {
		snprintf(link, sizeof(link), "/proc/self/fd/%d", *(int *)arg);
		len = readlink(link, target, sizeof(target) - 1);
		if (len > 0) {
			target[len] = 0;
			if (strstr(target, "old-module")) {
				errno = ENOTBLK;
				return -1;
			}
		}
	}
	return real(fd, req, arg);
}
C
shim=$OUT/enotblk.so
cc -shared -fPIC -O2 -Wall -I"$VB_REPO/include/uapi" -o "$shim" "$OUT/enotblk.c" -ldl \
	>"$OUT/shim.log" 2>&1 || { diag <"$OUT/shim.log"; shim=; }

cat >"$OUT/steps.sh" <<'STEPS'
FIO="fio --ioengine=libaio --verify=crc32c --verify_fatal=1"
for d in vda vdb vdc vdd vde vdf; do
	log "$d: $(cat /sys/block/$d/size) sectors, logical block" \
		"$(cat /sys/block/$d/queue/logical_block_size)"
done
check file-capacity-rounded sh -c '[ "$(cat /sys/block/vda/size)" = 65536 ] &&
	[ "$(cat /sys/block/vda/queue/logical_block_size)" = 4096 ] &&
	[ "$(cat /sys/block/vdb/size)" = 32768 ] &&
	[ "$(cat /sys/block/vdc/size)" = 32768 ] &&
	[ "$(cat /sys/block/vdd/size)" = 16384 ]'
check fio-verify-ext4-direct $FIO --direct=1 --name=a --filename=/dev/vda \
	--rw=randwrite --bs=4k --iodepth=16 --size=1M
check fio-verify-xfs-direct $FIO --direct=1 --name=b --filename=/dev/vdb \
	--rw=randwrite --bssplit=512/10:4k/50:64k/30:256k/10 --iodepth=8 --size=1M
check fio-verify-ext4-buffered $FIO --direct=1 --name=c --filename=/dev/vdc \
	--rw=randwrite --bs=4k --iodepth=16 --size=1M
check fio-verify-ramfs-buffered $FIO --direct=1 --name=d --filename=/dev/vdd \
	--rw=randwrite --bs=16k --iodepth=8 --size=1M
# guest writes, L1 reads back from the files (1 MiB at 8 MiB)
dd if=/dev/urandom of=/tmp/pattern bs=64k count=16 2>/dev/null
echo "L2-SHA $(sha256sum /tmp/pattern | cut -d' ' -f1)"
check write-for-l1-direct dd if=/tmp/pattern of=/dev/vda bs=64k seek=128 conv=fsync
check write-for-l1-buffered dd if=/tmp/pattern of=/dev/vdc bs=64k seek=128 conv=fsync
check file-readonly-flag sh -c '[ "$(cat /sys/block/vde/ro)" = 1 ]'
check file-readonly-write-rejected sh -c '! dd if=/dev/zero of=/dev/vde bs=4k count=1 conv=fsync'
# vdf: a driver on two of its four queues, then one on a single queue
check mq-driver-2q sh -c '[ $(ls /sys/block/vdf/mq | wc -l) = 2 ]'
check fio-verify-file-2q $FIO --direct=1 --name=mqa --filename=/dev/vdf \
	--rw=randwrite --bs=4k --iodepth=8 --numjobs=2 --offset_increment=2M \
	--size=512K --cpus_allowed_policy=split --cpus_allowed=0-1
vdev=$(basename "$(readlink -f /sys/block/vdf/device)")
echo "$vdev" >/sys/bus/virtio/drivers/virtio_blk/unbind
echo 1 >/sys/module/virtio_blk/parameters/num_request_queues
echo "$vdev" >/sys/bus/virtio/drivers/virtio_blk/bind
sleep 1
mqd=$(ls /sys/bus/virtio/devices/$vdev/block 2>/dev/null)
log "$vdev rebound with one queue: disk ${mqd:-none}"
check mq-driver-1q sh -c "[ -n '$mqd' ] && [ \$(ls /sys/block/$mqd/mq | wc -l) = 1 ]"
check fio-verify-file-1q-after-rebind $FIO --direct=1 --name=mqb \
	--filename=/dev/${mqd:-vdf} --rw=randwrite --bs=4k --iodepth=8 \
	--size=512K --offset=5M
# L1 now stops the VM with a detach that fails, then quits QEMU
echo "L2-HOLD"
sleep 600
STEPS

# L1 side of the failed-detach case: once the guest is done, make the
# detach fail (shim), stop the VM: the device must be marked broken
# (virtio_error: NEEDS_RESET) and a migration must fail in pre_save.
FAIL_DETACH=$OUT/fail-detach
rm -f "$FAIL_DETACH"
python3 -u - "$QMP" "$FAIL_DETACH" "$SERIAL" >"$OUT/qmp-detach.out" 2>&1 <<'PY' &
import json, sys, time
import qmp
q = qmp.QMP(sys.argv[1])
qmp.wait_log(sys.argv[3], "L2-HOLD", 1500)
def vstatus():
    r = q.cmd("x-query-virtio-status",
              path="/machine/peripheral/vd0/virtio-backend")
    st = r.get("return", {})
    return (st.get("broken"), st.get("vhost-started"),
            any("NEEDS_RESET" in x
                for x in st.get("status", {}).get("statuses", [])))
print("QMP-BEFORE", *vstatus())
open(sys.argv[2], "w").close()
r = q.cmd("stop")
print("QMP-STOP", "ok" if "return" in r else r)
for _ in range(20):	# the device is marked broken from a bottom half
    after = vstatus()
    if after[2]:
        break
    time.sleep(0.5)
print("QMP-AFTER", *after)
r = q.cmd("migrate", uri="exec:cat >/dev/null")
print("QMP-MIGRATE", json.dumps(r))
st = "?"
for _ in range(120):
    st = q.cmd("query-migrate").get("return", {}).get("status")
    if st in ("completed", "failed", "cancelled"):
        break
    time.sleep(0.5)
print("QMP-MIGRATION", st)
sys.stdout.flush()
q.cmd("quit")
PY
l2_bg $!

IOCTL_LOG=$OUT/ioctl.log
rm -f "$IOCTL_LOG"
LD_PRELOAD=${shim} VB_FAIL_DETACH=$FAIL_DETACH VB_IOCTL_LOG=$IOCTL_LOG \
	l2_run --timeout 300 --tcg-timeout 1000 --smp 2 -- \
	-device "vhost-blk-pci,id=vd0,backend=$FS/ext4/direct.img,logical_block_size=4096,num-queues=1" \
	-device "vhost-blk-pci,backend=$FS/xfs/direct.img,num-queues=1" \
	-device "vhost-blk-pci,backend=$FS/ext4/buffered.img,direct=off,num-queues=1" \
	-device "vhost-blk-pci,backend=$FS/ramfs/buffered.img,direct=off,num-queues=1" \
	-device "vhost-blk-pci,backend=$FS/ext4/ro.img,readonly=on,num-queues=1" \
	-device "vhost-blk-pci,backend=$FS/ext4/mq.img,num-queues=4"

l2_results file-capacity-rounded fio-verify-ext4-direct \
	fio-verify-xfs-direct fio-verify-ext4-buffered fio-verify-ramfs-buffered \
	write-for-l1-direct write-for-l1-buffered
want=$(grep -a '^L2-SHA' "$OUT/serial.log" | awk '{ print $2 }' | tr -d '\r')
for f in direct buffered; do
	got=$(dd if="$FS/ext4/$f.img" bs=64k skip=128 count=16 status=none |
		sha256sum | cut -d' ' -f1)
	if [ -n "$want" ] && [ "$want" = "$got" ]; then
		ok "L1 reads back from $f.img what the guest wrote"
	else
		notok "L1 reads back from $f.img what the guest wrote (guest ${want:-none}, L1 $got)"
	fi
done
l2_results file-readonly-flag file-readonly-write-rejected
ro_sum_after=$(sha256sum <"$FS/ext4/ro.img" | cut -d' ' -f1)
if [ "$ro_sum_before" = "$ro_sum_after" ]; then
	ok "read-only file unchanged"
else
	notok "read-only file unchanged"
fi
l2_results mq-driver-2q fio-verify-file-2q mq-driver-1q \
	fio-verify-file-1q-after-rebind
# In the shim's log, the 4-queue device is the one whose queue 1 got a
# ring.  After its last detach before the rebound driver's attach, queue 1
# (enabled by the first driver only) must have been cleared.
stale=$(python3 - "$IOCTL_LOG" <<'PY'
import sys
try:
    lines = [l.split() for l in open(sys.argv[1])]
except OSError:
    print("no ioctl log")
    sys.exit()
fds = {l[0] for l in lines if l[1] == "ADDR" and l[2] == "1" and l[3] != "0"}
if len(fds) != 1:
    print("the 4-queue device not found (fds with a queue-1 ring: %s)" % fds)
    sys.exit()
fd = fds.pop()
ev = [l[1:] for l in lines if l[0] == fd]
used = max(i for i, e in enumerate(ev) if e[:2] == ["ADDR", "1"] and e[2] != "0")
detach = [i for i, e in enumerate(ev) if i > used and e == ["BACKEND", "-1"]]
if not detach:
    print("no detach after the first driver")
    sys.exit()
attach = [i for i, e in enumerate(ev) if i > detach[0] and e[0] == "BACKEND" and e[1] != "-1"]
if not attach:
    print("no attach for the rebound driver")
    sys.exit()
cleared = any(e == ["ADDR", "1", "0"] for e in ev[detach[0]:attach[0]])
print("ok" if cleared else "queue 1 keeps the first driver's ring at the rebound driver's attach")
PY
)
if [ "$stale" = ok ]; then
	ok "1 of 4 queues after 2 of 4: the unused queues' rings cleared before attach"
else
	notok "1 of 4 queues after 2 of 4: the unused queues' rings cleared before attach ($stale)"
	tail -30 "$IOCTL_LOG" 2>/dev/null | diag
fi
if grep -q '^QMP-BEFORE False True False' "$OUT/qmp-detach.out" &&
	grep -q '^QMP-STOP ok' "$OUT/qmp-detach.out" &&
	grep -q '^QMP-AFTER True False True' "$OUT/qmp-detach.out" &&
	grep -aq 'vhost-blk: detaching the backend failed' "$OUT/serial.log"; then
	ok "failed detach at VM stop: device broken (NEEDS_RESET), error reported"
else
	notok "failed detach at VM stop: device broken (NEEDS_RESET), error reported"
	diag <"$OUT/qmp-detach.out"
	grep -a '^qemu:' "$OUT/serial.log" | diag
fi
if grep -q '^QMP-MIGRATION failed' "$OUT/qmp-detach.out" &&
	grep -aq 'vhost-blk: the data plane could not be drained or flushed' "$OUT/serial.log"; then
	ok "failed detach: migration refused in pre_save"
else
	notok "failed detach: migration refused in pre_save"
	diag <"$OUT/qmp-detach.out"
fi
l2_completed

mkdir -p "$FS/ext4/dir"
mkfifo "$FS/ext4/fifo"
head -c 100 /dev/zero >"$FS/ext4/tiny.img"
dd if=/dev/zero of="$FS/ext4/old-module.img" bs=1M count=1 status=none
dd if=/dev/zero of="$FS/ramfs/nodirect.img" bs=1M count=1 status=none

rm -f "$OUT/qemu.pid"
LD_PRELOAD=${shim} timeout 300 "$QEMU" -S -M q35 -accel tcg -nodefaults \
	-display none -L /usr/share/qemu -L /usr/share/seabios \
	-device pcie-root-port,id=rp1,chassis=1 \
	-device pcie-root-port,id=rp2,chassis=2 \
	-pidfile "$OUT/qemu.pid" -qmp "unix:$QMP,server=on,wait=off" \
	>"$OUT/qemu-qmp.out" 2>&1 &
qpid=$!
python3 - "$QMP" "$OUT/qemu.pid" "$FS" >"$OUT/qmp.out" 2>&1 <<'PY'
import json, sys
import qmp
sock, pidfile, fs = sys.argv[1], sys.argv[2], sys.argv[3]
pid = qmp.pidfile(pidfile)
q = qmp.QMP(sock, timeout=60)
print("QEMU-PID", pid)
def fds():
    return qmp.fds(pid)
def count(c):
    return sum(c.values())
cases = [
    ("missing", fs + "/ext4/nonexistent.img", {}),
    ("directory", fs + "/ext4/dir", {}),
    ("fifo", fs + "/ext4/fifo", {}),
    ("nodirect", fs + "/ramfs/nodirect.img", {}),
    ("tiny", fs + "/ext4/tiny.img", {}),
    ("oldmodule", fs + "/ext4/old-module.img", {}),
]
for name, path, extra in cases:
    before = fds()
    args = {"driver": "vhost-blk-pci", "id": name, "bus": "rp1",
            "backend": path}
    args.update(extra)
    r = q.cmd("device_add", **args)
    after = fds()
    err = r.get("error", {}).get("desc", "") if "error" in r else ""
    print("CASE", name, "error" if "error" in r else "accepted",
          "fds %d -> %d" % (count(before), count(after)),
          "leaked" if before != after else "noleak")
    print("MSG", name, err)
    if before != after:
        print("DIFF", name, sorted(set(after) - set(before)))
before = fds()
r = q.cmd("device_add", driver="vhost-blk-pci", id="good", bus="rp2",
          backend=fs + "/ramfs/nodirect.img", direct=False)
after = fds()
print("GOOD", "ok" if "return" in r else json.dumps(r),
      "added", count(after) - count(before),
      "backend" if fs + "/ramfs/nodirect.img" in after else "-",
      "vhost" if "/dev/vhost-blk" in after else "-")
try:
    q.cmd("quit")
except (OSError, ValueError):
    pass
PY
wait "$qpid" 2>/dev/null
rm -f "$QMP"

# refused NAME DESCRIPTION PATTERN: the device_add failed with a message
# matching PATTERN, and QEMU's open descriptors are those from before
refused() {
	local line msg
	line=$(grep "^CASE $1 " "$OUT/qmp.out")
	msg=$(grep "^MSG $1 " "$OUT/qmp.out" | cut -d' ' -f3-)
	# shellcheck disable=SC2053
	if [[ "$line" == *" error "*" noleak" && "$msg" == $3 ]]; then
		ok "$2 refused, no fd leaked: $msg"
	else
		notok "$2 refused with a clear message, no fd leaked"
		{ echo "${line:-no result}"; echo "message: $msg"
		  grep "^DIFF $1 " "$OUT/qmp.out"; } | diag
		[ -n "$line" ] || diag <"$OUT/qmp.out"
	fi
}
refused missing "missing file" "vhost-blk: cannot open backend: *nonexistent.img*No such file or directory"
refused directory "directory" "vhost-blk: backend '*/dir' is a directory*"
refused fifo "FIFO" "vhost-blk: backend '*/fifo' is a FIFO*"
refused nodirect "file on a filesystem without O_DIRECT" "*does not support O_DIRECT*use direct=off"
refused tiny "file smaller than one block" "*tiny.img' is smaller than one logical block (512 bytes)"
if [ -n "$shim" ]; then
	refused oldmodule "file with a module that answers ENOTBLK" \
		"*old-module.img' is a regular file and the vhost_blk kernel module does not serve files (ENOTBLK)*"
else
	notok "file with a module that answers ENOTBLK (the ioctl shim did not build)"
fi
if grep -q '^GOOD ok added [0-9]* backend vhost$' "$OUT/qmp.out"; then
	ok "device_add of a file with direct=off: backend and /dev/vhost-blk open"
else
	notok "device_add of a file with direct=off: backend and /dev/vhost-blk open"
	diag <"$OUT/qmp.out"
	diag <"$OUT/qemu-qmp.out"
fi
l2_done
