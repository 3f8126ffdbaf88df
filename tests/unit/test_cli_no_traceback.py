"""The rule: no traceback ever reaches a user of `podvisor`. Bad input is a usage error (exit 2)
or `podvisor: error: ...` (exit 1); a bug of ours is `podvisor: error: internal error: ...`
(exit 70), with the traceback only when asked for with -v."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from supervisor import cli

REPO = Path(__file__).resolve().parents[2]

BAD_INPUT = [
    ["logs", "p", "--since", "@nan"], ["logs", "p", "--since", "@inf"],
    ["logs", "p", "--since", "@1e400"], ["logs", "p", "--since", "@-inf"],
    ["logs", "p", "--since", ""], ["logs", "p", "--since", "1e999 weeks"],
    ["logs", "p", "--since", "0001-01-01"], ["logs", "p", "-n", "1" * 5000],
    ["logs"], ["status"], ["status", "p", "-n", "-3"],
    ["top", "p", "-d", "nan"], ["top", "p", "-d", "inf"], ["top", "p", "-d", "-1"],
    ["ps", "--cpu-interval", "nan"], ["ps", "--cpu-interval", "-inf"],
    ["start", "p", "--timeout", "nan"], ["stop", "p", "--timeout", "1e400"],
    ["generate", "/nonexistent/pod.yaml"], ["bogus"], [],
]


@pytest.mark.parametrize("argv", BAD_INPUT, ids=lambda a: " ".join(a)[:40] or "(none)")
def test_bad_input_is_a_clear_error(argv: list[str]) -> None:
    res = subprocess.run([sys.executable, "-m", "supervisor.cli", *argv], cwd=REPO,
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert res.returncode in (1, 2), res.stderr
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("podvisor"), res.stderr  # "podvisor: error: …" / "podvisor logs: error: …"
    assert ": error: " in last


def test_logs_usage_says_container_is_optional() -> None:
    res = subprocess.run([sys.executable, "-m", "supervisor.cli", "logs"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "the following arguments are required: POD\n" in res.stderr, res.stderr
    assert "[CONTAINER ...]" in res.stderr


@pytest.mark.parametrize("verbose", [False, True])
def test_a_bug_is_reported_without_traceback(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str], verbose: bool) -> None:
    from supervisor.manage import command

    bug: dict[str, int] = {}
    monkeypatch.setattr(command, "_ps", lambda args: bug["missing"])  # `ps` now has a bug
    rc = cli.main([*(["-v"] if verbose else []), "ps"])
    err = capsys.readouterr().err
    assert rc == cli.EXIT_INTERNAL
    assert err.strip().splitlines()[-1].startswith("podvisor: error: internal error: KeyError")
    assert ("Traceback" in err) == verbose
