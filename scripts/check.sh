#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# make check: every test of vhost-blk, on the host and in VMs of each kernel
# line.  Stages:
#   1. scripts/deps.sh                 install missing Debian packages
#   2. tests/prepare.d/*.sh            build what the suites need (host; TAP
#                                      lines they print are counted too)
#   3. tests/host/*.sh                 suites that run on the host; one whose
#                                      header says "# make-check: background"
#                                      starts before stage 2 and is collected
#                                      here, in its place
#   4. per line with a VM suite to run (VHOST_BLK_LINES, default "6.1 6.12"):
#      scripts/kernel.sh path LINE     fetch the kernel (cached)
#      make line-build LINE=...        vhost_blk.ko (W=1) + LINE_TARGETS
#   5. the VMs, side by side (VHOST_BLK_VM_JOBS at once; default: all of them
#      that fit in the memory available, VHOST_BLK_VM_MEM + 512 MiB each):
#      scripts/vm-run.sh LINE -- scripts/vm-suites.sh SUITE...
#      One VM per line runs its tests/vm/*.sh suites in name order; a suite
#      whose header says "# make-check: own-vm" gets a VM of its own, named
#      LINE-SUITE (e.g. 6.1-65-dkms), and "lines=6.1" limits a suite to
#      those lines (scripts/lib.sh: vb_suite_tag).
#
# Suites print TAP.  The last line of the output is always
#	N passed, N failed, N skipped
# and the exit status is non-zero when anything failed.  A stage that fails
# (a prepare script, a build, a VM that timed out, died or printed a kernel
# warning) counts as one failed case named after it (a VM by its name).
# Logs: build/logs/ (vm-NAME.* per VM).  "scripts/check.sh --plan" prints
# what would run (host suites, VMs and their suites, VMs at once) and exits.
#
# Knobs: VHOST_BLK_LINES, VHOST_BLK_VM_JOBS (VMs at once, default as
# above), VHOST_BLK_VM_TIMEOUT (seconds per VM, default 4000),
# VHOST_BLK_SUITE_TIMEOUT (per suite, default 1800), VHOST_BLK_SUITES
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

