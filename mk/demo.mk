# SPDX-License-Identifier: GPL-2.0
# `make demo`, QEMU and migration runs (QEMU engineer): see scripts/demo.sh
# and Documentation/qemu.rst.

.PHONY: demo qemu guest

demo:
	@scripts/demo.sh

qemu:
	@scripts/qemu-build.sh

guest:
	@scripts/guest-build.sh

# Migration suite alone, with its negative control (the same suite loads
# vhost_blk_nolog.ko, built by tests/prepare.d/55-migrate.sh, for it):
#   make migrate-run LINE=6.1
.PHONY: migrate-run

migrate-run:
	@test -n "$(LINE)" || { echo "error: migrate-run needs LINE=6.1 or LINE=6.12" >&2; exit 1; }
	@$(MAKE) --no-print-directory module LINE=$(LINE)
	@tests/prepare.d/50-qemu-guest.sh >/dev/null
	@VHOST_BLK_LINES=$(LINE) tests/prepare.d/55-migrate.sh >/dev/null
	VHOST_BLK_MIGRATE=1 VHOST_BLK_SUITES='55-*' \
		scripts/vm-run.sh $(LINE) -- scripts/vm-suites.sh
