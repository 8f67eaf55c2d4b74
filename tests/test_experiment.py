"""`contactmap experiment` and `contactmap advise`.

Knob safety first: a sysctl (vm.swappiness) and the THP mode are read before,
during (by the workload itself, tests/workloads/knobs_seen.c) and after an
experiment, after Ctrl-C and SIGTERM, and after SIGKILL + --restore. Then
workloads with a known response to a knob: allocator churn
(tests/workloads/alloc_churn.c) stops faulting under malloc:notrim; two threads of
fixed work (spin_threads.c) confined by cpus=0 wait on the run queue while the
other runs; an irrelevant knob (swappiness one off, on a sleeper) is noise.
Every bad knob is one error line before anything changes.

The machine is shared: system knobs here are the ones with little global
effect (vm.swappiness), THP is switched only between madvise and always and
only for a run or two of a tiny workload, and every test checks that the
values it found are back, and puts them back itself if not.
"""
import json
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO, ROOT_SKIP_REASON, contactmap_bin, is_root, run_cm, wait_for, workload

pytestmark = pytest.mark.usefixtures("need_root")

SWAPPINESS = Path("/proc/sys/vm/swappiness")
THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
STATE_DIR = Path("/run/contactmap") if Path("/run").is_dir() else Path("/var/lib/contactmap")
PLOT = REPO / "scripts" / "plot.py"
PYTHON = "/usr/bin/python3"

# churn: blocks above glibc's 32 MiB mmap threshold cap, so each is a fresh mmap
CHURN_ITERS, CHURN_MIB = 4, 40
# user arithmetic per iteration, alike on both sides: without it the faults
# are nearly the whole run on both sides and their share hardly moves
CHURN_BURN_MS = 20
RUNS = 3


# ---- helpers ---------------------------------------------------------------------

def read_thp():
    t = THP.read_text()
    return t[t.index("[") + 1:t.index("]")]


def other_swappiness(v):
    return 17 if v != 17 else 18


def other_thp(mode):
    # never "never": tests of others that madvise huge pages would lose them
    return "always" if mode != "always" else "madvise"


def state_files():
    return sorted(STATE_DIR.glob("experiment-*.state")) if STATE_DIR.is_dir() else []


@pytest.fixture
def machine():
    """The knob values before the test; after it they must be the same (the
    test fails if not), and are put back whatever happened."""
    before = {"swappiness": SWAPPINESS.read_text().strip(),
              "thp": read_thp() if THP.exists() else None}
    yield before
    after = {"swappiness": SWAPPINESS.read_text().strip(),
             "thp": read_thp() if THP.exists() else None}
    if after != before:
        run_cm(["experiment", "--restore"])
        SWAPPINESS.write_text(before["swappiness"])
        if before["thp"]:
            THP.write_text(before["thp"])
        pytest.fail(f"knobs not restored after the test: before {before}, after {after}",
                    pytrace=False)


def experiment(tmp_path, *args, name="e.json", timeout=120, **kw):
    """./contactmap experiment -o JSON --dir DIR ARGS; returns (process, JSON or None)."""
    out, d = tmp_path / name, tmp_path / (name + ".runs")
    p = run_cm(["experiment", "-o", out, "--dir", d] + [str(a) for a in args], timeout=timeout, **kw)
    return p, (json.loads(out.read_text()) if out.exists() else None)


def ok(p, e):
    assert p.returncode == 0 and e is not None, \
        f"experiment failed: rc={p.returncode}\nstdout={p.stdout[-3000:]}\nstderr={p.stderr[-3000:]}"
    assert e["schema"] == "contactmap-experiment/1"
    return e


def runs_of(e, side):
    return [r for r in e["runs"] if r["side"] == side and not r["warmup"]]


def seen(run):
    """What knobs_seen printed from inside the workload in this run."""
    line = Path(run["stdout"]).read_text().strip().splitlines()[-1]
    return json.loads(line)


def comparison(e, side):
    hits = [c for c in e["comparisons"] if c["side"] == side]
    assert len(hits) == 1, e["comparisons"]
    return hits[0]


def diff_row(c, section, key):
    hits = [r for r in c["diff"]["rows"] if r["section"] == section and r["key"] == key]
    assert len(hits) == 1, (f"no {section} row {key!r}: "
                            f"{sorted(r['key'] for r in c['diff']['rows'] if r['section'] == section)}")
    return hits[0]


