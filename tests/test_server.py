"""The study's inference service (examples/server/) works in every concurrency
model, and contactmap follows it: a real program its tests were not written
around (forked workers, named threads, pipes, sockets).

All three modes are checked over HTTP; as root, the processes mode runs
under `contactmap --` and its report is checked too (one torch import per
mode keeps this file to a few seconds of CPU).
"""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from conftest import REPO, find_proc, is_root, kill_quietly, syscall_count

SERVER = REPO / "examples" / "server" / "server.py"
LOADGEN = REPO / "examples" / "server" / "loadgen.py"
PY = sys.executable if sys.executable.startswith("/usr/bin/") else "/usr/bin/python3"
READY_TIMEOUT_S = 90          # importing torch on a busy 2-CPU VM


def read_ready(proc, timeout=READY_TIMEOUT_S):
    end = time.monotonic() + timeout
    line = ""
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if line.startswith("{") and '"ready"' in line:
            return json.loads(line)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    pytest.fail(f"server not ready: rc={proc.poll()} last line {line!r} "
                f"stderr {proc.stderr.read()[-2000:]!r}", pytrace=False)


def http(port, method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


MODES = ("threads", "processes", "asyncio")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """One server per mode, started together (importing torch is most of the
    wait); as root, the process pool runs under contactmap (wrap mode)."""
    report = tmp_path_factory.mktemp("server") / "processes.json"
    procs = {}
    for m in MODES:
        argv = [PY, str(SERVER), "--mode", m, "--max-seconds", "120"]
        if m == "processes" and is_root():
            argv = [str(REPO / "contactmap"), "-o", str(report), "--"] + argv
        procs[m] = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, cwd=REPO)
    started = {}
    try:
        for m, p in procs.items():
            started[m] = (p, read_ready(p), report if m == "processes" and is_root() else None)
        yield started
    finally:
        for m, p in procs.items():
            if p.poll() is None:
                if m in started:        # the server itself, when contactmap wraps it
                    kill_quietly(started[m][1]["pid"])
                p.kill()
                p.wait()


@pytest.mark.parametrize("mode", MODES)
def test_server_modes(servers, mode):
    sys.path.insert(0, str(SERVER.parent))
    import models
    proc, ready, report = servers[mode]
    port = ready["port"]
    assert ready["mode"] == mode
    assert len(ready["worker_pids"]) == (2 if mode == "processes" else 0)
    assert http(port, "GET", "/healthz") == (200, b"ok\n")
    for name in models.NAMES:
        st, body = http(port, "POST", f"/infer/{name}", models.random_payload(name, 3))
        assert st == 200, body
        res = json.loads(body)
        assert res["model"] == name and res["batch"] == 3 and len(res["top"]) == 3
    assert http(port, "POST", "/infer/nosuch", b"x")[0] == 404
    assert http(port, "POST", "/infer/mlp", b"abc")[0] == 400     # not a float32 batch
    assert http(port, "GET", "/infer/mlp")[0] == 405
    out = subprocess.run([PY, str(LOADGEN), "--port", str(port), "--rate", "40",
                          "--duration", "0.75", "--batch", "1-4"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    load = json.loads(out.stdout)
    assert load["completed"] == load["sent"] > 0 and load["errors"] == 0, load
    assert load["latency_ms"]["p50_ms"] <= load["latency_ms"]["p99_ms"]
    os.kill(ready["pid"], signal.SIGINT)        # the server, also when wrapped
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-2000:]
    stopped = json.loads(stdout.strip().splitlines()[-1])
    assert stopped["event"] == "stopped"
    assert sum(stopped["by_model"].values()) == 3 + load["completed"]
    names = set(stopped["threads"].values())
    assert f"srv-{mode}" in names and ({"http-0", "infer-0"} & names), names
    if report:
        check_traced_pool(json.loads(report.read_text()), ready, stopped)


def check_traced_pool(report, ready, stopped):
    """Wrap mode followed the forked workers: each is a process of its own
    (comm worker-N, ppid the server, exit 0) that wrote one pickled reply per
    inference it ran: 4 at start (3 warm-ups, a ping), one per good request,
    one for the malformed payload it rejected."""
    server = find_proc(report, pid=ready["pid"])
    replies = 0
    for i, pid in enumerate(ready["worker_pids"]):
        w = find_proc(report, pid=pid)
        assert w["comm"] == f"worker-{i}" and w["ppid"] == server["pid"], (w["comm"], w["ppid"])
        assert w.get("exit_code") == 0, w.get("exit_code")
        replies += syscall_count(w, "write") - 4
    want = sum(stopped["by_model"].values()) + 1
    assert replies == want, f"workers wrote {replies} replies for {want} inferences"
    comms = {t["comm"] for t in server["threads"]}
    assert {"srv-processes", "http-0", "http-3"} <= comms, comms
