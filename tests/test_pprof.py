"""--pprof: the folded file's stacks as a gzipped profile.proto, read back by
`go tool pprof` (Debian's golang-go), the reader every pprof store follows.

One run of tests/workloads/stackwl.c (known on-CPU chains, sleeps, a mutex
wait, two processes) writes both files; each pprof sample must map onto a
folded line, and the weights must agree exactly: on-CPU, samples x period;
off-CPU, the folded file's microseconds are each sample's nanoseconds rounded.
"""
import collections
import gzip
import re
import shutil
import subprocess

import pytest

from conftest import WORKLOADS, find_proc, run_cm, skip_loudly, wrap_run

pytestmark = pytest.mark.usefixtures("need_root")

HZ = 99
PERIOD_NS = (10**9 + HZ // 2) // HZ

SAMPLE = re.compile(r"^\s*(\d+)\s+(\d+): ([\d ]+?)\s*$")
LOCATION = re.compile(r"^\s*(\d+): 0x[0-9a-f]+ M=\d+ (.*) :\d+ s=\d+$")
LABEL = re.compile(r"(\w+):\[([^\]]*)\]")


def go_pprof(request, *args):
    if not shutil.which("go"):
        skip_loudly(request, "NOT RUN: `go tool pprof` needs Debian's golang-go "
                             "(scripts/setup-debian.sh installs it)")
    cp = subprocess.run(["go", "tool", "pprof", *args], capture_output=True, text=True,
                        timeout=120)
    assert cp.returncode == 0, f"go tool pprof {args} failed: {cp.stderr}"
    return cp.stdout


def parse_raw(text):
    """-raw output: (header lines, samples [(cpu, off, [loc ids leaf first], labels)],
    {loc id: name})."""
    lines = text.splitlines()
    i = lines.index("Samples:")
    header, samples, locs = lines[:i], [], {}
    assert lines[i + 1].split() == ["cpu/nanoseconds[dflt]", "off_cpu/nanoseconds"], lines[i + 1]
    j = i + 2
    while j < len(lines) and lines[j] != "Locations":
        m = SAMPLE.match(lines[j])
        assert m, f"unexpected -raw sample line: {lines[j]!r}"
        labels = {}
        j += 1
        while j < len(lines) and lines[j] != "Locations" and not SAMPLE.match(lines[j]):
            labels.update(LABEL.findall(lines[j]))
            j += 1
        samples.append((int(m[1]), int(m[2]), [int(x) for x in m[3].split()], labels))
    for line in lines[j + 1:]:
        if line == "Mappings":
            break
        m = LOCATION.match(line)
        assert m, f"unexpected -raw location line: {line!r}"
        locs[int(m[1])] = m[2]
    return header, samples, locs


def read_folded(path):
    out = {}
    for line in path.read_text().splitlines():
        frames, w = line.rsplit(" ", 1)
        out[frames] = int(w)
    return out


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    d = tmp_path_factory.mktemp("pprof")
    lib = str(WORKLOADS / "libstackwl.so")
    folded, prof = d / "s.folded", d / "s.pb.gz"
    r = wrap_run(d / "r.json", "stackwl", lib, extra=["-f", folded, "--pprof", prof])
    assert r.rc == 0, r.describe()
    return r, read_folded(folded), prof


def test_pprof_is_gzipped_profile(profiled):
    _, _, prof = profiled
    with open(prof, "rb") as f:
        assert f.read(2) == b"\x1f\x8b", "not gzip"
    assert len(gzip.decompress(prof.read_bytes())) > 0


def test_pprof_samples_are_the_folded_lines(request, profiled):
    r, folded, prof = profiled
    header, samples, locs = parse_raw(go_pprof(request, "-raw", str(prof)))
    assert f"Period: {PERIOD_NS}" in header, header
    assert "PeriodType: cpu nanoseconds" in header, header
    assert samples, "no samples in the profile"
    pids = {p["pid"]: {t["tid"] for t in p["threads"]} for p in r.report["processes"]}

    # each sample, as the folded file would print it: comm;root...;leaf
    from_pprof, off_ns = collections.defaultdict(int), collections.defaultdict(int)
    for cpu, off, ids, labels in samples:
        assert (cpu > 0) != (off > 0), f"a sample is on-CPU or off-CPU, not both: {cpu} {off}"
        pid, tid = int(labels["pid"]), int(labels["tid"])
        assert pid in pids and tid in pids[pid], f"pid {pid} tid {tid} not in the report"
        frames = [locs[i] for i in reversed(ids)]
        comm = re.sub(r"[; ]", "_", labels["comm"])
        key = ";".join([comm] + frames)
        if off:
            assert frames[-1] == f"[off-cpu:{labels['cause']}]", (frames[-1], labels)
            off_ns[key] += off
        else:
            assert "cause" not in labels, labels
            assert cpu % PERIOD_NS == 0, cpu
            from_pprof[key] += cpu // PERIOD_NS
    for key, ns in off_ns.items():
        if (ns + 500) // 1000:          # the folded file's microseconds, rounded per line
            from_pprof[key] += (ns + 500) // 1000
    assert dict(from_pprof) == folded, (
        f"only in pprof: {sorted(set(from_pprof) - set(folded))[:5]}; "
        f"only in folded: {sorted(set(folded) - set(from_pprof))[:5]}; differing: "
        f"{[(k, from_pprof[k], folded[k]) for k in folded if from_pprof.get(k) != folded[k]][:5]}")

    # the known chain is there, under the workload's own process
    spin = [k for k in folded if "outer_a;middle_b;spin_c" in k and "[off-cpu:" not in k]
    assert spin, f"no outer_a;middle_b;spin_c chain in {list(folded)[:10]}"


def folded_flat(folded, offcpu):
    """Flat weight per leaf function of the folded file, on- or off-CPU."""
    flat = collections.defaultdict(int)
    for k, w in folded.items():
        leaf = k.split(";")[-1]
        if leaf.startswith("[off-cpu:") == offcpu:
            flat[leaf] += w
    return flat


TOP_ROW = re.compile(r"^\s*(\d+)ns\s+[\d.]+%\s+[\d.]+%\s+(\d+)ns\s+[\d.]+%\s+(.+)$")


def test_pprof_top_matches_folded(request, profiled):
    """`go tool pprof -top`: the total and each function's flat time are the
    folded file's (on-CPU samples x period), and the top function is the
    folded file's heaviest leaf."""
    _, folded, prof = profiled
    flat = folded_flat(folded, offcpu=False)
    out = go_pprof(request, "-top", "-unit=ns", "-nodecount=1000", "-nodefraction=0", "-sample_index=cpu", str(prof))
    total = sum(flat.values()) * PERIOD_NS
    assert f"Total samples = {total}ns" in out, out[:600]
    rows = {m[3]: int(m[1]) for m in map(TOP_ROW.match, out.splitlines()) if m}
    assert rows, out[:600]
    for name, f in rows.items():
        assert f == flat.get(name, 0) * PERIOD_NS, (name, f, flat.get(name))
    best = max(flat.values())
    top = next(m[3] for m in map(TOP_ROW.match, out.splitlines()) if m)
    assert flat[top] == best, f"pprof's top {top} ({flat[top]}) is not the folded heaviest ({best})"

    offflat = folded_flat(folded, offcpu=True)
    out = go_pprof(request, "-top", "-unit=ns", "-nodecount=1000", "-nodefraction=0",
                   "-sample_index=off_cpu", str(prof))
    rows = {m[3]: int(m[1]) for m in map(TOP_ROW.match, out.splitlines()) if m}
    lines = collections.Counter(k.split(";")[-1] for k in folded)
    for cause, us in offflat.items():
        # the folded file rounds each line to microseconds
        assert abs(rows.get(cause, 0) / 1000 - us) <= 0.5 * lines[cause], (cause, rows.get(cause), us)
    assert rows.get("[off-cpu:syscall:clock_nanosleep]", 0) >= 0.19e9, rows


def test_pprof_unwritable_path(tmp_path):
    cp = run_cm(["--pprof", tmp_path / "no" / "such" / "p.pb.gz", "--", "/bin/true"])
    assert cp.returncode != 0
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("contactmap: error: "), cp.stderr
    assert not (tmp_path / "no").exists()
