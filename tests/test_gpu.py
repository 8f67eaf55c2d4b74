"""GPU work in the contact map, without a GPU.

tests/gpu_fakes/ builds a fake CUDA driver (libcuda.so.1), a fake CUPTI
(libcupti.so.13) and gpu_app, a program with a known plan of launches, copies,
graph launches and synchronize calls. The fake CUPTI turns each call into the
callbacks and CUDA 13 activity records the real one would deliver, with device
times that are a function of the call (fake_cupti.c says which), so the
report's GPU rows can be asserted exactly:

- the CUPTI tier (wrap mode): the agent's records through its hook, with the
  fake CUPTI's scenarios (calibrated clock, zero timestamps, dropped records,
  correlation ids that wrap, another profiler holding CUPTI);
- the uprobe tier: uprobes on the fake libcuda.so.1 and on the real
  libcudart.so.13 (which refuses the fake driver, so its calls fail, with
  known sizes), in attach mode and as the agent's fallback;
- synchronize calls that spin and block land in GPU wait, not in CPU or futex.

Without the CUDA toolkit (/usr/local/cuda) nothing here can be built: every
test skips, and the run's summary says so.
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import (OUTPUT, REPO, RUN_TIMEOUT_S, assert_no_problems, contactmap_bin,
                      find_proc, ledger_problems, schema_problems, skip_loudly)

pytestmark = pytest.mark.usefixtures("need_root")

CUDA_HOME = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda"))
FAKES = OUTPUT / "gpu_fakes"
AGENT = OUTPUT / "libcontactmap-cupti.so"
NO_CUDA_REASON = (f"NOT RUN: the GPU tests need the CUDA toolkit's headers ({CUDA_HOME}/include/"
                  "cupti.h) to build the CUPTI agent and the fake driver; install it or set "
                  "CUDA_HOME, then `make test-bins`")

# Synchronize calls in the fake driver: spin this long on CPU, then block.
SPIN_US, BLOCK_US = 2000, 3000
# On-CPU spin can lose time to preemption (that part is run-queue wait, not
# spin); a futex wait with a timeout never returns early but may overshoot by
# timer slack and wake-up latency.
SPIN_LOW, SPIN_HIGH = 0.5, 1.25
BLOCK_LOW, BLOCK_HIGH = 0.9, 1.6

PLAN = dict(launches=10, grid=5, copies=3, bytes=10000, dtod=2, memsets=2, graphs=3,
            graph_kernels=7, syncs=4, stream_syncs=2, rt_copies=5, rt_launches=3, rt_syncs=2)


@pytest.fixture(autouse=True)
def need_cuda(request):
    if not (CUDA_HOME / "include" / "cupti.h").exists():
        skip_loudly(request, NO_CUDA_REASON)
    for p in (FAKES / "gpu_app", FAKES / "libcuda.so.1", FAKES / "libcupti.so.13", AGENT):
        if not p.exists():
            pytest.fail(f"{p} is not built: run `make all test-bins`", pytrace=False)


def plan_args(plan):
    out = []
    for k, v in plan.items():
        out += ["--" + k.replace("_", "-"), str(v)]
    return out


def fake_env(scenario=None, spin=SPIN_US, block=BLOCK_US, **extra):
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = str(FAKES)   # the fake libcuda.so.1 and libcupti.so.13
    env["FAKE_CUDA_SPIN_US"] = str(spin)
    env["FAKE_CUDA_BLOCK_US"] = str(block)
    env.pop("FAKE_CUPTI", None)
    env.pop("CUDA_INJECTION64_PATH", None)
    if scenario:
        env["FAKE_CUPTI"] = scenario
    env.update({k: str(v) for k, v in extra.items()})
    return env


class GpuRun:
    def __init__(self, proc, report_path, argv):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.argv = argv
        self.report = json.loads(Path(report_path).read_text()) if Path(report_path).exists() else None
        self.truth = None
        for line in reversed(self.stdout.splitlines()):
            if line.startswith("{"):
                self.truth = json.loads(line)
                break

    def describe(self):
        return f"argv={self.argv}\nrc={self.rc}\nstderr(tail)={self.stderr[-3000:]}"

    def proc(self):
        assert self.report is not None and self.truth is not None, self.describe()
        return find_proc(self.report, pid=self.truth["pid"])

    def gpu(self):
        p = self.proc()
        assert "gpu" in p, f"no gpu object in process {p['pid']}\n{self.describe()}"
        return p["gpu"]


def wrap(tmp_path, plan, env, extra=(), prog="gpu_app", args=None):
    out = tmp_path / "r.json"
    argv = [contactmap_bin(), *extra, "-o", str(out), "--", str(FAKES / prog)]
    argv += args if args is not None else plan_args(plan)
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=RUN_TIMEOUT_S)
    r = GpuRun(proc, out, argv)
    assert r.rc == 0, r.describe()
    return r


def api_rows(g):
    return {a["name"]: a for a in g["api"]}


def assert_api(g, want, tier):
    """want: {name: (count, bytes)}; every API row of the report, exactly."""
    rows = api_rows(g)
    got = {n: (a["count"], a["bytes"]) for n, a in rows.items()}
    assert got == want, f"API rows differ:\n got  {got}\n want {want}"
    for a in g["api"]:
        assert a["tier"] == tier, a
        assert a["total_ns"] > 0 and a["max_ns"] <= a["total_ns"], a
        assert sum(a["hist_log2_ns"]) == a["count"], a


def copies(g, key=("kind", "memory")):
    return {tuple(c[k] for k in key): c for c in g["copies"]}


def assert_gpu_wait(r, nsyncs, spin_us=SPIN_US, block_us=BLOCK_US, single_thread=True):
    """Synchronize calls: their on-CPU spin and blocked time are GPU wait."""
    p = r.proc()
    g = p["gpu"]
    s = g["sync"]
    assert s["count"] == nsyncs, s
    spin, block = nsyncs * spin_us * 1000, nsyncs * block_us * 1000
    assert SPIN_LOW * spin <= s["spin_ns"] <= SPIN_HIGH * spin, (s, spin)
    assert BLOCK_LOW * block <= s["blocked_ns"] <= BLOCK_HIGH * block + 2_000_000, (s, block)
    # the rest of the calls' wall time was spent waiting for a CPU
    assert s["wait_ns"] >= s["spin_ns"] + s["blocked_ns"], s
    L = p["ledger"]
    assert L["oncpu_gpu_wait_ns"] == s["spin_ns"], (L, s)
    assert L["offcpu_by_cause"].get("gpu:sync", 0) == s["blocked_ns"], (L, s)
    # the fake driver blocks in futex(): none of that is futex time (with
    # threads, pthread_join and lock contention are futex waits of their own)
    if single_thread:
        assert L["offcpu_by_cause"].get("syscall:futex", 0) < 0.05 * s["blocked_ns"], L
    row = [c for c in p["contact_map"] if c["subsystem"] == "gpu"]
    assert row and row[0]["time_ns"] == s["spin_ns"] + s["blocked_ns"] + g["driver_ioctl_ns"], \
        p["contact_map"]
    assert row[0]["oncpu_ns"] >= s["spin_ns"] and row[0]["label"] == "GPU wait", row
    top = [c for c in r.report["contact_map"] if c["subsystem"] == "gpu"]
    assert top and top[0]["time_ns"] >= row[0]["time_ns"], r.report["contact_map"]
    assert "GPU wait" in r.stderr, r.stderr[-3000:]


# ---------------------------------------------------------------------------
# CUPTI tier

CUPTI_API = {
    "cuLaunchKernel": (10, 0), "cudaLaunchKernel": (3, 0), "cuGraphLaunch": (3, 0),
    "cuMemcpyHtoD": (6, 60000), "cuMemcpyDtoH": (6, 60000), "cuMemcpyDtoD": (2, 20000),
    "cuMemsetD8": (2, 20000), "cudaMemcpy": (5, 50000),
    "cuCtxSynchronize": (4, 0), "cuStreamSynchronize": (2, 0), "cudaDeviceSynchronize": (2, 0),
    "cuMemAlloc": (2, 20000), "cuMemAllocHost": (1, 10000), "cuMemFree": (2, 0),
    "cuMemFreeHost": (1, 0),
}


def assert_cupti_device_rows(g, plan, mult=1, untimed_kernels=0, untimed_graph=0):
    launches = (plan["launches"] + plan["rt_launches"]) * mult
    graph = plan["graphs"] * plan["graph_kernels"] * mult
    kern = {(k["device"], k["stream"], k["graph"]): k for k in g["kernels"]}
    assert set(kern) == {(0, 7, False), (0, 7, True)}, g["kernels"]
    k, kg = kern[(0, 7, False)], kern[(0, 7, True)]
    assert (k["count"], k["untimed"]) == (launches, untimed_kernels), k
    assert k["total_ns"] == (launches - untimed_kernels) * plan["grid"] * 1000, k
    assert (kg["count"], kg["untimed"]) == (graph, untimed_graph), kg
    assert kg["total_ns"] == (graph - untimed_graph) * 2000, kg
    assert all(x["tier"] == "cupti" for x in g["kernels"])
    assert g["graph_kernels"] == graph

    B, n, rt = plan["bytes"], plan["copies"] * mult, plan["rt_copies"] * mult
    want = {
        ("HtoD", "pinned"): (n + rt, (n + rt) * B, (n + rt) * B // 10, 10**10),
        ("HtoD", "pageable"): (n, n * B, n * B // 4, 4 * 10**9),
        ("DtoH", "pinned"): (n, n * B, n * B // 10, 10**10),
        ("DtoH", "pageable"): (n, n * B, n * B // 4, 4 * 10**9),
        ("DtoD", "device"): (plan["dtod"] * mult, plan["dtod"] * mult * B,
                             plan["dtod"] * mult * B // 100, 10**11),
    }
    got = {key: (c["count"], c["bytes"], c["total_ns"], c["bandwidth_bytes_per_s"])
           for key, c in copies(g).items()}
    assert got == want, f"copies:\n got  {got}\n want {want}"
    for c in g["copies"]:
        assert (c["tier"], c["time"], c["untimed"]) == ("cupti", "device", 0), c
    m = plan["memsets"] * mult
    assert [(x["memory"], x["count"], x["bytes"], x["total_ns"]) for x in g["memsets"]] == \
        [("device", m, m * B, m * B // 50)], g["memsets"]


def test_cupti_tier_exact(tmp_path):
    r = wrap(tmp_path, PLAN, fake_env())
    g = r.gpu()
    assert g["tier"] == "cupti" and g["device_times"] is True, g
    assert g["agent"] == {"status": "cupti", "clock": "monotonic", "clock_offset_ns": 0,
                          "clock_check": "agrees", "final_flush": True,
                          "cupti_version": 130001, "driver_version": 13000}, g["agent"]
    assert r.report["gpu"]["agent"] is True and r.report["gpu"]["uprobes_attached"] == 0
    # runtime calls over driver calls are counted once, at the runtime
    assert_api(g, CUPTI_API, "cupti")
    assert_cupti_device_rows(g, PLAN)
    assert g["sync"]["records"] == {
        "context_synchronize": {"count": 6, "total_ns": g["sync"]["records"]["context_synchronize"]["total_ns"]},
        "stream_synchronize": {"count": 2, "total_ns": g["sync"]["records"]["stream_synchronize"]["total_ns"]},
    }, g["sync"]
    assert g["cupti_overhead"] == {"count": 1, "total_ns": 5000}
    assert (g["dropped_records"], g["untimed_records"], g["bad_records"]) == (0, 0, 0), g
    assert g["records"] > 0 and g["hook_calls"] > 0
    assert_gpu_wait(r, 8)
    assert_no_problems(schema_problems(r.report), "schema")
    assert_no_problems(ledger_problems(r.report), "ledger")
    # the agent's flush thread and CUPTI's worker (which waits all run long and
    # never hands a buffer back here) are contactmap's cost: not in the ledger
    assert r.report["observer"]["agent_threads"]["count"] == 2, r.report["observer"]
    assert [t["comm"] for t in r.proc()["threads"]] == ["gpu_app"], r.proc()["threads"]
    # one gettid per thread, not one per API record
    gettid = [c["count"] for c in r.proc()["syscalls"] if c["name"] == "gettid"]
    assert sum(gettid) <= 4, r.proc()["syscalls"]
    # the text map shows the GPU section, tier named
    assert "GPU  tier cupti: device times from CUPTI, clock monotonic" in r.stderr, r.stderr[-3000:]
    assert "HtoD pinned" in r.stderr


def test_cupti_threads(tmp_path):
    """Three threads run the plan at once: three times the rows, and each
    thread's own ledger holds its own GPU wait."""
    plan = dict(PLAN, threads=3)
    r = wrap(tmp_path, plan, fake_env())
    g = r.gpu()
    assert_api(g, {k: (c * 3, b * 3) for k, (c, b) in CUPTI_API.items()}, "cupti")
    assert_cupti_device_rows(g, PLAN, mult=3)
    assert_gpu_wait(r, 24, single_thread=False)
    workers = [t for t in r.proc()["threads"] if t["ledger"]["offcpu_by_cause"].get("gpu:sync")]
    assert len(workers) == 3, [t["ledger"] for t in r.proc()["threads"]]
    for t in workers:
        assert t["ledger"]["oncpu_gpu_wait_ns"] >= SPIN_LOW * 8 * SPIN_US * 1000, t
    assert_no_problems(ledger_problems(r.report), "ledger")


