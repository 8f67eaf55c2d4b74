"""Runs the C unit tests (tests/unit/test_*.c, built by `make test-bins` into
.output/tests/) and checks each one's closing "N passed, M failed" line, so a
test binary that dies early or runs no checks fails here too."""
import pathlib
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NAMES = sorted(p.stem for p in (ROOT / "tests" / "unit").glob("test_*.c"))


def test_all_unit_tests_present():
    assert {"test_hist", "test_syscalls", "test_json", "test_fmt", "test_sym"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_unit_binary(name):
    binary = ROOT / ".output" / "tests" / name
    if not binary.exists():
        pytest.fail(f"{binary} missing: run `make test-bins` first")
    proc = subprocess.run([str(binary)], cwd=ROOT, capture_output=True,
                          text=True, errors="replace", timeout=120)
    lines = proc.stdout.strip().splitlines()
    failures = "\n".join(l for l in lines if l.startswith("FAIL"))
    detail = f"{failures}\n--- stderr ---\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{detail}"
    m = re.fullmatch(r"(\d+) passed, (\d+) failed", lines[-1] if lines else "")
    assert m, f"{name}: no closing summary line\n{detail}"
    assert int(m.group(2)) == 0 and int(m.group(1)) > 0, f"{name}: {lines[-1]}\n{detail}"
