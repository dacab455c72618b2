#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
#
# L1 side of tests/vm/55-migrate.sh: starts the L2 guest's QEMU processes,
# migrates between them over QMP and prints the TAP cases (the plan is
# printed by the caller).  Environment: QEMU, OUT, SOCKDIR, L2_ARGS,
# L2_APPEND, EXPECT_FAIL.

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
EXPECT_FAIL = os.environ.get("EXPECT_FAIL", "0") == "1"

DISKS = [
    "-device", "vhost-blk-pci,id=vda,backend=/dev/ram0,num-queues=4",
    "-device", "vhost-blk-pci,id=vdb,backend=/dev/ram1,num-queues=1",
]
if os.environ.get("MIGRATE_DISK") == "virtio":
    # control runs: QEMU's own virtio-blk in the same setup
    DISKS = [
        "-drive", "if=none,id=d0,file=/dev/ram0,format=raw,cache=none",
        "-device", "virtio-blk-pci,id=vda,drive=d0,num-queues=4",
        "-drive", "if=none,id=d1,file=/dev/ram1,format=raw,cache=none",
        "-device", "virtio-blk-pci,id=vdb,drive=d1,num-queues=1",
    ]

n = 0
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

    def __init__(self, name, incoming=None, disks=None):
        self.name = name
        self.qmp_path = "%s/qmp-%s.sock" % (SOCK, name)
        self.serial = "%s/serial-%s.log" % (OUT, name)
        self.err = "%s/qemu-%s.err" % (OUT, name)
        args = [QEMU] + ARGS + ["-append", APPEND,
                                "-serial", "file:" + self.serial,
                                "-qmp", "unix:%s,server=on,wait=off" %
                                self.qmp_path]
        args += disks if disks is not None else DISKS
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


def guest_status():
    """The guest's progress line in the control disk (ram1, 4 KiB in)."""
    fd = os.open("/dev/ram1", os.O_RDONLY | os.O_DIRECT)
    try:
        buf = mmap.mmap(-1, 4096)
        os.preadv(fd, [buf], 4096)
        return buf.read(512).decode(errors="replace").split()
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
    # migration on the source, which then resumes the guest
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


def migrate(src, dst_name, disks=None):
    """Migrate src to a new process; return (dst, info)."""
    path = "%s/mig-%s.sock" % (SOCK, dst_name)
    dst = L2(dst_name, incoming="unix:" + path, disks=disks)
    # capped bandwidth, short downtime: RAM takes several dirty passes
    set_speed(src, 24 << 20, 20)
    t0 = time.time()
    r = src.qmp.cmd("migrate", uri="unix:" + path)
    if "error" in r:
        return dst, {"status": "error", "error": r["error"]}
    info = wait_migration(src)
    info["wall"] = time.time() - t0
    return dst, info


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
    """Start the guest; retry once if the (nested) boot itself crashes."""
    for attempt in ("A", "A-retry"):
        a = L2(attempt)
        wait_for(lambda: iterations() >= 1 or
                 "Kernel panic" in a.log() or a.proc.poll() is not None, 600)
        if "Kernel panic" not in a.log() or "L2-BOOTED" in a.log():
            return a
        diag("the L2 kernel crashed while booting (nested virtualisation), "
             "retrying:\n" + "\n".join(a.log().splitlines()[:3]))
        a.kill()
    return a


def main():
    a = boot()
    ok = iterations() >= 1
    tap(ok, "guest prefilled its disk and loops fio with verification")
    if not ok:
        diag(a.log())
        diag(a.stderr())
        a.kill()
        return 1

    b, info = migrate(a, "B")
    switchover(a, b, info, "A -> B")
    a2, info = migrate(b, "A2")
    switchover(b, a2, info, "B -> A (ping-pong)")
    vm = a2

    aborted(vm, "cancel", lambda dst: vm.qmp.cmd("migrate_cancel"))
    aborted(vm, "kill-destination", lambda dst: dst.kill())

    # A destination whose disk differs from the source's
    small = "/dev/mapper/mig-small"
    r = subprocess.run(["dmsetup", "create", "mig-small", "--table",
                        "0 32768 linear /dev/ram2 0"],
                       stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    if r.returncode == 0 and wait_for(lambda: os.path.exists(small), 10):
        disk, field = "backend=" + small, "capacity"
    else:
        disk, field = "backend=/dev/ram0,opt_io_size=65536", "opt_io_size"
    bad = ["-device", "vhost-blk-pci,id=vda,num-queues=4," + disk,
           "-device", DISKS[3]]
    dst, info = migrate(vm, "mismatch", disks=bad)
    try:
        dst.proc.wait(60)
    except subprocess.TimeoutExpired:
        pass
    st = vm.status()
    err = dst.stderr()
    ok = (info.get("status") == "failed" and
          ("vhost-blk: %s differs" % field) in err and st == "running" and
          progressing(vm))
    tap(ok, "destination with a different %s refused (%s), source %s" %
        (field, info.get("status"), st))
    if not ok:
        diag(err)
        diag(json.dumps(info))
    if dst.proc.poll() is None:
        dst.quit()
    subprocess.run(["dmsetup", "remove", "mig-small"],
                   stderr=subprocess.DEVNULL)

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
    # without the dirty log only guest memory the kernel wrote goes stale
    # (the loop's page-cache check sees it); the disk itself stays right
    results = [("loop-no-errors (%s iterations, %s with errors)" % (its, bad),
                its is not None and its > 0 and bad == 0, EXPECT_FAIL),
               ("final verification (fio exit %s)" % final, final == 0,
                False)]
    for name, good, must_fail in results:
        if must_fail:
            tap(not good, "%s must FAIL without a dirty log" % name)
        else:
            tap(good, "guest: %s" % name)
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
