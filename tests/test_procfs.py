"""The procfs tier: contactmap without root, as `nobody`, on its own processes.

Each test runs ./contactmap as the unprivileged user `nobody` (runuser) around
tests/workloads/pfwork.c, a workload that prints its own getrusage(SELF) and
getrusage(CHILDREN) after joining its threads and reaping its children, and
compares the report with it; where the BPF tier is the reference (run-queue
time, off-CPU causes) the same workload is traced as root in the same test.

CI runs the suite as root, so these tests need root to become nobody. The
binaries and workloads are copied into a directory nobody can read and run,
and reports go to one nobody can write.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import (WORKLOADS, assert_no_problems, contactmap_bin, find_proc, ledger_problems,
                      parse_truth, run_cm)

pytestmark = pytest.mark.usefixtures("need_root")

USER = "nobody"
# ---- tolerances (every time and count tolerance of this file) ---------------
# on-CPU against getrusage utime+stime: the tier's own figure is the kernel's
# exact runtime; the workload's getrusage comes before its final write and
# exit_group, which the report also counts
ONCPU_REL, ONCPU_ABS_NS = 0.02, 10_000_000
# user/kernel split: stat's utime/stime are cputime_adjust'ed clock ticks
# (10 ms), the same split getrusage makes from finer figures
SPLIT_REL, SPLIT_ABS_NS = 0.15, 30_000_000
# the exit path after the workload's getrusage: its final switch-out (the
# kernel counts a dead task's last schedule() as voluntary)
EXIT_SWITCHES = 1
# a child's row misses what it did after its last read (the rusage closure
# keeps it in the totals): at most one sampling period of CPU beyond ONCPU
TICK_NS = 10_000_000
RUNQ_REL = 0.10          # run-queue time against the BPF tier's
SHARE_PP = 0.10          # off-CPU cause shares against the BPF tier's
TIER_LINE = re.compile(r"^contactmap: procfs tier \(")


class Sandbox:
    def __init__(self, root):
        self.root = root
        self.bin = root / "bin"
        self.out = root / "out"
        self.n = 0

    def path(self, name):
        return str(self.bin / name)


@pytest.fixture(scope="module")
def sb():
    if not shutil.which("runuser"):
        pytest.fail("runuser (util-linux) is needed to run contactmap as nobody", pytrace=False)
    # pytest's own tmp directories are root's alone (0700): one of our own
    root = Path(tempfile.mkdtemp(prefix="contactmap-procfs-"))
    os.chmod(root, 0o755)
    s = Sandbox(root)
    s.bin.mkdir()
    s.out.mkdir()
    os.chmod(s.bin, 0o755)
    os.chmod(s.out, 0o777)
    shutil.copy(contactmap_bin(), s.bin / "contactmap")
    for name in ("pfwork", "stackwl", "libstackwl.so"):
        src = WORKLOADS / name
        if not src.exists():
            pytest.fail(f"{src} is not built: run `make test-bins`", pytrace=False)
        shutil.copy(src, s.bin / name)
    for p in s.bin.iterdir():
        os.chmod(p, 0o755)
    # the check the copy exists for: nobody can run what it is given
    cp = subprocess.run(["runuser", "-u", USER, "--", "test", "-x", s.path("pfwork")])
    assert cp.returncode == 0, f"{USER} cannot execute {s.path('pfwork')}"
    yield s
    shutil.rmtree(root, ignore_errors=True)


def run_nobody(sb, args, env=None, timeout=120):
    pre = ["env"] + [f"{k}={v}" for k, v in (env or {}).items()] if env else []
    argv = ["runuser", "-u", USER, "--"] + pre + [sb.path("contactmap")] + [str(a) for a in args]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=sb.root)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"contactmap did not finish in {timeout}s: {argv}\n{e.stderr!r}", pytrace=False)


class PfRun:
    def __init__(self, cp, report):
        self.rc, self.stdout, self.stderr = cp.returncode, cp.stdout, cp.stderr
        self.report = report
        self.truth = parse_truth(cp.stdout)

    def describe(self):
        return f"rc={self.rc}\nstdout={self.stdout[-1500:]!r}\nstderr={self.stderr[-3000:]!r}"


def pf_wrap(sb, *cmd, extra=(), env=None):
    sb.n += 1
    out = sb.out / f"r{sb.n}.json"
    args = list(extra) + ["-o", out, "--"]
    args += [sb.path(cmd[0]) if cmd[0] in ("pfwork", "stackwl") else cmd[0]] + list(cmd[1:])
    cp = run_nobody(sb, args, env=env)
    report = json.loads(out.read_text()) if out.exists() else None
    r = PfRun(cp, report)
    assert r.report is not None, f"no report written\n{r.describe()}"
    return r


def nested(sb, tmp_path, *args):
    """One run of pfwork ARGS seen by both tiers: the BPF tier (root) wraps the
    procfs tier's run (nobody), so both report the same process, under the
    same load. Returns (bpf process, procfs process, procfs run)."""
    sb.n += 1
    pf_out, bpf_out = sb.out / f"n{sb.n}.json", tmp_path / f"bpf{sb.n}.json"
    cp = run_cm(["-o", bpf_out, "--", "runuser", "-u", USER, "--", sb.path("contactmap"), "-o", pf_out,
                 "--", sb.path("pfwork")] + [str(a) for a in args])
    assert cp.returncode == 0, cp.stderr[-3000:]
    bpf, pf = json.loads(bpf_out.read_text()), json.loads(pf_out.read_text())
    truth = parse_truth(cp.stdout)
    assert bpf["features"]["tier"] == "bpf" and pf["features"]["tier"] == "procfs"
    return find_proc(bpf, pid=truth["pid"]), find_proc(pf, pid=truth["pid"]), pf


def proc_of(r):
    return find_proc(r.report, pid=r.truth["pid"])


def ru_cpu(ru):
    return ru["utime_ns"] + ru["stime_ns"]


def within(got, want, rel, abs_ns):
    return abs(got - want) <= rel * want + abs_ns


def procfs_problems(report):
    """The contactmap/1 contract as the procfs tier keeps it: the tier named,
    every section's source, what is missing left out of the processes."""
    P = []
    f = report.get("features", {})
    if f.get("tier") != "procfs":
        P.append(f"features.tier is {f.get('tier')!r}")
    src, miss = f.get("sources", {}), f.get("missing", {})
    for key in ("ledger.oncpu_ns", "ledger.runq_ns", "ledger.offcpu_by_cause", "syscalls",
                "sched.switches", "faults", "io"):
        if key not in src:
            P.append(f"features.sources has no {key!r}")
    for key, v in src.items():
        if v.get("sampled") and not (isinstance(v.get("samples"), int) and v.get("hz", 0) > 0):
            P.append(f"sampled source {key} without samples and hz: {v}")
    for key in ("stacks.offcpu", "block_io", "gpu"):
        if not miss.get(key):
            P.append(f"features.missing does not list {key!r} with a reason")
    for p in report.get("processes", []):
        if "block_io" in p:
            P.append(f"process {p.get('pid')} has block_io, which this tier cannot give")
        for s in p.get("syscalls", []):
            if s.get("count") != 0 or not s.get("sampled"):
                P.append(f"process {p.get('pid')} syscall {s.get('name')}: a count, or not marked sampled")
    if any(v for v in report.get("lost", {}).values()):
        P.append(f"lost: {report.get('lost')}")
    return P


