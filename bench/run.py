#!/usr/bin/python3
"""contactmap overhead benchmark: each workload untraced and under each tracer.

    sudo /usr/bin/python3 bench/run.py [--quick] [--reps N] [--out bench/RESULTS.md]

Runs every workload untraced and under every tracer, interleaved (the tracers
take turns within each repetition, in a rotated order), and prints a markdown
table of medians and spreads. Then measures what untraced processes pay while
a tracer runs, contactmap's start-up time, its CPU time and peak memory over
a 10-second attach, and the targets of issue 6. Standard library only; needs
root, `make -C bench` and a built ./contactmap. See bench/README.md.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
OUT = os.path.join(BENCH, ".output")
SYS_PYTHON = "/usr/bin/python3"      # Debian's python3-torch lives here, not in pyenv
LIBBPF_TOOLS = ("/usr/sbin", "/usr/bin", "/usr/share/bcc/tools")  # name varies by distro


def mono_ns():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def find_tool(names, dirs=LIBBPF_TOOLS):
    for n in names:
        p = shutil.which(n)
        if p:
            return p
        for d in dirs:
            c = os.path.join(d, n)
            if os.access(c, os.X_OK):
                return c
    return None


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def fd_kinds(pid):
    """Counts of a process's anon-inode fds by kind (bpf_link, [perf_event], ...)."""
    kinds = {}
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                t = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if t.startswith("anon_inode:"):
                k = t[len("anon_inode:"):]
                kinds[k] = kinds.get(k, 0) + 1
    except OSError:
        pass
    return kinds


def kill_tree(p, sig=signal.SIGKILL):
    try:
        os.kill(p.pid, sig)
    except ProcessLookupError:
        pass


# --------------------------------------------------------------------------
# Workloads. Each prints one JSON line with its own ns/op (bench/wl/*.c); the
# inference example prints its p50 latency, which is its figure of merit.

class Workload:
    def __init__(self, key, label, unit, n, quick_n, argv, syscalls=True, fewer_reps=0):
        self.key, self.label, self.unit = key, label, unit
        self.n, self.quick_n, self._argv = n, quick_n, argv
        self.syscalls = syscalls     # slow tracers (ptrace) get a smaller n
        self.fewer_reps = fewer_reps

    def reps(self, reps):
        return max(2, reps - self.fewer_reps) if reps > 2 else reps

    def argv(self, n, tmp):
        return self._argv(n, tmp)

    def parse(self, text):
        """ns per op (for infer: ns per inference, median of the run)."""
        for line in text.splitlines():
            if line.startswith('{"bench"'):
                return json.loads(line)["ns_per_op"], json.loads(line)
            m = re.match(r"infer: (\d+) batches, p50 ([\d.]+) ms", line)
            if m:
                return float(m.group(2)) * 1e6, {"batches": int(m.group(1))}
        return None, None


def wl_bin(name):
    return os.path.join(OUT, name)


WORKLOADS = [
    Workload("getpid", "getpid loop", "ns/syscall", 250000, 150000,
             lambda n, t: [wl_bin("getpid_loop"), str(n)]),
    Workload("pingpong", "pipe ping-pong (2 threads)", "ns/round trip", 15000, 10000,
             lambda n, t: [wl_bin("pingpong"), str(n)]),
    Workload("faults", "first-touch page faults", "ns/fault", 25000, 15000,
             lambda n, t: [wl_bin("faults"), str(n)], syscalls=False),
    Workload("fileio", "file I/O + compute", "ns/op", 480, 320,
             lambda n, t: [wl_bin("fileio_compute"), str(n), "/var/tmp"]),
    # python + torch start-up dominates a run (~2.5 s): fewer repetitions here, and
    # the 3% target gets its own longer A/B series (infer_ab)
    Workload("infer", "PyTorch inference (examples/infer.py)", "ms/inference", 40, 30,
             lambda n, t: [SYS_PYTHON, os.path.join(ROOT, "examples", "infer.py"),
                           "--iters", str(n), "--log", os.path.join(t, "infer.log")],
             fewer_reps=3),
]


# --------------------------------------------------------------------------
# Tracers. A tracer either wraps the command (the way a user runs it) or is
# started on a pid (or system-wide), waited for until ready, and stopped with
# SIGINT after the workload.

class Ready:
    """How to tell a started tracer is live: a line in its output, or fds."""
    def __init__(self, regex=None, stream="stdout", links=0, perf_fds=False):
        self.regex, self.stream, self.links, self.perf_fds = regex, stream, links, perf_fds


class Tracer:
    key = label = ""
    wrap = False           # runs the command itself
    system_wide = False    # traces everything; no pid to give
    slow = 1.0             # divide syscall-heavy workloads' n by this
    needs = ()

    def available(self):
        for b in self.needs:
            if not (os.path.isabs(b) and os.access(b, os.X_OK)) and not shutil.which(b):
                return f"{b} not found"
        return None

    def wrap_argv(self, cmd, d):
        raise NotImplementedError

    def attach(self, pid, d):
        """[(argv, Ready, name)] of processes to start for pid (None: system-wide)."""
        raise NotImplementedError

    def lost(self, d):
        """Events the tool says it lost, None when it does not report any."""
        return None


class Floor(Tracer):
    key, label = "floor", "floor (tp_btf counters)"
    system_wide = True

    def __init__(self, extra=(), key=None, label=None):
        self.extra = list(extra)
        self.needs = (wl_bin("floor"),)
        if key:
            self.key, self.label = key, label

    def attach(self, pid, d):
        return [([wl_bin("floor")] + self.extra, Ready(r"floor: attached"), "floor")]

    def counts(self, d):
        m = re.search(r'^\{"floor".*$', read(os.path.join(d, "floor.out")), re.M)
        return json.loads(m.group(0)) if m else None