def one_error_line(p, rc=None):
    lines = p.stderr.strip().splitlines()
    assert p.returncode != 0 if rc is None else p.returncode == rc, f"rc={p.returncode} {p.stderr!r}"
    assert len(lines) == 1 and lines[0].startswith("contactmap: error: ") and p.stderr.endswith("\n"), \
        f"expected one 'contactmap: error:' line, got {p.stderr!r}"
    return lines[0]


def start_experiment(tmp_path, *args, name="e.json"):
    """The experiment as a background process (its own session, so that the
    test can signal it alone); returns (Popen, json path)."""
    out, d = tmp_path / name, tmp_path / (name + ".runs")
    argv = [contactmap_bin(), "experiment", "-o", str(out), "--dir", str(d)] + [str(a) for a in args]
    return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True), out


def children(pid):
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


# ---- knobs applied and restored -----------------------------------------------------

def test_system_knobs_applied_during_runs_and_restored(tmp_path, machine):
    swp, thp = int(machine["swappiness"]), machine["thp"]
    new_swp, new_thp = other_swappiness(swp), other_thp(thp)
    p, e = experiment(tmp_path, "-n", 1, "--knob", f"sysctl:vm.swappiness={new_swp}", f"thp={new_thp}",
                      "--", workload("knobs_seen"))
    ok(p, e)
    (a,), (b,) = runs_of(e, "A"), runs_of(e, "B")
    assert (seen(a)["swappiness"], seen(a)["thp"]) == (str(swp), thp), seen(a)
    assert (seen(b)["swappiness"], seen(b)["thp"]) == (str(new_swp), new_thp), seen(b)
    assert SWAPPINESS.read_text().strip() == str(swp) and read_thp() == thp
    assert state_files() == []
    # the reports' own host facts agree: the knob was in place while B was traced
    ra, rb = (json.loads(Path(r["report"]).read_text()) for r in (a, b))
    assert (ra["host"]["swappiness"], rb["host"]["swappiness"]) == (swp, new_swp)
    assert (ra["host"]["thp"], rb["host"]["thp"]) == (thp, new_thp)
    # and the JSON records what was changed and from what
    files = {f["path"]: f for k in e["sides"][1]["knobs"] for f in k["files"]}
    assert files[str(SWAPPINESS)] == {"path": str(SWAPPINESS), "value": str(new_swp), "original": str(swp)}
    assert files[str(THP)]["original"] == thp and files[str(THP)]["value"] == new_thp


def idle_disk():
    """A block device nothing uses (an unbound loop device) whose I/O
    scheduler can be switched without touching anyone's I/O, or None."""
    for d in sorted(Path("/sys/block").glob("loop*")):
        sched = d / "queue" / "scheduler"
        if sched.exists() and (d / "size").read_text().strip() == "0" and len(sched.read_text().split()) > 1:
            return d.name
    return None


def test_io_scheduler_applied_and_restored(tmp_path):
    dev = idle_disk()
    if not dev:
        pytest.fail("no unused loop device to switch the I/O scheduler of (modprobe loop)", pytrace=False)
    path = Path(f"/sys/block/{dev}/queue/scheduler")
    text = path.read_text()
    cur = text[text.index("[") + 1:text.index("]")]
    new = next(w.strip("[]") for w in text.split() if w.strip("[]") != cur)
    try:
        p, e = experiment(tmp_path, "-n", 1, "--knob", f"iosched={dev}:{new}", "--", "/bin/cat", path)
        ok(p, e)
        (a,), (b,) = runs_of(e, "A"), runs_of(e, "B")
        assert f"[{cur}]" in Path(a["stdout"]).read_text() and f"[{new}]" in Path(b["stdout"]).read_text()
        after = path.read_text()
        assert f"[{cur}]" in after, after
    finally:
        if f"[{cur}]" not in path.read_text():
            path.write_text(cur)


def test_knobs_interleaved_and_metric_from_the_workload(tmp_path, machine):
    swp = int(machine["swappiness"])
    new = other_swappiness(swp)
    p, e = experiment(tmp_path, "-n", RUNS, "-m", r'"swappiness": "([0-9]+)"',
                      "--knob", f"sysctl:vm.swappiness={new}", "--", workload("knobs_seen"))
    ok(p, e)
    order = [r["side"] for r in e["runs"]]
    assert order == ["A", "B"] * RUNS, order
    assert [r["metric"]["value"] for r in e["runs"]] == [swp, new] * RUNS
    assert all(r["metric"]["matches"] == 1 for r in e["runs"])
    m = {s["side"]: s for s in e["metric"]["sides"]}
    assert (m["A"]["mean"], m["B"]["mean"], m["A"]["stddev"]) == (swp, new, 0)
    c = comparison(e, "B")
    assert c["metric"]["delta"] == new - swp and c["metric"]["noise"] is False
    assert "metric" in p.stdout and "beyond noise" in p.stdout
    for r in e["runs"]:
        rep = json.loads(Path(r["report"]).read_text())
        assert rep["schema"] == "contactmap/1" and rep["exit"]["status"] == 0
        assert r["window_ns"] == rep["window"]["duration_ns"]
    assert c["diff"]["schema"] == "contactmap-diff/1"
    assert c["diff"]["before"]["runs"] == RUNS and c["diff"]["after"]["runs"] == RUNS
    env = {x["key"]: x for x in c["diff"]["env_changes"]}
    assert env["host.swappiness"]["before"] == str(swp) and env["host.swappiness"]["after"] == str(new)


