"""Python in the contact map: Python frames in stacks, the GIL as its own cause.

tests/python/chains.py runs outer -> middle -> leaf on the CPU and outer_s ->
middle_s -> sleeper -> time.sleep, and prints the line numbers of each call;
tests/python/gil.py runs three CPU-bound threads (GIL waits) or three
consumers blocked on a queue (futex waits that are not the GIL). Each runs
under Debian's /usr/bin/python3.11 and the pyenv builds 3.10, 3.12 and 3.13
(skipped loudly where missing), 3.12+ also with -X perf.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, contactmap_bin, find_proc, ledger_problems, run_cm, skip_loudly, \
    workload

pytestmark = pytest.mark.usefixtures("need_root")

PYENV = Path(os.environ.get("HOME", "/root")) / ".pyenv" / "versions"
INTERPRETERS = {
    "3.11-debian": Path("/usr/bin/python3.11"),
    "3.10": PYENV / "3.10.13" / "bin" / "python3",
    "3.12": PYENV / "3.12.1" / "bin" / "python3",
    "3.13": PYENV / "3.13.0" / "bin" / "python3",
}
CHAINS = REPO / "tests" / "python" / "chains.py"
GIL = REPO / "tests" / "python" / "gil.py"
REUSE = REPO / "tests" / "python" / "reuse.py"
HZ = 99
# off-CPU weight is the measured blocked time: the sleeps plus timer and
# wake-up latency (-5% / +30%, as tests/test_stacks.py)
OFF_LO, OFF_HI = 0.95, 1.30
LINE = re.compile(r"^[^;\s][^;]*(;[^;]+)* [1-9][0-9]*$")
PYFRAME = re.compile(r"^py:\S.* \(\S.*:(\d+|\?)\)$")


def interpreter(request, key):
    path = INTERPRETERS[key]
    if not os.access(path, os.X_OK):
        skip_loudly(request, f"NOT RUN: CPython {key} is not installed at {path}: "
                             "its Python-frame tests did not run")
    return str(path)


def traced(tmp_path, argv, extra=(), timeout=120):
    """contactmap -f -o ... -- argv; returns (report, truth, folded dict)."""
    out, js = tmp_path / "s.folded", tmp_path / "r.json"
    cp = run_cm(["-f", out, "-o", js, *extra, "--", *argv], timeout=timeout)
    assert cp.returncode == 0, cp.stderr[-3000:]
    report = json.loads(js.read_text())
    truth = json.loads(cp.stdout.strip().splitlines()[-1])
    stacks = {}
    for l in out.read_text().splitlines():
        assert LINE.match(l), f"bad folded line: {l!r}"
        frames, w = l.rsplit(" ", 1)
        assert frames not in stacks, f"duplicate stack line: {frames}"
        stacks[frames] = int(w)
        fr = frames.split(";")
        for f in fr:
            if f.startswith("py:") and not f.startswith("py::"):
                assert PYFRAME.match(f), f"badly named Python frame {f!r}"
        # -X perf's trampolines (named from the perf map) go where the
        # walker's Python frames take their place
        if any(PYFRAME.match(f) for f in fr):
            assert not any(f.startswith("py::") for f in fr), f"trampoline left in {frames}"
    return report, truth, stacks


def weight(stacks, chain, oncpu=True, leaf=None, need=None):
    """Weight of the stacks holding CHAIN (consecutive frames; an entry may be
    a set of acceptable names), on-CPU or off-CPU (ending in one of LEAF), and
    containing the frame NEED if given."""
    total = 0
    for frames, w in stacks.items():
        f = frames.split(";")
        off = f[-1].startswith("[off-cpu:")
        if off == oncpu or (leaf and f[-1] not in leaf) or (need and need not in f):
            continue
        n = len(chain)
        for i in range(len(f) - n + 1):
            if all(f[i + k] in (c if isinstance(c, set) else {c}) for k, c in enumerate(chain)):
                total += w
                break
    return total


def py(name, t, line):
    return f"py:{name} ({t['file']}:{t['lines'][line]})"


CASES = [("3.11-debian", False), ("3.10", False), ("3.12", False), ("3.12", True),
         ("3.13", False), ("3.13", True)]


@pytest.mark.parametrize("key,perf", CASES, ids=[f"{k}{'-Xperf' if p else ''}" for k, p in CASES])
def test_chains_in_order(request, tmp_path, key, perf):
    exe = interpreter(request, key)
    argv = [exe] + (["-X", "perf"] if perf else []) + [str(CHAINS), "--spin", "1.0",
                                                       "--sleeps", "10", "--sleep-ms", "20"]
    r, t, st = traced(tmp_path, argv)
    p = find_proc(r, pid=t["pid"])
    pys = p.get("python")
    assert pys, f"no python section for CPython {key}: {p.keys()}"
    assert pys["version"].startswith("3." + key.split("-")[0].split(".")[1]), pys["version"]
    assert pys["layout_check"] == "ok", pys
    assert pys["walker"]["stacks"] > 0 and pys["walker"]["read_failed"] <= pys["walker"]["stacks"] // 20

    # on-CPU: <module> -> main -> outer -> middle -> leaf, each at its call line
    leaf_lines = {py("leaf", t, "LEAF_LOOP"), py("leaf", t, "LEAF_BODY")}
    chain = [py("outer", t, "CALL_MIDDLE"), py("middle", t, "CALL_LEAF"), leaf_lines]
    spin = weight(st, chain)
    # the spin is most of the process's CPU time (start-up is the rest): it
    # holds most of its samples, however busy the machine
    samples = sum(w for k, w in st.items() if "[off-cpu:" not in k)
    assert spin >= 0.6 * samples and spin >= 10, (spin, samples, sorted(st.items(), key=lambda x: -x[1])[:3])
    assert weight(st, [py("main", t, "CALL_OUTER")] + chain) == spin
    # the native part around them is intact: the chain is under _start
    # (through -X perf's trampolines too), and leaf is not under middle twice
    assert weight(st, chain, need="_start") >= 0.8 * spin, "native frames lost around the Python ones"
    assert weight(st, [py("middle", t, "CALL_LEAF"), py("middle", t, "CALL_LEAF")]) == 0

    # off-CPU: the sleeping chain, weighted by the sleeps (3.10 sleeps in select)
    sleep_leaf = {"[off-cpu:syscall:clock_nanosleep]", "[off-cpu:syscall:pselect6]",
                  "[off-cpu:syscall:select]"}
    schain = [py("outer_s", t, "CALL_MIDDLE_S"), py("middle_s", t, "CALL_SLEEPER"), py("sleeper", t, "SLEEP")]
    us = weight(st, schain, oncpu=False, leaf=sleep_leaf)
    assert t["sleep_ms"] * 1000 * OFF_LO <= us <= t["sleep_ms"] * 1000 * OFF_HI, \
        (us, [k for k in st if "sleeper" in k][:3])
    # the report's top Python functions off-CPU name the sleeper
    top = {f["function"]: f for f in pys.get("top_offcpu", [])}
    assert py("sleeper", t, "SLEEP") in top, list(top)


@pytest.mark.parametrize("key", ["3.11-debian", "3.10", "3.12", "3.13"])
def test_reused_code_address_renamed(request, tmp_path, key):
    """A code object freed and another made at its address (an imported
    module's body, then the program's code) is named as the new one at once,
    not after the cached name has grown old."""
    exe = interpreter(request, key)
    r, t, st = traced(tmp_path, [exe, str(REUSE), "--first", "0.3", "--second", "0.1"],
                      extra=["-F", "499"])
    k = t["reused"]
    assert k >= 0, f"CPython {key} never put the second code object at the first's address: {t}"
    spin = f"py:<module> (second{k}.py:{t['spin_line']})"
    stale = f"py:<module> (first{k}.py:{t['spin_line']})"
    under_second = {}
    for frames, w in st.items():
        f = frames.split(";")
        for i, name in enumerate(f[:-1]):
            if name.startswith("py:run_second ("):
                under_second[f[i + 1]] = under_second.get(f[i + 1], 0) + w
    assert under_second.get(stale, 0) == 0, f"the freed code object's name was kept: {under_second}"
    # 0.1 s at 499 Hz: about 50 samples, most of them in the spin
    assert under_second.get(spin, 0) >= 10, under_second


@pytest.mark.parametrize("key", ["3.11-debian", "3.10", "3.12", "3.13"])
def test_gil_waits_are_gil(request, tmp_path, key):
    """Three threads spinning in Python: what keeps each off the CPU is the
    GIL, booked as 'gil', not as the futex call it waits in."""
    exe = interpreter(request, key)
    r, t, st = traced(tmp_path, [exe, str(GIL), "--mode", "spin", "--threads", "3", "--seconds", "2"])
    p = find_proc(r, pid=t["pid"])
    gil_total = 0
    for th in p["threads"]:
        if th["tid"] not in t["tids"]:
            continue
        L = th["ledger"]
        c = L["offcpu_by_cause"]
        gil, futex = c.get("gil", 0), c.get("syscall:futex", 0)
        gil_total += gil
        assert gil >= 0.8 * L["offcpu_ns"], (th["tid"], c)
        assert futex <= 0.1 * (gil + futex), (th["tid"], c)
    # three spinners, one GIL: over 2 s each waits for it more than it runs
    assert gil_total >= 1.0e9, gil_total
    row = {x["subsystem"]: x for x in r["contact_map"]}["gil"]
    assert row["label"] == "Python GIL" and row["time_ns"] >= gil_total and row["count"] > 0
    assert p["python"]["gil_waits"] >= row["count"] > 0
    # the waits were held by the other spinners, and their stacks say where
    held = p["python"].get("gil_held_by", [])
    named = sum(h["wait_ns"] for h in held if h["holder_tid"] in t["tids"] and h["holder_tid"] != h["waiter_tid"])
    assert named >= 0.8 * sum(h["wait_ns"] for h in held) > 0, held
    assert weight(st, [{py("spin", t, "SPIN_LOOP"), py("spin", t, "SPIN_BODY")}], oncpu=False,
                  leaf={"[off-cpu:gil]"}) > 0.5e6
    assert not ledger_problems(r), ledger_problems(r)[:5]


@pytest.mark.parametrize("key", ["3.11-debian", "3.12"])
def test_queue_waits_are_futex(request, tmp_path, key):
    """Consumers blocked in queue.get() wait on a lock, not on the GIL."""
    exe = interpreter(request, key)
    r, t, _ = traced(tmp_path, [exe, str(GIL), "--mode", "queue", "--threads", "3",
                                "--seconds", "1.5", "--period-ms", "50"])
    p = find_proc(r, pid=t["pid"])
    futex_total = 0
    for th in p["threads"]:
        if th["tid"] not in t["tids"]:
            continue
        c = th["ledger"]["offcpu_by_cause"]
        gil, futex = c.get("gil", 0), c.get("syscall:futex", 0)
        futex_total += futex
        assert futex >= 0.9 * (gil + futex), (th["tid"], c)
    assert futex_total >= 3 * 1.5e9 * 0.8, futex_total
    assert t["items"] >= 20


def test_exited_child_still_named(request, tmp_path):
    """A forked Python child that spins and exits long before the report is
    written: its stacks still name its Python frames, and it is labelled as
    its parent's child."""
    exe = interpreter(request, "3.11-debian")
    script = tmp_path / "parent.py"
    script.write_text(
        "import json, os, sys, time\n"
        f"sys.path.insert(0, {str(CHAINS.parent)!r})\n"
        "import chains\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    chains.outer(time.monotonic() + 0.6)\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "time.sleep(1.0)\n"
        "print(json.dumps({'parent': os.getpid(), 'child': pid, 'lines': chains.lines()}))\n")
    r, t, st = traced(tmp_path, [exe, str(script)], extra=["--fold-pid"])
    child = find_proc(r, pid=t["child"])
    assert child.get("end_ns"), "the child should have exited before the end"
    assert child["python"]["parent"]["pid"] == t["parent"]
    comm = child["comm"]
    root = f"{comm}-{t['child']}"
    t["file"] = "chains.py"
    chain = [py("outer", t, "CALL_MIDDLE"), py("middle", t, "CALL_LEAF"),
             {py("leaf", t, "LEAF_LOOP"), py("leaf", t, "LEAF_BODY")}]
    mine = {k: v for k, v in st.items() if k.split(";")[0] == root}
    assert mine, f"no stacks rooted at {root}: {sorted({k.split(';')[0] for k in st})}"
    samples = sum(w for k, w in mine.items() if "[off-cpu:" not in k)
    assert weight(mine, chain) >= 0.6 * samples > 0, sorted(mine.items(), key=lambda x: -x[1])[:3]
    # every stack is rooted at comm-PID
    assert all(re.match(r"^.+-\d+$", k.split(";")[0]) for k in st)