# ---------------------------------------------------------------------------
def test_tier_is_said_and_named(sb):
    r = pf_wrap(sb, "pfwork", "burn", 300)
    assert r.rc == 0, r.describe()
    lines = r.stderr.splitlines()
    tier = [l for l in lines if TIER_LINE.match(l)]
    assert len(tier) == 1, f"not one tier line on stderr: {lines[:5]}"
    assert not [l for l in lines if l.startswith("contactmap: error")], lines
    assert "tier: procfs" in r.stderr, "the text map's header does not name the tier"
    assert r.report["schema"] == "contactmap/1"
    assert_no_problems(procfs_problems(r.report), "procfs report")
    assert_no_problems(ledger_problems(r.report, from_start_to_end=True), "ledger")
    oc = r.report["features"]["sources"]["ledger.offcpu_by_cause"]
    assert oc["sampled"] is True and oc["hz"] == pytest.approx(100, rel=0.5), oc
    assert r.report["procfs"]["closure"]["oncpu_ns"]["matched"] > 0.99, r.report["procfs"]["closure"]


@pytest.mark.parametrize("mode,ms", [("burn", 400), ("split", 250)])
def test_oncpu_and_split_against_rusage(sb, mode, ms):
    r = pf_wrap(sb, "pfwork", mode, ms)
    assert r.rc == 0, r.describe()
    ru = r.truth["self"]
    L = proc_of(r)["ledger"]
    assert within(L["oncpu_ns"], ru_cpu(ru), ONCPU_REL, ONCPU_ABS_NS), (L, ru)
    assert within(L["oncpu_user_ns"], ru["utime_ns"], SPLIT_REL, SPLIT_ABS_NS), (L, ru)
    kernel = L["oncpu_syscall_ns"] + L["oncpu_kernel_ns"]
    assert within(kernel, ru["stime_ns"], SPLIT_REL, SPLIT_ABS_NS), (L, ru)
    if mode == "split":
        assert ru["stime_ns"] >= 0.5 * ms * 1e6, f"the workload's kernel half did not happen: {ru}"


