#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# 20-promela.sh - model-check tests/model/vhost_blk.pml with spin (TAP).
# make-check: background
# (it needs only spin and gcc: make check starts it before the prepare
# stage, whose builds it overlaps, and prints its output in its place.)
#
# 1. The model as written must verify: no assertion violation (status
#    read before written, garbage used entry, duplicate or wrong status)
#    and no invalid end state (a lost wake-up stops the system while the
#    guest still waits for a request), for EVENT_IDX off and on; plus the
#    LTL property "<> all requests reaped by the guest".
# 2. Every barrier mutation (-DNO_MB_..., SKIP_RECHECK, SHORTCUT_WAKE)
#    must FAIL verification with the expected kind of error: this shows
#    the model is able to see the bug each barrier prevents.
#
# A verification result depends only on the model, how pan is built and
# run (pan_run below), the configuration and the spin/gcc versions, so each
# finished pan run is cached under $VB_CACHE/promela/, keyed by a hash of
# all of these; a cached result is reported with "(cached)".
#
# The pan runs are independent: VHOST_BLK_MODEL_JOBS of them run at once
# (default: one per CPU, at most one per 2 GiB of available memory: pan
# stops at 2 GiB, its -DMEMLIM default), in the order of the list below
# (the biggest first); the results are printed in that order.
#
# Knobs: VHOST_BLK_MODEL_NREQ (default 2; 3 needs ~15 GB and many minutes),
#        VHOST_BLK_MODEL_TIMEOUT (CPU seconds per pan run, default 600;
#        three times that in wall time),
#        VHOST_BLK_MODEL_JOBS (pan runs at once, default as above),
#        VHOST_BLK_MODEL_LONG=1 (bigger configurations, make check-full),
#        VHOST_BLK_MODEL_CACHE=0 (verify again, ignoring cached results).
set -u

. "$(dirname "$0")/../../scripts/lib.sh"
REPO=$VB_REPO
MODEL=$REPO/tests/model/vhost_blk.pml
RCACHE=$VB_CACHE/promela
NREQ=${VHOST_BLK_MODEL_NREQ:-2}
TMO=${VHOST_BLK_MODEL_TIMEOUT:-600}
WORK=$REPO/build/model

if ! command -v spin >/dev/null || ! command -v gcc >/dev/null; then
	notok "promela: spin and gcc present (apt-get install spin, see scripts/deps.list)"
	tap_done
	exit 1
fi
mkdir -p "$WORK"

# verify NAME MODE -D... : MODE is safety or ltl.  Prints pan's output
# into $WORK/NAME/pan.out and returns 0 when pan ran to completion
# (sets ERRS to pan's error count, STATES to states stored).
verify() {
	local name=$1 mode=$2 key tmp
	shift 2
	key=$RCACHE/$( { echo "$INPUTS $mode $*"; } | sha256sum | cut -c1-24)
	CACHED=
	if [ "${VHOST_BLK_MODEL_CACHE:-1}" != 0 ] && [ -s "$key" ] &&
		read -r ERRS STATES KIND <"$key" && [ -n "$ERRS" ]; then
		[ "$KIND" = - ] && KIND=
		CACHED=" (cached)"
		return 0
	fi
	pan_run "$name" "$mode" "$@" || return 1
	mkdir -p "$RCACHE"
	tmp=$(mktemp "$RCACHE/.tmp.XXXXXX") &&
		echo "$ERRS $STATES ${KIND:--}" >"$tmp" && mv "$tmp" "$key"
}

