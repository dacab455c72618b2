#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Live migration of an L2 guest on vhost-blk-pci between QEMU processes in
# this (L1) VM, over unix: sockets.  Runs inside the L1 VM
# (scripts/vm-suites.sh); prints TAP.
#
# One guest boot: the guest loops fio jobs with crc32c verification on
#   vda  /dev/ram0, num-queues=4   one job writes and verifies (backlog)
#                                  256 KiB, another re-reads and verifies
#                                  1 MiB written before the first
#                                  migration, so the kernel writes read
#                                  data into guest memory all the time;
#                                  8 MiB read through the page cache is
#                                  verified from it an iteration later
#                                  dmaprobe (scripts/guest/dmaprobe.c)
#                                  keeps 32 MiB of memory for reads of
#                                  vda's 64-96 MiB (random data)
#   vdb  /dev/ram1, 1 queue        control disk: L1 writes STOP into it to
#                                  end the loop, and dmaprobe's commands
#   vdc  /dev/ram2, 1 queue        in a PCIe root port: hot-unplugged
# while L1, on the QMP monitors, with the bandwidth capped so that RAM
# takes several dirty passes:
#   - migrates A -> B; device_del vdc while it runs is refused;
#   - offers B's guest a destination without vdc before any unplug: it
#     refuses the stream (Unknown savevm section), B keeps running;
#   - unplugs vdc on B (DEVICE_DELETED), migrates B -> A to a destination
#     started without vdc (ping-pong);
#     in both migrations L1 holds the migration in its dirty passes (1 ms
#     downtime limit, 64 KiB/s: it cannot converge) once the first pass
#     sent all of RAM, has dmaprobe read 32 MiB from vda into its memory
#     (only the device writes those pages, and only then), lets the
#     migration converge and has dmaprobe compare its memory with the disk
#     on the destination: no page may be lost;
#   - starts a migration and cancels it: the source keeps running;
#   - starts a migration and kills the destination: the source keeps
#     running;
#   - offers a destination whose disk is smaller (a 64 MiB file): the
#     destination refuses the state, naming the capacity; the source keeps
#     running;
#   - runs calc-dirty-rate (dirty logging toggled on the running device).
# Then the guest's loop must have had no verification error, and a final
# verification of the 1 MiB on the last destination must pass.
#
# The negative control follows in the same suite: vhost_blk_nolog.ko
# (tests/prepare.d/55-migrate.sh: the module without the dirty log) is
# loaded instead of vhost_blk.ko, a new guest is migrated once with the
# probe, and the probe must see lost pages; then vhost_blk.ko is loaded
# again.
#
# Migration needs a module that reports VHOST_BLK_CAP_EXACT_LOG; with an
# older one every case is skipped (50-e2e.sh checks the blocker).
#
# The L2 guest runs under KVM when scripts/guest/l2.sh would pick it
# (VHOST_BLK_L2_ACCEL, default auto: the test bed's L1 or a real SVM/VMX):
# the suite then takes 3-9 min (with the control) and runs in every make
# check.  Under TCG (-cpu qemu64) the migrations alone took 8-15 min and
# the guest was seen to hang after a migration (Documentation/qemu.rst): it
# runs there only with VHOST_BLK_MIGRATE=1 (make migrate-run);
# VHOST_BLK_MIGRATE=0 skips it everywhere.
set -uo pipefail
. "$(dirname "$0")/../../scripts/guest/l2lib.sh"

accel=$(QEMU=${QEMU:-qemu-system-x86_64} l2_accel)
case ${VHOST_BLK_MIGRATE:-auto},$accel in
1,* | auto,kvm) ;;
0,*)
	echo "1..1"
	skip migrate "VHOST_BLK_MIGRATE=0"
	exit 0
	;;
*)
	echo "1..1"
	skip migrate "L2 under $accel: 8-15 min, make migrate-run LINE=... (VHOST_BLK_MIGRATE=1)"
	exit 0
	;;
esac