class Contactmap(Tracer):
    key, label = "contactmap", "contactmap"
    wrap = True

    def __init__(self, exe, key=None, label=None):
        self.exe = exe
        self.needs = (exe,)
        if key:
            self.key, self.label = key, label

    def wrap_argv(self, cmd, d):
        return [self.exe, "-o", os.path.join(d, "cm.json"), "--"] + cmd

    def attach(self, pid, d):
        # -v only adds the "tracing N process(es)" line: the readiness mark
        return [([self.exe, "-v", "-p", str(pid), "-o", os.path.join(d, "cm.json")],
                 Ready(r"tracing \d+ process", "stderr"), "cm")]

    def report(self, d):
        try:
            with open(os.path.join(d, "cm.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def lost(self, d):
        r = self.report(d)
        if not r:
            return None
        return sum(v for v in r.get("lost", {}).values() if isinstance(v, int))


class Bpftrace(Tracer):
    key, label = "bpftrace", "bpftrace (equivalent script)"
    wrap = True
    needs = ("bpftrace",)

    def script(self, d, target):
        src = read(os.path.join(BENCH, "scripts", "contactmap.bt")).replace("TARGET", target)
        path = os.path.join(d, "cm.bt")
        with open(path, "w") as f:
            f.write(src)
        return path

    def wrap_argv(self, cmd, d):
        return ["bpftrace", "-o", os.path.join(d, "bt.out"), self.script(d, "cpid"),
                "-c", shlex.join(cmd)]

    def attach(self, pid, d):
        # stdout, not -o: bpftrace does not flush its -o file, and READY must show
        return [(["stdbuf", "-oL", "bpftrace", self.script(d, str(pid))],
                 Ready(r"^READY"), "bt")]

    def lost(self, d):
        text = "".join(read(os.path.join(d, f)) for f in ("bt.out", "bt.err", "wl.err"))
        return sum(int(x) for x in re.findall(r"Lost (\d+) events", text))


class LibbpfTool(Tracer):
    wrap = False

    def __init__(self, key, label, names, args, ready):
        self.key, self.label, self.args, self.ready = key, label, args, ready
        self.exe = find_tool(names)
        self.names = names

    def available(self):
        if not self.exe:
            return (f"{'/'.join(self.names)} not found (Debian: apt-get install libbpf-tools)")
        return None

    def attach(self, pid, d):
        # stdbuf: their header goes to a pipe, which stdio would hold back
        return [(["stdbuf", "-oL", self.exe] + self.args + ["-p", str(pid)],
                 self.ready, self.key)]

    def lost(self, d):
        # offcputime names stacks it could not get; the others drop nothing
        if self.key == "offcputime":
            return len(re.findall(r"\[Missed (?:User|Kernel) Stack\]",
                                  read(os.path.join(d, "offcputime.out"))))
        return None


class Combined(Tracer):
    """Several pid-mode tools at once, e.g. the three libbpf-tools that
    between them record what contactmap records."""
    wrap = False

    def __init__(self, key, label, parts):
        self.key, self.label, self.parts = key, label, parts

    def available(self):
        for p in self.parts:
            r = p.available()
            if r:
                return r
        return None

    def attach(self, pid, d):
        return [x for p in self.parts for x in p.attach(pid, d)]

    def lost(self, d):
        v = [p.lost(d) for p in self.parts]
        v = [x for x in v if x is not None]
        return sum(v) if v else None


class PerfTrace(Tracer):
    key, label = "perf-trace", "perf trace -s"
    wrap = True
    slow = 10.0
    needs = ("perf",)

    def available(self):
        r = super().available()
        if r:
            return r
        # Debian's /usr/bin/perf is a wrapper that needs the running kernel's perf
        p = subprocess.run(["perf", "trace", "-s", "--", "true"], capture_output=True,
                           text=True, timeout=60)
        if p.returncode != 0:
            return "perf trace does not run: " + (p.stderr.strip().splitlines() or ["?"])[-1]
        return None

    def wrap_argv(self, cmd, d):
        return ["perf", "trace", "-s", "-o", os.path.join(d, "perf.out"), "--"] + cmd

    def attach(self, pid, d):
        return [(["perf", "trace", "-s", "-o", os.path.join(d, "perf.out"), "-p", str(pid)],
                 Ready(perf_fds=True), "perf")]

    def lost(self, d):
        text = "".join(read(os.path.join(d, f)) for f in ("perf.out", "perf.err", "wl.err"))
        return sum(int(x) for x in re.findall(r"LOST (\d+) events", text))


class Strace(Tracer):
    key, label = "strace", "strace -c -f"
    wrap = True
    slow = 20.0
    needs = ("strace",)

    def wrap_argv(self, cmd, d):
        return ["strace", "-c", "-f", "-o", os.path.join(d, "strace.out"), "--"] + cmd

    def attach(self, pid, d):
        return [(["strace", "-c", "-f", "-o", os.path.join(d, "strace.out"), "-p", str(pid)],
                 Ready(r"Process \d+ attached", "stderr"), "strace")]

    def lost(self, d):
        return 0 if os.path.exists(os.path.join(d, "strace.out")) else None  # ptrace stops the tracee


def make_tracers(cm_exe):
    syscount = LibbpfTool("syscount", "libbpf-tools syscount -L", ["syscount", "syscount-bpfcc"],
                          ["-L"], Ready(r"Tracing syscalls"))
    runqlat = LibbpfTool("runqlat", "libbpf-tools runqlat", ["runqlat", "runqlat-bpfcc"],
                         [], Ready(r"Tracing run queue"))
    offcpu = LibbpfTool("offcputime", "libbpf-tools offcputime",
                        ["offcputime", "offcputime-bpfcc"], [], Ready(links=1))
    return [
        None,
        Floor(),
        # the least a tracer of exact syscall latency can cost: the hooks and a
        # clock read at each of enter and exit
        Floor(["-k"], "floor+clock", "floor + a clock read per event"),
        Contactmap(cm_exe),
        Bpftrace(),
        syscount,
        runqlat,
        offcpu,
        Combined("libbpf-tools", "syscount -L + runqlat + offcputime", [syscount, runqlat, offcpu]),
        PerfTrace(),
        Strace(),
    ]


def tkey(t):
    return t.key if t else "none"


def tlabel(t):
    return t.label if t else "untraced"


# --------------------------------------------------------------------------
# Running one measurement.

class RunError(Exception):
    pass


def wait_ready(procs, timeout=30.0):
    """procs: [(Popen, Ready, outpath, errpath)]. Returns seconds waited."""
    t0 = time.monotonic()
    stable = {}
    while True:
        pending = 0
        for p, r, out, err in procs:
            if p.poll() is not None:
                raise RunError(f"{p.args[0]} exited with {p.returncode} before it was ready: "
                               + (read(err).strip().splitlines() or [""])[-1][:200])
            if r.regex:
                path = {"stdout": out, "stderr": err}.get(r.stream, r.stream)
                if re.search(r.regex, read(path), re.M):
                    continue
            elif r.links:
                if fd_kinds(p.pid).get("bpf-link", 0) + fd_kinds(p.pid).get("bpf_link", 0) >= r.links:
                    continue
            elif r.perf_fds:
                # no message: ready once its perf events exist and stop changing
                n = fd_kinds(p.pid).get("[perf_event]", 0)
                last = stable.get(p.pid)
                if n > 0 and last and last[0] == n and time.monotonic() - last[1] > 0.3:
                    continue
                if not last or last[0] != n:
                    stable[p.pid] = (n, time.monotonic())
            pending += 1
        if not pending:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise RunError(f"tracer not ready after {timeout:.0f} s")
        time.sleep(0.005)


def stop(procs, timeout=60):
    for p, *_ in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout
    for p, *_ in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            kill_tree(p)
            p.wait()


def start_tracers(tr, pid, d):
    procs = []
    for argv, ready, name in tr.attach(pid, d):
        out, err = os.path.join(d, name + ".out"), os.path.join(d, name + ".err")
        p = subprocess.Popen(argv, stdout=open(out, "w"), stderr=open(err, "w"),
                             stdin=subprocess.DEVNULL, cwd=d)
        procs.append((p, ready, out, err))
    try:
        wait_ready(procs)
    except RunError:
        stop(procs, 5)
        raise
    return procs


def run_once(wl, tr, n, d, timeout):
    """One workload run under one tracer; returns a dict with value (ns/op)."""
    os.makedirs(d, exist_ok=True)
    cmd = wl.argv(n, d)
    wout, werr = os.path.join(d, "wl.out"), os.path.join(d, "wl.err")
    res = {"tracer": tkey(tr), "workload": wl.key, "n": n}
    t0 = time.monotonic()
    if tr is None or tr.wrap:
        argv = cmd if tr is None else tr.wrap_argv(cmd, d)
        p = subprocess.Popen(argv, stdout=open(wout, "w"), stderr=open(werr, "w"),
                             stdin=subprocess.DEVNULL, cwd=d)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_tree(p)
            p.wait()
            raise RunError(f"timed out after {timeout} s")
        if p.returncode != 0:
            raise RunError(f"exit status {p.returncode}: "
                           + (read(werr).strip().splitlines() or [""])[-1][:200])
    elif tr.system_wide:
        procs = start_tracers(tr, None, d)
        try:
            p = subprocess.run(cmd, stdout=open(wout, "w"), stderr=open(werr, "w"),
                               stdin=subprocess.DEVNULL, cwd=d, timeout=timeout)
        finally:
            stop(procs)
        if p.returncode != 0:
            raise RunError(f"workload exit status {p.returncode}")
    else:
        # gate: the workload's pid exists (for -p) but it runs only when told
        gate = subprocess.Popen([wl_bin("gate")] + cmd, stdin=subprocess.PIPE,
                                stdout=open(wout, "w"), stderr=open(werr, "w"), cwd=d)
        try:
            procs = start_tracers(tr, gate.pid, d)
        except RunError:
            gate.stdin.close()
            gate.wait()
            raise
        try:
            gate.stdin.write(b"g")
            gate.stdin.close()
            gate.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_tree(gate)
            gate.wait()
            raise RunError(f"timed out after {timeout} s")
        finally:
            stop(procs)
        if gate.returncode != 0:
            raise RunError(f"workload exit status {gate.returncode}")
    res["wall_s"] = time.monotonic() - t0
    value, line = wl.parse(read(wout))
    if value is None:
        raise RunError("no result line from the workload: " + read(werr)[-200:])
    res["value"] = value
    res["line"] = line
    if tr is not None:
        res["lost"] = tr.lost(d)
        if isinstance(tr, Contactmap):
            r = tr.report(d)
            if r and r.get("observer"):
                res["observer"] = {p["name"]: p for p in r["observer"].get("programs", [])}
        if isinstance(tr, Floor):
            res["floor"] = tr.counts(d)
    return res


def foreign_bpf_tracers():
    """Other processes holding BPF tracing programs (someone else's tests)."""
    try:
        p = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True,
                           timeout=10)
        progs = json.loads(p.stdout or "[]")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    owners = set()
    for pr in progs:
        if pr.get("type") in ("tracing", "raw_tracepoint", "tracepoint", "kprobe", "perf_event"):
            for o in pr.get("pids", []):
                owners.add((o.get("pid"), o.get("comm")))
    return sorted(owners)


def stats_enabled():
    return read("/proc/sys/kernel/bpf_stats_enabled").strip() == "1"


# --------------------------------------------------------------------------
# Statistics and tables.

def med(xs):
    return statistics.median(xs) if xs else None


def q(xs, f):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * f
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def fmt_val(v, wl):
    if v is None:
        return "–"
    if wl.key == "infer":
        return f"{v / 1e6:.2f}"
    if abs(v) >= 100000:
        return f"{v / 1000:.0f} k" if abs(v) < 1e7 else f"{v / 1e6:.1f} M"
    return f"{v:.0f}"


def fmt_added(v, wl):
    if v is None:
        return "–"
    s = fmt_val(abs(v), wl)
    return ("+" if v >= 0 else "−") + s


def fmt_ratio(x):
    return "–" if x is None else f"{x:.2f}×"


def pair_baselines(results):
    """Gives each traced run the mean of the untraced runs just before and
    after it in the same sequence (the A in A B A C A ...), as `baseline`."""
    seqs = {}
    for r in results:
        seqs.setdefault(r.get("seq"), []).append(r)
    for seq, rs in seqs.items():
        if seq is None:
            continue
        rs.sort(key=lambda r: r["pos"])
        for i, r in enumerate(rs):
            if r["tracer"] == "none":
                continue
            near = [x["value"] for x in (rs[i - 1] if i else None,
                                         rs[i + 1] if i + 1 < len(rs) else None)
                    if x and x["tracer"] == "none" and abs(x["pos"] - r["pos"]) == 1]
            if near:
                r["baseline"] = sum(near) / len(near)


def summarize(results):
    """{(wl, tracer): {median, min, max, q1, q3, n, added, ratio, lost[...]}}:
    added and ratio are medians of the runs' differences and ratios to their
    own adjacent untraced runs when the runs were paired, else of the medians."""
    pair_baselines(results)
    out = {}
    for r in results:
        s = out.setdefault((r["workload"], r["tracer"]),
                           {"values": [], "diffs": [], "ratios": [], "lost": [], "obs": []})
        s["values"].append(r["value"])
        s.setdefault("walls", []).append(r.get("wall_s"))
        if r.get("baseline"):
            s["diffs"].append(r["value"] - r["baseline"])
            s["ratios"].append(r["value"] / r["baseline"])
            s.setdefault("by_seq", {})[r.get("seq")] = r["value"] - r["baseline"]
        s["lost"].append(r.get("lost"))
        if r.get("observer"):
            s["obs"].append(r["observer"])
    for (wl, t), s in out.items():
        v = s["values"]
        s.update(median=med(v), min=min(v), max=max(v), q1=q(v, .25), q3=q(v, .75), n=len(v))
        base = out.get((wl, "none"), {}).get("values")
        if t == "none":
            s["added"], s["ratio"] = 0.0, 1.0
        elif s["diffs"]:
            s["added"], s["ratio"] = med(s["diffs"]), med(s["ratios"])
        elif base:
            s["added"], s["ratio"] = s["median"] - med(base), s["median"] / med(base)
        else:
            s["added"] = s["ratio"] = None
    return out


def lost_str(lost):
    vals = [x for x in lost if x is not None]
    if not vals:
        return "n/r"
    return str(sum(vals))


def main_table(summary, workloads, tracers, skipped):
    lines = ["| workload | tracer | median | spread (min–max) | added/op | added ns/event "
             "| × untraced | × contactmap | lost |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for wl in workloads:
        cm = summary.get((wl.key, "contactmap"), {}).get("median")
        first = True
        for t in tracers:
            s = summary.get((wl.key, tkey(t)))
            name = f"**{wl.label}** ({wl.unit})" if first else ""
            first = False
            if not s:
                why = skipped.get(tkey(t), "no successful run")
                lines.append(f"| {name} | {tlabel(t)} | – | – | – | – | – | – | {why} |")
                continue
            m = s["median"]
            added = s["added"] if t is not None else None
            per_ev = f"{added:+.0f}" if added is not None and wl.key == "getpid" else "–"
            lines.append("| {} | {} | {} | {}–{} | {} | {} | {} | {} | {} |".format(
                name, tlabel(t), fmt_val(m, wl), fmt_val(s["min"], wl), fmt_val(s["max"], wl),
                fmt_added(added, wl) if t is not None else "–", per_ev,
                fmt_ratio(s["ratio"]),
                fmt_ratio(m / cm) if cm else "–",
                lost_str(s["lost"]) if t is not None else "–"))
    return "\n".join(lines)


# --------------------------------------------------------------------------
# The extra measurements.

BYSTANDER_SETTLE_S = 0.5


def bystander(tracers, wl, n, reps, tmp, timeout, paired=True):
    """getpid loop, untraced, while each tracer traces another process (a
    `sleep`), in A B A C A ... sequences like the main table."""
    results = []
    traced = [t for t in tracers if t is not None]
    for rep in range(reps):
        k = rep % max(1, len(traced))
        order = traced[k:] + traced[:k]
        runs = [None]
        for t in order:
            runs += [t, None] if paired else [t]
        for pos, t in enumerate(runs):
            d = os.path.join(tmp, f"bystander-{rep}-{pos}-{tkey(t)}")
            os.makedirs(d, exist_ok=True)
            victim = subprocess.Popen(["sleep", "3600"], stdin=subprocess.DEVNULL)
            procs = []
            try:
                if t is not None:
                    procs = start_tracers(t, victim.pid, d)
                    # past its ready mark a tool may still be finishing its
                    # start (contactmap: its first 50 ms of BPF statistics):
                    # the steady state is what this table is about
                    time.sleep(BYSTANDER_SETTLE_S)
                p = subprocess.run(wl.argv(n, d), capture_output=True, text=True,
                                   timeout=timeout)
                v, _ = wl.parse(p.stdout)
                if v is not None:
                    results.append({"tracer": tkey(t), "workload": "bystander", "value": v,
                                    "lost": None, "seq": f"bystander-{rep}", "pos": pos})
            except (RunError, subprocess.TimeoutExpired) as e:
                log(f"  bystander {tkey(t)}: {e}")
            finally:
                stop(procs)
                kill_tree(victim)
                victim.wait()
    return results


def infer_ab(cm, pairs, iters, tmp):
    """The inference example alternately untraced and under contactmap
    (A B A B ... A), each contactmap run compared with its two neighbours."""
    wl = next(w for w in WORKLOADS if w.key == "infer")
    results = []
    runs = [None]
    for _ in range(pairs):
        runs += [cm, None]
    for pos, t in enumerate(runs):
        d = os.path.join(tmp, f"infer-ab-{pos}-{tkey(t)}")
        try:
            r = run_once(wl, t, iters, d, timeout=300)
            r.update(seq="infer-ab", pos=pos)
            results.append(r)
            log(f"  infer A/B {tkey(t):12}: {r['value'] / 1e6:.2f} ms")
        except RunError as e:
            log(f"  infer A/B {tkey(t)}: FAILED: {e}")
    return summarize(results)


def infer_attach_ab(cm, windows, secs, tmp, margin=0.5, warmup=4.0):
    """One long run of the inference example, contactmap attached (-p PID -d
    SECS) to every other window of SECS seconds: untraced, traced, untraced,
    ... untraced. Each inference is classed by the window its whole interval
    lies in (contactmap's own report gives the traced window: window.start_ns
    and end_ns, CLOCK_MONOTONIC like the example's --lat-out), skipping MARGIN
    seconds at each edge of the untraced windows (attaching and detaching
    patch kernel text). One process throughout: its heap, page cache and
    thread placement are the same on both sides, which separate runs are not.
    Returns per traced window its p50 against the mean p50 of the untraced
    windows on either side, and the pooled medians."""
    d = os.path.join(tmp, "infer-attach")
    os.makedirs(d, exist_ok=True)
    lat_path = os.path.join(d, "lat.txt")
    victim = subprocess.Popen([SYS_PYTHON, os.path.join(ROOT, "examples", "infer.py"),
                               "--iters", "10000000", "--log", os.path.join(d, "infer.log"),
                               "--lat-out", lat_path],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    edges = []	# (kind, start_ns, end_ns)
    try:
        time.sleep(warmup)	# interpreter start, torch import, first batches
        t = time.monotonic_ns()
        for w in range(windows):
            time.sleep(secs)
            out = os.path.join(d, f"cm-{w}.json")
            p = None
            try:
                p = subprocess.run([cm.exe, "-p", str(victim.pid), "-d", str(secs), "-o", out],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                   timeout=secs + 60)
                with open(out) as f:
                    win = json.load(f)["window"]
            except (OSError, ValueError, KeyError, subprocess.TimeoutExpired) as e:
                why = (p.stderr.strip().splitlines() or [""])[-1] if p else ""
                raise RunError(f"window {w}: no contactmap report ({e}) {why}".strip())
            edges.append(("none", t, win["start_ns"]))
            edges.append(("contactmap", win["start_ns"], win["end_ns"]))
            t = time.monotonic_ns()
        time.sleep(secs)
        edges.append(("none", t, time.monotonic_ns()))
    finally:
        kill_tree(victim)
        victim.wait()
    lats = []
    if not os.path.exists(lat_path):
        raise RunError(f"the example wrote no latencies ({lat_path})")
    with open(lat_path) as f:
        for line in f:
            a = line.split()
            if len(a) == 2:
                lats.append((int(a[0]), int(a[1])))
    m = int(margin * 1e9)
    per = []
    for kind, a, b in edges:
        if kind == "none":
            a, b = a + m, b - m
        per.append((kind, sorted(l for s0, l in lats if s0 >= a and s0 + l <= b)))
    pairs = []
    for i, (kind, xs) in enumerate(per):
        if kind != "contactmap" or not xs or not per[i - 1][1] or not per[i + 1][1]:
            continue
        base = (med(per[i - 1][1]) + med(per[i + 1][1])) / 2
        pairs.append(med(xs) / base)
    pooled = {k: med([l for kind, xs in per if kind == k for l in xs]) for k in ("none", "contactmap")}
    counts = {k: sum(len(xs) for kind, xs in per if kind == k) for k in ("none", "contactmap")}
    return {"ratios": pairs, "ratio": med(pairs) if pairs else None, "pooled_ns": pooled,
            "counts": counts, "windows": windows, "secs": secs}


def startup(others, reps, tmp):
    """Time from spawning a wrapping tracer to the command's first instruction
    (the workload notes CLOCK_MONOTONIC at main()); for pid-mode tools, time
    from spawn to their ready mark."""
    res = {}
    wl = [wl_bin("getpid_loop"), "1"]
    for rep in range(reps):
        for t in [None] + others:
            d = os.path.join(tmp, f"startup-{tkey(t)}-{rep}")
            os.makedirs(d, exist_ok=True)
            if t is None or t.wrap:
                argv = wl if t is None else t.wrap_argv(wl, d)
                t0 = mono_ns()
                p = subprocess.run(argv, capture_output=True, text=True, cwd=d, timeout=60)
                m = re.search(r'"main_ns":(\d+)', p.stdout)
                if p.returncode == 0 and m:
                    res.setdefault(tkey(t), []).append((int(m.group(1)) - t0) / 1e6)
            else:
                gate = subprocess.Popen([wl_bin("gate")] + wl, stdin=subprocess.PIPE,
                                        stdout=subprocess.DEVNULL, cwd=d)
                t0 = mono_ns()
                try:
                    procs = start_tracers(t, gate.pid, d)
                    res.setdefault(tkey(t), []).append((mono_ns() - t0) / 1e6)
                    stop(procs)
                except RunError as e:
                    log(f"  startup {tkey(t)}: {e}")
                gate.stdin.close()
                gate.wait()
    return res


def bpf_map_memlock(pid):
    """Bytes of kernel memory charged for the BPF maps a process holds (the
    `memlock:` line of each map fd's fdinfo; each map counted once)."""
    seen, total = set(), 0
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:bpf-map":
                continue
            info = read(f"/proc/{pid}/fdinfo/{fd}")
        except OSError:
            continue
        mid = re.search(r"map_id:\s+(\d+)", info)
        mem = re.search(r"memlock:\s+(\d+)", info)
        if mid and mem and mid.group(1) not in seen:
            seen.add(mid.group(1))
            total += int(mem.group(1))
    return total


def footprint(cm, secs, tmp):
    """contactmap -p on a running getpid loop for `secs` seconds: its CPU time
    (user+sys, from wait4), peak RSS, the BPF maps' memory, lost events."""
    d = os.path.join(tmp, "footprint")
    os.makedirs(d, exist_ok=True)
    wl = subprocess.Popen([wl_bin("getpid_loop"), "0", str(secs + 3)],
                          stdout=subprocess.PIPE, text=True)
    time.sleep(0.2)
    t0 = mono_ns()
    p = subprocess.Popen([cm.exe, "-p", str(wl.pid), "-d", str(secs), "-o",
                          os.path.join(d, "cm.json")],
                         stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "cm.err"), "w"))
    map_bytes = 0
    while True:
        pid_, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid_ == p.pid:
            break
        map_bytes = max(map_bytes, bpf_map_memlock(p.pid))
        time.sleep(0.5)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = (mono_ns() - t0) / 1e9
    out, _ = wl.communicate()
    m = re.search(r'"ns_per_op":([\d.]+)', out)
    rep = Contactmap(cm.exe).report(d) or {}
    return {
        "exit": p.returncode, "wall_s": wall,
        "cpu_s": ru.ru_utime + ru.ru_stime, "utime_s": ru.ru_utime, "stime_s": ru.ru_stime,
        "maxrss_kib": ru.ru_maxrss, "map_bytes": map_bytes,
        "lost": rep.get("lost"), "observer": rep.get("observer", {}),
        "syscalls": sum(s.get("count", 0) for pr in rep.get("processes", [])
                        for s in pr.get("syscalls", [])),
        "wl_ns_per_op": float(m.group(1)) if m else None,
    }


# --------------------------------------------------------------------------

def machine(cm_path=None):
    cpu = "?"
    for line in read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = 0
    m = re.search(r"MemTotal:\s+(\d+)", read("/proc/meminfo"))
    if m:
        mem = int(m.group(1)) // 1024
    virt = subprocess.run(["systemd-detect-virt"], capture_output=True, text=True).stdout.strip() \
        if shutil.which("systemd-detect-virt") else "?"

    def ver(argv):
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=20)
            return (p.stdout + p.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "not installed"

    dpkg = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "libbpf-tools"],
                          capture_output=True, text=True).stdout.strip() or "?"
    git = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                         capture_output=True, text=True).stdout.strip()
    if cm_path and os.path.exists(cm_path):
        built = datetime.datetime.fromtimestamp(os.path.getmtime(os.path.realpath(cm_path)))
        git += f" (tree at the run; binary {os.path.relpath(os.path.realpath(cm_path), ROOT)} " \
               f"built {built.astimezone().strftime('%Y-%m-%d %H:%M %Z')})"
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "kernel": platform.release(), "cpu": cpu, "cores": os.cpu_count(), "mem_mib": mem,
        "virt": virt, "clocksource": read(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource").strip(),
        "contactmap": git, "load_start": read("/proc/loadavg").split()[:3],
        "tools": {"bpftrace": ver(["bpftrace", "--version"]), "perf": ver(["perf", "--version"]),
                  "strace": ver(["strace", "-V"]), "libbpf-tools": dpkg},
    }


