#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# make check: every test of vhost-blk, on the host and in VMs of each kernel
# line.  Stages:
#   1. scripts/deps.sh                 install missing Debian packages
#   2. tests/prepare.d/*.sh            build what the suites need (host; TAP
#                                      lines they print are counted too)
#   3. tests/host/*.sh                 suites that run on the host
#   4. per line (VHOST_BLK_LINES, default "6.1 6.12"):
#      scripts/kernel.sh path LINE     fetch the kernel (cached)
#      make line-build LINE=...        vhost_blk.ko (W=1) + LINE_TARGETS
#   5. the lines' VMs, side by side (VHOST_BLK_VM_JOBS, default nproc):
#      scripts/vm-run.sh LINE -- scripts/vm-suites.sh   one VM, every tests/vm/*.sh
#
# Suites print TAP.  The last line of the output is always
#	N passed, N failed, N skipped
# and the exit status is non-zero when anything failed.  A stage that fails
# (a prepare script, a build, a VM that timed out, died or printed a kernel
# warning) counts as one failed case named after it.  Logs: build/logs/.
#
# Knobs: VHOST_BLK_LINES, VHOST_BLK_VM_JOBS (VMs at once, default the
# number of host CPUs), VHOST_BLK_VM_TIMEOUT (seconds per VM, default
# 4000), VHOST_BLK_SUITE_TIMEOUT (per suite, default 1800), VHOST_BLK_SUITES
# (pattern of suite file names), VHOST_BLK_KFENCE_LINES (default "6.12"),
# VHOST_BLK_NO_DEPS=1 (skip stage 1), VHOST_BLK_LOGDIR (default build/logs),
# VHOST_BLK_TESTS_DIR (default tests/; for testing the runner itself).

set -euo pipefail

VB_PROG=check
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LOGDIR=${VHOST_BLK_LOGDIR:-$VB_REPO/build/logs}
PASS=0
FAIL=0
SKIP=0
FAILED=()

# count CONTEXT FILE - add the TAP results of FILE to the totals.
count()
{
	local ctx=$1 file=$2 p f s line

	read -r p f s < <(vb_tap_count "$file")
	PASS=$((PASS + p))
	FAIL=$((FAIL + f))
	SKIP=$((SKIP + s))
	while IFS= read -r line; do
		FAILED+=("[$ctx] $line")
	done < <(grep -E '^not ok( |$)' "$file" | grep -viE '#[[:space:]]*(skip|todo)' || true)
}

# fail_case CONTEXT NAME - one failed case for a stage that did not work.
fail_case()
{
	echo "not ok - $2"
	FAIL=$((FAIL + 1))
	FAILED+=("[$1] not ok - $2")
}

# run_logged LOG CMD... - run CMD, its output to LOG only.  Shows the end of
# LOG when CMD fails.
run_logged()
{
	local log=$1
	shift

	if "$@" >"$log" 2>&1; then
		return 0
	fi
	vb_log "failed: $* (log: ${log#"$VB_REPO"/}); last lines:"
	tail -n 30 "$log" | sed 's/^/  | /' >&2
	return 1
}

stage_deps()
{
	[[ "${VHOST_BLK_NO_DEPS:-0}" = 1 ]] && return 0
	vb_stage_begin "deps"
	if run_logged "$LOGDIR/deps.log" "$VB_REPO/scripts/deps.sh"; then
		vb_stage_end ok
	else
		fail_case host "install dependencies (scripts/deps.sh)"
		vb_stage_end failed
	fi
}

