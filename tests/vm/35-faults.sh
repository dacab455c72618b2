#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# 35-faults.sh - vhost-blk with injected backend faults and process death
# (VM suite, TAP).  Backends are device-mapper targets over /dev/ram3:
#   dm-error  (linear + error halves): requests in the error half complete
#             with IOERR, the others OK;
#   dm-flakey (up 1 s / down 1 s): one device instance sees OK and IOERR
#             and serves again after every down period;
#   dm-delay  (1 s): requests in flight when the backend is detached, when
#             the device fd is closed, and when the owner is killed -9;
#             detach during heavy I/O (the stress tool on dm-delay 10 ms).
# Leaks: after every case the dm device's open count must drop to 0 (the
# backend file is released) and vhost_blk's module refcount must be 0; at
# the end "rmmod vhost_blk" must succeed (kmem_cache_destroy of the request
# cache complains with a BUG line if a request leaked, which fails the VM
# run), then the module is loaded again for the suites that follow.
set -u
. "$(dirname "$0")/../../scripts/lib.sh"
REPO=$VB_REPO
F=$(vb_selftest_bin vblk_fault)
S=$(vb_selftest_bin vblk_stress)
RAM=/dev/ram3
finish() { tap_done; exit $?; }
# check NAME CMD...: TAP line from a command's status, its output as comments
check() {
	local name=$1 out rc
	shift
	out=$("$@" 2>&1)
	rc=$?
	sed 's/^/# /' <<<"$out" | grep -v '^# $' | tail -15
	if [ $rc -eq 0 ]; then ok "$name"; else notok "$name (rc $rc)"; fi
	return $rc
}
sectors=$(( $(blockdev --getsz $RAM 2>/dev/null || echo 0) ))
if [ ! -x "$F" ] || [ ! -x "$S" ] || [ "$sectors" -lt 131072 ] || ! command -v dmsetup >/dev/null; then
	notok "faults: tools ($F, $S), $RAM and dmsetup present"
	finish
fi
half=$((sectors / 2))
modref() { awk '$1 == "vhost_blk" {print $3}' /proc/modules; }
opencount() { dmsetup info -c --noheadings -o open "$1" 2>/dev/null | tr -d ' '; }
# wait_released DMNAME: open count 0 and module refcount 0, bounded (30 s)
wait_released() {
	local i
	for i in $(seq 300); do
		[ "$(opencount "$1")" = 0 ] && [ "$(modref)" = 0 ] && return 0
		sleep 0.1
	done
	echo "# $1 open count $(opencount "$1"), vhost_blk refcount $(modref)"
	return 1
}
# dmcreate NAME TABLE: no udev in the VM, so make the /dev/mapper node ourselves
dmcreate() {
	dmsetup create "$1" --noudevsync --table "$2" && dmsetup mknodes "$1" &&
		[ -b "/dev/mapper/$1" ]
}
slab() { awk '$1 == "vhost_blk_req" {print $2}' /proc/slabinfo 2>/dev/null; }
for d in vbf-err vbf-flakey vbf-delay vbf-delay10; do dmsetup remove --noudevsync $d >/dev/null 2>&1; done
ref0=$(modref)
slab0=$(slab)
echo "# vhost_blk refcount $ref0, vhost_blk_req slab objects ${slab0:-n/a (merged cache)}"

# ---- dm-error: failing half IOERR, healthy half OK ---------------------------
dmcreate vbf-err "0 $half linear $RAM 0
$half $half error" || { notok "faults: dmsetup create dm-error table"; finish; }
check "faults: dm-error: 64 requests on the healthy half all complete OK" \
	"$F" io /dev/mapper/vbf-err 0 "$half" ok 64
check "faults: dm-error: 64 requests on the failing half all complete IOERR" \
	"$F" io /dev/mapper/vbf-err "$half" "$half" ioerr 64
check "faults: dm-error: requests across both halves: OK or IOERR, none lost" \
	"$F" io /dev/mapper/vbf-err 0 "$sectors" any 64
# the fault clears: the same table position now linear
dmsetup suspend --noudevsync vbf-err && dmsetup reload vbf-err --table "0 $sectors linear $RAM 0" &&
	dmsetup resume --noudevsync vbf-err
check "faults: dm-error cleared: the formerly failing half serves OK again" \
	"$F" io /dev/mapper/vbf-err "$half" "$half" ok 64
if wait_released vbf-err; then ok "faults: dm-error: backend released, module refcount 0"; else notok "faults: dm-error: backend or module still referenced"; fi
dmsetup remove --noudevsync vbf-err

# ---- dm-flakey: one device instance through fault and recovery -------------
dmcreate vbf-flakey "0 $sectors flakey $RAM 0 1 1" ||
	notok "faults: dmsetup create dm-flakey"
