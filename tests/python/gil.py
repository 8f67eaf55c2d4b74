"""GIL and queue waits of known shape for tests/test_python.py.

--mode spin: THREADS threads each spin on pure-Python work for SECONDS; only
one can hold the GIL at a time, so each waits for it most of the time it is
not running. --mode queue: THREADS consumer threads block in queue.get() (a
lock: a futex wait that is not the GIL) while the main thread puts an item
every PERIOD_MS for SECONDS. The last stdout line is JSON: pid and the
worker threads' tids and names.
"""
import argparse
import json
import os
import queue
import threading
import time


def spin(deadline):
    n = 0
    while time.monotonic() < deadline:  # SPIN_LOOP
        n += 1  # SPIN_BODY
    return n


def consume(q, out):
    while True:
        item = q.get()  # QUEUE_GET
        if item is None:
            return
        out.append(item)


def lines():
    """Line numbers of the marked lines of this file."""
    out = {}
    with open(__file__) as f:
        for i, text in enumerate(f, 1):
            if "  # " in text and text.rstrip().split("# ")[-1].isupper():
                out[text.rstrip().split("# ")[-1]] = i
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=("spin", "queue"), default="spin")
    ap.add_argument("--threads", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--period-ms", type=float, default=50)
    a = ap.parse_args()
    tids, got = [], []
    ready = threading.Barrier(a.threads + 1)

    def run(target, *args):
        tids.append(threading.get_native_id())
        ready.wait()
        target(*args)

    if a.mode == "spin":
        deadline = time.monotonic() + a.seconds
        ts = [threading.Thread(target=run, args=(spin, deadline), name=f"spinner-{i}")
              for i in range(a.threads)]
    else:
        q = queue.Queue()
        ts = [threading.Thread(target=run, args=(consume, q, got), name=f"consumer-{i}")
              for i in range(a.threads)]
    for t in ts:
        t.start()
    ready.wait()
    if a.mode == "queue":
        end = time.monotonic() + a.seconds
        while time.monotonic() < end:
            q.put(1)
            time.sleep(a.period_ms / 1000)
        for _ in ts:
            q.put(None)
    for t in ts:
        t.join()
    print(json.dumps({"pid": os.getpid(), "main_tid": threading.get_native_id(),
                      "tids": tids, "items": len(got), "file": os.path.basename(__file__),
                      "lines": lines()}))


if __name__ == "__main__":
    main()
