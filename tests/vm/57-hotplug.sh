#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Hot-plug and hot-unplug of vhost-blk-pci over QMP, with a guest that
# completes them: an L2 guest on q35 with PCIe root ports and native PCIe
# hot-plug (the tiny guest has no ACPI, so QEMU's ACPI hot-plug of root
# ports is switched off).  Runs inside the L1 VM (scripts/vm-suites.sh);
# prints TAP.
#
# One guest boot (1 vCPU):
#   vda  /dev/ram0 (cold-plugged)     fio loops write+verify (crc32c) on
#                                     it the whole time
#   hp1  /dev/ram1, in root port rp1  L1: device_add with a missing
#                                     backend first (clear error, QEMU's
#                                     descriptors unchanged), then the
#                                     real one; the guest writes 1 MiB,
#                                     runs fio on it, and L1 unplugs it
#                                     (device_del) under that fio
# L1 checks, on the QMP monitor and in /proc/PID/fd of QEMU: device_add
# opens exactly the backend and one /dev/vhost-blk; while the unplug
# runs QMP answers (query-status round trips, the slowest is reported);
# DEVICE_DELETED arrives; the descriptors closed by the unplug are the
# backend, one /dev/vhost-blk and the queue's eventfds, nothing else, and
# QEMU's descriptors are again those from before the plug.  The guest:
# the disk goes away, fio on it ends (with an error: the disk vanished
# under it) instead of hanging, fio on vda saw no verification error;
# then L1 plugs the same backend again and the guest reads back the
# 1 MiB written before the unplug.  Finally the L1 kernel log got no
# warning.  On 6.5+ hp1 has num-queues=2 and worker-per-virtqueue=on: L1
# counts QEMU's vhost worker threads (vhost-<pid>) before the plug, after
# it and after the unplug: 1, 3 (hp1's own and its second queue's), 1
# again (the unplug ended both); before 6.4 0 each time (kernel threads).
set -uo pipefail
. "$(dirname "$0")/../../scripts/guest/l2lib.sh"

l2_begin hotplug 17
# The vhost worker ioctls (worker-per-virtqueue) exist since Linux 6.5.
IFS=. read -r kmaj kmin _ <<<"$(uname -r)"
WORKERS=0
if [ "$kmaj" -gt 6 ] || { [ "$kmaj" -eq 6 ] && [ "$kmin" -ge 5 ]; }; then
	WORKERS=1
fi
l2_need_disks ram0 ram1
dd if=/dev/zero of=/dev/ram0 bs=1M count=16 status=none
dd if=/dev/zero of=/dev/ram1 bs=1M count=16 status=none
dmesg_lines=$(dmesg | wc -l)

cat >"$OUT/steps.sh" <<'STEPS'
FIO="fio --direct=1 --ioengine=libaio"
# wait_for SECONDS CMD...: until CMD succeeds (guest seconds)
wait_for() {
	local i=0 max=$1
	shift
	while [ $i -lt "$max" ]; do
		"$@" && return 0
		sleep 1
		i=$((i + 1))
	done
	return 1
}
# the hot-plugged disk: the vd* that is not vda
hpdisk() {
	local d
	for d in /sys/block/vd*; do
		[ "$d" = /sys/block/vda ] || [ ! -e "$d" ] || { basename "$d"; return 0; }
	done
	return 1
}
log "PCIe slots: $(ls /sys/bus/pci/slots 2>/dev/null | tr '\n' ' ')"
echo "L2-HP-READY"
check hotplug-disk-appears wait_for 600 hpdisk
d=$(hpdisk)
log "hot-plugged disk: ${d:-none}, $(cat /sys/block/${d:-none}/size 2>/dev/null) sectors"
dd if=/dev/urandom of=/tmp/pattern bs=64k count=16 2>/dev/null
want=$(sha256sum /tmp/pattern | cut -d' ' -f1)
check write-before-unplug dd if=/tmp/pattern of=/dev/${d:-none} bs=64k conv=fsync
# fio on vda, in a loop until the end: every pass verifies what it wrote
rm -f /tmp/stop /tmp/vda.fail
(
	i=0
	while [ ! -e /tmp/stop ]; do
		$FIO --verify=crc32c --verify_fatal=1 --name=a --filename=/dev/vda \
			--rw=randwrite --bs=4k --iodepth=8 --size=256K \
			--offset=$(( (i % 8) * 1024 ))K >/tmp/vda.out 2>&1 ||
			cp /tmp/vda.out /tmp/vda.fail
		i=$((i + 1))
		echo $i >/tmp/vda.loops
	done
) &
vpid=$!
# fio on the hot-plugged disk, past the pattern, until the disk vanishes
$FIO --name=b --filename=/dev/${d:-none} --rw=randwrite --bs=4k --iodepth=8 \
	--offset=2M --size=4M --time_based --runtime=3000 >/tmp/hp.out 2>&1 &
