#!/usr/bin/env python3
"""Thread and process churn: what contactmap costs, and how much memory it
holds, as the number of threads (or processes) created over a run grows while
the live set stays small (8 at a time).

    sudo /usr/bin/python3 bench/churn.py [--quick] [--out bench/RESULTS.md]
                                         [--long SECS]

Needs `make all test-bins` (the workload is tests/workloads/churn.c). For each
size it runs the workload untraced and under `contactmap --observer-cost full`
(every BPF program run counted), twice each, interleaved, and prints a table:
wall times and their ratio, BPF events per second of the traced run, the
CPU contactmap's own process used, its peak RSS, and whether every getppid
call of the workload was counted. `--long SECS` also runs a steady churn for
SECS seconds and samples contactmap's RSS every few seconds: it must stay flat
once the live set is flat. With --out, the tables replace the section between
the churn markers of that file (RESULTS.md), or are appended to it.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mdsection import write_section

REPO = Path(__file__).resolve().parent.parent
CM = REPO / "contactmap"
CHURN = REPO / ".output" / "tests" / "churn"


def run_untraced(mode, n):
    t0 = time.monotonic()
    subprocess.run([str(CHURN), mode, str(n), "8", "3"], check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def run_traced(mode, n, tmp):
    out = Path(tmp) / f"{mode}-{n}.json"
    t0 = time.monotonic()
    cp = subprocess.run([str(CM), "--observer-cost", "full", "-o", str(out), "--",
                         str(CHURN), mode, str(n), "8", "3"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    if cp.returncode != 0:
        sys.exit(f"churn: contactmap failed on {mode} {n} (exit {cp.returncode})")
    rep = json.loads(out.read_text())
    procs = rep["processes"] + rep.get("folded_processes", [])
    calls = sum(s["count"] for p in procs for s in p["syscalls"] if s["name"] == "getppid")
    ob = rep["observer"]
    return {
        "wall": wall,
        "events": ob["est_events"],
        "bpf_ns": ob["est_run_time_ns"],
        "window_ns": rep["window"]["duration_ns"],
        "cpu_ns": ob["self"]["cpu_user_ns"] + ob["self"]["cpu_sys_ns"],
        "rss": ob["self"]["max_rss_bytes"],
        "exact": calls == 3 * n,
        "lost": sum(v for v in rep["lost"].values() if isinstance(v, int)),
        "folded": rep["collector"].get("threads_folded", 0) + rep["collector"].get("processes_folded", 0),
    }


def table(mode, sizes, reps, tmp):
    rows = [f"| {mode} created | untraced | traced | ratio | BPF events/s | BPF ns/event "
            f"| contactmap CPU | peak RSS | folded | all calls counted | lost |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|"]
    for n in sizes:
        bare, traced = [], []
        for _ in range(reps):
            bare.append(run_untraced(mode, n))
            traced.append(run_traced(mode, n, tmp))
        b = statistics.median(bare)
        t = sorted(traced, key=lambda r: r["wall"])[len(traced) // 2]
        rows.append(
            f"| {n:,} | {b:.2f} s | {t['wall']:.2f} s | {t['wall'] / b:.2f} | "
            f"{t['events'] / (t['window_ns'] / 1e9):,.0f} | "
            f"{t['bpf_ns'] / max(t['events'], 1):.0f} | {t['cpu_ns'] / 1e6:.0f} ms | "
            f"{t['rss'] / 2**20:.1f} MiB | {t['folded']:,} | "
            f"{'yes' if all(r['exact'] for r in traced) else 'NO'} | {max(r['lost'] for r in traced)} |")
        print(rows[-1], flush=True)
    return rows


def rss_of(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def long_run(secs, tmp):
    """A steady churn under `contactmap -d SECS`: its RSS sampled as it goes."""
    out = Path(tmp) / "long.json"
    cm = subprocess.Popen([str(CM), "-d", str(secs), "-o", str(out), "--", str(CHURN),
                           "threads", "1000000000", "8", "3"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples, t0 = [], time.monotonic()
    step = max(1, secs // 12)
    # -d ends the window and writes the report; contactmap then waits for the
    # command, which goes on: it is ours to stop once the report is there
    while cm.poll() is None and not (out.exists() and time.monotonic() - t0 > secs):
        r = rss_of(cm.pid)
        if r:
            samples.append((time.monotonic() - t0, r))
        time.sleep(step)
    subprocess.run(["pkill", "-f", f"{CHURN} threads 1000000000"], check=False)
    cm.wait(timeout=60)
    rep = json.loads(out.read_text())
    made = rep["collector"]["threads_ended"]
    rows = [f"Steady churn for {secs} s (8 threads alive, {made:,} created; "
            f"lost {sum(v for v in rep['lost'].values() if isinstance(v, int))}): "
            "contactmap's RSS over time", "",
            "| t | RSS |", "|---:|---:|"]
    rows += [f"| {t:.0f} s | {r / 2**20:.1f} MiB |" for t, r in samples]
    for r in rows:
        print(r, flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two sizes, one repetition")
    ap.add_argument("--out", help="write the tables into this markdown file")
    ap.add_argument("--long", type=int, default=0, metavar="SECS",
                    help="also a steady churn of SECS seconds, RSS sampled")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("churn: needs root (BPF)")
    for f in (CM, CHURN):
        if not os.access(f, os.X_OK):
            sys.exit(f"churn: {f} is not built: run `make all test-bins`")
    reps = 1 if a.quick else 2
    threads = [1000, 10000] if a.quick else [1000, 3000, 10000, 30000, 100000]
    procs = [1000] if a.quick else [1000, 3000, 10000]
    with tempfile.TemporaryDirectory() as tmp:
        host = subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()
        lines = ["## Thread and process churn (`bench/churn.py`)", "",
                 f"Kernel {host}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
                 "`churn MODE N 8 3`: N tasks, 8 alive at a time, 3 getppid each; median of "
                 f"{reps} run(s). Events and BPF time from `--observer-cost full`; CPU and RSS "
                 "are contactmap's own process (`observer.self`).", ""]
        lines += table("threads", threads, reps, tmp) + [""]
        lines += table("procs", procs, reps, tmp) + [""]
        if a.long:
            lines += long_run(a.long, tmp) + [""]
    if a.out:
        write_section(a.out, "churn", lines)


if __name__ == "__main__":
    main()
