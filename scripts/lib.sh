#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Shared shell helpers for the vhost-blk tooling.  Source it:
#
#	. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# It defines no behaviour on its own, only variables and functions:
#   VB_REPO   top of the repository
#   VB_CACHE  the cache directory (outside the repository)
#   VB_LINES  the kernel lines to test ("6.1 6.12" unless VHOST_BLK_LINES)
#   VB_TESTS  the tests/ directory (VHOST_BLK_TESTS_DIR overrides it)
#   vb_log / vb_warn / vb_die          messages on stderr, prefixed by $VB_PROG
#   vb_stage_begin NAME / vb_stage_end  time a stage, printed on stderr
#   vb_stage_report                     print every stage time measured so far
#   vb_as_root CMD...                   run CMD as root (sudo if needed)
#   vb_lock FILE                        take an exclusive lock for this shell
#   vb_run_suite NAME CMD...            run a TAP suite, add a failure if it
#                                       crashed or ran fewer cases than planned
#   vb_suite_tag FILE WORD              a suite's "# make-check:" header word
#   vb_suite_on_line FILE LINE          false if the header leaves LINE out
#   vb_kfence LINE                      true if LINE's VMs boot with KFENCE
#   vb_kernel_errors FILE...            the lines of kernel logs that fail a run
#   VB_L2_ENV                           where the L2 guest's paths are recorded
#   vb_selftest_bin NAME                path of a selftests build product
#   vb_fs_file TYPE DEV MNT             a filesystem with a 64 MiB file (VM)
#   ok / notok / skip / tap_done        TAP for suites (see below)
# The suites that boot an L2 guest add scripts/guest/l2lib.sh.

[[ -n "${VB_LIB_LOADED:-}" ]] && return 0
VB_LIB_LOADED=1

VB_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VB_CACHE=${VHOST_BLK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vhost-blk}
VB_LINES=${VHOST_BLK_LINES:-6.1 6.12}
# Where prepare.d/, host/ and vm/ are (another tree only to test the runner).
VB_TESTS=${VHOST_BLK_TESTS_DIR:-$VB_REPO/tests}
VB_PROG=${VB_PROG:-$(basename "$0" .sh)}
# QEMU and the L2 guest kernel/initramfs this checkout built (written on
# the host by tests/prepare.d/50-qemu-guest.sh, read in the VM by
# scripts/guest/l2.sh and the suites that start L2 guests): per checkout,
# so that checkouts with different guest configurations sharing one cache
# do not switch each other's guest.  $VB_CACHE/l2.env is the last one any
# checkout built (scripts/demo.sh and make bench write only that one).
VB_L2_ENV=$VB_REPO/build/l2.env

vb_log()
{
	printf '%s: %s\n' "$VB_PROG" "$*" >&2
}

vb_warn()
{
	printf '%s: warning: %s\n' "$VB_PROG" "$*" >&2
}

vb_die()
{
	printf '%s: error: %s\n' "$VB_PROG" "$*" >&2
	exit 1
}

# Seconds since the epoch with 0.1 s resolution, for stage timing.
vb_now()
{
	local t
	t=$(date +%s.%N)
	printf '%s\n' "${t%??????}"
}

# Seconds (one decimal) between two vb_now values.
vb_elapsed()
{
	awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f\n", b - a }'
}

VB_STAGES=()
VB_STAGE_NAME=
VB_STAGE_T0=

vb_stage_begin()
{
	[[ -n "$VB_STAGE_NAME" ]] && vb_stage_end
	VB_STAGE_NAME=$1
	VB_STAGE_T0=$(vb_now)
	vb_log "stage: $VB_STAGE_NAME ..."
}

# vb_stage_end [STATUS] - STATUS is a word such as "ok" or "failed".
vb_stage_end()
{
	local dt

	[[ -z "$VB_STAGE_NAME" ]] && return 0
	dt=$(vb_elapsed "$VB_STAGE_T0" "$(vb_now)")
	VB_STAGES+=("$(printf '%-40s %8ss %s' "$VB_STAGE_NAME" "$dt" "${1:-}")")
	vb_log "stage: $VB_STAGE_NAME done in ${dt}s ${1:-}"
	VB_STAGE_NAME=
}

