#!/usr/bin/env python3
"""A small PyTorch CPU inference loop, the bundled example workload.

Random weights, no downloads. A producer thread prepares request batches and
hands them over a queue (futex waits); the main thread runs a small MLP and
CNN on batches of varying size (allocator churn: brk/mmap/munmap and page
faults); results are appended to a log file (write) now and then.

    python3 examples/infer.py [--iters N] [--log FILE] [--lat-out FILE]

--lat-out writes one line per inference, "START_NS LATENCY_NS" (CLOCK_MONOTONIC),
for benchmarks that attach a tracer to part of a long run.
"""
import argparse
import os
import queue
import tempfile
import threading
import time

import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4))
        self.mlp = nn.Sequential(
            nn.Linear(32 * 16, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
            nn.Linear(512, 10))

    def forward(self, x):
        return self.mlp(self.conv(x).flatten(1))


def producer(q, iters, seed):
    g = torch.Generator().manual_seed(seed)
    for i in range(iters):
        batch = 1 + (i * 7) % 32          # varying sizes: allocator churn
        q.put(torch.rand(batch, 3, 32, 32, generator=g))
    q.put(None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--log", default=None)
    ap.add_argument("--lat-out", default=None)
    args = ap.parse_args()

    torch.manual_seed(0)
    model = Model().eval()
    q = queue.Queue(maxsize=4)
    t = threading.Thread(target=producer, args=(q, args.iters, 1), name="producer")
    t.start()
    log_path = args.log or os.path.join(tempfile.gettempdir(), "contactmap-infer.log")
    lat = []
    lat_out = open(args.lat_out, "w", buffering=1) if args.lat_out else None
    with open(log_path, "w") as log, torch.inference_mode():
        while True:
            x = q.get()
            if x is None:
                break
            t0 = time.perf_counter()
            m0 = time.monotonic_ns() if lat_out else 0
            y = model(x)
            lat.append(time.perf_counter() - t0)
            if lat_out:
                lat_out.write(f"{m0} {int(lat[-1] * 1e9)}\n")
            if len(lat) % 10 == 0:
                log.write(f"{len(lat)} {y.argmax(1).tolist()}\n")
                log.flush()
    t.join()
    if lat_out:
        lat_out.close()
    lat.sort()
    n = len(lat)
    print(f"infer: {n} batches, p50 {lat[n // 2] * 1e3:.2f} ms, "
          f"p99 {lat[min(n - 1, n * 99 // 100)] * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