def test_two_processes(tmp_path):
    """Two CUDA programs under one contactmap: each process has its own GPU
    rows and its own GPU wait, none mixed with the other's."""
    app = str(FAKES / "gpu_app")
    args = " ".join(plan_args(PLAN))
    out = tmp_path / "r.json"
    argv = [contactmap_bin(), "-o", str(out), "--", "/bin/sh", "-c",
            f"{app} {args} & {app} {args} --launches 4; wait"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=fake_env(), cwd=REPO,
                          timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rep = json.loads(out.read_text())
    truths = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]
    assert len(truths) == 2, proc.stdout
    for t in truths:
        p = find_proc(rep, pid=t["pid"])
        g = p["gpu"]
        assert g["tier"] == "cupti", g
        assert api_rows(g)["cuLaunchKernel"]["count"] == t["launches"], (t, api_rows(g)["cuLaunchKernel"])
        k = [x for x in g["kernels"] if not x["graph"]][0]
        assert k["count"] == t["launches"] + PLAN["rt_launches"], k
        assert g["sync"]["count"] == 8, g["sync"]
        assert p["ledger"]["offcpu_by_cause"].get("gpu:sync") == g["sync"]["blocked_ns"]
    assert rep["observer"]["agent_threads"]["count"] == 4    # flush thread + CUPTI worker, twice
    assert_no_problems(ledger_problems(rep), "ledger")


