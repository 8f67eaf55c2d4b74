"""DataLoader-style workers for tests/test_python.py: a fork pool of 2
processes, each spinning in work() for --seconds. Last stdout line: JSON with
the parent's pid, the workers' pids and the line numbers of marked lines."""
import argparse
import json
import multiprocessing as mp
import os
import time


def work(seconds):
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:  # WORK_LOOP
        n += 1  # WORK_BODY
    return os.getpid()


def lines():
    out = {}
    with open(__file__) as f:
        for i, text in enumerate(f, 1):
            if "  # " in text and text.rstrip().split("# ")[-1].isupper():
                out[text.rstrip().split("# ")[-1]] = i
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=1.0)
    a = ap.parse_args()
    with mp.get_context("fork").Pool(2) as pool:
        pids = pool.map(work, [a.seconds, a.seconds], chunksize=1)
    print(json.dumps({"pid": os.getpid(), "workers": sorted(set(pids)), "file": "pool.py",
                      "lines": lines()}))
