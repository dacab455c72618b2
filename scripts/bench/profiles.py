#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Where the instructions of a make bench cell go (analyze.py --profile).

vbcount's profile=on dumps, at each marker, the translated blocks run
since the previous one (guest-virtual address, host address of the code,
instructions, executions).  This module maps them to names: L1 kernel
and module symbols (/proc/kallsyms), the VMM's and daemon's functions
(/proc/PID/maps and nm), the L2 guest's kernel (told apart from L1's by
the virtual-to-host offset of L1's kernel text) and its user space; then

  profile()    the top symbols per I/O of every profiled cell;
  breakdown()  per cell, insn/IO split into CATEGORIES with analyze.py's
               estimator (the rows add up to insn_per_io), the EVENTS
               per I/O, and each L1 vCPU's instructions per I/O and per
               second (breakdown_data() returns the figures).
"""
import bisect
import glob
import os
import re


def load_kallsyms(path):
    syms = []
    with open(path, errors="replace") as f:
        for line in f:
            p = line.split()
            if len(p) < 3 or p[1] not in "tTwW":
                continue
            addr = int(p[0], 16)
            if addr == 0:
                continue
            name = p[2] + (" " + p[3] if len(p) > 3 else "")
            syms.append((addr, name))
    syms.sort()
    return syms


def load_maps(raw, session):
    """Executable file mappings of the L2 VMM / daemon of a session."""
    maps = []
    for p in glob.glob(os.path.join(raw, "maps-%s-*" % session)):
        with open(p, errors="replace") as f:
            lines = f.read().splitlines()
        if not any("qemu" in l for l in lines):
            continue
        for l in lines:
            parts = l.split()
            if len(parts) < 6 or "x" not in parts[1] or not parts[5].startswith("/"):
                continue
            a, b = (int(x, 16) for x in parts[0].split("-"))
            maps.append((a, b, int(parts[2], 16), parts[5]))
    return maps


_usyms = {}


def usym(path, off):
    """Symbol of file offset OFF in ELF PATH (text offset == vaddr here)."""
    import subprocess
    if path not in _usyms:
        syms = []
        for extra in ([], ["-D"]):
            try:
                txt = subprocess.run(["nm", "--defined-only"] + extra + [path],
                                     capture_output=True, text=True).stdout
            except OSError:
                txt = ""
            for line in txt.splitlines():
                p = line.split()
                if len(p) == 3 and p[1] in "tTwWiI":
                    syms.append((int(p[0], 16), p[2]))
        syms = sorted(set(syms))
        _usyms[path] = ([a for a, _ in syms], [n for _, n in syms])
    addrs, names = _usyms[path]
    i = bisect.bisect_right(addrs, off) - 1
    base = os.path.basename(path)
    return "%s:%s" % (base, names[i] if i >= 0 else "?")


def kernel_map(raw, prof):
    """(syms, addrs, stext, etext, l1off) for _symname, None without data."""
    ks = os.path.join(raw, "kallsyms")
    if not os.path.exists(ks) or not prof:
        return None
    syms = load_kallsyms(ks)
    addrs = [a for a, _ in syms]
    stext = next((a for a, n in syms if n == "_stext"), None)
    etext = next((a for a, n in syms if n == "_etext"), None)
    # The L1 kernel's text is one linear mapping: the most common
    # vaddr - haddr offset among blocks in [_stext, _etext) is L1's; a block
    # there with another offset belongs to the L2 guest's kernel.
    offs = {}
    for blocks in prof.values():
        for va, ha, n, _ in blocks:
            if stext and etext and stext <= va < etext:
                offs[va - ha] = offs.get(va - ha, 0) + n
    l1off = max(offs, key=offs.get) if offs else None
    return syms, addrs, stext, etext, l1off


def _symname(va, ha, umaps, syms, addrs, stext, etext, l1off):
    """The name of the block at VA (host address HA) in profile()'s terms."""
    if va < 0x800000000000:
        for start, end, off, path in umaps:
            if start <= va < end:
                return usym(path, va - start + off)
    if va < 0x1000000:
        return "[user: L2 fio (static)]"
    if va < 0x800000000000:
        return "[user: L1, other]"
    if stext and etext and stext <= va < etext and va - ha != l1off:
        return "[L2 guest kernel]"
    i = bisect.bisect_right(addrs, va) - 1
    if i < 0:
        return "[kernel ?]"
    if va >= 0xffffffffc0000000 or (stext and etext and stext <= va < etext):
        return syms[i][1]
    return "[L2 guest kernel]"


