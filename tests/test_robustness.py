"""Robustness (issue 12): what a root tool may write and read, signals,
options and hostile inputs.

contactmap runs as root, so each test plays an attacker (another local user,
`nobody`, who can write to a world-writable sticky directory; this machine
runs with fs.protected_symlinks=0) or a careless user, and checks the outcome
against ground truth: the victim file's bytes, a device's type, the signal
state /proc shows, the exit status, the report's own numbers.

After every test of this file: no contactmap BPF program or link may be left
held by a process the test started (other engineers trace on this machine
at the same time, so only our own processes count), and the directories the
test wrote to may hold no temp file.
"""
import copy
import json
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import (OUTPUT, REPO, assert_no_problems, built, contactmap_bin, find_proc,
                      kill_quietly, ledger_problems, run_cm, schema_problems, wait_for,
                      workload)

pytestmark = pytest.mark.usefixtures("need_root")

SAMPLE = REPO / "tests" / "data" / "sample-report.json"
NOBODY = 65534
# Seconds contactmap may take to write its report and exit after a signal.
SIGNAL_EXIT_S = 10.0
# `report` of an endless or oversized input must fail within this.
FAIL_FAST_S = 5.0
# The address-space limit `report` must fail within on hostile input:
# reading must not grow with the input.
REPORT_AS_LIMIT = 64 << 20
# Fuzz pass: mutated reports, each run under this timeout.
FUZZ_CASES = 300
FUZZ_SEED = 12
FUZZ_TIMEOUT_S = 20
# Temp names contactmap has used: its own (".NAME.cm-XXXXXXXXXXXX") and the
# old "NAME.tmp.PID".
TEMP_NAME = re.compile(r"(^\..*\.cm-[0-9a-f]{12}$)|(\.tmp\.\d+$)")


# ---------------------------------------------------------------------------
# what every test leaves behind

_started = set()     # pids a test started that may outlive it (a target left running)
_written = []        # directories a test wrote to, besides tmp_path


def started(pid):
    _started.add(int(pid))
    return pid


def wrote_to(d):
    _written.append(Path(d))
    return d


def program_names():
    """Names of contactmap's BPF programs, from its skeleton (the kernel keeps
    15 characters of a name)."""
    skel = (OUTPUT / "contactmap.skel.h").read_text()
    names = set(re.findall(r"struct bpf_program \*(\w+);", skel))
    assert names, "no programs found in contactmap.skel.h"
    return {n[:15] for n in names}


