"""--cgroup PATH: every process of a cgroup v2 subtree, those that join later too.

The test makes a cgroup of its own under this machine's cgroup2 mount (and a
child cgroup in it), puts a sleeper in the child before contactmap starts,
then, while contactmap runs, moves a new process in (it writes its pid to
cgroup.procs and execs getppid_loop, as a service manager's child does),
starts one straight into it from an untraced parent (clone3 with
CLONE_INTO_CGROUP), and runs one outside it. The report must hold the three
inside with their exact getppid counts, and nothing of the two outside.
"""
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import (assert_no_problems, contactmap_bin, find_proc, kill_quietly,
                      ledger_problems, run_cm, schema_problems, skip_loudly, syscall_count,
                      workload)

pytestmark = pytest.mark.usefixtures("need_root")

BOUND_S = 30


def cgroup2_mount():
    for line in open("/proc/self/mounts"):
        f = line.split()
        if f[2] == "cgroup2":
            return Path(f[1])
    return None


@pytest.fixture
def cgroup(request):
    mnt = cgroup2_mount()
    if mnt is None:
        skip_loudly(request, "NOT RUN: --cgroup tests need a cgroup2 filesystem mounted")
    d = mnt / f"contactmap-test-{os.getpid()}-{time.monotonic_ns()}"
    d.mkdir()
    (d / "sub").mkdir()
    yield d
    for c in (d / "sub", d):
        for pid in (c / "cgroup.procs").read_text().split():
            kill_quietly(int(pid))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            (d / "sub").rmdir()
            d.rmdir()
            break
        except FileNotFoundError:
            break
        except OSError:
            time.sleep(0.1)


def start_cm(args):
    """contactmap -v ARGS --serve 127.0.0.1:0, returned once it says it traces
    (seeding done) and serves."""
    p = subprocess.Popen([contactmap_bin(), "-v", *map(str, args), "--serve", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        lines.append(line)
        if any("Ctrl-C to stop" in l for l in lines) and \
                any("serving metrics on " in l for l in lines):
            rest = []
            threading.Thread(target=lambda: rest.append(p.stderr.read()), daemon=True).start()
            p.lines, p.rest = lines, rest
            return p
    kill_quietly(p.pid)
    pytest.fail(f"contactmap --cgroup did not start: {''.join(lines)}", pytrace=False)


def truth_of(out):
    return json.loads(out.strip().splitlines()[-1])


def test_cgroup_traces_members_and_joiners(tmp_path, cgroup):
    sleeper = subprocess.Popen(["sh", "-c", f'echo $$ > {cgroup}/sub/cgroup.procs; '
                                            f'exec {workload("sleeper")} 400 20000'],
                               stdout=subprocess.DEVNULL)
    cm = None
    try:
        assert wait_member(cgroup / "sub", sleeper.pid)
        out = tmp_path / "r.json"
        cm = start_cm(["--cgroup", cgroup, "-o", out])
        url = next(l.split("serving metrics on ", 1)[1].strip() for l in cm.lines
                   if "serving metrics on " in l)

        # moved in by itself, then exec'd: traced from the move on
        joiner = subprocess.run(["sh", "-c", f'echo $$ > {cgroup}/cgroup.procs; '
                                             f'exec {workload("getppid_loop")} 777'],
                                capture_output=True, text=True, timeout=BOUND_S)
        jt = truth_of(joiner.stdout)
        # started inside by a parent that stays outside
        cl = subprocess.run([workload("clone_into"), str(cgroup / "sub"), "333"],
                            capture_output=True, text=True, timeout=BOUND_S)
        assert cl.returncode == 0, cl.stderr
        ct = truth_of(cl.stdout)
        # outside the cgroup altogether
        outsider = subprocess.run([workload("getppid_loop"), "555"], capture_output=True,
                                  text=True, timeout=BOUND_S)
        ot = truth_of(outsider.stdout)

        # the exporter sees the joiner too (the report of the next second)
        want = (f'contactmap_syscalls_total{{pid="{jt["pid"]}",comm="getppid_loop",'
                f'syscall="getppid"}} 777')
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = urllib.request.urlopen(url, timeout=5).read().decode()
            if want in text.splitlines():
                break
            time.sleep(0.3)
        assert want in text.splitlines(), [l for l in text.splitlines() if "getppid" in l]
        assert 'contactmap_info{version="0.1.0",mode="cgroup"} 1' in text

        cm.send_signal(signal.SIGINT)
        cm.communicate(timeout=BOUND_S)
        assert cm.returncode == 0, cm.rest
        rep = json.loads(out.read_text())
    finally:
        kill_quietly(sleeper.pid)
        sleeper.wait(5)
        if cm and cm.poll() is None:
            kill_quietly(cm.pid)
            cm.wait(10)

    assert rep["target"]["mode"] == "cgroup"
    assert rep["target"]["cgroup"] == str(cgroup)
    assert rep["target"]["pids"] == [sleeper.pid], rep["target"]
    assert_no_problems(schema_problems(rep), "cgroup report schema")
    assert_no_problems(ledger_problems(rep, from_start_to_end=False), "cgroup report ledger")
    pids = {p["pid"] for p in rep["processes"]}
    assert pids == {sleeper.pid, jt["pid"], ct["child"]}, \
        [(p["pid"], p["comm"]) for p in rep["processes"]]
    assert syscall_count(find_proc(rep, pid=jt["pid"]), "getppid") == 777
    assert syscall_count(find_proc(rep, pid=ct["child"]), "getppid") == 333
    assert ot["pid"] not in pids and ct["pid"] not in pids
    assert syscall_count(find_proc(rep, pid=sleeper.pid), "clock_nanosleep") > 10


def wait_member(cg, pid):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if str(pid) in (cg / "cgroup.procs").read_text().split():
            return True
        time.sleep(0.02)
    return False


def one_error_line(cp, *mentions):
    assert cp.returncode != 0, cp
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("contactmap: error: "), cp.stderr
    for m in mentions:
        assert m in lines[0], (m, lines[0])


def test_cgroup_unknown_path(tmp_path):
    mnt = cgroup2_mount()
    path = (mnt or Path("/sys/fs/cgroup")) / "no-such-cgroup-here"
    one_error_line(run_cm(["--cgroup", path, "-d", "1"]), "no such cgroup", str(path))
    one_error_line(run_cm(["--cgroup", "no-such-cgroup-here", "-d", "1"]), "no such cgroup")


def test_cgroup_not_cgroup2(tmp_path):
    """A directory that is not on a cgroup2 filesystem stands for a system
    without the v2 hierarchy: a plain directory, and a v1 hierarchy's
    directory where this machine has one."""
    one_error_line(run_cm(["--cgroup", tmp_path, "-d", "1"]), "not a cgroup v2 directory")
    for line in open("/proc/self/mounts"):
        f = line.split()
        if f[2] == "cgroup":
            one_error_line(run_cm(["--cgroup", f[1], "-d", "1"]), "not a cgroup v2 directory",
                           "cgroup v1")
            break


def test_cgroup_with_command_is_usage_error(cgroup):
    one_error_line(run_cm(["--cgroup", cgroup, "--", "/bin/true"]), "not both")
