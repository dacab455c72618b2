# SPDX-License-Identifier: GPL-2.0
# vhost-blk kselftests (selftest engineer): see Documentation/selftests.rst.
#
#   make selftests [LINE=6.1]     build build/selftests/<line>/vhost_blk_test
#                                 and the robustness tools (all lines without
#                                 LINE)
#   make selftests-run LINE=6.1 [KSFT_ARGS="-t rw_basic"]
#                                 boot a VM and run tests/vm/10-kselftest.sh

LINE_TARGETS += selftests

.PHONY: selftests selftests-run

selftests:
	@$(if $(LINE),VHOST_BLK_LINES="$(LINE)" )tests/prepare.d/10-selftests.sh | \
		grep -v '^1\.\.' | { ! grep '^not ok'; }

selftests-run:
	@test -n "$(LINE)" || { echo "error: selftests-run needs LINE=6.1 or LINE=6.12" >&2; exit 1; }
	@$(MAKE) --no-print-directory module selftests LINE=$(LINE)
	scripts/vm-run.sh $(LINE) -- tests/vm/10-kselftest.sh $(KSFT_ARGS)
