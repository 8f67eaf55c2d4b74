#!/usr/bin/env python3
"""What the critical path and the request markers cost (issue 14).

    sudo /usr/bin/python3 bench/critpath.py [--reps N] [--out bench/RESULTS.md]

Needs `make all` and `make -C bench`. Two measurements, interleaved A B A B:

- ping-pong (bench/wl/pingpong.c, two threads over two pipes): contactmap's own
  BPF time per round trip, from `--observer-cost full` (every program run
  counted: `observer.est_run_time_ns`), with the wake-up graph and critical path
  on (the default) and off (`--no-critical-path`); and the workload's own ns per
  round trip (median over chunks) in both and untraced. Target: the wake-up
  recording adds <= 10% to contactmap's BPF time per event.
- markers (bench/wl/marks.c, begin/end pairs in a loop): ns per marker call
  untraced (target < 50 ns) and under contactmap, whose uprobes fire on each
  call (target <= 3 us); plus the BPF time of the marker programs themselves.

With --out, the tables replace the section between the critpath markers of
that file, or are appended to it.
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
WL = REPO / "bench" / ".output"
PP_N, MARK_N = 100000, 200000
WARMUP = 1000   # both workloads run this many ops, untimed, before the loop


def workload_line(stdout):
    for line in stdout.splitlines():
        if line.startswith("{"):
            return json.loads(line)
    sys.exit("critpath: the workload printed no result line")


def untraced(cmd):
    cp = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return workload_line(cp.stdout)


def traced(cmd, extra, tmp):
    out = Path(tmp) / "r.json"
    cp = subprocess.run([str(CM), "--observer-cost", "full", *extra, "-o", str(out), "--", *cmd],
                        capture_output=True, text=True)
    if cp.returncode != 0:
        sys.exit(f"critpath: contactmap failed (exit {cp.returncode}): {cp.stderr.strip()[-300:]}")
    rep = json.loads(out.read_text())
    ob = rep["observer"]
    progs = {p["name"]: p for p in ob.get("programs", [])}
    return workload_line(cp.stdout), rep, ob, progs


def med(xs):
    return statistics.median(xs)


def pingpong(reps, tmp):
    cmd = [str(WL / "pingpong"), str(PP_N)]
    rt = PP_N + WARMUP
    on, off, bare = [], [], []
    for _ in range(reps):
        bare.append(untraced(cmd)["ns_per_op"])
        for extra, acc in (([], on), (["--no-critical-path"], off)):
            w, rep, ob, _ = traced(cmd, extra, tmp)
            acc.append({"bpf_rt": ob["est_run_time_ns"] / rt, "ev_rt": ob["est_events"] / rt,
                        "wall": w["ns_per_op"], "lost": sum(v for v in rep["lost"].values()
                                                            if isinstance(v, int))})
    rows = ["| ping-pong | BPF ns per round trip | BPF events per round trip | BPF ns per event "
            "| workload ns per round trip | lost |", "|---|---:|---:|---:|---:|---:|",
            f"| untraced | – | – | – | {med(bare):.0f} | – |"]
    for name, acc in (("contactmap --no-critical-path", off), ("contactmap (critical path on)", on)):
        b, e = med(r["bpf_rt"] for r in acc), med(r["ev_rt"] for r in acc)
        rows.append(f"| {name} | {b:.0f} | {e:.2f} | {b / e:.0f} | "
                    f"{med(r['wall'] for r in acc):.0f} | {max(r['lost'] for r in acc)} |")
    b_on, b_off = med(r["bpf_rt"] for r in on), med(r["bpf_rt"] for r in off)
    per_rep = [f"{(a['bpf_rt'] / b['bpf_rt'] - 1) * 100:+.1f}%" for a, b in zip(on, off)]
    verdict = "met" if b_on <= 1.10 * b_off else "not met"
    rows += ["", f"Wake-up recording and critical path: {(b_on / b_off - 1) * 100:+.1f}% of "
             f"contactmap's BPF time per round trip ({b_off:.0f} → {b_on:.0f} ns; per repetition "
             f"{', '.join(per_rep)}); target ≤ +10% → **{verdict}**."]
    return rows


def markers(reps, tmp):
    cmd = [str(WL / "marks"), str(MARK_N)]
    bare, tr, prog_ns, counted = [], [], [], []
    for _ in range(reps):
        bare.append(untraced(cmd)["ns_per_op"] / 2)
        w, rep, ob, progs = traced(cmd, [], tmp)
        tr.append(w["ns_per_op"] / 2)
        mk = [p for n, p in progs.items() if n.startswith("req_")]
        runs = sum(p["run_cnt"] for p in mk)
        ns = sum(p["run_time_ns"] for p in mk)
        if runs:
            prog_ns.append(ns / runs)
        counted.append(rep.get("requests", {}).get("count", 0))
    want = MARK_N + WARMUP
    rows = ["| marker call | ns per call (median over chunks) | target |", "|---|---:|---|",
            f"| untraced | {med(bare):.1f} (runs {', '.join(f'{x:.1f}' for x in bare)}) | < 50 ns → "
            f"**{'met' if med(bare) < 50 else 'not met'}** |",
            f"| traced (uprobe) | {med(tr):.0f} (runs {', '.join(f'{x:.0f}' for x in tr)}) | ≤ 3 µs → "
            f"**{'met' if med(tr) <= 3000 else 'not met'}** |"]
    if prog_ns:
        rows.append(f"| of which contactmap's marker BPF programs | {med(prog_ns):.0f} | |")
    rows += ["", f"Requests counted per traced run: {', '.join(str(c) for c in counted)} "
             f"(the workload made {want:,})."]
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", help="write the tables into this markdown file")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("critpath: needs root (BPF)")
    for f in (CM, WL / "pingpong", WL / "marks"):
        if not os.access(f, os.X_OK):
            sys.exit(f"critpath: {f} is not built: run `make all && make -C bench`")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        host = subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()
        pp = pingpong(a.reps, tmp)
        mk = markers(a.reps, tmp)
    lines = ["## The critical path and the request markers (`bench/critpath.py`)", "",
             f"Kernel {host}, {os.cpu_count()} CPUs, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average at the end "
             f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; {a.reps} interleaved repetition(s), "
             f"medians; {(time.monotonic() - t0) / 60:.1f} min. `pingpong {PP_N}` and "
             f"`marks {MARK_N}` (+{WARMUP} untimed ops each); BPF figures from "
             "`--observer-cost full`.", ""] + pp + [""] + mk
    print("\n".join(lines))
    if a.out:
        write_section(a.out, "critpath", lines)


if __name__ == "__main__":
    main()
