"""scripts/plot.py: charts from a real report (root: it traces one), from the
saved sample report (no root), with --diff, and one-line errors on bad input."""
import json
import shlex
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, ROOT_SKIP_REASON, is_root, run_cm, workload

PLOT = REPO / "scripts" / "plot.py"
SAMPLE = REPO / "tests" / "data" / "sample-report.json"
PYTHON = "/usr/bin/python3"  # Debian's, with python3-matplotlib
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MIN_PNG_BYTES = 1024
CHARTS = ("contact_map", "ledger_threads", "syscall_latency", "runq_latency")


def plot(*args, timeout=120):
    return subprocess.run([PYTHON, str(PLOT)] + [str(a) for a in args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def written(p):
    assert p.returncode == 0, f"plot.py failed: rc={p.returncode}\nstderr={p.stderr[-3000:]}"
    return [Path(l) for l in p.stdout.splitlines() if l.strip()]


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG: {data[:16]!r}"
    assert len(data) > MIN_PNG_BYTES, f"{path} is only {len(data)} bytes"


@pytest.fixture(scope="module")
def real_reports(tmp_path_factory):
    """Two traced runs: threads with sleeps and syscalls, and one process more."""
    if not is_root():
        pytest.skip(ROOT_SKIP_REASON)
    d = tmp_path_factory.mktemp("plot-reports")
    out = []
    for name, script in (
            ("a", f"{shlex.quote(workload('threads'))} 4 2000"),
            ("b", f"{shlex.quote(workload('threads'))} 4 2000 && "
                  f"{shlex.quote(workload('sleeper'))} 5 1000")):
        path = d / f"{name}.json"
        p = run_cm(["-o", path, "--", "/bin/sh", "-c", script])
        assert p.returncode == 0 and path.exists(), p.stderr[-3000:]
        out.append(path)
    return out


@pytest.mark.usefixtures("need_root")
def test_plot_real_report_with_diff(real_reports, tmp_path):
    a, b = real_reports
    out = tmp_path / "charts"
    files = written(plot(a, "--diff", b, "-o", out))
    assert sorted(f.name for f in files) == sorted(f"{c}.png" for c in CHARTS + ("contact_map_diff",))
    for f in files:
        assert f.parent == out
        assert_png(f)


def test_plot_sample_report_formats(tmp_path):
    files = written(plot(SAMPLE, "-o", tmp_path / "x", "--format", "png,svg"))
    assert sorted(f.name for f in files) == sorted(f"{c}.{e}" for c in CHARTS for e in ("png", "svg"))
    for f in files:
        if f.suffix == ".png":
            assert_png(f)
        else:
            text = f.read_text()
            assert "<svg" in text and len(text) > MIN_PNG_BYTES


def test_plot_empty_report(tmp_path):
    """A report with nothing in it still gives every chart (saying so)."""
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"schema": "contactmap/1", "processes": [], "contact_map": []}))
    for f in written(plot(empty, "--diff", SAMPLE, "-o", tmp_path / "o")):
        assert_png(f)


def _bad(tmp):
    notjson = tmp / "notjson.json"
    notjson.write_text("{oops")
    other = tmp / "diff.json"
    other.write_text(json.dumps({"schema": "contactmap-diff/1", "rows": []}))
    nosch = tmp / "nosch.json"
    nosch.write_text("[1, 2]")
    return {
        "missing": [tmp / "nope.json", "-o", tmp / "o"],
        "not JSON": [notjson, "-o", tmp / "o"],
        "not a report": [nosch, "-o", tmp / "o"],
        "other schema": [other, "-o", tmp / "o"],
        "bad --diff file": [SAMPLE, "--diff", notjson, "-o", tmp / "o"],
        "no -o": [SAMPLE],
        "bad format": [SAMPLE, "-o", tmp / "o", "--format", "gif"],
    }


@pytest.mark.parametrize("case", ["missing", "not JSON", "not a report", "other schema",
                                  "bad --diff file", "no -o", "bad format"])
def test_plot_bad_input(tmp_path, case):
    p = plot(*_bad(tmp_path)[case])
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1, p.stderr
    assert len(lines) == 1 and lines[0].startswith("plot.py: error: "), p.stderr
    assert p.stdout == ""
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
