#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
#
# L1 side of tests/vm/55-migrate.sh: starts the L2 guest's QEMU processes,
# migrates between them over QMP and prints the TAP cases (the plan is
# printed by the caller).  Environment: QEMU, OUT, SOCKDIR, L2_ARGS,
# L2_APPEND, CONTROL (1: only the negative control's cases, against a
# module without the dirty log), TAP_FIRST (the first case's number).

import json
import mmap
import os
import re
import shlex
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "scripts", "guest"))
from qmp import QMP, wait_for  # noqa: E402

QEMU = os.environ["QEMU"]
OUT = os.environ["OUT"]
SOCK = os.environ["SOCKDIR"]     # not on 9p: unix sockets need a local fs
ARGS = shlex.split(os.environ["L2_ARGS"])
APPEND = os.environ["L2_APPEND"]
CONTROL = os.environ.get("CONTROL", "0") == "1"

DISKS = [
    "-device", "vhost-blk-pci,id=vda,backend=/dev/ram0,num-queues=4",
    "-device", "vhost-blk-pci,id=vdb,backend=/dev/ram1,num-queues=1",
]
# a third disk in a hot-pluggable slot: unplugged before a migration
ROOT_PORT = ["-global", "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off",
             "-device", "pcie-root-port,id=rp1,chassis=1,slot=1"]
VDC = ["-device", "vhost-blk-pci,id=vdc,bus=rp1,backend=/dev/ram2,"
       "num-queues=1"]
if os.environ.get("MIGRATE_DISK") == "virtio":
    # control runs: QEMU's own virtio-blk in the same setup
    DISKS = [
        "-drive", "if=none,id=d0,file=/dev/ram0,format=raw,cache=none",
        "-device", "virtio-blk-pci,id=vda,drive=d0,num-queues=4",
        "-drive", "if=none,id=d1,file=/dev/ram1,format=raw,cache=none",
        "-device", "virtio-blk-pci,id=vdb,drive=d1,num-queues=1",
    ]
    VDC = ["-drive", "if=none,id=d2,file=/dev/ram2,format=raw,cache=none",
           "-device", "virtio-blk-pci,id=vdc,bus=rp1,drive=d2"]

n = int(os.environ.get("TAP_FIRST", "1")) - 1
T0 = time.time()


def tap(ok, name):
    """One case; [T s] is the time since the suite started."""
    global n
    n += 1
    print("%s %d - migrate: %s [%.0f s]" % ("ok" if ok else "not ok", n, name,
                                           time.time() - T0))
    sys.stdout.flush()


def diag(text):
    for line in str(text).splitlines()[-25:]:
        print("# " + line)
    sys.stdout.flush()


