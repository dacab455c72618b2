# SPDX-License-Identifier: GPL-2.0
# `make bench` (performance engineer): vhost-blk-pci against QEMU's own data
# planes, L1 instructions per I/O as the headline.  Documentation/performance.rst.
#
#   make bench [LINE=6.1]         the whole matrix (hours on two cores)
#   make bench-quick [LINE=6.1]   a tiny matrix (brd, 1 queue, randread QD1/QD32)
#   make bench-profile [LINE=6.1] the quick matrix with per-symbol profiles
#   BENCH_ARGS=...                more options for scripts/bench/bench.sh
# Results: build/bench/results.json, table.txt, *.svg (profile.txt).

.PHONY: bench bench-quick bench-profile

bench:
	@scripts/bench/bench.sh --line $(or $(LINE),6.1) $(BENCH_ARGS)

bench-quick:
	@scripts/bench/bench.sh --line $(or $(LINE),6.1) --quick $(BENCH_ARGS)

bench-profile:
	@scripts/bench/bench.sh --line $(or $(LINE),6.1) --quick --profile $(BENCH_ARGS)