def test_process_knobs_seen_inside_the_workload(tmp_path, machine):
    cpu = os.sched_getaffinity(0)
    pick = max(cpu)
    p, e = experiment(tmp_path, "-n", 1, "--knob", "env:CM_EXPERIMENT_VAR=hello world", f"cpus={pick}",
                      "prefault", "malloc:notrim", "sched=batch",
                      "--", workload("knobs_seen"), 0, "CM_EXPERIMENT_VAR", "GLIBC_TUNABLES")
    ok(p, e)
    (a,), (b,) = runs_of(e, "A"), runs_of(e, "B")
    sa, sb = seen(a), seen(b)
    assert sa["env"] == {"CM_EXPERIMENT_VAR": None, "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES")}
    assert sa["ncpus"] == len(cpu) and sa["policy"] == os.SCHED_OTHER
    assert sa["mmap_resident"] == 0 and sa["malloc_resident"] == 0
    assert sb["env"]["CM_EXPERIMENT_VAR"] == "hello world"
    assert "glibc.malloc.mmap_max=0" in sb["env"]["GLIBC_TUNABLES"]
    assert "glibc.malloc.trim_threshold=" in sb["env"]["GLIBC_TUNABLES"]
    assert sb["ncpus"] == 1 and (pick > 1 or sb[f"cpu{pick}"] == 1), sb
    assert sb["policy"] == os.SCHED_BATCH
    # prefault: every page of a fresh mmap and of a fresh malloc block is there
    assert sb["mmap_resident"] == sb["region_pages"], sb
    assert sb["malloc_resident"] >= sb["region_pages"] - 3, sb
    # nothing system-wide: no state file was needed
    assert all("files" not in k for k in e["sides"][1]["knobs"])


def test_apply_runs_a_command_with_process_knobs(tmp_path):
    p = run_cm(["experiment", "--apply", "env:CM_X=1", "malloc:arena_max=2", "--", "/usr/bin/env"])
    assert p.returncode == 0, p.stderr
    env = dict(l.split("=", 1) for l in p.stdout.splitlines() if "=" in l)
    assert env["CM_X"] == "1" and "glibc.malloc.arena_max=2" in env["GLIBC_TUNABLES"]
    line = one_error_line(run_cm(["experiment", "--apply", "sysctl:vm.swappiness=10", "--", "true"]))
    assert "per-process knobs only" in line


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_restores_at_once(tmp_path, machine, sig):
    swp, thp = int(machine["swappiness"]), machine["thp"]
    new_swp, new_thp = other_swappiness(swp), other_thp(thp)
    # A sleeps 0.6 s, then B is in place while its workload sleeps: stop it there
    proc, out = start_experiment(tmp_path, "-n", 2, "--knob", f"sysctl:vm.swappiness={new_swp}",
                                 f"thp={new_thp}", "--", workload("knobs_seen"), 600)
    try:
        b_out = Path(str(out) + ".runs") / "run-01-B.out"
        # B's workload has started (and printed what it sees) when its output appears
        assert wait_for(lambda: b_out.exists() and b_out.stat().st_size > 0, 30, 0.002), \
            "the B run never started"
        assert SWAPPINESS.read_text().strip() == str(new_swp) and read_thp() == new_thp
        mine = [f for f in state_files() if json.loads(f.read_text())["pid"] == proc.pid]
        assert len(mine) == 1, state_files()
        st = json.loads(mine[0].read_text())
        assert {f["path"]: f["original"] for f in st["files"]} == {str(SWAPPINESS): str(swp), str(THP): thp}
        assert oct(mine[0].stat().st_mode & 0o777) == "0o600" and mine[0].stat().st_uid == 0
        # while it lives, --restore leaves its knobs alone, and a second
        # experiment on the same file refuses to start
        r = run_cm(["experiment", "--restore"])
        assert r.returncode == 0 and f"experiment pid {proc.pid} is still running" in r.stdout, r.stdout
        assert SWAPPINESS.read_text().strip() == str(new_swp)
        line = one_error_line(run_cm(["experiment", "-n", 1, "--knob", f"sysctl:vm.swappiness={swp}",
                                      "--", "/bin/true"]))
        assert f"experiment pid {proc.pid} is changing {SWAPPINESS} too" in line, line
        proc.send_signal(sig)
        # the knobs come back first, before the run is even stopped
        assert wait_for(lambda: SWAPPINESS.read_text().strip() == str(swp), 2, 0.002)
        assert read_thp() == thp
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 128 + sig, (proc.returncode, stderr)
    assert f"experiment stopped by {signal.strsignal(sig)} after 1 of 4 runs: knobs restored" in stderr
    assert not [f for f in state_files() if f.name.startswith(f"experiment-{proc.pid}-")]
    e = json.loads(out.read_text())
    assert e["interrupted"] is True and e["signal"] == sig
    done = [(r["side"], r["done"]) for r in e["runs"]]
    assert done == [("A", True), ("B", False), ("A", False), ("B", False)], done
    # from inside: B's workload saw the knobs before it was stopped
    sb = seen(e["runs"][1])
    assert (sb["swappiness"], sb["thp"]) == (str(new_swp), new_thp)


