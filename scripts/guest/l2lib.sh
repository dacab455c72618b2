#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The L1 side that the suites booting an L2 guest on vhost-blk-pci share
# (tests/vm/50-e2e.sh, 52-e2e-file.sh, 55-migrate.sh, 57-hotplug.sh,
# 58-reset.sh).  Source it; it sources scripts/lib.sh (ok, notok, skip)
# and puts scripts/guest/qmp.py on PYTHONPATH ("import qmp" in a heredoc):
#
#	. "$(dirname "$0")/../../scripts/guest/l2lib.sh"
#
#   l2_begin NAME PLAN   print the plan ("1..PLAN"); TAP descriptions
#                        start with "NAME: "; sets OUT
#                        ($VHOST_BLK_OUT/NAME, emptied), SERIAL (the
#                        guest's console log), QMP (a socket path for the
#                        guest's QMP monitor) and exports QEMU,
#                        GUEST_KERNEL, GUEST_INITRD (from build/l2.env,
#                        else the cache's l2.env; VHOST_BLK_QEMU_L2 names
#                        a QEMU of one's own); bails when they or
#                        /dev/vhost-blk are missing
#   l2_need_disks DISK...  bail unless these /dev/DISK block devices exist
#   l2_bail [skip] REASON  every case not reported yet fails (or with
#                        skip: is skipped) for REASON; exit
#   diag                 stdin as TAP comments
#   l2_results NAME...   one case per guest step NAME: its L2-RESULT line
#                        in $SERIAL (scripts/guest/init's check)
#   l2_bg PID            PID is the L1 side running next to the guest
#                        (e.g. a QMP script started with &): l2_run stops
#                        it once the guest's QEMU ended
#   l2_run L2-OPTIONS... -- QEMU-ARGS...
#                        boot the guest with scripts/guest/l2.sh, the steps
#                        in $OUT/steps.sh, the console in $SERIAL and QMP
#                        on $QMP; l2.sh's stderr in $OUT/l2.err (shown as
#                        TAP comments); its exit status in L2_RC
#   l2_completed [MARKER [WHAT]]
#                        the case "L2 run completed[WHAT] (timings)":
#                        l2.sh exited 0 (and the guest printed MARKER);
#                        false when it failed
#   l2_accel             print kvm or tcg: the accelerator l2.sh would
#                        pick (VHOST_BLK_L2_ACCEL, default auto), for
#                        suites that start QEMU themselves (55-migrate.sh)
#   l2_caps              the capability bits of the loaded vhost_blk
#                        module (0 if it cannot tell)
#   l2_done              exit status of the suite: 1 if a case failed

. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

export PYTHONPATH=$VB_REPO/scripts/guest${PYTHONPATH:+:$PYTHONPATH}
export PYTHONDONTWRITEBYTECODE=1

L2_NAME=
L2_PLAN=0
L2_RC=
L2_BG=()

diag()
{
	sed 's/^/# /'
}

l2_bail()
{
	local how=notok

	if [ "$1" = skip ]; then
		how=skip
		shift
	fi
	while [ "$VB_TAP_N" -lt "$L2_PLAN" ]; do
		if [ "$how" = skip ]; then
			VB_TAP_PREFIX='' skip "$L2_NAME" "$1"
		else
			notok "$1"
		fi
	done
	[ "$how" = skip ]
	exit
}

l2_begin()
{
	local env=$VB_L2_ENV

	L2_NAME=$1
	L2_PLAN=$2
	# shellcheck disable=SC2034 # read by ok/notok/skip of lib.sh
	VB_TAP_PREFIX="$1: "
	OUT=${VHOST_BLK_OUT:-/tmp}/$1
	SERIAL=$OUT/serial.log
	QMP=/tmp/$1-qmp.$$.sock
	rm -rf "$OUT"
	mkdir -p "$OUT"
	echo "1..$L2_PLAN"
	[ -r "$env" ] || env=$VB_CACHE/l2.env
	[ -r "$env" ] ||
		l2_bail "QEMU/guest not built ($env missing: tests/prepare.d/50-qemu-guest.sh)"
	# shellcheck disable=SC1090
	. "$env"
	QEMU=${VHOST_BLK_QEMU_L2:-$QEMU}
	export QEMU GUEST_KERNEL GUEST_INITRD
	[ -c /dev/vhost-blk ] || l2_bail "/dev/vhost-blk missing (vhost_blk not loaded)"
}

l2_need_disks()
{
	local d

	for d in "$@"; do
		[ -b "/dev/$d" ] || l2_bail "/dev/$d missing (brd not loaded)"
	done
}

l2_results()
{
	local name line

	for name in "$@"; do
		line=$(grep -a "^L2-RESULT .*ok $name\b" "$SERIAL" | tail -1)
		case $line in
		"L2-RESULT ok $name"*) ok "$name" ;;
		"L2-RESULT not ok $name"*)
			notok "$name"
			grep -a '^L2-LOG' "$SERIAL" | tail -25 | diag
			;;
		*)
			notok "$name (no result: the guest did not get there)"
			tail -30 "$SERIAL" | diag
			;;
		esac
	done
}

l2_bg()
{
	L2_BG+=("$1")
}

l2_run()
{
	local opts=() pid

	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		opts+=("$1")
		shift
	done
	shift
	"$VB_REPO/scripts/guest/l2.sh" --steps "$OUT/steps.sh" --log "$SERIAL" \
		"${opts[@]}" -- -qmp "unix:$QMP,server=on,wait=off" "$@" \
		2>"$OUT/l2.err"
	L2_RC=$?
	diag <"$OUT/l2.err"
	for pid in "${L2_BG[@]}"; do
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	L2_BG=()
	rm -f "$QMP"
}

# shellcheck disable=SC2120 # both arguments are optional
l2_completed()
{
	if [ "$L2_RC" -eq 0 ] && { [ -z "${1:-}" ] || grep -aq "^$1" "$SERIAL"; }; then
		ok "L2 run completed${2:-} ($(grep -o 'booted in.*' "$OUT/l2.err"))"
		return 0
	fi
	notok "L2 run completed (exit $L2_RC)"
	grep -a '^qemu:' "$SERIAL" | diag
	tail -20 "$SERIAL" | diag
	return 1
}

# The same choice as scripts/guest/l2.sh: auto is kvm when vm-run.sh trusts
# L1's SVM (VHOST_BLK_L2_KVM) and QEMU can create a KVM VM here.
l2_accel()
{
	local accel=${VHOST_BLK_L2_ACCEL:-auto}

	if [ "$accel" = auto ]; then
		accel=tcg
		[ "${VHOST_BLK_L2_KVM:-1}" = 1 ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] &&
			echo quit | timeout 30 "$QEMU" -M none -accel kvm -nodefaults \
				-display none -monitor stdio >/dev/null 2>&1 && accel=kvm
	fi
	echo "$accel"
}

# VHOST_BLK_GET_CAPS = _IOR(VHOST_VIRTIO, 0x53, __u64)
l2_caps()
{
	python3 -c '
import fcntl, os, struct
try:
    fd = os.open("/dev/vhost-blk", os.O_RDWR)
    print(struct.unpack("Q", fcntl.ioctl(fd, 0x8008AF53, bytes(8)))[0])
except OSError:
    print(0)'
}

l2_done()
{
	[ "$VB_TAP_FAILS" -eq 0 ]
}