def test_sleep_is_offcpu_in_clock_nanosleep(sb):
    r = pf_wrap(sb, "pfwork", "sleep", 25, 20000)
    assert r.rc == 0, r.describe()
    L = proc_of(r)["ledger"]
    want = r.truth["requested_ns"]
    off = L["offcpu_by_cause"].get("syscall:clock_nanosleep", 0)
    # blocked time is what is left of the thread's wall after schedstat's
    # on-CPU and run queue: the sleeps, less the part a wake-up waits for a CPU
    assert want - L["runq_ns"] - L["oncpu_ns"] <= L["offcpu_ns"] <= want * 1.10 + 5_000_000, L
    assert off >= 0.9 * L["offcpu_ns"], f"clock_nanosleep is not the cause: {L}"
    assert_no_problems(ledger_problems(r.report, from_start_to_end=True), "ledger")


def test_pingpong_switches_exact(sb):
    r = pf_wrap(sb, "pfwork", "pingpong", 50000)
    assert r.rc == 0, r.describe()
    ru = r.truth["self"]
    p = proc_of(r)
    s = p["sched"]
    assert ru["nvcsw"] <= s["voluntary_switches"] <= ru["nvcsw"] + EXIT_SWITCHES, (s, ru)
    assert ru["nivcsw"] <= s["involuntary_switches"] <= ru["nivcsw"] + EXIT_SWITCHES, (s, ru)
    assert s["voluntary_switches"] >= 50000, s
    # waits of microseconds: a sample often finds the thread awake again (or
    # still queued: delayed dequeue), and off-CPU time of a thread no sample
    # found blocked is "other"; every syscall cause found is the threads' read
    causes = p["ledger"]["offcpu_by_cause"]
    assert set(causes) <= {"syscall:read", "other"}, causes


def test_first_touch_faults_exact(sb):
    r = pf_wrap(sb, "pfwork", "touch", 20000)
    assert r.rc == 0, r.describe()
    ru = r.truth["self"]
    f = proc_of(r)["faults"]
    assert ru["minflt"] >= 20000
    assert f["minor"] == ru["minflt"] and f["major"] == ru["majflt"], (f, ru)