def test_sigkill_then_restore(tmp_path, machine):
    swp, thp = int(machine["swappiness"]), machine["thp"]
    new_swp, new_thp = other_swappiness(swp), other_thp(thp)
    proc, out = start_experiment(tmp_path, "-n", 1, "--knob", f"sysctl:vm.swappiness={new_swp}",
                                 f"thp={new_thp}", "--", workload("knobs_seen"), 300)
    b_out = Path(str(out) + ".runs") / "run-01-B.out"
    orphans = []
    try:
        # killed while B's workload runs: every knob of B is in place
        assert wait_for(lambda: b_out.exists() and b_out.stat().st_size > 0, 30, 0.002)
        orphans = children(proc.pid)
        proc.kill()
        proc.wait()
        # killed: nothing put the knobs back, the state file remains
        assert SWAPPINESS.read_text().strip() == str(new_swp) and read_thp() == new_thp
        mine = [f for f in state_files() if f.name.startswith(f"experiment-{proc.pid}-")]
        assert len(mine) == 1
        # a new experiment on the same knob refuses: the originals are not what is there now
        line = one_error_line(run_cm(["experiment", "-n", 1, "--knob", f"sysctl:vm.swappiness={swp}",
                                      "--", "/bin/true"]))
        assert "killed experiment" in line and "--restore" in line, line
        p = run_cm(["experiment", "--restore"])
        assert p.returncode == 0, p.stderr
    finally:
        for pid in orphans:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    assert SWAPPINESS.read_text().strip() == str(swp) and read_thp() == thp
    assert f"restored {SWAPPINESS} to '{swp}'" in p.stdout and f"restored {THP} to '{thp}'" in p.stdout
    assert not mine[0].exists()
    p = run_cm(["experiment", "--restore"])
    assert p.returncode == 0 and "nothing to restore" in p.stdout


def test_timeout_stops_and_restores(tmp_path, machine):
    swp = int(machine["swappiness"])
    p, e = experiment(tmp_path, "-n", 1, "--timeout", 0.5, "--knob",
                      f"sysctl:vm.swappiness={other_swappiness(swp)}", "--", workload("knobs_seen"), 20000)
    line = one_error_line(p, rc=1)
    assert "took longer than --timeout 0.5 s" in line and "run 1 (A)" in line, line
    assert SWAPPINESS.read_text().strip() == str(swp) and state_files() == []


def test_failing_command_stops_and_restores(tmp_path, machine):
    swp = int(machine["swappiness"])
    p, e = experiment(tmp_path, "-n", 2, "--knob", f"sysctl:vm.swappiness={other_swappiness(swp)}",
                      "--", workload("exit_code"), 3)
    line = one_error_line(p, rc=1)
    assert "run 1 (A): the command exited with status 3" in line, line
    assert SWAPPINESS.read_text().strip() == str(swp) and state_files() == []


