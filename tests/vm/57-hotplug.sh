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
# warning.
set -uo pipefail

REPO=${VHOST_BLK_REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
CACHE=${VB_CACHE:-${VHOST_BLK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vhost-blk}}
L2=$REPO/scripts/guest/l2.sh
OUT=${VHOST_BLK_OUT:-/tmp}/hotplug
PLAN=16
rm -rf "$OUT"
mkdir -p "$OUT"

n=0
tap() {	# tap ok|notok NAME
	n=$((n + 1))
	if [ "$1" = ok ]; then
		echo "ok $n - hotplug: $2"
	else
		echo "not ok $n - hotplug: $2"
	fi
}
diag() { sed 's/^/# /'; }

echo "1..$PLAN"
bail() {
	while [ $n -lt $PLAN ]; do
		tap notok "$1"
	done
	exit 1
}
L2_ENV=$REPO/build/l2.env	# VB_L2_ENV of scripts/lib.sh
[ -r "$L2_ENV" ] || L2_ENV=$CACHE/l2.env
[ -r "$L2_ENV" ] ||
	bail "QEMU/guest not built ($L2_ENV missing: tests/prepare.d/50-qemu-guest.sh)"
. "$L2_ENV"
QEMU=${VHOST_BLK_QEMU_L2:-$QEMU}	# a QEMU build of one's own
export QEMU GUEST_KERNEL GUEST_INITRD
[ -c /dev/vhost-blk ] || bail "/dev/vhost-blk missing (vhost_blk not loaded)"
for d in ram0 ram1; do
	[ -b /dev/$d ] || bail "/dev/$d missing (brd not loaded)"
done
dd if=/dev/zero of=/dev/ram0 bs=1M count=16 status=none
dd if=/dev/zero of=/dev/ram1 bs=1M count=16 status=none
dmesg_lines=$(dmesg | wc -l)

results() {	# results NAME...: one TAP line per expected guest case
	local name line
	for name in "$@"; do
		line=$(grep -a "^L2-RESULT .*ok $name\b" "$OUT/serial.log" | tail -1)
		case $line in
		"L2-RESULT ok $name"*) tap ok "$name" ;;
		"L2-RESULT not ok $name"*)
			tap notok "$name"
			grep -a '^L2-LOG' "$OUT/serial.log" | tail -25 | diag
			;;
		*)
			tap notok "$name (no result: the guest did not get there)"
			tail -30 "$OUT/serial.log" | diag
			;;
		esac
	done
}

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
QMP=/tmp/hotplug-qmp.$$.sock
rm -f "$OUT/qemu.pid"
python3 -u - "$QMP" "$OUT/qemu.pid" "$OUT/serial.log" /dev/ram1 \
	>"$OUT/qmp.out" 2>&1 <<'PY' &
import collections, json, os, socket, sys, time
sock, pidfile, serial, backend = sys.argv[1:5]
def wait_serial(marker, limit):
    end = time.time() + limit
    while time.time() < end:
        try:
            with open(serial, "rb") as f:
                if any(l.startswith(marker.encode()) for l in f):
                    return True
        except OSError:
            pass
        time.sleep(1)
    print("TIMEOUT waiting for", marker)
    return False
pid = None
end = time.time() + 600
while time.time() < end:
    try:
        pid = open(pidfile).read().strip()
    except OSError:
        pass
    if pid and os.path.exists(sock):
        break
    time.sleep(0.5)
print("QEMU-PID", pid)
s = socket.socket(socket.AF_UNIX)
s.settimeout(300)
s.connect(sock)
f = s.makefile("rw")
events = []
def reply():
    while True:
        m = json.loads(f.readline())
        if "event" in m:
            events.append(m)
        else:
            return m
def cmd(name, args=None):
    msg = {"execute": name}
    if args:
        msg["arguments"] = args
    f.write(json.dumps(msg) + "\n")
    f.flush()
    return reply()
def fds():
    out = []
    for d in os.listdir("/proc/%s/fd" % pid):
        try:
            out.append(os.readlink("/proc/%s/fd/%s" % (pid, d)))
        except OSError:
            pass
    return collections.Counter(out)
def show(c):
    return json.dumps(sorted(c.elements()))
def noev(c):	# the eventfds come and go with the driver (DRIVER_OK, reset)
    return collections.Counter({k: v for k, v in c.items()
                                if k != "anon_inode:[eventfd]"})
def deleted(dev):
    return any(e["event"] == "DEVICE_DELETED" and
               e.get("data", {}).get("device") == dev for e in events)
reply()
cmd("qmp_capabilities")
if not wait_serial("L2-HP-READY", 2400):
    sys.exit(1)
base = fds()
r = cmd("device_add", {"driver": "vhost-blk-pci", "id": "bad", "bus": "rp1",
                       "backend": "/nonexistent/disk.img"})
after = fds()
print("BAD", "error" if "error" in r else "accepted",
      "noleak" if after == base else "leaked " + show(after - base))
print("BADMSG", r.get("error", {}).get("desc", ""))
r = cmd("device_add", {"driver": "vhost-blk-pci", "id": "hp1", "bus": "rp1",
                       "backend": backend, "num-queues": 1})
