"""The management subcommands' command line, and their error when systemd is not PID 1 (as on
this test machine: the real-systemd tests are in tests/systemd/test_cli_manage.py)."""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pytest

from supervisor import systemd as bus
from supervisor.manage import command

REPO = Path(__file__).resolve().parents[2]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="podvisor")
    command.register(parser.add_subparsers(dest="command_name", required=True))
    return parser


def test_arguments() -> None:
    p = _parser()
    a = p.parse_args(["list", "--json"])
    assert a.json and a.pods == [] and a.cpu_interval == 0.25
    a = p.parse_args(["logs", "blog", "web", "proxy", "-f", "--since", "10m", "-n", "5"])
    assert (a.pod, a.containers, a.follow, a.tail) == ("blog", ["web", "proxy"], True, 5)
    assert a.since == pytest.approx(time.time() - 600, abs=60)  # checked and read while parsing
    a = p.parse_args(["logs", "blog"])
    assert (a.containers, a.since) == ([], None)
    a = p.parse_args(["top", "blog", "-d", "0.5", "-n", "3"])
    assert (a.delay, a.iterations) == (0.5, 3)
    for verb in ("start", "stop", "restart"):
        a = p.parse_args([verb, "blog", "--timeout", "30"])
        assert a.pod == "blog" and a.timeout == 30.0 and callable(a.handler)


@pytest.mark.parametrize("argv", [["top", "blog", "-d", "0"], ["logs", "blog", "-n", "-1"], ["status"],
                                  ["start", "blog", "--timeout", "x"]])
def test_bad_arguments_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(argv)
    assert e.value.code == 2


def test_connect_refuses_without_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bus, "booted", lambda: False)
    with pytest.raises(bus.SystemdError, match="systemd is not running as PID 1"):
        bus.Systemd.connect()


@pytest.mark.skipif(Path(bus.BOOTED_MARKER).is_dir(), reason="this machine runs systemd")
@pytest.mark.parametrize("argv", [["ps"], ["status", "blog"], ["logs", "blog"], ["start", "blog"]])
def test_clear_error_when_systemd_is_not_pid1(argv: list[str]) -> None:
    res = subprocess.run([sys.executable, "-m", "supervisor.manage.command", *argv], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert res.stderr.startswith("podvisor: error: systemd is not running as PID 1"), res.stderr
    assert "Traceback" not in res.stderr


def test_podvisor_cli_lists_the_subcommands() -> None:
    """Whole names, from the parser itself (a substring check passed "top" via "stop")."""
    import argparse

    from supervisor import cli

    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    names = set(action.choices)
    assert {"ps", "list", "status", "logs", "top", "start", "stop", "restart", "reload", "generate", "install",
            "uninstall", "install-generator", "ready-probe", "sandbox"} == names
    listed = {line.split()[0] for line in parser.format_help().splitlines() if line.startswith("    ")
              and not line.startswith("     ")}
    assert listed == names - {"list"}  # the help lists each once ("ps (list)")