def ensure_tracefs():
    """bpftrace's, syscount's and perf's tracepoints need tracefs; contactmap
    does not. Returns the path we mounted, to unmount at the end."""
    if os.path.isdir("/sys/kernel/tracing/events") or os.path.isdir("/sys/kernel/debug/tracing/events"):
        return None
    r = subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"],
                       capture_output=True, text=True)
    if r.returncode == 0:
        log("note: mounted tracefs on /sys/kernel/tracing for the other tools "
            "(unmounted at the end)")
        return "/sys/kernel/tracing"
    log("warning: tracefs is not mounted and could not be: " + r.stderr.strip())
    return None


def sequence(wl, tracers, n0, rep, tmp, prefix, paired, log_prefix=""):
    """One repetition: the tracers in turn, in an order rotated by `rep`; with
    `paired`, an untraced run before the first and after every one of them
    (A B A C A ...), so each traced run has untraced neighbours in time."""
    results, failures = [], []
    traced = [t for t in tracers if t is not None]
    k = rep % max(1, len(traced))
    order = traced[k:] + traced[:k]
    if paired:
        runs = [None]
        for t in order:
            runs += [t, None]
    else:
        runs = [None] + order if rep % 2 == 0 else order + [None]
    for pos, t in enumerate(runs):
        n = n0
        if t is not None and wl.syscalls and t.slow > 1:
            n = max(1, int(n0 / t.slow))
        d = os.path.join(tmp, f"{prefix}{wl.key}-{rep}-{pos}-{tkey(t)}")
        # someone else's contactmap turns BPF run-time stats on for every program
        # on the machine (ours turns them on too, but only while it runs)
        disturbed = stats_enabled()
        try:
            r = run_once(wl, t, n, d, timeout=300)
            disturbed = disturbed or stats_enabled()
            r.update(rep=rep, seq=f"{prefix}{wl.key}-{rep}", pos=pos, disturbed=disturbed)
            results.append(r)
            log(f"  {log_prefix}{wl.key:8} {tkey(t):12} rep {rep}: {fmt_val(r['value'], wl)} "
                f"{wl.unit} ({r['wall_s']:.1f} s)")
        except RunError as e:
            failures.append(f"{wl.key}/{tkey(t)} rep {rep}: {e}")
            log(f"  {log_prefix}{wl.key:8} {tkey(t):12} rep {rep}: FAILED: {e}")
    return results, failures