plugged = fds()
print("PLUG", "ok" if "return" in r else json.dumps(r), show(noev(plugged - base)))
if not wait_serial("L2-HP-UNPLUG", 1800):
    sys.exit(1)
busy = fds()
print("BUSY-OPENED", show(busy - base))
t0 = time.time()
r = cmd("device_del", {"id": "hp1"})
print("DEL", "ok" if "return" in r else json.dumps(r))
worst = 0.0
n = 0
while not deleted("hp1") and time.time() - t0 < 1200:
    t = time.time()
    cmd("query-status")
    worst = max(worst, time.time() - t)
    n += 1
    time.sleep(0.5)
print("DELETED", "yes" if deleted("hp1") else "no",
      "after %.1f s; %d query-status, slowest %.2f s" % (time.time() - t0, n, worst))
time.sleep(1)
gone = fds()
print("CLOSED", show(busy - gone))
print("OPENED", show(gone - busy))
print("BASE", "same" if gone == base else "differs " + show(gone - base) + " " + show(base - gone))
if not wait_serial("L2-HP-REPLUG", 1800):
    sys.exit(1)
r = cmd("device_add", {"driver": "vhost-blk-pci", "id": "hp1", "bus": "rp1",
                       "backend": backend, "num-queues": 1})
print("REPLUG", "ok" if "return" in r else json.dumps(r))
PY
qmp_pid=$!

"$L2" --steps "$OUT/steps.sh" --log "$OUT/serial.log" --timeout 600 \
	--tcg-timeout 2400 -- -qmp "unix:$QMP,server=on,wait=off" \
	-pidfile "$OUT/qemu.pid" \
	-global ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off \
	-device pcie-root-port,id=rp1,chassis=1,slot=1 \
	-device vhost-blk-pci,id=vd0,backend=/dev/ram0,num-queues=1 \
	2>"$OUT/l2.err"
rc=$?
diag <"$OUT/l2.err"
kill "$qmp_pid" 2>/dev/null
wait "$qmp_pid" 2>/dev/null
rm -f "$QMP"
q() { grep -a "^$1 " "$OUT/qmp.out" | head -1 | cut -d' ' -f2-; }
qfail() { diag <"$OUT/qmp.out"; }

# bad backend: a clear error, no descriptor left behind
msg=$(q BADMSG)
if [[ "$(q BAD)" == "error noleak" &&
	"$msg" == "vhost-blk: cannot open backend: "*"/nonexistent/disk.img"* ]]; then
	tap ok "device_add with a missing backend refused, no fd leaked: $msg"
else
	tap notok "device_add with a missing backend refused, no fd leaked"
	qfail
fi
# plug: the backend and one /dev/vhost-blk, nothing else yet
if [ "$(q PLUG)" = "ok [\"/dev/ram1\", \"/dev/vhost-blk\"]" ]; then
	tap ok "device_add opens the backend and one /dev/vhost-blk"
else
	tap notok "device_add opens the backend and one /dev/vhost-blk"
	qfail
fi
results hotplug-disk-appears write-before-unplug fio-running-on-both-disks
del=$(q DELETED)
if [ "$(q DEL)" = ok ] && [[ "$del" == "yes "* ]]; then
	tap ok "device_del under fio: DEVICE_DELETED ${del#yes }"
else
	tap notok "device_del under fio: DEVICE_DELETED arrives"
	qfail
fi
# QMP stayed responsive: no query-status round trip during the unplug
# took longer than 10 s (nested TCG: the monitor is slow, never stuck)
slow=$(sed -n 's/.*slowest \([0-9.]*\) s.*/\1/p' <<<"$del")
if [ -n "$slow" ] && awk -v s="$slow" 'BEGIN { exit !(s < 10) }'; then
	tap ok "QMP responsive during the unplug (slowest query-status ${slow} s)"
else
	tap notok "QMP responsive during the unplug (slowest query-status ${slow:-?} s)"
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
	tap ok "unplug closed the backend, one /dev/vhost-blk and ${others##* } eventfds; fds as before the plug"
else
	tap notok "unplug closed exactly the backend and one /dev/vhost-blk (closed: ${others:-?})"
	qfail
fi
results unplug-disk-gone fio-on-unplugged-disk-ends fio-verify-other-disk-across-unplug
if [ "$(q REPLUG)" = ok ]; then
	tap ok "device_add of the same backend again"
else
	tap notok "device_add of the same backend again"
	qfail
fi
results replug-disk-appears replug-data-written-before-intact
if [ $rc -eq 0 ] && grep -aq '^L2-HP-END' "$OUT/serial.log"; then
	tap ok "L2 run completed, guest not hung ($(grep -o 'booted in.*' "$OUT/l2.err"))"
else
	tap notok "L2 run completed (exit $rc)"
	tail -20 "$OUT/serial.log" | diag
	qfail
fi
bad=$(dmesg | tail -n +"$((dmesg_lines + 1))" |
	grep -E 'WARNING|BUG|Oops|blocked for more than|hung_task|vhost.*(error|fail)')
if [ -z "$bad" ]; then
	tap ok "L1 kernel log clean"
else
	tap notok "L1 kernel log clean"
	diag <<<"$bad"
fi