def test_non_python_unchanged(tmp_path):
    """A C program: no Python frames, no python section, the same native
    chains as with Python support off, and no walk ever started for it."""
    lib = str(Path(workload("libstackwl.so")))
    got = {}
    for flag in ([], ["--no-python"]):
        out, js = tmp_path / "s.folded", tmp_path / "r.json"
        cp = run_cm(["-f", out, "-o", js, *flag, "--", workload("stackwl"), lib])
        assert cp.returncode == 0, cp.stderr[-2000:]
        rep = json.loads(js.read_text())
        assert all("python" not in p for p in rep["processes"])
        text = out.read_text()
        assert "py:" not in text
        got[bool(flag)] = {l.rsplit(" ", 1)[0] for l in text.splitlines()}
    for chain in ("outer_a;middle_b;spin_c", "outer_a;sleeper_d", "lib_spin_g", "child_spin_h"):
        assert any(chain in s for s in got[False]) and any(chain in s for s in got[True]), chain


def test_no_python_flag(request, tmp_path):
    exe = interpreter(request, "3.11-debian")
    out, js = tmp_path / "s.folded", tmp_path / "r.json"
    cp = run_cm(["--no-python", "-f", out, "-o", js, "--", exe, str(GIL), "--mode", "spin",
                 "--threads", "2", "--seconds", "0.5"])
    assert cp.returncode == 0, cp.stderr[-2000:]
    rep = json.loads(js.read_text())
    assert "py:" not in out.read_text()
    for p in rep["processes"]:
        assert "python" not in p and "gil" not in p["ledger"]["offcpu_by_cause"]