def measure(workloads, active, reps, quick, tmp, prefix="", paired=True):
    """Every workload under every tracer, in `reps` interleaved sequences."""
    results, failures = [], []
    for wl in workloads:
        n0 = wl.quick_n if quick else wl.n
        for rep in range(wl.reps(reps)):
            r, f = sequence(wl, active, n0, rep, tmp, prefix, paired)
            results += r
            failures += f
    disturbed = sum(1 for r in results if r.get("disturbed"))
    return results, failures, disturbed


def check_tracers(tracers):
    skipped, active = {}, []
    for t in tracers:
        why = t.available() if t else None
        if why:
            skipped[tkey(t)] = "skipped: " + why
            log(f"skip {tkey(t)}: {why}")
        else:
            active.append(t)
    return skipped, active


def analysis(args, cm_exe, reps, tmp):
    """Where the per-syscall cost comes from: the floor program with one more
    ingredient at a time (BPF stats on, a clock read, a hash lookup by tid),
    against contactmap (and any --variant builds), on the getpid loop, traced
    and as a bystander."""
    gw = next(w for w in WORKLOADS if w.key == "getpid")
    tracers = [None,
               Floor(),
               Floor(["-s"], "floor+stats", "floor, BPF stats on"),
               Floor(["-k"], "floor+ktime", "floor + bpf_ktime_get_ns()"),
               Floor(["-H"], "floor+hash", "floor + hash lookup by tid (miss)"),
               Floor(["-T"], "floor+tstore", "floor + task-storage lookup (miss)"),
               Floor(["-k", "-H"], "floor+k+H", "floor + clock + hash"),
               Floor(["-k", "-H", "-s"], "floor+all", "floor + clock + hash, stats on"),
               Contactmap(cm_exe)]
    for v in args.variant or []:
        label, _, path = v.partition("=")
        tracers.append(Contactmap(os.path.abspath(path), "cm:" + label, "contactmap " + label))
    skipped, active = check_tracers(tracers)
    res, failures, disturbed = measure([gw], active, reps, args.quick, tmp, "an-", paired=True)
    # program run times for the floor variants that ran without stats: one
    # more run each with -s (stats change the end-to-end cost, not the body)
    for t in active:
        if isinstance(t, Floor) and "-s" not in t.extra:
            st_t = Floor(t.extra + ["-s"], t.key, t.label)
            try:
                r = run_once(gw, st_t, gw.quick_n, os.path.join(tmp, f"an-progs-{t.key}"), 300)
                r["tracer"] = t.key
                r["progs_only"] = True
                res.append(r)
            except RunError as e:
                log(f"  {t.key} -s: {e}")
    summ = summarize([r for r in res if not r.get("progs_only")])
    by = summarize(bystander(active, gw, gw.quick_n if args.quick else gw.n, reps, tmp, 300))
    st = startup([t for t in active if isinstance(t, Contactmap)], max(reps, 5), tmp)
    L = ["## Cost ladder (`run.py --analysis`): getpid loop, ns per syscall\n",
         "Traced: the loop is what the tool traces (the floor variants trace every thread). "
         "Bystander: the loop is untraced while the tool traces a `sleep`. Program ns: "
         "run_time_ns / run_cnt of the tool's programs with BPF stats on (for the floor "
         "variants from one extra run with -s; for contactmap its own `observer`: by default "
         "(`--observer-cost sampled`) the runs of the first 100 ms and 50 ms of every second, "
         "with stats on; empty with `--observer-cost off` unless someone else had stats "
         "on). Added: medians of the differences to the adjacent untraced runs.\n",
         "| tool | traced ns/syscall | added | bystander ns/syscall | added | "
         "sys_enter prog ns | sys_exit prog ns | sched_switch prog ns | start-up ms |",
         "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in active:
        s = summ.get(("getpid", tkey(t)), {})
        b = by.get(("bystander", tkey(t)), {})
        progs = {}
        for r in res:
            if r["tracer"] != tkey(t):
                continue
            if r.get("floor") and r["floor"].get("programs"):
                for n, v in r["floor"]["programs"].items():
                    if v["run_cnt"]:
                        progs.setdefault(n.replace("floor_", ""), []).append(
                            v["run_time_ns"] / v["run_cnt"])
            for n, v in (r.get("observer") or {}).items():
                if v.get("run_cnt"):
                    progs.setdefault(n.replace("_btf", "").replace("_raw", ""), []).append(
                        v["run_time_ns"] / v["run_cnt"])
        pg = lambda n: f"{med(progs[n]):.0f}" if progs.get(n) else "–"
        m, bm = s.get("median"), b.get("median")
        a, ba = s.get("added"), b.get("added")
        sm = st.get(tkey(t)) if t else st.get("none")
        L.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            tlabel(t), f"{m:.0f}" if m else "–",
            f"{a:+.0f}" if a is not None and t else "–",
            f"{bm:.0f}" if bm else "–",
            f"{ba:+.0f}" if ba is not None and t else "–",
            pg("sys_enter"), pg("sys_exit"), pg("sched_switch"),
            f"{med(sm):.0f}" if sm else "–"))
    L.append(f"\nRuns during which someone else had BPF stats on: {disturbed} of "
             f"{sum(1 for r in res if not r.get('progs_only'))}.")
    for k, why in skipped.items():
        L.append(f"\n- {k}: {why}")
    for f in failures:
        L.append(f"\n- failed: {f}")
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 repetitions, smaller runs (~3 min)")
    ap.add_argument("--reps", type=int, help="repetitions (default 5, --quick 2)")
    ap.add_argument("--out", help="write the results as markdown to this file (e.g. bench/RESULTS.md)")
    ap.add_argument("--json", help="write every raw measurement to this file")
    ap.add_argument("--contactmap", default=os.path.join(ROOT, "contactmap"),
                    help="contactmap binary (default: ./contactmap; copied first so a rebuild "
                         "during the run cannot change it)")
    ap.add_argument("--workloads", help="comma-separated subset of: "
                    + ",".join(w.key for w in WORKLOADS))
    ap.add_argument("--tracers", help="comma-separated subset of tracer keys (none is always run)")
    ap.add_argument("--skip-extras", action="store_true",
                    help="only the main table (no bystander, start-up or footprint runs)")
    ap.add_argument("--footprint-secs", type=float, default=10.0)
    ap.add_argument("--infer-windows", type=int, default=10,
                    help="traced windows of the one-process inference A/B (default 10)")
    ap.add_argument("--infer-pairs", type=int, default=7,
                    help="untraced/contactmap pairs of the inference A/B series (default 7)")
    ap.add_argument("--analysis", action="store_true",
                    help="instead of the comparison: the cost ladder of the floor program "
                         "(stats, clock, hash lookup) against contactmap, getpid loop only")
    ap.add_argument("--variant", action="append", metavar="LABEL=PATH",
                    help="with --analysis: another contactmap build to compare (repeatable)")
    ap.add_argument("--paired", action=argparse.BooleanOptionalAction, default=None,
                    help="an untraced run between every two traced runs (A B A C A ...), each "
                         "traced run compared with its neighbours (default; --quick: off)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = ap.parse_args()

    if os.geteuid() != 0:
        sys.exit("run.py: error: needs root (BPF tracers); try: sudo /usr/bin/python3 bench/run.py")
    for b in ("getpid_loop", "pingpong", "faults", "fileio_compute", "gate", "floor"):
        if not os.access(wl_bin(b), os.X_OK):
            sys.exit(f"run.py: error: {wl_bin(b)} missing: run `make -C bench` first")
    reps = args.reps or (2 if args.quick else 5)
    if args.paired is None:
        args.paired = not args.quick
    t_start = time.monotonic()

    tmp = tempfile.mkdtemp(prefix="cm-bench-")
    mounted = ensure_tracefs()
    try:
        # run a private copy: others may rebuild ./contactmap while we measure
        cm_exe = args.contactmap
        if os.access(args.contactmap, os.X_OK):
            cm_exe = os.path.join(tmp, "contactmap")
            shutil.copy2(os.path.realpath(args.contactmap), cm_exe)
        info = machine(args.contactmap)
        info["stats_at_start"] = stats_enabled()
        foreign = foreign_bpf_tracers()
        log(f"machine: {info['cpu']}, {info['cores']} CPUs, Linux {info['kernel']}; "
            f"{reps} repetitions; scratch {tmp}")
        if foreign:
            log(f"warning: other BPF tracers are running: {foreign}")
        if args.analysis:
            md = analysis(args, cm_exe, reps, tmp)
            md += (f"\n\nMachine: {info['cpu']}, {info['cores']} CPUs, Linux {info['kernel']}, "
                   f"{info['date']}, {reps} interleaved repetitions, "
                   f"{(time.monotonic() - t_start) / 60:.1f} min.")
            print(md)
            if args.out:
                with open(args.out, "w") as f:
                    f.write(md + "\n")
            return
        run_main(args, info, foreign, cm_exe, reps, tmp, t_start)
    finally:
        if mounted:
            subprocess.run(["umount", mounted])
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"kept {tmp}")


