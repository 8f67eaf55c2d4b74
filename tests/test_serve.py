"""--serve: contactmap as a Prometheus exporter, scraped by a real Prometheus.

A workload whose OS work is known (tests/workloads/threads.c: 4 threads sleep,
then make 100, 200, 300 and 400 getppid calls) is attached with
`contactmap -p PID --serve 127.0.0.1:0`; a Prometheus server from Debian's
`prometheus` package, started here on 127.0.0.1 with a 1 s scrape interval
and a storage directory of its own, scrapes it; the test asks Prometheus over
its HTTP API. Exact counts where counting is exact; the ledger must close in
the stored samples as it does in the report. Everything runs on 127.0.0.1 and
is stopped at the end.
"""
import json
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest

from conftest import contactmap_bin, kill_quietly, run_cm, skip_loudly, workload

pytestmark = pytest.mark.usefixtures("need_root")

NTHREADS = 4
SLEEP_US = 3_000_000            # the threads sleep this long before their calls
GETPPID = 100 * NTHREADS * (NTHREADS + 1) // 2
# Prometheus stores floats parsed from exact decimal seconds: sums of a few
# of them agree to well under a microsecond
CLOSE_S = 1e-6
BOUND_S = 60                    # no step of this test may wait longer


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serving(args):
    """contactmap ARGS --serve 127.0.0.1:0; returns (Popen, metrics URL)."""
    p = subprocess.Popen([contactmap_bin(), *map(str, args), "--serve", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url, lines = None, []
    deadline = time.monotonic() + 20
    while url is None and time.monotonic() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        lines.append(line)
        if "serving metrics on " in line:
            url = line.split("serving metrics on ", 1)[1].strip()
    if url is None:
        kill_quietly(p.pid)
        pytest.fail(f"contactmap did not say where it serves: {lines}", pytrace=False)
    # keep draining stderr so contactmap never blocks on it
    rest = []
    p.rest_thread = threading.Thread(target=lambda: rest.append(p.stderr.read()), daemon=True)
    p.rest_thread.start()
    p.rest = rest
    return p, url


class Prometheus:
    def __init__(self, tmp, target):
        self.port = free_port()
        cfg = tmp / "prometheus.yml"
        cfg.write_text("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                       "scrape_configs:\n  - job_name: contactmap\n    static_configs:\n"
                       f"      - targets: ['{target}']\n")
        self.log = open(tmp / "prometheus.log", "w")
        self.p = subprocess.Popen(["prometheus", f"--config.file={cfg}",
                                   f"--storage.tsdb.path={tmp / 'tsdb'}",
                                   f"--web.listen-address=127.0.0.1:{self.port}",
                                   "--storage.tsdb.retention.time=1h", "--log.level=warn"],
                                  stdout=self.log, stderr=self.log)
        self.api = f"http://127.0.0.1:{self.port}/api/v1"

    def query(self, q, at=None):
        args = {"query": q}
        if at is not None:
            args["time"] = f"{at:.3f}"
        url = f"{self.api}/query?{urllib.parse.urlencode(args)}"
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, q, at=None):
        res = self.query(q, at)
        assert len(res) == 1, f"{q}: expected one series, got {res}"
        return float(res[0]["value"][1])

    def values(self, q, at=None, by=None):
        return {r["metric"].get(by): float(r["value"][1]) for r in self.query(q, at)}

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(5)
        self.log.close()


def wait_until(pred, what, timeout=BOUND_S):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            v = pred()
            if v:
                return v
        except (OSError, AssertionError, ValueError, KeyError):
            pass
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout} s waiting for {what}", pytrace=False)


@pytest.fixture
def prometheus_bin(request):
    if not shutil.which("prometheus") or not shutil.which("promtool"):
        skip_loudly(request, "NOT RUN: --serve tests need Debian's prometheus package "
                             "(prometheus and promtool; scripts/setup-debian.sh installs it)")


