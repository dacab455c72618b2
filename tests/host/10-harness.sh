#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# 10-harness.sh - the runner's own rules (TAP, host, a second).
# The kernel-log rule that fails a VM run (vb_kernel_errors, used by
# scripts/vm-run.sh) must catch real reports and pass what KVM prints in
# L1 while L2 guests run; the TAP counter must count what make check
# counts.
set -u
. "$(dirname "$0")/../../scripts/lib.sh"

t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT

# Seen in L1 consoles while nested KVM guests ran: harmless.
cat >"$t/kvm.log" <<'LOG'
[    6.040358] kvm: Nested Virtualization enabled
[    6.040718] SVM: kvm: Nested Paging enabled
[    6.041686] SVM: PMU virtualization is disabled
[   33.368146] kvm: SMP vm created on host with unstable TSC; guest TSC will not be reliable
[   42.812523] kvm [197]: vcpu0, guest rIP: 0xffffffff81002e1d Unhandled WRMSR(0xc0010007) = 0xffff
[  406.664509] kvm: exiting hardware virtualization
LOG
# Real reports, one per kind the rule knows.
cat >"$t/bad.log" <<'LOG'
[   12.000001] WARNING: CPU: 1 PID: 230 at drivers/vhost/blk.c:812 vhost_blk_flush+0x51/0x60 [vhost_blk]
[   12.000002] BUG: kernel NULL pointer dereference, address: 0000000000000008
[   12.000003] BUG: KFENCE: out-of-bounds read in vhost_blk_complete+0x2e/0x140 [vhost_blk]
[   12.000004] general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#1] PREEMPT SMP NOPTI
[   12.000005] INFO: task vhost-230:231 blocked for more than 120 seconds.
[   12.000006] Kernel panic - not syncing: Fatal exception
[   12.000007] refcount_t: underflow; use-after-free.
[   12.000008] UBSAN: array-index-out-of-bounds in drivers/vhost/blk.c:400:12
LOG

errs=$(vb_kernel_errors "$t/kvm.log")
if [ -z "$errs" ]; then
	ok "harness: KVM's notes in L1 (nested paging, unstable TSC, unhandled WRMSR) do not fail a VM run"
else
	notok "harness: KVM's notes in L1 fail a VM run: $errs"
fi
want=$(wc -l <"$t/bad.log")
got=$(vb_kernel_errors "$t/kvm.log" "$t/bad.log" | wc -l)
if [ "$got" -eq "$want" ]; then
	ok "harness: each of $want kinds of kernel report fails a VM run (WARNING, BUG, KFENCE, GPF, hung task, panic, refcount, UBSAN)"
else
	notok "harness: $got of $want kernel reports caught"
	vb_kernel_errors "$t/bad.log" | sed 's/^/# /'
fi

printf '%s\n' "1..5" "ok 1 - a" "not ok 2 - b" "ok 3 - c # SKIP why" \
	"not ok 4 - d # TODO later" "  ok 5 - indented subtest" "# ok 6" >"$t/tap"
if [ "$(vb_tap_count "$t/tap")" = "2 1 1" ]; then
	ok "harness: TAP counting: pass, fail, SKIP, TODO; indented and comment lines ignored"
else
	notok "harness: TAP counting gives '$(vb_tap_count "$t/tap")', want '2 1 1'"
fi
# make check on a tests tree of its own (scripts/check.sh's header): the
# plan (--plan: nothing runs), then a real run of the host stages (no VM
# suite, so no line is built and no VM boots).
mkdir -p "$t/run/prepare.d" "$t/run/host"
cat >"$t/run/prepare.d/10-wait.sh" <<WAIT
# The background suite must be running while the prepare stage is.
for i in \$(seq 100); do
	[ -e "$t/bg-started" ] && { echo "ok 1 - prepare ran beside the background suite"; exit 0; }
	sleep 0.1
done
echo "not ok 1 - prepare ran beside the background suite"
WAIT
echo 'echo "ok 1 - first"' >"$t/run/host/10-first.sh"
printf '%s\n' "# make-check: background" "touch '$t/bg-started'" "sleep 1" \
	'echo "ok 1 - background"' 'echo "1..1"' >"$t/run/host/20-bg.sh"
