#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# 30-stack-budget.sh - enforce the stack budget of vhost_blk.ko (TAP).
# Budget (Documentation/robustness.rst): no vhost-blk frame over 256
# bytes, the deepest chain of vhost-blk frames under 1 KiB, and the bio
# end_io callback reaches nothing but queueing (no copy to guest memory,
# no mutex, no allocation, no submission).
# First checks that the checker itself catches each kind of violation on a
# small synthetic object, then checks the real module for every line
# statically (gcc -fstack-usage / -fcallgraph-info, checkstack.pl).  The
# runtime half (deepest stack through vhost-blk < 8 KiB under the ftrace
# stack tracer, no vhost-blk code under the kick's eventfd_write, nothing
# forbidden under vhost_blk_bio_end_io) is measured in each line's normal
# VM run by tests/vm/30-stress.sh.
set -u
. "$(dirname "$0")/../../scripts/lib.sh"
REPO=$VB_REPO
cd "$REPO" || exit 1

# 1. the checker catches violations (synthetic object, host gcc)
t=$REPO/build/stack-selftest
rm -rf "$t" && mkdir -p "$t"
cat >"$t/bad.c" <<'C'
void mutex_lock(void *m);
void *__kmalloc(unsigned long n, int f);
void vhost_work_queue(void *w);
int consume(char *p);
static __attribute__((noinline)) int big_frame(int x)
{
	volatile char buf[600];
	buf[x] = 1;
	return consume((char *)buf);
}
static __attribute__((noinline)) int mid(int x)
{
	volatile char buf[200];
	buf[x] = 2;
	return consume((char *)buf) + big_frame(x + 1);
}
__attribute__((noinline)) int chain_top(int x)
{
	volatile char buf[240];
	buf[x] = 3;
	return consume((char *)buf) + mid(x);
}
void bad_end_io(void *bio)
{
	mutex_lock(bio);
	__kmalloc(64, 0);
	vhost_work_queue(bio);
}
C
if (cd "$t" && gcc -O2 -c -fstack-usage -fcallgraph-info=su bad.c -o bad.o) 2>"$t/cc.err"; then
	out=$(perl scripts/stack-callgraph.pl "$t")
	prc=$?
	if [ $prc -ne 0 ] &&
	   grep -q "BUDGET FAIL: frame of big_frame" <<<"$out" &&
	   grep -q "BUDGET FAIL: deepest module chain" <<<"$out" &&
	   grep -q "BUDGET FAIL: completion context (bad_end_io) reaches mutex_lock" <<<"$out" &&
	   grep -q "BUDGET FAIL: completion context (bad_end_io) reaches __kmalloc" <<<"$out" &&
	   ! grep -q "reaches vhost_work_queue" <<<"$out"; then
		ok "stack: the checker flags a 600-byte frame, a >=1 KiB chain and mutex/alloc under end_io"
	else
		notok "stack: the checker missed a synthetic violation"
		sed 's/^/# /' <<<"$out"
	fi
else
	notok "stack: synthetic object for the checker self-test does not compile"
	sed 's/^/# /' "$t/cc.err"
fi

# 2. the real module, every line
read -r -a LINES <<<"$VB_LINES"
for line in "${LINES[@]}"; do
	log=$REPO/build/stack-report-$line.txt
	if ! scripts/stack-report.sh "$line" >"$log" 2>&1 ||
	   ! grep -q '^CHAIN' "$log"; then
		if ! grep -q '^CHAIN' "$log"; then
			notok "stack: report for $line (build failed, see $log)"
			tail -20 "$log" | sed 's/^/# /'
			continue
		fi
	fi
	top=$(awk '/^FRAME/ {print $2, $4; exit}' "$log")
	chain=$(awk '/^CHAIN/ {print $2; exit}' "$log")
	chainstr=$(sed -n 's/^CHAIN *[0-9]* //p' "$log" | head -1)
	echo "# $line: largest frame: ${top#* } ${top% *} bytes; deepest chain $chain bytes: $chainstr"
	if grep -q "BUDGET FAIL: frame\|unbounded dynamic" "$log"; then
		notok "stack: every vhost_blk frame <= 256 bytes ($line): $(grep 'BUDGET FAIL: frame\|unbounded' "$log" | tr '\n' ' ')"
	else
		ok "stack: every vhost_blk frame <= 256 bytes ($line; largest: ${top#* } ${top% *} bytes)"
	fi
	if grep -q "BUDGET FAIL: deepest\|BUDGET FAIL: recursion" "$log"; then
		notok "stack: deepest vhost_blk chain < 1024 bytes ($line): $chain bytes"
	else
		ok "stack: deepest vhost_blk chain < 1024 bytes ($line: $chain)"
	fi
	if grep -q "BUDGET FAIL: completion\|BUDGET FAIL: no completion" "$log"; then
		notok "stack: bio end_io only queues ($line): $(grep 'BUDGET FAIL: completion\|no completion' "$log" | tr '\n' ' ')"
	else
		ok "stack: bio end_io reaches only $(grep -c '^CTX' "$log") allowed callees: record, llist_add, queue work, wake ($line)"
	fi
done
tap_done
