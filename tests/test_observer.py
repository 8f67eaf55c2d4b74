"""Observer cost (--observer-cost): BPF run-time statistics on a duty cycle.

Ground truth: when contactmap really held the statistics on (its anonymous
"bpf-stats" fd, watched in /proc/PID/fd with CLOCK_MONOTONIC, the report's
clock), the window's length, and an exact-count workload for full mode.
"""
import json
import os
import subprocess
import time

import pytest

from conftest import RUN_TIMEOUT_S, contactmap_bin, find_proc, run_cm, syscall_count, wrap_run

# the schedule of src/observer.c: on for the window's first 50 ms, then for
# 50 ms at the start of every following second
FIRST_NS, PERIOD_NS, DUTY_NS = 50_000_000, 1_000_000_000, 50_000_000

# ---- tolerances (every tolerance of this file is here, with its reason) ------
# the sampling thread wakes late on a loaded 2-CPU machine, and turning the
# statistics on patches kernel text: on-time within this of the schedule
SCHEDULE_TOLERANCE_NS = 30_000_000
# the fd watcher looks every POLL_S (plus its own scheduling delays): a state
# it saw counts only when the look lay this far inside a period of the schedule
POLL_S = 0.005
EDGE_SLACK_NS = 25_000_000
# floats in the report: shares and estimates are computed from its own integers
REL = 1e-6

SLEEP_S = 2.5
GETPPID_N = 20000


def expected_on_ns(dur):
    """On-time of the schedule over a window of dur ns."""
    on, k = min(dur, FIRST_NS), 1
    while k * PERIOD_NS < dur:
        on += min(dur - k * PERIOD_NS, DUTY_NS)
        k += 1
    return on


def schedule_on(d):
    return d < FIRST_NS or d % PERIOD_NS < DUTY_NS