def test_two_processes(sb):
    r = pf_wrap(sb, "pfwork", "two", 300)
    assert r.rc == 0, r.describe()
    me, kids = r.truth["self"], r.truth["children"]
    parent, child = proc_of(r), find_proc(r.report, pid=r.truth["child"])
    assert child["ppid"] == parent["pid"]
    # the command: its own counters, read while it is a zombie
    assert within(parent["ledger"]["oncpu_ns"], ru_cpu(me), ONCPU_REL, ONCPU_ABS_NS)
    assert parent["faults"]["minor"] == me["minflt"], (parent["faults"], me)
    assert me["nvcsw"] <= parent["sched"]["voluntary_switches"] <= me["nvcsw"] + EXIT_SWITCHES
    # the child: as of its last read, the rest in the totals (the closure)
    assert within(child["ledger"]["oncpu_ns"], ru_cpu(kids), ONCPU_REL, ONCPU_ABS_NS + TICK_NS), \
        (child["ledger"], kids)
    tot = r.report["totals"]
    allp = r.report["processes"] + r.report["folded_processes"]
    flt = sum(p["faults"]["minor"] for p in allp)
    vol = sum(p["sched"]["voluntary_switches"] for p in allp)
    inv = sum(p["sched"]["involuntary_switches"] for p in allp)
    assert flt == me["minflt"] + kids["minflt"], (flt, me, kids)
    assert me["nvcsw"] + kids["nvcsw"] <= vol <= me["nvcsw"] + kids["nvcsw"] + 2 * EXIT_SWITCHES
    assert me["nivcsw"] + kids["nivcsw"] <= inv <= me["nivcsw"] + kids["nivcsw"] + 2 * EXIT_SWITCHES
    assert within(tot["oncpu_ns"], ru_cpu(me) + ru_cpu(kids), ONCPU_REL, ONCPU_ABS_NS)
    assert_no_problems(ledger_problems(r.report, from_start_to_end=True), "ledger")


def test_runq_against_bpf(sb, tmp_path):
    # four threads on one CPU: each waits while the others run
    bp, pp, _ = nested(sb, tmp_path, "runq", 4, 200)
    want, got = bp["ledger"]["runq_ns"], pp["ledger"]["runq_ns"]
    assert want > 400_000_000, f"the BPF run saw too little run-queue time: {want}"
    assert abs(got - want) <= RUNQ_REL * want, f"procfs run queue {got} vs BPF {want}"


def cause_shares(proc):
    causes = proc["ledger"]["offcpu_by_cause"]
    total = sum(causes.values())
    return {k: v / total for k, v in causes.items()}


def test_offcpu_cause_shares_against_bpf(sb, tmp_path):
    bp, pp, _ = nested(sb, tmp_path, "mix", 1500)
    want, got = cause_shares(bp), cause_shares(pp)
    for k in ("syscall:clock_nanosleep", "syscall:read", "syscall:futex"):
        assert want.get(k, 0) > 0.15, f"the BPF run has too little {k}: {want}"
        assert abs(got.get(k, 0) - want[k]) <= SHARE_PP, f"{k}: procfs {got} vs BPF {want}"