fpid=$!
wait_for 60 sh -c '[ "$(cat /tmp/vda.loops 2>/dev/null || echo 0)" -ge 1 ]'
sleep 2
check fio-running-on-both-disks kill -0 $fpid
echo "L2-HP-UNPLUG"
check unplug-disk-gone wait_for 900 sh -c "[ ! -e /sys/block/$d ]"
check fio-on-unplugged-disk-ends wait_for 300 sh -c "! kill -0 $fpid 2>/dev/null"
kill -9 $fpid 2>/dev/null
show tail -n 4 /tmp/hp.out
touch /tmp/stop
wait_for 300 sh -c "! kill -0 $vpid 2>/dev/null"
log "vda fio passes: $(cat /tmp/vda.loops 2>/dev/null)"
check fio-verify-other-disk-across-unplug sh -c '[ ! -e /tmp/vda.fail ] &&
	! kill -0 '$vpid' 2>/dev/null && [ "$(cat /tmp/vda.loops)" -ge 2 ]'
[ -e /tmp/vda.fail ] && show cat /tmp/vda.fail
echo "L2-HP-REPLUG"
check replug-disk-appears wait_for 600 hpdisk
d=$(hpdisk)
got=$(dd if=/dev/${d:-none} bs=64k count=16 2>/dev/null | sha256sum | cut -d' ' -f1)
log "before unplug $want, after replug $got"
check replug-data-written-before-intact [ "$want" = "$got" ]
echo "L2-HP-END"
STEPS

# The L1 side, on the QMP monitor, following the guest's markers.
python3 -u - "$QMP" "$OUT/qemu.pid" "$SERIAL" /dev/ram1 "$WORKERS" \
	>"$OUT/qmp.out" 2>&1 <<'PY' &
import collections, json, sys, time
import qmp
sock, pidfile, serial, backend, workers = sys.argv[1:6]
hp1 = {"driver": "vhost-blk-pci", "id": "hp1", "bus": "rp1",
       "backend": backend, "num-queues": 1}
if workers == "1":
    hp1.update({"num-queues": 2, "worker-per-virtqueue": True})
q = qmp.QMP(sock)
pid = qmp.pidfile(pidfile)
print("QEMU-PID", pid)
def fds():
    return qmp.fds(pid)
def show(c):
    return json.dumps(sorted(c.elements()))
def noev(c):	# the eventfds come and go with the driver (DRIVER_OK, reset)
    return collections.Counter({k: v for k, v in c.items()
                                if k != "anon_inode:[eventfd]"})
if not qmp.wait_log(serial, "L2-HP-READY", 2400):
    sys.exit(1)
base = fds()
r = q.cmd("device_add", **{"driver": "vhost-blk-pci", "id": "bad", "bus": "rp1",
                       "backend": "/nonexistent/disk.img"})
after = fds()
print("BAD", "error" if "error" in r else "accepted",
      "noleak" if after == base else "leaked " + show(after - base))
print("BADMSG", r.get("error", {}).get("desc", ""))
w_base = qmp.vhost_workers(pid)
r = q.cmd("device_add", **hp1)
plugged = fds()
w_plugged = qmp.vhost_workers(pid)
print("PLUG", "ok" if "return" in r else json.dumps(r), show(noev(plugged - base)))
if not qmp.wait_log(serial, "L2-HP-UNPLUG", 1800):
    sys.exit(1)
busy = fds()
print("BUSY-OPENED", show(busy - base))
t0 = time.time()
r = q.cmd("device_del", id="hp1")
print("DEL", "ok" if "return" in r else json.dumps(r))
worst = 0.0
n = 0
deleted = q.wait_event("DEVICE_DELETED", 0, device="hp1")
while not deleted and time.time() - t0 < 1200:
    t = time.time()
    q.cmd("query-status")
    worst = max(worst, time.time() - t)
    n += 1
    deleted = q.wait_event("DEVICE_DELETED", 0.5, device="hp1")
print("DELETED", "yes" if deleted else "no",
      "after %.1f s; %d query-status, slowest %.2f s" % (time.time() - t0, n, worst))
time.sleep(1)
gone = fds()
print("WORKERS", w_base, w_plugged, qmp.vhost_workers(pid))
print("CLOSED", show(busy - gone))
print("OPENED", show(gone - busy))
print("BASE", "same" if gone == base else "differs " + show(gone - base) + " " + show(base - gone))
if not qmp.wait_log(serial, "L2-HP-REPLUG", 1800):
    sys.exit(1)
