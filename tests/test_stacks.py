"""Stacks (-f): folded on-CPU and off-CPU stacks against a workload of known shape.

tests/workloads/stackwl.c runs outer_a -> middle_b -> spin_c (400 ms of CPU),
outer_a -> sleeper_d -> clock_nanosleep (10 x 20 ms), waiter_f blocked on a
mutex held for 200 ms, lib_spin_g in a dlopen'ed library (200 ms of CPU), and a
child that runs child_spin_h (150 ms) and exits early. It is built with frame
pointers (stackwl_fp) and without (stackwl): the chains must be whole either way.
"""
import re
from pathlib import Path

import pytest

from conftest import WORKLOADS, find_proc, wrap_run

pytestmark = pytest.mark.usefixtures("need_root")

LINE = re.compile(r"^[^;\s][^;]*(;[^;]+)* [1-9][0-9]*$")
# Off-CPU weight is the measured blocked time: the sleep (or hold) plus timer
# and wake-up latency, minus nothing. Allow -5% / +30%.
OFF_LO, OFF_HI = 0.95, 1.30
HZ = 99
# 400 ms of spinning at 99 Hz is ~40 samples; the heaviest on-CPU chain must
# be the spinning one, with at least half the samples its CPU time implies.
MIN_SAMPLE_SHARE = 0.5


def folded(tmp_path, binary, extra=()):
    out = tmp_path / "s.folded"
    lib = str(WORKLOADS / "libstackwl.so")
    r = wrap_run(tmp_path / "r.json", binary, lib, extra=["-f", str(out), *extra])
    assert r.rc == 0, r.describe()
    lines = out.read_text().splitlines()
    for l in lines:
        assert LINE.match(l), f"bad folded line: {l!r}"
        assert ";;" not in l
    stacks = {}
    for l in lines:
        frames, w = l.rsplit(" ", 1)
        assert frames not in stacks, f"duplicate stack line: {frames}"
        stacks[frames] = int(w)
    return r, stacks


def weight(stacks, chain, leaf=None, oncpu=True):
    """Total weight of stacks that contain CHAIN (consecutive frames) and,
    for off-CPU, end in the [off-cpu:LEAF] frame."""
    total = 0
    for frames, w in stacks.items():
        f = frames.split(";")
        is_off = f[-1].startswith("[off-cpu:")
        if oncpu == is_off:
            continue
        if leaf and f[-1] != f"[off-cpu:{leaf}]":
            continue
        n = len(chain)
        if any(f[i:i + n] == chain for i in range(len(f) - n + 1)):
            total += w
    return total


@pytest.mark.parametrize("binary", ["stackwl", "stackwl_fp"])
def test_folded_chains(tmp_path, binary):
    r, st = folded(tmp_path, binary)
    t = r.truth
    spin = weight(st, ["outer_a", "middle_b", "spin_c"])
    assert spin >= t["spin_ms"] / 1000 * HZ * MIN_SAMPLE_SHARE, spin
    # the spinning chain holds the most on-CPU samples of any function chain
    lib = weight(st, ["main", "lib_spin_g"])
    child = weight(st, ["main", "child_spin_h"])
    assert lib > 0, "frames of the dlopen'ed library did not resolve"
    assert child > 0, "the short-lived child was not symbolized"
    assert spin > lib and spin > child
    # the worker thread's chain reaches its entry: start_thread -> worker
    assert weight(st, ["start_thread", "worker", "outer_a", "middle_b", "spin_c"]) > 0
    sleep_us = weight(st, ["outer_a", "sleeper_d"], leaf="syscall:clock_nanosleep", oncpu=False)
    assert t["sleep_ms"] * 1000 * OFF_LO <= sleep_us <= t["sleep_ms"] * 1000 * OFF_HI, sleep_us
    futex_us = weight(st, ["waiter_f"], leaf="syscall:futex", oncpu=False)
    assert t["hold_ms"] * 1000 * OFF_LO * 0.9 <= futex_us <= t["hold_ms"] * 1000 * OFF_HI, futex_us
    # off-CPU stacks end in the kernel where they blocked
    assert any(k.endswith("schedule;[off-cpu:syscall:clock_nanosleep]") or
               "__schedule;[off-cpu:syscall:clock_nanosleep]" in k for k in st), \
        [k for k in st if "clock_nanosleep]" in k][:3]

    # the JSON report names the heaviest stacks behind each row
    p = find_proc(r.report, pid=t["pid"])
    top = p["stacks"]["oncpu"][0]["frames"]
    assert "spin_c" in top or "lib_spin_g" in top, top
    assert any("sleeper_d" in s["frames"] for s in p["stacks"]["offcpu"]["syscall:clock_nanosleep"])
    s = r.report["stacks"]
    if binary == "stackwl":
        assert s["user_unwind_methods"]["dwarf"] > 0
    assert r.report["lost"]["stack_ringbuf_full"] == 0


def test_only_oncpu_or_offcpu(tmp_path):
    _, on = folded(tmp_path, "stackwl", extra=["--stacks", "oncpu"])
    assert on and not any("[off-cpu:" in k for k in on)
    _, off = folded(tmp_path, "stackwl", extra=["--stacks", "offcpu"])
    assert off and all(k.split(";")[-1].startswith("[off-cpu:") for k in off)


def test_min_block_skips_short_blocks(tmp_path):
    # 20 ms sleeps are shorter than a 50 ms minimum: no sleep stacks, all counted
    r, st = folded(tmp_path, "stackwl", extra=["--min-block", "50000"])
    assert weight(st, ["sleeper_d"], leaf="syscall:clock_nanosleep", oncpu=False) == 0
    assert r.report["stacks"]["offcpu_skipped"] >= 10
    assert r.report["stacks"]["offcpu_skipped_ns"] >= 10 * 20_000_000 * OFF_LO


def test_flamegraph_renders(tmp_path):
    import subprocess
    r, st = folded(tmp_path, "stackwl")
    png = tmp_path / "fg.png"
    cp = subprocess.run(["/usr/bin/python3", "scripts/flamegraph.py", str(tmp_path / "s.folded"),
                         "-o", str(png)], capture_output=True, text=True,
                        cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert cp.returncode == 0, cp.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