def run_main(args, info, foreign, cm_exe, reps, tmp, t_start):
    tracers = make_tracers(cm_exe)
    if args.tracers:
        keep = set(args.tracers.split(",")) | {"none"}
        tracers = [t for t in tracers if tkey(t) in keep]
    workloads = WORKLOADS
    if args.workloads:
        keep = set(args.workloads.split(","))
        workloads = [w for w in WORKLOADS if w.key in keep]
    skipped, active = check_tracers(tracers)
    if any(w.key == "infer" for w in workloads) and (
            not os.access(SYS_PYTHON, os.X_OK) or subprocess.run(
                [SYS_PYTHON, "-c", "import torch"], capture_output=True).returncode != 0):
        log(f"skip infer: {SYS_PYTHON} cannot import torch (Debian: apt-get install python3-torch)")
        skipped["infer"] = f"skipped: {SYS_PYTHON} cannot import torch"
        workloads = [w for w in workloads if w.key != "infer"]

    results, failures, disturbed = measure(workloads, active, reps, args.quick, tmp,
                                           paired=args.paired)
    summary = summarize(results)
    table = main_table(summary, workloads, tracers, skipped)

    extras = {}
    cm = next((t for t in active if isinstance(t, Contactmap)), None)
    gw = next(w for w in WORKLOADS if w.key == "getpid")
    if not args.skip_extras:
        log("untraced getpid loop while each tracer traces another process ...")
        by = bystander(active, gw, gw.quick_n if args.quick else gw.n,
                       reps if args.paired else 1, tmp, 300)
        extras["bystander"] = summarize(by)
        log("start-up times ...")
        extras["startup"] = startup([t for t in active if t is not None
                                     and not isinstance(t, Floor)], max(reps, 2), tmp)
        if cm:
            log(f"contactmap -p on the getpid loop for {args.footprint_secs:.0f} s ...")
            extras["footprint"] = footprint(cm, args.footprint_secs, tmp)
        if cm and any(w.key == "infer" for w in workloads):
            pairs, iters = (2, 40) if args.quick else (args.infer_pairs, 100)
            log(f"inference, untraced and under contactmap alternately, {pairs} pairs ...")
            extras["infer_ab"] = infer_ab(cm, pairs, iters, tmp)
            extras["infer_ab_iters"] = iters
            wins, secs = (2, 2) if args.quick else (args.infer_windows, 3)
            log(f"inference, one process, contactmap attached to {wins} of its windows ...")
            try:
                extras["infer_attach"] = infer_attach_ab(cm, wins, secs, tmp)
            except RunError as e:
                log(f"  inference, one process: FAILED: {e}")

    info["load_end"] = read("/proc/loadavg").split()[:3]
    elapsed = time.monotonic() - t_start
    md = render(info, reps, args, table, summary, extras, workloads, active, skipped,
                failures, disturbed, foreign, elapsed)
    print(md)
    if args.out:
        with open(args.out, "w") as f:
            f.write(md + "\n")
        log(f"wrote {args.out}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "results": results, "extras": {
                k: (v if k != "bystander" else {f"{a}/{b}": s for (a, b), s in v.items()})
                for k, v in extras.items()}}, f, indent=1, default=str)