def test_cupti_calibrated_clock(tmp_path):
    """No timestamp callback: CUPTI keeps CLOCK_REALTIME and the agent
    calibrates an offset; device times come out the same."""
    r = wrap(tmp_path, PLAN, fake_env("noclockcb"))
    g = r.gpu()
    assert g["agent"]["clock"] == "calibrated", g["agent"]
    assert abs(g["agent"]["clock_offset_ns"]) > 10**15, g["agent"]   # realtime - monotonic
    assert_cupti_device_rows(g, PLAN)
    # CUPTI's sync records, moved to CLOCK_MONOTONIC, agree with the calls' own
    # spans (the offset is calibrated to within microseconds)
    rec = g["sync"]["records"]["context_synchronize"]["total_ns"]
    assert abs(rec - g["sync"]["api_total_ns"]) < 0.5 * g["sync"]["api_total_ns"], g["sync"]


def test_cupti_zero_timestamps_dropped_and_wrapping_ids(tmp_path):
    """Every 3rd kernel record without timestamps (counted, not timed), 5
    records dropped by CUPTI (reported, also under lost), and correlation ids
    that wrap past 2^32 in the middle of the run: the 21 kernels of the 3 graph
    launches still belong to their graph launches."""
    r = wrap(tmp_path, PLAN, fake_env("zerots=3,dropped=5,corrbase=0xfffffff0"))
    g = r.gpu()
    # kernel records in order: 10 launches, 21 graph kernels, 3 runtime launches
    seq = [False] * 10 + [True] * 21 + [False] * 3
    untimed = [False if (i + 1) % 3 else True for i in range(len(seq))]
    u_plain = sum(1 for gr, u in zip(seq, untimed) if u and not gr)
    u_graph = sum(1 for gr, u in zip(seq, untimed) if u and gr)
    assert_cupti_device_rows(g, PLAN, untimed_kernels=u_plain, untimed_graph=u_graph)
    assert g["untimed_records"] == u_plain + u_graph
    assert g["dropped_records"] == 5
    assert r.report["lost"]["gpu_cupti_dropped_records"] == 5
    assert "CUPTI dropped 5 activity records" in r.stderr
    assert "5 records dropped by CUPTI" in r.stderr