def test_bad_fold_pid_usage(tmp_path):
    cp = run_cm(["--fold-pid=x", "--", "true"])
    assert cp.returncode == 2 and cp.stderr.startswith("contactmap: error: "), cp.stderr


def test_attach_running_python(request, tmp_path):
    """contactmap -p on a Python process already running: found at attach, its
    frames named."""
    exe = interpreter(request, "3.11-debian")
    proc = subprocess.Popen([exe, str(CHAINS), "--spin", "4", "--sleeps", "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        import time
        time.sleep(0.8)
        out, js = tmp_path / "s.folded", tmp_path / "r.json"
        cp = run_cm(["-p", proc.pid, "-d", "1.5", "-f", out, "-o", js])
        assert cp.returncode == 0, cp.stderr[-2000:]
    finally:
        truth = json.loads(proc.communicate(timeout=30)[0].strip().splitlines()[-1])
    r = json.loads(js.read_text())
    p = find_proc(r, pid=proc.pid)
    assert p["python"]["layout_check"] == "ok" and p["python"]["walker"]["stacks"] > 0
    st = {l.rsplit(" ", 1)[0]: int(l.rsplit(" ", 1)[1]) for l in out.read_text().splitlines()}
    chain = [py("outer", truth, "CALL_MIDDLE"), py("middle", truth, "CALL_LEAF"),
             {py("leaf", truth, "LEAF_LOOP"), py("leaf", truth, "LEAF_BODY")}]
    samples = sum(w for k, w in st.items() if "[off-cpu:" not in k)
    assert weight(st, chain) >= 0.8 * samples > 0


def test_report_text_python(request, tmp_path):
    """The text map of a saved report shows the python section and the GIL row."""
    exe = interpreter(request, "3.11-debian")
    r, t, _ = traced(tmp_path, [exe, str(GIL), "--mode", "spin", "--threads", "2", "--seconds", "1"])
    cp = subprocess.run([contactmap_bin(), "report", str(tmp_path / "r.json")], capture_output=True,
                        text=True, timeout=30)
    assert cp.returncode == 0, cp.stderr
    assert "Python GIL" in cp.stdout
    assert re.search(r"^  python  CPython 3\.11\.\d+ \(/usr/bin/python3\.11\)$", cp.stdout, re.M), cp.stdout
    assert re.search(r"^          GIL held by tid \d+", cp.stdout, re.M), cp.stdout
    assert re.search(r"^            py:spin \(gil\.py:\d+\) +\S+ m?s gil", cp.stdout, re.M), cp.stdout


def test_pool_workers_are_children(request, tmp_path):
    """multiprocessing workers (forked, as DataLoader's): each is described
    to the walker from its fork, its stacks rooted at comm-PID with its own
    Python frames, and its python section names its parent."""
    exe = interpreter(request, "3.11-debian")
    r, t, st = traced(tmp_path, [exe, str(REPO / "tests" / "python" / "pool.py"), "--seconds", "1"],
                      extra=["--fold-pid"])
    assert len(t["workers"]) == 2, t
    for w in t["workers"]:
        p = find_proc(r, pid=w)
        assert p["python"]["parent"]["pid"] == t["pid"], p["python"]
        mine = {k: v for k, v in st.items() if k.split(";")[0] == f"{p['comm']}-{w}"}
        samples = sum(v for k, v in mine.items() if "[off-cpu:" not in k)
        spin = weight(mine, [{py("work", t, "WORK_LOOP"), py("work", t, "WORK_BODY")}])
        assert spin >= 0.7 * samples > 0, sorted(mine.items(), key=lambda x: -x[1])[:3]