def profile(results, prof, raw, top=25):
    """Per-symbol instructions per I/O for each profiled cell."""
    km = kernel_map(raw, prof)
    if km is None:
        return "no profile data (run with --profile)"
    umaps = []

    def sym(va, ha):
        return _symname(va, ha, umaps, *km)

    out = []
    for r in results:
        seqs = r.get("profile_seqs") or []
        if not any(s in prof for s in seqs):
            continue
        umaps[:] = load_maps(raw, "%s-%s-q%d" % (r["backend"], r["device"], r["queues"]))
        tot = {}
        for s in seqs:
            for va, ha, n, _ in prof.get(s, []):
                k = sym(va, ha)
                tot[k] = tot.get(k, 0) + n
        # Per I/O: divide by the I/Os of the profiled (long) runs.
        ios = r["_long_ios"] or 1
        allin = sum(tot.values())
        out.append("%s %s %s q%d: %.0f instructions per I/O in the long runs (incl. background)" % (
            r["backend"], r["device"], r["workload"], r["queues"], allin / ios))
        for k, n in sorted(tot.items(), key=lambda kv: -kv[1])[:top]:
            out.append("  %10.0f  %5.1f%%  %s" % (n / ios, n / allin * 100, k))
        out.append("")
    return "\n".join(out)


# Where an I/O's instructions go, by the symbol each block maps to
# (profile()'s names).  The L1 kernel's split into scheduler/idle/time
# and the rest is by name, a heuristic.
CATEGORIES = [
    "L2 guest kernel", "L2 fio (user)", "L2 fio vDSO, other user",
    "L1 VMM (QEMU, daemon, libs)", "L1 KVM", "L1 vhost core + vhost_blk",
    "L1 block driver", "L1 sched, idle, time", "L1 bio, pinning, copies",
    "L1 syscalls, files, poll", "L1 interrupts, entry", "L1 kernel, other",
    "unprofiled",
]
_SCHED = re.compile(r"sched|switch|idle|tick|hrtimer|timer|clock|ttwu|wake|"
                    r"enqueue|dequeue|load_avg|psi_|rcu|update_curr|pick_next|"
                    r"nohz|vtime|account|set_next_entity|put_prev|select_task|"
                    r"finish_task|prepare_task|balance|cpuacct|cgroup_rstat|"
                    r"ktime|timekeeping")
_BIO = re.compile(r"bio|blk_|blkdev|submit_|gup|get_user_pages|pin_user|unpin|"
                  r"iov_iter|iter_|copy_|copyin|copyout|check_object|check_heap|"
                  r"check_stack|virt_addr_valid|mempool|folio|page")
_SYSCALL = re.compile(r"sys|io_uring|io_|poll|eventfd|fget|fput|fdget|vfs_|file|"
                      r"aio|security_|apparmor|aa_|rw_verify|fsnotify|futex")
_IRQ = re.compile(r"irq|apic|smp_call|ipi|entry|exit_to|sysret|x2apic|"
                  r"flush_smp|nmi|native_|interrupt")


def category(name):
    if name == "[L2 guest kernel]":
        return "L2 guest kernel"
    if name == "[user: L2 fio (static)]":
        return "L2 fio (user)"
    if name == "[user: L1, other]":
        return "L2 fio vDSO, other user"
    if not name.startswith("[") and ":" in name:
        return "L1 VMM (QEMU, daemon, libs)"
    if name.endswith("[kvm]") or name.endswith("[kvm_amd]"):
        return "L1 KVM"
    if re.search(r"\[(vhost|vhost_blk|vhost_iotlb)\]$", name):
        return "L1 vhost core + vhost_blk"
    if name.endswith("[brd]") or name.endswith("[null_blk]"):
        return "L1 block driver"
    for rx, cat in ((_SCHED, "L1 sched, idle, time"), (_BIO, "L1 bio, pinning, copies"),
                    (_SYSCALL, "L1 syscalls, files, poll"), (_IRQ, "L1 interrupts, entry")):
        if rx.search(name):
            return cat
    return "L1 kernel, other"


# Events per I/O: executions of the block at a function's entry (one per
# call) in L1's modules.
EVENTS = [
    ("L2 entries (svm_vcpu_run)", "svm_vcpu_run"),
    ("L2 halts (kvm_vcpu_halt)", "kvm_vcpu_halt"),
    ("kicks (ioeventfd_write)", "ioeventfd_write"),
    ("interrupts (irqfd_wakeup)", "irqfd_wakeup"),
    ("vhost-blk passes", "vhost_blk_handle_kick"),
]