# pan_run NAME MODE -D...: verify() without the cache.
pan_run() {
	local name=$1 mode=$2 d
	shift 2
	d=$WORK/$name
	rm -rf "$d" && mkdir -p "$d"
	cp "$MODEL" "$d/vhost_blk.pml"
	ERRS=x STATES=x KIND=
	if ! (cd "$d" && spin -a "$@" vhost_blk.pml >spin.out 2>&1); then
		echo "# spin -a failed for $name:" && sed 's/^/#   /' "$d/spin.out"
		return 1
	fi
	local cflags="-O2 -w -DCOLLAPSE" pflags="-m20000"
	if [ "$mode" = safety ]; then
		cflags="$cflags -DSAFETY -DNOCLAIM"
	else
		pflags="$pflags -a"
	fi
	if ! (cd "$d" && gcc $cflags -o pan pan.c >cc.out 2>&1); then
		echo "# gcc pan.c failed for $name" && sed 's/^/#   /' "$d/cc.out" | head -20
		return 1
	fi
	# A CPU-time bound: pan runs share the CPUs with each other and
	# with make check's builds.
	(cd "$d" && ulimit -t "$TMO" && timeout $((3 * TMO)) ./pan $pflags >pan.out 2>&1)
	local rc=$?
	if [ $rc -eq 124 ] || [ $rc -eq 152 ] || [ $rc -eq 137 ]; then
		echo "# pan stopped after ${TMO} CPU seconds (or 3 times that in wall time) for $name"
		return 1
	fi
	ERRS=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$d/pan.out" | tail -1)
	STATES=$(awk '/states, stored/ {print $1; exit}' "$d/pan.out")
	if grep -q "assertion violated" "$d/pan.out"; then
		KIND=assert
	elif grep -q "invalid end state" "$d/pan.out" &&
	     grep -q "^pan:1: invalid end state" "$d/pan.out"; then
		KIND=deadlock
	elif grep -q "acceptance cycle" "$d/pan.out" &&
	     grep -q "^pan:1: acceptance cycle" "$d/pan.out"; then
		KIND=liveness
	fi
	if grep -qE "max search depth too small|out of memory|pan: reached -DMEMLIM" "$d/pan.out"; then
		echo "# pan search incomplete for $name:"
		grep -E "max search depth|memory" "$d/pan.out" | sed 's/^/#   /'
		return 1
	fi
	[ -n "$ERRS" ]
}

# Everything a result depends on besides the configuration.
INPUTS=$( { cat "$MODEL"; declare -f pan_run; spin -V; gcc --version | head -n1; uname -m; } |
	sha256sum | cut -c1-16)

# The pan runs, in the order they start and report: run NAME MODE EXPECT
# TEXT -D...  EXPECT is "holds" (no error) or the kind of error (assert,
# deadlock, liveness) a mutation must give; TEXT is the case's description.
RUNS=()
declare -A TEXT=()
run() {
	TEXT[$1]=$4
	RUNS+=("$1 $2 $3 ${*:5}")
}

# pool - verify every run, VHOST_BLK_MODEL_JOBS at once; run NAME leaves
# "STATUS ERRS STATES KIND CACHED" in $WORK/NAME.res (its messages in
# NAME.msg) when it ends.
pool() {
	local jobs=${VHOST_BLK_MODEL_JOBS:-} spec name mode expect args mem
	if [ -z "$jobs" ]; then
		mem=$(awk '/^MemAvailable:/ { print int($2 / 2097152) }' /proc/meminfo)
		jobs=$(nproc)
		[ "$mem" -lt "$jobs" ] && jobs=$mem
		[ "$jobs" -lt 1 ] && jobs=1
	fi
	for spec in "${RUNS[@]}"; do
		read -r name mode expect args <<<"$spec"
		while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
			wait -n
		done
		(
			rc=0
			# shellcheck disable=SC2086
			verify "$name" "$mode" $args >"$WORK/$name.msg" 2>&1 || rc=$?
			echo "$rc $ERRS $STATES ${KIND:--} ${CACHED:+cached}" >"$WORK/$name.res.tmp"
			mv "$WORK/$name.res.tmp" "$WORK/$name.res"
		) &
	done
	wait
}

# result NAME - wait for run NAME, print its messages, set ERRS STATES KIND
# CACHED as verify does; its status is verify's.
result() {
	local f=$WORK/$1.res rc c
	while [ ! -e "$f" ] && kill -0 "$POOL" 2>/dev/null; do
		sleep 0.2
	done
	cat "$WORK/$1.msg" 2>/dev/null
	ERRS=x STATES=x KIND='' CACHED=''
	if ! read -r rc ERRS STATES KIND c <"$f"; then
		echo "# no result for $1"
		return 1
	fi
	[ "$KIND" = - ] && KIND=
	[ "$c" = cached ] && CACHED=" (cached)"
	return "$rc"
}

# 1. the model verifies.  Configurations (see the header of the model):
#    base: 2 requests, EVENT_IDX off/on, safety + LTL; then one feature at
#    a time: spurious/double kicks, early stop on weight with requeue,
#    a detach/attach cycle, a request split in two bios.
#    VHOST_BLK_MODEL_LONG=1 adds the bigger ones (several minutes, ~3 GB).
configs="
base        safety -DNREQ=$NREQ -DSPURIOUS=0
base        ltl    -DNREQ=$NREQ -DSPURIOUS=0
spurious    safety -DNREQ=1 -DSPURIOUS=1
weight      safety -DNREQ=$NREQ -DSPURIOUS=0 -DWEIGHT=1
detach      safety -DNREQ=1 -DSPURIOUS=0 -DDETACH=1
detach      ltl    -DNREQ=1 -DSPURIOUS=0 -DDETACH=1
2bio        safety -DNREQ=1 -DNBIO=2 -DSPURIOUS=0
pool        safety -DNREQ=$NREQ -DSPURIOUS=0 -DPOOL=1
"
if [ "${VHOST_BLK_MODEL_LONG:-0}" = 1 ]; then
	configs="$configs
