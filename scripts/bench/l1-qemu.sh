#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The L1 QEMU for `make bench`: Debian's qemu-system-x86_64 with the
# instruction-counting plugins loaded.  scripts/bench/bench.sh passes it to
# scripts/vm-run.sh as VHOST_BLK_QEMU and sets
#   VB_BENCH_PLUGINS   plugin arguments, e.g. "/x/vbcount.so /x/libbb.so"
#   VB_BENCH_PLUGIN_LOG  where the plugins' output goes (-d plugin -D FILE)
#   VB_BENCH_L1_ARGS   more L1 QEMU options, e.g. "-icount shift=0,sleep=on"
set -eu
read -ra args <<<"${VB_BENCH_L1_ARGS:-}"
for p in ${VB_BENCH_PLUGINS:-}; do
	args+=(-plugin "$p")
done
[ -z "${VB_BENCH_PLUGINS:-}" ] || args+=(-d plugin -D "${VB_BENCH_PLUGIN_LOG:?}")
exec "${VB_BENCH_L1_QEMU:-qemu-system-x86_64}" "$@" "${args[@]}"
