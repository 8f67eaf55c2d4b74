"""Requests and the critical path (issue 14), against workloads whose waits
are known: a server thread that hands requests to a worker which sleeps on
some and computes on others; a chain of three threads ending in O_DIRECT
reads; a make -j2-style parent waiting for its children; request markers used
oddly (nested, overlapping, unmatched), and 100k of them; markers from Python
threads and asyncio, in wrap and attach mode.

The critical path of an interval of a thread is its own time, where each
blocked stretch that another traced thread ended by waking it is replaced by
what that thread did over it, recursively.
"""
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (REPO, assert_no_problems, contactmap_bin, find_proc, find_thread,
                      kill_quietly, ledger_problems, schema_problems, syscall_sum, workload)

pytestmark = pytest.mark.usefixtures("need_root")

PY = "/usr/bin/python3"
PYWL = REPO / "tests" / "workloads" / "py"


def wrap(tmp_path, *cmd, extra=(), timeout=120):
    out = tmp_path / "r.json"
    cp = subprocess.run([contactmap_bin(), *extra, "-o", str(out), "--", *map(str, cmd)],
                        capture_output=True, text=True, timeout=timeout)
    assert cp.returncode == 0, cp.stderr[-3000:]
    rep = json.loads(out.read_text())
    truth = json.loads(cp.stdout.strip().splitlines()[-1])
    return rep, truth, cp


def rows(r):
    return {x["subsystem"]: x["time_ns"] for x in r}


def lead(r):
    """The subsystem with the most time among rows (band or critical path)."""
    t = rows(r)
    return max(t, key=t.get) if t else None


def share(r, *subsystems):
    t = rows(r)
    tot = sum(t.values())
    return sum(t.get(s, 0) for s in subsystems) / tot if tot else 0


def lead_of_slow(s):
    """The subsystem leading a slowest request's critical path (rows by thread)."""
    by = {}
    for x in s["critical_path"]:
        by[x["subsystem"]] = by.get(x["subsystem"], 0) + x["time_ns"]
    return max(by, key=by.get)


def check_report(rep):
    assert_no_problems(schema_problems(rep), "report schema")
    assert_no_problems(ledger_problems(rep), "ledgers")
    assert rep["lost"].get("critical_path_ringbuf_full", 0) == 0, rep["lost"]


def test_handoff(tmp_path):
    """Request i hands work to a worker that sleeps 20 ms on every 10th and
    computes 2 ms on the others: exactly 60 requests; the six slowest are
    the sleeping ones, their critical path is led by the worker's sleep, the
    fast ones' by CPU; the server thread itself only waits in read()."""
    n, every = 60, 10
    rep, t, _ = wrap(tmp_path, workload("handoff"), n, every, 20000, 2000)
    check_report(rep)
    rq = rep["requests"]
    assert rq["count"] == n and rq["open"] == 0 and rq["unmatched_end"] == 0
    slept = {i for i in range(n) if i % every == 0}
    slowest = rq["slowest"][:len(slept)]
    assert {s["id"] for s in slowest} == slept, [(s["id"], s["latency_ns"]) for s in rq["slowest"]]
    worker = [th["tid"] for th in find_proc(rep, pid=t["pid"])["threads"] if th["tid"] != t["pid"]]
    for s in slowest:
        assert lead_of_slow(s) == "sleep", s["critical_path"]
        sl = sum(x["time_ns"] for x in s["critical_path"] if x["subsystem"] == "sleep")
        assert sl >= 20_000_000 * 0.95 and all(x["tid"] in worker for x in s["critical_path"]
                                               if x["subsystem"] == "sleep"), s
    bands = {b["band"]: b for b in rq["bands"]}
    assert sum(b["count"] for b in rq["bands"]) == n
    assert lead(bands["p0-p50"]["critical_path"]) in ("cpu_user",), bands["p0-p50"]
    assert share(bands["p99-p100"]["critical_path"], "sleep") > 0.8, bands["p99-p100"]
    # the server's own time in its requests: waiting on the pipe (file I/O),
    # the run queue when the machine is busy, little else
    own = bands["p0-p50"]["contact_map"]
    assert share(own, "file_io", "runq") > 0.9, own
    server = find_thread(find_proc(rep, pid=t["pid"]), t["pid"])
    causes = server["ledger"]["offcpu_by_cause"]
    assert causes.get("syscall:read", 0) >= 0.9 * sum(causes.values()), causes
    # the whole run's critical path of the main thread: the sleeps, and the CPU
    cp = rep["critical_path"]
    assert cp["tid"] == t["pid"]
    slept_ns = rows(cp["contact_map"]).get("sleep", 0)
    assert len(slept) * 20_000_000 * 0.95 <= slept_ns <= len(slept) * 20_000_000 * 1.5, cp


def test_chain_reaches_block_io(tmp_path):
    """A waits on B waits on C, which reads with O_DIRECT: A's critical path
    carries C's block I/O wait, though A itself only waits in read()."""
    f = Path("/var/tmp") / f"cm-chain-{os.getpid()}.dat"
    with open(f, "wb") as fp:
        for _ in range(24):
            fp.write(os.urandom(65536))
        fp.flush()
        os.fsync(fp.fileno())
    try:
        rep, t, _ = wrap(tmp_path, workload("chain"), f, 24, 65536)
    finally:
        f.unlink()
    check_report(rep)
    p = find_proc(rep, pid=t["pid"])
    assert rep["requests"]["count"] == 24
    iowait = syscall_sum(p, "pread64", "iowait_ns")
    assert iowait > 0, p["syscalls"]
    cp = rows(rep["critical_path"]["contact_map"])
    # all of C's I/O wait happens inside A's requests, on A's path
    assert cp.get("block_io", 0) >= 0.8 * iowait, (cp, iowait)
    reqs = sum(rows(b["critical_path"]).get("block_io", 0) for b in rep["requests"]["bands"])
    assert reqs >= 0.8 * iowait, (reqs, iowait)
    a = find_thread(p, t["pid"])
    assert "block_io" not in rows(rep["contact_map"]) or \
        a["ledger"]["iowait_ns"] == 0, a["ledger"]