echo 'echo "ok 1 - foreground"' >"$t/run/host/30-fg.sh"
cp -r "$t/run" "$t/plan"
mkdir -p "$t/plan/vm"
echo 'echo "ok 1 - x"' >"$t/plan/vm/10-x.sh"
printf '# make-check: own-vm\n' >"$t/plan/vm/20-y.sh"
printf '#\n# make-check: own-vm lines=6.1\n' >"$t/plan/vm/30-z.sh"
printf '# make-check: lines=6.12\n' >"$t/plan/vm/40-w.sh"
# check [VAR=VALUE...] - scripts/check.sh "${CHECK_ARGS[@]}" on a tree of
# $t, with an empty cache and offline: a kernel it tried to fetch would fail.
check() {
	env -u VHOST_BLK_SUITES -u VHOST_BLK_VM_JOBS -u VHOST_BLK_VM_MEM VHOST_BLK_NO_DEPS=1 \
		VHOST_BLK_LINES="6.1 6.12" VHOST_BLK_LOGDIR="$t/logs" VHOST_BLK_OFFLINE=1 \
		VHOST_BLK_CACHE="$t/cache" "$@" \
		timeout 120 "$VB_REPO/scripts/check.sh" "${CHECK_ARGS[@]}" 2>"$t/check.err"
}
CHECK_ARGS=(--plan)
plan=$(check VHOST_BLK_TESTS_DIR="$t/plan" VHOST_BLK_VM_MEM=1)
want="host 10-first
host 20-bg background
host 30-fg
vm 6.1 (line 6.1): 10-x
vm 6.1-20-y (line 6.1): 20-y
vm 6.1-30-z (line 6.1): 30-z
vm 6.12 (line 6.12): 10-x 40-w
vm 6.12-20-y (line 6.12): 20-y
VMs at once: 5"
plan1=$(check VHOST_BLK_TESTS_DIR="$t/plan" VHOST_BLK_SUITES='[34]0-[wz]*' VHOST_BLK_VM_MEM=999999999)
want1="vm 6.1-30-z (line 6.1): 30-z
vm 6.12 (line 6.12): 40-w
VMs at once: 1"
what="make check's VMs: one per line, one more per own-vm suite, lines= honoured, all at once when memory allows"
if [ "$plan" = "$want" ] && [ "$plan1" = "$want1" ]; then
	ok "harness: $what"
else
	notok "harness: $what"
	printf 'got:\n%s\n%s\nwant:\n%s\n%s\n' "$plan" "$plan1" "$want" "$want1" | sed 's/^/# /'
	tail -n 5 "$t/check.err" | sed 's/^/# stderr: /'
fi
CHECK_ARGS=()
rm -f "$t/bg-started"
out=$(check VHOST_BLK_TESTS_DIR="$t/run" | grep -E '^(ok|not ok|# (prepare|host suite)|[0-9]+ passed)')
want="# prepare 10-wait
ok 1 - prepare ran beside the background suite
# host suite 10-first
ok 1 - first
# host suite 20-bg
ok 1 - background
# host suite 30-fg
ok 1 - foreground
4 passed, 0 failed, 0 skipped"
what="a background host suite runs beside the prepare stage; its output in its place"
if [ "$out" = "$want" ]; then
	ok "harness: $what"
else
	notok "harness: $what"
	printf 'got:\n%s\n' "$out" | sed 's/^/# /'
	tail -n 5 "$t/check.err" | sed 's/^/# stderr: /'
fi
# scripts/guest/qmp.py, the L2 suites' QMP client, against a QEMU without
# a machine: a return value, a failed command's QMPError with QEMU's
# description (and the command-line form's exit status), an event that
# does not come within its timeout and one that does.
qemu=${VHOST_BLK_QEMU:-qemu-system-x86_64}
if command -v "$qemu" >/dev/null; then
	"$qemu" -M none -nodefaults -display none \
		-qmp "unix:$t/qmp.sock,server=on,wait=off" &
	qpid=$!
	cli=$(timeout 60 python3 "$VB_REPO/scripts/guest/qmp.py" "$t/qmp.sock" \
		device_add '{"driver": "no-such-device"}' 2>&1; echo "exit $?")
	out=$(PYTHONPATH=$VB_REPO/scripts/guest timeout 60 python3 - "$t/qmp.sock" 2>&1 <<'PY'
import sys
import qmp
q = qmp.QMP(sys.argv[1], timeout=30)
print(q.execute("query-status")["status"])
try:
    q.execute("device_add", driver="no-such-device")
    print("no error")
except qmp.QMPError as e:
    print("error", e.error_class, e.desc)
print("no STOP" if q.wait_event("STOP", 0.5) is None else "early STOP")
q.execute("stop")
ev = q.wait_event("STOP", 10)
print(ev["event"] if ev else "no STOP after stop")
q.execute("quit")
PY
)
	wait "$qpid"
	want="running
error GenericError 'no-such-device' is not a valid device model name
no STOP
STOP"
	if [ "$out" = "$want" ] && [[ "$cli" == *"'no-such-device' is not a valid"*"exit 1" ]]; then
		ok "harness: qmp.py: return value, QMPError with QEMU's description, event wait with timeout"
	else
		notok "harness: qmp.py: return value, QMPError with QEMU's description, event wait with timeout"
		printf '%s\n%s\n' "$out" "$cli" | sed 's/^/# /'
	fi
else
	skip "harness: qmp.py against QEMU" "no $qemu"
fi

# make bench's estimator (per-I/O cost, idle rate, targets) on synthetic
# runs with known answers.
if out=$(python3 "$VB_REPO/scripts/bench/analyze.py" --selftest 2>&1); then
	ok "harness: bench estimator selftest (analyze.py --selftest)"
else
	notok "harness: bench estimator selftest (analyze.py --selftest)"
	printf '%s\n' "$out" | tail -5 | sed 's/^/# /'
fi
tap_done