r = q.cmd("device_add", **hp1)
print("REPLUG", "ok" if "return" in r else json.dumps(r))
PY
l2_bg $!

l2_run --timeout 600 --tcg-timeout 2400 -- -pidfile "$OUT/qemu.pid" \
	-global ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off \
	-device pcie-root-port,id=rp1,chassis=1,slot=1 \
	-device vhost-blk-pci,id=vd0,backend=/dev/ram0,num-queues=1
q() { grep -a "^$1 " "$OUT/qmp.out" | head -1 | cut -d' ' -f2-; }
qfail() { diag <"$OUT/qmp.out"; }

# bad backend: a clear error, no descriptor left behind
msg=$(q BADMSG)
if [[ "$(q BAD)" == "error noleak" &&
	"$msg" == "vhost-blk: cannot open backend: "*"/nonexistent/disk.img"* ]]; then
	ok "device_add with a missing backend refused, no fd leaked: $msg"
else
	notok "device_add with a missing backend refused, no fd leaked"
	qfail
fi
# plug: the backend and one /dev/vhost-blk, nothing else yet
if [ "$(q PLUG)" = "ok [\"/dev/ram1\", \"/dev/vhost-blk\"]" ]; then
	ok "device_add opens the backend and one /dev/vhost-blk"
else
	notok "device_add opens the backend and one /dev/vhost-blk"
	qfail
fi
l2_results hotplug-disk-appears write-before-unplug fio-running-on-both-disks
del=$(q DELETED)
if [ "$(q DEL)" = ok ] && [[ "$del" == "yes "* ]]; then
	ok "device_del under fio: DEVICE_DELETED ${del#yes }"
else
	notok "device_del under fio: DEVICE_DELETED arrives"
	qfail
fi
# QMP stayed responsive: no query-status round trip during the unplug
# took longer than 10 s (nested TCG: the monitor is slow, never stuck)
slow=$(sed -n 's/.*slowest \([0-9.]*\) s.*/\1/p' <<<"$del")
if [ -n "$slow" ] && awk -v s="$slow" 'BEGIN { exit !(s < 10) }'; then
	ok "QMP responsive during the unplug (slowest query-status ${slow} s)"
else
	notok "QMP responsive during the unplug (slowest query-status ${slow:-?} s)"
	qfail
fi
# closed: the backend, one /dev/vhost-blk and eventfds only
closed=$(q CLOSED)
others=$(python3 -c 'import json, sys
c = json.loads(sys.argv[1] or "[]")
print(" ".join(x for x in c if x != "anon_inode:[eventfd]") or "none",
      c.count("anon_inode:[eventfd]"))' "$closed" 2>/dev/null)
if [ "${others% *}" = "/dev/ram1 /dev/vhost-blk" ] && [ "$(q OPENED)" = "[]" ] &&
	[ "$(q BASE)" = same ]; then
	ok "unplug closed the backend, one /dev/vhost-blk and ${others##* } eventfds; fds as before the plug"
else
	notok "unplug closed exactly the backend and one /dev/vhost-blk (closed: ${others:-?})"
	qfail
fi
# vhost worker threads before the plug, plugged, after the unplug
want="0 0 0 (kernel threads before 6.4)"
[ "$WORKERS" = 1 ] && want="1 3 1 (hp1 with num-queues=2,worker-per-virtqueue=on)"
got=$(q WORKERS)
if [ -n "$got" ] && [ "$got" = "${want%% (*}" ]; then
	ok "QEMU's vhost worker threads before plug, plugged, unplugged: $want"
else
	notok "QEMU's vhost worker threads before plug, plugged, unplugged: ${got:-none seen}, want $want"
	qfail
fi
l2_results unplug-disk-gone fio-on-unplugged-disk-ends fio-verify-other-disk-across-unplug
if [ "$(q REPLUG)" = ok ]; then
	ok "device_add of the same backend again"
else
	notok "device_add of the same backend again"
	qfail
fi
l2_results replug-disk-appears replug-data-written-before-intact
l2_completed L2-HP-END ", guest not hung" || qfail
bad=$(dmesg | tail -n +"$((dmesg_lines + 1))" |
	grep -E 'WARNING|BUG|Oops|blocked for more than|hung_task|vhost.*(error|fail)')
if [ -z "$bad" ]; then
	ok "L1 kernel log clean"
else
	notok "L1 kernel log clean"
	diag <<<"$bad"
fi
l2_done