def test_state_directory_must_be_roots_alone(tmp_path, machine):
    STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    mode = STATE_DIR.stat().st_mode & 0o7777
    try:
        os.chmod(STATE_DIR, 0o777)
        line = one_error_line(run_cm(["experiment", "-n", 1, "--knob", "sysctl:vm.swappiness=1",
                                      "--", "/bin/true"]))
        assert str(STATE_DIR) in line and "must belong to root" in line, line
    finally:
        os.chmod(STATE_DIR, mode)
    assert SWAPPINESS.read_text().strip() == machine["swappiness"]


# ---- known responses ----------------------------------------------------------------

def test_malloc_notrim_stops_allocator_churn_faulting(tmp_path, machine):
    p, e = experiment(tmp_path, "-n", RUNS, "--knob", "malloc:notrim",
                      "--", workload("alloc_churn"), CHURN_ITERS, CHURN_MIB, CHURN_BURN_MS)
    ok(p, e)
    pages = CHURN_MIB << 8
    for r in e["runs"]:
        truth = json.loads(Path(r["stdout"]).read_text().strip().splitlines()[-1])
        if r["side"] == "A":  # every iteration faults its block in
            assert truth["minflt"] >= CHURN_ITERS * pages, truth
        else:                 # only the first
            assert pages <= truth["minflt"] < 2 * pages, truth
    c = comparison(e, "B")
    f = diff_row(c, "faults", "alloc_churn/minor")
    assert f["before"] >= CHURN_ITERS * pages and f["after"] < 2 * pages, f
    assert f["noise"] is False and f["delta"] < 0
    # the munmap/mmap time and the faults leave the memory row, beyond noise
    mem = diff_row(c, "contact_map", "memory")
    assert mem["noise"] is False and mem["after"] < mem["before"] / 2, mem
    assert c["verdict"] == "changed"
    moved = {m["subsystem"]: m for m in c["moved"]}
    assert "memory" in moved and moved["memory"]["after_share"] < moved["memory"]["before_share"], c["moved"]
    assert re.search(r"memory\s+down", p.stdout), p.stdout[:3000]


def _fifo():
    # SCHED_FIFO for the whole experiment (both sides alike): the workload's
    # threads then run whenever they are runnable, whatever the other users of
    # this shared machine do, so the run queue it shows is its own. Two CPUs,
    # each run some 100 ms; RT throttling still leaves 5% to everyone else.
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))


def test_cpus_confinement_shows_in_the_run_queue(tmp_path, machine):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.fail("needs 2 CPUs to confine two threads to one", pytrace=False)
    if Path("/proc/sys/kernel/sched_rt_runtime_us").read_text().strip() == "-1":
        pytest.fail("RT throttling is off (kernel.sched_rt_runtime_us=-1): this test runs "
                    "SCHED_FIFO and will not do that without it", pytrace=False)
    cpu = min(os.sched_getaffinity(0))
    p, e = experiment(tmp_path, "-n", RUNS, "--knob", f"cpus={cpu}",
                      "--", workload("spin_threads"), 2, 20, preexec_fn=_fifo)
    ok(p, e)
    c = comparison(e, "B")
    rq = diff_row(c, "contact_map", "runq")
    # confined, one thread waits while the other runs: about one thread's work
    cpu_row = diff_row(c, "contact_map", "cpu_user")
    assert rq["noise"] is False and rq["delta"] > 0, rq
    assert rq["after"] >= 0.5 * cpu_row["after"] / 2, (rq, cpu_row)
    assert rq["after_share"] - rq["before_share"] >= 0.1, rq
    moved = {m["subsystem"]: m for m in c["moved"]}
    assert "runq" in moved and moved["runq"]["after_share"] > moved["runq"]["before_share"]
    assert c["verdict"] == "changed"
    # the workload did the same work on both sides
    for r in e["runs"]:
        truth = json.loads(Path(r["stdout"]).read_text().strip().splitlines()[-1])
        assert {k: truth[k] for k in ("threads", "millions")} == {"threads": 2, "millions": 20}
        assert truth["policies"] == [os.SCHED_FIFO] * 2, truth


def test_sched_for_named_threads(tmp_path, machine):
    # SCHED_BATCH: no privilege, no effect on anyone else
    p, e = experiment(tmp_path, "-n", 1, "--knob", "sched=batch@spin1",
                      "--", workload("spin_threads"), 3, 40)
    ok(p, e)
    for r in e["runs"]:
        truth = json.loads(Path(r["stdout"]).read_text().strip().splitlines()[-1])
        want = [os.SCHED_OTHER, os.SCHED_BATCH, os.SCHED_OTHER] if r["side"] == "B" else [os.SCHED_OTHER] * 3
        assert truth["policies"] == want, (r["side"], truth)


