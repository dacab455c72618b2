#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# 20-promela.sh - model-check tests/model/vhost_blk.pml with spin (TAP).
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
# A verification result depends only on the model, this script, the
# configuration and the spin/gcc versions, so each finished pan run is
# cached under $VB_CACHE/promela/, keyed by a hash of all of these; a
# cached result is reported with "(cached)".
#
# Knobs: VHOST_BLK_MODEL_NREQ (default 2; 3 needs ~15 GB and many minutes),
#        VHOST_BLK_MODEL_TIMEOUT (seconds per pan run, default 600),
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
# Everything a result depends on besides the configuration.
INPUTS=$( { cat "$MODEL" "${BASH_SOURCE[0]}"; spin -V; gcc --version | head -n1; uname -m; } |
	sha256sum | cut -c1-16)

# verify NAME MODE -D... : MODE is safety or ltl.  Prints pan's output
# into $WORK/NAME/pan.out and returns 0 when pan ran to completion
# (sets ERRS to pan's error count, STATES to states stored).
verify() {
	local name=$1 mode=$2 key
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
	echo "$ERRS $STATES ${KIND:--}" >"$key.tmp" && mv "$key.tmp" "$key"
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
	(cd "$d" && timeout "$TMO" ./pan $pflags >pan.out 2>&1)
	local rc=$?
	if [ $rc -eq 124 ]; then
		echo "# pan timed out after ${TMO}s for $name"
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
	for ev in 0 1; do
		name="$cname-$mode-ev$ev"
		# shellcheck disable=SC2086
		if verify "$name" "$mode" $args -DEVENT_IDX=$ev && [ "$ERRS" = 0 ]; then
			if [ "$mode" = ltl ]; then
				ok "promela: $cname ($args EVENT_IDX=$ev): LTL <>(all requests reaped) holds ($STATES states)$CACHED"
			else
				ok "promela: $cname ($args EVENT_IDX=$ev): no assertion violated, no lost wake-up ($STATES states)$CACHED"
			fi
		else
			notok "promela: $cname $mode ($args EVENT_IDX=$ev): errors=$ERRS, see $WORK/$name/pan.out"
		fi
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
		name="mut-$mut-ev$ev"
		# shellcheck disable=SC2086
		if verify "$name" safety $args -DEVENT_IDX=$ev -D"$mut"; then
			if [ "$ERRS" != 0 ] && [ "$KIND" = "$kind" ]; then
				ok "promela: mutation $mut (EVENT_IDX=$ev) fails verification as expected: $kind$CACHED"
			else
				notok "promela: mutation $mut (EVENT_IDX=$ev) should fail with $kind, got errors=$ERRS kind=${KIND:-none} ($WORK/$name/pan.out)"
			fi
		else
			notok "promela: mutation $mut (EVENT_IDX=$ev): verification did not run to a result"
		fi
	done
done <<<"$mutations"

# the liveness property sees the lost wake-up too (not only the deadlock check)
for mut in NO_MB_ENABLE_NOTIFY NO_MB_SIGNAL; do
	name="mut-ltl-$mut"
	if verify "$name" ltl -DNREQ=$NREQ -DSPURIOUS=0 -DEVENT_IDX=1 -D"$mut" &&
	   [ "$ERRS" != 0 ] && [ "$KIND" = liveness ]; then
		ok "promela: mutation $mut violates LTL <>(all requests reaped) as expected$CACHED"
	else
		notok "promela: mutation $mut should violate the LTL property, got errors=$ERRS kind=${KIND:-none} ($WORK/$name/pan.out)"
	fi
done

tap_done