def bpftool_json(*what):
    bpftool = shutil.which("bpftool") or "/usr/sbin/bpftool"
    p = subprocess.run([bpftool, "-j", *what], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, f"bpftool {' '.join(what)}: {p.stderr}"
    return json.loads(p.stdout or "[]")


def contactmap_programs(names):
    """Ids of the loaded BPF programs with a contactmap name."""
    return {p["id"] for p in bpftool_json("prog", "show") if p.get("name", "")[:15] in names}


def our_pids():
    """Processes this test started: descendants of pytest, and those it
    registered (a command contactmap left running is reparented)."""
    me, parent = os.getpid(), {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    ours = {p for p in _started if p in parent}
    for pid in parent:
        p, seen = pid, 0
        while p > 1 and seen < 64:
            if p == me:
                ours.add(pid)
                break
            p, seen = parent.get(p, 0), seen + 1
    return ours - {me}


def bpf_holdings(pid):
    """(fd, kind, prog_id) for every BPF object or perf event pid holds
    (this bpftool lists no holder pids, so /proc/PID/fdinfo says)."""
    out = []
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if not (target.startswith("anon_inode:bpf") or target == "anon_inode:[perf_event]"):
                continue
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:
            continue
        m = re.search(r"^prog_id:\s*(\d+)", info, re.M)
        out.append((int(fd), target, int(m.group(1)) if m else None))
    return out


def leftovers(before, names):
    """What a process of ours (contactmap left alive, or a command that
    inherited its fds) still holds of BPF: any program, link, map or perf
    event at all (the test's workloads use none), naming the contactmap
    programs loaded since `before` among them."""
    new = contactmap_programs(names) - before
    bad = []
    for pid in our_pids():
        for fd, kind, prog in bpf_holdings(pid):
            tag = f" (contactmap program {prog}, loaded during the test)" if prog in new else ""
            bad.append(f"pid {pid} fd {fd}: {kind}{tag}")
    return bad


def temp_files(dirs):
    found = []
    for d in dirs:
        if not Path(d).exists():
            continue
        for root, subdirs, files in os.walk(d):
            found += [os.path.join(root, f) for f in files + subdirs if TEMP_NAME.search(f)]
    return found


_before = {}


def assert_no_bpf_leftovers():
    """No contactmap program or link loaded during this test is held by a
    process of ours (after a moment for the kernel to free them)."""
    names, before = _before["names"], _before["ids"]
    wait_for(lambda: not leftovers(before, names), 5, step=0.2)
    bad = leftovers(before, names)
    assert not bad, "contactmap BPF objects left attached: " + "; ".join(bad)


@pytest.fixture(autouse=True)
def nothing_left_behind(request, tmp_path):
    names = program_names()
    _before.update(names=names, ids=set(contactmap_programs(names)))
    _started.clear()
    _written.clear()
    yield
    assert_no_bpf_leftovers()
    tmps = temp_files([tmp_path] + _written)
    assert not tmps, f"temp files left behind: {tmps}"


# ---------------------------------------------------------------------------
# helpers

def assert_one_error_line(cp, *mentions, rc=None):
    """Non-zero exit and stderr exactly one 'contactmap: error:' line."""
    err = cp.stderr if isinstance(cp.stderr, str) else cp.stderr.decode()
    assert cp.returncode != 0, f"exit status 0; stderr {err!r}"
    if rc is not None:
        assert cp.returncode == rc, f"exit status {cp.returncode}, expected {rc}; stderr {err!r}"
    lines = err.split("\n")
    assert len(lines) == 2 and lines[1] == "" and lines[0].startswith("contactmap: error: "), \
        f"stderr must be one 'contactmap: error:' line ending in a newline, got {err!r}"
    for m in mentions:
        assert m.lower() in lines[0].lower(), f"error line should mention {m!r}: {lines[0]!r}"
    return lines[0]


def as_nobody(*cmd):
    subprocess.run(["runuser", "-u", "nobody", "--"] + [str(c) for c in cmd], check=True,
                   timeout=30)


@pytest.fixture
def sticky_dir():
    """A world-writable sticky directory, like /tmp (the attacker's ground)."""
    d = Path(tempfile.mkdtemp(prefix="cm-robust-", dir="/tmp"))
    d.chmod(0o1777)
    wrote_to(d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Victim:
    """A root-only file: its bytes and metadata must never change."""

    def __init__(self, path):
        self.path = path
        self.data = os.urandom(64).hex().encode()
        path.write_bytes(self.data)
        path.chmod(0o600)
        self.st = path.stat()

    def assert_untouched(self):
        st = self.path.stat()
        assert self.path.read_bytes() == self.data, "the victim file was overwritten"
        assert (st.st_ino, st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns) == \
            (self.st.st_ino, self.st.st_mode, self.st.st_uid, self.st.st_size, self.st.st_mtime_ns), \
            "the victim file changed"


@pytest.fixture
def victim(tmp_path):
    d = tmp_path / "root-only"
    d.mkdir(mode=0o700)
    return Victim(d / "victim")


def marker_cmd(tmp_path):
    """A command that proves it ran by creating a file."""
    m = tmp_path / "ran"
    return m, ["--", "/bin/sh", "-c", f"touch {m}"]


def is_chr(path, major, minor):
    st = os.stat(path)
    return stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (major, minor)


# the outputs, the option that names each, and what a run needs to write it
OUTPUTS = [
    ("-o", "out.json", []),
    ("-f", "out.folded", []),
    ("--trace", "out.trace", []),
    ("--jsonl", "out.jsonl", ["-i", "1"]),
    ("--text", "out.txt", []),
]
OUT_IDS = [o[0].lstrip("-") for o in OUTPUTS]


# ---------------------------------------------------------------------------
# security: planted links, devices, temp names

@pytest.mark.parametrize("opt,name,extra", OUTPUTS, ids=OUT_IDS)
def test_planted_symlink_is_not_followed(tmp_path, sticky_dir, victim, opt, name, extra):
    """As nobody: ln -s /root-only/victim /tmp/d/out; as root: contactmap OPT
    /tmp/d/out. The victim must stay as it was, the link too, and the run
    must stop before the command starts, with one line."""
    link = sticky_dir / name
    as_nobody("ln", "-s", victim.path, link)
    marker, cmd = marker_cmd(tmp_path)
    cp = run_cm(extra + [opt, link] + cmd, timeout=30)
    assert_one_error_line(cp, "symbolic link owned by uid 65534", opt)
    victim.assert_untouched()
    assert os.readlink(link) == str(victim.path) and os.lstat(link).st_uid == NOBODY
    assert not marker.exists(), "the command ran although its output was refused"


def test_planted_directory_link_is_not_followed(tmp_path, sticky_dir, victim):
    """A link planted as a directory of the path is judged like a final one."""
    as_nobody("ln", "-s", victim.path.parent, sticky_dir / "d")
    marker, cmd = marker_cmd(tmp_path)
    cp = run_cm(["-o", sticky_dir / "d" / "victim"] + cmd, timeout=30)
    assert_one_error_line(cp, "'d' is a symbolic link owned by uid 65534")
    victim.assert_untouched()
    assert not marker.exists()


def test_own_symlink_is_followed(tmp_path):
    """A link root made is root's choice: followed, and left a link."""
    target = tmp_path / "real.json"
    (tmp_path / "link.json").symlink_to(target)
    cp = run_cm(["-o", tmp_path / "link.json", "--text", tmp_path / "t.txt", "--", "true"])
    assert cp.returncode == 0, cp.stderr
    assert json.loads(target.read_text())["schema"] == "contactmap/1"
    assert (tmp_path / "link.json").is_symlink()


def test_outputs_have_no_guessable_temp_names(tmp_path, sticky_dir, victim):
    """The old temp names (PATH.tmp.PID) planted by nobody while contactmap
    runs redirect nothing, and no temp file is ever visible in the
    directory to race for: the outputs appear whole, owned by root."""
    outs = {"-o": "r.json", "-f": "r.folded", "--trace": "r.trace", "--text": "r.txt"}
    argv = [contactmap_bin()]
    for opt, name in outs.items():
        argv += [opt, str(sticky_dir / name)]
    argv += ["--", workload("sleeper"), "10", "50000"]           # 0.5 s
    seen, stop = set(), threading.Event()

    def watch():
        while not stop.is_set():
            seen.update(os.listdir(sticky_dir))
            time.sleep(0.005)

    w = threading.Thread(target=watch)
    w.start()
    cm = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    planted = []
    for name in outs.values():
        planted.append(sticky_dir / f"{name}.tmp.{cm.pid}")
        as_nobody("ln", "-s", victim.path, planted[-1])
    _, err = cm.communicate(timeout=60)
    stop.set()
    w.join()
    assert cm.returncode == 0, err
    victim.assert_untouched()
    for p in planted:
        assert os.readlink(p) == str(victim.path)
        p.unlink()
    for name in outs.values():
        st = os.lstat(sticky_dir / name)
        assert stat.S_ISREG(st.st_mode) and st.st_uid == 0 and st.st_nlink == 1, name
    assert json.loads((sticky_dir / "r.json").read_text())["schema"] == "contactmap/1"
    assert json.loads((sticky_dir / "r.trace").read_text())["traceEvents"]
    lines = (sticky_dir / "r.folded").read_text().splitlines()
    assert lines and all(re.fullmatch(r"\S.* \d+", l) for l in lines), lines[:5]
    # besides the outputs and the planted links, at most the random name an
    # output holds between being linked into the directory and renamed
    odd = {n for n in seen - set(outs.values()) - {p.name for p in planted}
           if not re.fullmatch(r"\.r\.(json|folded|trace|txt)\.cm-[0-9a-f]{12}", n)}
    assert not odd, f"names other than the outputs appeared during the run: {sorted(odd)}"


def test_devices_are_written_in_place(tmp_path):
    """Every output to /dev/null at once: allowed (a device may take several),
    and /dev/null stays the device it was."""
    cp = run_cm(["-o", "/dev/null", "-f", "/dev/null", "--trace", "/dev/null",
                 "--text", "/dev/null", "-i", "0.2", "--jsonl", "/dev/null", "--", "true"])
    assert cp.returncode == 0 and cp.stderr == "", cp.stderr
    assert is_chr("/dev/null", 1, 3)


@pytest.mark.parametrize("opt,name,extra", OUTPUTS, ids=OUT_IDS)
def test_full_device_is_an_error(tmp_path, opt, name, extra):
    """A write the device refuses (ENOSPC) fails the run, in one line naming
    the output, and /dev/full stays a device (it used to be renamed over)."""
    text = [] if opt == "--text" else ["--text", tmp_path / "t.txt"]
    cp = run_cm(extra + text + [opt, "/dev/full", "--", "true"])
    assert_one_error_line(cp, opt, "/dev/full", "No space left", rc=1)
    assert is_chr("/dev/full", 1, 7)


def test_fifo_is_fed_not_replaced(tmp_path):
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    got = {}

    def reader():
        with open(fifo, "rb") as f:
            got["data"] = f.read()

    t = threading.Thread(target=reader)
    t.start()
    cp = run_cm(["-o", fifo, "--text", tmp_path / "t.txt", "--", "true"])
    t.join(30)
    assert cp.returncode == 0, cp.stderr
    assert json.loads(got["data"])["schema"] == "contactmap/1"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_block_device_refused(tmp_path):
    dev = next((f"/dev/{d}" for d in sorted(os.listdir("/sys/block"))
                if os.path.exists(f"/dev/{d}")), None)
    if dev is None:
        pytest.fail("no block device under /dev to check the refusal with")
    marker, cmd = marker_cmd(tmp_path)
    assert_one_error_line(run_cm(["-o", dev] + cmd), "block device")
    assert not marker.exists()


def test_command_inherits_no_contactmap_fd(tmp_path):
    """Nothing contactmap opens (BPF objects, outputs, pipes) reaches the
    command: its fds are those of the same command started directly."""
    script = "ls /proc/$$/fd"      # the shell's fds, listed by a child
    direct = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True).stdout
    cp = run_cm(["-o", tmp_path / "r.json", "-f", tmp_path / "f", "--trace", tmp_path / "t",
                 "--text", tmp_path / "x", "-i", "0.1", "--jsonl", tmp_path / "l",
                 "--", "/bin/sh", "-c", script])
    assert cp.returncode == 0, cp.stderr
    assert sorted(cp.stdout.split()) == sorted(direct.split()) == ["0", "1", "2"], cp.stdout


# ---------------------------------------------------------------------------
# outputs that would be lost

@pytest.mark.parametrize("spelling", ["same", "dot-slash", "dot-dot", "hard-link", "own-symlink",
                                      "stdout-twice", "dev-stdout"])
def test_one_file_named_twice_is_refused(tmp_path, spelling):
    """-o X -f X: one output would silently overwrite the other."""
    x = tmp_path / "X"
    (tmp_path / "sub").mkdir()
    a, b = str(x), {"same": str(x), "dot-slash": "./X", "dot-dot": "sub/../X",
                    "hard-link": "H", "own-symlink": "S", "stdout-twice": "-",
                    "dev-stdout": "/dev/stdout"}[spelling]
    if spelling == "hard-link":
        x.write_text("old")
        os.link(x, tmp_path / "H")
    if spelling == "own-symlink":
        (tmp_path / "S").symlink_to(x)
    if spelling in ("stdout-twice", "dev-stdout"):
        a = "-"
    marker, cmd = marker_cmd(tmp_path)
    cp = subprocess.run([contactmap_bin(), "-o", a, "-f", b] + cmd, capture_output=True,
                        text=True, timeout=30, cwd=tmp_path)          # stdout: a pipe
    assert_one_error_line(cp, "stdout" if spelling == "stdout-twice" else "same file")
    assert not marker.exists()
    if spelling == "hard-link":
        assert x.read_text() == "old"
    else:
        assert not x.exists()


@pytest.mark.parametrize("opt,value", [("-o", ""), ("-f", ""), ("--trace", ""), ("--jsonl", ""),
                                       ("--text", ""), ("--trace", "-")],
                         ids=["o-empty", "f-empty", "trace-empty", "jsonl-empty", "text-empty",
                              "trace-stdout"])
def test_unusable_paths_refused_before_the_run(tmp_path, opt, value):
    marker, cmd = marker_cmd(tmp_path)
    extra = ["-i", "1"] if opt == "--jsonl" else []
    cp = run_cm(extra + [opt, value] + cmd, timeout=30)
    assert_one_error_line(cp, opt, rc=2)
    assert not marker.exists()
    assert not (REPO / "-").exists(), "a file named '-' was created"


def test_text_map_write_errors_fail_the_run(tmp_path):
    """The text map to a full stderr, `report` and `diff` to a full stdout:
    exit 1, and (where stderr still works) one error line."""
    with open("/dev/full", "w") as full:
        cp = subprocess.run([contactmap_bin(), "--", "true"], stdout=subprocess.DEVNULL,
                            stderr=full, timeout=60)
    assert cp.returncode == 1, "the text map was lost but contactmap exited 0"
    for args in (["report", SAMPLE], ["report", "-t", SAMPLE], ["diff", SAMPLE, SAMPLE]):
        with open("/dev/full", "w") as full:
            cp = subprocess.run([contactmap_bin()] + [str(a) for a in args], stdout=full,
                                stderr=subprocess.PIPE, text=True, timeout=60)
        assert_one_error_line(cp, "No space left", rc=1)


# ---------------------------------------------------------------------------
# signals

def signal_state(status_text):
    return {k: v for k, v in re.findall(r"^(SigBlk|SigIgn):\s*(\S+)$", status_text, re.M)}


def _odd_signals():
    """A caller's state no default resembles: SIGUSR1 and SIGINT ignored (as
    nohup and `&` leave them), SIGUSR2 and SIGWINCH blocked, SIGPIPE default."""
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2, signal.SIGWINCH})


