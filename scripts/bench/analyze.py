#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Turn the raw output of scripts/bench/l1.sh into results.

    analyze.py --raw DIR --out DIR [--baseline DIR] [--max-slowdown X]
               [--profile vhost_blk.ko]
    analyze.py --selftest

Inputs (in --raw): plugin.log (vbcount marker snapshots, bb.c totals),
marks.txt (one label per marker, execution order), native-*.json and
l2-*.log (fio JSON), kallsyms.

Per-I/O instructions.  Each repetition of a cell ran fio for S and 3*S
seconds, each run between two markers, so every run gives the whole
machine's instructions I, seconds T (on the clock of the guest that ran
fio, which its markers carry; the host's for older raw data) and completed
I/Os N.  With the session's idle rate b (markers around a sleep, same guest(s) up), one
repetition's per-I/O cost is

    c = ((I_long - I_short) - b * (T_long - T_short)) / (N_long - N_short)

which cancels the fixed cost of a fio run (process start, file open, ring
setup, exit) and the time-proportional background (L1/L2 timer ticks).
insn_per_io is the median of c over the repetitions, insn_spread_pct is
(max - min) / median * 100.

Perturbation.  Counting slows the emulated L1 down, and a nested guest's
timing (timer ticks, interrupt injection, halt and wake-up) does not slow
down with it, so a counted cell can run at a fraction of its real rate
and its per-I/O figure then measures waiting, not work.  --baseline names
the raw output of the same matrix run without plugins; each cell gets
iops_uncounted and slowdown = iops_uncounted / iops, and a cell slowed down
more than --max-slowdown (default 1.5) is "perturbed": its insn_per_io is
withheld (null, the estimate kept as insn_per_io_perturbed) and it gives
no ratio.
"""
import argparse
import glob
import json
import os
import re
import statistics
import sys

from profiles import breakdown, profile

BACKENDS = ["native", "vhost-blk", "vhost-blk-wpv", "iothread", "aio-native", "vhost-user"]
BACKEND_DESC = {
    "native": "fio io_uring in L1 (physical limit)",
    "vhost-blk": "vhost-blk-pci",
    "vhost-blk-wpv": "vhost-blk-pci, worker-per-virtqueue=on",
    "iothread": "virtio-blk-pci, iothread, aio=io_uring, cache=none",
    "aio-native": "virtio-blk-pci, aio=native, cache=none",
    "vhost-user": "vhost-user-blk-pci + qemu-storage-daemon",
}


def parse_plugin(path):
    """(marks [(ns, total)], bb.c total, vbcount exit total, profile
    {seq: [(vaddr, haddr, insns, execs)]}, per-vCPU totals at each mark)."""
    marks, bb_total, vb_exit, prof, cpus = [], None, None, {}, []
    rx = re.compile(r"^vbcount: mark (\d+) ns=(\d+) total=(\d+)")
    rc = re.compile(r" cpu\d+=(\d+)")
    rp = re.compile(r"^vbcount: prof (\d+) (0x[0-9a-f]+) (0x[0-9a-f]+) (\d+) (\d+)")
    rb = re.compile(r"^CPU\d+: bb's: \d+, insns: (\d+)")
    with open(path, errors="replace") as f:
        for line in f:
            m = rx.match(line)
            if m:
                marks.append((int(m.group(2)), int(m.group(3))))
                cpus.append([int(x) for x in rc.findall(line)])
                continue
            m = rp.match(line)
            if m:
                prof.setdefault(int(m.group(1)), []).append(
                    (int(m.group(2), 16), int(m.group(3), 16), int(m.group(4)),
                     int(m.group(5))))
                continue
            m = rb.match(line)
            if m:
                bb_total = (bb_total or 0) + int(m.group(1))
                continue
            m = re.match(r"^vbcount: exit ns=\d+ total=(\d+)", line)
            if m:
                vb_exit = int(m.group(1))
    return marks, bb_total, vb_exit, prof, cpus


def fio_metrics(js):
    job = js["jobs"][0]
    ios = iops = 0
    p50 = p99 = None
    for d in ("read", "write"):
        s = job.get(d, {})
        if s.get("total_ios", 0) > 0:
            ios += s["total_ios"]
            iops += s["iops"]
            pct = s.get("clat_ns", {}).get("percentile", {})
            if pct:
                p50 = pct.get("50.000000", 0) / 1000.0
                p99 = pct.get("99.000000", 0) / 1000.0
    return {"ios": ios, "iops": iops, "p50": p50, "p99": p99}


def load_fio(raw):
    """id -> fio metrics, id = BACKEND/DEV/WORKLOAD/qQ/rR/sS."""
    out = {}
    for p in glob.glob(os.path.join(raw, "native-*.json")):
        m = re.match(r"native-(\w+)-(.+)-q(\d+)-r(\d+)-s(\d+)\.json$", os.path.basename(p))
        try:
            with open(p) as f:
                js = json.load(f)
        except (OSError, ValueError):
            continue
        out["native/%s/%s/q%s/r%s/s%s" % m.groups()] = fio_metrics(js)
    for p in glob.glob(os.path.join(raw, "l2-*.log")):
        if p.endswith(".err"):
            continue
        # L2-FIO ID "key" : value lines, the read/write/trim/sync sections
        # of fio's JSON in order (see l1.sh): rebuild the part we use.
        jobs = {}
        with open(p, errors="replace") as f:
            for line in f:
                m = re.match(r'^L2-FIO (\S+) "([\w.]+)" : ([^,{]*)', line.rstrip("\r\n"))
                if not m:
                    continue
                rid, key, val = m.group(1), m.group(2), m.group(3).strip()
                job = jobs.setdefault(rid, {"_sec": None})
                if key in ("read", "write", "trim", "sync"):
                    job["_sec"] = key
                    job[key] = {"clat_ns": {"percentile": {}}}
                    continue
                sec = job.get(job["_sec"]) if job["_sec"] else None
                if sec is None:
                    continue
                try:
                    v = float(val)
                except ValueError:
                    continue
                if key in ("50.000000", "99.000000"):
                    sec["clat_ns"]["percentile"].setdefault(key, v)
                elif key in ("total_ios", "iops"):
                    sec.setdefault(key, v)
        for rid, job in jobs.items():
            job.pop("_sec")
            job.pop("sync", None)
            try:
                out[rid] = fio_metrics({"jobs": [job]})
            except (KeyError, IndexError):
                print("analyze: warning: bad fio figures for %s" % rid, file=sys.stderr)
    return out


def guest_time(label):
    """'LABEL @SECONDS' -> (LABEL, SECONDS); (label, None) without a time."""
    m = re.match(r"^(.*) @(\d+(?:\.\d+)?)$", label)
    return (m.group(1), float(m.group(2))) if m else (label, None)


def intervals(labels, marks):
    """label-without-begin/end -> (dinsn, dsec, end_seq).

    dsec is the guest's own time between the markers when both labels
    carry it (the clock its timer ticks follow; under -icount it is
    instruction-driven, not the host's), else the host's.
    """
    iv, open_, when = {}, {}, []
    for i, lab in enumerate(labels):
        lab, t = guest_time(lab)
        labels[i] = lab
        when.append(t)
    for i, lab in enumerate(labels):
        if lab.endswith(" begin"):
            open_[lab[:-6]] = i
        elif lab.endswith(" end"):
            k = lab[:-4]
            if k in open_:
                b = open_.pop(k)
                if when[i] is not None and when[b] is not None:
                    dt = when[i] - when[b]
                else:
                    dt = (marks[i][0] - marks[b][0]) / 1e9
                iv[k] = (marks[i][1] - marks[b][1], dt, i)
    return iv


def l1_clock_ratio(labels, marks):
    """Seconds of L1's clock per second of the host's between the first
    and the last marker L1 itself labelled ("start", "sync ...", "stop"):
    1 unless L1's kernel got its TSC frequency wrong."""
    pts = []
    for lab, (ns, _) in zip(labels, marks):
        name, t = guest_time(lab)
        if t is not None and (name in ("start", "stop") or name.startswith("sync ")):
            pts.append((t, ns))
    if len(pts) < 2 or pts[-1][1] <= pts[0][1]:
        return None
    return (pts[-1][0] - pts[0][0]) / ((pts[-1][1] - pts[0][1]) / 1e9)


def _med_lists(lists):
    """Element-wise median of equal-length lists (None for none)."""
    if not lists:
        return None
    return [statistics.median(xs) for xs in zip(*lists)]


def quiet_intervals(ivs, factor=1.5):
    """The idle intervals [(seq, insns, secs)] whose rate is within FACTOR
    of the lowest: the first one after an L2 guest's boot carried L1's
    zeroing of the guest's memory (clear_page_erms) at 4-5x the others'
    rate, a background that has ended before the runs."""
    low = min(di / dt for _, di, dt in ivs)
    return [x for x in ivs if x[1] / x[2] <= factor * low]


def fit_cell(runs, b):
    """runs: {(r, s): (I, T, N, fio)}; b idle rate.  Returns per-rep c."""
    reps = sorted({r for r, _ in runs})
    cs = []
    for r in reps:
        lens = sorted(s for rr, s in runs if rr == r)
        if len(lens) < 2:
            continue
        s0, s1 = lens[0], lens[-1]
        I0, T0, N0, _ = runs[(r, s0)]
        I1, T1, N1, _ = runs[(r, s1)]
        if N1 - N0 <= 0:
            continue
        cs.append(((I1 - I0) - b * (T1 - T0)) / (N1 - N0))
    return cs


def lstsq_a_c(points):
    """Least squares y = a + c*x; returns (a, c)."""
    n = len(points)
    if n < 2:
        return None, None
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None, None
    c = sum((x - mx) * (y - my) for x, y in points) / sxx
    return my - c * mx, c


def analyze(raw):
    marks, bb_total, vb_exit, prof, cpus = parse_plugin(os.path.join(raw, "plugin.log"))
    with open(os.path.join(raw, "marks.txt")) as f:
        labels = [l.strip() for l in f if l.strip()]
    if len(labels) < len(marks):
        # A run stopped in the middle of an L2 session: its markers are in
        # its serial log only (l1.sh copies them to marks.txt afterwards).
        have = set(labels)
        for p in sorted(glob.glob(os.path.join(raw, "l2-*.log")), key=os.path.getmtime):
            with open(p, errors="replace") as f:
                extra = [l[8:].strip() for l in f if l.startswith("L2-MARK ")]
            if extra and not any(e in have for e in extra):
                labels += extra
    if len(labels) != len(marks):
        n = min(len(labels), len(marks))
        print("analyze: warning: %d labels but %d markers; using the first %d "
              "(later cells are dropped if misaligned)" % (len(labels), len(marks), n),
              file=sys.stderr)
        labels, marks = labels[:n], marks[:n]
    clock = l1_clock_ratio(labels, marks)
    iv = intervals(labels, marks)
    # Per L1 vCPU, busiest first: instructions of each interval (by its
    # end marker), to see which CPU a cell saturates.
    begin, by_cpu = {}, {}
    for i, lab in enumerate(labels):
        if lab.endswith(" begin"):
            begin[lab[:-6]] = i
        elif lab.endswith(" end") and lab[:-4] in begin and i < len(cpus):
            b = begin.pop(lab[:-4])
            if len(cpus[i]) == len(cpus[b]) > 1:
                by_cpu[i] = sorted((y - x for x, y in zip(cpus[b], cpus[i])), reverse=True)
    fio = load_fio(raw)
    idle, idle_all, idle_iv = {}, {}, {}
    for k, (di, dt, seq) in iv.items():
        if k.startswith("idle ") and dt > 0:
            idle_iv.setdefault(re.sub(r"/i\d+$", "", k[5:]), []).append((seq, di, dt))
    for k, ivs in idle_iv.items():
        idle_all[k] = sum(di for _, di, _ in ivs) / sum(dt for _, _, dt in ivs)
        ivs[:] = quiet_intervals(ivs)
        idle[k] = sum(di for _, di, _ in ivs) / sum(dt for _, _, dt in ivs)
    cells = {}
    for k, (di, dt, seq) in iv.items():
        if not k.startswith("run "):
            continue
        rid = k[4:]
        m = re.match(r"([\w-]+)/(\w+)/(.+)/q(\d+)/r(\d+)/s(\d+)$", rid)
        if not m or rid not in fio:
            continue
        be, dev, wl, q, r, s = m.groups()
        cells.setdefault((be, dev, wl, int(q)), {})[(int(r), int(s))] = (di, dt, fio[rid]["ios"], fio[rid], seq)
    results = []
    for (be, dev, wl, q), runs in sorted(cells.items()):
        b = idle.get("%s/%s/q%d" % (be, dev, q), 0.0)
        runs4 = {k: v[:4] for k, v in runs.items()}
        cs = fit_cell(runs4, b)
        a, cfit = lstsq_a_c([(N, I - b * T) for (I, T, N, _) in runs4.values()])
        longest = max(s for _, s in runs)
        lr = [v for (r, s), v in runs.items() if s == longest]
        med = lambda xs: statistics.median(xs) if xs else None
        # The median: one repetition disturbed by the shared machine
        # (a stall of its short run) does not move it.
        mean = med(cs)
        res = {
            "backend": be, "device": dev, "workload": wl,
            "qd": None, "queues": q,
            "iops": med([v[3]["iops"] for v in lr]),
            "lat_p50_us": med([v[3]["p50"] for v in lr if v[3]["p50"] is not None]),
            "lat_p99_us": med([v[3]["p99"] for v in lr if v[3]["p99"] is not None]),
            "insn_per_io": mean,
            "insn_spread_pct": (max(cs) - min(cs)) / abs(mean) * 100 if cs and mean else None,
            "runs": len(runs),
            "insn_per_io_reps": cs,
            "insn_per_io_fit": cfit,
            "insn_per_fio_run": a,
            "idle_insn_per_s": b,
            "idle_insn_per_s_all": idle_all.get("%s/%s/q%d" % (be, dev, q)),
            "naive_insn_per_io": med([v[0] / v[2] for v in lr if v[2]]),
            "host_s_long": med([v[1] for v in lr]),
            "profile_seqs": sorted(v[4] for (r, s), v in runs.items() if s == longest),
            # The long runs' instructions per I/O and per second on each
            # L1 vCPU, busiest first (background included).
            "cpu_insn_per_io_long": _med_lists([[c / v[2] for c in by_cpu[v[4]]]
                                                for v in lr if v[4] in by_cpu and v[2]]),
            "cpu_insn_per_s_long": _med_lists([[c / v[1] for c in by_cpu[v[4]]]
                                               for v in lr if v[4] in by_cpu and v[1] > 0]),
            "_runs": runs,
            "_idle": idle_iv.get("%s/%s/q%d" % (be, dev, q), []),
        }
        m = re.search(r"qd(\d+)", wl)
        res["qd"] = int(m.group(1)) if m else None
        results.append(res)
    return results, idle, bb_total, vb_exit, prof, clock


def gate(results, base, max_slowdown):
    """Withhold the per-I/O figure of cells counting slowed down too much."""
    for r in results:
        key = (r["backend"], r["device"], r["workload"], r["queues"])
        u = base.get(key)
        r["iops_uncounted"] = u
        r["slowdown"] = u / r["iops"] if u and r["iops"] else None
        r["perturbed"] = bool(r["slowdown"] and r["slowdown"] > max_slowdown)
        if r["perturbed"]:
            r["insn_per_io_perturbed"] = r["insn_per_io"]
            r["insn_per_io"] = None
            r["insn_spread_pct"] = None


def baseline_iops(raw):
    """(backend, device, workload, queues) -> median IOPS of the long runs."""
    runs = {}
    for rid, m in load_fio(raw).items():
        g = re.match(r"([\w-]+)/(\w+)/(.+)/q(\d+)/r(\d+)/s(\d+)$", rid)
        if g:
            k = (g.group(1), g.group(2), g.group(3), int(g.group(4)))
            runs.setdefault(k, []).append((int(g.group(6)), m["iops"]))
    out = {}
    for k, v in runs.items():
        longest = max(s for s, _ in v)
        out[k] = statistics.median([i for s, i in v if s == longest])
    return out


def fmt(x, f="%.0f"):
    if x is None:
        return "-"
    return f.format(x) if "{" in f else f % x


def table(results, idle, bb_total, vb_exit):
    lines = []
    hdr = "%-13s %-6s %-14s %2s %9s %9s %9s %11s %7s %4s %8s" % (
        "backend", "device", "workload", "q", "IOPS", "p50 us", "p99 us",
        "insn/IO", "spread", "runs", "slowdown")
    lines.append(hdr)
    lines.append("-" * len(hdr))
    order = {b: i for i, b in enumerate(BACKENDS)}
    key = lambda r: (r["device"], r["queues"], r["workload"], order.get(r["backend"], 99))
    prev = None
    for r in sorted(results, key=key):
        grp = (r["device"], r["queues"], r["workload"])
        if prev and grp != prev:
            lines.append("")
        prev = grp
        lines.append("%-13s %-6s %-14s %2d %9s %9s %9s %11s %6s%% %4d %8s" % (
            r["backend"], r["device"], r["workload"], r["queues"], fmt(r["iops"]),
            fmt(r["lat_p50_us"], "%.1f"), fmt(r["lat_p99_us"], "%.1f"),
            "perturbed" if r.get("perturbed") else fmt(r["insn_per_io"]),
            fmt(r["insn_spread_pct"], "%.1f"), r["runs"],
            fmt(r.get("slowdown"), "%.2fx")))
    lines.append("")
    if any(r.get("perturbed") for r in results):
        lines.append("perturbed: counted IOPS more than the allowed factor below the "
                     "same cell without plugins; no insn/IO published for it")
    lines.append("idle background (instructions per second of the guest clock, guests up):")
    for k in sorted(idle):
        lines.append("  %-28s %.3g" % (k, idle[k]))
    if bb_total is not None and vb_exit is not None:
        lines.append("whole run: bb.c %d, vbcount %d instructions (%s)" % (
            bb_total, vb_exit, "equal" if bb_total == vb_exit else
            "differ by %.2g%%" % (abs(bb_total - vb_exit) / max(bb_total, 1) * 100)))
    return "\n".join(lines)


def ratios(results):
    """vhost-blk against the others, per (device, workload, queues)."""
    by = {}
    for r in results:
        by.setdefault((r["device"], r["workload"], r["queues"]), {})[r["backend"]] = r
    out = []
    for k in sorted(by):
        d = by[k]
        v = d.get("vhost-blk")
        if not v:
            continue
        row = {"device": k[0], "workload": k[1], "queues": k[2]}
        for other in ("iothread", "aio-native", "vhost-user", "native"):
            o = d.get(other)
            # A non-positive estimate means the background swamped the
            # per-I/O part: no ratio from it.
            if o and (o["insn_per_io"] or 0) > 0 and (v["insn_per_io"] or 0) > 0:
                row["insn_vs_" + other] = v["insn_per_io"] / o["insn_per_io"]
            if o and o["iops"] and v["iops"]:
                row["iops_vs_" + other] = v["iops"] / o["iops"]
        out.append(row)
    return out


# Issue 10's targets (Documentation/performance.rst, "Targets"):
# (name, workloads, what is compared, other back end, bound, sense).
TARGETS = [
    ("P1", ("randread-qd1", "randread-qd32"), "insn", "iothread", 0.6, "<="),
    ("P1", ("randread-qd1", "randread-qd32"), "insn", "vhost-user", 0.8, "<="),
    ("P2", ("randread-qd32", "randwrite-qd32"), "iops", "iothread", 1.5, ">="),
    ("P2", ("randread-qd1", "randwrite-qd1"), "iops", "iothread", 1.0, ">="),
]


def targets(results):
    """Each target per (device, queues, workload): the median ratio, the
    range over the repetitions' estimates (insn) and met or not."""
    by = {}
    for r in results:
        by[(r["device"], r["queues"], r["workload"], r["backend"])] = r
    out = []
    for name, wls, what, other, bound, sense in TARGETS:
        for (dev, q, wl, be), v in sorted(by.items()):
            o = by.get((dev, q, wl, other))
            if be != "vhost-blk" or wl not in wls or not o:
                continue
            row = {"target": name, "device": dev, "queues": q, "workload": wl,
                   "metric": what, "vs": other, "bound": bound, "sense": sense,
                   "ratio": None, "low": None, "high": None, "met": None}
            if what == "insn":
                a, b = v["insn_per_io"] or 0, o["insn_per_io"] or 0
                if a > 0 and b > 0:
                    row["ratio"] = a / b
                    va = [x for x in v["insn_per_io_reps"] if x > 0]
                    vb = [x for x in o["insn_per_io_reps"] if x > 0]
                    if va and vb:
                        row["low"], row["high"] = min(va) / max(vb), max(va) / min(vb)
            elif v["iops"] and o["iops"]:
                row["ratio"] = v["iops"] / o["iops"]
            if row["ratio"] is not None:
                row["met"] = row["ratio"] <= bound if sense == "<=" else row["ratio"] >= bound
            out.append(row)
    return out


def target_table(rows):
    lines = ["targets (vhost-blk / other; insn: range over the repetitions' estimates):"]
    for t in rows:
        rng = ""
        if t["low"] is not None:
            rng = " [%.2f..%.2f]" % (t["low"], t["high"])
        verdict = {True: "met", False: "missed", None: "no figure"}[t["met"]]
        lines.append("  %s %-6s q%d %-14s %-4s vs %-10s %s %.1fx: %s%s  %s" % (
            t["target"], t["device"], t["queues"], t["workload"], t["metric"], t["vs"],
            t["sense"], t["bound"], fmt(t["ratio"], "%.2fx"), rng, verdict))
    return "\n".join(lines)


def ratio_table(rows):
    lines = ["vhost-blk-pci relative to the others (insn/IO ratio; IOPS ratio):",
             "%-6s %-14s %2s %17s %17s %17s" % ("device", "workload", "q",
                                               "vs iothread", "vs vhost-user", "vs aio-native")]
    for r in rows:
        cols = []
        for o in ("iothread", "vhost-user", "aio-native"):
            cols.append("%7s ; %7s" % (fmt(r.get("insn_vs_" + o), "%.2fx"),
                                       fmt(r.get("iops_vs_" + o), "%.2fx")))
        lines.append("%-6s %-14s %2d %17s %17s %17s" % (r["device"], r["workload"],
                                                       r["queues"], *cols))
    return "\n".join(lines)


def rst_table(head, rows):
    """A reStructuredText simple table."""
    w = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
    rule = "  ".join("=" * n for n in w)
    fmt_row = lambda r: "  ".join(str(c).ljust(n) for c, n in zip(r, w)).rstrip()
    return "\n".join([rule, fmt_row(head), rule] + [fmt_row(r) for r in rows] + [rule])


def rst_tables(results, rat):
    """table.rst: the cells and the ratios, for Documentation/performance.rst."""
    order = {b: i for i, b in enumerate(BACKENDS)}
    key = lambda r: (r["device"], r["queues"], r["workload"], order.get(r["backend"], 99))
    rows = []
    for r in sorted(results, key=key):
        ipi = "perturbed" if r.get("perturbed") else fmt(r["insn_per_io"], "{:,.0f}")
        rows.append([r["device"], r["queues"], r["workload"], r["backend"],
                     fmt(r["iops"], "{:,.0f}"), fmt(r["lat_p50_us"], "{:,.0f}"),
                     fmt(r["lat_p99_us"], "{:,.0f}"), ipi,
                     fmt(r["insn_spread_pct"], "{:.0f} %")])
    out = [rst_table(["device", "q", "workload", "back end", "IOPS", "p50 us",
                      "p99 us", "insn/IO", "spread"], rows), ""]
    rows = []
    for r in rat:
        row = [r["device"], r["queues"], r["workload"]]
        for o in ("iothread", "vhost-user", "aio-native"):
            row.append("%s / %s" % (fmt(r.get("insn_vs_" + o), "{:.2f}x"),
                                    fmt(r.get("iops_vs_" + o), "{:.2f}x")))
        rows.append(row)
    out.append(rst_table(["device", "q", "workload", "vs iothread", "vs vhost-user",
                          "vs aio-native"], rows))
    return "\n".join(out)


def write_plots(results, out):
    """One gnuplot script per (device, queues): insn/IO and IOPS per workload."""
    groups = {}
    for r in results:
        groups.setdefault((r["device"], r["queues"]), []).append(r)
    for (dev, q), rs in sorted(groups.items()):
        wls = sorted({r["workload"] for r in rs})
        bes = [b for b in BACKENDS if any(r["backend"] == b for r in rs)]
        idx = {(r["workload"], r["backend"]): r for r in rs}
        for metric, ylabel, fname in (("insn_per_io", "L1 instructions per I/O", "insn"),
                                      ("iops", "IOPS (fio, guest clock)", "iops")):
            base = "%s-%s-q%d" % (fname, dev, q)
            if all((r.get(metric) or 0) <= 0 for r in rs):
                continue    # every cell perturbed or negative: nothing to plot
            with open(os.path.join(out, base + ".dat"), "w") as f:
                f.write("workload " + " ".join(bes) + "\n")
                for w in wls:
                    vals = []
                    for b in bes:
                        v = idx.get((w, b), {}).get(metric)
                        vals.append("%g" % v if v and v > 0 else "NaN")
                    f.write(w + " " + " ".join(vals) + "\n")
            with open(os.path.join(out, base + ".gp"), "w") as f:
                f.write('set terminal svg size 760,380 font "sans,11" noenhanced\n')
                f.write('set output "%s.svg"\n' % base)
                f.write('set title "%s, %s, %d queue(s)"\n' % (ylabel, dev, q))
                f.write("set style data histograms\nset style histogram clustered gap 1\n")
                f.write("set style fill solid 0.8 border -1\nset boxwidth 0.9\n")
                f.write("set key top left\nset yrange [0:*]\nset grid ytics\n")
                f.write('set ylabel "%s"\n' % ylabel)
                f.write("set format y '%.0s%c'\n")
                cols = ", ".join('"%s.dat" using %d:xtic(1) title columnheader(%d)' %
                                 (base, i + 2, i + 2) for i in range(len(bes)))
                f.write("plot " + cols + "\n")


def selftest():
    """The per-I/O estimate recovers a known cost from synthetic runs."""
    a, b, c = 7.0e7, 3.0e7, 52000.0
    runs = {}
    for r in (1, 2, 3):
        for s in (3, 9):
            T = s + 0.4 + 0.01 * r
            N = int(800 * s * (1 + 0.02 * r))
            runs[(r, s)] = (a + b * T + c * N, T, N, None)
    cs = fit_cell(runs, b)
    assert len(cs) == 3 and all(abs(x - c) < 1 for x in cs), cs
    af, cf = lstsq_a_c([(N, I - b * T) for (I, T, N, _) in runs.values()])
    assert abs(cf - c) < 1 and abs(af - a) < 1e3, (af, cf)
    # A wrong background rate shows up as a biased c, not as a crash.
    assert fit_cell(runs, b * 1.1)[0] < c
    # The gate: 3x slower than uncounted is withheld, 1.2x is published.
    cells = [{"backend": "vhost-blk", "device": "brd", "workload": w, "queues": 1,
              "iops": 100.0, "insn_per_io": c, "insn_spread_pct": 1.0}
             for w in ("slow", "fine")]
    gate(cells, {("vhost-blk", "brd", "slow", 1): 300.0,
                 ("vhost-blk", "brd", "fine", 1): 120.0}, 1.5)
    assert cells[0]["perturbed"] and cells[0]["insn_per_io"] is None, cells[0]
    assert cells[0]["insn_per_io_perturbed"] == c
    assert not cells[1]["perturbed"] and cells[1]["insn_per_io"] == c, cells[1]
    assert abs(cells[1]["slowdown"] - 1.2) < 1e-9
    # Intervals take the guest's time when both labels carry it, else the
    # host's (marks: (host ns, instructions)).
    labels = ["idle x begin @10.00", "idle x end @12.50", "run y begin", "run y end"]
    marks = [(0, 100), (9 * 10**9, 400), (10 * 10**9, 500), (13 * 10**9, 900)]
    iv = intervals(labels, marks)
    assert iv["idle x"] == (300, 2.5, 1) and iv["run y"] == (400, 3.0, 3), iv
    assert labels[0] == "idle x begin", labels
    # The targets: P1 against the iothread and vhost-user, met or not,
    # with the range of the repetitions' ratios.
    cell = lambda be, wl, ipi, reps, iops: {
        "backend": be, "device": "brd", "workload": wl, "queues": 1,
        "insn_per_io": ipi, "insn_per_io_reps": reps, "iops": iops}
    tg = targets([cell("vhost-blk", "randread-qd1", 40000.0, [38000.0, 40000.0, 44000.0], 500.0),
                  cell("iothread", "randread-qd1", 80000.0, [76000.0, 80000.0], 100.0),
                  cell("vhost-user", "randread-qd1", 45000.0, [45000.0], 400.0),
                  cell("vhost-blk", "seqread-128k", 1.0, [1.0], 1.0),
                  cell("vhost-user", "seqread-128k", 9.0, [9.0], 1.0)])
    got = {(t["target"], t["vs"], t["metric"]): t for t in tg}
    assert len(tg) == 3, tg
    p1i = got[("P1", "iothread", "insn")]
    assert p1i["met"] and p1i["ratio"] == 0.5 and p1i["low"] == 0.475, p1i
    assert abs(p1i["high"] - 44000.0 / 76000.0) < 1e-12, p1i
    p1u = got[("P1", "vhost-user", "insn")]
    assert p1u["met"] is False and abs(p1u["ratio"] - 40000.0 / 45000.0) < 1e-12, p1u
    assert got[("P2", "iothread", "iops")]["met"] and got[("P2", "iothread", "iops")]["ratio"] == 5.0
    assert "missed" in target_table(tg) and "met" in target_table(tg)
    # L1's clock against the host's, from the markers L1 labelled.
    labs = ["start @100.0", "idle x begin @5.0", "sync a @110.0", "stop @130.0"]
    assert l1_clock_ratio(labs, [(0, 0), (1, 0), (10 * 10**9, 0), (30 * 10**9, 0)]) == 1.0
    assert l1_clock_ratio(labs, [(0, 0), (1, 0), (10**9, 0), (3 * 10**9, 0)]) == 10.0
    assert l1_clock_ratio(labs[:2], [(0, 0), (1, 0)]) is None
    # The idle rate leaves out an interval far above the others (the
    # L2 guest's memory still being zeroed after its boot).
    q = quiet_intervals([(1, 24e6, 2.4), (3, 5.0e6, 2.1), (5, 4.8e6, 2.1)])
    assert [x[0] for x in q] == [3, 5], q
    assert len(quiet_intervals([(1, 5.0e6, 2.0), (3, 5.5e6, 2.0)])) == 2
    print("analyze: selftest ok")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw")
    ap.add_argument("--out")
    ap.add_argument("--profile", help="vhost_blk.ko (for the report only)")
    ap.add_argument("--baseline", help="raw output of the same matrix without plugins")
    ap.add_argument("--max-slowdown", type=float, default=1.5)
    ap.add_argument("--selftest", action="store_true")
    args = ap.parse_args()
    if args.selftest:
        selftest()
        return 0
    results, idle, bb_total, vb_exit, prof, clock = analyze(args.raw)
    if args.baseline:
        gate(results, baseline_iops(args.baseline), args.max_slowdown)
    os.makedirs(args.out, exist_ok=True)
    # I/Os of the long runs, for the profile's per-I/O figures.
    fio = load_fio(args.raw)
    for r in results:
        longest = None
        n = 0
        for k, v in fio.items():
            m = re.match(r"([\w-]+)/(\w+)/(.+)/q(\d+)/r(\d+)/s(\d+)$", k)
            if m and (m.group(1), m.group(2), m.group(3), int(m.group(4))) == (
                    r["backend"], r["device"], r["workload"], r["queues"]):
                s = int(m.group(6))
                if longest is None or s > longest:
                    longest, n = s, 0
                if s == longest:
                    n += v["ios"]
        r["_long_ios"] = n
    rat = ratios(results)
    tg = targets(results)
    txt = (table(results, idle, bb_total, vb_exit) + "\n\n" + ratio_table(rat) +
           "\n\n" + target_table(tg))
    if clock is not None:
        txt += "\n\nL1 clock: %.3f s per host second%s" % (clock, "" if abs(clock - 1) < 0.2 else
            " -- WRONG: L1's TSC frequency was miscalibrated; time-based runs and "
            "the idle rates are off (scripts/vm-run.sh, VHOST_BLK_TSC_KHZ)")
    print(txt)
    with open(os.path.join(args.out, "table.txt"), "w") as f:
        f.write(txt + "\n")
    with open(os.path.join(args.out, "table.rst"), "w") as f:
        f.write(rst_tables(results, rat) + "\n")
    if args.profile:
        p = profile(results, prof, args.raw)
        b = breakdown(results, prof, args.raw)
        with open(os.path.join(args.out, "profile.txt"), "w") as f:
            f.write((b + "\n\n" if b else "") + p + "\n")
        if b:
            print("\n" + b)
        print("\nprofile (top symbols per I/O): %s" % os.path.join(args.out, "profile.txt"))
    clean = [{k: v for k, v in r.items() if not k.startswith("_") and k != "profile_seqs"}
             for r in results]
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(clean, f, indent=1)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump({"ratios": rat, "targets": tg, "l1_clock_per_host_s": clock,
                   "idle_insn_per_s": idle,
                   "whole_run_insns": {"bb": bb_total, "vbcount": vb_exit},
                   "backends": BACKEND_DESC}, f, indent=1)
    write_plots(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