def test_serve_scraped_by_prometheus(tmp_path, prometheus_bin):
    w = subprocess.Popen([workload("threads"), str(NTHREADS), str(SLEEP_US)],
                         stdout=subprocess.PIPE, text=True)
    prom = None
    cm = None
    try:
        time.sleep(0.3)                 # all threads created and asleep
        cm, url = start_serving(["-p", w.pid])
        target = urllib.parse.urlsplit(url).netloc
        prom = Prometheus(tmp_path, target)

        # the exporter's own output is valid exposition text
        text = wait_until(lambda: urllib.request.urlopen(url, timeout=5).read(), "/metrics")
        chk = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                             timeout=30)
        assert chk.returncode == 0 and not chk.stdout.strip() and not chk.stderr.strip(), \
            (chk.stdout, chk.stderr)

        out, _ = w.communicate(timeout=BOUND_S)
        exited_at = time.time()
        truth = json.loads(out.strip().splitlines()[-1])
        assert truth["getppid"] == GETPPID

        sel = f'pid="{w.pid}"'
        # a sample scraped after contactmap published a report of the exited
        # process (it publishes every second)
        ts_q = f'timestamp(contactmap_syscalls_total{{{sel},syscall="getppid"}})'
        at = wait_until(lambda: (lambda t: t if t >= exited_at + 1.5 else None)(prom.value(ts_q)),
                        "a scrape after the workload exited")

        # OpenMetrics to a scraper that asks for it: counter families without
        # _total, an info family, and the # EOF terminator
        req = urllib.request.Request(url, headers={"Accept": "application/openmetrics-text; "
                                                             "version=1.0.0"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.headers["Content-Type"].startswith("application/openmetrics-text"), r.headers
            om = r.read().decode()
        assert om.endswith("\n# EOF\n"), om[-200:]
        assert "# TYPE contactmap_syscalls counter\n" in om
        assert "# TYPE contactmap info\n" in om
        assert "\ncontactmap_syscalls_total{" in om
        assert prom.value('up{job="contactmap"}', at) == 1
        # Prometheus asked for OpenMetrics and parsed it: its metadata has the
        # OpenMetrics family name
        with urllib.request.urlopen(f"{prom.api}/metadata?metric=contactmap_syscalls",
                                    timeout=10) as r:
            meta = json.load(r)["data"]
        assert meta.get("contactmap_syscalls", [{}])[0].get("type") == "counter", meta
        assert prom.value(f'contactmap_syscalls_total{{{sel},syscall="getppid"}}', at) == GETPPID
        assert prom.value(f'contactmap_syscall_errors_total{{{sel},syscall="getppid"}}', at) == 0
        assert prom.value(f'contactmap_syscall_duration_seconds_count{{{sel},syscall="getppid"}}',
                          at) == GETPPID
        assert prom.value(f'contactmap_syscall_duration_seconds_bucket{{{sel},syscall="getppid",'
                          f'le="+Inf"}}', at) == GETPPID
        p50 = prom.value(f'histogram_quantile(0.5, contactmap_syscall_duration_seconds_bucket'
                         f'{{{sel},syscall="getppid"}})', at)
        assert 0 < p50 < 1e-3, p50
        # the sleeps were in flight at attach: their time is kept, the calls not counted
        assert prom.value(f'contactmap_syscalls_total{{{sel},syscall="clock_nanosleep"}}', at) == 0
        assert prom.value(f'contactmap_process_threads{{{sel}}}', at) == NTHREADS + 1

        # the ledger closes in what Prometheus stored
        wall = prom.value(f'contactmap_wall_seconds_total{{{sel}}}', at)
        parts = prom.values(f'contactmap_ledger_seconds_total{{{sel}}}', at, by="part")
        assert set(parts) == {"oncpu_user", "oncpu_syscall", "oncpu_kernel", "oncpu_gpu_wait", "runq_wakeup",
                              "runq_preempt", "offcpu", "unattributed"}, parts
        assert abs(sum(parts.values()) - wall) < CLOSE_S, (parts, wall)
        subsys = prom.values(f'contactmap_thread_seconds_total{{{sel}}}', at, by="subsystem")
        assert abs(sum(subsys.values()) - wall) < CLOSE_S, (subsys, wall)
        causes = prom.values(f'contactmap_offcpu_seconds_total{{{sel}}}', at, by="cause")
        assert abs(sum(causes.values()) - parts["offcpu"]) < CLOSE_S, (causes, parts)
        # 4 threads slept ~3 s each from before the attach
        assert causes.get("syscall:clock_nanosleep", 0) >= NTHREADS * 1.5, causes
        assert parts["unattributed"] <= 0.01 * wall, parts
        lost = prom.values("contactmap_lost_events_total", at, by="reason")
        assert lost and all(v == 0 for v in lost.values()), lost

        # the README's query: share of time in the run queue per service
        share = prom.query('sum by (comm) (contactmap_thread_seconds_total{subsystem="runq"})'
                           ' / sum by (comm) (contactmap_wall_seconds_total)', at)
        assert [r["metric"]["comm"] for r in share] == ["threads"], share
        assert 0 <= float(share[0]["value"][1]) < 1, share

        # still serving after the target exited; SIGINT ends it with a report
        assert cm.poll() is None, "contactmap --serve stopped when its target exited"
        cm.send_signal(signal.SIGINT)
        cm.wait(timeout=BOUND_S)
        cm.rest_thread.join(10)
        assert cm.returncode == 0, cm.rest
        # the text map, on stderr
        assert "getppid" in "".join(cm.rest), cm.rest
    finally:
        kill_quietly(w.pid)
        if cm and cm.poll() is None:
            kill_quietly(cm.pid)
            cm.wait(10)
        if prom:
            prom.stop()


def one_error_line(cp, *mentions):
    assert cp.returncode != 0, cp
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("contactmap: error: "), cp.stderr
    for m in mentions:
        assert m in lines[0], (m, lines[0])
    assert cp.stderr.endswith("\n")


def test_serve_no_such_process():
    """A start that fails says one line, not the URL it would have served on."""
    gone = subprocess.run(["/bin/sh", "-c", "echo $$"], capture_output=True, text=True).stdout
    cp = run_cm(["-p", gone.strip(), "--serve", "127.0.0.1:0"], timeout=20)
    one_error_line(cp, "no such process")


def test_serve_port_in_use():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        cp = run_cm(["--serve", f"127.0.0.1:{port}", "-d", "1", "--", "/bin/true"], timeout=20)
    one_error_line(cp, f"127.0.0.1:{port}", "Address already in use")


@pytest.mark.parametrize("spec", ["127.0.0.1:http", "127.0.0.1:70000", "", "no.such.host.invalid:9464"])
def test_serve_bad_address(spec):
    cp = run_cm(["--serve", spec, "-d", "1", "--", "/bin/true"], timeout=20)
    one_error_line(cp, "--serve")


def test_metrics_of_saved_report(tmp_path, prometheus_bin):
    """`contactmap metrics REPORT.json`: a saved report (the test data's, with
    more syscalls than get series of their own, GPU rows and requests added)
    as exposition text promtool accepts, with the report's figures."""
    from conftest import REPO
    rep = json.loads((REPO / "tests" / "data" / "sample-report.json").read_text())
    p0 = rep["processes"][0]
    hist = [0] * 40
    for i in range(20):                 # 31 syscalls: 16 get series, 15 go to "other"
        h = list(hist)
        h[10] = i + 1
        p0["syscalls"].append({"name": f"fake{i}", "nr": 1000 + i, "count": i + 1, "errors": 1,
                               "total_ns": 1000 * (i + 1), "hist_log2_ns": h})
    p0["gpu"] = {"tier": "cupti", "api": [{"name": "cudaMemcpy", "count": 3, "total_ns": 9000}],
                 "kernels": [{"device": 0, "stream": 7, "count": 5, "total_ns": 1000},
                             {"device": 0, "stream": 8, "count": 2, "total_ns": 500}],
                 "copies": [{"kind": "HtoD", "memory": "pinned", "count": 2, "bytes": 4096}],
                 "sync": {"count": 4, "spin_ns": 1000, "blocked_ns": 2000000}}
    # ended processes the books folded by comm: one set of series, pid="folded"
    group = json.loads(json.dumps(rep["processes"][1]))
    del group["pid"], group["ppid"]
    group["count"] = 5
    rep["folded_processes"] = [group]
    rep["requests"] = {"count": 7, "latency_ns": {"p50": 1500000, "p90": 2000000,
                                                  "p99": 3000000, "max": 4000000}}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(rep))
    cp = run_cm(["metrics", path])
    assert cp.returncode == 0, cp.stderr
    chk = subprocess.run(["promtool", "check", "metrics"], input=cp.stdout, capture_output=True,
                         text=True, timeout=30)
    assert chk.returncode == 0 and not chk.stdout.strip(), chk.stdout + chk.stderr
    out = cp.stdout.splitlines()
    for p in rep["processes"]:
        rows = sorted(p["syscalls"], key=lambda s: -s["total_ns"])
        pl = f'pid="{p["pid"]}",comm="{p["comm"]}"'
        for s in rows[:16]:
            assert f'contactmap_syscalls_total{{{pl},syscall="{s["name"]}"}} {s["count"]}' in out
        for s in rows[16:]:
            assert not any(f'syscall="{s["name"]}"' in l for l in out), s["name"]
        if rows[16:]:
            n = sum(s["count"] for s in rows[16:])
            assert f'contactmap_syscalls_total{{{pl},syscall="other"}} {n}' in out
            assert f'contactmap_syscall_duration_seconds_count{{{pl},syscall="other"}} {n}' in out
    gl = f'pid="folded",comm="{group["comm"]}"'
    for s in group["syscalls"]:
        assert f'contactmap_syscalls_total{{{gl},syscall="{s["name"]}"}} {s["count"]}' in out
    assert f'contactmap_wall_seconds_total{{{gl}}} ' in cp.stdout
    pl = f'pid="{p0["pid"]}",comm="{p0["comm"]}"'
    assert f'contactmap_gpu_kernels_total{{{pl},device="0"}} 7' in out
    assert f'contactmap_gpu_kernel_seconds_total{{{pl},device="0"}} 0.0000015' in out
    assert f'contactmap_gpu_api_calls_total{{{pl},api="cudaMemcpy"}} 3' in out
    assert f'contactmap_gpu_copy_bytes_total{{{pl},kind="HtoD",memory="pinned"}} 4096' in out
    assert f'contactmap_gpu_sync_wait_seconds_total{{{pl},part="blocked"}} 0.002' in out
    assert "contactmap_request_latency_seconds_count 7" in out
    assert 'contactmap_request_latency_seconds{quantile="0.99"} 0.003' in out
    assert "contactmap_request_latency_max_seconds 0.004" in out


def test_metrics_bad_input(tmp_path):
    cp = run_cm(["metrics", tmp_path / "missing.json"])
    one_error_line(cp)