spurious-2  safety -DNREQ=2 -DSPURIOUS=1
detach-2    safety -DNREQ=2 -DSPURIOUS=0 -DDETACH=1
"
fi
while read -r cname mode args; do
	[ -n "$cname" ] || continue
	what="no assertion violated, no lost wake-up"
	[ "$mode" = ltl ] && what="LTL <>(all requests reaped) holds"
	for ev in 0 1; do
		# shellcheck disable=SC2086 # a list of options
		run "$cname-$mode-ev$ev" "$mode" holds \
			"promela: $cname ($args EVENT_IDX=$ev): $what" $args -DEVENT_IDX=$ev
	done
done <<<"$configs"

# 2. every mutation must fail, with the expected kind of error
#    name                 kind      configuration
mutations="
NO_MB_GUEST_KICK      deadlock  -DNREQ=$NREQ -DSPURIOUS=0
NO_MB_ENABLE_NOTIFY   deadlock  -DNREQ=$NREQ -DSPURIOUS=0
SKIP_RECHECK          deadlock  -DNREQ=$NREQ -DSPURIOUS=0
NO_MB_SIGNAL          deadlock  -DNREQ=$NREQ -DSPURIOUS=0
NO_MB_GUEST_ENABLE_CB deadlock  -DNREQ=$NREQ -DSPURIOUS=0
NO_WMB_USED           assert    -DNREQ=$NREQ -DSPURIOUS=0
NO_RELEASE_LLIST      assert    -DNREQ=$NREQ -DSPURIOUS=0
NO_MB_WORK_QUEUE      deadlock  -DNREQ=$NREQ -DSPURIOUS=0
NO_MB_WORK_CLEAR      deadlock  -DNREQ=$NREQ -DSPURIOUS=0
SHORTCUT_WAKE         deadlock  -DNREQ=$NREQ -DSPURIOUS=0
NO_MB_BIO_DEC         assert    -DNREQ=1 -DNBIO=2 -DSPURIOUS=0
NO_REQUEUE_ON_WEIGHT  deadlock  -DNREQ=$NREQ -DSPURIOUS=0 -DWEIGHT=1
NO_KICK_ON_ATTACH     deadlock  -DNREQ=1 -DSPURIOUS=0 -DDETACH=1
NO_KICK_ON_FREE       deadlock  -DNREQ=$NREQ -DSPURIOUS=0 -DPOOL=1
NO_COMPLETE_AFTER_KICK deadlock -DNREQ=$NREQ -DSPURIOUS=0
"
while read -r mut kind args; do
	[ -n "$mut" ] || continue
	for ev in 0 1; do
		# shellcheck disable=SC2086
		run "mut-$mut-ev$ev" safety "$kind" \
			"promela: mutation $mut (EVENT_IDX=$ev) fails verification as expected: $kind" \
			$args -DEVENT_IDX=$ev -D"$mut"
	done
done <<<"$mutations"

# the liveness property sees the lost wake-up too (not only the deadlock check)
for mut in NO_MB_ENABLE_NOTIFY NO_MB_SIGNAL; do
	run "mut-ltl-$mut" ltl liveness \
		"promela: mutation $mut violates LTL <>(all requests reaped) as expected" \
		-DNREQ=$NREQ -DSPURIOUS=0 -DEVENT_IDX=1 -D"$mut"
done

rm -f "$WORK"/*.res "$WORK"/*.msg
pool &
POOL=$!
for spec in "${RUNS[@]}"; do
	read -r name mode expect args <<<"$spec"
	if ! result "$name"; then
		notok "promela: $name ($mode $args): verification did not run to a result ($WORK/$name/pan.out)"
	elif [ "$expect" = holds ] && [ "$ERRS" = 0 ]; then
		ok "${TEXT[$name]} ($STATES states)$CACHED"
	elif [ "$expect" != holds ] && [ "$ERRS" != 0 ] && [ "$KIND" = "$expect" ]; then
		ok "${TEXT[$name]}$CACHED"
	else
		notok "promela: $name ($mode $args): errors=$ERRS kind=${KIND:-none}, want ${expect/holds/no error} ($WORK/$name/pan.out)"
	fi
done
wait "$POOL"

tap_done
