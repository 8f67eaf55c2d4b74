"""The command line: attach mode, signals, bad input, `report` and `check`."""
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from conftest import (REPO, assert_no_problems, contactmap_bin, find_proc, find_thread,
                      kill_quietly, ledger_problems, run_cm, schema_problems,
                      syscall_count, workload)

pytestmark = pytest.mark.usefixtures("need_root")

# ---- tolerances -------------------------------------------------------------
ATTACH_S = 1
# `-d 1` must give a window of about one second: BPF setup before and report
# writing after are outside the window.
ATTACH_WINDOW_NS = (0.8e9, 1.6e9)
# a thread alive for the whole window has wall_ns ~ duration_ns
ATTACH_WALL_FRACTION = 0.95
# contactmap must notice that its only target exited within this many seconds
EXIT_NOTICE_S = 3.0
# after SIGINT/SIGTERM contactmap must write its report and exit within this
SIGNAL_EXIT_S = 10.0


class Workload:
    """A workload started directly (for attach mode); reaped by a thread so
    that it does not linger as a zombie that looks alive."""

    def __init__(self, name, *args):
        self.p = subprocess.Popen([workload(name)] + [str(a) for a in args],
                                  stdout=subprocess.PIPE, text=True)
        self.pid = self.p.pid
        self.out = None
        self.t = threading.Thread(target=self._reap, daemon=True)
        self.t.start()

    def _reap(self):
        self.out = self.p.communicate()[0]

    def exited(self):
        return self.p.returncode is not None

    def kill(self):
        kill_quietly(self.pid)
        self.t.join(5)


@pytest.fixture
def workloads():
    started = []

    def start(name, *args):
        w = Workload(name, *args)
        started.append(w)
        return w

    yield start
    for w in started:
        w.kill()


def load(path):
    with open(path) as f:
        return json.load(f)


def check_attach_report(rep, pids):
    assert rep["target"]["mode"] == "attach"
    assert sorted(rep["target"]["pids"]) == sorted(pids)
    assert_no_problems(schema_problems(rep), "attach report schema")
    assert_no_problems(ledger_problems(rep, from_start_to_end=False), "attach report ledger")


# ---------------------------------------------------------------------------
# attach mode

def test_attach_duration(tmp_path, workloads):
    w = workloads("sleeper", 40, 100000)     # 4 s of 100 ms sleeps
    time.sleep(0.3)
    out = tmp_path / "r.json"
    t0 = time.monotonic()
    cp = run_cm(["-p", w.pid, "-d", ATTACH_S, "-o", out])
    took = time.monotonic() - t0
    assert cp.returncode == 0, cp.stderr
    assert not w.exited(), "workload ended before the attach window did"
    rep = load(out)
    check_attach_report(rep, [w.pid])
    dur = rep["window"]["duration_ns"]
    assert ATTACH_WINDOW_NS[0] <= dur <= ATTACH_WINDOW_NS[1], f"duration_ns {dur}"
    assert took < 15, f"contactmap -d 1 took {took:.1f} s"
    p = find_proc(rep, pid=w.pid)
    n = syscall_count(p, "clock_nanosleep")
    # 100 ms sleeps in a ~1 s window: ~10 complete calls (the one in flight at
    # attach is not counted)
    assert 5 <= n <= 16, f"clock_nanosleep count {n} in a {dur / 1e9:.2f} s window"
    assert p["end_ns"] == 0, "process still alive at window end must have end_ns 0"
    (th,) = p["threads"]
    L = th["ledger"]
    assert ATTACH_WALL_FRACTION * dur <= L["wall_ns"] <= dur, \
        f"thread wall_ns {L['wall_ns']} vs window {dur}"
    assert L["offcpu_by_cause"].get("syscall:clock_nanosleep", 0) >= 0.5 * dur, L


def test_attach_threads_exact(tmp_path, workloads):
    """Attach to a process whose 8 threads sleep, then make 100*(i+1) getppid
    calls each: every thread is seeded from /proc (a bit per thread in the
    traced-tid bitmap), so all their calls are counted, exactly."""
    n = 8
    w = workloads("threads", n, 1_500_000)
    time.sleep(0.3)     # all threads created and asleep
    out = tmp_path / "r.json"
    cp = run_cm(["-p", w.pid, "-o", out], timeout=30)     # ends when the process does
    assert cp.returncode == 0, cp.stderr
    w.t.join(5)
    truth = json.loads(w.out.strip().splitlines()[-1])
    rep = load(out)
    check_attach_report(rep, [w.pid])
    p = find_proc(rep, pid=w.pid)
    assert syscall_count(p, "getppid") == truth["getppid"] == 100 * n * (n + 1) // 2
    # the sleeps were in flight at attach: their time is kept, the calls not counted
    assert syscall_count(p, "clock_nanosleep") == 0
    for t in truth["tids"]:
        th = find_thread(p, t["tid"])
        assert th["ledger"]["offcpu_by_cause"].get("syscall:clock_nanosleep", 0) > 0.5e9, th["ledger"]


def test_attach_two_pids(tmp_path, workloads):
    a = workloads("sleeper", 40, 100000)
    b = workloads("sleeper", 40, 50000)
    time.sleep(0.3)
    out = tmp_path / "r.json"
    cp = run_cm(["-p", f"{a.pid},{b.pid}", "-d", ATTACH_S, "-o", out])
    assert cp.returncode == 0, cp.stderr
    rep = load(out)
    check_attach_report(rep, [a.pid, b.pid])
    for w in (a, b):
        p = find_proc(rep, pid=w.pid)
        assert syscall_count(p, "clock_nanosleep") >= 5, p["syscalls"]


