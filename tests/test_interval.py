"""The interval stream (-i): JSON lines that add up exactly to the final report."""
import json

import pytest

from conftest import find_proc, run_cm, syscall_count, wrap_run

pytestmark = pytest.mark.usefixtures("need_root")

SLEEPS, SLEEP_US, INTERVAL_S = 30, 40000, 0.25   # 1.2 s of sleeping, ~5 intervals
LEDGER_KEYS = ["wall_ns", "oncpu_ns", "oncpu_user_ns", "oncpu_syscall_ns", "runq_ns",
               "offcpu_ns", "iowait_ns", "unattributed_ns"]


def test_intervals_sum_to_report(tmp_path):
    jl = tmp_path / "iv.jsonl"
    r = wrap_run(tmp_path / "r.json", "sleeper", SLEEPS, SLEEP_US,
                 extra=["-i", INTERVAL_S, "--jsonl", str(jl)])
    assert r.rc == 0, r.describe()
    lines = [json.loads(l) for l in jl.read_text().splitlines()]   # each line parses alone
    # 1.2 s in 0.25 s intervals, plus the final partial one
    assert 4 <= len(lines) <= 8, len(lines)
    assert [l["interval"] for l in lines] == list(range(len(lines)))
    for a, b in zip(lines, lines[1:]):
        assert a["end_ns"] == b["start_ns"]
    for k in LEDGER_KEYS:
        assert sum(l["totals"][k] for l in lines) == r.report["totals"][k], k
    pid = r.truth["pid"]
    n = sum(s["count"] for l in lines for p in l["processes"] if p["pid"] == pid
            for s in p["syscalls"] if s["name"] == "clock_nanosleep")
    assert n == SLEEPS == syscall_count(find_proc(r.report, pid=pid), "clock_nanosleep")
    # sleeping spreads over the intervals: no interval holds them all
    per = [sum(s["count"] for p in l["processes"] for s in p["syscalls"]
               if s["name"] == "clock_nanosleep") for l in lines]
    assert max(per) < SLEEPS
    rows = {}
    for l in lines:
        for row in l["contact_map"]:
            rows[row["subsystem"]] = rows.get(row["subsystem"], 0) + row["time_ns"]
    for row in r.report["contact_map"]:
        assert rows.get(row["subsystem"], 0) == row["time_ns"], row["subsystem"]


def test_interval_needs_a_file_when_wrapping():
    cp = run_cm(["-i", "1", "--", "true"])
    assert cp.returncode != 0
    assert cp.stderr.count("\n") == 1 and cp.stderr.startswith("contactmap: error:")