stage_prepare()
{
	local s name

	for s in "$VB_TESTS"/prepare.d/*.sh; do
		[[ -f "$s" ]] || continue
		name=$(basename "$s" .sh)
		vb_stage_begin "prepare $name"
		echo "# prepare $name"
		# Prepare scripts may print TAP (counted like a suite's); one
		# that fails without a "not ok" line counts as one failure.
		(cd "$VB_REPO" && vb_run_suite "prepare $name" bash "$s") 2>&1 |
			tee "$LOGDIR/prepare-$name.log" || true
		count "prepare $name" "$LOGDIR/prepare-$name.log"
		vb_stage_end
	done
}

stage_host_suites()
{
	local s name log pattern=${VHOST_BLK_SUITES:-*}

	for s in "$VB_TESTS"/host/*.sh; do
		[[ -f "$s" ]] || continue
		# shellcheck disable=SC2053
		[[ "$(basename "$s")" == $pattern ]] || continue
		name=$(basename "$s" .sh)
		log=$LOGDIR/host-$name.log
		vb_stage_begin "host suite $name"
		echo "# host suite $name"
		(cd "$VB_REPO" && vb_run_suite "$name" bash "$s") 2>&1 | tee "$log" || true
		count "host $name" "$log"
		vb_stage_end
	done
}

# suite_times LINE FILE - add the VM suites' times (scripts/vm-suites.sh's
# result file: NAME SECONDS STATUS) to the stage report.
suite_times()
{
	local name dt st

	[[ -r "$2" ]] || return 0
	while read -r name dt st; do
		VB_STAGES+=("$(printf '  %-38s %8ss %s' "$1: $name" "$dt" \
			"$([[ "$st" = 0 ]] || echo failed)")")
	done <"$2"
}

# build_line LINE - fetch LINE's kernel and build for it; false on failure
# (counted as one failed case).
build_line()
{
	local line=$1

	vb_stage_begin "kernel $line"
	if ! run_logged "$LOGDIR/kernel-$line.log" "$VB_REPO/scripts/kernel.sh" path "$line"; then
		fail_case "$line" "fetch kernel $line (scripts/kernel.sh)"
		vb_stage_end failed
		return 1
	fi
	vb_stage_begin "build $line"
	if ! run_logged "$LOGDIR/build-$line.log" make -C "$VB_REPO" --no-print-directory \
		line-build LINE="$line"; then
		fail_case "$line" "build for $line (make line-build LINE=$line)"
		vb_stage_end failed
		return 1
	fi
	vb_stage_end ok
}

# vm_line LINE - one VM running every tests/vm/*.sh; its output goes to
# build/logs/vm-LINE.log, its exit status and times to vm-LINE.status.
vm_line()
{
	local line=$1 t0 rc=0

	t0=$(vb_now)
	(cd "$VB_REPO" && scripts/vm-run.sh "$line" \
		--timeout "${VHOST_BLK_VM_TIMEOUT:-4000}" \
		--log "$LOGDIR/vm-$line.console.log" --out "$LOGDIR/vm-$line.out" \
		--result "$LOGDIR/vm-$line.result" -- scripts/vm-suites.sh) \
		>"$LOGDIR/vm-$line.log" 2>&1 || rc=$?
	echo "$rc $(vb_elapsed "$t0" "$(vb_now)")" >"$LOGDIR/vm-$line.status"
}

# vm_report LINE - count a finished VM's results.
vm_report()
{
	local line=$1 log=$LOGDIR/vm-$1.log vm rc dt st=ok

	read -r rc dt <"$LOGDIR/vm-$line.status" || { rc=1 dt=0; }
	vm=$(sed -n 's/^vm=//p' "$LOGDIR/vm-$line.result" 2>/dev/null || true)
	count "$line" "$log"
	case "$vm" in
	ok)
		if [[ "$rc" -ne 0 ]] && ! grep -qE '^not ok( |$)' "$log"; then
			fail_case "$line" "VM $line: the suites exited with status $rc"
		fi
		;;
	*)
		fail_case "$line" "VM $line: ${vm:-error} (see ${LOGDIR#"$VB_REPO"/}/vm-$line.console.log)"
		st=failed
		;;
	esac
	VB_STAGES+=("$(printf '%-40s %8ss %s' "vm $line" "$dt" "$st")")
	suite_times "$line" "$LOGDIR/vm-$line.out/suites.result"
}

# stage_vms LINE... - the lines' VMs, up to VHOST_BLK_VM_JOBS at once
# (default: one per host CPU; each VM is one TCG thread).  With one job the
# VM's output is shown as it comes; with more, each VM's output is shown
# when it has finished, in line order.
stage_vms()
{
	local jobs=${VHOST_BLK_VM_JOBS:-$(nproc)} line running=0 t0

	[[ $# -eq 0 ]] && return 0
	t0=$(vb_now)
	if [[ "$jobs" -le 1 || $# -eq 1 ]]; then
		for line in "$@"; do
			echo "# kernel line $line: VM running tests/vm/*.sh"
			: >"$LOGDIR/vm-$line.log"
			vm_line "$line" &
			tail -n +1 --pid=$! -f "$LOGDIR/vm-$line.log" || true
			wait
			vm_report "$line"
		done
	else
		vb_log "VMs of $* at once (at most $jobs; VHOST_BLK_VM_JOBS)"
		for line in "$@"; do
			if [[ $running -ge $jobs ]]; then
				wait -n
				running=$((running - 1))
			fi
			echo "# kernel line $line: VM running tests/vm/*.sh (output when it ends)"
			vm_line "$line" &
			running=$((running + 1))
		done
		wait
		for line in "$@"; do
			echo "# kernel line $line: output of its VM"
			cat "$LOGDIR/vm-$line.log"
			vm_report "$line"
		done
	fi
	VB_STAGES+=("$(printf '%-40s %8ss' "VMs ($*)" "$(vb_elapsed "$t0" "$(vb_now)")")")
}

main()
{
	local line t0 i built=()

	t0=$(vb_now)
	mkdir -p "$LOGDIR"
	vb_lock "$LOGDIR/.lock"
	# Only what an earlier run wrote: LOGDIR may be a shared directory.
	rm -rf "${LOGDIR:?}"/{deps.log,prepare-*.log,host-*.log,kernel-*.log,build-*.log,vm-*}
	export VHOST_BLK_LINES="$VB_LINES"

	stage_deps
	stage_prepare
	stage_host_suites
	for line in $VB_LINES; do
		build_line "$line" && built+=("$line")
	done
	vb_stage_end
	stage_vms "${built[@]}"

	vb_stage_report
	vb_log "total $(vb_elapsed "$t0" "$(vb_now)")s; logs in ${LOGDIR#"$VB_REPO"/}/"
	if [[ ${#FAILED[@]} -gt 0 ]]; then
		vb_log "failed cases:"
		for i in "${FAILED[@]}"; do
			printf '  %s\n' "$i" >&2
		done
	fi
	echo "$PASS passed, $FAIL failed, $SKIP skipped"
	[[ "$FAIL" -eq 0 ]]
}

main "$@"