def render(info, reps, args, table, summary, extras, workloads, active, skipped,
           failures, disturbed, foreign, elapsed):
    L = []
    L.append("# contactmap overhead benchmark\n")
    L.append(f"Produced by `{' '.join(['/usr/bin/python3', 'bench/run.py'] + sys.argv[1:])}` "
             f"in {elapsed / 60:.1f} min; {reps} interleaved repetitions per cell "
             f"({WORKLOADS[-1].reps(reps)} for inference).\n")
    L.append("## Machine\n")
    L.append(f"- date: {info['date']}")
    L.append(f"- kernel: Linux {info['kernel']}, clocksource {info['clocksource']}, "
             f"virtualization: {info['virt']}")
    L.append(f"- CPU: {info['cpu']}, {info['cores']} CPUs; memory {info['mem_mib']} MiB")
    L.append(f"- contactmap: git {info['contactmap']}")
    L.append(f"- load average at start {' '.join(info['load_start'])}, at end "
             f"{' '.join(info.get('load_end', []))} (the machine is shared: other runs add noise)")
    L.append("- tools: " + "; ".join(f"{k} {v}" for k, v in info["tools"].items()))
    L.append(f"- kernel.bpf_stats_enabled at start: {int(info['stats_at_start'])}; "
             f"runs during which someone else had BPF stats on (every BPF program then "
             f"pays two clock reads more): {disturbed}"
             + (f"; other BPF tracers running at start: {foreign}" if foreign else ""))
    L.append("")
    L.append("## Per workload and tracer\n")
    L.append("*median*, *spread*: of the runs' own figures (each C workload's median over "
             "chunks of its measured loop, timed with CLOCK_MONOTONIC, start-up excluded; "
             "for inference the example's p50). "
             + ("Every traced run had an untraced run just before and just after it "
                "(A B A C A …); *added/op* and *× untraced* are medians over runs of the "
                "difference and ratio to the mean of those two neighbours, which cancels most "
                "drift of a shared machine. " if args.paired else
                "*added/op* = traced − untraced median; *× untraced* = ratio of medians. ")
             + "*added ns/event* for the getpid loop, where one op is one syscall = one "
             "sys_enter + one sys_exit. *× contactmap*: ratio of medians. "
             "*lost*: events the tool reports as lost over all repetitions (contactmap: the sum "
             "of its JSON `lost` counters; n/r: the tool reports no such count). "
             "strace runs syscall-heavy workloads with 1/20 of the ops, perf trace with 1/10 "
             "(ns/op does not depend on the count).\n")
    L.append(table)
    L.append("")
    for k, why in skipped.items():
        L.append(f"- {k}: {why}")
    for f in failures:
        L.append(f"- failed: {f}")
    if skipped or failures:
        L.append("")

    cmobs = summary.get(("getpid", "contactmap"), {}).get("obs", []) + \
        summary.get(("pingpong", "contactmap"), {}).get("obs", [])
    if cmobs:
        L.append("### contactmap's BPF programs (its own `observer` figures: run_time_ns / run_cnt "
                 "with BPF stats on, getpid and ping-pong runs)\n")
        L.append("| program | median ns per run | runs (all runs) |")
        L.append("|---|---:|---:|")
        names = sorted({n for o in cmobs for n in o})
        for n in names:
            avgs = [o[n]["avg_ns"] for o in cmobs if n in o and o[n].get("run_cnt")]
            cnt = [o[n]["run_cnt"] for o in cmobs if n in o]
            if avgs:
                L.append(f"| {n} | {med(avgs):.0f} | {sum(cnt)} |")
        L.append("")

    by = extras.get("bystander")
    if by:
        L.append("## What an untraced process pays\n")
        L.append("The getpid loop, itself untraced, while each tool traces a `sleep` process "
                 "(the floor program traces everything, it has no filter), started 0.5 s after "
                 "the tool's ready mark (its start-up is the next table's); added = median "
                 "difference to the untraced runs next to it.\n")
        L.append("| tracer | ns/syscall median | spread | added ns/syscall |")
        L.append("|---|---:|---:|---:|")
        for t in [None] + [t for t in active if t is not None]:
            s = by.get(("bystander", tkey(t)))
            if not s:
                continue
            add = f"{s['added']:+.0f}" if s.get("added") is not None and t is not None else "–"
            L.append(f"| {tlabel(t)} | {s['median']:.0f} | {s['min']:.0f}–{s['max']:.0f} | {add} |")
        L.append("")

    st = extras.get("startup")
    if st:
        L.append("## Start-up\n")
        L.append("Wrapping tools: from spawning the tool to the command's first instruction "
                 "(the workload's CLOCK_MONOTONIC at main). Attaching tools: from spawning the "
                 "tool to its ready mark. *untraced* is the cost of spawning the command alone.\n")
        L.append("| tool | mode | median ms | min–max ms |")
        L.append("|---|---|---:|---:|")
        for k, v in st.items():
            t = next((t for t in active if tkey(t) == k), None)
            mode = "wrap" if t is None or t.wrap else "attach (-p)"
            L.append(f"| {tlabel(t)} | {mode} | {med(v):.1f} | {min(v):.1f}–{max(v):.1f} |")
        L.append("")

    fp = extras.get("footprint")
    if fp:
        L.append("## contactmap's own footprint\n")
        L.append(f"`contactmap -p PID -d {args.footprint_secs:.0f}` on a running getpid loop "
                 f"({fp['syscalls']:,} syscalls traced, the loop at "
                 f"{fp['wl_ns_per_op'] or 0:.0f} ns/syscall):\n")
        L.append(f"- CPU time of the contactmap process: {fp['cpu_s'] * 1000:.0f} ms "
                 f"(user {fp['utime_s'] * 1000:.0f} ms, sys {fp['stime_s'] * 1000:.0f} ms) "
                 f"over {fp['wall_s']:.1f} s")
        L.append(f"- peak RSS: {fp['maxrss_kib'] / 1024:.1f} MiB; BPF maps (kernel memory, "
                 f"memlock): {fp['map_bytes'] / 2**20:.1f} MiB")
        ob = fp.get("observer") or {}
        if ob.get("bpf_stats") and ob.get("mode") == "sampled":
            L.append(f"- CPU in its BPF programs (charged to the traced threads): "
                     f"~{ob['est_run_time_ns'] / 1e6:.0f} ms, ~{ob['est_events']:,} runs, "
                     f"{ob.get('avg_ns', 0)} ns each (estimated from the "
                     f"{ob['sampled_share'] * 100:.0f}% of the window with stats on)")
        elif ob.get("run_time_ns") is not None:
            L.append(f"- CPU in its BPF programs (charged to the traced threads): "
                     f"{ob['run_time_ns'] / 1e6:.0f} ms, {ob.get('events', 0):,} runs, "
                     f"{ob.get('avg_ns', 0)} ns each")
        L.append(f"- lost: {json.dumps(fp.get('lost'))}")
        L.append("")

    ab = extras.get("infer_ab")
    if ab and ab.get(("infer", "contactmap")):
        s, b = ab[("infer", "contactmap")], ab.get(("infer", "none"), {})
        L.append("## Inference, untraced vs contactmap\n")
        L.append(f"`examples/infer.py --iters {extras.get('infer_ab_iters')}` with "
                 f"/usr/bin/python3, alternately untraced and under `contactmap -o r.json --` "
                 f"(A B A B … A); its p50 latency per run:\n")
        L.append(f"- untraced: median {b.get('median', 0) / 1e6:.2f} ms "
                 f"(runs: {', '.join(f'{v / 1e6:.2f}' for v in b.get('values', []))})")
        L.append(f"- contactmap: median {s['median'] / 1e6:.2f} ms "
                 f"(runs: {', '.join(f'{v / 1e6:.2f}' for v in s['values'])})")
        L.append(f"- whole run (python start-up, torch import and the loop), median: untraced "
                 f"{med([r for r in b.get('walls', [])]) or 0:.2f} s, contactmap "
                 f"{med(s.get('walls', [])) or 0:.2f} s")
        L.append(f"- each contactmap run against the mean of its two untraced neighbours: "
                 f"{', '.join(f'{(x - 1) * 100:+.1f}%' for x in s['ratios'])}; "
                 f"median {(s['ratio'] - 1) * 100:+.1f}%")
        L.append("")
    ia = extras.get("infer_attach")
    if ia and ia.get("ratio"):
        L.append("## Inference, one process, contactmap attached to every other window\n")
        L.append(f"`examples/infer.py --lat-out` runs once; `contactmap -p PID -d {ia['secs']}` is "
                 f"attached {ia['windows']} times with {ia['secs']} s untraced between "
                 f"(0.5 s at each edge of an untraced window left out); every inference is "
                 f"classed by the window it lies in.\n")
        L.append(f"- inferences: {ia['counts']['none']} untraced, {ia['counts']['contactmap']} "
                 f"traced; pooled p50 untraced {ia['pooled_ns']['none'] / 1e6:.2f} ms, traced "
                 f"{ia['pooled_ns']['contactmap'] / 1e6:.2f} ms")
        L.append(f"- each traced window's p50 against the mean of its two neighbours: "
                 f"{', '.join(f'{(x - 1) * 100:+.1f}%' for x in ia['ratios'])}; median "
                 f"{(ia['ratio'] - 1) * 100:+.1f}%")
        L.append("")

    L.append("## Targets\n")
    L.extend(targets(summary, extras))
    return "\n".join(L)


