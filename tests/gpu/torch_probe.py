#!/usr/bin/env python3
"""PyTorch work with a known shape, for tests/gpu/check.sh (needs a GPU).

Run it under contactmap; its last stdout line is its own ground truth as JSON
(CUDA-event times, counts, CLOCK_MONOTONIC marks), which tests/gpu/verdicts.py
holds the report to. Parts (--parts, comma-separated):

  compute   a cuBLAS matmul on stream A and a cuDNN conv on stream B, ROUNDS
            rounds of ITERS each, one .item() sync per stream per round; the
            CUDA-event time of every round on each stream (the streams are
            busy from event to event, so that is their kernels' time)
  graph     a CUDA graph of K elementwise kernels, captured once (K launches
            that run nothing) and replayed N times; K from cudaGraphGetNodes
            where torch exposes the graph, else the K ops captured
  profiler  a torch.profiler block (kineto takes CUPTI over), then M
            elementwise kernels and .item() syncs after it
  fork      os.fork() a child that exits through sys.exit (atexit runs);
            the parent waits 20 s at most
  cublas    only matmuls (for --gpu uprobes: cuBLAS launches through the driver)
"""
import argparse
import ctypes
import json
import os
import sys
import time


def mono_ns():
    return time.monotonic_ns()   # CLOCK_MONOTONIC, the report's clock


def settle(torch):
    """Everything done, and a few of the agent's flush periods for its records."""
    torch.cuda.synchronize()
    time.sleep(0.5)


def part_compute(torch, truth, rounds, iters):
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = False
    a = torch.randn(2048, 2048, device=dev)
    b = torch.randn(2048, 2048, device=dev)
    x = torch.randn(16, 64, 64, 64, device=dev)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(dev)
    sa, sb = torch.cuda.Stream(), torch.cuda.Stream()
    # warm-up outside the measured rounds (cuBLAS handles, cuDNN plans)
    with torch.no_grad():
        (a @ b).sum().item()
        conv(x).sum().item()
    torch.cuda.synchronize()
    ms_a = ms_b = 0.0
    t0 = mono_ns()
    with torch.no_grad():
        for _ in range(rounds):
            ea0, ea1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            eb0, eb1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            with torch.cuda.stream(sa):
                ea0.record()
                c = a
                for _ in range(iters):
                    c = torch.mm(a, b)
                ea1.record()
            with torch.cuda.stream(sb):
                eb0.record()
                y = x
                for _ in range(iters):
                    y = conv(x)
                eb1.record()
            # .item(): a copy and a synchronize on each stream
            with torch.cuda.stream(sa):
                c[0, 0].item()
            with torch.cuda.stream(sb):
                y[0, 0, 0, 0].item()
            ms_a += ea0.elapsed_time(ea1)
            ms_b += eb0.elapsed_time(eb1)
    truth.update(compute_rounds=rounds, compute_iters=iters, matmul_event_ms=ms_a,
                 conv_event_ms=ms_b, compute_start_ns=t0, compute_end_ns=mono_ns())


def cuda_graph_nodes(torch, g):
    """Kernel nodes of the captured graph, through the runtime torch uses."""
    raw = getattr(g, "raw_cuda_graph", None)
    if raw is None:
        return None
    try:
        handle = ctypes.c_void_p(raw())
    except Exception:       # graph not kept (keep_graph=False) or older torch
        return None
    for name in ("libcudart.so.13", "libcudart.so.12", "libcudart.so"):
        try:
            rt = ctypes.CDLL(name)
            break
        except OSError:
            rt = None
    if rt is None:
        return None
    n = ctypes.c_size_t(0)
    if rt.cudaGraphGetNodes(handle, None, ctypes.byref(n)) != 0:
        return None
    nodes = (ctypes.c_void_p * n.value)()
    if rt.cudaGraphGetNodes(handle, nodes, ctypes.byref(n)) != 0:
        return None
    kernels = 0
    for i in range(n.value):
        t = ctypes.c_int(-1)
        if rt.cudaGraphNodeGetType(ctypes.c_void_p(nodes[i]), ctypes.byref(t)) == 0 and t.value == 0:
            kernels += 1   # cudaGraphNodeTypeKernel
    return kernels


