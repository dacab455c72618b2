#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# vhost-blk kselftests (selftests/vhost_blk) inside the test VM.
#
# Runs as root in the VM (scripts/vm-suites.sh or scripts/vm-run.sh), with
# vhost_blk.ko, brd (rd_nr>=4), null_blk (nr_devices=0), dm-mod, dm-delay
# and configfs loaded.  Sets up the backends the tests want, runs
# build/selftests/<line>/vhost_blk_test (built by tests/prepare.d/10-selftests.sh),
# and prints TAP: one "ok N - kselftest: <fixture>.<variant>.<case>" line per
# case and variant (Documentation/selftests.rst), then two leak checks
# (module reference count 0, dm backends removable), plan last.
# Backends (exported to the test binary):
#	VHOST_BLK_DEV_RAM=/dev/ram0  VHOST_BLK_DEV_RAM2=/dev/ram1
#	VHOST_BLK_DEV_DELAY        dm-delay (VHOST_BLK_DELAY_MS, default 400 ms)
#	                           over /dev/ram2
#	VHOST_BLK_DEV_DELAY_UNDER=/dev/ram2
#	VHOST_BLK_DEV_ERROR        dm "error" target
#	VHOST_BLK_DEV_DISCARD      null_blk memory_backed=1 discard=1
#	VHOST_BLK_DEV_NODISCARD    null_blk memory_backed=1 discard=0
#	VHOST_BLK_DEV_4K           null_blk memory_backed=1 blocksize=4096
#	VHOST_BLK_DEV_CACHE        null_blk memory_backed=1 cache_size=16 (write cache)
#	VHOST_BLK_FILE             a 64 MiB file on ext4 on /dev/ram3
#	VHOST_BLK_FILE_XFS         a 64 MiB file on xfs on a loop device (320 MiB,
#	                           sparse, in the VM's /tmp)
#	VHOST_BLK_FILE_DELAY       a 64 MiB file on ext4 made on dm-delay
#	                           (VHOST_BLK_DELAY_MS) over a null_blk (96 MiB,
#	                           memory_backed, irqmode=0, write cache),
#	VHOST_BLK_FILE_DELAY_UNDER that null_blk;
#	VHOST_BLK_FILE_XFS_DELAY(_UNDER) the same with xfs (320 MiB)
# Extra arguments go to the test binary (e.g. -t rw_basic, -l to list);
# VHOST_BLK_KSFT_BIN picks another build of it (e.g. one with sanitizers).
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"

