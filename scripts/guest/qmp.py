#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
#
# A small QMP client: the one way the L1 side of the L2-guest suites
# (tests/vm/5*.sh, tests/vm/migrate.py) talks to a QEMU.  scripts/guest/
# l2lib.sh puts this directory on PYTHONPATH, so a suite's heredoc says
# "import qmp".
#
#   q = qmp.QMP(path)         wait (up to timeout s) until QEMU listens
#                             on the unix socket path, connect, negotiate
#   q.cmd(name, **args)       the raw reply: {"return": ...} or {"error": ...}
#   q.execute(name, **args)   the return value; QMPError (class and desc of
#                             QEMU's error) when the command failed
#   q.hmp(line)               the output of a human monitor command
#   q.wait_event(name, timeout, **data)
#                             the first event NAME whose data contains DATA
#                             (received since the connection, consumed), or
#                             None after timeout seconds
#   q.seen(name, **data)      such an event arrived already (not consumed)
#   wait_for(pred, timeout)   poll pred() until true; False on timeout
#   wait_log(path, marker, timeout)
#                             a line of the log file starts with marker
#   pidfile(path)             the pid QEMU wrote (-pidfile path), once it
#                             did (None after 60 s)
#   fds(pid)                  the targets of a process's open descriptors,
#                             a Counter ("/dev/vhost-blk": 1, ...)
#   vhost_workers(pid)        how many of its threads are vhost workers
#                             (vhost-<pid>, Linux 6.4+)
#
# As a command (exit 1 on a QMP error, its class and desc on stderr):
#   qmp.py SOCKET COMMAND [JSON-ARGUMENTS]   prints the return value (JSON)
#   qmp.py SOCKET --hmp 'COMMAND LINE'       prints the monitor's output
#   qmp.py SOCKET --event NAME SECONDS       prints the event (exit 1 if
#                                            none came)

import collections
import json
import os
import socket
import sys
import time


class QMPError(Exception):
    """A command that QEMU answered with an error."""

    def __init__(self, name, error):
        self.name = name
        self.error_class = error.get("class", "?")
        self.desc = error.get("desc", "")
        super().__init__("%s: %s: %s" % (name, self.error_class, self.desc))


class QMP:
    def __init__(self, path, timeout=600, reply_timeout=300):
        """Connect to QEMU's QMP socket once it exists (QEMU started with
        -qmp unix:PATH,server=on,wait=off); replies may take reply_timeout
        seconds (nested TCG is slow)."""
        self.reply_timeout = reply_timeout
        self.events = []
        self._buf = b""
        deadline = time.monotonic() + timeout
        while True:
            self.sock = socket.socket(socket.AF_UNIX)
            try:
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self._message(None)             # the greeting
        self.execute("qmp_capabilities")

    def _message(self, deadline):
        """The next message; None if deadline (monotonic) passed first."""
        while b"\n" not in self._buf:
            left = self.reply_timeout
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                if deadline is None:
                    raise
                return None
            if not data:
                raise EOFError("QMP connection closed")
            self._buf += data
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def _reply(self):
        while True:
            m = self._message(None)
            if "event" in m:
                self.events.append(m)
            else:
                return m

    def cmd(self, name, **args):
        """Send a command; return QEMU's reply as it is."""
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        return self._reply()

    def execute(self, name, **args):
        """Send a command; return its return value or raise QMPError."""
        r = self.cmd(name, **args)
        if "error" in r:
            raise QMPError(name, r["error"])
        return r.get("return")

    def hmp(self, line):
        return self.execute("human-monitor-command",
                            **{"command-line": line})

    @staticmethod
    def _matches(ev, name, data):
        d = ev.get("data", {})
        return ev["event"] == name and all(d.get(k) == v
                                           for k, v in data.items())

    def seen(self, name, **data):
        return any(self._matches(e, name, data) for e in self.events)

    def wait_event(self, name, timeout, **data):
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if self._matches(e, name, data):
                    return self.events.pop(i)
            m = self._message(deadline)
            if m is None:
                return None
            if "event" in m:
                self.events.append(m)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def wait_for(pred, timeout, step=0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return False


def _log_has(path, marker):
    try:
        with open(path, "rb") as f:
            return any(line.startswith(marker.encode()) for line in f)
    except OSError:
        return False


def wait_log(path, marker, timeout):
    """Wait until a line of path starts with marker; print a TIMEOUT line
    and return False if none did within timeout seconds."""
    if wait_for(lambda: _log_has(path, marker), timeout, 1):
        return True
    print("TIMEOUT waiting for", marker)
    return False


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def pidfile(path, timeout=60):
    wait_for(lambda: _read(path), timeout)
    return _read(path) or None


def fds(pid):
    out = collections.Counter()
    d = "/proc/%s/fd" % pid
    for fd in os.listdir(d):
        try:
            out[os.readlink("%s/%s" % (d, fd))] += 1
        except OSError:
            pass
    return out


def vhost_workers(pid):
    """How many threads of process pid are vhost workers: since Linux 6.4
    threads of the owner named vhost-<pid> (before, kernel threads: 0)."""
    n = 0
    d = "/proc/%s/task" % pid
    for t in os.listdir(d):
        n += _read("%s/%s/comm" % (d, t)) == "vhost-%s" % pid
    return n


def main(argv):
    if len(argv) < 3:
        sys.stderr.write("usage: qmp.py SOCKET COMMAND [JSON-ARGUMENTS] | "
                         "--hmp LINE | --event NAME SECONDS\n")
        return 2
    q = QMP(argv[1], timeout=60)
    try:
        if argv[2] == "--hmp":
            sys.stdout.write(q.hmp(argv[3]))
        elif argv[2] == "--event":
            ev = q.wait_event(argv[3], float(argv[4]))
            if ev is None:
                sys.stderr.write("qmp: no %s event within %s s\n" %
                                 (argv[3], argv[4]))
                return 1
            print(json.dumps(ev))
        else:
            args = json.loads(argv[3]) if len(argv) > 3 else {}
            print(json.dumps(q.execute(argv[2], **args)))
    except QMPError as e:
        sys.stderr.write("qmp: %s\n" % e)
        return 1
    finally:
        q.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