def targets(summary, extras):
    out = []

    def a(wl, t, src=summary):
        return src.get((wl, t), {}).get("added")

    def verdict(ok):
        return "**met**" if ok else "**not met**"
    def per_rep(wl, t1, t2, f, src=summary):
        """f(added of t1, added of t2) for each repetition that ran both: the
        two sit in the same A B A C A sequence, minutes apart at most, so the
        machine's drift between repetitions cancels."""
        x = src.get((wl, t1), {}).get("by_seq", {})
        y = src.get((wl, t2), {}).get("by_seq", {})
        return [f(x[k], y[k]) for k in sorted(x) if k in y]

    def reps_str(xs, fmt):
        return ", ".join(fmt.format(v) for v in xs)

    cm, fl, sc = a("getpid", "contactmap"), a("getpid", "floor"), a("getpid", "syscount")
    fk = a("getpid", "floor+clock")
    if None not in (cm, fl, fk):
        rr = per_rep("getpid", "floor+clock", "floor", lambda c, f: c / f if f > 0 else float("inf"))
        out.append(f"- (for the next two: the floor plus a clock read at enter and at exit, the "
                   f"least that exact syscall latency costs, {fk:+.0f} ns, "
                   f"{fk / fl if fl > 0 else float('inf'):.1f}× the floor; per repetition "
                   f"{reps_str(rr, '{:.1f}×')}; contactmap {cm - fk:+.0f} ns above it)")
    if None not in (cm, fl):
        rr = per_rep("getpid", "contactmap", "floor", lambda c, f: c / f if f > 0 else float("inf"))
        out.append(f"- added cost per traced syscall ≤ 2× the floor's: contactmap {cm:+.0f} ns, "
                   f"floor {fl:+.0f} ns, ratio {cm / fl if fl > 0 else float('inf'):.1f}×; "
                   f"per repetition {reps_str(rr, '{:.1f}×')}"
                   + (f", median {med(rr):.1f}×" if rr else "")
                   + f" → {verdict(cm <= 2 * fl and (not rr or med(rr) <= 2))}")
    if None not in (cm, sc):
        rr = per_rep("getpid", "contactmap", "syscount", lambda c, f: c / f if f > 0 else float("inf"))
        out.append(f"- ≤ ½ of `syscount -L`'s: contactmap {cm:+.0f} ns, syscount {sc:+.0f} ns, "
                   f"ratio {cm / sc if sc > 0 else float('inf'):.2f}; per repetition "
                   f"{reps_str(rr, '{:.2f}')} → {verdict(cm <= 0.5 * sc)}")
    by = extras.get("bystander")
    if by:
        bc, bf = a("bystander", "contactmap", by), a("bystander", "floor", by)
        if None not in (bc, bf):
            dd = per_rep("bystander", "contactmap", "floor", lambda c, f: c - f, by)
            mixed = dd and min(dd) < 0 < max(dd)
            out.append(f"- untraced processes pay ≤ the floor: contactmap {bc:+.0f} ns/syscall, "
                       f"floor {bf:+.0f} ns/syscall; contactmap − floor per repetition "
                       f"{reps_str(dd, '{:+.0f}')} → {verdict(bc <= bf)}"
                       + (" (the difference changes sign between repetitions: within the "
                          "noise)" if mixed and bc > bf else ""))
    st = extras.get("startup", {}).get("contactmap")
    if st:
        out.append(f"- command runs within 150 ms of start: median {med(st):.0f} ms "
                   f"(min {min(st):.0f}, max {max(st):.0f}) → {verdict(med(st) <= 150)}")
    lost = summary.get(("getpid", "contactmap"), {}).get("lost", [])
    fp = extras.get("footprint")
    if lost or fp:
        tot = sum(x for x in lost if x) + (sum(fp["lost"].values()) if fp and fp.get("lost") else 0)
        out.append(f"- no lost events at the syscall loop's full rate: {tot} lost over "
                   f"{len(lost)} wrapped runs" + (" and the attach run" if fp else "")
                   + f" → {verdict(tot == 0)}")
    if fp:
        mib = fp["maxrss_kib"] / 1024
        out.append(f"- peak memory < 64 MiB: RSS {mib:.1f} MiB (+ {fp['map_bytes'] / 2**20:.1f} MiB "
                   f"of BPF maps in the kernel) → {verdict(mib < 64)}")
    s = (extras.get("infer_ab") or {}).get(("infer", "contactmap")) or \
        summary.get(("infer", "contactmap"))
    if s and s.get("ratio"):
        d = (s["ratio"] - 1) * 100
        rs = ", ".join(f"{(x - 1) * 100:+.1f}%" for x in s["ratios"]) or "unpaired"
        out.append(f"- inference median within 3% of untraced, separate runs: {d:+.1f}% (each run "
                   f"against its untraced neighbours: {rs}) → {verdict(d <= 3)}")
    ia = extras.get("infer_attach")
    if ia and ia.get("ratio"):
        d = (ia["ratio"] - 1) * 100
        out.append(f"- inference median within 3% of untraced, one process, attached windows: "
                   f"{d:+.1f}% (median of {len(ia['ratios'])} windows) → {verdict(d <= 3)}")
    return out


if __name__ == "__main__":
    main()
