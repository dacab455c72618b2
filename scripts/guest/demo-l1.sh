#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The L1 half of `make demo` (runs inside the L1 VM via scripts/vm-run.sh):
# starts the L2 guest on vhost-blk-pci backed by /dev/ram0 and runs fio in
# it (random write, then random read, both verified with crc32c).
set -uo pipefail

REPO=${VHOST_BLK_REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
SIZE=${VHOST_BLK_DEMO_SIZE:-1M}
out=$(mktemp -d /tmp/demo.XXXXXX)
say() { echo "demo[L1]: $*"; }

if [ ! -c /dev/vhost-blk ]; then
	say "/dev/vhost-blk missing: the vhost_blk module is not loaded"
	exit 1
fi
say "vhost_blk loaded; backing device /dev/ram0 ($(($(blockdev --getsize64 /dev/ram0) >> 20)) MiB RAM disk)"

cat >"$out/steps.sh" <<STEPS
log "disk: \$(cat /sys/block/vda/size) sectors, serial \$(cat /sys/block/vda/serial)"
for job in randwrite randread; do
	fio --name=\$job --filename=/dev/vda --direct=1 --ioengine=libaio \\
		--rw=\$job --bs=4k --iodepth=16 --size=$SIZE \\
		--verify=crc32c --verify_fatal=1 --do_verify=1 \\
		>/tmp/fio.\$job 2>&1
	rc=\$?
	sed 's/^/L2-FIO /' /tmp/fio.\$job
	if [ \$rc -eq 0 ]; then ok "fio-\$job"; else fail "fio-\$job"; fi
done
STEPS

say "starting the L2 guest (qemu-system-x86_64 -device vhost-blk-pci,backend=/dev/ram0); nested TCG: 1-4 min to boot"
"$REPO/scripts/guest/l2.sh" --steps "$out/steps.sh" --log "$out/serial.log" \
	--timeout "${VHOST_BLK_DEMO_TIMEOUT:-600}" -- \
	-device vhost-blk-pci,backend=/dev/ram0,serial=vhost-blk-demo 2>"$out/l2.err"
rc=$?
cat "$out/l2.err"
grep -a '^L2-LOG' "$out/serial.log" | sed 's/^L2-LOG /guest: /'
grep -a '^L2-FIO' "$out/serial.log" | sed 's/^L2-FIO //'
w=$(grep -a '^L2-RESULT' "$out/serial.log" | grep -c ' fio-randwrite')
okw=$(grep -ac '^L2-RESULT ok fio-randwrite' "$out/serial.log")
okr=$(grep -ac '^L2-RESULT ok fio-randread' "$out/serial.log")
bw_w=$(grep -a '^L2-FIO *write: IOPS' "$out/serial.log" | head -1 |
	sed 's/^L2-FIO *write: //; s/; 0 zone resets//')
bw_r=$(grep -a '^L2-FIO *read: IOPS' "$out/serial.log" | tail -1 |
	sed 's/^L2-FIO *read: //')
if [ "$rc" -eq 0 ] && [ "$okw" = 1 ] && [ "$okr" = 1 ]; then
	echo "VERDICT: PASS - fio randwrite + randread of $SIZE on vhost-blk-pci, crc32c verify clean (write: ${bw_w:-?}; read: ${bw_r:-?})"
	exit 0
fi
echo "VERDICT: FAIL - l2 exit $rc, fio randwrite ok=$okw/$w, randread ok=$okr (serial log below)"
tail -40 "$out/serial.log"
exit 1
