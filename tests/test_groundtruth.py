"""Ground truth: contactmap's report against what each workload knows it did.

Each workload (tests/workloads/*.c) is traced once per session (`traced`
fixture) and prints its own ground truth; the schema and ledger-invariant
tests at the bottom re-check every one of those reports.
"""
import math
import os
import subprocess
from pathlib import Path

import pytest

from conftest import (assert_no_problems, block_devices_of, check_block_rows, find_proc,
                      find_thread, ledger_problems, schema_problems, syscall_count,
                      syscall_rows, syscall_sum)

pytestmark = pytest.mark.usefixtures("need_root")

# ---- tolerances (every time/count tolerance of this file is here) ----------
SLEEP_M, SLEEP_USEC = 25, 20000        # 25 x 20 ms = 0.5 s of clock_nanosleep
# Blocked time in clock_nanosleep may exceed the request by timer slack (50 us
# default) plus the timer interrupt's latency per call: allow +10% in total.
SLEEP_OVER_FRACTION = 0.10
TOUCH_PAGES = 20000                     # 78 MiB of anonymous 4 KiB pages
# The report counts the whole process life (fork, exec, ld.so, libc, exit);
# the workload's own getrusage delta counts only its touch loop.
FAULTS_STARTUP_SLACK = 500
PINGPONG_ROUNDS = 500
# The workload reads /proc right before exit; the report also sees the last
# few switches (join, exit): report <= /proc + this.
SWITCH_SLACK = 10
BURN_MS = 300
# oncpu_ns vs the kernel's getrusage utime+stime: +-10% (exec/startup/exit
# outside the workload's measurement are well under that at 300 ms).
BURN_TOLERANCE = 0.10
# user-space burn: on-CPU user time must be at least this share of on-CPU time
BURN_USER_SHARE = 0.90
OD_COUNT, OD_BS = 64, 65536             # 64 x 64 KiB O_DIRECT reads = 4 MiB
# extra block requests allowed for filesystem metadata (inode, extent tree)
OD_EXTRA_REQUESTS = 8
OD_EXTRA_BYTES = 1 << 20
THREADS_N, THREADS_SLEEP_US = 4, 10000
MF_PAGES = 512                          # major faults: pages of the O_DIRECT file
# Blocked time charged to page faults vs the loop's blocked time by the
# scheduler's schedstat (elapsed - on-CPU - run queue), which in a VM also
# holds the time the hypervisor ran something else on the vCPU (steal: left
# out of the run time; a fault whose read completes meanwhile never blocks):
# at least 95% of it less the process's steal, less 1 ms (with the ledger's
# run-queue wait beyond schedstat's: a block ends at the wake-up tracepoint,
# and schedstat's wait starts later, at its run queue's clock, often only at
# the switch-in: 2-3 us a fault on this VM); at most it plus the
# loop's run-queue time (a wake-up seen late leaves run-queue time in blocked)
# plus 2 ms (faults while the program starts).
MF_LOW_SHARE, MF_LOW_NS, MF_HIGH_NS = 0.95, 1_000_000, 2_000_000
# on-CPU time less steal vs the kernel's own run time: at most the process's
# whole run time (which also holds its time before the exec) + 5% + 2 ms
# (interrupt time, which some kernels leave out of it too)
MF_EXEC_SHARE, MF_EXEC_NS = 0.05, 2_000_000

# every (workload, args) traced for the invariant tests; the odirect file
# argument is filled in by the od_file fixture
RUNS = {
    "getppid_1000": ("getppid_loop", 1000),
    "getppid_12345": ("getppid_loop", 12345),
    "sleeper": ("sleeper", SLEEP_M, SLEEP_USEC),
    "touch_pages": ("touch_pages", TOUCH_PAGES),
    "pingpong": ("pingpong", PINGPONG_ROUNDS),
    "burn": ("burn", BURN_MS),
    "odirect": ("odirect_read", "<file>", OD_COUNT, OD_BS),
    "major_faults": ("major_faults", "<file>", MF_PAGES),
    "forker": ("forker",),
    "threads": ("threads", THREADS_N, THREADS_SLEEP_US),
    "exit_code_7": ("exit_code", 7),
    "sigkill": ("killself", 9),
    "sigsegv": ("killself", 11),
}
EXPECTED_RC = {"exit_code_7": 7, "sigkill": 128 + 9, "sigsegv": 128 + 11}