def test_irrelevant_knob_is_noise(tmp_path, machine):
    swp = int(machine["swappiness"])
    # one off: a program that never swaps cannot tell. Whether identical
    # distributions come out as noise is a statistical judgement (see
    # test_diff.py); a second set of runs makes a false failure rare.
    for attempt in range(2):
        p, e = experiment(tmp_path, "-n", RUNS, "--knob", f"sysctl:vm.swappiness={swp - 1 if swp else 1}",
                          "--", workload("sleeper"), 10, 3000, name=f"n{attempt}.json")
        ok(p, e)
        c = comparison(e, "B")
        r = diff_row(c, "syscalls", "sleeper/clock_nanosleep.count")
        assert (r["before"], r["after"], r["delta"]) == (10, 10, 0), r
        if c["verdict"] == "noise":
            break
    assert c["verdict"] == "noise" and c["moved"] == [], c["moved"]
    assert "verdict: noise" in p.stdout
    # the verdict is the diff's own judgement: every contact-map row is within
    # the spread, or moved by less than half a point of the total
    for r in c["diff"]["rows"]:
        if r["section"] == "contact_map" and not r["noise"] and r["delta"]:
            assert abs(r["after_share"] - r["before_share"]) < 0.005, r


# ---- bad input: one line each, nothing changed --------------------------------------

BAD_KNOBS = {
    "unknown knob": ("bogus=1", "unknown knob 'bogus=1'"),
    "unknown sysctl": ("sysctl:vm.swapiness=10", "no such sysctl"),
    "sysctl without value": ("sysctl:vm.swappiness", "give sysctl:NAME=VALUE"),
    "sysctl out of range": ("sysctl:vm.swappiness=500", "out of range"),
    "sysctl the kernel refuses": ("sysctl:vm.dirty_expire_centisecs=-1", "the kernel refuses '-1'"),
    "sysctl not an integer": ("sysctl:vm.swappiness=lots", "takes 1 integer"),
    "sysctl path escape": ("sysctl:../../etc/shadow=x", "is not a sysctl name"),
    "read-only sysctl": ("sysctl:kernel.osrelease=1", "read-only"),
    "write-only sysctl": ("sysctl:vm.drop_caches=3", "could not be restored"),
    "sysctl group": ("sysctl:vm=1", "a group of sysctls"),
    "thp mode": ("thp=sometimes", "one of: always, madvise, never"),
    "io scheduler device": ("iosched=nosuchdisk:none", "no block device nosuchdisk"),
    "io scheduler name": ("iosched=vda:fancy", "the I/O scheduler is one of"),
    "cpu not here": ("cpus=4095", "CPU 4095 is not available"),
    "cpu list": ("cpus=1-", "give a CPU list"),
    "sched policy": ("sched=deadline", "the policy is one of"),
    "rt priority": ("sched=fifo:100", "takes a priority 1 to 99"),
    "env name": ("env:1BAD=x", "give env:NAME=VALUE"),
    "malloc tunable": ("malloc:zap=1", "no glibc malloc tunable 'zap'"),
    "malloc range": ("malloc:mmap_threshold=999999999999", "out of range"),
}


@pytest.mark.parametrize("case", list(BAD_KNOBS))
def test_bad_knob_one_line(tmp_path, machine, case):
    knob, needle = BAD_KNOBS[case]
    if knob.startswith("iosched=vda") and not Path("/sys/block/vda/queue/scheduler").exists():
        disks = [d.name for d in Path("/sys/block").iterdir() if (d / "queue/scheduler").exists()]
        if not disks:
            pytest.fail("no block device with an I/O scheduler to test against", pytrace=False)
        knob = f"iosched={disks[0]}:fancy"
    d = tmp_path / "runs"
    line = one_error_line(run_cm(["experiment", "--dir", d, "--knob", knob, "--", workload("knobs_seen")]))
    assert needle in line and (knob in line or case == "unknown knob"), line
    assert SWAPPINESS.read_text().strip() == machine["swappiness"]
    assert not d.exists() or not any(d.iterdir()), "runs started despite the bad knob"
    assert state_files() == []


def test_governor_the_machine_lacks(tmp_path):
    gov = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_available_governors")
    if gov.exists():
        line = one_error_line(run_cm(["experiment", "--knob", "governor=nosuchgovernor", "--", "true"]))
        assert "the governor is one of" in line
    else:
        line = one_error_line(run_cm(["experiment", "--knob", "governor=performance", "--", "true"]))
        assert "no CPU frequency scaling" in line, line


