#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# system_reset under fio, and a rebooted driver that uses fewer queues.
# Runs inside the L1 VM (scripts/vm-suites.sh); prints TAP.
#
# One L2 guest (2 vCPUs), booted with virtio_blk.num_request_queues=1:
#   vda  /dev/ram2, num-queues=4  boot 1: the driver is rebound with the
#                                 parameter at 0, so it runs on 2 queues
#                                 (one per vCPU); 1 MiB is written and
#                                 synced, then fio writes on both queues
#                                 while L1 resets the machine on the QMP
#                                 monitor (system_reset); boot 2: the
#                                 driver runs on 1 queue, the 1 MiB is
#                                 read back and fio writes and verifies
#   vdb  /dev/ram3, 1 queue       which boot this is, and the 1 MiB's
#                                 checksum
# In L1 the vhost_blk trace events show which queues the kernel served:
# queue 1 before the reset (L1 resets once it served 32 requests there),
# and after the rebooted driver's attach only queue 0: a stale ring of
# the first driver is never served.
set -uo pipefail
. "$(dirname "$0")/../../scripts/guest/l2lib.sh"
T=/sys/kernel/tracing

l2_begin reset 9
l2_need_disks ram2 ram3
[ -d $T/events ] || mount -t tracefs nodev $T 2>/dev/null
[ -d $T/events/vhost_blk ] || l2_bail "no vhost_blk trace events in $T"
dd if=/dev/zero of=/dev/ram2 bs=1M count=16 status=none
dd if=/dev/zero of=/dev/ram3 bs=1M count=1 status=none

cat >"$OUT/steps.sh" <<'STEPS'
FIO="fio --direct=1 --ioengine=libaio"
mark=$(dd if=/dev/vdb bs=512 count=1 2>/dev/null | tr -d '\0' | head -n 1)
nq() { ls /sys/block/$1/mq | wc -l; }
case $mark in
PHASE1*)
	echo "L2-PHASE2"
	log "boot 2 (after system_reset): vda on $(nq vda) queue(s)"
	check reboot-driver-1-queue [ "$(nq vda)" = 1 ]
	got=$(dd if=/dev/vda bs=64k count=16 2>/dev/null | sha256sum | cut -d' ' -f1)
	log "before the reset ${mark#PHASE1 }, after $got"
	check reset-data-written-before-intact [ "PHASE1 $got" = "$mark" ]
	check fio-verify-1-queue-after-reset $FIO --verify=crc32c --verify_fatal=1 \
		--name=c --filename=/dev/vda --rw=randwrite --bs=4k --iodepth=8 \
		--offset=12M --size=1M
	dd if=/dev/zero of=/dev/vdb bs=512 count=1 conv=fsync 2>/dev/null
	;;
*)
	log "boot 1: vda on $(nq vda) queue(s) (num_request_queues=1)"
	vdev=$(basename "$(readlink -f /sys/block/vda/device)")
	echo "$vdev" >/sys/bus/virtio/drivers/virtio_blk/unbind
	echo 0 >/sys/module/virtio_blk/parameters/num_request_queues
	echo "$vdev" >/sys/bus/virtio/drivers/virtio_blk/bind
	sleep 1
	d=$(ls /sys/bus/virtio/devices/$vdev/block 2>/dev/null)
	log "$vdev rebound with the parameter at 0: ${d:-no disk} on $(nq ${d:-none}) queue(s)"
	check driver-2-queues-before-reset [ "$(nq ${d:-none})" = 2 ]
	dd if=/dev/urandom of=/tmp/pattern bs=64k count=16 2>/dev/null
	sum=$(sha256sum /tmp/pattern | cut -d' ' -f1)
	dd if=/tmp/pattern of=/dev/${d:-none} bs=64k conv=fsync 2>/dev/null
	echo "PHASE1 $sum" | dd of=/dev/vdb conv=fsync 2>/dev/null
	$FIO --name=a --filename=/dev/${d:-none} --rw=randwrite --bs=4k \
		--iodepth=8 --numjobs=2 --offset=2M --offset_increment=4M \
		--size=4M --time_based --runtime=3000 \
		--cpus_allowed=0-1 --cpus_allowed_policy=split >/tmp/fio.out 2>&1 &
	sleep 5
	check fio-running-before-reset kill -0 $!
	echo "L2-RESET-NOW"
	sleep 1200
	;;
esac
STEPS

python3 -u - "$QMP" "$SERIAL" >"$OUT/qmp.out" 2>&1 <<'PY' &
import json, sys, time
import qmp
sock, serial = sys.argv[1:3]
q = qmp.QMP(sock)
if not qmp.wait_log(serial, "L2-RESET-NOW", 2400):
    sys.exit(1)