def breakdown_data(results, prof, raw):
    """Per-category instructions per I/O of every profiled cell, with the
    estimator of insn_per_io applied to each category (the long run minus
    the short one, less the category's own idle rate times the time
    difference, over the I/O difference), from the repetition whose
    estimate is the cell's median (the lower of the two middle ones of an
    even count): with an odd count the categories add up to insn_per_io.
    "unprofiled" is what the plugin's dump left out (profile_pct).  Then
    the EVENTS per I/O, by the same estimator.  Returns [(result, median
    repetition {key: value}, {key: (min, max)})]."""
    km = kernel_map(raw, prof)
    if km is None:
        return []
    fns = dict((fn, e) for e, fn in EVENTS)
    entries = {a: fns[n.split()[0]] for a, n in km[0]
               if n.split()[0] in fns and a >= 0xffffffffc0000000}
    keys = CATEGORIES + [e for e, _ in EVENTS]
    cells = []
    for r in results:
        runs = r.get("_runs") or {}
        if not runs or not all(v[4] in prof for v in runs.values()):
            continue
        umaps = load_maps(raw, "%s-%s-q%d" % (r["backend"], r["device"], r["queues"]))
        memo = {}

        def cat_of(va, ha):
            k = (va, ha)
            if k not in memo:
                memo[k] = category(_symname(va, ha, umaps, *km))
            return memo[k]

        def split(seq, total):
            c = dict.fromkeys(CATEGORIES + [e for e, _ in EVENTS], 0)
            for va, ha, n, execs in prof.get(seq, []):
                c[cat_of(va, ha)] += n
                if va in entries:
                    c[entries[va]] += execs
            c["unprofiled"] += total - sum(c[k] for k in CATEGORIES)
            return c
        # The categories' idle rates, from the intervals the estimator
        # took its rate from (quiet_intervals()).
        idl = dict.fromkeys(keys, 0.0)
        idt = 0.0
        for seq, di, dt in r.get("_idle") or []:
            if seq in prof:
                for k, v in split(seq, di).items():
                    idl[k] += v
                idt += dt
        if idt <= 0:
            continue
        rate = {k: v / idt for k, v in idl.items()}
        reps = []
        for rep in sorted({k[0] for k in runs}):
            lens = sorted(s for rr, s in runs if rr == rep)
            if len(lens) < 2:
                continue
            I0, T0, N0, _, q0 = runs[(rep, lens[0])]
            I1, T1, N1, _, q1 = runs[(rep, lens[-1])]
            if N1 - N0 <= 0:
                continue
            a, b = split(q0, I0), split(q1, I1)
            reps.append({k: ((b[k] - a[k]) - rate[k] * (T1 - T0)) / (N1 - N0)
                         for k in keys})
        if not reps:
            continue
        reps.sort(key=lambda c: sum(c[k] for k in CATEGORIES))
        cells.append((r, reps[(len(reps) - 1) // 2],
                      {k: (min(c[k] for c in reps), max(c[k] for c in reps)) for k in reps[0]}))
    return cells


def breakdown(results, prof, raw):
    """breakdown_data() as text: a table per workload, back ends as columns."""
    cells = breakdown_data(results, prof, raw)
    if not cells:
        return None
    out = ["instructions per I/O by where they run (the median repetition; "
           "min..max over the repetitions):"]
    groups = {}
    for r, med, rng in cells:
        groups.setdefault((r["device"], r["workload"], r["queues"]), []).append((r, med, rng))
    for (dev, wl, q), cs in sorted(groups.items()):
        out.append("")
        out.append("%s %s q%d" % (dev, wl, q))
        out.append("  %-30s" % "" + "".join("%22s" % c[0]["backend"] for c in cs))
        for k in CATEGORIES + ["all"] + [e for e, _ in EVENTS]:
            row = "  %-30s" % k
            for _, med, rng in cs:
                if k == "all":
                    row += "%22s" % ("%.0f" % sum(med[c] for c in CATEGORIES))
                elif k in CATEGORIES:
                    row += "%22s" % ("%.0f (%.0f..%.0f)" % (med[k], rng[k][0], rng[k][1]))
                else:
                    row += "%22s" % ("%.2f (%.2f..%.2f)" % (med[k], rng[k][0], rng[k][1]))
            out.append(row)
        for k, f in (("cpu_insn_per_io_long", "%.0f"), ("cpu_insn_per_s_long", "%.1e")):
            row = "  %-30s" % ("L1 vCPUs, %s" % ("insn/IO" if "io" in k[8:] else "insn/s"))
            for r, _, _ in cs:
                row += "%22s" % " / ".join(f % x for x in (r.get(k) or []))
            out.append(row)
    return "\n".join(out)
