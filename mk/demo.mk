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

# Migration suite alone, and its negative control: the same suite against a
# module built without the dirty log (VHOST_BLK_NO_DIRTY_LOG=1) must see
# lost writes (tests/vm/55-migrate.sh with VHOST_BLK_MIGRATE_EXPECT_FAIL=1).
#   make migrate-run LINE=6.1
#   make migrate-negative-control LINE=6.1
.PHONY: migrate-run migrate-negative-control

migrate-run:
	@test -n "$(LINE)" || { echo "error: migrate-run needs LINE=6.1 or LINE=6.12" >&2; exit 1; }
	@$(MAKE) --no-print-directory module LINE=$(LINE)
	@tests/prepare.d/50-qemu-guest.sh >/dev/null
	VHOST_BLK_MIGRATE=1 VHOST_BLK_SUITES='55-*' \
		scripts/vm-run.sh $(LINE) -- scripts/vm-suites.sh

migrate-negative-control:
	@test -n "$(LINE)" || { echo "error: migrate-negative-control needs LINE=6.1 or LINE=6.12" >&2; exit 1; }
	@$(MAKE) --no-print-directory module LINE=$(LINE)
	@$(MAKE) --no-print-directory module LINE=$(LINE) VHOST_BLK_NO_DIRTY_LOG=1
	@tests/prepare.d/50-qemu-guest.sh >/dev/null
	VHOST_BLK_MIGRATE=1 VHOST_BLK_SUITES='55-*' VHOST_BLK_MIGRATE_EXPECT_FAIL=1 \
		scripts/vm-run.sh $(LINE) -- sh -c 'rmmod vhost_blk && \
		insmod "$$VHOST_BLK_BUILD-nolog/vhost_blk.ko" && scripts/vm-suites.sh'
