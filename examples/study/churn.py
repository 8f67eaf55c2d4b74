#!/usr/bin/env python3
"""Allocator churn, in one process: the study's request mix through
models.infer() with no server around it, timed by this process's own CPU
clock and counted in page faults (getrusage).

    churn.py [--requests 300] [--reps 3]

Prints one JSON line: the best (least disturbed) of --reps passes, CPU ms and
minor faults per request. The study runs it with and without
GLIBC_TUNABLES that stop malloc from giving memory back to the kernel: the
difference is what allocator churn costs per request on this machine.
"""
import argparse
import json
import os
import random
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
import models  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch-max", type=int, default=8)
    args = ap.parse_args()
    models.load()
    rng = random.Random(1)
    payloads = {(n, b): models.random_payload(n, b, rng)
                for n in models.NAMES for b in range(1, args.batch_max + 1)}
    for key, p in payloads.items():          # warm: every shape once
        models.infer(key[0], p)
    mix = ["mlp", "mlp", "cnn", "lstm"]      # the study's mlp=0.5,cnn=0.25,lstm=0.25
    best = None
    for _ in range(args.reps):
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        c0 = time.process_time()
        for _ in range(args.requests):
            n = rng.choice(mix)
            models.infer(n, payloads[(n, rng.randint(1, args.batch_max))])
        cpu = (time.process_time() - c0) * 1e3 / args.requests
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0.ru_minflt) / args.requests
        if best is None or cpu < best[0]:
            best = (cpu, faults)
    print(json.dumps({"requests": args.requests, "reps": args.reps,
                      "cpu_ms_per_request": round(best[0], 4),
                      "faults_per_request": round(best[1], 2),
                      "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")}))


if __name__ == "__main__":
    main()
