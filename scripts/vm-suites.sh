#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Run every tests/vm/*.sh suite (\$VHOST_BLK_TESTS_DIR/vm/*.sh if set), in name order, inside a VM started by
# scripts/vm-run.sh (make check does this once per kernel line).
#
# Each suite prints TAP on stdout.  A suite that exits non-zero without a
# "not ok" line, reports fewer cases than its plan, or runs longer than
# VHOST_BLK_SUITE_TIMEOUT seconds (default 1800) gets one extra "not ok".
# VHOST_BLK_SUITES, a shell pattern (default "*"), selects suites by file
# name, e.g. VHOST_BLK_SUITES='10-*'.  Each suite's output is also kept in
# $VHOST_BLK_OUT/<suite>.log when VHOST_BLK_OUT is set, and one line per
# suite, "NAME SECONDS STATUS", in $VHOST_BLK_OUT/suites.result (make
# check's stage times).

set -euo pipefail

VB_PROG=vm-suites
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

main()
{
	local timeout=${VHOST_BLK_SUITE_TIMEOUT:-1800} pattern=${VHOST_BLK_SUITES:-*}
	local suite name t0 rc=0 n=0 log res=/dev/null src dt

	[[ "${VHOST_BLK_IN_VM:-0}" = 1 ]] ||
		vb_warn "not inside a vhost-blk VM (use scripts/vm-run.sh LINE -- $0)"
	cd "$VB_REPO"
	if [[ -n "${VHOST_BLK_OUT:-}" && -d "${VHOST_BLK_OUT:-}" ]]; then
		res=$VHOST_BLK_OUT/suites.result
		: >"$res"
	fi
	for suite in "$VB_TESTS"/vm/*.sh; do
		[[ -f "$suite" ]] || continue
		name=$(basename "$suite" .sh)
		# shellcheck disable=SC2053
		[[ "$(basename "$suite")" == $pattern ]] || continue
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