def test_churn_totals_exact_and_unseen_counted(sb):
    nt, np = 2000, 500
    r = pf_wrap(sb, "pfwork", "churn", nt, np, extra=["-t"])
    assert r.rc == 0, r.describe()
    me, kids = r.truth["self"], r.truth["children"]
    rep = r.report
    allp = rep["processes"] + rep["folded_processes"]
    assert sum(p["faults"]["minor"] for p in allp) == me["minflt"] + kids["minflt"]
    vol = sum(p["sched"]["voluntary_switches"] for p in allp)
    assert me["nvcsw"] + kids["nvcsw"] <= vol <= me["nvcsw"] + kids["nvcsw"] + 2 * EXIT_SWITCHES
    assert within(rep["totals"]["oncpu_ns"], ru_cpu(me) + ru_cpu(kids), ONCPU_REL, ONCPU_ABS_NS)
    # the command itself: its CPU clock and stat hold its ended threads
    cmd = proc_of(r)
    assert within(cmd["ledger"]["oncpu_ns"], ru_cpu(me), ONCPU_REL, ONCPU_ABS_NS)
    assert cmd["faults"]["minor"] == me["minflt"], (cmd["faults"], me)
    # every thread and process is counted: seen alive, or not (perf records)
    th, pr = rep["procfs"]["threads"], rep["procfs"]["processes"]
    assert rep["lost"]["perf_records_lost"] == 0
    assert th["seen_alive"] + th["never_seen_alive"] == nt + np + 1, th
    assert pr["seen_alive"] + pr["never_seen_alive"] == np + 1, pr
    assert "never" in r.stderr, "the text map does not say how many threads were never seen"
    assert_no_problems(ledger_problems(rep, from_start_to_end=True), "ledger")


def test_attach_own_process(sb):
    proc = subprocess.Popen(["runuser", "-u", USER, "--", sb.path("pfwork"), "sleep", "200", "10000"],
                            stdout=subprocess.PIPE, text=True)
    try:
        pid = None
        for _ in range(200):
            out = subprocess.run(["pgrep", "-n", "-x", "pfwork", "-u", USER], capture_output=True,
                                 text=True).stdout.strip()
            if out:
                pid = int(out)
                break
            subprocess.run(["sleep", "0.01"])
        assert pid, "the workload did not start"
        sb.n += 1
        out = sb.out / f"a{sb.n}.json"
        cp = run_nobody(sb, ["-p", pid, "-d", 1, "-o", out])
        assert cp.returncode == 0, cp.stderr
        rep = json.loads(out.read_text())
        p = find_proc(rep, pid=pid)
        assert rep["target"]["mode"] == "attach" and rep["features"]["tier"] == "procfs"
        assert p["procfs"]["counted_from"] == "attach"
        L = p["ledger"]
        assert L["offcpu_by_cause"].get("syscall:clock_nanosleep", 0) >= 0.8 * L["offcpu_ns"], L
        assert 0.9e9 <= L["wall_ns"] <= 1.5e9, L
        assert_no_problems(ledger_problems(rep, from_start_to_end=False), "ledger")
    finally:
        proc.kill()
        proc.wait()


def one_error_line(cp):
    assert cp.returncode != 0, cp.stderr
    assert cp.stderr.endswith("\n"), f"stderr does not end in a newline: {cp.stderr!r}"
    errs = [l for l in cp.stderr.splitlines() if l.startswith("contactmap: error: ")]
    assert len(errs) == 1, cp.stderr
    return errs[0]


def test_another_users_pid_is_refused(sb):
    line = one_error_line(run_nobody(sb, ["-p", 1, "-d", 1]))
    assert "another user" in line and "uid 0" in line, line


def test_refusals_are_one_line(sb):
    assert "BPF tier needs root" in one_error_line(run_nobody(sb, ["--tier", "bpf", "--", "/bin/true"]))
    assert "--trace" in one_error_line(run_nobody(sb, ["--trace", sb.out / "t.json", "--", "/bin/true"]))
    assert "off-CPU stacks" in one_error_line(
        run_nobody(sb, ["--stacks", "offcpu", "-f", sb.out / "x.folded", "--", "/bin/true"]))
    assert "no such process" in one_error_line(run_nobody(sb, ["-p", 4194000]))
    assert "unknown option" in one_error_line(run_nobody(sb, ["--bogus"]))


def test_check_lists_tiers_and_sources(sb):
    cp = run_nobody(sb, ["check"])
    assert cp.returncode == 0, cp.stderr
    text = cp.stdout
    for what in ("bpf", "procfs", "schedstat", "perf_event_paranoid", "ptrace scope", "delay accounting"):
        assert re.search(rf"^\s+{re.escape(what)}\b", text, re.M), f"check does not list {what}:\n{text}"
    paranoid = Path("/proc/sys/kernel/perf_event_paranoid").read_text().strip()
    assert re.search(rf"perf_event_paranoid\s+{paranoid}\b", text), text
    assert "tier in use: procfs" in text


