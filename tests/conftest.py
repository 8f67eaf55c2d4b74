"""Shared helpers of contactmap's ground-truth (end-to-end) tests.

The e2e tests run ./contactmap as root around small C workloads
(tests/workloads/*.c, built by `make test-bins` into .output/tests/) that print
their own ground truth as one JSON line on stdout, and compare the report with it.

Run:  make all test-bins && /usr/bin/python3 -m pytest -q tests

Only one reason to skip exists: not being root (BPF needs it). Everything else
that is missing (contactmap not built, workloads not built) is a failure.
"""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / ".output"
WORKLOADS = OUTPUT / "tests"
NSLOTS = 40

# Seconds one contactmap run may take before the test fails (not hangs).
RUN_TIMEOUT_S = 60

ROOT_SKIP_REASON = ("NOT RUN: contactmap's end-to-end tests need root (BPF); "
                    "run `sudo /usr/bin/python3 -m pytest -q tests`")


def is_root():
    return os.geteuid() == 0


def contactmap_bin():
    for p in (REPO / "contactmap", OUTPUT / "contactmap"):
        if p.exists() and os.access(p, os.X_OK):
            return str(p)
    pytest.fail("contactmap is not built: run `make all test-bins` first", pytrace=False)


def built(path, what):
    """PATH as a string if it is an executable file, else the test fails saying
    that WHAT is not built."""
    if not (path.exists() and os.access(path, os.X_OK)):
        pytest.fail(f"{what} is not built ({path}): run `make test-bins` first", pytrace=False)
    return str(path)


def workload(name):
    return built(WORKLOADS / name, f"workload {name}")


# --------------------------------------------------------------------------
# root gate: e2e test modules use `pytestmark = pytest.mark.usefixtures("need_root")`
# (not autouse, so that tests/test_unit.py, which needs no root, still runs).

_skipped_for_root = []


@pytest.fixture
def need_root(request):
    if not is_root():
        _skipped_for_root.append(request.node.nodeid)
        pytest.skip(ROOT_SKIP_REASON)


def pytest_report_header(config):
    return (f"contactmap e2e: euid={os.geteuid()}"
            + ("" if is_root() else "  ** NOT ROOT: end-to-end tests will be SKIPPED **"))


# Other reasons a whole group of tests cannot run here (e.g. no CUDA toolkit):
# reason -> node ids, repeated at the end of the run so nobody misses them.
_skipped_loudly = {}


def skip_loudly(request, reason):
    _skipped_loudly.setdefault(reason, []).append(request.node.nodeid)
    pytest.skip(reason)


def pytest_terminal_summary(terminalreporter):
    tr = terminalreporter
    if _skipped_for_root:
        tr.write_sep("!", "contactmap end-to-end tests SKIPPED", red=True, bold=True)
        tr.write_line(f"{len(_skipped_for_root)} tests skipped: {ROOT_SKIP_REASON}",
                      red=True, bold=True)
    for reason, ids in _skipped_loudly.items():
        tr.write_sep("!", f"{len(ids)} contactmap tests SKIPPED", red=True, bold=True)
        tr.write_line(reason, red=True, bold=True)


# --------------------------------------------------------------------------
# running contactmap

class Run:
    """One contactmap run: report (dict or None), truth (the workload's JSON
    line or None), rc, stdout, stderr, argv, json_path."""

    def __init__(self, argv, proc, json_path):
        self.argv = argv
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.json_path = json_path
        self.report = None
        if json_path and Path(json_path).exists():
            with open(json_path) as f:
                self.report = json.load(f)
        self.truth = parse_truth(self.stdout)

    def __iter__(self):  # report, truth, rc = run
        return iter((self.report, self.truth, self.rc))

    def describe(self):
        return (f"argv={self.argv}\nrc={self.rc}\nstdout(tail)={self.stdout[-2000:]!r}\n"
                f"stderr(tail)={self.stderr[-4000:]!r}")


def parse_truth(stdout):
    """The workload's ground truth: its last stdout line that parses as a JSON object."""
    for line in reversed((stdout or "").splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def run_cm(args, timeout=RUN_TIMEOUT_S, **kw):
    """Runs ./contactmap ARGS; returns the CompletedProcess (text mode)."""
    argv = [contactmap_bin()] + [str(a) for a in args]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              cwd=REPO, **kw)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"contactmap did not finish in {timeout}s: {argv}\n"
                    f"stderr so far: {e.stderr!r}", pytrace=False)