check "faults: dm-flakey (up 1 s / down 1 s), 8 s: OK and IOERR only, OK again after each fault" \
	"$F" mixed /dev/mapper/vbf-flakey 8
if wait_released vbf-flakey; then ok "faults: dm-flakey: backend released, module refcount 0"; else notok "faults: dm-flakey: backend or module still referenced"; fi
dmsetup remove --noudevsync vbf-flakey

# ---- dm-delay: detach / close / kill -9 with I/O in flight -----------------
dmcreate vbf-delay "0 $sectors delay $RAM 0 1000" ||
	notok "faults: dmsetup create dm-delay"
out=$("$F" detach /dev/mapper/vbf-delay 32 2>&1)
rc=$?
sed 's/^/# /' <<<"$out" | tail -8
ms=$(sed -n 's/.*detach_ms=\([0-9]*\).*/\1/p' <<<"$out")
if [ $rc -eq 0 ] && [ "${ms:-0}" -ge 300 ]; then
	ok "faults: detach with 32 writes in flight (dm-delay 1 s) waits ${ms} ms for them, all complete OK"
else
	notok "faults: detach with writes in flight (rc $rc, detach took ${ms:-?} ms)"
fi
if wait_released vbf-delay; then ok "faults: after detach: backend released, module refcount 0"; else notok "faults: after detach: still referenced"; fi

out=$("$F" close /dev/mapper/vbf-delay 32 2>&1)
rc=$?
oc=$(opencount vbf-delay)
sed 's/^/# /' <<<"$out" | tail -5
if [ $rc -eq 0 ] && [ "$oc" = 0 ]; then
	ok "faults: close with 32 writes in flight: $(grep -o 'close_ms=[0-9]*' <<<"$out"), backend released when the process is gone"
else
	notok "faults: close with writes in flight (rc $rc, dm open count right after: $oc)"
fi
if wait_released vbf-delay; then ok "faults: after close: module refcount 0"; else notok "faults: after close: still referenced"; fi

fifo=/tmp/vbf-hold.$$
rm -f $fifo
"$F" hold /dev/mapper/vbf-delay 32 >$fifo 2>&1 &
pid=$!
for i in $(seq 100); do grep -q submitted $fifo 2>/dev/null && break; sleep 0.1; done
sleep 0.3
kill -9 $pid 2>/dev/null
t0=$(date +%s%N)
for i in $(seq 300); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
if kill -0 $pid 2>/dev/null; then
	notok "faults: owner killed -9 with I/O in flight does not exit within 30 s"
	grep -v '^$' /proc/$pid/stack 2>/dev/null | sed 's/^/# /' | head -20
else
	{ wait $pid; } 2>/dev/null
	if wait_released vbf-delay; then
		ok "faults: kill -9 of the owner with 32 writes in flight: exits in $(( ($(date +%s%N) - t0) / 1000000 )) ms, backend released, module refcount 0"
	else
		notok "faults: kill -9 of the owner: backend or module still referenced"
	fi
fi
rm -f $fifo
dmsetup remove --noudevsync vbf-delay

# ---- detach during heavy I/O on a slow backend -------------------------------
dmcreate vbf-delay10 "0 $sectors delay $RAM 0 10" ||
	notok "faults: dmsetup create dm-delay 10 ms"
check "faults: stress with detach/attach cycles on dm-delay 10 ms (15 s): all complete, data verified" \
	"$S" --dev /dev/mapper/vbf-delay10 --seed "${VHOST_BLK_STRESS_SEED:-35}" --seconds 15 --queues 8
if wait_released vbf-delay10; then ok "faults: after the stress: backend released, module refcount 0"; else notok "faults: after the stress: still referenced"; fi
dmsetup remove --noudevsync vbf-delay10

# ---- leaks and unload --------------------------------------------------------
slab1=$(slab)
if [ -n "$slab0" ] && [ -n "$slab1" ]; then
	echo "# vhost_blk_req slab objects: before $slab0, after $slab1"
fi
if [ "$(modref)" = 0 ] && rmmod vhost_blk; then
	if [ ! -e /dev/vhost-blk ] && insmod "${VHOST_BLK_BUILD:-$REPO/build/$(uname -r)}/vhost_blk.ko"; then
		for i in $(seq 50); do [ -c /dev/vhost-blk ] && break; sleep 0.1; done
		ok "faults: rmmod vhost_blk after all faults succeeds (no request leaked: kmem_cache_destroy silent), module reloaded"
	else
		notok "faults: vhost_blk unloaded but could not be loaded again"
	fi
else
	notok "faults: rmmod vhost_blk (refcount $(modref))"
fi
finish
