#!/usr/bin/env python3
"""The procfs tier's sampler: what it costs per thread per sample, and its
share of one CPU, at 10, 100 and 1,000 threads.

    sudo /usr/bin/python3 bench/procfs.py [--quick] [--secs S] [--out bench/RESULTS.md]

Needs `make all test-bins` (the workload is tests/workloads/pfwork.c). Run as
root it traces as `nobody` (runuser), the tier's user, from a copy of the
binaries nobody can run; run as anyone else it traces as that user. Two
kinds of threads: *idle* (blocked on a condition variable the whole run, as
most threads of a server are) and *busy* (each runs 1 ms and sleeps 9 ms, so
every sample finds it has run). Each cell is the median of its repetitions;
the figures are the report's own (observer.sampler, observer.self):

- ns/thread-sample: the sampler's CPU time over threads x ticks;
- sampler CPU: its share of one CPU over the window (the budget is 1%; above
  it the rate comes down, and the report says to what);
- achieved Hz: ticks per second, against the 100 asked for; lowest set: the
  lowest rate the budget set (achieved is lower where contactmap waited for a
  CPU);
- checks: threads actually read (the rest were known not to have run);
- detail CPU: the exact counters (stat, status, the process) re-read every
  100 ms for threads that ran; discovery: meeting threads (first reads);
- contactmap CPU: its whole process (getrusage), all of the above included.

With --out, the table replaces the section between the procfs markers of that
file, or is appended to it.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mdsection import write_section

REPO = Path(__file__).resolve().parent.parent


def sandbox():
    root = Path(tempfile.mkdtemp(prefix="cm-procfs-bench-"))
    os.chmod(root, 0o777)
    for src in (REPO / ".output" / "contactmap", REPO / ".output" / "tests" / "pfwork"):
        if not src.exists():
            sys.exit(f"{src} is not built: run `make all test-bins`")
        shutil.copy(src, root / src.name)
        os.chmod(root / src.name, 0o755)
    return root


def run(root, kind, n, secs):
    out = root / f"r-{kind}-{n}-{time.monotonic_ns()}.json"
    argv = [str(root / "contactmap"), "-o", str(out), "--", str(root / "pfwork"), kind, str(n), str(secs)]
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "nobody", "--"] + argv
    cp = subprocess.run(argv, capture_output=True, text=True, cwd=root, timeout=secs * 10 + 60)
    if cp.returncode != 0 or not out.exists():
        sys.exit(f"run failed: {argv}\n{cp.stderr[-2000:]}")
    r = json.loads(out.read_text())
    out.unlink()
    s = r["observer"]["sampler"]
    me = r["observer"].get("self", {})
    win = r["window"]["duration_ns"]
    return {
        "ns_per": s["ns_per_thread_sample"],
        "share": s["cpu_share"],
        "hz": s["mean_hz"],
        "min_hz": s["min_hz"],
        "lowered": s["rate_lowered"],
        "checks": s["thread_checks"] / max(1, s["thread_samples"]),
        "detail": s["detail_cpu_share"],
        "discovery_ms": s["discovery_cpu_ns"] / 1e6,
        "self": (me.get("cpu_user_ns", 0) + me.get("cpu_sys_ns", 0)) / win if win else 0,
    }


def median(rows, key):
    return statistics.median(r[key] for r in rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one repetition of 3 s each")
    ap.add_argument("--secs", type=int, default=5, help="seconds per run (default 5)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per cell (default 3)")
    ap.add_argument("--out", help="write the table into this markdown file")
    a = ap.parse_args()
    secs, reps = (3, 1) if a.quick else (a.secs, a.reps)
    root = sandbox()
    load0 = open("/proc/loadavg").read().split()[:3]
    t0 = time.monotonic()
    rows = []
    try:
        for kind in ("idle", "busy"):
            for n in (10, 100, 1000):
                got = [run(root, kind, n, secs) for _ in range(reps)]
                rows.append((kind, n, got))
                print(f"{kind} {n}: {median(got, 'ns_per'):.0f} ns/thread-sample, "
                      f"{median(got, 'share') * 100:.2f}% of a CPU at {median(got, 'hz'):.0f} Hz",
                      flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    took = time.monotonic() - t0
    load = open("/proc/loadavg").read().split()[:3]
    lines = ["## procfs tier: the sampler's cost (`bench/procfs.py`)", "",
             f"Produced by `/usr/bin/python3 bench/procfs.py{' --quick' if a.quick else ''}` in "
             f"{took / 60:.1f} min on {os.cpu_count()} CPUs (kernel {os.uname().release}; load average "
             f"{' '.join(load0)} at the start, {' '.join(load)} at the end, the busy runs' own threads "
             f"included), {reps} repetition(s) of {secs} s per cell, medians; traced "
             f"as {'nobody' if os.geteuid() == 0 else 'the invoking user'} at the default 100 Hz.", "",
             "| threads | kind | ns/thread-sample | sampler CPU | achieved Hz | lowest set | checks/sample "
             "| detail CPU | discovery | contactmap CPU |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for kind, n, got in rows:
        lines.append(f"| {n} | {kind} | {median(got, 'ns_per'):.0f} | {median(got, 'share') * 100:.2f}% | "
                     f"{median(got, 'hz'):.0f} | {min(r['min_hz'] for r in got)} | "
                     f"{median(got, 'checks'):.3f} | {median(got, 'detail') * 100:.2f}% | "
                     f"{median(got, 'discovery_ms'):.1f} ms | {median(got, 'self') * 100:.2f}% |")
    lines += ["", "ns/thread-sample and sampler CPU leave out meeting threads (discovery, a one-time "
              "cost per thread). An idle process costs one read of its CPU clock per tick "
              "(O(threads) in the kernel); a busy thread costs a schedstat, wchan and syscall read per "
              "sample. Where the CPUs are saturated (busy threads outnumber them) contactmap waits "
              "for a CPU like the program does, and the achieved rate falls below the budget's."]
    print("\n".join(lines))
    if a.out:
        write_section(a.out, "procfs", lines)


if __name__ == "__main__":
    main()