def wrap_run(json_path, name, *args, timeout=RUN_TIMEOUT_S, extra=()):
    """./contactmap [extra] -o JSON -- <workload name> ARGS...; returns a Run."""
    json_path = Path(json_path)
    if json_path.exists():
        json_path.unlink()
    cmd = [workload(name)] + [str(a) for a in args]
    argv = list(extra) + ["-o", str(json_path), "--"] + cmd
    proc = run_cm(argv, timeout=timeout)
    r = Run([contactmap_bin()] + argv, proc, json_path)
    if r.report is None:
        pytest.fail(f"no JSON report written at {json_path}\n{r.describe()}", pytrace=False)
    return r


@pytest.fixture
def cmwrap(tmp_path, need_root):
    """cmwrap(workload, *args) runs `./contactmap -o <tmp>/r.json -- workload args`
    and returns a Run: `report, truth, rc = cmwrap("getppid_loop", 1000)`."""
    counter = [0]

    def go(name, *args, **kw):
        counter[0] += 1
        return wrap_run(tmp_path / f"r{counter[0]}.json", name, *args, **kw)

    return go


# Session-wide cache: each (workload, args) is traced once and shared by the
# ground-truth test and the schema/ledger-invariant tests that read the same report.
_cache = {}


@pytest.fixture(scope="session")
def traced(tmp_path_factory):
    d = tmp_path_factory.mktemp("reports")

    def get(name, *args):
        key = (name,) + tuple(str(a) for a in args)
        if key not in _cache:
            if not is_root():
                pytest.skip(ROOT_SKIP_REASON)
            fn = "_".join(key).replace("/", "_")[:120] + ".json"
            _cache[key] = wrap_run(d / fn, name, *args)
        return _cache[key]

    return get


# --------------------------------------------------------------------------
# report helpers

def find_proc(report, pid=None, comm=None):
    """The process of the report with this pid (or the only one with this comm)."""
    procs = report.get("processes", [])
    if pid is not None:
        hits = [p for p in procs if p.get("pid") == pid]
    else:
        hits = [p for p in procs if p.get("comm") == comm]
    if len(hits) != 1:
        listing = [(p.get("pid"), p.get("comm")) for p in procs]
        pytest.fail(f"expected one process with pid={pid} comm={comm!r} in the report, "
                    f"found {len(hits)}; processes: {listing}", pytrace=False)
    return hits[0]


def find_thread(proc, tid):
    hits = [t for t in proc.get("threads", []) if t.get("tid") == tid]
    if len(hits) != 1:
        pytest.fail(f"expected thread {tid} in process {proc.get('pid')}, threads: "
                    f"{[t.get('tid') for t in proc.get('threads', [])]}", pytrace=False)
    return hits[0]


def syscall_rows(proc, name):
    return [s for s in proc.get("syscalls", []) if s.get("name") == name]


def syscall_count(proc, name):
    """Sum of `count` over the process's syscall rows named NAME (0 if none)."""
    return sum(s["count"] for s in syscall_rows(proc, name))


def syscall_sum(proc, name, field):
    return sum(s[field] for s in syscall_rows(proc, name))


def all_threads(report):
    for p in report.get("processes", []):
        for t in p.get("threads", []):
            yield p, t


def kill_quietly(pid, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError, TypeError):
        pass