l2_begin migrate 19
l2_need_disks ram0 ram1 ram2
caps=$(l2_caps)
((caps & 1)) || l2_bail skip "the vhost_blk module lacks VHOST_BLK_CAP_EXACT_LOG (caps=$caps)"
PROBE=$VB_REPO/build/guest-tools/dmaprobe
NOLOG=${VHOST_BLK_BUILD:-$VB_REPO/build/none}-nolog/vhost_blk_nolog.ko
[ -x "$PROBE" ] || l2_bail "$PROBE missing (tests/prepare.d/55-migrate.sh)"

# Under KVM as in l2.sh (-cpu host, no asynchronous page faults).  Under
# TCG the default CPU model: with -cpu max (5-level paging among others)
# the L2 kernel was seen to crash in its exception entry (stack guard page
# hit) after a migration with QEMU's own virtio-blk as well.
if [ "$accel" = kvm ]; then
	accel_args="-accel kvm -cpu host"
	append=" no-kvmapf"
	limit=600
else
	accel_args="-accel tcg,thread=single -cpu qemu64"
	append=
	limit=900
fi

dd if=/dev/zero of=/dev/ram0 bs=1M count=32 status=none
dd if=/dev/urandom of=/dev/ram0 bs=1M seek=64 count=32 status=none
dd if=/dev/zero of=/dev/ram1 bs=64k count=1 status=none
cat >"$OUT/steps.sh" <<'STEPS'
FIO="fio --direct=1 --ioengine=libaio --verify=crc32c --verify_fatal=1 --bs=4k --iodepth=16"
# 8 MiB of vda read through the guest's page cache: the kernel writes it
# into page-cache pages that nothing in the guest writes again; a later
# read hits the cache and verifies what the migration carried over
CACHED="--filename=/dev/vda --offset=20M --size=8M --rw=write --direct=0"
# vdb's page cache only: vda's must survive between iterations
ctl() {
	blockdev --flushbufs /dev/vdb
	head -c 4 /dev/vdb
}
# progress for L1, in vdb's second 4 KiB block (L1 reads /dev/ram1; the
# serial console is only for diagnostics)
status() {
	printf '%-511s\n' "$*" | dd of=/dev/vdb bs=512 seek=8 conv=fsync 2>/dev/null
}
check mq-4-queues-offered sh -c '[ "$(ls /sys/block/vda/mq | wc -l)" -ge 2 ]'
# vda's 64-96 MiB, commands at vdb's 12 KiB, answers at 8 KiB
/dmaprobe /dev/vda $((64 << 20)) $((32 << 20)) /dev/vdb &
check prefill $FIO --name=r --filename=/dev/vda --offset=16M --size=1M --rw=randwrite \
	--name=c --filename=/dev/vda --offset=20M --size=8M --rw=write
echo "L2-MIG-LOOP"
(while :; do echo "L2-HB $(cut -d' ' -f1 /proc/uptime)"; sleep 5; done) &
hb=$!
i=0
bad=0
while [ "$(ctl)" != STOP ] && [ $i -lt 3000 ]; do
	i=$((i + 1))
	# cached: verify the page cache filled in the previous iteration
	# (no I/O); fill: drop vda's cache and read it into new pages
	if ! { $FIO --name=cached $CACHED --invalidate=0 --verify_only \
		--name=fill --stonewall $CACHED --invalidate=1 --verify_only &&
		$FIO --name=w --filename=/dev/vda --offset=0 --size=256K \
		--rw=randwrite --verify_backlog=16 \
		--name=r --filename=/dev/vda --offset=16M --size=1M \
		--rw=randwrite --verify_only; } >/tmp/fio.out 2>&1; then
		bad=$((bad + 1))
		grep -E 'verify|bad|error|fail' /tmp/fio.out | head -10 | sed 's/^/L2-LOG /'
	fi
	echo "L2-MIG-ITER $i bad $bad"
	status "ITER $i BAD $bad"
