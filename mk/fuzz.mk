# SPDX-License-Identifier: GPL-2.0
# Long fuzzing runs (robustness engineer), outside make check:
# Documentation/robustness.rst, "Hostile input".
#
#   make fuzz [VHOST_BLK_FUZZ_SECONDS=300] [VHOST_BLK_FUZZ_SEED=N]
#             [VHOST_BLK_FUZZ_IOCTL_SECONDS=S] [VHOST_BLK_FUZZ_RING_SECONDS=S]
#             [VHOST_BLK_FUZZ_JOBS=N] [VHOST_BLK_FUZZ_IOCTL_SEQUENCES=N]
#             [VHOST_BLK_LINES="6.1 6.12"]
#
# For each kernel line, one line at a time: build the module and the tools,
# boot the line's VM (scripts/vm-run.sh; 6.12, or the lines in
# VHOST_BLK_KFENCE_LINES, with kfence.sample_interval=1, as make check
# does) and run tests/vm/40-fuzz.sh, ioctl mode then ring mode, each for
# VHOST_BLK_FUZZ_SECONDS (or the per-mode variables; ioctl mode in
# VHOST_BLK_FUZZ_JOBS processes, default the VM's CPUs).  Prints each line's
# rates (ioctl sequences/s, fuzzed chains/s) and totals and ends with
# "N passed, N failed"; full logs in build/logs/fuzz-<line>.log and the
# kernel console in build/logs/fuzz-<line>.console.log.  Packages are
# installed first (scripts/deps.sh) unless VHOST_BLK_NO_DEPS=1.

# Only for this target: a global export would reach make check's VMs and
# stretch its short fuzz suite to 300 s per mode.
.PHONY: fuzz

fuzz: export VHOST_BLK_FUZZ_SECONDS ?= 300

fuzz:
	@set -uo pipefail; \
	[ "$${VHOST_BLK_NO_DEPS:-0}" = 1 ] || scripts/deps.sh || exit 1; \
	mkdir -p build/logs; \
	secs_i=$${VHOST_BLK_FUZZ_IOCTL_SECONDS:-$$VHOST_BLK_FUZZ_SECONDS}; \
	secs_r=$${VHOST_BLK_FUZZ_RING_SECONDS:-$$VHOST_BLK_FUZZ_SECONDS}; \
	passed=0; failed=0; summary=""; \
	for l in $${VHOST_BLK_LINES:-6.1 6.12}; do \
		$(MAKE) --no-print-directory module LINE=$$l || exit 1; \
		VHOST_BLK_LINES=$$l tests/prepare.d/10-selftests.sh >build/logs/fuzz-prepare.log 2>&1 || \
			{ cat build/logs/fuzz-prepare.log; exit 1; }; \
		kf=; [[ " $${VHOST_BLK_KFENCE_LINES-6.12} " == *" $$l "* ]] && kf=--kfence; \
		echo "fuzz: $$l$${kf:+ (kfence)}: ioctl mode $$secs_i s, ring mode $$secs_r s"; \
		if scripts/vm-run.sh $$l $$kf --timeout $$((secs_i + secs_r + 1200)) \
			--log build/logs/fuzz-$$l.console.log -- tests/vm/40-fuzz.sh | \
			tee build/logs/fuzz-$$l.log; then \
			passed=$$((passed + 1)); verdict=ok; \
		else \
			failed=$$((failed + 1)); verdict=FAILED; \
		fi; \
		summary+="$$(sed -n "s/^# rate: /fuzz: $$l: /p; s/^ok .*seed \([0-9]*\), .*/fuzz: $$l: seed \1/p" \
			build/logs/fuzz-$$l.log | sort -u)"$$'\n'"fuzz: $$l: $$verdict"$$'\n'; \
	done; \
	printf '%s' "$$summary"; \
	echo "$$passed passed, $$failed failed"; \
	[ $$failed -eq 0 ]