@pytest.mark.parametrize("knob,needle", [
    ("sysctl:vm.swappiness=10", "needs root"),
    ("thp=always", "needs root"),
    ("sched=fifo:5", "need root or CAP_SYS_NICE"),
    ("env:X=1", "needs root or CAP_BPF+CAP_PERFMON"),  # no system knob, but the tracing needs it
])
def test_non_root_one_line(knob, needle):
    STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    p = subprocess.run(["runuser", "-u", "nobody", "--", contactmap_bin(), "experiment", "--knob", knob,
                        "--", "/bin/true"], capture_output=True, text=True, timeout=30, cwd="/")
    line = one_error_line(p)
    assert needle in line, line
    p = subprocess.run(["runuser", "-u", "nobody", "--", contactmap_bin(), "experiment", "--restore"],
                       capture_output=True, text=True, timeout=30, cwd="/")
    assert "root" in one_error_line(p)


@pytest.mark.parametrize("args,needle", [
    (["--knob", "env:A=1"], "nothing to run"),
    (["--", "/bin/true"], "no knobs"),
    (["--knob", "--", "/bin/true"], "needs one knob or more"),
    (["-n", "0", "--knob", "env:A=1", "--", "true"], "bad --runs"),
    (["--bogus", "--knob", "env:A=1", "--", "true"], "unknown option '--bogus'"),
    (["-m", "(", "--knob", "env:A=1", "--", "true"], "bad --metric"),
    (["--knob", "env:A=1", "--", "/no/such/command"], "command not found"),
    (["-o", "/no/such/dir/e.json", "--knob", "env:A=1", "--", "true"], "/no/such/dir"),
    (["--knob", "sysctl:vm.swappiness=1", "sysctl:vm/swappiness=2", "--", "true"], "both write"),
])
def test_bad_usage_one_line(args, needle):
    line = one_error_line(run_cm(["experiment"] + args))
    assert needle in line, line


def test_list_knobs_and_help():
    p = run_cm(["experiment", "--list-knobs"])
    assert p.returncode == 0
    for k in ("sysctl:NAME=VALUE", "thp=", "thp-defrag=", "iosched=DEV:SCHED", "governor=NAME",
              "cpus=LIST", "sched=POLICY", "env:NAME=VALUE", "malloc:notrim", "prefault"):
        assert k in p.stdout, k
    assert p.stdout.count("system-wide, root") == 5 and "restored:" in p.stdout
    assert max(len(l) for l in p.stdout.splitlines()) <= 80
    p = run_cm(["experiment", "--help"])
    assert p.returncode == 0 and "--knob" in p.stdout and "--restore" in p.stdout
    assert "contactmap experiment" in run_cm(["--help"]).stdout


# ---- the plot ----------------------------------------------------------------------

def test_plot_of_an_experiment(tmp_path, machine):
    p, e = experiment(tmp_path, "-n", 2, "-m", r'"ncpus": ([0-9]+)', "--knob", "cpus=0",
                      "--", workload("knobs_seen"))
    ok(p, e)
    assert [r["metric"]["value"] for r in e["runs"]] == [len(os.sched_getaffinity(0)), 1] * 2
    out = tmp_path / "plots"
    q = subprocess.run([PYTHON, str(PLOT), str(tmp_path / "e.json"), "-o", str(out)], capture_output=True,
                       text=True, timeout=120)
    assert q.returncode == 0, q.stderr
    files = sorted(Path(l).name for l in q.stdout.split())
    assert files == ["experiment_runs.png", "experiment_shares.png"]
    for f in files:
        data = (out / f).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1024
    q = subprocess.run([PYTHON, str(PLOT), str(tmp_path / "e.json"), "--diff", str(tmp_path / "e.json"),
                        "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert q.returncode == 1 and q.stderr.startswith("plot.py: error:") and "experiment" in q.stderr


# ---- advise --------------------------------------------------------------------------

SAMPLE = REPO / "tests" / "data" / "sample-report.json"


def advise_json(tmp_path, report):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report))
    out = tmp_path / "a.json"
    p = run_cm(["advise", "-o", out, path])
    assert p.returncode == 0, p.stderr
    return p, json.loads(out.read_text())


def with_shares(report, shares):
    """The report with its contact map replaced: shares of a 10 s wall."""
    r = json.loads(json.dumps(report))
    wall = 10_000_000_000
    r["contact_map"] = [{"subsystem": k, "time_ns": int(v * wall), "share": v, "count": 0}
                        for k, v in shares.items()]
    r["totals"]["wall_ns"] = wall
    for proc in r["processes"]:
        proc["faults"] = {"minor": 0, "major": 0}
    return r