class L2:
    """One QEMU process of the guest."""
    all = []
    disks = DISKS + VDC     # the guest's disks now (vdc until unplugged)

    def __init__(self, name, incoming=None, disks=None):
        self.name = name
        self.qmp_path = "%s/qmp-%s.sock" % (SOCK, name)
        self.serial = "%s/serial-%s.log" % (OUT, name)
        self.err = "%s/qemu-%s.err" % (OUT, name)
        args = [QEMU] + ARGS + ["-append", APPEND,
                                "-serial", "file:" + self.serial,
                                "-qmp", "unix:%s,server=on,wait=off" %
                                self.qmp_path]
        args += ROOT_PORT + (disks if disks is not None else L2.disks)
        if incoming:
            args += ["-incoming", incoming]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(self.err, "w"))
        L2.all.append(self)
        self.qmp = QMP(self.qmp_path, timeout=60, reply_timeout=120)

    def status(self):
        try:
            return self.qmp.cmd("query-status")["return"]["status"]
        except (OSError, EOFError, KeyError, ValueError):
            return "gone"

    def log(self):
        try:
            with open(self.serial, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stderr(self):
        try:
            with open(self.err, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def quit(self):
        try:
            self.qmp.cmd("quit")
        except (OSError, EOFError, ValueError):
            pass
        self.qmp.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.qmp.close()


# The control disk (ram1, vdb in the guest), 4 KiB blocks: 0 the loop's
# command (STOP), 1 the loop's progress line, 2 dmaprobe's answer, 3
# dmaprobe's command (scripts/guest/dmaprobe.c)
LOOP_STATUS, PROBE_STATUS, PROBE_CMD = 4096, 8192, 12288


def guest_status(offset=LOOP_STATUS):
    """A line the guest wrote into the control disk."""
    fd = os.open("/dev/ram1", os.O_RDONLY | os.O_DIRECT)
    try:
        buf = mmap.mmap(-1, 4096)
        os.preadv(fd, [buf], offset)
        return buf.read(512).decode(errors="replace").split()
    finally:
        os.close(fd)


def guest_command(offset, text):
    fd = os.open("/dev/ram1", os.O_WRONLY | os.O_DIRECT | os.O_DSYNC)
    try:
        buf = mmap.mmap(-1, 4096)
        buf.write(text.encode().ljust(4096, b" "))
        os.pwritev(fd, [buf], offset)
    finally:
        os.close(fd)


def status_field(name):
    st = guest_status()
    if name in st[:-1]:
        try:
            return int(st[st.index(name) + 1])
        except ValueError:
            return None
    return None


def iterations(vm=None):
    return status_field("ITER") or 0


def progressing(vm, timeout=240):
    """The guest on vm completes at least two more loop iterations."""
    start = iterations(vm)
    if wait_for(lambda: iterations(vm) >= start + 2, timeout):
        return True
    # what the device model sees (QEMU's copy of the rings)
    for q in range(4):
        r = vm.qmp.cmd("x-query-virtio-queue-status",
                       path="/machine/peripheral/vda/virtio-backend",
                       queue=q)
        diag("vda queue %d: %s" % (q, json.dumps(r.get("return",
                                                         r.get("error")))))
    # where the vCPUs are (a stalled guest prints nothing on its console)
    for _ in range(3):
        r = vm.qmp.cmd("human-monitor-command",
                       **{"command-line": "info registers -a"})
        diag("\n".join(line for line in r.get("return", "").splitlines()
                       if line.startswith(("CPU#", "RIP", "RSP"))))
        time.sleep(1)
    diag(subprocess.run(["dmesg"], stdout=subprocess.PIPE,
                        universal_newlines=True).stdout)
    return False


def set_speed(vm, bandwidth, downtime_ms=300):
    # return-path: a destination that fails to load the state fails the
    # migration on the source, which then resumes the guest (refused,
    # and not needed, while a migration runs)
    if migration(vm).get("status") not in ("active", "setup"):
        vm.qmp.cmd("migrate-set-capabilities", capabilities=[
            {"capability": "return-path", "state": True}])
    vm.qmp.cmd("migrate-set-parameters", **{"max-bandwidth": bandwidth,
                                            "downtime-limit": downtime_ms})


def wait_migration(vm, timeout=300):
    """Poll query-migrate on the source until it ends; return its info."""
    info = {}
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = vm.qmp.cmd("query-migrate").get("return", {})
        if info.get("status") in ("completed", "failed", "cancelled"):
            return info
        time.sleep(0.3)
    info["status"] = "timeout"
    return info


PROBE_SEQ = [0]


def probe(command, timeout=60):
    """Send dmaprobe a command; return its answer (a list of words, the
    last one it wrote if it did not answer in time)."""
    PROBE_SEQ[0] += 1
    seq = str(PROBE_SEQ[0])
    guest_command(PROBE_CMD, "%s %s" % (command, seq))
    want = {"FILL": "FILLED", "CHECK": "CHECKED"}.get(command, command)
    wait_for(lambda: guest_status(PROBE_STATUS)[:2] == [want, seq], timeout)
    return guest_status(PROBE_STATUS)


def sync_count(vm):
    return (vm.qmp.cmd("query-migrate").get("return", {}).get("ram", {})
            .get("dirty-sync-count", 0))


def migration(vm):
    return vm.qmp.cmd("query-migrate").get("return", {})


def migrate(src, dst_name, disks=None, during=None, fill=True):
    """Migrate src to a new process; return (dst, info).

    fill: the pages the device writes into guest memory after the first
    pass.  The migration is held in its dirty passes: a 1 ms downtime
    limit and, near the end of the first pass, a bandwidth of 2 MiB/s,
    then 64 KiB/s once the first pass sent every page of RAM (the
    threshold QEMU compares the dirty memory with, bandwidth x downtime,
    is then below one page: it cannot converge while the guest writes
    anything).  Then dmaprobe in the guest reads 32 MiB of vda into memory
    that its CPU wrote before the migration (only the device writes it
    now); then 24 MiB/s and 300 ms let the migration converge.
    info["probe"] says whether all that happened in order; check_probe()
    looks at the pages on the destination.  during(): called while the
    migration is held.  Without fill: 24 MiB/s, 20 ms.
    """
    path = "%s/mig-%s.sock" % (SOCK, dst_name)
    dst = L2(dst_name, incoming="unix:" + path, disks=disks)
    # capped bandwidth: RAM takes several dirty passes
    set_speed(src, 24 << 20, 1 if fill else 20)
    t0 = time.time()
    r = src.qmp.cmd("migrate", uri="unix:" + path)
    if "error" in r:
        return dst, {"status": "error", "error": r["error"]}
    if not fill:
        info = wait_migration(src)
        info["wall"] = time.time() - t0
        return dst, info
    wait_for(lambda: migration(src).get("ram", {}).get(
        "remaining", 1 << 40) < 4 << 20 or sync_count(src) >= 2, 120, 0.05)
    set_speed(src, 2 << 20, 1)
    passed = wait_for(lambda: sync_count(src) >= 2, 60, 0.05)
    set_speed(src, 64 << 10, 1)
    active = migration(src).get("status") == "active"
    if during:
        during()
    t_fill = time.time() - t0
    answer = probe("FILL")
    held = active and migration(src).get("status") == "active"
    t_filled = time.time() - t0
    set_speed(src, 24 << 20, 300)
    info = wait_migration(src)
    info["wall"] = time.time() - t0
    info["probe"] = {"first-pass-done": passed, "answer": answer,
                     "held": held, "filled": answer[:1] == ["FILLED"],
                     "fill-s": [round(t_fill, 1), round(t_filled, 1)]}
    return dst, info


def check_probe(info, label):
    """Case: the pages the device wrote after the first pass are right on
    the destination (or, for the negative control, are not)."""
    pr = info.get("probe", {})
    answer = probe("CHECK")
    lost = pages = same = None
    if answer[:1] == ["CHECKED"] and len(answer) >= 8:
        lost, pages, same = int(answer[3]), int(answer[5]), int(answer[7])
    ready = pr.get("first-pass-done") and pr.get("held") and pr.get(
        "filled") and pages and same == 0
    what = ("%s: %s of %s pages the device wrote into guest memory after "
            "the first pass lost on the destination" % (label, lost, pages))
    if CONTROL:
        ok = bool(ready and lost)
        tap(ok, what + " (without the dirty log the check must FAIL)")
    else:
        ok = bool(ready and lost == 0)
        tap(ok, what)
    if not ok:
        diag(json.dumps(pr))
        diag(" ".join(answer))
    return lost


def describe(info):
    ram = info.get("ram", {})
    return ("%s in %.1f s, %d dirty passes, downtime %s ms, %d MiB sent" %
            (info.get("status"), info.get("wall", 0),
             ram.get("dirty-sync-count", 0), info.get("downtime", "?"),
             ram.get("transferred", 0) >> 20))


def switchover(src, dst, info, label):
    """Cases: the migration completed in passes; the guest runs on dst."""
    ok = (info.get("status") == "completed" and
          info.get("ram", {}).get("dirty-sync-count", 0) >= 3)
    tap(ok, "%s: %s" % (label, describe(info)))
    if not ok:
        diag(json.dumps(info))
        diag(dst.stderr())
    st = dst.status()
    ok = st == "running" and progressing(dst)
    tap(ok, "%s: guest runs on the destination (%s, %d iterations)" %
        (label, st, iterations(dst)))
    if not ok:
        diag(dst.stderr())
        diag(dst.log())
    src.quit()


def aborted(src, label, action):
    """A migration that is abandoned mid-way: the source keeps running."""
    path = "%s/mig-%s.sock" % (SOCK, label)
    dst = L2(label, incoming="unix:" + path)
    set_speed(src, 2 << 20)
    src.qmp.cmd("migrate", uri="unix:" + path)
    active = wait_for(lambda: src.qmp.cmd("query-migrate")["return"]
                      .get("status") == "active", 30)
    time.sleep(2)
    action(dst)
    info = wait_migration(src, 60)
    st = src.status()
    ok = active and st == "running" and progressing(src)
    tap(ok, "%s mid-way: migration %s, source %s, guest progressing" %
        (label, info.get("status"), st))
    if not ok:
        diag(json.dumps(info))
        diag(src.stderr())
    if dst.proc.poll() is None:
        dst.quit()


def boot():
    """Start the guest; retry once if the (nested) boot crashes, or prints
    nothing for 120 s (seen once under load: no output at all)."""
    for attempt in ("A", "A-retry"):
        a = L2(attempt)
        wait_for(lambda: "L2-BOOTED" in a.log() or "Kernel panic" in a.log()
                 or a.proc.poll() is not None, 120)
        if "L2-BOOTED" in a.log():
            wait_for(lambda: iterations() >= 1 or a.proc.poll() is not None,
                     300)
            return a
        diag("the L2 guest did not boot (nested virtualisation), "
             "retrying:\n" + "\n".join(a.log().splitlines()[:3]))
        a.kill()
    return a


def refuse_unplug(vm):
    """Case: device_del while the migration runs is refused, the disk
    stays (QEMU refuses any unplug while migrating: qdev_unplug())."""
    r = vm.qmp.cmd("device_del", id="vdc")
    err = r.get("error", {}).get("desc", "")
    active = (vm.qmp.cmd("query-migrate")["return"].get("status") ==
              "active")
    still = "return" in vm.qmp.cmd("qom-get", path="/machine/peripheral/vdc",
                                   property="type")
    ok = (err == "device_del not allowed while migrating" and active and
          still and not vm.qmp.wait_event("DEVICE_DELETED", 2, device="vdc"))
    tap(ok, "device_del while migrating refused (\"%s\"), vdc stays, "
        "migration %s" % (err, "active" if active else "not active"))
    if not ok:
        diag(json.dumps(r))


def early(vm):
    """Case: a destination without vdc while the source still has it (no
    device_del yet) refuses the stream; the source keeps running.  On q35
    the first difference QEMU meets is the root port's config (a device
    present in its slot), before vdc's own section would be unknown."""
    refused(vm, "no-vdc", DISKS, r"(Unknown savevm section or instance|"
            r"error while loading state for instance) [^\n]*",
            "destination without vdc before its unplug")


def refused(vm, name, disks, error, what, also=""):
    """Case: a destination with these disks refuses the state with a
    message matching error (and containing also); the source runs on."""
    dst, info = migrate(vm, name, disks=disks, fill=False)
    try:
        dst.proc.wait(60)
    except subprocess.TimeoutExpired:
        pass
    err = dst.stderr()
    m = re.search(error, err)
    st = vm.status()
    ok = (info.get("status") == "failed" and m is not None and also in err
          and st == "running" and progressing(vm))
    tap(ok, "%s refused: migration %s, \"%s\", source %s" %
        (what, info.get("status"), m.group(0) if m else "no such error", st))
    if not ok:
        diag(err)
        diag(json.dumps(info))
    if dst.proc.poll() is None:
        dst.quit()


def unplug(vm):
    """Case: vdc is hot-unplugged; the guest's disks are then DISKS."""
    r = vm.qmp.cmd("device_del", id="vdc")
    t0 = time.time()
    ev = vm.qmp.wait_event("DEVICE_DELETED", 60, device="vdc")
    gone = "error" in vm.qmp.cmd("qom-get", path="/machine/peripheral/vdc",
                                 property="type")
    ok = "return" in r and ev is not None and gone
    tap(ok, "device_del vdc: DEVICE_DELETED after %.1f s, device gone" %
        (time.time() - t0))
    if not ok:
        diag(json.dumps(r))
        diag(vm.stderr())
    L2.disks = DISKS


def control():
    """The negative control: one migration with the probe must lose the
    pages the device wrote after the first pass."""
    a = boot()
    if iterations() < 1:
        tap(False, "negative control: the guest did not start its loop")
        diag(a.log())
        a.kill()
        return 1
    b, info = migrate(a, "B")
    if info.get("status") != "completed":
        diag(describe(info))
        diag(b.stderr())
    check_probe(info, "A -> B")
    a.quit()
    b.quit()
    return 0


def main():
    if CONTROL:
        return control()
    a = boot()
    ok = iterations() >= 1
    tap(ok, "guest prefilled its disk and loops fio with verification")
    if not ok:
        diag(a.log())
        diag(a.stderr())
        a.kill()
        return 1

    b, info = migrate(a, "B", during=lambda: refuse_unplug(a))
    switchover(a, b, info, "A -> B")
    check_probe(info, "A -> B")
    # the field failure behind the unplug rule: a destination started
    # without vdc while the source still has it must refuse the stream
    early(b)
    # the rule: after DEVICE_DELETED a destination without the disk is
    # the right one, and the migration must complete
    unplug(b)
    a2, info = migrate(b, "A2")
    switchover(b, a2, info, "B -> A after the unplug (ping-pong)")
    check_probe(info, "B -> A")
    vm = a2

    aborted(vm, "cancel", lambda dst: vm.qmp.cmd("migrate_cancel"))
    aborted(vm, "kill-destination", lambda dst: dst.kill())

    # A destination whose disk is smaller than the source's (128 MiB): a
    # 64 MiB file; discard as on the source, so that only the size differs
    small = "%s/small.img" % SOCK
    with open(small, "wb") as f:
        f.truncate(64 << 20)
    bad = ["-device", "vhost-blk-pci,id=vda,num-queues=4,direct=off,"
           "backend=" + small] + DISKS[2:]
    refused(vm, "mismatch", bad, r"vhost-blk: capacity differs: [^\n]*",
            "destination with a smaller disk", "use the same backend size")
    os.unlink(small)

    # calc-dirty-rate: dirty logging on the running device
    r = vm.qmp.cmd("calc-dirty-rate", **{"calc-time": 2,
                                         "mode": "dirty-bitmap"})
    ok = "return" in r
    rate = {}
    if ok:
        ok = wait_for(lambda: vm.qmp.cmd("query-dirty-rate")["return"]
                      .get("status") == "measured", 30)
        rate = vm.qmp.cmd("query-dirty-rate").get("return", {})
    st = vm.status()
    ok = ok and st == "running" and progressing(vm)
    tap(ok, "calc-dirty-rate (dirty-bitmap) under load: %s MB/s, guest %s" %
        (rate.get("dirty-rate", "?"), st))
    if not ok:
        diag(json.dumps(r))

    # end the guest's loop (O_DIRECT: the kernel reads the backend)
    subprocess.run("printf STOP | dd of=/dev/ram1 bs=512 conv=sync "
                   "oflag=direct status=none", shell=True)
    done = wait_for(lambda: "L2-DONE" in vm.log(), 300)
    logs = ""
    for name in sorted(os.listdir(OUT)):
        if name.startswith("serial-"):
            with open("%s/%s" % (OUT, name), errors="replace") as f:
                logs += f.read()
    wait_for(lambda: status_field("FINAL") is not None, 300)
    its, bad, final = (status_field("ITER"), status_field("BAD"),
                       status_field("FINAL"))
    for name, good in (
            ("loop-no-errors (%s iterations, %s with errors)" % (its, bad),
             its is not None and its > 0 and bad == 0),
            ("final verification (fio exit %s)" % final, final == 0)):
        tap(good, "guest: " + name)
        if not good:
            diag("\n".join(line for line in logs.splitlines()
                           if line.startswith("L2-LOG")))
    good = re.search(r"^L2-RESULT ok mq-4-queues-offered", logs, re.M)
    tap(bool(good), "guest: uses more than one of vda's 4 queues")
    if not done:
        diag("the guest did not print L2-DONE on its console")
    vm.quit()
    return 0


if __name__ == "__main__":
    try:
        rc = main()
    finally:
        for vm in L2.all:
            if vm.proc.poll() is None:
                vm.proc.kill()
    sys.exit(rc)