# reset only once fio keeps the second queue busy (nested TCG: fio takes
# a while to get going)
end = time.time() + 600
q1 = 0
while time.time() < end:
    with open("/sys/kernel/tracing/trace") as t:
        q1 = sum(1 for l in t if "vhost_blk_req_start:" in l and " vq=1 " in l)
    if q1 >= 32:
        break
    time.sleep(2)
print("QUEUE1", q1)
r = q.cmd("system_reset")
print("RESET", "ok" if "return" in r else json.dumps(r))
with open("/sys/kernel/tracing/trace_marker", "w") as m:
    m.write("vhost-blk-test: system_reset\n")
PY
l2_bg $!

echo 0 >$T/tracing_on
: >$T/trace
echo 8192 >$T/buffer_size_kb
echo 1 >$T/events/vhost_blk/enable
echo 1 >$T/tracing_on
l2_run --timeout 600 --tcg-timeout 2400 --smp 2 --reboot-ok \
	--append virtio_blk.num_request_queues=1 -- \
	-device vhost-blk-pci,backend=/dev/ram2,num-queues=4 \
	-device vhost-blk-pci,backend=/dev/ram3,num-queues=1
echo 0 >$T/tracing_on
echo 0 >$T/events/vhost_blk/enable
cat $T/trace >"$OUT/trace.txt"
: >$T/trace
echo 1408 >$T/buffer_size_kb

l2_results driver-2-queues-before-reset fio-running-before-reset
if grep -q '^RESET ok' "$OUT/qmp.out"; then
	ok "system_reset under fio on 2 queues"
else
	notok "system_reset under fio on 2 queues"
	diag <"$OUT/qmp.out"
fi
l2_results reboot-driver-1-queue reset-data-written-before-intact \
	fio-verify-1-queue-after-reset
# The trace: the 4-queue device is the one that served queue 1.  Count
# its requests per queue before the reset, and from its first attach
# after the reset (the rebooted driver's) to its next detach (that
# driver's end: under KVM the guest reboots again within the seconds
# l2.sh waits after L2-DONE, and a later boot's driver uses all queues).
read -r dev q1_before q0_after q123_after < <(awk '
	/vhost_blk_req_start:/ || /vhost_blk_attach:/ || /vhost_blk_detach:/ {
		dev = ""; vq = ""
		for (i = 1; i <= NF; i++) {
			if ($i ~ /^dev=/) dev = substr($i, 5)
			if ($i ~ /^vq=/) vq = substr($i, 4)
		}
	}
	/vhost-blk-test: system_reset/ { ev[++n] = "M"; next }
	/vhost_blk_attach:/ { ev[++n] = "A " dev; next }
	/vhost_blk_detach:/ { ev[++n] = "D " dev; next }
	/vhost_blk_req_start:/ { ev[++n] = "R " dev " " vq; if (vq == 1) mq = dev }
	END {
		if (mq == "") { print "none 0 0 0"; exit }
		# 0 before the reset, 1 reset, 2 attached again, 3 detached again
		phase = 0
		for (i = 1; i <= n; i++) {
			split(ev[i], e, " ")
			if (e[1] == "M" && phase == 0) phase = 1
			if (e[1] == "A" && e[2] == mq && phase == 1) phase = 2
			if (e[1] == "D" && e[2] == mq && phase == 2) phase = 3
			if (e[1] != "R" || e[2] != mq) continue
			if (phase == 0 && e[3] == 1) b1++
			if (phase == 2 && e[3] == 0) a0++
			if (phase == 2 && e[3] != 0) a123++
		}
		printf "%s %d %d %d\n", mq, b1, a0, a123
	}' "$OUT/trace.txt")
stat="device $dev: queue 1 before the reset: $q1_before requests; after the reset and its attach: queue 0 $q0_after, queues 1-3 $q123_after"
if [ "$dev" != none ] && [ "$q1_before" -ge 32 ] && [ "$q0_after" -gt 0 ]; then
	ok "trace: the first driver used queue 1, the rebooted one queue 0 ($stat)"
else
	notok "trace: the first driver used queue 1, the rebooted one queue 0 ($stat)"
	grep -c vhost_blk_ "$OUT/trace.txt" | diag
fi
if [ "$dev" != none ] && [ "$q123_after" = 0 ]; then
	ok "no stale ring served after the reset: queues 1-3 idle after the rebooted driver's attach ($q0_after requests on queue 0)"
else
	notok "no stale ring served after the reset ($stat)"
fi
l2_completed L2-PHASE2 ", guest rebooted"
l2_done