def test_command_gets_the_signal_state_contactmap_was_given(tmp_path):
    """Ground truth: the same command started directly by the same parent.
    contactmap itself ignores SIGPIPE and blocks INT/TERM/HUP: none of that
    may reach the command."""
    cmd = ["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]
    direct = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=_odd_signals)
    wrapped = subprocess.run([contactmap_bin(), "--text", str(tmp_path / "t"), "--"] + cmd,
                             capture_output=True, text=True, preexec_fn=_odd_signals, timeout=60)
    assert wrapped.returncode == 0, wrapped.stderr
    want = signal_state(direct.stdout)
    assert int(want["SigIgn"], 16) & (1 << (signal.SIGUSR1 - 1)), want   # the setup took
    assert signal_state(wrapped.stdout) == want
    # and from this process as it is: the same as started directly
    plain = run_cm(["--text", tmp_path / "t2", "--"] + cmd)
    direct = subprocess.run(cmd, capture_output=True, text=True)
    assert signal_state(plain.stdout) == signal_state(direct.stdout), plain.stdout


def test_command_dies_of_sigpipe_like_without_contactmap(tmp_path):
    """`contactmap -- yes | head -1`: yes must end by SIGPIPE (141), not
    print "Broken pipe" and exit 1 as with an inherited ignored SIGPIPE."""
    cm = subprocess.Popen([contactmap_bin(), "--text", str(tmp_path / "t.txt"), "--", "yes"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert cm.stdout.readline() == b"y\n"
    cm.stdout.close()
    err = cm.stderr.read()
    assert cm.wait(timeout=60) == 128 + signal.SIGPIPE, err
    assert err == b"", f"stderr {err!r}"
    assert "killed by signal 13" in (tmp_path / "t.txt").read_text()


def test_inherited_ignored_sigchld_does_not_lose_the_exit_status(tmp_path):
    cp = subprocess.run([contactmap_bin(), "--text", str(tmp_path / "t"), "--", "sh", "-c",
                         "exit 3"], capture_output=True, text=True, timeout=60,
                        preexec_fn=lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN))
    assert cp.returncode == 3, cp.stderr


def test_first_signal_is_passed_on_and_its_exit_traced(tmp_path):
    """A SIGINT to contactmap goes to the command; the command's death by it
    is in the report, and contactmap exits as the command did (130)."""
    out = tmp_path / "r.json"
    cm = subprocess.Popen([contactmap_bin(), "-o", str(out), "--text", str(tmp_path / "t"), "--",
                           workload("sleeper"), "100", "100000"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    cm.send_signal(signal.SIGINT)
    _, err = cm.communicate(timeout=SIGNAL_EXIT_S)
    assert cm.returncode == 128 + signal.SIGINT, err
    rep = json.loads(out.read_text())
    assert rep["exit"] == {"signal": signal.SIGINT, "status": 128 + signal.SIGINT}
    p = find_proc(rep, comm="sleeper")
    assert p["end_ns"] > 0 and p["exit_code"] & 0x7f == signal.SIGINT, p
    assert_no_problems(ledger_problems(rep), "ledger after a passed-on SIGINT")


def children_named(pid, comm):
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [k for k in kids if Path(f"/proc/{k}/comm").read_text().strip() == comm]
    except OSError:
        return []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_second_signal_stops_and_leaves_the_command(tmp_path, sig):
    """The command ignores SIGINT and SIGTERM. The first signal is passed on
    and tracing goes on; the second stops tracing, writes the report and
    exits 128+signal, leaving the command running and saying so in one line."""
    out, errf = tmp_path / "r.json", tmp_path / "stderr"
    # files, not pipes: the command left running keeps what it inherited open
    with open(errf, "w") as e:
        cm = subprocess.Popen([contactmap_bin(), "-o", str(out), "--text", str(tmp_path / "t"), "--",
                               "/bin/sh", "-c", f"trap '' INT TERM; exec {workload('sleeper')} 600 100000"],
                              stdout=subprocess.DEVNULL, stderr=e)
    started(cm.pid)
    # the window is open once the command runs
    assert wait_for(lambda: children_named(cm.pid, "sleeper"), 30), "the command never started"
    time.sleep(0.3)
    cm.send_signal(sig)
    t1 = time.monotonic()
    time.sleep(1.0)
    assert cm.poll() is None, f"contactmap ended at the first signal: {errf.read_text()}"
    cm.send_signal(sig)
    t2 = time.monotonic()
    try:
        cm.wait(timeout=SIGNAL_EXIT_S)
    except subprocess.TimeoutExpired:
        cm.kill()
        pytest.fail(f"contactmap still running {SIGNAL_EXIT_S} s after a second {sig.name}")
    err = errf.read_text()
    rep = json.loads(out.read_text())
    target = started(rep["target"]["pid"])
    try:
        # while the command lives: it holds none of contactmap's programs
        assert_no_bpf_leftovers()
        assert cm.returncode == 128 + sig, err
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("contactmap: warning: ") and \
            f"pid {target}" in lines[0] and "still running" in lines[0], err
        assert os.path.exists(f"/proc/{target}") and \
            "Z" not in Path(f"/proc/{target}/stat").read_text().rsplit(")", 1)[1].split()[0], \
            "the command did not survive"
        assert_no_problems(schema_problems(rep, command_exited=False), "report after two signals")
        assert "exit" not in rep
        # the window covers both signals: tracing went on after the first
        assert rep["window"]["duration_ns"] >= (t2 - t1) * 1e9, rep["window"]
    finally:
        kill_quietly(target)


def test_after_duration_a_signal_reaches_the_command(tmp_path):
    """-d ends the window; contactmap waits for the command, and a signal then
    is passed on (it used to be blocked, so contactmap hung)."""
    cm = subprocess.Popen([contactmap_bin(), "-d", "0.3", "--text", str(tmp_path / "t"), "--",
                           workload("sleeper"), "100", "100000"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: (tmp_path / "t").exists(), 20), "no text map after -d 0.3"
    cm.send_signal(signal.SIGTERM)
    _, err = cm.communicate(timeout=SIGNAL_EXIT_S)
    assert cm.returncode == 128 + signal.SIGTERM and err == "", err


# ---------------------------------------------------------------------------
# attach targets

def _status(d):
    try:
        return (d / "status").read_text()
    except OSError:
        return ""


def test_kernel_thread_refused(tmp_path):
    kthreads = [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit()
                and "\nKthread:\t1" in _status(d)]
    assert kthreads, "no kernel thread found (Kthread: 1) in /proc"
    pid = 2 if 2 in kthreads else kthreads[0]
    assert_one_error_line(run_cm(["-p", pid, "-d", "1"]), "kernel thread", str(pid))


def test_zombie_refused(tmp_path):
    p = subprocess.Popen(["true"])
    try:
        assert wait_for(lambda: "State:\tZ" in Path(f"/proc/{p.pid}/status").read_text(), 10)
        assert_one_error_line(run_cm(["-p", p.pid, "-d", "1"]), "has exited", str(p.pid))
    finally:
        p.wait()


# ---------------------------------------------------------------------------
# options: numbers are parsed strictly

NUMERIC_OPTIONS = {
    # option: (extra options it needs, values it must accept)
    "-d": ([], ["0.001", "10", "0.5", ".5", "10000000"]),
    "-i": (["--jsonl", "/dev/null"], ["0.01", "1", "1000000"]),
    "-F": ([], ["1", "99", "10000"]),
    "--min-block": ([], ["0", "200", "3600000000"]),
    "--trace-syscall-min": ([], ["0", "100", "3600000000"]),
    "--trace-rate": ([], ["1", "1000000000"]),
    "--trace-max-mb": ([], ["1", "1048576"]),
    "--max-threads": ([], ["16", "4194304"]),
    "-t": ([], ["1", "20", "1000000"]),
    "-p": ([], []),
}
BAD_ANY = ["", "nan", "NaN", "inf", "-inf", "infinity", "-1", "+1", " 1", "1 ", "0x10", "1e3",
           "1s", "10k", "1,5", "18446744073709551616", "99999999999999999999999"]
BAD_ONE = {
    "-d": ["0", "0.0", "10000000.1", "1e-9"],
    "-i": ["0", "0.001", "1000001"],
    "-F": ["0", "10001", "1.5"],
    "--min-block": ["3600000001", "18446744073709551615", "1.5"],
    "--trace-syscall-min": ["3600000001", "18446744073709551615", "0.5"],
    "--trace-rate": ["0", "1000000001", "1.5"],
    "--trace-max-mb": ["0", "17592186044417", "1048577", "1.5"],
    "--max-threads": ["15", "4194305", "4294967312", "1.5"],
    "-t": ["0", "1000001", "1.5"],
    "-p": ["0", "4194305", "1,", ",", "1,,2", "12abc"],
}
BAD_CASES = [(o, v) for o in NUMERIC_OPTIONS for v in BAD_ANY + BAD_ONE[o]
             if not (o == "-t" and (v == "" or not v[:1].isdigit())) and not (o == "-p" and v == "1,5")]
# (-t's number is optional: only a word starting with a digit is taken as
# one; "1,5" is a fine pid list)


@pytest.mark.parametrize("opt,value", BAD_CASES, ids=[f"{o}={v!r}" for o, v in BAD_CASES])
def test_bad_number_refused(tmp_path, opt, value):
    extra = NUMERIC_OPTIONS[opt][0]
    marker, cmd = marker_cmd(tmp_path)
    cp = run_cm(extra + [opt, value] + cmd, timeout=30)
    line = assert_one_error_line(cp, rc=2)
    assert f"bad {opt} '{value}'" in line, f"the error line should name {opt} and {value!r}: {line!r}"
    assert not marker.exists()


GOOD_CASES = [(o, v) for o, (_, vals) in NUMERIC_OPTIONS.items() for v in vals]


@pytest.mark.parametrize("opt,value", GOOD_CASES, ids=[f"{o}={v}" for o, v in GOOD_CASES])
def test_good_number_accepted(opt, value):
    """Values at the edges of each range parse: the run gets as far as the
    (absent) target. pid_max is at most 2^22, so no process has pid 2^22."""
    cp = run_cm(NUMERIC_OPTIONS[opt][0] + [opt, value, "-p", "4194304"], timeout=30)
    assert_one_error_line(cp, "no such process: 4194304", rc=1)


# ---------------------------------------------------------------------------
# hostile inputs to `report`

def limited(args, as_bytes=REPORT_AS_LIMIT, **kw):
    return subprocess.run(["prlimit", f"--as={as_bytes}", contactmap_bin()] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=60, **kw)


def test_report_of_dev_zero_fails_fast_in_bounded_memory():
    t0 = time.monotonic()
    cp = limited(["report", "/dev/zero"])
    assert time.monotonic() - t0 < FAIL_FAST_S
    assert_one_error_line(cp, "/dev/zero", "not JSON", rc=1)


def test_report_of_a_huge_file_is_refused_by_its_size(tmp_path):
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(300 << 20)                   # sparse: costs no disk
    t0 = time.monotonic()
    cp = limited(["report", big])
    assert time.monotonic() - t0 < FAIL_FAST_S
    assert_one_error_line(cp, "300 MiB", "256 MiB", rc=1)


def test_report_of_an_endless_stream_stops_at_the_cap():
    """300 MiB of valid whitespace on stdin, under a 64 MiB address-space
    limit: the read is capped (and does not hold what it read)."""
    feeder = subprocess.Popen(["sh", "-c", "head -c 314572800 /dev/zero | tr '\\0' ' '"],
                              stdout=subprocess.PIPE)
    try:
        cp = limited(["report", "-"], stdin=feeder.stdout)
    finally:
        feeder.stdout.close()
        feeder.kill()
        feeder.wait()
    assert_one_error_line(cp, "larger than 256 MiB", rc=1)


def test_deep_nesting_is_an_error(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text('{"schema": "contactmap/1", "x": ' + "[" * 100000 + "]" * 100000 + "}")
    assert_one_error_line(run_cm(["report", deep]), "nesting too deep", rc=1)


def test_address_space_limit_names_the_real_cause(tmp_path):
    """Under ulimit -v 10000 libbpf fails to allocate and says ESRCH ("No
    such process"); the one error line must say the memory ran out."""
    cp = subprocess.run(["bash", "-c", f"ulimit -v 10000; exec {contactmap_bin()} "
                         f"--text {tmp_path / 't'} -- true"],
                        capture_output=True, text=True, timeout=60)
    line = assert_one_error_line(cp, "Cannot allocate memory", "ulimit -v", rc=1)
    assert "No such process" not in line


# ---------------------------------------------------------------------------
# output streams

@pytest.fixture
def sleeping_target():
    p = subprocess.Popen([workload("sleeper"), "100", "100000"], stdout=subprocess.DEVNULL)
    time.sleep(0.2)
    yield p.pid
    p.kill()
    p.wait()


def test_attach_text_goes_to_stderr_and_json_to_stdout(sleeping_target):
    cp = run_cm(["-p", sleeping_target, "-d", "0.5", "-o", "-"])
    assert cp.returncode == 0, cp.stderr
    rep = json.loads(cp.stdout)                     # stdout: the report and nothing else
    assert rep["target"]["pids"] == [sleeping_target]
    assert "OS contact map" in cp.stderr and "OS contact map" not in cp.stdout


def test_attach_interval_lines_on_stdout_all_parse(tmp_path, sleeping_target):
    """`-i ... --jsonl -` piped into a JSON-per-line reader: every line
    parses; the text map is on stderr."""
    out = tmp_path / "r.json"
    cm = subprocess.Popen([contactmap_bin(), "-p", str(sleeping_target), "-d", "1.2", "-i", "0.3",
                           "--jsonl", "-", "-o", str(out)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    reader = subprocess.run(["python3", "-c", "import json, sys\n"
                             "n = 0\nfor line in sys.stdin:\n    json.loads(line); n += 1\n"
                             "print(n)"], stdin=cm.stdout, capture_output=True, text=True,
                            timeout=60)
    cm.stdout.close()
    err = cm.stderr.read().decode()
    assert cm.wait(timeout=60) == 0, err
    assert reader.returncode == 0, reader.stderr
    assert int(reader.stdout) >= 4, reader.stdout      # 1.2 s in 0.3 s intervals, and the last
    assert "OS contact map" in err
    assert json.loads(out.read_text())["target"]["mode"] == "attach"


def test_interval_needs_jsonl_in_both_modes(sleeping_target):
    for args in (["-i", "1", "--", "true"], ["-i", "1", "-p", sleeping_target]):
        assert_one_error_line(run_cm(args), "--jsonl", rc=2)


# ---------------------------------------------------------------------------
# -t: many threads

N_THREADS = 40


@pytest.fixture(scope="module")
def threads_report(tmp_path_factory):
    """A real run of N_THREADS threads of one name (the process's own)."""
    d = tmp_path_factory.mktemp("threads")
    cp = run_cm(["-o", d / "r.json", "--text", d / "t.txt", "--", workload("threads"), N_THREADS,
                 20000])
    assert cp.returncode == 0, cp.stderr
    rep = json.loads((d / "r.json").read_text())
    return d, rep, find_proc(rep, comm="threads")


def thread_rows(text):
    """(id, comm) of the thread table rows of a text map, in order."""
    return [(m.group(1), m.group(2)) for m in
            re.finditer(r"^\s+(\d+|\u00d7\d+) (\S+)\s+\d", text.split("      tid comm", 1)[1], re.M)] \
        if "      tid comm" in text else []


def test_threads_of_one_name_are_grouped_and_capped(threads_report):
    d, rep, p = threads_report
    assert len(p["threads"]) == N_THREADS + 1
    cp = run_cm(["report", "-t", d / "r.json"])
    assert cp.returncode == 0, cp.stderr
    rows = thread_rows(cp.stdout)
    # 41 threads of one name do not fit 20 rows: one row adds them up
    assert rows == [(f"\u00d7{N_THREADS + 1}", "threads")], cp.stdout
    assert f"-t {N_THREADS + 1} for a row each" in cp.stdout
    # with room for all: one row each, longest wall time first
    cp = run_cm(["report", "-t", N_THREADS + 1, d / "r.json"])
    rows = thread_rows(cp.stdout)
    by_wall = sorted(p["threads"], key=lambda t: (-t["ledger"]["wall_ns"], t["tid"]))
    assert [int(r[0]) for r in rows] == [t["tid"] for t in by_wall], cp.stdout
    # a cap below the groups: the rest is summed in one line
    cp = run_cm(["report", "--threads=5", d / "r.json"])
    assert len(thread_rows(cp.stdout)) == 1


def test_threads_folded_by_the_collector_join_their_name(threads_report, tmp_path):
    """threads_folded rows (exited threads folded by name) add into their
    name's row: folding 30 threads in the report, or grouping them in the
    text, gives the same row."""
    d, rep, p = threads_report
    grouped = run_cm(["report", "-t", d / "r.json"]).stdout
    folded_rep = copy.deepcopy(rep)
    fp = find_proc(folded_rep, comm="threads")
    moved, fp["threads"] = fp["threads"][:30], fp["threads"][30:]
    led = {k: sum(t["ledger"][k] for t in moved) for k in ("wall_ns", "oncpu_ns", "runq_ns", "offcpu_ns")}
    causes = {}
    for t in moved:
        for c, v in t["ledger"]["offcpu_by_cause"].items():
            causes[c] = causes.get(c, 0) + v
    led["offcpu_by_cause"] = causes
    fp["threads_folded"] = [{"comm": "threads", "count": 30, "ledger": led}]
    (tmp_path / "f.json").write_text(json.dumps(folded_rep))
    folded = run_cm(["report", "-t", tmp_path / "f.json"]).stdout

    def table(text):
        return text.split("      tid comm", 1)[1].split("\n\n", 1)[0].splitlines()[1]

    assert table(folded) == table(grouped), (grouped, folded)
    # the process header counts the folded threads too
    assert re.search(rf"^pid {p['pid']} threads .*\b{N_THREADS + 1} threads$", folded, re.M), folded
    assert "30 exited threads were folded by name" in folded


# ---------------------------------------------------------------------------
# diff: nothing cut

def test_diff_cuts_no_command_and_no_label(tmp_path):
    args = ["if=/dev/zero", "of=" + "/long" * 9 + "/file.bin", "bs=1M", "count=4",
            "iflag=direct", "oflag=direct,sync", "status=progress"]
    a = tmp_path / "a.json"
    # two processes (the shell and its child), so the per-process rows show
    cp = run_cm(["-o", a, "--text", tmp_path / "t", "--", "/bin/sh", "-c", "/bin/true; exit 0",
                 "sh"] + args)
    assert cp.returncode == 0, cp.stderr
    rep = json.loads(a.read_text())
    for p in rep["processes"]:
        p["comm"] = "a-process-name-longer-than-any-column"
    b = tmp_path / "b.json"
    rep2 = copy.deepcopy(rep)
    cause = "syscall:" + "a_cause_with_a_really_long_name_" * 2
    for p in rep2["processes"]:
        p["ledger"]["offcpu_by_cause"][cause] = 123456789
    rep2["totals"]["offcpu_by_cause"][cause] = 123456789
    b.write_text(json.dumps(rep2))
    a.write_text(json.dumps(rep))
    cp = run_cm(["diff", a, b])
    assert cp.returncode == 0, cp.stderr
    words = " ".join(cp.stdout.split())            # wrapped lines joined again
    assert " ".join(args) in words, cp.stdout
    assert f"off-CPU {cause}" in words, cp.stdout
    assert re.search(r"a-process-name-longer-than-any-column\[\d+\] off-CPU " + cause, words), cp.stdout
    assert not re.search(r"\.\.( |$)", cp.stdout, re.M), cp.stdout
    assert max(len(l) for l in cp.stdout.splitlines()) <= 80


# ---------------------------------------------------------------------------
# fuzz: report and diff over mutated reports

def asan_bin():
    return built(OUTPUT / "tests" / "contactmap-asan", "contactmap-asan")


def _paths(node, path=()):
    yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node[:8]):      # the first few elements are enough
            yield from _paths(v, path + (i,))


def _set(doc, path, value):
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value


def _delete(doc, path):
    node = doc
    for k in path[:-1]:
        node = node[k]
    del node[path[-1]]


ODD_VALUES = [None, True, False, -1, -(2 ** 63), 2 ** 63 - 1, 2 ** 64 - 1, 2 ** 64 + 5, 10 ** 30,
              1e308, -1e308, 0.5, "", "x" * 5000, "\u0000\u001b[31m\r\n", "\ud800", [], {},
              [[[[[[]]]]]], {"a": {"b": {"c": {}}}}, [1, "two", None, 3.5], "NaN"]


def mutations(base, n, seed):
    """n mutated texts of the report `base`, each with what was done."""
    rng = random.Random(seed)
    paths = [p for p in _paths(base) if p]
    out = []
    for i in range(n):
        kind = rng.choice(["type", "type", "type", "delete", "truncate", "nest", "raw", "grow",
                           "folded"])
        doc = copy.deepcopy(base)
        path = rng.choice(paths)
        if kind == "type":
            _set(doc, path, copy.deepcopy(rng.choice(ODD_VALUES)))
        elif kind == "delete" and path != ("schema",):
            _delete(doc, path)
        elif kind == "nest":
            depth = rng.choice([20, 31, 40, 1000])
            _set(doc, path, json.loads("[" * depth + "]" * depth) if depth < 900 else [])
            if depth >= 900:                 # deeper than json loads: as text
                text = json.dumps(doc).replace("[]", "[" * depth + "]" * depth, 1)
                out.append((f"{kind} {depth} at {path}", text.encode()))
                continue
        elif kind == "grow":
            node = doc
            for k in path[:-1]:
                node = node[k]
            v = node[path[-1]]
            if isinstance(v, list) and v:
                node[path[-1]] = v * rng.choice([50, 500])
        elif kind == "folded":
            for p in doc.get("processes", []):
                p["threads_folded"] = [
                    {"comm": rng.choice(["python3", "x" * 300, "", 7, None]),
                     "count": rng.choice([0, 1, -3, 2 ** 64, 1e300, "9", None, 2000]),
                     "ledger": rng.choice([p.get("ledger"), None, [], {"wall_ns": 2 ** 64}])}
                    for _ in range(rng.randint(1, 4))]
        text = json.dumps(doc, allow_nan=True).encode()
        if kind == "truncate":
            text = text[:rng.randrange(len(text))]
        elif kind == "raw":
            pos = rng.randrange(len(text))
            text = text[:pos] + rng.choice([b"NaN", b"-Infinity", b"\xff\xfe", b"1e99999", b"\x00",
                                            b"99999999999999999999999999", b'"\\u0000"', b"}"]) \
                + text[pos:]
        out.append((f"{kind} at {path}", text))
    return out


def run_fuzz_case(binary, args, env):
    try:
        p = subprocess.run([binary] + args, capture_output=True, timeout=FUZZ_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        return "hung (timeout)"
    err = p.stderr.decode("utf-8", "replace")
    if p.returncode < 0:
        return f"killed by signal {-p.returncode}: {err[-2000:]}"
    if "Sanitizer" in err or "runtime error:" in err:
        return f"sanitizer report: {err[-3000:]}"
    if p.returncode not in (0, 1, 2):
        return f"exit status {p.returncode}: {err[-2000:]}"
    lines = err.splitlines()
    errors = [l for l in lines if l.startswith("contactmap: error: ")]
    others = [l for l in lines if not l.startswith(("contactmap: error: ", "contactmap: warning: "))]
    if others:
        return f"stderr lines that are not contactmap messages: {others[:5]}"
    if p.returncode == 0 and errors:
        return f"exit 0 with an error line: {errors}"
    if p.returncode != 0 and len(errors) != 1:
        return f"exit {p.returncode} with {len(errors)} error lines: {err[-2000:]}"
    try:
        p.stdout.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"stdout is not UTF-8: {e}"
    return None


def test_fuzz_report_and_diff(tmp_path):
    """FUZZ_CASES mutations of a real report (wrong types, deletions,
    truncation, deep nesting, huge numbers, raw bytes, grown arrays, odd
    threads_folded rows), seeded; `report -t` and `diff` of each against the
    original, under ASan and UBSan: no crash, no hang, no sanitizer report,
    and an exit of 0, or 1/2 with one error line."""
    binary = asan_bin()
    base_path = tmp_path / "base.json"
    cp = run_cm(["-o", base_path, "--text", tmp_path / "t", "-f", tmp_path / "f", "--",
                 workload("threads"), 4, 2000])
    assert cp.returncode == 0, cp.stderr
    bases = [json.loads(base_path.read_text()), json.loads(SAMPLE.read_text())]
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=86",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=87")
    cases = []
    for k, base in enumerate(bases):
        for i, (what, text) in enumerate(mutations(base, FUZZ_CASES // len(bases), FUZZ_SEED + k)):
            f = tmp_path / f"m{k}-{i}.json"
            f.write_bytes(text)
            orig = base_path if k == 0 else SAMPLE
            cases.append((what, f, ["report", "-t", str(f)]))
            cases.append((what, f, ["diff", str(orig), str(f)]))
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda c: (c, run_fuzz_case(binary, c[2], env)), cases))
    failures = [f"{c[2][0]} of {c[1].name} ({c[0]}): {r}" for c, r in results if r]
    assert not failures, f"{len(failures)} of {len(cases)} fuzz cases failed:\n" + \
        "\n".join(failures[:15])