vb_stage_report()
{
	local s

	[[ ${#VB_STAGES[@]} -eq 0 ]] && return 0
	printf '%s: stage times:\n' "$VB_PROG" >&2
	for s in "${VB_STAGES[@]}"; do
		printf '  %s\n' "$s" >&2
	done
}

vb_as_root()
{
	if [[ $(id -u) -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		vb_die "need root to run: $*"
	fi
}

# vb_lock FILE - hold an exclusive lock on FILE until this shell exits.
# Taking a lock this shell already holds is a no-op.
declare -A VB_LOCKS=()
vb_lock()
{
	local fd

	[[ -n "${VB_LOCKS[$1]:-}" ]] && return 0
	mkdir -p "$(dirname "$1")"
	exec {fd}>"$1"
	if ! flock -n "$fd"; then
		vb_log "waiting for lock $1"
		flock "$fd"
	fi
	VB_LOCKS[$1]=$fd
}

# vb_tap_count FILE - print "PASS FAIL SKIP" counted over the TAP lines of FILE.
# A line counts when it starts with "ok" or "not ok" (optionally indented,
# for nested kselftest output it must be at column 0 to avoid counting
# subtests twice).  "# SKIP" (any case) after the description is a skip;
# "# TODO" lines are not failures.
vb_tap_count()
{
	awk '
	/^(not )?ok( |$)/ {
		skip = ($0 ~ /#[ \t]*[Ss][Kk][Ii][Pp]/)
		todo = ($0 ~ /#[ \t]*[Tt][Oo][Dd][Oo]/)
		if (skip) s++
		else if ($1 == "ok" || todo) p++
		else f++
	}
	END { printf "%d %d %d\n", p, f, s }' "$1"
}

# vb_run_suite NAME CMD... - run one TAP suite, its output to stdout.
# When the suite exits non-zero without reporting a failure, or reports
# fewer results than its plan (1..N) announced, one extra "not ok" line is
# printed so that the failure is counted.  Returns the suite's status.
vb_run_suite()
{
	local name=$1 out rc pass fail skip plan n
	shift

	out=$(mktemp "${TMPDIR:-/tmp}/vb-suite.XXXXXX")
	# PIPESTATUS[0] is still the suite's status when the || branch runs.
	"$@" 2>&1 | tee "$out" && rc=0 || rc=${PIPESTATUS[0]}
	read -r pass fail skip < <(vb_tap_count "$out")
	n=$((pass + fail + skip))
	plan=$(sed -n 's/^1\.\.\([0-9][0-9]*\).*/\1/p' "$out" | head -n1)
	rm -f "$out"
	if [[ -n "$plan" && "$n" -lt "$plan" ]]; then
		echo "not ok - $name: $((plan - n)) of $plan planned cases did not report"
	elif [[ "$rc" -eq 124 || "$rc" -eq 137 ]]; then
		echo "not ok - $name: timed out (status $rc)"
	elif [[ "$rc" -ne 0 && "$fail" -eq 0 ]]; then
		echo "not ok - $name: exited with status $rc without reporting a failure"
	fi
	return "$rc"
}

# A suite may tell make check how to schedule it in one header line among
# its first 30 lines, "# make-check: WORD...", with the words
#	own-vm		(VM suite) run in a VM of its own, beside the line's VM
#	lines=A,B	(VM suite) only on these kernel lines
#	background	(host suite) start it before the prepare stage; it needs
#			nothing that stage builds
# vb_suite_tag FILE WORD - print WORD's value ("lines=6.1" prints 6.1, a
# word without "=" prints itself); false when the header lacks WORD.
vb_suite_tag()
{
	local w words=()

	read -ra words < <(sed -n '1,30s/^# make-check:\(.*\)/\1/p' "$1") || true
	for w in "${words[@]}"; do
		case "$w" in
		"$2") echo "$w"; return 0 ;;
		"$2"=*) echo "${w#*=}"; return 0 ;;
		esac
	done
	return 1
}

# vb_suite_on_line FILE LINE - false if FILE's header says lines= without LINE.
vb_suite_on_line()
{
	local l

	l=$(vb_suite_tag "$1" lines) || return 0
	[[ ",$l," == *",$2,"* ]]
}

# vb_selftest_bin NAME - print the path of NAME (vhost_blk_test, vblk_stress,
# vblk_fault, vblk_fuzz) as tests/prepare.d/10-selftests.sh built it for
# the VM's line (VHOST_BLK_LINE; outside a VM, the first line built).
# Returns 1 when it is not there (the path printed is the expected one).
vb_selftest_bin()
{
	local c

	if [[ -n "${VHOST_BLK_LINE:-}" ]]; then
		c=$VB_REPO/build/selftests/$VHOST_BLK_LINE/$1
		echo "$c"
		[[ -x "$c" ]]
		return
	fi
	for c in "$VB_REPO"/build/selftests/*/"$1"; do
		[[ -x "$c" ]] && { echo "$c"; return 0; }
	done
	echo "$VB_REPO/build/selftests/<line>/$1"
	return 1
}

# vb_fs_file TYPE DEV MNT - in the VM: make a TYPE (ext4, xfs) filesystem
# on DEV, mount it on MNT and write a 64 MiB file of zeroes in it; print
# the file's path.  The caller unmounts MNT.
vb_fs_file()
{
	local type=$1 dev=$2 mnt=$3 force=-F

	modprobe -d "${VHOST_BLK_MODROOT:-/}" "$type" 2>/dev/null
	command -v "mkfs.$type" >/dev/null || { vb_warn "no mkfs.$type"; return 1; }
	[[ "$type" = xfs ]] && force=-f
	mkdir -p "$mnt" && "mkfs.$type" -q $force "$dev" >/dev/null 2>&1 ||
		{ vb_warn "mkfs.$type $dev failed"; return 1; }
	mount -t "$type" "$dev" "$mnt" || { vb_warn "mount $type $dev failed"; return 1; }
	dd if=/dev/zero of="$mnt/disk.img" bs=1M count=64 status=none || return 1
	echo "$mnt/disk.img"
}

# vb_kfence LINE - true if VMs of LINE boot with kfence.sample_interval=1
# (VHOST_BLK_KFENCE_LINES, default "6.12": 6.1's Debian config has no KFENCE).
vb_kfence()
{
	[[ " ${VHOST_BLK_KFENCE_LINES-6.12} " == *" $1 "* ]]
}

# Kernel log lines that fail a VM run.  KVM's notes about what a nested
# guest did (e.g. "kvm [123]: vcpu0, guest rIP: ... Unhandled WRMSR(...)")
# match none of these.
VB_KERNEL_ERROR_RE='BUG:|WARNING:|Oops|KFENCE:|general protection|hung_task|blocked for more than|stack-protector|Thread overran stack|stack guard page|corrupted stack end|list_add corruption|list_del corruption|refcount_t:|Kernel panic|kernel BUG|UBSAN:'

# vb_kernel_errors FILE... - print each distinct line of FILEs (kernel
# console, dmesg) that fails a run.
vb_kernel_errors()
{
	cat "$@" 2>/dev/null | tr -d '\r' | grep -E "$VB_KERNEL_ERROR_RE" |
		grep -v '^vb-stage' | awk '!seen[$0]++' || true
}

# TAP for suites:  ok DESC / notok DESC / skip DESC REASON print one
# numbered line each, DESC after $VB_TAP_PREFIX (e.g. "e2e: "); tap_done
# prints the plan ("1..N") and returns 1 when a case failed.  VB_TAP_N and
# VB_TAP_FAILS count them.
VB_TAP_N=0
VB_TAP_FAILS=0
VB_TAP_PREFIX=${VB_TAP_PREFIX:-}
ok()
{
	VB_TAP_N=$((VB_TAP_N + 1))
	echo "ok $VB_TAP_N - $VB_TAP_PREFIX$*"
}

notok()
{
	VB_TAP_N=$((VB_TAP_N + 1))
	VB_TAP_FAILS=$((VB_TAP_FAILS + 1))
	echo "not ok $VB_TAP_N - $VB_TAP_PREFIX$*"
}

skip()
{
	VB_TAP_N=$((VB_TAP_N + 1))
	echo "ok $VB_TAP_N - $VB_TAP_PREFIX$1 # SKIP $2"
}

tap_done()
{
	echo "1..$VB_TAP_N"
	[[ "$VB_TAP_FAILS" -eq 0 ]]
}
