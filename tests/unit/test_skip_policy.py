"""tests/conftest.py turns a skipped [podvisor...] parameter into a failure (the reference half of a
comparison passing alone proves nothing), unless every parameter is skipped alike, the test is
marked allow_podvisor_skip, or PODVISOR_ALLOW_SKIPS=1. Checked on a throwaway test file."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROBE = '''
import pytest

@pytest.fixture(params=["conmon", "podvisor"])
def kind(request):
    return request.param

def test_half(kind):
    if kind == "podvisor":
        pytest.skip("the monitor is missing")

@pytest.mark.skipif(True, reason="every monitor alike")
def test_all(kind):
    pass

@pytest.mark.allow_podvisor_skip("on purpose")
def test_allowed(kind):
    if kind == "podvisor":
        pytest.skip("allowed")
'''


def _run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_probe.py").write_text(PROBE)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfs", "-p", "no:cacheprovider",
                           "-p", "tests.conftest", "--rootdir", str(tmp_path), str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PODVISOR_ALLOW_SKIPS": "", **env})


def test_a_skipped_podvisor_parameter_fails(tmp_path: Path) -> None:
    res = _run(tmp_path)
    assert res.returncode == 1, res.stdout
    assert "FAILED" in res.stdout and "test_half[podvisor]" in res.stdout, res.stdout
    assert "the podvisor half of the suite must run" in res.stdout
    assert "1 failed, 2 passed, 3 skipped" in res.stdout, res.stdout


def test_skips_can_be_allowed_on_purpose(tmp_path: Path) -> None:
    res = _run(tmp_path, PODVISOR_ALLOW_SKIPS="1")
    assert res.returncode == 0, res.stdout
    assert "2 passed, 4 skipped" in res.stdout, res.stdout
