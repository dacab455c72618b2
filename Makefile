# SPDX-License-Identifier: GPL-2.0
#
# vhost-blk top-level Makefile.
#
#   make [module]                   build vhost_blk.ko against the running kernel:
#                                   KDIR=/lib/modules/$(uname -r)/build,
#                                   VHOST_SRC=<linux source>/drivers/vhost
#   make module LINE=6.1|6.12       build it in build/<abi>/ against a cached
#                                   Debian kernel (W=1, any warning fails);
#                                   with VHOST_BLK_NO_DIRTY_LOG=1 a negative-control
#                                   build without dirty logging:
#                                   build/<abi>-nolog/vhost_blk_nolog.ko
#   make modules-lines              the same for every line ($VHOST_BLK_LINES)
#   make check                      all tests on the host and in VMs (scripts/check.sh)
#   make check-full                 the same plus the bigger Promela configurations
#   make vm-shell LINE=6.1          interactive shell in a VM, module loaded
#   make deps                       install the Debian packages needed
#   make clean                      remove build outputs
#
# Other engineers add targets in mk/<name>.mk (included at the end).  A
# fragment that builds something per kernel line adds its target to
# LINE_TARGETS; "make line-build LINE=..." (used by make check) builds the
# module and then every LINE_TARGETS target with LINE set.  "clean::" is a
# double-colon rule: fragments may add their own "clean::" recipe.

SHELL := /bin/bash

KDIR ?= /lib/modules/$(shell uname -r)/build
VHOST_SRC ?= $(firstword $(wildcard $(KDIR)/drivers/vhost $(KDIR)/source/drivers/vhost))
# KVER is accepted as another name for LINE.
LINE ?= $(KVER)
LINE_TARGETS ?=

# What a per-line build copies into build/<abi>/.
MODULE_SOURCES := Kbuild drivers include

.PHONY: all module modules-lines line-build check check-full vm-shell deps clean help

all: module

module:
ifeq ($(LINE),)
	@test -d "$(KDIR)" || { echo "error: KDIR=$(KDIR) does not exist: pass KDIR=<kernel build dir>," \
		"or LINE=6.1 / LINE=6.12 to build against a cached Debian kernel" >&2; exit 1; }
	@test -f "$(VHOST_SRC)/vhost.h" || { echo "error: no vhost.h in VHOST_SRC='$(VHOST_SRC)':" \
		"pass VHOST_SRC=<linux source>/drivers/vhost" >&2; exit 1; }
	$(MAKE) -C $(KDIR) M=$(CURDIR) VHOST_SRC=$(abspath $(VHOST_SRC)) modules
else
	@set -euo pipefail; \
	kdir=$$(scripts/kernel.sh path $(LINE)); abi=$$(basename "$$kdir"); \
	out=build/$$abi$(if $(VHOST_BLK_NO_DIRTY_LOG),-nolog); mkdir -p "$$out"; \
	$(if $(VHOST_BLK_NO_DIRTY_LOG),rm -f "$$out/vhost_blk.ko";) \
	tar -cf - --exclude='*.o' --exclude='*.ko' --exclude='*.mod' --exclude='*.mod.c' \
		--exclude='.*.cmd' --exclude='*.o.d' $(MODULE_SOURCES) | tar -xf - -C "$$out"; \
	echo "  MODULE  $$out/vhost_blk.ko ($(LINE), W=1)"; \
	if ! $(MAKE) -C "$$kdir/build" M=$(CURDIR)/$$out VHOST_SRC="$$kdir/src/drivers/vhost" \
		W=1 modules >"$$out/build.log" 2>&1; then \
		cat "$$out/build.log" >&2; echo "error: module build for $(LINE) failed" >&2; exit 1; \
	fi; \
	if grep -i 'warning:' "$$out/build.log" >&2; then \
		echo "error: the $(LINE) module build has warnings (W=1), see $$out/build.log" >&2; exit 1; \
	fi
endif

modules-lines:
	@for l in $${VHOST_BLK_LINES:-6.1 6.12}; do $(MAKE) --no-print-directory module LINE=$$l || exit 1; done

# Everything check.sh builds for one kernel line before booting it.
line-build:
	@test -n "$(LINE)" || { echo "error: line-build needs LINE=6.1 or LINE=6.12" >&2; exit 1; }
	@$(MAKE) --no-print-directory module LINE=$(LINE)
	@$(if $(strip $(LINE_TARGETS)),$(MAKE) --no-print-directory $(LINE_TARGETS) LINE=$(LINE),true)

check:
	scripts/check.sh

check-full:
	VHOST_BLK_MODEL_LONG=1 scripts/check.sh

vm-shell:
	@test -n "$(LINE)" || { echo "error: vm-shell needs LINE=6.1 or LINE=6.12" >&2; exit 1; }
	@$(MAKE) --no-print-directory module LINE=$(LINE)
	scripts/vm-run.sh $(LINE) --shell

deps:
	scripts/deps.sh

clean::
	rm -rf build
	find . -path ./.git -prune -o \( -name '*.o' -o -name '*.ko' -o -name '*.mod' \
		-o -name '*.mod.c' -o -name '.*.cmd' -o -name '*.o.d' -o -name '*.su' \) -type f -print0 | \
		xargs -0 rm -f
	rm -f modules.order Module.symvers .Module.symvers.cmd .modules.order.cmd

help:
	@sed -n '3,23s/^# \{0,1\}//p' Makefile

-include mk/*.mk