def holds_stats(pid):
    """True if pid has a BPF_ENABLE_STATS fd open; None once it is gone."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return None
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:bpf-stats":
                return True
        except OSError:
            pass
    return False


def watched_run(tmp_path, args):
    """Runs contactmap ARGS -o JSON, looking at its fds every POLL_S; returns
    (report, stderr, [(t0, t1, on)]) with t0/t1 CLOCK_MONOTONIC ns around each look."""
    json_path = tmp_path / "r.json"
    argv = [contactmap_bin(), "-o", str(json_path)] + [str(a) for a in args]
    looks = []
    with open(tmp_path / "stderr", "w+") as err:
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while p.poll() is None and time.monotonic() < deadline:
            t0 = time.monotonic_ns()
            on = holds_stats(p.pid)
            t1 = time.monotonic_ns()
            if on is not None:
                looks.append((t0, t1, on))
            time.sleep(POLL_S)
        if p.poll() is None:
            p.kill()
            p.wait()
            pytest.fail(f"contactmap did not finish in {RUN_TIMEOUT_S}s: {argv}", pytrace=False)
        err.seek(0)
        stderr = err.read()
    assert p.returncode == 0, f"{argv}: rc {p.returncode}\n{stderr[-3000:]}"
    return json.loads(json_path.read_text()), stderr, looks


def observer_line(text):
    lines = [l for l in text.splitlines() if l.startswith("observer cost:")]
    assert len(lines) == 1, f"expected one 'observer cost:' line: {text[-3000:]!r}"
    return lines[0]


def check_estimates(ob, dur):
    assert ob["events"] == sum(p["run_cnt"] for p in ob["programs"])
    assert ob["run_time_ns"] == sum(p["run_time_ns"] for p in ob["programs"])
    assert ob["sampled_share"] == pytest.approx(ob["sampled_ns"] / dur, rel=REL)
    assert ob["est_events"] >= ob["events"] and ob["est_run_time_ns"] >= ob["run_time_ns"]
    scale = dur / ob["sampled_ns"]
    assert abs(ob["est_events"] - ob["events"] * scale) <= 1, (ob, dur)
    assert abs(ob["est_run_time_ns"] - ob["run_time_ns"] * scale) <= 1, (ob, dur)
    assert ob["cpu_share"] == pytest.approx(ob["est_run_time_ns"] / dur, rel=REL)


# -----------------------------------------------------------------------------
def test_sampled_is_the_default(tmp_path, need_root):
    rep, stderr, looks = watched_run(tmp_path, ["--", "sleep", SLEEP_S])
    w, ob = rep["window"], rep["observer"]
    start, end, dur = w["start_ns"], w["end_ns"], w["duration_ns"]
    assert ob["mode"] == "sampled" and ob["bpf_stats"] is True, ob

    # the on-time it reports is the schedule's, over this window
    want = expected_on_ns(dur)
    assert abs(ob["sampled_ns"] - want) <= SCHEDULE_TOLERANCE_NS, \
        f"sampled_ns {ob['sampled_ns']} vs schedule {want} over {dur} ns"
    assert ob["sampled_ns"] <= dur
    check_estimates(ob, dur)

    # ... and it is when contactmap really held the statistics on
    inside = [(t0, t1, on) for t0, t1, on in looks if start <= t0 and t1 <= end]
    assert len(inside) > 100, f"too few looks at contactmap's fds: {len(inside)}"
    seen = 0
    for (a0, a1, a_on), (b0, b1, b_on) in zip(inside, inside[1:]):
        seen += (b0 - a0) * (a_on + b_on) / 2
    assert abs(seen - ob["sampled_ns"]) <= SCHEDULE_TOLERANCE_NS, \
        f"fd watcher saw the statistics on for {seen:.0f} ns, the report says {ob['sampled_ns']}"
    for t0, t1, on in inside:
        d0, d1 = t0 - start, t1 - start
        # on while the schedule is off (well away from its edges) is a leak
        if on and d0 >= FIRST_NS + EDGE_SLACK_NS and d0 // PERIOD_NS == d1 // PERIOD_NS \
                and d0 % PERIOD_NS >= DUTY_NS + EDGE_SLACK_NS \
                and d1 % PERIOD_NS <= PERIOD_NS - EDGE_SLACK_NS:
            pytest.fail(f"statistics on {d0 / 1e6:.0f} ms into the window, outside the schedule")
    for k in range(1, dur // PERIOD_NS + 1):
        lo, hi = start + k * PERIOD_NS, start + k * PERIOD_NS + DUTY_NS + EDGE_SLACK_NS
        if hi < end:
            assert any(on for t0, t1, on in inside if lo <= t0 and t1 <= hi), \
                f"statistics never seen on in second {k} of the window"

    line = observer_line(stderr)
    assert line.startswith("observer cost: ~") and "estimated from" in line and \
        "events sampled" in line, line


def test_full_counts_every_run(tmp_path, need_root):
    r = wrap_run(tmp_path / "r.json", "getppid_loop", GETPPID_N,
                 extra=["--observer-cost", "full"])
    assert r.rc == 0, r.describe()
    assert syscall_count(find_proc(r.report, pid=r.truth["pid"]), "getppid") == GETPPID_N
    ob, dur = r.report["observer"], r.report["window"]["duration_ns"]
    assert ob["mode"] == "full" and ob["bpf_stats"] is True, ob
    assert ob["sampled_ns"] == dur and ob["sampled_share"] == 1.0
    assert ob["est_events"] == ob["events"] and ob["est_run_time_ns"] == ob["run_time_ns"]
    check_estimates(ob, dur)
    # every getppid enters and leaves through the programs (so do other
    # processes' syscalls: at least N)
    for prefix in ("sys_enter", "sys_exit"):
        runs = sum(p["run_cnt"] for p in ob["programs"] if p["name"].startswith(prefix))
        assert runs >= GETPPID_N, f"{prefix} programs ran {runs} times < {GETPPID_N}: {ob}"
    line = observer_line(r.stderr)
    assert "~" not in line and "estimated" not in line and "sampled" not in line, line


@pytest.mark.parametrize("flag", [["--observer-cost", "off"], ["--no-observer-cost"]],
                         ids=["off", "no-observer-cost"])
def test_off_measures_nothing(tmp_path, need_root, flag):
    r = wrap_run(tmp_path / "r.json", "getppid_loop", 100, extra=flag)
    assert r.rc == 0, r.describe()
    ob = r.report["observer"]
    assert ob["mode"] == "off" and ob["bpf_stats"] is False and ob["sampled_ns"] == 0, ob
    assert observer_line(r.stderr).startswith("observer cost: not measured")


def test_bad_mode_is_one_error_line():
    cp = run_cm(["--observer-cost", "sometimes", "--", "true"], timeout=30)
    assert cp.returncode == 2, cp
    assert cp.stderr.count("\n") == 1 and cp.stderr.startswith("contactmap: error:"), cp.stderr
    assert "--observer-cost" in cp.stderr and "sometimes" in cp.stderr, cp.stderr


def test_intervals_see_the_on_time_so_far(tmp_path, need_root):
    jl = tmp_path / "iv.jsonl"
    r = wrap_run(tmp_path / "r.json", "sleeper", 30, 40000,
                 extra=["-i", 0.25, "--jsonl", jl])
    assert r.rc == 0, r.describe()
    lines = [json.loads(l) for l in jl.read_text().splitlines()]
    assert len(lines) >= 4, len(lines)
    start, prev = lines[0]["start_ns"], 0
    for l in lines:
        ob = l["observer"]
        assert ob["mode"] == "sampled" and ob["bpf_stats"] is True, ob
        want = expected_on_ns(l["end_ns"] - start)
        assert abs(ob["sampled_ns"] - want) <= SCHEDULE_TOLERANCE_NS, \
            f"interval {l['interval']}: sampled_ns {ob['sampled_ns']} vs schedule {want}"
        assert ob["sampled_ns"] >= prev
        prev = ob["sampled_ns"]
    final = {k: v for k, v in r.report["observer"].items() if k != "programs"}
    assert lines[-1]["observer"] == final
