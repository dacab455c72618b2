#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# 40-fuzz.sh - fuzz the vhost-blk ioctl surface and ring contents (VM, TAP).
# The kernel must stay clean (the runner fails the VM run on any
# WARNING/BUG/Oops/KFENCE line; on 6.12 the VM boots with
# kfence.sample_interval=1) and the device must still serve valid requests
# afterwards (checked by the tool: other queues during each round, a fresh
# device at the end).  Ring mode also gets a slow backend (dm-delay over
# /dev/ram2) so that requests stay in flight (in-flight cap, head reuse,
# logging switched in flight).
#   VHOST_BLK_FUZZ_SECONDS        per mode (default 20; make fuzz sets it)
#   VHOST_BLK_FUZZ_IOCTL_SECONDS  ioctl mode only (default: the above)
#   VHOST_BLK_FUZZ_RING_SECONDS   ring mode only (default: the above)
#   VHOST_BLK_FUZZ_SEED           seed (default from the clock, printed)
#   VHOST_BLK_FUZZ_DELAY_MS       delay of the slow backend (default 50)
#   VHOST_BLK_FUZZ_JOBS           ioctl mode processes (default: the VM's CPUs)
#   VHOST_BLK_FUZZ_IOCTL_SEQUENCES  stop ioctl mode after this many sequences
#                                 (default: no limit; the time still bounds it)
set -u
. "$(dirname "$0")/../../scripts/lib.sh"
TOOL=$(vb_selftest_bin vblk_fuzz)
SECS=${VHOST_BLK_FUZZ_SECONDS:-20}
SEED=${VHOST_BLK_FUZZ_SEED:-$(( $(date +%s) % 100000 ))}
DELAY=${VHOST_BLK_FUZZ_DELAY_MS:-50}
JOBS=${VHOST_BLK_FUZZ_JOBS:-$(nproc)}
DEV=/dev/ram1
SLOWNAME=vblk-fuzz-slow
BOUNCE=/sys/module/vhost_blk/parameters/bounce_limit_kb
if [ ! -x "$TOOL" ] || [ ! -c /dev/vhost-blk ] || [ ! -b $DEV ]; then
	notok "fuzz: $TOOL, /dev/vhost-blk and $DEV present"
	tap_done
	exit 1
fi
kf=$(cat /sys/module/kfence/parameters/sample_interval 2>/dev/null || echo n/a)
echo "# fuzz: seed $SEED, kfence.sample_interval=$kf (reproduce: VHOST_BLK_FUZZ_SEED=$SEED)"
bounce0=$(cat $BOUNCE 2>/dev/null || true)

slow=()
# no udev in the VM: make the /dev/mapper node ourselves
dmsetup remove --noudevsync $SLOWNAME >/dev/null 2>&1
if dmsetup create $SLOWNAME --noudevsync \
	--table "0 $(blockdev --getsz /dev/ram2) delay /dev/ram2 0 $DELAY" &&
   dmsetup mknodes $SLOWNAME && [ -b /dev/mapper/$SLOWNAME ]; then
	slow=(--slow-dev /dev/mapper/$SLOWNAME)
	ok "fuzz: slow backend dm-delay ${DELAY} ms over /dev/ram2"
else
	notok "fuzz: slow backend dm-delay over /dev/ram2 (dmsetup create failed)"
fi

for mode in ioctl ring; do
	log=/tmp/vblk_fuzz.$mode.log
	if [ $mode = ioctl ]; then
		secs=${VHOST_BLK_FUZZ_IOCTL_SECONDS:-$SECS}
		args=(--jobs "$JOBS" --sequences "${VHOST_BLK_FUZZ_IOCTL_SEQUENCES:-0}")
	else
		secs=${VHOST_BLK_FUZZ_RING_SECONDS:-$SECS}
		args=("${slow[@]}")
	fi
	timeout $((secs + 300)) "$TOOL" --dev $DEV "${args[@]}" --seed "$SEED" --seconds "$secs" \
		--mode $mode >$log 2>&1
	rc=$?
	grep '^# \(ioctl\|ring\|rate\|vblk_fuzz\|note\)' $log
	if [ $rc -eq 0 ] && grep -q '^FUZZ OK' $log; then
		ok "fuzz: $mode, seed $SEED, ${secs}s: $(sed -n "s/^# rate: $mode: //p" $log); fresh device serves valid I/O afterwards"
	else
		[ $rc -eq 124 ] && echo "# the fuzzer hung (timeout): a device call did not return"
		grep -v '^# \(vblk:\|ioctl\|ring\|rate\|vblk_fuzz\)' $log | tail -30 |
			sed 's/^\([^#]\)/# \1/'
		notok "fuzz: $mode, seed $SEED (rc $rc): $(grep -m1 'FAIL' $log)"
	fi
done
# leave the module parameter and the devices as they were
[ -n "$bounce0" ] && echo "$bounce0" >$BOUNCE
if [ ${#slow[@]} -gt 0 ]; then
	for _ in $(seq 50); do
		dmsetup remove --noudevsync $SLOWNAME 2>/dev/null && break
		sleep 0.2
	done
	dmsetup mknodes >/dev/null 2>&1
	if dmsetup info $SLOWNAME >/dev/null 2>&1; then
		notok "fuzz: slow backend released (dm device still open)"
	fi
fi
# the kernel log so far must be clean (the runner checks it again at the end)
errs=$(dmesg | grep -E "$VB_KERNEL_ERROR_RE" | head -5)
if [ -n "$errs" ]; then
	sed 's/^/# /' <<<"$errs"
	notok "fuzz: kernel log clean after fuzzing"
else
	ok "fuzz: kernel log clean after fuzzing (no WARNING/BUG/Oops/KFENCE)"
fi
tap_done