def test_advise_names_costs_and_experiments(tmp_path):
    r = with_shares(json.loads(SAMPLE.read_text()), {"cpu_user": 0.6, "memory": 0.21, "runq": 0.19})
    r["processes"][0]["faults"]["minor"] = 180000
    r["host"]["thp"] = "madvise"
    r["host"]["cpus"] = 2
    r["window"]["duration_ns"] = 1_000_000_000
    # 3.1 threads runnable on average on 2 CPUs
    r["totals"]["oncpu_ns"], r["totals"]["runq_ns"] = 2_000_000_000, 1_100_000_000
    p, a = advise_json(tmp_path, r)
    by = {}
    for x in a["advice"]:
        by.setdefault(x["cost"], []).append(x)
    assert [x["cost"] for x in a["advice"]][0] == "memory"  # largest OS cost first
    knobs = " ".join(x["knobs"] or "" for x in by["memory"])
    assert "--knob malloc:notrim" in knobs and "--knob thp=always" in knobs
    assert all(x["share"] == pytest.approx(0.21) and x["at_most"] == pytest.approx(0.21) for x in by["memory"])
    assert any("180000 minor faults" in x["evidence"] for x in by["memory"])
    runq = " ".join(x["knobs"] or "" for x in by["runq"])
    assert "env:OMP_NUM_THREADS=1" in runq and "3.10 threads runnable" in " ".join(x["evidence"] for x in by["runq"])
    cmd = " ".join(shlex.quote(w) for w in r["target"]["command"])
    assert f"contactmap experiment --knob malloc:notrim --knob prefault -- {cmd}" in p.stdout, p.stdout
    assert "memory: 21.0% of the wall time (at most 21.0% to gain)" in p.stdout
    assert "cpu_user" not in {x["cost"] for x in a["advice"]}  # the program's own time: no OS knob


def test_advise_thp_always_and_quiet_reports(tmp_path):
    r = with_shares(json.loads(SAMPLE.read_text()), {"cpu_user": 0.97, "memory": 0.03})
    r["processes"][0]["faults"]["minor"] = 5000
    r["host"]["thp"] = "always"
    _, a = advise_json(tmp_path, r)
    knobs = [x["knobs"] for x in a["advice"]]
    assert knobs == ["--knob malloc:notrim --knob prefault"], knobs  # THP already always
    r = with_shares(json.loads(SAMPLE.read_text()), {"cpu_user": 0.99, "memory": 0.01})
    p, a = advise_json(tmp_path, r)
    assert a["advice"] == [] and "no OS cost" in p.stdout


def test_advise_on_a_run_of_an_experiment(tmp_path):
    """A run's report names the helper that applied the knobs; the advice is
    about the command it ran."""
    r = with_shares(json.loads(SAMPLE.read_text()), {"cpu_user": 0.9, "memory": 0.1})
    r["processes"][0]["faults"]["minor"] = 50000
    r["target"]["command"] = ["/usr/bin/contactmap", "experiment", "--apply", "env:A=1", "--stderr-fd",
                              "3", "--", "/opt/my app/run", "--n", "it's"]
    p, a = advise_json(tmp_path, r)
    assert a["command"] == "'/opt/my app/run' --n 'it'\\''s'", a["command"]
    assert "--knob malloc:notrim --knob prefault -- '/opt/my app/run' --n" in p.stdout


def test_advise_real_report(tmp_path):
    """A traced allocator churn: advise names the memory cost and malloc:notrim."""
    out = tmp_path / "churn.json"
    p = run_cm(["-o", out, "--", workload("alloc_churn"), CHURN_ITERS, CHURN_MIB])
    assert p.returncode == 0, p.stderr
    rep = json.loads(out.read_text())
    mem = next(x for x in rep["contact_map"] if x["subsystem"] == "memory")
    p = run_cm(["advise", out])
    assert p.returncode == 0, p.stderr
    if mem["share"] >= 0.02:
        assert "malloc:notrim" in p.stdout and f"{100 * mem['share']:.1f}%" in p.stdout, p.stdout
    else:  # a machine busy enough to dilute it: then the rule must stay quiet about it
        assert "memory:" not in p.stdout


@pytest.mark.parametrize("args,needle", [
    ([], "advise needs a report"),
    (["/no/such.json"], "/no/such.json"),
    (["--bogus", str(SAMPLE)], "unknown option"),
    ([str(SAMPLE), str(SAMPLE)], "one report"),
])
def test_advise_bad_input(args, needle):
    line = one_error_line(run_cm(["advise"] + args))
    assert needle in line, line
