#!/usr/bin/env python3
"""Memory of `contactmap --serve` over a long run (issue 16: "memory flat over hours").

    bench/soak_serve.py [--minutes 30] [--rate 20] [-o soak.json] [--contactmap BIN]

Starts examples/server/server.py --mode threads, attaches `contactmap -p PID
--serve 127.0.0.1:0` to it, drives it with loadgen.py at a steady open-loop
rate for the whole run, scrapes /metrics every second (as a Prometheus with a
1 s interval would), and samples contactmap's RSS (VmRSS) and its HWM every
minute. Prints one line per sample and a JSON summary; everything it starts
is stopped at the end. All traffic is on 127.0.0.1. Needs root.
"""
import argparse
import json
import os
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--rate", type=float, default=20)
    ap.add_argument("--sample-s", type=float, default=60)
    ap.add_argument("-o", "--output")
    ap.add_argument("--contactmap", default=str(REPO / "contactmap"))
    ap.add_argument("--no-serve", action="store_true",
                    help="the control: the same run without --serve and without scrapes")
    a = ap.parse_args()
    dur = a.minutes * 60

    srv = subprocess.Popen([PY, str(REPO / "examples/server/server.py"), "--mode", "threads",
                            "--port", "0", "--max-seconds", str(dur + 300),
                            "--max-requests", "100000000"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ready = json.loads(srv.stdout.readline())
    port = ready["port"]
    cm = subprocess.Popen([a.contactmap, "-p", str(srv.pid), "-v"]
                          + ([] if a.no_serve else ["--serve", "127.0.0.1:0"]),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = None
    while url is None and not a.no_serve:
        line = cm.stderr.readline()
        if not line:
            sys.exit("contactmap exited before serving")
    while a.no_serve:                   # traced once it says so
        line = cm.stderr.readline()
        if not line:
            sys.exit("contactmap exited before tracing")
        if "Ctrl-C to stop" in line:
            break
        if "serving metrics on " in line:
            url = line.split("serving metrics on ")[1].strip()
    threading.Thread(target=lambda: cm.stderr.read(), daemon=True).start()
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
        try:
            lgout = lg.communicate(timeout=120)[0]
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
               "loadgen": json.loads(lgout.strip().splitlines()[-1]) if lgout.strip() else None}
    print(json.dumps({k: v for k, v in summary.items() if k != "samples"}))
    if a.output:
        Path(a.output).write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