def _fs_type(path):
    return subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture(scope="session")
def od_file():
    """A file of OD_COUNT*OD_BS non-zero bytes on a disk-backed filesystem
    (the root fs: /var/tmp unless that is tmpfs), written and fsynced so that
    the O_DIRECT reads see no dirty page cache (no flush writes)."""
    for d in ("/var/tmp", str(Path(__file__).resolve().parent.parent / ".output")):
        if _fs_type(d) in ("tmpfs", "ramfs") or os.major(os.stat(d).st_dev) == 0:
            continue
        path = Path(d) / f"contactmap-odirect-{os.getpid()}.dat"
        with open(path, "wb") as f:
            for _ in range(OD_COUNT):
                f.write(os.urandom(OD_BS // 2) + b"\xa5" * (OD_BS // 2))
            f.flush()
            os.fsync(f.fileno())
        yield str(path)
        path.unlink()
        return
    pytest.fail("no disk-backed directory for the O_DIRECT file (/var/tmp is tmpfs?)",
                pytrace=False)


def get_run(traced, key, request):
    name, *args = RUNS[key]
    if "<file>" in args:
        f = request.getfixturevalue("od_file")
        args = [f if a == "<file>" else a for a in args]
    r = traced(name, *args)
    assert r.rc == EXPECTED_RC.get(key, 0), \
        f"contactmap exit status {r.rc}, expected {EXPECTED_RC.get(key, 0)}\n{r.describe()}"
    assert r.truth is not None, f"workload printed no ground truth\n{r.describe()}"
    return r


def proc_of(r):
    return find_proc(r.report, pid=r.truth["pid"])


# ---------------------------------------------------------------------------
@pytest.mark.parametrize("key,n", [("getppid_1000", 1000), ("getppid_12345", 12345)])
def test_getppid_exact(traced, request, key, n):
    r = get_run(traced, key, request)
    assert r.truth["getppid"] == n
    p = proc_of(r)
    assert p["comm"] == "getppid_loop"
    got = syscall_count(p, "getppid")
    assert got == n, f"getppid count {got}, expected exactly {n}; rows {syscall_rows(p, 'getppid')}"
    assert syscall_sum(p, "getppid", "errors") == 0
    # the command line is recorded, and the wrapped program's stdout stays clean
    assert r.report["target"]["command"][-1] == str(n)
    assert r.stdout.strip().splitlines() == [r.stdout.strip()], \
        f"workload stdout polluted: {r.stdout!r}"
    assert "OS contact map" in r.stderr, f"no text map on stderr: {r.stderr[-2000:]!r}"


def test_sleep_ledger(traced, request):
    r = get_run(traced, "sleeper", request)
    want_ns = SLEEP_M * SLEEP_USEC * 1000
    assert r.truth["requested_ns"] == want_ns
    p = proc_of(r)
    rows = syscall_rows(p, "clock_nanosleep")
    assert syscall_count(p, "clock_nanosleep") == SLEEP_M, rows
    # the kernel never returns early: every call lasts at least USEC
    total = syscall_sum(p, "clock_nanosleep", "total_ns")
    assert total >= want_ns, f"clock_nanosleep total_ns {total} < requested {want_ns}"
    low_slot = int(math.log2(SLEEP_USEC * 1000))
    for row in rows:
        assert sum(row["hist_log2_ns"][:low_slot]) == 0, \
            f"calls shorter than {SLEEP_USEC} us in histogram: {row['hist_log2_ns']}"
        assert row["p50_ns"] >= SLEEP_USEC * 1000 * 0.5
    off = p["ledger"]["offcpu_by_cause"].get("syscall:clock_nanosleep", 0)
    # Blocked time starts at the switch-out, a little after the kernel armed
    # the timer, so it may fall short of the request by at most the on-CPU
    # time inside those calls; above, by at most SLEEP_OVER_FRACTION.
    oncpu_in = syscall_sum(p, "clock_nanosleep", "oncpu_ns")
    assert want_ns - oncpu_in <= off <= want_ns * (1 + SLEEP_OVER_FRACTION), \
        (f"offcpu syscall:clock_nanosleep {off} ns not within [{want_ns} - {oncpu_in}, "
         f"{want_ns * (1 + SLEEP_OVER_FRACTION):.0f}]; ledger {p['ledger']}")
    assert p["ledger"]["wall_ns"] >= want_ns
    assert r.truth["elapsed_ns"] <= p["ledger"]["wall_ns"], \
        f"thread wall {p['ledger']['wall_ns']} < workload's own elapsed {r.truth['elapsed_ns']}"
    sleep_rows = [c for c in r.report["contact_map"] if c["subsystem"] == "sleep"]
    assert sleep_rows and sleep_rows[0]["time_ns"] >= off, r.report["contact_map"]


def test_page_faults(traced, request):
    r = get_run(traced, "touch_pages", request)
    t = r.truth
    assert t["minflt_delta"] >= TOUCH_PAGES, f"workload itself took too few faults: {t}"
    f = proc_of(r)["faults"]
    lo, hi = t["minflt_delta"], t["minflt_delta"] + FAULTS_STARTUP_SLACK
    assert lo <= f["minor"] <= hi, f"faults.minor {f['minor']} not in [{lo}, {hi}]; truth {t}"
    assert f["major"] >= t["majflt_delta"]
    assert f.get("user_tracepoint", 0) >= TOUCH_PAGES, f"user_tracepoint too small: {f}"


def test_major_fault_blocks(traced, request):
    """Major faults block in user mode, outside any syscall: that time is
    charged to page_fault, and matches the scheduler's own account."""
    r = get_run(traced, "major_faults", request)
    t = r.truth
    assert t["majflt_delta"] >= MF_PAGES, f"the workload took too few major faults: {t}"
    p = proc_of(r)
    L = p["ledger"]
    assert p["faults"]["major"] >= t["majflt_delta"], (p["faults"], t)
    # every block of the loop is a fault's (it makes no syscalls)
    assert p["sched"]["voluntary_switches"] >= t["nvcsw_delta"], (p["sched"], t)
    # steal is part of on-CPU time; what is left is what the kernel ran it
    # (its wake-up latency aside, which the kernel books as run time and the
    # ledger as run queue)
    steal = L["oncpu_steal_ns"]
    assert 0 <= steal <= L["oncpu_ns"], L
    ran = L["oncpu_ns"] - steal
    assert ran <= t["oncpu_total_ns"] * (1 + MF_EXEC_SHARE) + MF_EXEC_NS, \
        f"on-CPU {L['oncpu_ns']} ns less steal {steal} ns > the kernel's run time; truth {t}"
    assert ran + L["runq_ns"] >= t["oncpu_ns"] - MF_LOW_NS, \
        f"on-CPU {L['oncpu_ns']} ns less steal {steal} ns < the loop's run time; {L}; truth {t}"
    blocked = t["elapsed_ns"] - t["oncpu_ns"] - t["runq_ns"]
    pf = L["offcpu_by_cause"].get("page_fault", 0)
    lo = MF_LOW_SHARE * (blocked - steal) - MF_LOW_NS
    hi = blocked + t["runq_ns"] + MF_HIGH_NS
    wake_extra = max(0, L["runq_wakeup_ns"] - t["runq_ns"])
    assert lo <= pf + wake_extra and pf <= hi, \
        (f"page_fault blocked {pf} ns not in [{lo:.0f}, {hi:.0f}] (the loop blocked {blocked} ns "
         f"by schedstat, steal {steal} ns, run queue after wake-ups {wake_extra} ns beyond it); causes {L['offcpu_by_cause']}; truth {t}")


def test_pingpong_switches(traced, request):
    r = get_run(traced, "pingpong", request)
    t = r.truth
    p = proc_of(r)
    assert len(p["threads"]) == 2, [th["tid"] for th in p["threads"]]
    # the workload guarantees (by handshake) one voluntary switch per round per thread
    for th in t["threads"]:
        assert th["nvcsw"] - th["nvcsw_at_start"] >= PINGPONG_ROUNDS - 1, t
    for th in t["threads"]:
        rt = find_thread(p, th["tid"])
        # both threads spend their blocked time in read()
        assert rt["ledger"]["offcpu_by_cause"].get("syscall:read", 0) > 0, rt["ledger"]
        if "sched" in rt:   # per-thread figures, when the report has them
            v = rt["sched"]["voluntary_switches"]
            assert th["nvcsw"] - th["nvcsw_at_start"] <= v <= th["nvcsw"] + SWITCH_SLACK, \
                f"thread {th['tid']}: report {v} vs /proc {th}"
            assert v >= PINGPONG_ROUNDS - 1
    v = p["sched"]["voluntary_switches"]
    # /proc counts from thread creation (fork of contactmap's child for the
    # main thread); the switches after the workload's main() started are
    # certainly in the window.
    lo, hi = t["total"] - t["total_at_start"], t["total"] + SWITCH_SLACK
    assert lo <= v <= hi, f"voluntary_switches {v} not in [{lo}, {hi}]; truth {t}; sched {p['sched']}"
    assert v >= 2 * (PINGPONG_ROUNDS - 1)
    assert syscall_count(p, "read") >= 2 * PINGPONG_ROUNDS
    assert syscall_count(p, "write") >= 2 * PINGPONG_ROUNDS


def test_burn_oncpu(traced, request):
    r = get_run(traced, "burn", request)
    cpu = r.truth["cpu_ns"]
    assert cpu >= BURN_MS * 1_000_000 * 0.99, r.truth
    L = proc_of(r)["ledger"]
    # getrusage leaves out the time the vCPU was stolen (in a VM)
    ran = L["oncpu_ns"] - L["oncpu_steal_ns"]
    assert abs(ran - cpu) <= BURN_TOLERANCE * cpu, \
        f"oncpu_ns {L['oncpu_ns']} less steal vs getrusage utime+stime {cpu} (+-{BURN_TOLERANCE:.0%}); {L}"
    assert L["oncpu_user_ns"] >= BURN_USER_SHARE * L["oncpu_ns"], L
    # the largest row of its own time: run queue aside, which is the machine's
    # other load (on a shared 2-CPU VM it can outweigh a 1-CPU burn)
    own = [c for c in r.report["contact_map"] if c["subsystem"] != "runq"]
    assert own and own[0]["subsystem"] == "cpu_user", r.report["contact_map"]


def test_odirect_block_io(traced, request):
    r = get_run(traced, "odirect", request)
    t = r.truth
    assert t["count"] == OD_COUNT and t["bytes"] == OD_COUNT * OD_BS
    p = proc_of(r)
    assert syscall_count(p, "preadv") == OD_COUNT, syscall_rows(p, "preadv")
    devs = block_devices_of(request.getfixturevalue("od_file"))
    reads = [b for b in p["block_io"] if b["op"] == "read" and b["device"] in devs]
    assert reads, f"no block_io read row for devices {devs}: {p['block_io']}"
    check_block_rows(r.report, reads, "reads", OD_COUNT, OD_BS, OD_EXTRA_REQUESTS, OD_EXTRA_BYTES)
    for b in reads:
        assert b["total_ns"] > 0
    # synchronous direct reads wait in io_schedule(): io-wait is seen
    assert syscall_sum(p, "preadv", "iowait_ns") > 0, syscall_rows(p, "preadv")
    assert p["ledger"]["iowait_ns"] > 0, p["ledger"]


def test_forker_tree(traced, request):
    r = get_run(traced, "forker", request)
    t = r.truth
    parent = find_proc(r.report, pid=t["parent"])
    child = find_proc(r.report, pid=t["child"])
    grand = find_proc(r.report, pid=t["grandchild"])
    assert len(r.report["processes"]) == 3, \
        [(p["pid"], p["comm"]) for p in r.report["processes"]]
    assert child["ppid"] == parent["pid"]
    assert grand["ppid"] == child["pid"]
    for p in (parent, child, grand):
        assert p["comm"] == "forker"
        assert len(p["threads"]) == 1
        assert p["end_ns"] > 0
    # exit_code is the kernel's status word: code << 8
    assert parent.get("exit_code") == 0
    assert child.get("exit_code") == 3 << 8
    assert grand.get("exit_code") == 4 << 8
    assert t["wait_status"] == {"child": 3 << 8, "grandchild": 4 << 8}
    for who, p in (("parent", parent), ("child", child), ("grandchild", grand)):
        assert syscall_count(p, "getppid") == t["getppid"][who], (who, syscall_rows(p, "getppid"))
    assert syscall_count(parent, "wait4") >= 1 and syscall_count(child, "wait4") >= 1


def test_threads(traced, request):
    r = get_run(traced, "threads", request)
    t = r.truth
    p = proc_of(r)
    tids = sorted(th["tid"] for th in p["threads"])
    assert len(tids) == THREADS_N + 1, tids
    assert syscall_count(p, "getppid") == t["getppid"] == 100 * THREADS_N * (THREADS_N + 1) // 2
    assert syscall_count(p, "clock_nanosleep") == THREADS_N
    for w in t["tids"]:
        th = find_thread(p, w["tid"])
        L = th["ledger"]
        assert th.get("end_ns", 1) > 0
        off = L["offcpu_by_cause"].get("syscall:clock_nanosleep", 0)
        # same lower bound as test_sleep_ledger: request minus on-CPU syscall time
        assert off >= THREADS_SLEEP_US * 1000 - L["oncpu_syscall_ns"], L
        assert off <= THREADS_SLEEP_US * 1000 * (1 + SLEEP_OVER_FRACTION) + 2_000_000, L
    assert syscall_count(p, "clone3") + syscall_count(p, "clone") >= THREADS_N


@pytest.mark.parametrize("key,status,code", [
    ("exit_code_7", {"status": 7}, 7 << 8),
    ("sigkill", {"signal": 9, "status": 137}, 9),
    ("sigsegv", {"signal": 11, "status": 139}, 11),
])
def test_exit_status_passthrough(traced, request, key, status, code):
    r = get_run(traced, key, request)   # asserts contactmap's own exit status
    assert r.report["exit"] == status, r.report.get("exit")
    p = proc_of(r)
    assert p.get("exit_code") is not None and p["exit_code"] & 0xff7f == code, \
        f"exit_code {p.get('exit_code')}, expected {code} (core-dump bit ignored)"


# ---------------------------------------------------------------------------
# every report above, re-checked for the contract's invariants

@pytest.mark.parametrize("key", list(RUNS))
def test_schema(traced, request, key):
    r = get_run(traced, key, request)
    assert_no_problems(schema_problems(r.report), f"schema of {RUNS[key]}")


@pytest.mark.parametrize("key", list(RUNS))
def test_ledger_closure(traced, request, key):
    r = get_run(traced, key, request)
    assert_no_problems(ledger_problems(r.report), f"ledger of {RUNS[key]}")
