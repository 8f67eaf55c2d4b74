"""The raw tracepoint fallback: the programs a kernel without tp_btf gets.

This VM has tp_btf, so `--attach-type raw_tp` forces the twin programs that
users of such kernels run; they must count exactly what tp_btf counts.
"""
import pytest

from conftest import assert_no_problems, find_proc, ledger_problems, syscall_count

pytestmark = pytest.mark.usefixtures("need_root")

N = 5000


@pytest.mark.parametrize("attach", ["raw_tp", "tp_btf"])
def test_forced_attach_type_counts_exactly(cmwrap, attach):
    r = cmwrap("getppid_loop", N, extra=["--attach-type", attach])
    assert r.rc == 0, r.describe()
    assert r.report["features"]["attach_type"] == attach
    p = find_proc(r.report, pid=r.truth["pid"])
    assert syscall_count(p, "getppid") == N
    assert_no_problems(ledger_problems(r.report, from_start_to_end=True), "ledger")


def test_forced_raw_tp_sleep_and_switches(cmwrap):
    r = cmwrap("sleeper", 10, 5000, extra=["--attach-type", "raw_tp"])
    assert r.rc == 0, r.describe()
    p = find_proc(r.report, pid=r.truth["pid"])
    assert syscall_count(p, "clock_nanosleep") == 10
    # each sleep blocks once: at least 10 voluntary switches
    assert p["sched"]["voluntary_switches"] >= 10
    off = p["ledger"]["offcpu_by_cause"].get("syscall:clock_nanosleep", 0)
    assert off >= 10 * 5000 * 1000 * 0.9, off