def test_cupti_held_by_another_profiler_falls_back_to_uprobes(tmp_path):
    r = wrap(tmp_path, PLAN, fake_env("multisub"))
    assert "another profiler already holds CUPTI" in r.stderr, r.stderr[-2000:]
    g = r.gpu()
    assert g["tier"] == "uprobes" and g["device_times"] is False, g
    assert g["agent"]["status"] == "multiple_subscribers", g["agent"]
    assert r.report["gpu"]["uprobe_requests"] == 1 and r.report["gpu"]["uprobes_attached"] > 0
    assert_uprobe_driver_rows(g, PLAN)
    assert_gpu_wait(r, 8)
    assert "GPU  tier uprobes: API spans, no device times (CUPTI: multiple_subscribers)" in r.stderr


# ---------------------------------------------------------------------------
# uprobe tier

# The fakert_* stand-ins are not runtime entry points the uprobes know: their
# driver calls count as driver calls.
UPROBE_DRIVER_API = {
    "cuLaunchKernel": (13, 0), "cuGraphLaunch": (3, 0),
    "cuMemcpyHtoD": (11, 110000), "cuMemcpyDtoH": (6, 60000), "cuMemcpyDtoD": (2, 20000),
    "cuMemsetD8": (2, 20000), "cuCtxSynchronize": (6, 0), "cuStreamSynchronize": (2, 0),
    "cuMemAlloc": (2, 20000), "cuMemAllocHost": (1, 10000), "cuMemFree": (2, 0),
    "cuMemFreeHost": (1, 0),
}


def assert_uprobe_driver_rows(g, plan, extra=None):
    assert_api(g, dict(UPROBE_DRIVER_API, **(extra or {})), "uprobes")
    B, n, rt = plan["bytes"], plan["copies"], plan["rt_copies"]
    # pinned vs pageable from the pinned ranges the uprobes saw allocated
    got = {k: (c["count"], c["bytes"]) for k, c in copies(g).items()}
    assert got == {("HtoD", "pinned"): (n + rt, (n + rt) * B), ("HtoD", "pageable"): (n, n * B),
                   ("DtoH", "pinned"): (n, n * B), ("DtoH", "pageable"): (n, n * B),
                   ("DtoD", "device"): (plan["dtod"], plan["dtod"] * B)}, got
    for c in g["copies"]:
        assert (c["tier"], c["time"]) == ("uprobes", "api") and c["total_ns"] > 0, c
    assert [(m["count"], m["bytes"]) for m in g["memsets"]] == [(plan["memsets"], plan["memsets"] * B)]
    assert g["kernels"] == [], "uprobes see no device times"


def test_uprobes_forced_in_wrap_mode(tmp_path):
    r = wrap(tmp_path, PLAN, fake_env(), extra=["--gpu", "uprobes"])
    g = r.gpu()
    assert g["tier"] == "uprobes" and g["agent"]["status"] == "forced_uprobes", g
    assert_uprobe_driver_rows(g, PLAN)
    assert_gpu_wait(r, 8)
    assert_no_problems(ledger_problems(r.report), "ledger")


