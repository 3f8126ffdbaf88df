"""Every `podvisor` subcommand's expected failures, through the real command (`python -m
supervisor.cli`): one line `podvisor: error: ...` naming the problem, exit status 1, no traceback,
and nothing half-written. (Usage errors are argparse's, exit 2: test_cli_no_traceback.py. The
management commands' failures without systemd are in test_manage_cli.py, an unknown pod under a
real systemd in tests/systemd/test_cli_manage.py; ready-probe's option errors in test_probes.py.)"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
POD = """apiVersion: v1
kind: Pod
metadata: {name: fails}
spec:
  containers:
  - {name: web, image: localhost/nothing:latest}
"""


def podvisor(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "supervisor.cli", *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


def expected_failure(res: subprocess.CompletedProcess[str], *words: str) -> str:
    assert res.returncode == 1, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("podvisor: error: ") and "internal error" not in last, res.stderr
    for w in words:
        assert w in res.stderr, (w, res.stderr)
    return last


def test_generate_of_a_missing_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    expected_failure(podvisor("generate", str(tmp_path / "nope.yaml"), "-o", str(out)), "nope.yaml", "cannot read")
    assert not out.exists()


def test_generate_into_a_file(tmp_path: Path) -> None:
    (tmp_path / "pod.yaml").write_text(POD)
    (tmp_path / "out").write_text("not a directory")
    expected_failure(podvisor("generate", str(tmp_path / "pod.yaml"), "-o", str(tmp_path / "out"), "--no-verify",
                              "--no-host-checks"),
                     str(tmp_path / "out"), "nothing written")
    assert (tmp_path / "out").read_text() == "not a directory"


def test_generate_when_systemd_analyze_cannot_run(tmp_path: Path) -> None:
    """systemd-analyze there but failing to start (an OSError): VerifyUnavailable, reported."""
    tools = tmp_path / "bin"
    tools.mkdir()
    fake = tools / "systemd-analyze"
    fake.write_text("#!/nonexistent/interpreter\n")
    fake.chmod(0o755)
    (tmp_path / "pod.yaml").write_text(POD)
    out = tmp_path / "out"
    res = podvisor("generate", str(tmp_path / "pod.yaml"), "-o", str(out), "--no-host-checks",
                   env={"PATH": f"{tools}:{os.environ['PATH']}"})
    expected_failure(res, "cannot check the generated units", "systemd-analyze", "--no-verify skips the check")
    assert not out.exists()


def test_generate_with_a_bad_settings_file(tmp_path: Path) -> None:
    (tmp_path / "pod.yaml").write_text(POD)
    (tmp_path / "bad.toml").write_text("podman = [unclosed\n")
    out = tmp_path / "out"
    expected_failure(podvisor("generate", str(tmp_path / "pod.yaml"), "-o", str(out),
                              "--settings", str(tmp_path / "bad.toml")), "bad.toml")
    assert not out.exists()


def test_install_of_a_bad_definition_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "pod.yaml").write_text(POD.replace("name: web", "name: 'no spaces'"))
    units = tmp_path / "units"
    units.mkdir()
    expected_failure(podvisor("install", str(tmp_path / "pod.yaml"), "--unit-dir", str(units), "--no-reload",
                              "--no-verify", "--no-host-checks",
                              "--containers-conf", str(tmp_path / "containers.conf")),
                     "pod.yaml", "'no spaces' is not a valid container name")
    assert list(units.iterdir()) == [] and not (tmp_path / "containers.conf").exists()


def test_uninstall_of_an_unknown_pod(tmp_path: Path) -> None:
    units = tmp_path / "units"
    units.mkdir()
    (units / "pod-other.service").write_text("[Unit]\nDescription=not ours\n")
    last = expected_failure(podvisor("uninstall", "ghost", "--unit-dir", str(units), "--no-reload"))
    assert last == f"podvisor: error: no podvisor pod 'ghost' in {units}"
    assert [p.name for p in units.iterdir()] == ["pod-other.service"]


def test_install_generator_with_a_missing_settings_file(tmp_path: Path) -> None:
    target = tmp_path / "gen" / "podvisor-generator"
    expected_failure(podvisor("install-generator", "--path", str(target), "--settings", str(tmp_path / "no.toml")),
                     "no.toml")
    assert not target.parent.exists()


@pytest.mark.parametrize("action", ["exec", "run"])
def test_sandbox_without_a_command(action: str) -> None:
    last = expected_failure(podvisor("sandbox", action, "--name", "pvt-never-started"))
    assert last == f"podvisor: error: sandbox {action}: no command given"


def test_lab_without_a_checkout(tmp_path: Path) -> None:
    """The lab names what it needs instead of guessing the checkout from its own path."""
    code = "from supervisor.lab import checkout; checkout.root()"
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PODVISOR_CHECKOUT": ""})
    assert res.returncode == 1 and "PODVISOR_CHECKOUT is not set" in res.stderr
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PODVISOR_CHECKOUT": str(tmp_path)})
    assert res.returncode == 1 and "not a podvisor checkout" in res.stderr
