"""A server thread hands N requests to a worker thread over a queue and waits
for each answer; request i is marked (contactmap_mark.request) on the server
thread. The worker sleeps SLEEP_MS on every EVERY-th request and computes
(pure Python arithmetic) WORK_MS on the others. With --wait, waits for a line
on stdin first (so contactmap can attach). Prints the ground truth."""
import json
import os
import queue
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "python"))
import contactmap_mark  # noqa: E402


def spin(ms):
    end = time.thread_time() + ms / 1000
    x = 0
    while time.thread_time() < end:
        for i in range(2000):
            x += i * i
    return x


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n, every, sleep_ms, work_ms = (int(a) for a in (args + ["40", "10", "20", "2"])[:4])
    if "--wait" in sys.argv:
        sys.stdin.readline()
    req, resp = queue.Queue(), queue.Queue()

    def worker():
        while True:
            i = req.get()
            if i is None:
                return
            if i % every == 0:
                time.sleep(sleep_ms / 1000)
            else:
                spin(work_ms)
            resp.put(i)

    t = threading.Thread(target=worker, name="worker")
    t.start()
    for i in range(n):
        with contactmap_mark.request(i):
            req.put(i)
            resp.get()
    req.put(None)
    t.join()
    print(json.dumps({"workload": "requests_threads", "pid": os.getpid(), "requests": n,
                      "slept": [i for i in range(n) if i % every == 0],
                      "library": contactmap_mark.library}))


main()