def test_attach_target_exits(tmp_path, workloads):
    w = workloads("sleeper", 8, 100000)      # ends ~0.8 s from now
    time.sleep(0.2)
    out = tmp_path / "r.json"
    t0 = time.monotonic()
    cp = run_cm(["-p", w.pid, "-d", 30, "-o", out], timeout=40)
    took = time.monotonic() - t0
    assert cp.returncode == 0, cp.stderr
    assert w.exited()
    assert took < 0.8 + EXIT_NOTICE_S + 2, \
        f"contactmap ran {took:.1f} s after its only target exited (-d 30)"
    rep = load(out)
    check_attach_report(rep, [w.pid])
    p = find_proc(rep, pid=w.pid)
    assert p["end_ns"] > 0 and p.get("exit_code") == 0, p
    assert rep["window"]["duration_ns"] < (0.8 + EXIT_NOTICE_S) * 1e9
    assert syscall_count(p, "clock_nanosleep") >= 3


# ---------------------------------------------------------------------------
# signals: Ctrl-C / SIGTERM still write the report

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_writes_report(tmp_path, sig):
    out = tmp_path / "r.json"
    cm = subprocess.Popen([contactmap_bin(), "-o", str(out), "--", workload("sleeper"),
                           "100", "100000"],      # 10 s
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    rep = None
    try:
        time.sleep(1.5)
        assert cm.poll() is None, f"contactmap ended early: {cm.communicate()}"
        cm.send_signal(sig)
        try:
            _, err = cm.communicate(timeout=SIGNAL_EXIT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"contactmap still running {SIGNAL_EXIT_S} s after {sig.name}")
        assert out.exists(), f"no report after {sig.name}; stderr {err[-2000:]!r}"
        rep = load(out)    # complete, valid JSON
        assert_no_problems(schema_problems(rep, command_exited=False),
                           f"report after {sig.name}")
        # threads that ended were traced from start to end: the 1% rule applies
        assert_no_problems(ledger_problems(rep), f"ledger after {sig.name}")
        p = find_proc(rep, comm="sleeper")
        assert syscall_count(p, "clock_nanosleep") >= 5
        assert 1.0e9 <= rep["window"]["duration_ns"] <= 1.5e9 + SIGNAL_EXIT_S * 1e9
    finally:
        if cm.poll() is None:
            cm.kill()
            cm.wait()
        if rep:
            for p in rep.get("processes", []):
                kill_quietly(p.get("pid"))


# ---------------------------------------------------------------------------
# bad input: one line "contactmap: error: ...", non-zero exit

def assert_one_error_line(cp, *mentions):
    assert cp.returncode != 0, f"exit status 0; stderr {cp.stderr!r}"
    lines = cp.stderr.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("contactmap: error:"), \
        f"stderr must be exactly one 'contactmap: error:' line, got {cp.stderr!r}"
    if mentions:
        assert any(m.lower() in lines[0].lower() for m in mentions), \
            f"error line should mention one of {mentions}: {lines[0]!r}"


@pytest.mark.parametrize("args", [
    ["-p", "999999999"],
    ["-p", "abc"],
    ["--", "/nonexistent/cmd"],
    ["--", "/etc/hostname"],
    ["--bogus"],
    ["report", "/nonexistent.json"],
], ids=["unknown-pid", "pid-not-number", "cmd-not-found", "cmd-not-executable",
        "unknown-option", "report-missing-file"])
def test_bad_input(tmp_path, args):
    if args[-1] == "/etc/hostname" and not os.path.exists("/etc/hostname"):
        (tmp_path / "hostname").write_text("x\n")
        args = ["--", str(tmp_path / "hostname")]
    assert_one_error_line(run_cm(args, timeout=30))


def test_bad_input_report_not_json(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("this is not json\n")
    assert_one_error_line(run_cm(["report", bad], timeout=30))


def test_unwritable_output_runs_nothing(tmp_path):
    marker = tmp_path / "marker"
    cp = run_cm(["-o", "/nonexistent-dir/r.json", "--", "/bin/sh", "-c", f"touch {marker}"],
                timeout=30)
    assert_one_error_line(cp)
    time.sleep(0.2)
    assert not marker.exists(), "the command ran although the output path is not writable"


def test_not_root():
    # without the privileges, the BPF tier asked for by name is refused in one
    # line; without --tier the procfs tier runs (tests/test_procfs.py)
    if subprocess.run(["which", "setpriv"], capture_output=True).returncode:
        pytest.fail("setpriv (util-linux) is needed for this test")
    cp = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                         "--inh-caps=-all", contactmap_bin(), "--tier", "bpf", "--", "/bin/true"],
                        capture_output=True, text=True, timeout=30, cwd="/")
    assert_one_error_line(cp, "root", "CAP_BPF")


# ---------------------------------------------------------------------------
# report and check

def test_report_subcommand(tmp_path, cmwrap):
    r = cmwrap("getppid_loop", 100)
    cp = run_cm(["report", r.json_path], timeout=30)
    assert cp.returncode == 0, cp.stderr
    text = cp.stdout + cp.stderr
    assert "OS contact map" in text, text[-2000:]
    assert "getppid_loop" in text, text[-2000:]
    assert "contactmap: error" not in text


def test_check_subcommand():
    cp = run_cm(["check"], timeout=30)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "tp_btf" in cp.stdout + cp.stderr
