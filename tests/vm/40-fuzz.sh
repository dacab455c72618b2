#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# 40-fuzz.sh - fuzz the vhost-blk ioctl surface and ring contents (VM, TAP).
# The kernel must stay clean (the runner fails the VM run on any
# WARNING/BUG/Oops/KFENCE line; on 6.12 the VM boots with
# kfence.sample_interval=1) and the device must still serve valid requests
# afterwards (checked by the tool: other queues during each round, a fresh
# device at the end).
#   VHOST_BLK_FUZZ_SECONDS  per mode (default 20)
#   VHOST_BLK_FUZZ_SEED     seed (default from the clock, printed)
set -u
REPO=${VHOST_BLK_REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
TOOL=$REPO/build/tools/vblk_fuzz
SECS=${VHOST_BLK_FUZZ_SECONDS:-20}
SEED=${VHOST_BLK_FUZZ_SEED:-$(( $(date +%s) % 100000 ))}
DEV=/dev/ram1
n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
notok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $*"; }
if [ ! -x "$TOOL" ] || [ ! -c /dev/vhost-blk ] || [ ! -b $DEV ]; then
	notok "fuzz: $TOOL, /dev/vhost-blk and $DEV present"
	echo "1..$n"
	exit 1
fi
kf=$(cat /sys/module/kfence/parameters/sample_interval 2>/dev/null || echo n/a)
echo "# fuzz: seed $SEED, $SECS s per mode, kfence.sample_interval=$kf (reproduce: VHOST_BLK_FUZZ_SEED=$SEED)"
for mode in ioctl ring; do
	log=/tmp/vblk_fuzz.$mode.log
	timeout $((SECS + 300)) "$TOOL" --dev $DEV --seed "$SEED" --seconds "$SECS" --mode $mode >$log 2>&1
	rc=$?
	grep '^# \(ioctl\|vblk_fuzz\)' $log
	if [ $rc -eq 0 ] && grep -q '^FUZZ OK' $log; then
		ok "fuzz: $mode, seed $SEED, ${SECS}s: $(sed -n 's/^# ioctl: //p' $log | cut -c1-160); fresh device serves valid I/O afterwards"
	else
		[ $rc -eq 124 ] && echo "# the fuzzer hung (timeout): a device call did not return"
		grep -v '^# vblk:' $log | tail -30 | sed 's/^\([^#]\)/# \1/'
		notok "fuzz: $mode, seed $SEED (rc $rc): $(grep -m1 'FAIL' $log)"
	fi
done
# the kernel log so far must be clean (the runner checks it again at the end)
if dmesg | grep -E 'WARNING:|BUG:|Oops|KFENCE:|general protection' | head -5 | sed 's/^/# /' | grep -q .; then
	notok "fuzz: kernel log clean after fuzzing"
else
	ok "fuzz: kernel log clean after fuzzing (no WARNING/BUG/Oops/KFENCE)"
fi
echo "1..$n"
[ "$fails" -eq 0 ]
