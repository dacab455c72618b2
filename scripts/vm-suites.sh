#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
#	scripts/vm-suites.sh [SUITE...]
#
# Run tests/vm/*.sh suites ($VHOST_BLK_TESTS_DIR/vm/*.sh if set), in name
# order, inside a VM started by scripts/vm-run.sh.  make check names the
# suites of each of its VMs (SUITE: a file name without ".sh"); without
# arguments every suite runs whose file name matches VHOST_BLK_SUITES, a
# shell pattern (default "*", e.g. VHOST_BLK_SUITES='10-*'), and whose
# "# make-check: lines=" header, if any, names the VM's line.
#
# Each suite prints TAP on stdout.  A suite that exits non-zero without a
# "not ok" line, reports fewer cases than its plan, or runs longer than
# VHOST_BLK_SUITE_TIMEOUT seconds (default 1800) gets one extra "not ok".
# Each suite's output is also kept in $VHOST_BLK_OUT/<suite>.log when
# VHOST_BLK_OUT is set, and one line per suite, "NAME SECONDS STATUS", in
# $VHOST_BLK_OUT/suites.result (make check's stage times).

set -euo pipefail

VB_PROG=vm-suites
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

main()
{
	local timeout=${VHOST_BLK_SUITE_TIMEOUT:-1800} pattern=${VHOST_BLK_SUITES:-*}
	local suite name t0 rc=0 n=0 log res=/dev/null src dt suites

	[[ "${VHOST_BLK_IN_VM:-0}" = 1 ]] ||
		vb_warn "not inside a vhost-blk VM (use scripts/vm-run.sh LINE -- $0)"
	cd "$VB_REPO"
	if [[ -n "${VHOST_BLK_OUT:-}" && -d "${VHOST_BLK_OUT:-}" ]]; then
		res=$VHOST_BLK_OUT/suites.result
		: >"$res"
	fi
	if [[ $# -gt 0 ]]; then
		suites=()
		for name in "$@"; do
			suites+=("$VB_TESTS/vm/$name.sh")
		done
	else
		suites=("$VB_TESTS"/vm/*.sh)
	fi
	for suite in "${suites[@]}"; do
		name=$(basename "$suite" .sh)
		if [[ ! -f "$suite" ]]; then
			[[ $# -eq 0 ]] && continue
			echo "not ok - $name: no suite ${suite#"$VB_REPO"/}"
			rc=1
			continue
		fi
		if [[ $# -eq 0 ]]; then
			# shellcheck disable=SC2053
			[[ "$(basename "$suite")" == $pattern ]] || continue
			if ! vb_suite_on_line "$suite" "${VHOST_BLK_LINE:-}"; then
				echo "# suite $name: not on line ${VHOST_BLK_LINE:-?} (# make-check: lines=$(vb_suite_tag "$suite" lines))"
				continue
			fi
		fi
		n=$((n + 1))
		log=/dev/null
		[[ -n "${VHOST_BLK_OUT:-}" && -d "${VHOST_BLK_OUT:-}" ]] && log=$VHOST_BLK_OUT/$name.log
		echo "# suite $name (kernel ${VHOST_BLK_ABI:-$(uname -r)})"
		t0=$(vb_now)
		src=0
		vb_run_suite "$name" timeout -k 10 "$timeout" bash "$suite" | tee "$log" ||
			src=1
		[[ "$src" = 0 ]] || rc=1
		dt=$(vb_elapsed "$t0" "$(vb_now)")
		echo "$name $dt $src" >>"$res"
		echo "# suite $name done in ${dt}s"
	done
	[[ "$n" -gt 0 ]] || echo "# no suite matched tests/vm/$pattern"
	return "$rc"
}

main "$@"
