#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# What scripts/bench/trace-cost.sh and req-cost.sh share: source it after
# scripts/lib.sh.  Both count the instructions of a fixed /dev/vhost-blk
# load (scripts/bench/vbreq.c) in an L1 VM under TCG with the vbcount
# plugin (scripts/bench/vbcount.c) counting every translated block, for
# several builds or states of vhost_blk.ko ("configurations"), and print
# them with scripts/bench/req-cost.py.
#
#   cost_prepare LINE OUT  builds the working tree's module (make module),
#                          vbcount.so (against the pinned QEMU source's
#                          qemu-plugin.h) and vbreq into OUT/tools (OUT is
#                          emptied first); sets COST_KDIR and COST_ABI
#   cost_module DIR [VAR=VALUE...]
#                          builds vhost_blk.ko in DIR (a copy of the
#                          repository's Kbuild, drivers and include) against
#                          COST_KDIR, W=1 plus the make variables given; the
#                          log in DIR.log; a warning fails
#   cost_l1 LINE OUT CFGS  boots L1 (one TCG thread: exact counts) under
#                          vbcount,profile=on,profile_pct=100 and runs
#                          scripts/bench/req-cost-l1.sh there with
#                          VHOST_BLK_COST_CFGS=CFGS; the plugin's output in
#                          OUT/plugin.log, the console in OUT/console.log
# Module instructions are counted in /proc/modules' range: one allocation
# (code and data) up to 6.3, code and data apart from 6.4 on; so LINE must
# be 6.1.

cost_prepare()
{
	local line=$1 out=$2 qsrc glib
	[ "$line" = 6.1 ] || vb_die "LINE must be 6.1 (the module's range, see scripts/bench/cost-lib.sh)"
	make -C "$VB_REPO" -s module LINE="$line"
	COST_KDIR=$("$VB_REPO/scripts/kernel.sh" path "$line")
	COST_ABI=$(basename "$COST_KDIR")
	rm -rf "$out"
	mkdir -p "$out/tools"
	qsrc=$("$VB_REPO/scripts/qemu-build.sh" --src)
	read -ra glib <<<"$(pkg-config --cflags glib-2.0)"
	gcc -O2 -Wall -Wextra -Wno-unused-parameter -Werror -shared -fPIC \
		-I"$qsrc/include/qemu" "${glib[@]}" -o "$out/tools/vbcount.so" \
		"$VB_REPO/scripts/bench/vbcount.c"
	gcc -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -I"$VB_REPO/include/uapi" \
		-I"$VB_REPO/selftests/vhost_blk" -o "$out/tools/vbreq" \
		"$VB_REPO/scripts/bench/vbreq.c" "$VB_REPO/selftests/vhost_blk/vblk_guest.c" -lpthread
}

cost_module()
{
	local dir=$1
	shift
	make -C "$COST_KDIR/build" M="$dir" VHOST_SRC="$COST_KDIR/src/drivers/vhost" \
		W=1 "$@" modules >"$dir.log" 2>&1 ||
		{ tail -20 "$dir.log"; vb_die "the module build in $dir failed"; }
	! grep -i 'warning:' "$dir.log" || vb_die "the module build in $dir has warnings"
}

cost_l1()
{
	local line=$1 out=$2 rc=0
	VHOST_BLK_QEMU_ARGS="-plugin $out/tools/vbcount.so,profile=on,profile_pct=100 -d plugin -D $out/plugin.log" \
		VHOST_BLK_ACCEL=tcg \
		VHOST_BLK_TCG_THREAD=single VHOST_BLK_COST_TOOLS=$out/tools \
		VHOST_BLK_COST_CFGS=$3 \
		"$VB_REPO/scripts/vm-run.sh" "$line" --no-kfence --timeout 3600 \
		--log "$out/console.log" --out "$out" -- "$VB_REPO/scripts/bench/req-cost-l1.sh" || rc=$?
	[ $rc -eq 0 ] || vb_warn "the L1 run exited with $rc"
	return $rc
}
