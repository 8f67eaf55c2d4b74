#!/usr/bin/python3
"""What the BPF Python frame walk costs per on-CPU sample and per off-CPU block.

    sudo bench/python_walk.py [--reps N]

For each installed CPython (Debian's 3.11, pyenv's 3.10/3.12/3.13) it runs
tests/python/chains.py under contactmap --observer-cost full: on-CPU stacks
only (a leaf under 3 and under 22 Python calls), then off-CPU stacks only (100
sleeps of 5 ms), and reads the walker's own clock (python.walker.walk_ns over
its walks: a bpf_ktime_get_ns pair around each) and the observer's per-program
figures (cpu_sample, sys_exit). Then examples/infer.py (PyTorch) with and
without --no-python, and a C program (stackwl), whose cpu_sample cost must not
move: a py_procs lookup that misses is all it pays (with and without Python
support alternate). Prints one table; medians over --reps runs.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CM = str(REPO / "contactmap")
CHAINS = str(REPO / "tests" / "python" / "chains.py")
PYENV = Path(os.environ.get("HOME", "/root")) / ".pyenv" / "versions"
PYS = [("3.11 (Debian)", "/usr/bin/python3.11"), ("3.10", PYENV / "3.10.13/bin/python3"),
       ("3.12", PYENV / "3.12.1/bin/python3"), ("3.13", PYENV / "3.13.0/bin/python3")]


def run(args, cmd):
    with tempfile.TemporaryDirectory() as d:
        js, fold = Path(d) / "r.json", Path(d) / "s.folded"
        args = [str(fold) if a == "FOLDED" else a for a in args]
        subprocess.run([CM, "--observer-cost", "full", "-o", str(js), *args, "--", *cmd],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=300)
        r = json.loads(js.read_text())
        r["_share"] = python_share(fold) if fold.exists() else None
        return r


def python_share(folded):
    """Shares of on-CPU samples and of off-CPU weight whose stack names a
    Python function."""
    on, off = [0, 0], [0, 0]
    for l in folded.read_text().splitlines():
        frames, w = l.rsplit(" ", 1)
        f = frames.split(";")
        acc = off if f[-1].startswith("[off-cpu:") else on
        acc[1] += int(w)
        if any(x.startswith("py:") and not x.startswith("py::") for x in f):
            acc[0] += int(w)
    return on[0] / max(on[1], 1), off[0] / max(off[1], 1)


def prog(r, name):
    for p in r["observer"]["programs"]:
        if p["name"] == name:
            return p
    return {"avg_ns": 0, "run_cnt": 0}


def walk(r):
    for p in r["processes"]:
        w = p.get("python", {}).get("walker")
        if w and w.get("stacks"):
            return w["avg_walk_ns"], w["frames"] / w["stacks"], w["stacks"]
    return 0, 0, 0


def med(xs):
    return int(statistics.median(xs)) if xs else 0


def interleaved(cmd, reps):
    """Runs with and without Python support, alternating (the machine drifts)."""
    on, off = [], []
    for _ in range(reps):
        on.append(run(["-f", "FOLDED"], cmd))
        off.append(run(["-f", "FOLDED", "--no-python"], cmd))
    return on, off


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    rows = []
    for name, exe in PYS:
        if not os.access(exe, os.X_OK):
            print(f"{name}: not installed ({exe}), left out", file=sys.stderr)
            continue
        for what, args, cmd in (
                ("on-CPU, 5 frames", ["--stacks", "oncpu"], ["--spin", "1", "--sleeps", "0"]),
                ("on-CPU, 24 frames", ["--stacks", "oncpu"], ["--spin", "1", "--sleeps", "0", "--depth", "19"]),
                ("off-CPU, 5 frames", ["--stacks", "offcpu", "--min-block", "1000"],
                 ["--spin", "0", "--sleeps", "100", "--sleep-ms", "5"])):
            res = [run(args, [str(exe), CHAINS, *cmd]) for _ in range(a.reps)]
            ws = [walk(r) for r in res]
            rows.append((name, what, med([w[0] for w in ws]), round(statistics.median(w[1] for w in ws), 1),
                         med([w[2] for w in ws])))
    print(f"{'CPython':14} {'stacks':18} {'walk ns':>8} {'frames':>7} {'walks':>6}")
    for r in rows:
        print(f"{r[0]:14} {r[1]:18} {r[2]:8} {r[3]:7} {r[4]:6}")

    infer = ["/usr/bin/python3", str(REPO / "examples" / "infer.py")]
    on, off = interleaved(infer, a.reps)
    ws = [walk(r) for r in on]
    print(f"\nexamples/infer.py (3.11, PyTorch): walk {med([w[0] for w in ws])} ns over "
          f"{statistics.median(w[1] for w in ws):.1f} frames ({med([w[2] for w in ws])} walks); "
          f"cpu_sample {med([prog(r, 'cpu_sample')['avg_ns'] for r in on])} ns vs "
          f"{med([prog(r, 'cpu_sample')['avg_ns'] for r in off])} with --no-python; "
          f"sys_exit {med([prog(r, 'sys_exit_btf')['avg_ns'] for r in on])} vs "
          f"{med([prog(r, 'sys_exit_btf')['avg_ns'] for r in off])} ns")
    on_cpu = ", ".join(f"{100 * r['_share'][0]:.1f}%" for r in on)
    off_cpu = ", ".join(f"{100 * r['_share'][1]:.1f}%" for r in on)
    print(f"  stacks naming a Python function: on-CPU {on_cpu} of samples, off-CPU {off_cpu} "
          f"of weight (with --no-python: {max(100 * r['_share'][0] for r in off):.1f}%, "
          f"{max(100 * r['_share'][1] for r in off):.1f}%)")
    wl = [str(REPO / ".output" / "tests" / "stackwl"), str(REPO / ".output" / "tests" / "libstackwl.so")]
    c_on, c_off = interleaved(wl, 2 * a.reps)
    print(f"stackwl (C): cpu_sample {med([prog(r, 'cpu_sample')['avg_ns'] for r in c_on])} ns vs "
          f"{med([prog(r, 'cpu_sample')['avg_ns'] for r in c_off])} with --no-python; sys_exit "
          f"{med([prog(r, 'sys_exit_btf')['avg_ns'] for r in c_on])} vs "
          f"{med([prog(r, 'sys_exit_btf')['avg_ns'] for r in c_off])} ns; sched_switch "
          f"{med([prog(r, 'sched_switch_btf')['avg_ns'] for r in c_on])} vs "
          f"{med([prog(r, 'sched_switch_btf')['avg_ns'] for r in c_off])} ns")


if __name__ == "__main__":
    main()