def part_graph(torch, truth, k, replays):
    dev = torch.device("cuda")
    z = torch.ones(1 << 20, device=dev)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):           # warm-up, as torch asks before capture
        for _ in range(k):
            z.mul_(1.0001)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    try:
        # keep_graph (torch 2.7+): the cudaGraph_t stays to be counted, and
        # instantiate() is ours to call
        g, kept = torch.cuda.CUDAGraph(keep_graph=True), True
    except TypeError:
        g, kept = torch.cuda.CUDAGraph(), False
    with torch.cuda.graph(g):
        for _ in range(k):
            z.mul_(1.0001)
    nodes = cuda_graph_nodes(torch, g) if kept else None
    if kept:
        g.instantiate()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(replays):
        g.replay()
    e1.record()
    torch.cuda.synchronize()
    truth.update(graph_ops=k, graph_kernels=nodes if nodes is not None else k,
                 graph_kernels_from="cudaGraphGetNodes" if nodes is not None else "ops captured",
                 graph_replays=replays, graph_event_ms=e0.elapsed_time(e1), captured_launches=k)


def part_profiler(torch, truth, after):
    dev = torch.device("cuda")
    a = torch.randn(1024, 1024, device=dev)
    w = torch.ones(1 << 16, device=dev)
    t0 = mono_ns()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                            torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(20):
            a = a @ a
            a = a / a.norm()
        a.sum().item()
    t1 = mono_ns()
    cuda_events = sum(1 for e in prof.events() if str(getattr(e, "device_type", "")).endswith("CUDA"))
    # after the block: M kernels of exactly one each, and syncs
    for i in range(after):
        w.add_(1.0)
        if i % (max(after // 8, 1)) == 0:
            w[0].item()
    w[0].item()
    torch.cuda.synchronize()
    truth.update(profiler_start_ns=t0, profiler_end_ns=t1, profiler_cuda_events=cuda_events,
                 after_kernels=after, after_end_ns=mono_ns())


def part_fork(truth):
    t0 = mono_ns()
    pid = os.fork()
    if pid == 0:
        sys.exit(0)          # atexit handlers and libc's exit, as a child would
    status = None
    while (mono_ns() - t0) < 20 * 10**9:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            status = os.waitstatus_to_exitcode(st) if hasattr(os, "waitstatus_to_exitcode") else st >> 8
            break
        time.sleep(0.001)
    if status is None:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    truth.update(child_pid=pid, child_status=status if status is not None else -1,
                 child_ms=(mono_ns() - t0) / 1e6)


def part_cublas(torch, truth, iters):
    dev = torch.device("cuda")
    a = torch.randn(1024, 1024, device=dev)
    for _ in range(iters):
        a = torch.mm(a, a)
        a = a / a.norm()
    a.sum().item()
    truth.update(cublas_iters=iters)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="compute,graph,fork")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--graph-ops", type=int, default=8)
    ap.add_argument("--replays", type=int, default=20)
    ap.add_argument("--after", type=int, default=64)
    args = ap.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - {"compute", "graph", "profiler", "fork", "cublas"}
    if unknown:
        ap.error(f"unknown parts: {sorted(unknown)}")
    import torch
    if not torch.cuda.is_available():
        print("torch_probe: torch.cuda is not available", file=sys.stderr)
        return 3
    truth = {"pid": os.getpid(), "parts": parts, "torch": torch.__version__,
             "cuda": torch.version.cuda, "device": torch.cuda.get_device_name(0),
             "start_ns": mono_ns()}
    torch.zeros(1, device="cuda")      # CUDA up (the agent loads at cuInit)
    torch.cuda.synchronize()
    if "compute" in parts:
        part_compute(torch, truth, args.rounds, args.iters)
    if "graph" in parts:
        part_graph(torch, truth, args.graph_ops, args.replays)
    if "cublas" in parts:
        part_cublas(torch, truth, args.iters)
    settle(torch)
    if "profiler" in parts:
        part_profiler(torch, truth, args.after)
        settle(torch)
    if "fork" in parts:
        part_fork(truth)
    truth["end_ns"] = mono_ns()
    print(json.dumps(truth), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