@pytest.fixture
def paranoid_3():
    path = Path("/proc/sys/kernel/perf_event_paranoid")
    old = path.read_text().strip()
    path.write_text("3\n")
    try:
        yield
    finally:
        path.write_text(old + "\n")


def test_perf_event_paranoid_3(sb, paranoid_3):
    folded = sb.out / "p3.folded"
    r = pf_wrap(sb, "pfwork", "burn", 200, extra=["-f", folded])
    assert r.rc == 0, r.describe()
    warns = [l for l in r.stderr.splitlines() if l.startswith("contactmap: warning:")]
    assert len(warns) == 1 and "perf_event_paranoid=3" in warns[0], r.stderr
    assert not folded.exists(), "a folded file was written without stacks"
    f = r.report["features"]
    assert "perf_event_paranoid=3" in f["missing"]["stacks.oncpu"]
    assert r.report["procfs"]["threads"]["never_seen_alive"] is None
    # what does not need perf still works
    L, ru = proc_of(r)["ledger"], r.truth["self"]
    assert within(L["oncpu_ns"], ru_cpu(ru), ONCPU_REL, ONCPU_ABS_NS), (L, ru)
    assert_no_problems(ledger_problems(r.report, from_start_to_end=True), "ledger")


def test_without_schedstat(sb):
    env = {"CONTACTMAP_PRETEND": "no-schedstat"}
    r = pf_wrap(sb, "pfwork", "two", 300, env=env)
    assert r.rc == 0, r.describe()
    f = r.report["features"]
    assert f["procfs"]["schedstat"] is False and "ledger.runq_ns" in f["missing"], f
    assert f["sources"]["ledger.oncpu_ns"]["exact"] is False
    parent = proc_of(r)
    me = r.truth["self"]
    assert parent["ledger"]["runq_ns"] == 0
    # the process total stays exact: its CPU clock
    assert within(parent["ledger"]["oncpu_ns"], ru_cpu(me), ONCPU_REL, ONCPU_ABS_NS), parent["ledger"]
    assert parent["faults"]["minor"] == me["minflt"]
    assert_no_problems(ledger_problems(r.report, from_start_to_end=True), "ledger")
    cp = run_nobody(sb, ["check"], env=env)
    assert re.search(r"^\s+schedstat\s+no\b", cp.stdout, re.M), cp.stdout


LINE = re.compile(r"^[^;\s][^;]*(;[^;]+)* [1-9][0-9]*$")


def test_oncpu_stacks_without_root(sb):
    folded = sb.out / "s.folded"
    r = pf_wrap(sb, "stackwl", sb.path("libstackwl.so"), extra=["-f", folded])
    assert r.rc == 0, r.describe()
    stacks = {}
    for l in folded.read_text().splitlines():
        assert LINE.match(l), f"bad folded line: {l!r}"
        frames, w = l.rsplit(" ", 1)
        stacks[frames] = int(w)

    def weight(chain):
        return sum(w for f, w in stacks.items()
                   if any(f.split(";")[i:i + len(chain)] == chain for i in range(len(f.split(";")))))

    assert not any("[off-cpu:" in f for f in stacks), "off-CPU stacks in the procfs tier"
    spin = weight(["worker", "outer_a", "middle_b", "spin_c"])
    assert spin > 0 and spin >= weight(["main", "lib_spin_g"]) > 0, stacks
    assert weight(["main", "child_spin_h"]) > 0, "the child's stacks did not resolve"
    src = r.report["features"]["sources"]["stacks.oncpu"]
    assert src["sampled"] and src["samples"] > 0, src
    assert r.report["stacks"]["user_unwind_methods"]["dwarf"] > 0
