#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Instructions per request from a run of scripts/bench/req-cost-l1.sh.

    req-cost.py DIR REQUESTS CFG... [--diff BASE NEW] [--profile K]

Reads DIR/plugin.log (scripts/bench/vbcount.c, profile=on,profile_pct=100)
and DIR/runs.txt and prints, per run and per configuration (mean, min, max
over the runs):
  module/req  instructions in translated blocks that start in vhost_blk.ko's
              memory (its /proc/modules range), per request
  vhost/req   the same over vhost_blk, vhost and vhost_iotlb
  total/req   the whole machine between the two markers, per request
--diff BASE NEW adds NEW - BASE of each mean, the paired differences (NEW -
BASE of each round: they alternate) and whether the difference is larger
than the spread (max - min) of either configuration, or at least of the
same sign in every round.  With --profile, also the sum of the changes of
the symbols that changed by the same amount in every round (the exact
part of total/req's change, free of the background's noise).  --profile K adds, for
BASE and NEW, the instructions per request of the K kernel symbols whose
cost changed most, and the K that cost most (DIR/kallsyms, and DIR/syms-CFG
for vhost_blk's own).
"""
import argparse
import bisect
import collections
import re
import sys

METRICS = ("module/req", "vhost/req", "total/req")


def parse(out):
    marks, prof = [], collections.defaultdict(list)
    for line in open(out + "/plugin.log", errors="replace"):
        m = re.match(r"vbcount: mark (\d+) ns=\d+ total=(\d+)", line)
        if m:
            marks.append((int(m.group(1)), int(m.group(2))))
            continue
        m = re.match(r"vbcount: prof (\d+) 0x([0-9a-f]+) 0x[0-9a-f]+ (\d+) \d+", line)
        if m:
            prof[int(m.group(1))].append((int(m.group(2), 16), int(m.group(3))))
    runs = [line.split()[1:] for line in open(out + "/runs.txt")
            if line.startswith("RUN ")]
    if len(marks) != 2 * len(runs) or any(r[4] != "0" for r in runs):
        sys.exit("req-cost: %d markers for %d runs (failed: %s)"
                 % (len(marks), len(runs), [r for r in runs if r[4] != "0"]))
    return marks, prof, runs


class Symbols:
    """Kernel symbols at their addresses in the last boot."""

    def __init__(self, out, cfgs):
        self.core = self._load(out + "/kallsyms", lambda m: m != "[vhost_blk]")
        self.mod = {}
        for cfg in cfgs:
            try:
                syms = self._load(out + "/syms-" + cfg, lambda m: True)
            except OSError:
                continue
            # syms-CFG starts with "BASE 0 base": the module's address then.
            base = [a for a, name in syms if name == "base"][0]
            self.mod[cfg] = (base, [x for x in syms if x[1] != "base"])

    @staticmethod
    def _load(path, keep):
        syms = []
        for line in open(path):
            f = line.split()
            if len(f) >= 3 and f[1] in "tTwW0" and keep(f[3] if len(f) > 3 else ""):
                syms.append((int(f[0], 16), f[2]))
        syms.sort()
        return syms

    @staticmethod
    def _find(syms, va):
        i = bisect.bisect_right(syms, (va, "\xff")) - 1
        return syms[i][1] if i >= 0 else "?"

    def name(self, cfg, va, base, size):
        if va < 1 << 63:
            return "[user space]"
        if base <= va < base + size and cfg in self.mod:
            base0, syms = self.mod[cfg]
            return self._find(syms, va - base + base0) + " [vhost_blk]"
        return self._find(self.core, va)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("requests", type=int)
    ap.add_argument("cfgs", nargs="+")
    ap.add_argument("--diff", nargs=2, metavar=("BASE", "NEW"))
    ap.add_argument("--profile", type=int, default=0, metavar="K")
    a = ap.parse_args()
    n = a.requests
    marks, prof, runs = parse(a.out)
    per = collections.defaultdict(list)
    print("run  cfg  " + "  ".join("%10s" % m for m in METRICS))
    for k, (cfg, rep, base, size, _, *mods) in enumerate(runs):
        (_, t0), (seq, t1) = marks[2 * k], marks[2 * k + 1]
        lo, hi = int(base, 16), int(base, 16) + int(size)
        ranges = [(lo, hi)]
        for m in mods:
            _, b, s = m.split(":")
            ranges.append((int(b, 16), int(b, 16) + int(s)))
        mod = sum(i for va, i in prof[seq] if lo <= va < hi)
        vh = sum(i for va, i in prof[seq] if any(b <= va < e for b, e in ranges))
        if cfg == "warm":
            continue
        per[cfg].append((mod / n, vh / n, (t1 - t0) / n, seq, lo, int(size)))
        print("%-4s %-4s %10.1f %10.1f %10.1f" % (rep, cfg, mod / n, vh / n, (t1 - t0) / n))
    print("\n%d requests per run; mean [min, max] over %d runs"
          % (n, len(per[a.cfgs[0]])))
    stat = {}
    for cfg in a.cfgs:
        for i, what in enumerate(METRICS):
            v = [x[i] for x in per[cfg]]
            stat[cfg, what] = (sum(v) / len(v), min(v), max(v))
            print("%-4s %-11s %10.1f [%.1f, %.1f]" % ((cfg, what) + stat[cfg, what]))
    if a.diff:
        b, w = a.diff
        print("\n%s - %s (mean; spread = the larger max - min of the two;"
              " paired = %s - %s of each round, min..max)" % (w, b, w, b))
        for i, what in enumerate(METRICS):
            d = stat[w, what][0] - stat[b, what][0]
            spread = max(stat[c, what][2] - stat[c, what][1] for c in (b, w))
            pairs = [y[i] - x[i] for x, y in zip(per[b], per[w])]
            if abs(d) > spread:
                verdict = "beyond the spread"
            elif min(pairs) > 0 or max(pairs) < 0:
                verdict = "within the spread, same sign in every round"
            else:
                verdict = "within the spread"
            print("%-11s %+10.1f  %+6.2f %%  spread %.1f  paired %+.1f..%+.1f  %s" % (
                what, d, 100.0 * d / stat[b, what][0], spread,
                min(pairs), max(pairs), verdict))
    if a.profile and a.diff:
        syms = Symbols(a.out, a.cfgs)
        b, w = a.diff
        # run[cfg][k][symbol]: instructions per request of round k
        run = {cfg: [collections.defaultdict(float) for _ in per[cfg]] for cfg in a.diff}
        for cfg in a.diff:
            for k, (_, _, _, seq, lo, size) in enumerate(per[cfg]):
                for va, i in prof[seq]:
                    run[cfg][k][syms.name(cfg, va, lo, size)] += i / n
        names = {s for cfg in a.diff for r in run[cfg] for s in r}
        cost = {(cfg, s): sum(r[s] for r in run[cfg]) / len(run[cfg])
                for cfg in a.diff for s in names}
        exact = []
        for s in names:
            pairs = [y[s] - x[s] for x, y in zip(run[b], run[w])]
            if max(pairs) - min(pairs) < 0.5 and abs(cost[w, s] - cost[b, s]) >= 0.5:
                exact.append(cost[w, s] - cost[b, s])
        print("\nsymbols whose cost changed by the same amount in every round"
              " (paired spread < 0.5 per request): %d, %s - %s summed over them %+.1f"
              % (len(exact), w, b, sum(exact)))
        for title, key in (("whose cost changed most", lambda s: -abs(cost[w, s] - cost[b, s])),
                           ("that cost most", lambda s: -max(cost[b, s], cost[w, s]))):
            print("\nper request, the %d symbols %s (mean of the runs): %s, %s, %s - %s"
                  " (paired: of each round, min..max)" % (a.profile, title, b, w, w, b))
            for s in sorted(names, key=key)[:a.profile]:
                pairs = [y[s] - x[s] for x, y in zip(run[b], run[w])]
                print("%10.1f %10.1f %+10.1f  %+8.1f..%+.1f  %s" % (
                    cost[b, s], cost[w, s], cost[w, s] - cost[b, s],
                    min(pairs), max(pairs), s))

main()