# host_suites - print the host suites VHOST_BLK_SUITES selects, one per
# line: "NAME" or "NAME background".
host_suites()
{
	local s pattern=${VHOST_BLK_SUITES:-*}

	for s in "$VB_TESTS"/host/*.sh; do
		[[ -f "$s" ]] || continue
		# shellcheck disable=SC2053
		[[ "$(basename "$s")" == $pattern ]] || continue
		echo "$(basename "$s" .sh)$(vb_suite_tag "$s" background | sed 's/^/ /')"
	done
}

# start_background - start the host suites marked "background" (they need
# nothing the prepare stage builds); stage_host_suites collects them.
declare -A BG_PID=()
start_background()
{
	local name bg

	while read -r name bg; do
		[[ -n "$bg" ]] || continue
		vb_log "host suite $name: started in the background"
		(
			t0=$(vb_now)
			cd "$VB_REPO" || exit 1
			vb_run_suite "$name" bash "$VB_TESTS/host/$name.sh" || true
			vb_elapsed "$t0" "$(vb_now)" >"$LOGDIR/host-$name.time"
		) </dev/null >"$LOGDIR/host-$name.log" 2>&1 &
		BG_PID[$name]=$!
	done < <(host_suites)
}

stage_host_suites()
{
	local name bg log

	while read -r name bg; do
		log=$LOGDIR/host-$name.log
		echo "# host suite $name"
		if [[ -n "$bg" ]]; then
			vb_stage_begin "host suite $name (waiting for its background run)"
			wait "${BG_PID[$name]}" || true
			cat "$log"
			VB_STAGES+=("$(printf '%-40s %8ss' "host suite $name (background)" \
				"$(cat "$LOGDIR/host-$name.time" 2>/dev/null || echo '?')")")
		else
			vb_stage_begin "host suite $name"
			(cd "$VB_REPO" && vb_run_suite "$name" bash "$VB_TESTS/host/$name.sh") \
				</dev/null 2>&1 | tee "$log" || true
		fi
		count "host $name" "$log"
		vb_stage_end
	done < <(host_suites)
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

# vm_plan LINE... - the VMs to boot: sets VMS (names, in order), VM_LINE and
# VM_SUITES (NAME -> line, space-separated suites).  Per line, one VM (named
# after the line) for the suites VHOST_BLK_SUITES selects, in name order,
# and one more per selected suite whose header says "own-vm" (named
# LINE-SUITE, after it); a suite whose header says "lines=" runs only on
# the lines it names.  A line with no suite to run gets no VM.
VMS=()
declare -A VM_LINE=() VM_SUITES=()
vm_plan()
{
	local line s name pattern=${VHOST_BLK_SUITES:-*} main own

	for line in "$@"; do
		main=""
		own=()
		for s in "$VB_TESTS"/vm/*.sh; do
			[[ -f "$s" ]] || continue
			name=$(basename "$s" .sh)
			# shellcheck disable=SC2053
			[[ "$name.sh" == $pattern ]] || continue
			vb_suite_on_line "$s" "$line" || continue
			if vb_suite_tag "$s" own-vm >/dev/null; then
				own+=("$name")
			else
				main+=" $name"
			fi
		done
		if [[ -n "$main" ]]; then
			VMS+=("$line")
			VM_LINE[$line]=$line
			VM_SUITES[$line]=${main# }
		fi
		for name in "${own[@]}"; do
			VMS+=("$line-$name")
			VM_LINE[$line-$name]=$line
			VM_SUITES[$line-$name]=$name
		done
	done
}

# vm_jobs N - how many of N VMs run at once: VHOST_BLK_VM_JOBS, else as
# many as the memory available holds (VHOST_BLK_VM_MEM, default 3072 MiB,
# plus 512 MiB for QEMU itself, each), at least 1.  Each VM is one TCG
# thread: with more VMs than CPUs they share the CPUs, and the run takes
# about the VMs' total time divided by the CPUs instead of the longest
# chain of VMs.
vm_jobs()
{
	local avail per jobs

	if [[ -n "${VHOST_BLK_VM_JOBS:-}" ]]; then
		echo "$VHOST_BLK_VM_JOBS"
		return
	fi
	avail=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
	per=$((${VHOST_BLK_VM_MEM:-3072} + 512))
	jobs=$((avail / per))
	[[ "$jobs" -gt "$1" ]] && jobs=$1
	[[ "$jobs" -lt 1 ]] && jobs=1
	echo "$jobs"
}

# vm_run NAME - one VM of the plan; its output goes to build/logs/vm-NAME.log,
# its exit status and time to vm-NAME.status.
vm_run()
{
	local vm=$1 t0 rc=0 suites

	read -ra suites <<<"${VM_SUITES[$vm]}"
	t0=$(vb_now)
	(cd "$VB_REPO" && scripts/vm-run.sh "${VM_LINE[$vm]}" \
		--timeout "${VHOST_BLK_VM_TIMEOUT:-4000}" \
		--log "$LOGDIR/vm-$vm.console.log" --out "$LOGDIR/vm-$vm.out" \
		--result "$LOGDIR/vm-$vm.result" -- scripts/vm-suites.sh "${suites[@]}") \
		>"$LOGDIR/vm-$vm.log" 2>&1 || rc=$?
	echo "$rc $(vb_elapsed "$t0" "$(vb_now)")" >"$LOGDIR/vm-$vm.status"
}

# vm_report NAME - count a finished VM's results.
vm_report()
{
	local name=$1 log=$LOGDIR/vm-$1.log vm rc dt st=ok

	read -r rc dt <"$LOGDIR/vm-$name.status" || { rc=1 dt=0; }
	vm=$(sed -n 's/^vm=//p' "$LOGDIR/vm-$name.result" 2>/dev/null || true)
	count "$name" "$log"
	case "$vm" in
	ok)
		if [[ "$rc" -ne 0 ]] && ! grep -qE '^not ok( |$)' "$log"; then
			fail_case "$name" "VM $name: the suites exited with status $rc"
		fi
		;;
	*)
		fail_case "$name" "VM $name: ${vm:-error} (see ${LOGDIR#"$VB_REPO"/}/vm-$name.console.log)"
		st=failed
		;;
	esac
	VB_STAGES+=("$(printf '%-40s %8ss %s' "vm $name" "$dt" "$st")")
	suite_times "${VM_LINE[$name]}" "$LOGDIR/vm-$name.out/suites.result"
}

# vm_banner NAME - the line that introduces a VM's output.
vm_banner()
{
	echo "# VM $1 (kernel line ${VM_LINE[$1]}): ${VM_SUITES[$1]}"
}

# stage_vms - the planned VMs (vm_plan), vm_jobs of them at once.  With one
# job the VM's output is shown as it comes; with more, each VM's output is
# shown when it has finished, in plan order.
stage_vms()
{
	local jobs vm running=0 t0

	[[ ${#VMS[@]} -eq 0 ]] && return 0
	jobs=$(vm_jobs ${#VMS[@]})
	t0=$(vb_now)
	if [[ "$jobs" -le 1 || ${#VMS[@]} -eq 1 ]]; then
		for vm in "${VMS[@]}"; do
			vm_banner "$vm"
			: >"$LOGDIR/vm-$vm.log"
			vm_run "$vm" &
			tail -n +1 --pid=$! -f "$LOGDIR/vm-$vm.log" || true
			wait
			vm_report "$vm"
		done
	else
		vb_log "VMs ${VMS[*]}: $jobs at once (VHOST_BLK_VM_JOBS; memory available $(awk \
			'/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo) MiB)"
		for vm in "${VMS[@]}"; do
			if [[ $running -ge $jobs ]]; then
				wait -n
				running=$((running - 1))
			fi
			vb_log "VM $vm started (output when it ends)"
			vm_run "$vm" &
			running=$((running + 1))
		done
		wait
		for vm in "${VMS[@]}"; do
			vm_banner "$vm"
			cat "$LOGDIR/vm-$vm.log"
			vm_report "$vm"
		done
	fi
	VB_STAGES+=("$(printf '%-40s %8ss' "VMs (${VMS[*]})" "$(vb_elapsed "$t0" "$(vb_now)")")")
}

# plan - what a run would do, for --plan.
plan()
{
	local vm

	host_suites | sed 's/^/host /'
	for vm in "${VMS[@]}"; do
		echo "vm $vm (line ${VM_LINE[$vm]}): ${VM_SUITES[$vm]}"
	done
	echo "VMs at once: $(vm_jobs ${#VMS[@]})"
}

main()
{
	local line t0 i built=() lines=() planned=()

	# shellcheck disable=SC2206 # a list of words
	lines=($VB_LINES)
	vm_plan "${lines[@]}"
	if [[ "${1:-}" = --plan ]]; then
		plan
		return 0
	fi
	[[ $# -eq 0 ]] || vb_die "usage: $0 [--plan]"
	t0=$(vb_now)
	mkdir -p "$LOGDIR"
	vb_lock "$LOGDIR/.lock"
	# Only what an earlier run wrote: LOGDIR may be a shared directory.
	rm -rf "${LOGDIR:?}"/{deps.log,prepare-*.log,host-*.log,host-*.time,kernel-*.log,build-*.log,vm-*}
	export VHOST_BLK_LINES="$VB_LINES"

	stage_deps
	start_background
	stage_prepare
	stage_host_suites
	for line in "${lines[@]}"; do
		if [[ " ${VM_LINE[*]} " != *" $line "* ]]; then
			echo "# kernel line $line: no VM suite selected, not built"
			continue
		fi
		build_line "$line" && built+=("$line")
	done
	vb_stage_end
	# The VMs of the lines that built.
	for i in "${VMS[@]}"; do
		[[ " ${built[*]} " == *" ${VM_LINE[$i]} "* ]] && planned+=("$i")
	done
	VMS=("${planned[@]}")
	stage_vms

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
