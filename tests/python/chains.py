"""Known call chains for contactmap's Python tests (tests/test_python.py).

outer -> middle -> leaf spins on the CPU for --spin seconds; outer_s ->
middle_s -> sleeper sleeps --sleeps times for --sleep-ms. The last line of
stdout is the ground truth as JSON: pid, tid, this file, and the line numbers
of each call and of leaf's loop, read from this file's own code objects.
"""
import argparse
import json
import os
import threading
import time


def deep(k, deadline):
    if k > 0:
        return deep(k - 1, deadline)  # CALL_DEEP
    return leaf(deadline)


def leaf(deadline):
    n = 0
    while time.monotonic() < deadline:  # LEAF_LOOP
        n += 1  # LEAF_BODY
    return n


def middle(deadline):
    return leaf(deadline)  # CALL_LEAF


def outer(deadline, depth=0):
    if depth:
        return deep(depth, deadline)
    return middle(deadline)  # CALL_MIDDLE


def sleeper(k, ms):
    for _ in range(k):
        time.sleep(ms / 1000)  # SLEEP


def middle_s(k, ms):
    sleeper(k, ms)  # CALL_SLEEPER


def outer_s(k, ms):
    middle_s(k, ms)  # CALL_MIDDLE_S


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
    ap.add_argument("--spin", type=float, default=0.6)
    ap.add_argument("--sleeps", type=int, default=10)
    ap.add_argument("--sleep-ms", type=float, default=20)
    ap.add_argument("--depth", type=int, default=0, help="leaf under this many calls of deep()")
    a = ap.parse_args()
    outer(time.monotonic() + a.spin, a.depth)  # CALL_OUTER
    outer_s(a.sleeps, a.sleep_ms)
    print(json.dumps({"pid": os.getpid(), "tid": threading.get_native_id(),
                      "file": os.path.basename(__file__), "lines": lines(),
                      "spin_s": a.spin, "sleep_ms": a.sleeps * a.sleep_ms}))


if __name__ == "__main__":
    main()
