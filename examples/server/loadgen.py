#!/usr/bin/env python3
"""Open-loop load generator for server.py: Poisson arrivals at a fixed rate.

    loadgen.py --port P --rate 100 --duration 20 [--mix mlp=0.5,cnn=0.25,lstm=0.25]
               [--batch 1-8]

Arrival times are drawn up front (exponential gaps at --rate per second, a
fixed --seed), and each request is started at its time whether or not earlier
ones have finished (open loop: a slow server does not slow the arrivals, so
queueing shows up in the latencies instead of being hidden). Latency is
measured from a request's *scheduled* arrival to the last byte of its reply,
so a late start of the generator itself counts against the server rather than
vanishing (no coordinated omission; the generator's own lateness is reported
as dispatch_lag). One connection per request, as the server speaks it.

Bounded: at most --max-outstanding requests in flight (more are counted as
`shed`, not sent), each request times out after --timeout seconds, and the run
ends --grace seconds after the last arrival at the latest. Prints one JSON line:
sent, completed, errors, shed, throughput, latency p50/p95/p99 (overall and
per model). Needs no torch.
"""
import argparse
import asyncio
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import NAMES, random_payload  # noqa: E402  (no torch import)


def parse_mix(s):
    mix = {}
    for part in s.split(","):
        name, _, w = part.partition("=")
        name = name.strip()
        if name not in NAMES:
            raise SystemExit(f"loadgen: unknown model {name!r} in --mix (models: {', '.join(NAMES)})")
        try:
            mix[name] = float(w) if w else 1.0
        except ValueError:
            raise SystemExit(f"loadgen: bad weight in --mix: {part!r}")
    total = sum(mix.values())
    if total <= 0:
        raise SystemExit("loadgen: --mix weights must add up to more than 0")
    return {k: v / total for k, v in mix.items()}


def percentiles(xs):
    if not xs:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "mean_ms": None, "max_ms": None}
    xs = sorted(xs)

    def q(p):
        return round(xs[min(len(xs) - 1, int(len(xs) * p / 100))] * 1e3, 3)
    return {"p50_ms": q(50), "p95_ms": q(95), "p99_ms": q(99),
            "mean_ms": round(sum(xs) / len(xs) * 1e3, 3), "max_ms": round(xs[-1] * 1e3, 3)}


async def one_request(host, port, model, body, timeout):
    """Returns (ok, status or error string)."""
    req = (f"POST /infer/{model} HTTP/1.1\r\nHost: {host}\r\n"
           f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n"
           f"Connection: close\r\n\r\n").encode() + body

    async def go():
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(req)
            await writer.drain()
            data = await reader.read()      # until the server closes
        finally:
            writer.close()
        line = data.split(b"\r\n", 1)[0].split()
        status = int(line[1]) if len(line) >= 2 and line[1].isdigit() else 0
        return status == 200, status
    try:
        return await asyncio.wait_for(go(), timeout)
    except asyncio.TimeoutError:
        return False, "timeout"
    except OSError as e:
        return False, type(e).__name__


async def run(args, mix):
    rng = random.Random(args.seed)
    names, weights = list(mix), [mix[n] for n in mix]
    lo, hi = args.batch
    # two different bodies per model and batch size; a request draws its size
    # uniformly from [lo, hi] (varying sizes: the server's allocator churns)
    bodies = {(n, b): [random_payload(n, b, rng) for _ in range(2)]
              for n in names for b in range(lo, hi + 1)}
    arrivals = []
    t = 0.0
    while True:
        t += rng.expovariate(args.rate)
        if t >= args.duration:
            break
        n = rng.choices(names, weights)[0]
        arrivals.append((t, n, rng.choice(bodies[(n, rng.randint(lo, hi))])))

    results = []            # (model, scheduled_at, latency_s, ok, status)
    lags = []
    outstanding = set()
    shed = 0

    async def fire(at, model, body):
        ok, status = await one_request(args.host, args.port, model, body, args.timeout)
        results.append((model, at, time.monotonic() - at, ok, status))

    loop_start = time.monotonic()
    for offset, model, body in arrivals:
        at = loop_start + offset
        delay = at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append(max(0.0, time.monotonic() - at))
        if len(outstanding) >= args.max_outstanding:
            shed += 1
            continue
        task = asyncio.ensure_future(fire(at, model, body))
        outstanding.add(task)
        task.add_done_callback(outstanding.discard)
    end_send = time.monotonic()
    if outstanding:
        await asyncio.wait(list(outstanding), timeout=args.grace)
    for task in list(outstanding):
        task.cancel()
    elapsed = time.monotonic() - loop_start

    ok = [r for r in results if r[3]]
    errors = {}
    for r in results:
        if not r[3]:
            errors[str(r[4])] = errors.get(str(r[4]), 0) + 1
    unfinished = len(arrivals) - shed - len(results)
    if unfinished:
        errors["unfinished"] = unfinished
    window = max(args.duration, end_send - loop_start)
    out = {
        "rate": args.rate, "duration_s": args.duration, "mix": mix,
        "batch": f"{lo}-{hi}" if hi > lo else lo,
        "scheduled": len(arrivals), "sent": len(arrivals) - shed, "completed": len(ok),
        "errors": sum(errors.values()), "error_kinds": errors, "shed": shed,
        "elapsed_s": round(elapsed, 3),
        "throughput_rps": round(len(ok) / window, 2),
        "latency_ms": percentiles([r[2] for r in ok]),
        "by_model": {n: {"completed": sum(1 for r in ok if r[0] == n),
                         **percentiles([r[2] for r in ok if r[0] == n])} for n in names},
        "dispatch_lag_ms": percentiles(lags),
    }
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rate", type=float, required=True, help="requests per second (mean)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of arrivals")
    ap.add_argument("--mix", default="mlp=0.5,cnn=0.25,lstm=0.25",
                    help="model=weight,... (default mlp=0.5,cnn=0.25,lstm=0.25)")
    ap.add_argument("--batch", default="1",
                    help="items per request: N, or A-B for a uniform draw per request (default 1)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    ap.add_argument("--grace", type=float, default=10.0,
                    help="seconds to wait for replies after the last arrival")
    ap.add_argument("--max-outstanding", type=int, default=256)
    ap.add_argument("-o", "--output", help="also write the JSON result here")
    args = ap.parse_args()
    try:
        lo, _, hi = args.batch.partition("-")
        args.batch = (int(lo), int(hi or lo))
    except ValueError:
        ap.error(f"--batch: give N or A-B, not {args.batch!r}")
    if args.rate <= 0 or args.duration <= 0 or args.duration > 3600:
        ap.error("--rate and --duration must be positive (duration at most 3600 s)")
    if not 1 <= args.batch[0] <= args.batch[1] <= 64:
        ap.error("--batch: sizes from 1 to 64, A <= B")
    out = asyncio.run(run(args, parse_mix(args.mix)))
    line = json.dumps(out)
    print(line, flush=True)
    if args.output:
        with open(args.output, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