def wait_for(pred, timeout, step=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


def check_block_rows(report, rows, what, k, bs, extra_requests, extra_bytes):
    """Block rows of one process against k requests of bs bytes it submitted.
    Every request is claimed in the submitter's context: `submitted` and
    `bytes` are exact
    (up to extra_requests of its own besides, an exec's reads say). A
    completion the kernel's block_rq_complete does not report (this VM drops
    a few under concurrent I/O; a classic-tracepoint bpftrace count misses the
    same ones) leaves `count` short, and the report says how many under
    anomalies.block_unfinished."""
    unfinished = report["anomalies"]["block_unfinished"]
    sub = sum(b["submitted"] for b in rows)
    n, nbytes = sum(b["count"] for b in rows), sum(b["bytes"] for b in rows)
    assert k <= sub <= k + extra_requests, f"block {what} submitted {sub}, expected {k}: {rows}"
    assert 0 <= sub - n <= unfinished, f"block {what}: {n} of {sub} seen, {unfinished} unfinished"
    # unfinished is derived from the same rows: completions are held to a
    # floor of their own (the most the kernel dropped here was 16 of 64)
    assert n >= k // 2, f"block {what}: only {n} of {k} completions seen: {rows}"
    # bytes are counted at the claim: exact even for the requests whose
    # completion the kernel never reported
    assert k * bs <= nbytes <= k * bs + extra_bytes, \
        f"block {what} bytes {nbytes}, expected {k * bs}: {rows}"
    done = sum(b["completed_bytes"] for b in rows)
    assert (k - (sub - n)) * bs <= done <= nbytes, \
        f"block {what} completed bytes {done}, {sub - n} unfinished: {rows}"


def check_requests_within_calls(rows, calls, k):
    """Block rows of k requests, each completed inside one of the syscall rows
    `calls` (k calls that each wait for their own request): a request's latency
    is at most its call's, so its log2 bucket is at most the call's. For every
    bucket j, the requests in buckets >= j are at most the calls in buckets >= j
    times the requests a call was split into, plus the requests the process
    submitted beyond those (an exec's reads say; `submitted` is exact). A
    one-sided, bucket-by-bucket bound: sound at any latency, a power of two
    included."""
    sub = sum(b["submitted"] for b in rows)
    ncalls = sum(c["count"] for c in calls)
    assert ncalls == k, f"{ncalls} calls for {k} requests"
    per = max(1, sub // k)
    extra = sub - per * k
    req = [sum(b["hist_log2_ns"][i] for b in rows) for i in range(NSLOTS)]
    call = [sum(c["hist_log2_ns"][i] for c in calls) for i in range(NSLOTS)]
    assert sum(req) > 0 and sum(b["total_ns"] for b in rows) > 0, rows
    for j in range(NSLOTS):
        r_ge, c_ge = sum(req[j:]), sum(call[j:])
        assert r_ge <= per * c_ge + extra, \
            (f"{r_ge} requests took >= 2^{j} ns but only {c_ge} of the calls that waited "
             f"for them did ({per} per call, {extra} more): requests {req}, calls {call}")


def block_devices_of(path):
    """'major:minor' strings under which block I/O for a file at PATH can show up:
    its filesystem's device, the whole disk when that is a partition, and the
    devices under a stacked (dm/md) device."""
    st = os.stat(path)
    first = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    out, todo = set(), [first]
    while todo:
        dev = todo.pop()
        if dev in out:
            continue
        out.add(dev)
        sysd = Path("/sys/dev/block") / dev
        if not sysd.exists():
            continue
        real = sysd.resolve()
        if (real / "partition").exists():
            todo.append((real.parent / "dev").read_text().strip())
        slaves = real / "slaves"
        if slaves.is_dir():
            for s in slaves.iterdir():
                todo.append((s / "dev").read_text().strip())
    return out


# --------------------------------------------------------------------------
# report invariants (each returns a list of problems; empty = fine)

LEDGER_KEYS = ("wall_ns", "oncpu_ns", "oncpu_user_ns", "oncpu_syscall_ns", "oncpu_kernel_ns",
               "oncpu_kernel_fault_ns", "runq_ns", "runq_wakeup_ns", "runq_preempt_ns",
               "offcpu_ns", "offcpu_by_cause", "iowait_ns", "unattributed_ns")
LEDGER_INT_KEYS = tuple(k for k in LEDGER_KEYS if k != "offcpu_by_cause") + ("oncpu_gpu_wait_ns",)
SUBSYSTEMS = {"cpu_user", "cpu_kernel", "runq", "memory", "sync", "file_io", "network",
              "block_io", "sleep", "poll", "child_wait", "process", "other", "unattributed",
              "gpu", "gil"}

# "unattributed_ns ... must stay under 1% of wall_ns for any thread traced from
# its start to its end" (SPEC.md).
UNATTRIBUTED_MAX_FRACTION = 0.01
# Shares are floats; they must add up to 1 within this.
SHARE_SUM_TOLERANCE = 1e-3


def _is_uint(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _missing(obj, keys, where):
    if not isinstance(obj, dict):
        return [f"{where}: not an object: {obj!r:.200}"]
    return [f"{where}: missing key {k!r}" for k in keys if k not in obj]


def _hist_problems(row, hkey, ckey, where):
    h = row.get(hkey)
    if not isinstance(h, list) or len(h) != NSLOTS:
        return [f"{where}: {hkey} is not a list of {NSLOTS} slots: {h!r:.200}"]
    if not all(_is_uint(x) for x in h):
        return [f"{where}: {hkey} has non-integer slots: {h}"]
    if ckey in row and sum(h) != row[ckey]:
        return [f"{where}: sum({hkey})={sum(h)} != {ckey}={row[ckey]}"]
    return []


def schema_problems(report, command_exited=True):
    """Required keys of SPEC.md / docs/report.md, types, histogram shape and sums.
    command_exited=False: a wrap-mode run cut short (SIGINT) needs no "exit"."""
    P = []
    P += _missing(report, ("schema", "tool", "host", "target", "window", "features", "lost",
                           "processes", "totals", "contact_map"), "report")
    if P:
        return P
    if report["schema"] != "contactmap/1":
        P.append(f"schema is {report['schema']!r}, not 'contactmap/1'")
    P += _missing(report["tool"], ("version",), "tool")
    P += _missing(report["host"], ("kernel", "cpus", "cpu_model", "memory_bytes"), "host")
    tgt = report["target"]
    P += _missing(tgt, ("mode",), "target")
    if tgt.get("mode") == "wrap":
        P += _missing(tgt, ("command",), "target")
        if command_exited and "exit" not in report:
            P.append("wrap mode report has no 'exit'")
    elif tgt.get("mode") == "attach":
        P += _missing(tgt, ("pids",), "target")
    elif tgt.get("mode") == "cgroup":
        P += _missing(tgt, ("pids", "cgroup"), "target")
    else:
        P.append(f"target.mode is {tgt.get('mode')!r}")
    w = report["window"]
    P += _missing(w, ("start_ns", "end_ns", "duration_ns"), "window")
    if all(k in w for k in ("start_ns", "end_ns", "duration_ns")):
        if w["duration_ns"] != w["end_ns"] - w["start_ns"]:
            P.append(f"window.duration_ns {w['duration_ns']} != end-start "
                     f"{w['end_ns'] - w['start_ns']}")
    if not isinstance(report["features"], dict):
        P.append("features is not an object")
    lost = report["lost"]
    if not isinstance(lost, dict) or not lost:
        P.append(f"lost is not a non-empty object: {lost!r}")
    else:
        # tiny test workloads must not overflow anything: "all 0 when nothing lost"
        for k, v in lost.items():
            if v != 0:
                P.append(f"lost.{k} = {v} (expected 0 for a small workload)")
    P += _missing(report["totals"], LEDGER_KEYS, "totals")

    pids = [p.get("pid") for p in report["processes"]]
    if pids != sorted(pids):
        P.append(f"processes not ordered by pid: {pids}")
    for p in report["processes"]:
        where = f"process {p.get('pid')}"
        m = _missing(p, ("pid", "ppid", "comm", "start_ns", "end_ns", "ledger", "threads",
                         "syscalls", "sched", "faults", "block_io"), where)
        if m:
            P += m
            continue
        P += _missing(p["ledger"], LEDGER_KEYS, where + " ledger")
        for t in p["threads"]:
            tw = f"{where} thread {t.get('tid')}"
            P += _missing(t, ("tid", "comm", "ledger"), tw)
            P += _missing(t.get("ledger", {}), LEDGER_KEYS, tw + " ledger")
        for s in p["syscalls"]:
            sw = f"{where} syscall {s.get('name')}"
            m = _missing(s, ("name", "nr", "count", "errors", "total_ns", "oncpu_ns",
                             "offcpu_ns", "hist_log2_ns", "p50_ns", "p99_ns", "max_ns"), sw)
            if m:
                P += m
                continue
            P += _hist_problems(s, "hist_log2_ns", "count", sw)
            if s["errors"] > s["count"]:
                P.append(f"{sw}: errors {s['errors']} > count {s['count']}")
            if s["count"] and not (s["p50_ns"] <= s["p99_ns"] <= s["max_ns"] <= s["total_ns"]):
                P.append(f"{sw}: not p50 {s['p50_ns']} <= p99 {s['p99_ns']} <= max "
                         f"{s['max_ns']} <= total {s['total_ns']}")
        tot = [s["total_ns"] for s in p["syscalls"] if "total_ns" in s]
        if tot != sorted(tot, reverse=True):
            P.append(f"{where}: syscalls not ordered by total_ns descending: "
                     f"{[(s.get('name'), s.get('total_ns')) for s in p['syscalls']]}")
        sc = p["sched"]
        m = _missing(sc, ("voluntary_switches", "involuntary_switches", "migrations",
                          "runq_hist_log2_ns"), where + " sched")
        P += m
        if not m:
            P += _hist_problems(sc, "runq_hist_log2_ns", "runq_waits", where + " sched")
        P += _missing(p["faults"], ("minor", "major"), where + " faults")
        for b in p["block_io"]:
            bw = f"{where} block_io {b.get('device')} {b.get('op')}"
            m = _missing(b, ("device", "op", "submitted", "count", "bytes", "total_ns",
                             "hist_log2_ns"), bw)
            P += m
            if not m:
                P += _hist_problems(b, "hist_log2_ns", "count", bw)
                if b["count"] > b["submitted"]:
                    P.append(f"{bw}: more completions than submitted")
                if b["op"] not in ("read", "write", "flush", "discard", "other"):
                    P.append(f"{bw}: unknown op")
    for row in report["contact_map"]:
        P += _missing(row, ("subsystem", "time_ns", "share", "count"), "contact_map row")
        if row.get("subsystem") not in SUBSYSTEMS:
            P.append(f"contact_map: unknown subsystem {row.get('subsystem')!r}")
    times = [r.get("time_ns", 0) for r in report["contact_map"]]
    if times != sorted(times, reverse=True):
        P.append(f"contact_map not ordered largest time first: {times}")
    return P


def ledger_problems_one(L, where):
    P = []
    for k in LEDGER_INT_KEYS:
        if not _is_uint(L.get(k)):
            P.append(f"{where}: {k} is not a non-negative integer: {L.get(k)!r}")
    causes = L.get("offcpu_by_cause")
    if not isinstance(causes, dict) or not all(_is_uint(v) for v in causes.values()):
        P.append(f"{where}: offcpu_by_cause is not an object of integers: {causes!r}")
        return P
    if P:
        return P
    parts = L["oncpu_ns"] + L["runq_ns"] + L["offcpu_ns"] + L["unattributed_ns"]
    if L["wall_ns"] != parts:
        P.append(f"{where}: wall_ns {L['wall_ns']} != oncpu {L['oncpu_ns']} + runq "
                 f"{L['runq_ns']} + offcpu {L['offcpu_ns']} + unattributed "
                 f"{L['unattributed_ns']} = {parts} (diff {L['wall_ns'] - parts})")
    if L["offcpu_ns"] != sum(causes.values()):
        P.append(f"{where}: offcpu_ns {L['offcpu_ns']} != sum(offcpu_by_cause) "
                 f"{sum(causes.values())} {causes}")
    # on-CPU inside CUDA synchronize calls is its own part (GPU wait, spin)
    gpu_spin = L.get("oncpu_gpu_wait_ns", 0)
    if L["oncpu_ns"] != L["oncpu_user_ns"] + L["oncpu_syscall_ns"] + L["oncpu_kernel_ns"] + gpu_spin:
        P.append(f"{where}: oncpu_ns {L['oncpu_ns']} != user {L['oncpu_user_ns']} + "
                 f"syscall {L['oncpu_syscall_ns']} + kernel {L['oncpu_kernel_ns']} + "
                 f"gpu wait {gpu_spin}")
    if L["oncpu_kernel_fault_ns"] > L["oncpu_kernel_ns"]:
        P.append(f"{where}: oncpu_kernel_fault_ns {L['oncpu_kernel_fault_ns']} > "
                 f"oncpu_kernel_ns {L['oncpu_kernel_ns']}")
    # steal is a part of on-CPU time (absent from reports of the procfs tier)
    if L.get("oncpu_steal_ns", 0) > L["oncpu_ns"]:
        P.append(f"{where}: oncpu_steal_ns {L['oncpu_steal_ns']} > oncpu_ns {L['oncpu_ns']}")
    if L["runq_ns"] != L["runq_wakeup_ns"] + L["runq_preempt_ns"]:
        P.append(f"{where}: runq_ns {L['runq_ns']} != wakeup {L['runq_wakeup_ns']} + "
                 f"preempt {L['runq_preempt_ns']}")
    if L["iowait_ns"] > L["offcpu_ns"]:
        P.append(f"{where}: iowait_ns {L['iowait_ns']} > offcpu_ns {L['offcpu_ns']}")
    if any(v == 0 for v in causes.values()):
        P.append(f"{where}: zero-time causes must be left out: {causes}")
    return P


def _sum_ledgers(ledgers):
    out = {k: 0 for k in LEDGER_INT_KEYS}
    out["offcpu_by_cause"] = {}
    for L in ledgers:
        for k in LEDGER_INT_KEYS:
            out[k] += L.get(k, 0)
        for c, v in L.get("offcpu_by_cause", {}).items():
            out["offcpu_by_cause"][c] = out["offcpu_by_cause"].get(c, 0) + v
    return out


def _ledger_diff(a, b):
    d = {k: (a.get(k), b.get(k)) for k in LEDGER_INT_KEYS if a.get(k) != b.get(k)}
    if a.get("offcpu_by_cause") != b.get("offcpu_by_cause"):
        d["offcpu_by_cause"] = (a.get("offcpu_by_cause"), b.get("offcpu_by_cause"))
    return d


def _contact_map_problems(rows, wall, where):
    P = []
    s = sum(r.get("time_ns", 0) for r in rows)
    if s != wall:
        P.append(f"{where}: contact_map time_ns sum {s} != wall_ns {wall} (diff {wall - s}); "
                 f"rows {[(r.get('subsystem'), r.get('time_ns')) for r in rows]}")
    if wall > 0:
        sh = sum(r.get("share", 0) for r in rows)
        if abs(sh - 1.0) > SHARE_SUM_TOLERANCE:
            P.append(f"{where}: contact_map shares sum to {sh}, not 1")
    return P


def ledger_problems(report, from_start_to_end=None):
    """The ledger identities for every thread, process sums, totals, the
    contact map's closure, and (for threads traced from start to end, which
    in wrap mode is every thread that exited) unattributed < 1% of wall."""
    P = []
    if from_start_to_end is None:
        from_start_to_end = report.get("target", {}).get("mode") == "wrap"
    wstart = report.get("window", {}).get("start_ns", 0)
    procs = report.get("processes", [])
    for p in procs:
        where = f"process {p.get('pid')} ({p.get('comm')})"
        for t in p.get("threads", []):
            tw = f"{where} thread {t.get('tid')}"
            L = t.get("ledger", {})
            P += ledger_problems_one(L, tw)
            traced_whole = (from_start_to_end and t.get("end_ns", 0) != 0
                            and t.get("start_ns", 0) >= wstart)
            if traced_whole and _is_uint(L.get("unattributed_ns")) and _is_uint(L.get("wall_ns")):
                if L["unattributed_ns"] > 0 and \
                        L["unattributed_ns"] >= UNATTRIBUTED_MAX_FRACTION * L["wall_ns"]:
                    P.append(f"{tw}: unattributed_ns {L['unattributed_ns']} is not < 1% of "
                             f"wall_ns {L['wall_ns']} (thread traced from start to end)")
        for g in p.get("threads_folded", []):
            gw = f"{where} folded threads {g.get('comm')} x{g.get('count')}"
            P += ledger_problems_one(g.get("ledger", {}), gw)
            if not _is_uint(g.get("count")) or g["count"] < 1:
                P.append(f"{gw}: count is not a positive integer")
        P += ledger_problems_one(p.get("ledger", {}), where + " ledger")
        rows = p.get("threads", []) + p.get("threads_folded", [])
        d = _ledger_diff(p.get("ledger", {}), _sum_ledgers(t.get("ledger", {}) for t in rows))
        if d:
            P.append(f"{where}: process ledger != sum of its threads' ledgers: {d}")
        if "contact_map" in p:
            P += _contact_map_problems(p["contact_map"], p.get("ledger", {}).get("wall_ns", 0),
                                       where)
    folded = report.get("folded_processes", [])
    for p in folded:
        where = f"folded processes {p.get('comm')} x{p.get('count')}"
        P += ledger_problems_one(p.get("ledger", {}), where)
        rows = p.get("threads", []) + p.get("threads_folded", [])
        d = _ledger_diff(p.get("ledger", {}), _sum_ledgers(t.get("ledger", {}) for t in rows))
        if d:
            P.append(f"{where}: ledger != sum of its threads' ledgers: {d}")
        if "contact_map" in p:
            P += _contact_map_problems(p["contact_map"], p.get("ledger", {}).get("wall_ns", 0),
                                       where)
    tot = report.get("totals", {})
    P += ledger_problems_one(tot, "totals")
    d = _ledger_diff(tot, _sum_ledgers(p.get("ledger", {}) for p in procs + folded))
    if d:
        P.append(f"totals != sum of process ledgers: {d}")
    P += _contact_map_problems(report.get("contact_map", []), tot.get("wall_ns", 0), "report")
    return P


def assert_no_problems(problems, what):
    if problems:
        pytest.fail(f"{what}: {len(problems)} problem(s):\n  " + "\n  ".join(problems[:60]),
                    pytrace=False)