done
kill $hb
log "loop: $i iterations, $bad with errors"
check loop-no-errors [ $bad = 0 -a $i -gt 0 ]
final=1
$FIO --name=r --filename=/dev/vda --offset=16M --size=1M --rw=randwrite \
	--verify_only >/tmp/fio.out 2>&1 && final=0
status "ITER $i BAD $bad FINAL $final"
STEPS

GUEST_INITRD_STEPS=$OUT/initrd
(
	mkdir -p "$OUT/root" && cp "$OUT/steps.sh" "$PROBE" "$OUT/root/" &&
	cd "$OUT/root" && printf 'steps.sh\ndmaprobe\n' |
		cpio -o -H newc --quiet -R 0:0 | gzip
) >"$OUT/steps.cpio.gz"
cat "$GUEST_INITRD" "$OUT/steps.cpio.gz" >"$GUEST_INITRD_STEPS"

SOCKDIR=$(mktemp -d /tmp/migrate.XXXXXX)
export QEMU OUT SOCKDIR
export L2_ARGS="-M q35 $accel_args -smp 2 -m 256 -nodefaults -no-user-config
-display none -monitor none -L /usr/share/qemu -L /usr/share/seabios
-bios qboot.rom -kernel $GUEST_KERNEL -initrd $GUEST_INITRD_STEPS
-no-reboot"
export L2_APPEND="console=ttyS0 reboot=t panic=-1 loglevel=4 nopti$append"
export MIGRATE_DISK=${VHOST_BLK_MIGRATE_DISK:-vhost-blk}
t0=$SECONDS
timeout -k 10 $limit python3 "$VB_REPO/tests/vm/migrate.py" | tee "$OUT/tap"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || echo "# migrate.py exit $rc"
echo "# migrations: $((SECONDS - t0)) s"

# The negative control: the same check against the module without the
# dirty log must fail.  A fresh guest on vhost_blk_nolog.ko, then
# vhost_blk.ko again (the same file vm-run.sh loaded) for the next suites.
VB_TAP_N=$(grep -cE '^(not )?ok ' "$OUT/tap")
VB_TAP_FAILS=$((VB_TAP_FAILS + $(grep -c '^not ok ' "$OUT/tap")))
while [ "$VB_TAP_N" -lt 17 ]; do
	notok "migrate.py ended early (exit $rc)"
done
t0=$SECONDS
if [ ! -r "$NOLOG" ]; then
	notok "negative control: $NOLOG missing (tests/prepare.d/55-migrate.sh)"
elif ! rmmod vhost_blk || ! insmod "$NOLOG" ||
	[ "$(l2_caps)" != "$caps" ] || ! grep -q '^vhost_blk_nolog ' /proc/modules; then
	notok "negative control: could not load $NOLOG instead of vhost_blk"
else
	mkdir -p "$OUT/control"
	# a fresh control disk: no STOP, no progress, no answer of the probe
	dd if=/dev/zero of=/dev/ram1 bs=64k count=1 oflag=direct status=none
	OUT=$OUT/control CONTROL=1 TAP_FIRST=18 timeout -k 10 $limit \
		python3 "$VB_REPO/tests/vm/migrate.py" | tee "$OUT/control.tap"
	if grep -qE '^(not )?ok 18 ' "$OUT/control.tap"; then
		VB_TAP_N=18
		grep -q '^ok 18 ' "$OUT/control.tap" || VB_TAP_FAILS=$((VB_TAP_FAILS + 1))
	fi
fi
[ "$VB_TAP_N" -ge 18 ] || notok "negative control: no result"
if grep -q '^vhost_blk_nolog ' /proc/modules; then
	rmmod vhost_blk_nolog
fi
if { grep -q '^vhost_blk ' /proc/modules || insmod "$VHOST_BLK_BUILD/vhost_blk.ko"; } &&
	[ -c /dev/vhost-blk ]; then
	ok "vhost_blk.ko loaded again after the control ($((SECONDS - t0)) s)"
else
	notok "vhost_blk.ko loaded again after the control"
fi
rm -rf "$SOCKDIR"
l2_done