def test_parent_waits_for_its_children(tmp_path):
    """make -j2-style: six children of 50 ms CPU, two at a time. The parent's
    wait4 is 'child wait' in the contact map, and its critical path is the
    children's work."""
    rep, t, _ = wrap(tmp_path, workload("jobs"), 6, 2, 50)
    check_report(rep)
    m = {r["subsystem"]: r for r in rep["contact_map"]}
    assert m["child_wait"]["count"] == 6 and m["child_wait"]["time_ns"] > 0, m
    assert "wait4" not in [r["subsystem"] for r in rep["contact_map"]]
    cp = rep["critical_path"]["contact_map"]
    assert share(cp, "child_wait") < 0.05, cp
    assert share(cp, "cpu_user", "cpu_kernel", "runq") > 0.9, cp
    kids = [p for p in rep["processes"] if p["pid"] != t["pid"]]
    assert len(kids) == 6
    work = sum(p["ledger"]["oncpu_ns"] for p in kids)
    # two run side by side: at least half of their CPU is on the parent's path
    assert rows(cp).get("cpu_user", 0) >= 0.45 * work, (rows(cp), work)


def test_odd_markers_and_many_requests(tmp_path):
    """Nested, overlapping, unmatched and begun-again markers, then 100k
    requests: all counted, nothing lost."""
    n = 100000
    rep, t, _ = wrap(tmp_path, workload("markers"), n, timeout=180)
    check_report(rep)
    rq = rep["requests"]
    assert rq["count"] == t["requests"] == n + 7
    assert rq["unmatched_end"] == t["unmatched_end"] and rq["begun_again"] == t["begun_again"]
    assert rq["open"] == 0 and rq["open_table_full"] == 0
    lat = rq["latency_ns"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]


def test_python_threads(tmp_path):
    """Markers from Python (ctypes, contactmap_mark.request): the sleeping
    requests are the slowest and their critical path is the worker's sleep."""
    rep, t, _ = wrap(tmp_path, PY, PYWL / "requests_threads.py", 40, 10, 20, 2)
    assert t["library"], "contactmap_mark found no library"
    check_report(rep)
    rq = rep["requests"]
    assert rq["count"] == 40
    slowest = rq["slowest"][:len(t["slept"])]
    assert {s["id"] for s in slowest} == set(t["slept"]), [(s["id"], s["latency_ns"]) for s in rq["slowest"]]
    assert all(lead_of_slow(s) == "sleep" for s in slowest), [s["critical_path"] for s in slowest]


def test_python_asyncio(tmp_path):
    """asyncio: the requests overlap on one thread; each is counted, and the
    loop's thread never blocks while others are runnable, so their critical
    paths are that thread's own CPU, not a sleep."""
    rep, t, _ = wrap(tmp_path, PY, PYWL / "requests_asyncio.py", 40, 4, 10, 20, 2)
    check_report(rep)
    rq = rep["requests"]
    assert rq["count"] == 40 and rq["open"] == 0 and rq["begun_again"] == 0
    tot = {}
    for b in rq["bands"]:
        for k, v in rows(b["critical_path"]).items():
            tot[k] = tot.get(k, 0) + v
    assert max(tot, key=tot.get) in ("cpu_user", "runq"), tot


def test_attach_python_threads(tmp_path):
    """Attach mode: a Python server started before contactmap, requests after."""
    out = tmp_path / "r.json"
    srv = subprocess.Popen([PY, str(PYWL / "requests_threads.py"), "30", "10", "20", "2", "--wait"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)     # imported, waiting on stdin
        cm = subprocess.Popen([contactmap_bin(), "-v", "-p", str(srv.pid), "-o", str(out)],
                              stderr=subprocess.PIPE, text=True)
        for line in cm.stderr:
            if "Ctrl-C to stop" in line:
                break
        srv.stdin.write("go\n")
        srv.stdin.flush()
        srv.wait(60)
        cm.wait(60)         # ends with the process
    finally:
        kill_quietly(srv.pid)
    assert cm.returncode == 0
    rep = json.loads(out.read_text())
    rq = rep["requests"]
    assert rq["count"] == 30
    assert "critical_path" not in rep      # attach mode has no command of its own
    slow = rq["slowest"][:3]
    assert {s["id"] for s in slow} == {0, 10, 20} and all(lead_of_slow(s) == "sleep" for s in slow), slow


def test_no_critical_path(tmp_path):
    """--no-critical-path: no wake-up programs, no markers probed, no rows."""
    rep, t, _ = wrap(tmp_path, workload("handoff"), 10, 5, 2000, 500, extra=["--no-critical-path"])
    assert "requests" not in rep and "critical_path" not in rep
    progs = {p["name"] for p in rep["observer"]["programs"]}
    assert not progs & {"sched_waking_btf", "req_begin", "req_end", "softirq_entry_btf"}, progs
