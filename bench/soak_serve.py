#!/usr/bin/env python3
"""Memory of `contactmap --serve` over a long run (issue 16: "memory flat over hours").

    bench/soak_serve.py [--minutes 30] [--rate 20] [-o soak.json] [--contactmap BIN]
                        [--no-serve] [--report REPORT.json] [--server http]

Starts examples/server/server.py --mode threads, attaches `contactmap -p PID
--serve 127.0.0.1:0` to it, drives it with loadgen.py at a steady open-loop
rate for the whole run, scrapes /metrics every second (as a Prometheus with a
1 s interval would), and samples contactmap's RSS (VmRSS) and its HWM every
minute. Prints one line per sample and a JSON summary; everything it starts
is stopped at the end. All traffic is on 127.0.0.1. Needs root.

With --report, contactmap also writes its report there when stopped, and the
summary says what it lost, how many threads it saw end, and whether every
ledger closed (the test suite's own check, tests/conftest.py). --no-serve is
the control: the same run without the exporter. --server http serves with
`python3 -m http.server` instead (ThreadingHTTPServer: a new thread for every
request; issue 11's "a server attached for an hour with a thread per
request"), driven by GETs at --rate from this script.
"""
import argparse
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = "/usr/bin/python3"


def vm(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])  # kB
    return None


def get_loop(port, rate, dur, gets):
    """GET / at a steady rate (open loop) for dur seconds: one connection,
    and so one server thread, a request."""
    t0 = time.monotonic()
    k = 0
    while True:
        due = t0 + k / rate
        if due - t0 >= dur:
            return
        time.sleep(max(0.0, due - time.monotonic()))
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                r.read()
            gets["ok"] += 1
        except OSError:
            gets["bad"] += 1
        k += 1


def check_report(path):
    """What the run's report says of itself: losses, thread ends, ledgers."""
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import ledger_problems
    rep = json.loads(Path(path).read_text())
    procs = rep["processes"]
    wall = sum(p["ledger"]["wall_ns"] for p in procs)
    problems = ledger_problems(rep, from_start_to_end=False)
    return {"lost": {k: v for k, v in rep["lost"].items() if isinstance(v, int) and v},
            "threads_ended": rep["collector"].get("threads_ended"),
            "threads_folded": rep["collector"].get("threads_folded"),
            "unattributed_share": (sum(p["ledger"]["unattributed_ns"] for p in procs) / wall
                                   if wall else None),
            "ledger_problems": len(problems), "ledger_problem_examples": problems[:3]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--rate", type=float, default=20)
    ap.add_argument("--sample-s", type=float, default=60)
    ap.add_argument("-o", "--output")
    ap.add_argument("--contactmap", default=str(REPO / "contactmap"))
    ap.add_argument("--report", help="contactmap's own report (-o), checked at the end")
    ap.add_argument("--server", choices=("example", "http"), default="example",
                    help="example: examples/server --mode threads (a pool); http: "
                    "python3 -m http.server (a thread per request)")
    ap.add_argument("--no-serve", action="store_true",
                    help="the control: the same run without --serve and without scrapes")
    a = ap.parse_args()
    dur = a.minutes * 60

    if a.server == "http":
        srv = subprocess.Popen([PY, "-u", "-m", "http.server", "--bind", "127.0.0.1",
                                "--directory", str(REPO / "examples"), "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        port = int(srv.stdout.readline().split(" port ")[1].split()[0])
    else:
        srv = subprocess.Popen([PY, str(REPO / "examples/server/server.py"), "--mode", "threads",
                                "--port", "0", "--max-seconds", str(dur + 300),
                                "--max-requests", "100000000"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        port = json.loads(srv.stdout.readline())["port"]
    cm = subprocess.Popen([a.contactmap, "-p", str(srv.pid), "-v"]
                          + (["-o", a.report] if a.report else [])
                          + ([] if a.no_serve else ["--serve", "127.0.0.1:0"]),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = None
    while True:                         # serving (its URL), or traced (-v says so)
        line = cm.stderr.readline()
        if not line:
            sys.exit("contactmap exited before " + ("tracing" if a.no_serve else "serving"))
        if "serving metrics on " in line:
            url = line.split("serving metrics on ")[1].strip()
            break
        if a.no_serve and "Ctrl-C to stop" in line:
            break
    threading.Thread(target=lambda: cm.stderr.read(), daemon=True).start()
    gets = {"ok": 0, "bad": 0}
    if a.server == "http":
        lg = None
        threading.Thread(target=get_loop, args=(port, a.rate, dur, gets), daemon=True).start()
    else:
        lg = subprocess.Popen([PY, str(REPO / "examples/server/loadgen.py"), "--port", str(port),
                               "--rate", str(a.rate), "--duration", str(dur), "--mix", "mlp=1"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    stop = threading.Event()
    scrapes = {"ok": 0, "bad": 0, "bytes": 0}

    def scrape():
        while url and not stop.wait(1.0):
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    scrapes["bytes"] = len(r.read())
                    scrapes["ok"] += 1
            except OSError:
                scrapes["bad"] += 1

    threading.Thread(target=scrape, daemon=True).start()
    t0 = time.monotonic()
    samples = []
    try:
        while True:
            el = time.monotonic() - t0
            rss, hwm = vm(cm.pid, "VmRSS"), vm(cm.pid, "VmHWM")
            samples.append({"t_s": round(el), "rss_kib": rss, "hwm_kib": hwm,
                            "scrapes": scrapes["ok"], "metrics_bytes": scrapes["bytes"]})
            print(json.dumps(samples[-1]), flush=True)
            if el >= dur:
                break
            time.sleep(min(a.sample_s, max(0.0, dur - el)))
    finally:
        stop.set()
        cm.send_signal(signal.SIGINT)
        lgout = ""
        try:
            lgout = lg.communicate(timeout=120)[0] if lg else ""
        except subprocess.TimeoutExpired:     # stopped early: the load goes too
            lg.terminate()
            lgout = lg.communicate(timeout=30)[0]
        try:
            cm.wait(timeout=60)
        except subprocess.TimeoutExpired:
            cm.kill()
        srv.send_signal(signal.SIGTERM)
        try:
            srv.wait(timeout=30)
        except subprocess.TimeoutExpired:
            srv.kill()
    rss = [s["rss_kib"] for s in samples]
    after5 = [s["rss_kib"] for s in samples if s["t_s"] >= 300] or rss
    summary = {"minutes": a.minutes, "rate": a.rate, "serve": not a.no_serve, "samples": samples,
               "rss_first_kib": rss[0], "rss_last_kib": rss[-1], "rss_max_kib": max(rss),
               "rss_growth_after_5min_kib": after5[-1] - after5[0],
               "scrapes_ok": scrapes["ok"], "scrapes_failed": scrapes["bad"],
               "loadgen": json.loads(lgout.strip().splitlines()[-1]) if lgout.strip() else None,
               "server": a.server, "gets": gets if a.server == "http" else None}
    if a.report:
        summary["report"] = check_report(a.report)
    print(json.dumps({k: v for k, v in summary.items() if k != "samples"}))
    if a.output:
        Path(a.output).write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