def test_uprobes_attach_mode_real_cudart(tmp_path):
    """contactmap -p on a running program: uprobes on the real libcudart.so.13
    (its calls fail against the fake driver, with known sizes) and on the fake
    libcuda.so.1, whose synchronize calls spin and block."""
    plan = dict(PLAN, cudart=4)
    out = tmp_path / "r.json"
    app = subprocess.Popen([str(FAKES / "gpu_app"), "--wait-stdin", *plan_args(plan)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                           env=fake_env())
    cm = None
    try:
        assert app.stdout.readline().strip() == "ready"
        cm = subprocess.Popen([contactmap_bin(), "-v", "-p", str(app.pid), "-o", str(out)],
                              stderr=subprocess.PIPE, text=True, cwd=REPO)
        seen = []
        for line in cm.stderr:
            seen.append(line)
            if "probed in" in line and "libcuda.so.1" in line:
                break
        assert any("libcudart.so.13" in l for l in seen), "".join(seen)
        app.stdin.write("go\n")
        app.stdin.flush()
        app_out, _ = app.communicate(timeout=RUN_TIMEOUT_S)
        _, rest = cm.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        for p in (app, cm):
            if p and p.poll() is None:
                p.kill()
    assert app.returncode == 0 and cm.returncode == 0, "".join(seen) + rest
    proc = subprocess.CompletedProcess(cm.args, cm.returncode, app_out, "".join(seen) + rest)
    r = GpuRun(proc, out, cm.args)
    t = r.truth
    assert t["cudart_calls"] == 1 + 3 * 4 and t["cudart_errors"] == t["cudart_calls"], t
    g = r.gpu()
    assert g["tier"] == "uprobes" and "agent" not in g, g
    B = plan["bytes"]
    # the runtime's entry points, each call failing (cudaErrorInsufficientDriver)
    rt = {"cudaMalloc": (1, B), "cudaMemcpy": (4, 4 * B), "cudaLaunchKernel": (4, 0),
          "cudaDeviceSynchronize": (4, 0)}
    assert_uprobe_driver_rows(g, plan, extra=rt)
    for name in rt:
        assert api_rows(g)[name]["errors"] == api_rows(g)[name]["count"], api_rows(g)[name]
    # failed copies moved nothing: no copy rows from them (checked above);
    # the failed cudaDeviceSynchronize calls are synchronize calls that waited
    # for nothing
    s = g["sync"]
    assert s["count"] == 12, s
    assert SPIN_LOW * 8 * SPIN_US * 1000 <= s["spin_ns"], s
    assert BLOCK_LOW * 8 * BLOCK_US * 1000 <= s["blocked_ns"], s
    L = r.proc()["ledger"]
    assert L["offcpu_by_cause"].get("gpu:sync") == s["blocked_ns"]
    assert L["oncpu_gpu_wait_ns"] == s["spin_ns"]


def test_gpu_off(tmp_path):
    r = wrap(tmp_path, PLAN, fake_env(), extra=["--gpu", "off"])
    assert "gpu" not in r.proc(), r.proc().get("gpu")
    assert r.report["gpu"]["agent"] is False and r.report["gpu"]["mode"] == "off"
    # no GPU wait without the GPU tiers: the same waits are plain CPU and futex
    assert r.proc()["ledger"]["oncpu_gpu_wait_ns"] == 0
    assert r.proc()["ledger"]["offcpu_by_cause"].get("syscall:futex", 0) > 0


# ---------------------------------------------------------------------------
# the hook transport

def test_hook_transport_counts_every_record(tmp_path):
    """hookbench calls the agent's hook N times with 1 record and N/64+1 times
    with 64, then makes N launches and N synchronize calls: every record
    arrives, each call counted once."""
    n = 640
    r = wrap(tmp_path, None, fake_env(spin=0, block=0), prog="hookbench", args=[str(n)])
    assert r.truth and r.truth["hook"] is True, r.stdout
    g = r.gpu()
    rows = api_rows(g)
    assert rows["cuLaunchKernel"]["count"] == n + 64 * (n // 64 + 1) + n, rows["cuLaunchKernel"]
    assert rows["cuCtxSynchronize"]["count"] == n
    assert g["sync"]["count"] == n
    assert g["bad_records"] == 0 and r.report["lost"]["gpu_bad_batches"] == 0


# ---------------------------------------------------------------------------
# ioctl on GPU driver files

def test_driver_ioctls_are_gpu_time(tmp_path):
    """The fake driver ioctl()s FAKE_CUDA_IOCTL_DEV once per launch, copy and
    synchronize call, as the real one does /dev/nvidia*. /dev/null stands in
    for the device (major 1, named to contactmap by CONTACTMAP_GPU_DEV_MAJORS):
    those ioctls become "ioctl:gpu" rows in the gpu group, blocked time in
    them "gpu:driver", and their time is in the contact map's GPU row."""
    plan = dict(launches=10, copies=2, syncs=3)
    env = fake_env(spin=100, block=0, FAKE_CUDA_IOCTL_DEV="/dev/null", CONTACTMAP_GPU_DEV_MAJORS=1)
    r = wrap(tmp_path, plan, env)
    p = r.proc()
    want = 10 + 2 * 4 + 3
    rows = [s for s in p["syscalls"] if "ioctl" in s["name"]]
    assert [(s["name"], s["group"], s["count"]) for s in rows] == [("ioctl:gpu", "gpu", want)], rows
    g = p["gpu"]
    assert g["driver_ioctls"] == want
    assert g["driver_ioctl_ns"] == rows[0]["oncpu_ns"] + rows[0]["offcpu_ns"]
    assert "syscall:ioctl" not in p["ledger"]["offcpu_by_cause"]
    row = [c for c in p["contact_map"] if c["subsystem"] == "gpu"][0]
    assert row["count"] == want + 3, row     # ioctls and synchronize calls
    assert row["time_ns"] == g["sync"]["spin_ns"] + g["sync"]["blocked_ns"] + g["driver_ioctl_ns"]
    assert "21 ioctls on GPU device files" in r.stderr
    assert_no_problems(ledger_problems(r.report), "ledger")


def test_gpu_work_on_the_timeline(tmp_path):
    """--trace: every timed kernel and copy of the plan is a slice on its
    device/stream track, with the device duration the fake CUPTI gave it."""
    trace = tmp_path / "t.json"
    wrap(tmp_path, PLAN, fake_env(), extra=["--trace", str(trace)])
    tl = json.loads(trace.read_text())
    gpu = [e for e in tl["traceEvents"] if e.get("cat") == "gpu"]
    kern = [e for e in gpu if e["name"] == "kernel"]
    graph = [e for e in gpu if e["name"] == "kernel (graph)"]
    assert len(kern) == PLAN["launches"] + PLAN["rt_launches"]
    assert all(abs(e["dur"] - PLAN["grid"]) < 0.002 for e in kern), kern[:3]   # grid x 1 us
    assert len(graph) == PLAN["graphs"] * PLAN["graph_kernels"]
    copies = [e for e in gpu if e["name"] in ("HtoD", "DtoH", "DtoD")]
    n = PLAN["copies"]
    assert len(copies) == 4 * n + PLAN["rt_copies"] + PLAN["dtod"], sorted({e["name"] for e in gpu})
    assert all(e["args"]["bytes"] == PLAN["bytes"] for e in copies)
    assert len([e for e in gpu if e["name"] == "memset"]) == PLAN["memsets"]
    names = {e["args"]["name"] for e in tl["traceEvents"] if e.get("name") == "thread_name"}
    assert "GPU 0 stream 7 kernels" in names, names
    assert tl["otherData"]["dropped_in_kernel"] == 0


# ---------------------------------------------------------------------------
# what a real driver, PyTorch and CUPTI do that a simpler fake would not
# (issue 15): each test names the defect it holds down

def kernel_rows(g):
    return {k["graph"]: k for k in g["kernels"]}


def test_partial_buffers_arrive_every_period(tmp_path):
    """CUPTI's periodic flush returns full buffers only; the agent asks for
    the partial ones every period too. A 1 MiB buffer holds ~4,800 kernel
    records: the plan's 34 would otherwise come at exit, after a -d window
    has closed, and never when the program leaves with _exit."""
    plan = dict(PLAN)
    kernels = plan["launches"] + plan["rt_launches"]
    # -d: the window ends while the program lingers
    r = wrap(tmp_path, plan, fake_env(), extra=["-d", "1.5"],
             args=plan_args(plan) + ["--linger-ms", "3000"])
    g = r.gpu()
    assert kernel_rows(g)[False]["count"] == kernels, g["kernels"]
    assert g["agent"]["final_flush"] is False, g["agent"]   # it was still running
    # _exit: no atexit, no final flush; a period of lingering is enough
    r = wrap(tmp_path, plan, fake_env(),
             args=plan_args(plan) + ["--linger-ms", "600", "--quick-exit"])
    g = r.gpu()
    assert kernel_rows(g)[False]["count"] == kernels, g["kernels"]
    assert kernel_rows(g)[True]["count"] == plan["graphs"] * plan["graph_kernels"]
    assert g["agent"]["final_flush"] is False, g["agent"]


def test_cupti_worker_hands_full_buffers_back(tmp_path):
    """4 KiB buffers fill after ~18 kernel records: CUPTI's worker thread
    hands them back. Every record still arrives, and the worker's time is
    observer cost, not the program's."""
    r = wrap(tmp_path, PLAN, fake_env(CONTACTMAP_CUPTI_BUFFER_KB=4))
    g = r.gpu()
    assert_cupti_device_rows(g, PLAN)
    assert [t["comm"] for t in r.proc()["threads"]] == ["gpu_app"], r.proc()["threads"]
    assert r.report["observer"]["agent_threads"]["count"] == 2, r.report["observer"]


def test_profiler_takes_cupti_over(tmp_path):
    """A kineto-like client (what torch.profiler runs) registers its own CUPTI
    buffers, profiles 5 launches and disables the activity kinds when it stops.
    The agent's API callbacks go on, its records do not: it says so (status
    taken_over, in the JSON and the text) instead of reporting no kernels as
    if none ran, and the profiler still gets its own records."""
    plan = dict(PLAN, profiler=5, after_launches=4, after_syncs=4)
    r = wrap(tmp_path, plan, fake_env())
    g = r.gpu()
    t = r.truth
    assert t["profiler_records"] == 5, t       # the profiler's records went to it
    a = g["agent"]
    assert g["tier"] == "cupti" and a["status"] == "taken_over", a
    p = r.proc()
    assert p["start_ns"] < a["taken_over_ns"] < p["end_ns"], (a, p["start_ns"], p["end_ns"])
    # API calls are still seen: all of them
    want = dict(CUPTI_API)
    want["cuLaunchKernel"] = (10 + 5 + 4, 0)
    want["cuCtxSynchronize"] = (4 + 3 + 4, 0)
    assert_api(g, want, "cupti")
    # device rows: none from the profiler's block or after it
    # (those still in the agent's buffer when the profiler took over went to
    # the profiler, which drops buffers it does not know, as kineto does)
    plain = kernel_rows(g).get(False, {"count": 0})["count"]
    assert plain <= plan["launches"] + plan["rt_launches"], g["kernels"]
    assert "another CUPTI client" in r.stderr and "taken over" in r.stderr, r.stderr[-2000:]
    assert "CUPTI taken over by another client" in r.stderr, r.stderr[-3000:]


def test_no_takeover_without_a_profiler(tmp_path):
    """Synchronize calls with records coming: no takeover, also when the
    program runs past several flush periods."""
    plan = dict(PLAN, after_syncs=6)
    r = wrap(tmp_path, plan, fake_env(CONTACTMAP_CUPTI_FLUSH_MS=20),
             args=plan_args(plan) + ["--linger-ms", "200"])
    assert r.gpu()["agent"]["status"] == "cupti", r.gpu()["agent"]


def test_graph_kernels_by_graph_id(tmp_path):
    """Two graph launches 4096 correlation ids apart, their records delivered
    together at the end: kernels are graph kernels by their records' graphId,
    not by a table of launch ids that the second launch overwrites."""
    plan = dict(launches=0, graphs=2, graph_kernels=3, graph_gap=4095, grid=1)
    env = fake_env(CONTACTMAP_CUPTI_FLUSH_MS=60000, CONTACTMAP_CUPTI_BUFFER_KB=8192)
    g = wrap(tmp_path, plan, env).gpu()
    k = kernel_rows(g)
    assert (k[True]["count"], k[False]["count"]) == (6, 2 * 4095), g["kernels"]
    assert g["graph_kernels"] == 6


def gpu_slices_and_lifetime(tl, pid):
    """The process's GPU slices, and the span of its threads' own slices, on
    the timeline's clock (microseconds from its start)."""
    mine = [e for e in tl["traceEvents"] if e.get("pid") == pid and e.get("ph") == "X"]
    gpu = [e for e in mine if e.get("cat") == "gpu"]
    host = [e for e in mine if e.get("cat") != "gpu"]
    assert gpu and host, (len(gpu), len(host))
    return gpu, min(e["ts"] for e in host), max(e["ts"] + e["dur"] for e in host)


def test_clock_callback_is_never_offset(tmp_path):
    """The timestamp callback times the records but cuptiGetTimestamp keeps
    CUPTI's own clock: no offset may be added on top of records that are
    already CLOCK_MONOTONIC. Every kernel lies inside its process's lifetime
    on the report's clock, and the sync records agree with their calls."""
    trace = tmp_path / "t.json"
    r = wrap(tmp_path, PLAN, fake_env("tsnocb"), extra=["--trace", str(trace)])
    a = r.gpu()["agent"]
    assert (a["clock"], a["clock_offset_ns"], a["clock_check"]) == ("monotonic", 0, "agrees"), a
    tl = json.loads(trace.read_text())
    gpu, first, last = gpu_slices_and_lifetime(tl, r.truth["pid"])
    assert len(gpu) == 34 + 4 * 3 + 5 + 2 + 2, len(gpu)    # kernels, copies, memsets
    for e in gpu:
        assert first <= e["ts"] and e["ts"] + e["dur"] <= last, (e, first, last)


def test_clock_callback_accepted_but_unused(tmp_path):
    """The callback is accepted and never used (records keep CUPTI's
    CLOCK_REALTIME): the sync records say so. Device durations are right; the
    report says the clocks disagree, by how much, and the text warns."""
    r = wrap(tmp_path, PLAN, fake_env("cbignored"))
    g = r.gpu()
    a = g["agent"]
    assert (a["clock"], a["clock_check"]) == ("monotonic", "disagrees"), a
    assert abs(a["clock_skew_ns"]) > 10**15, a        # realtime - monotonic: decades
    assert_cupti_device_rows(g, PLAN)
    assert "CUPTI's timestamps are" in r.stderr and "off the calls' own times" in r.stderr
    assert "device clock disagrees" in r.stderr, r.stderr[-3000:]


def test_fork_child_stays_idle(tmp_path):
    """A CUDA process forks a child that makes a CUDA call and exit()s. The
    child's agent neither flushes CUPTI (it would hang: the fake waits 3 s and
    says so) nor sends the parent's batched records under its own pid."""
    plan = dict(PLAN, fork=1)
    r = wrap(tmp_path, plan, fake_env(FAKE_CUPTI_FORK_HANG_MS=3000),
             args=plan_args(dict(PLAN)) + ["--fork"])
    t = r.truth
    assert t["child_status"] == 0 and t["child_pid"] > 0, t
    assert t["child_ms"] < 1500, t
    assert "in a forked child" not in r.stderr, r.stderr[-2000:]
    child = find_proc(r.report, pid=t["child_pid"])
    assert "gpu" not in child, child.get("gpu")
    g = r.gpu()
    assert_api(g, CUPTI_API, "cupti")
    assert_cupti_device_rows(g, PLAN)


def test_cuda_call_from_a_late_tls_destructor(tmp_path):
    """A thread's TLS destructor that runs after the agent's makes a CUDA
    call: its record goes out on its own (the thread's batch is gone), not
    into freed memory."""
    plan = dict(launches=3)
    r = wrap(tmp_path, plan, fake_env(MALLOC_PERTURB_=165), args=plan_args(plan) + ["--tls-dtor"])
    g = r.gpu()
    assert api_rows(g)["cuLaunchKernel"]["count"] == 3 + 2, api_rows(g)["cuLaunchKernel"]
    assert kernel_rows(g)[False]["count"] == 3 + 2, g["kernels"]


def test_peer_to_peer_copies(tmp_path):
    """cuMemcpyPeer(Async) and cudaMemcpyPeerAsync: CUPTI reports them as
    MEMCPY2 records (CUpti_ActivityMemcpyPtoP4), which the agent enables and
    reads."""
    plan = dict(launches=0, peer=3, rt_peer=2, bytes=10000)
    g = wrap(tmp_path, plan, fake_env()).gpu()
    rows = api_rows(g)
    assert (rows["cuMemcpyPeer"]["count"], rows["cuMemcpyPeerAsync"]["count"],
            rows["cudaMemcpyPeerAsync"]["count"]) == (3, 3, 2), rows
    assert rows["cuMemcpyPeer"]["bytes"] == 3 * 10000
    c = copies(g)[("PtoP", "device")]
    assert (c["count"], c["bytes"], c["total_ns"]) == (8, 8 * 10000, 8 * 10000 // 50), c


COVERAGE = dict(launches=0, bytes=4096, ctx_sync2=2, rt_launch13=3, rt_2d=2, rt_batch=2,
                rt_free_async=2, rt_symbol=2, rt_stream_destroy=2, event_queries=5)


def test_callback_coverage(tmp_path):
    """CUDA 13's entry points and the copies PyTorch and NCCL make:
    cuCtxSynchronize_v2, __cudaLaunchKernel (what <<<>>> calls in CUDA 13),
    cudaMemcpy2DAsync, cudaMemcpyBatchAsync (one record, copyCount 4),
    cudaFreeAsync. Driver calls inside runtime calls the agent does not time
    (cudaMemcpyToSymbol, cudaStreamDestroy) are not the program's calls: no
    rows, but the wait inside one is GPU wait. Event queries that find work
    pending make no synchronization records."""
    plan = COVERAGE
    g = wrap(tmp_path, plan, fake_env()).gpu()
    rows = {n: (a["count"], a["bytes"]) for n, a in api_rows(g).items()}
    B = plan["bytes"]
    assert rows == {
        "cuCtxSynchronize": (2, 0), "cudaLaunchKernel": (3, 0),
        "cudaMemcpy2DAsync": (2, 2 * B), "cudaMemcpyBatchAsync": (2, 2 * B),
        "cudaFreeAsync": (2, 0), "cuMemAlloc": (2 + 2, (2 + 2) * B),
        "cuMemAllocHost": (1, B), "cuMemFree": (2, 0), "cuMemFreeHost": (1, 0),
    }, rows
    assert kernel_rows(g)[False]["count"] == 3
    c = copies(g)
    # 2 2D copies and 2 batches of 4 (one record each); the symbol copies show
    # as device records only
    assert (c[("DtoD", "device")]["count"], c[("DtoD", "device")]["bytes"]) == (2 + 8, 4 * B), c
    assert (c[("HtoD", "pinned")]["count"], c[("HtoD", "pinned")]["bytes"]) == (2, 2 * B), c
    # GPU wait: the v2 context syncs and the syncs inside cudaStreamDestroy
    assert g["sync"]["count"] == 2 + 2, g["sync"]
    assert "event_synchronize" not in g["sync"]["records"], g["sync"]["records"]


def test_callback_coverage_without_domain(tmp_path):
    """Without cuptiEnableDomain the agent follows its own runtime calls
    only: a driver call inside another runtime call counts as the program's."""
    g = wrap(tmp_path, COVERAGE, fake_env("nodomain")).gpu()
    rows = api_rows(g)
    assert rows["cuMemcpyHtoD"]["count"] == 2, rows
    assert rows["cuStreamSynchronize"]["count"] == 2, rows
    assert rows["cudaMemcpyBatchAsync"]["count"] == 2, rows


def test_cupti_matching_the_driver(tmp_path):
    """A CUDA 12.8 driver: libcupti.so.13 cannot subscribe, so the agent
    falls back to libcupti.so.12 and reads CUDA 12's record layouts (Kernel9,
    Memcpy5, Synchronization), to the same rows."""
    r = wrap(tmp_path, PLAN, fake_env(FAKE_CUDA_DRIVER_VERSION=12080))
    g = r.gpu()
    a = g["agent"]
    assert (a["status"], a["cupti_version"], a["driver_version"]) == ("cupti", 28, 12080), a
    assert_api(g, CUPTI_API, "cupti")
    assert_cupti_device_rows(g, PLAN)


def test_wrap_without_agent_probes_the_wrapped_processes(tmp_path):
    """No agent to ask for uprobes (CUDA_INJECTION64_PATH belongs to another
    tool, or the agent is not installed): the wrapped processes' mappings are
    watched and their CUDA libraries probed, children included, as attach
    mode does. gpu_app --wait-probes starts once the probes are in."""
    env = fake_env(CUDA_INJECTION64_PATH="/nonexistent/other-tool-injection.so")
    r = wrap(tmp_path, PLAN, env, args=plan_args(PLAN) + ["--wait-probes"])
    assert "CUDA_INJECTION64_PATH is already set" in r.stderr, r.stderr[-2000:]
    g = r.gpu()
    assert g["tier"] == "uprobes" and "agent" not in g, g
    assert r.report["gpu"]["watch"] == "wrapped" and r.report["gpu"]["agent"] is False
    assert_uprobe_driver_rows(g, PLAN)
    assert_gpu_wait(r, 8)

    app = str(FAKES / "gpu_app")
    env = fake_env(CONTACTMAP_CUPTI_AGENT=str(tmp_path / "not-installed.so"))
    out = tmp_path / "r2.json"
    argv = [contactmap_bin(), "-o", str(out), "--", "/bin/sh", "-c",
            f"{app} --wait-probes {' '.join(plan_args(PLAN))}"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=RUN_TIMEOUT_S)
    r = GpuRun(proc, out, argv)
    assert r.rc == 0, r.describe()
    assert_uprobe_driver_rows(r.gpu(), PLAN)


def test_own_uretprobes_are_observer_cost(tmp_path):
    """Each probed CUDA call returns through the kernel's uretprobe
    trampoline, a syscall (Linux 6.11+): contactmap's own work, kept out of
    the program's syscalls and counted in the observer cost, call for call."""
    r = wrap(tmp_path, PLAN, fake_env(), extra=["--gpu", "uprobes"])
    p = r.proc()
    names = {s["name"] for s in p["syscalls"]}
    assert not names & {"uretprobe", "uprobe"}, sorted(names)
    calls = sum(a["count"] for a in p["gpu"]["api"])
    ps = r.report["observer"]["probe_syscalls"]
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    if (major, minor) >= (6, 11):
        # every return, and maybe one optimized uprobe call on the agent's hook
        assert calls <= ps["count"] <= calls + 2, (ps, calls)
        assert ps["oncpu_ns"] > 0, ps
        assert "uprobe trampoline syscalls" in r.stderr
    assert_no_problems(ledger_problems(r.report), "ledger")