REPO=${VHOST_BLK_REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
LINE=${VHOST_BLK_LINE:-}
SUITE_TIMEOUT=${VHOST_BLK_KSFT_TIMEOUT:-1100}
DELAY_MS=${VHOST_BLK_DELAY_MS:-400}
CFS=/sys/kernel/config/nullb
PFX=vblkt
FSDIR=/tmp/vblkt-fs

say() { echo "# 10-kselftest: $*"; }

bin=
for c in ${VHOST_BLK_KSFT_BIN:+"$VHOST_BLK_KSFT_BIN"} \
	 ${LINE:+"$REPO/build/selftests/$LINE/vhost_blk_test"} \
	 "$REPO"/build/selftests/*/vhost_blk_test; do
	[ -x "$c" ] && { bin=$c; break; }
done
if [ -z "$bin" ]; then
	echo "1..1"
	echo "not ok 1 - kselftest: vhost_blk_test not built (run tests/prepare.d/10-selftests.sh)"
	exit 1
fi

# ---- backends ----------------------------------------------------------
dm_create() {	# NAME TABLE
	dmsetup remove --noudevsync "$1" >/dev/null 2>&1
	if dmsetup create --noudevsync "$1" --table "$2" >/dev/null 2>&1 &&
	   dmsetup mknodes "$1" >/dev/null 2>&1 && [ -b "/dev/mapper/$1" ]; then
		echo "/dev/mapper/$1"
		return 0
	fi
	say "dmsetup create $1 '$2' failed"
	return 1
}

nullb_create() {	# NAME ATTR=VAL...
	local name=$1 d=$CFS/$1 kv idx
	shift
	[ -d "$CFS" ] || { say "no $CFS (null_blk/configfs)"; return 1; }
	[ -d "$d" ] && { echo 0 >"$d/power"; rmdir "$d"; }
	mkdir "$d" || return 1
	for kv in size=128 memory_backed=1 "$@"; do
		if ! echo "${kv#*=}" >"$d/${kv%%=*}" 2>/dev/null; then
			say "null_blk $name: cannot set $kv"
			rmdir "$d"
			return 1
		fi
	done
	echo 1 >"$d/power" || { rmdir "$d"; return 1; }
	idx=$(cat "$d/index" 2>/dev/null)
	for dev in "/dev/$name" "/dev/nullb$idx"; do
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			[ -b "$dev" ] && { echo "$dev"; return 0; }
			sleep 0.1
		done
	done
	say "null_blk $name: no device node"
	return 1
}

cleanup() {
	local n
	umount "$FSDIR/ext4-delay" "$FSDIR/xfs-delay" 2>/dev/null
	for n in delay error fdelay-ext4 fdelay-xfs; do
		dmsetup remove --noudevsync "$PFX-$n" >/dev/null 2>&1
	done
	for n in disc nodisc 4k cache fdext4 fdxfs; do
		if [ -d "$CFS/$PFX$n" ]; then
			echo 0 >"$CFS/$PFX$n/power" 2>/dev/null
			rmdir "$CFS/$PFX$n" 2>/dev/null
		fi
	done
	umount "$FSDIR/ext4" "$FSDIR/xfs" 2>/dev/null
	[ -n "${XFS_LOOP:-}" ] && losetup -d "$XFS_LOOP" 2>/dev/null
	rm -rf "$FSDIR"
}

# fs_create TYPE DEV [DIR] - a filesystem on DEV mounted on $FSDIR/DIR
# (default TYPE) with a 64 MiB file in it; prints the file's path.
fs_create() {
	vb_fs_file "$1" "$2" "$FSDIR/${3:-$1}"
}

# delay_fs TYPE MIB - a file for the delay fixtures: a filesystem made on
# dm-delay over a null_blk of MIB, made and filled with no delay, then
# DELAY_MS for every read, write and flush; prints "FILE NULLBDEV".  The
# null_blk completes a request in the context that submits it (irqmode=0),
# as brd does: when "dmsetup suspend" ends the delay, the file's requests
# all finish inside it (delay_direct.*.completion_weight_bounds_a_burst);
# its write cache keeps flushes and FUA writes visible above it
# (delay_file.*.write_flags_follow_flush_feature).
delay_fs() {
	local type=$1 sz=$(($2 * 2048)) under d f
	under=$(nullb_create "${PFX}fd$type" size="$2" blocksize=512 irqmode=0 \
		cache_size=16) || return 1
	d=$(dm_create "$PFX-fdelay-$type" "0 $sz delay $under 0 0") &&
		f=$(fs_create "$type" "$d" "$type-delay") || return 1
	# lazytime: the mtime update of a guest write opens no journal
	# transaction, which could wait for a commit held by dm-delay and
	# block the worker while it takes requests off the ring
	mount -o remount,lazytime "$FSDIR/$type-delay" ||
		{ say "$type: no lazytime"; return 1; }
	dmsetup reload --noudevsync "$PFX-fdelay-$type" \
		--table "0 $sz delay $under 0 $DELAY_MS" >/dev/null 2>&1 &&
		dmsetup resume --noudevsync "$PFX-fdelay-$type" >/dev/null 2>&1 ||
		{ say "dm-delay $type: cannot set the delay"; return 1; }
	echo "$f $under"
}
trap cleanup EXIT

cleanup
export VHOST_BLK_DEV_RAM=/dev/ram0 VHOST_BLK_DEV_RAM2=/dev/ram1
for r in ram0 ram1 ram2; do
	[ -b /dev/$r ] || say "/dev/$r missing (brd rd_nr>=3 expected)"
done
unset VHOST_BLK_DEV_DELAY VHOST_BLK_DEV_DELAY_UNDER VHOST_BLK_DEV_ERROR VHOST_BLK_DEV_DISCARD VHOST_BLK_DEV_NODISCARD VHOST_BLK_DEV_4K VHOST_BLK_DEV_CACHE
unset VHOST_BLK_FILE VHOST_BLK_FILE_XFS VHOST_BLK_FILE_DELAY VHOST_BLK_FILE_DELAY_UNDER VHOST_BLK_FILE_XFS_DELAY VHOST_BLK_FILE_XFS_DELAY_UNDER
if [ -b /dev/ram2 ]; then
	sz=$(blockdev --getsz /dev/ram2)
	d=$(dm_create "$PFX-delay" "0 $sz delay /dev/ram2 0 $DELAY_MS") &&
		export VHOST_BLK_DEV_DELAY=$d VHOST_BLK_DEV_DELAY_UNDER=/dev/ram2
fi
d=$(dm_create "$PFX-error" "0 262144 error") && export VHOST_BLK_DEV_ERROR=$d
d=$(nullb_create "${PFX}disc" blocksize=512 discard=1) && export VHOST_BLK_DEV_DISCARD=$d
d=$(nullb_create "${PFX}nodisc" blocksize=512 discard=0) && export VHOST_BLK_DEV_NODISCARD=$d
d=$(nullb_create "${PFX}4k" blocksize=4096) && export VHOST_BLK_DEV_4K=$d
d=$(nullb_create "${PFX}cache" blocksize=512 cache_size=16) && export VHOST_BLK_DEV_CACHE=$d
# File backends: ext4 on /dev/ram3; xfs on a half of it is too small
# (xfs wants 300 MiB), so xfs gets a sparse 320 MiB file on the ext4.
if [ -b /dev/ram3 ]; then
	f=$(fs_create ext4 /dev/ram3) && export VHOST_BLK_FILE=$f
fi
mkdir -p "$FSDIR"
if modprobe -d "${VHOST_BLK_MODROOT:-/}" loop 2>/dev/null; truncate -s 320M "$FSDIR/xfs.img" &&
   XFS_LOOP=$(losetup -f --show "$FSDIR/xfs.img" 2>/dev/null); then
	f=$(fs_create xfs "$XFS_LOOP") && export VHOST_BLK_FILE_XFS=$f
fi
if r=$(delay_fs ext4 96); then
	export VHOST_BLK_FILE_DELAY=${r% *} VHOST_BLK_FILE_DELAY_UNDER=${r#* }
fi
if r=$(delay_fs xfs 320); then
	export VHOST_BLK_FILE_XFS_DELAY=${r% *} VHOST_BLK_FILE_XFS_DELAY_UNDER=${r#* }
fi
say "binary $bin"
say "files: ext4=${VHOST_BLK_FILE:-none} xfs=${VHOST_BLK_FILE_XFS:-none}"
say "files on dm-delay: ext4=${VHOST_BLK_FILE_DELAY:-none} xfs=${VHOST_BLK_FILE_XFS_DELAY:-none}"
say "backends: ram=$VHOST_BLK_DEV_RAM ram2=$VHOST_BLK_DEV_RAM2 delay=${VHOST_BLK_DEV_DELAY:-none} error=${VHOST_BLK_DEV_ERROR:-none} discard=${VHOST_BLK_DEV_DISCARD:-none} nodiscard=${VHOST_BLK_DEV_NODISCARD:-none} 4k=${VHOST_BLK_DEV_4K:-none} cache=${VHOST_BLK_DEV_CACHE:-none}"

# ---- run + normalise TAP ------------------------------------------------
# The harness prints "ok N io.brd.case" (6.1: "ok N # SKIP why" without the
# name on skips); we print "ok N - kselftest: io.brd.case[ # SKIP why]", and a
# failed line for a case the harness never reported (binary died).
out=$(mktemp)
timeout -k 10 "$SUITE_TIMEOUT" "$bin" "$@" >"$out" 2>&1
rc=$?
n=$(awk -v rc="$rc" -v res="$out.tap" '
	/^TAP version/ { next }
	/^1\.\.[0-9]+$/ { plan = substr($0, 4) + 0; next }
	/^#  RUN / { cur = $3; sub(/ \.\.\.$/, "", cur); print > res; next }
	/^(not )?ok [0-9]+/ {
		nok = ($1 == "not")
		num = nok ? $3 : $2
		rest = $0; sub(/^(not )?ok [0-9]+ ?/, "", rest)
		name = rest; dir = ""
		if (match(rest, / *# *(SKIP|XFAIL|TODO).*$/)) {
			dir = substr(rest, RSTART); name = substr(rest, 1, RSTART - 1)
			sub(/^ *# */, " # ", dir)
		}
		if (name == "") name = cur
		printf "%sok %d - kselftest: %s%s\n", nok ? "not " : "", num, name, dir > res
		last = num
		next
	}
	{ if ($0 ~ /^#/) print > res; else print "# " $0 > res }
	END {
		if (plan == 0) {
			printf "not ok 1 - kselftest: vhost_blk_test printed no plan (exit %d)\n", rc > res
			print 1
			exit
		}
		for (i = last + 1; i <= plan; i++)
			printf "not ok %d - kselftest: case %d not reported (binary exit %d)\n", i, i, rc > res
		print plan
	}
' "$out")
cat "$out.tap"
rm -f "$out" "$out.tap"
[ "$rc" -eq 124 ] && say "suite timeout after ${SUITE_TIMEOUT}s"

# ---- leaks: with every test process gone nothing may hold a reference ----
sleep 1
n=$((n + 1))
ref=$(cat /sys/module/vhost_blk/refcnt 2>/dev/null)
if [ "$ref" = 0 ]; then
	echo "ok $n - kselftest: vhost_blk module reference count back to 0"
elif [ -z "$ref" ]; then
	echo "ok $n - kselftest: vhost_blk module reference count # SKIP vhost_blk not loaded as a module"
else
	echo "not ok $n - kselftest: vhost_blk module reference count is $ref after all tests"
	rc=1
fi
n=$((n + 1))
busy=
for m in "$FSDIR"/*/; do	# a file backend still referenced: EBUSY
	mountpoint -q "$m" || continue
	umount "$m" 2>/dev/null || busy="$busy ${m%/}"
done
for d in delay error fdelay-ext4 fdelay-xfs; do
	dmsetup info "$PFX-$d" >/dev/null 2>&1 || continue
	dmsetup remove --noudevsync "$PFX-$d" >/dev/null 2>&1 || busy="$busy $PFX-$d"
done
if [ -z "$busy" ]; then
	echo "ok $n - kselftest: backends released (filesystems unmountable, dm devices removable)"
else
	echo "not ok $n - kselftest: backends still open after all tests:$busy"
	rc=1
fi
echo "1..$n"
exit "$rc"
