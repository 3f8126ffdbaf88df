"""`podvisor install` writes the fork server's units (podvisor-conmon.socket/.service) for this
install beside a system pod's, never over an operator's own, and `uninstall` removes them with
the last pod. Under systemd: tests/systemd/test_fork_server_under_systemd.py."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from supervisor import forksocket
from supervisor.generator import serverunits
from supervisor.generator.install import install, uninstall
from supervisor.generator.settings import Settings

REPO = Path(__file__).resolve().parents[2]
BLOG = REPO / "units" / "blog" / "blog.yaml"
SOCKETS = REPO / "units" / "blog-sockets" / "blog.yaml"
SERVER = {"podvisor-conmon.socket", "podvisor-conmon.service"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    monitor = Path(sys.executable).parent / "podvisor-conmon"
    if not monitor.exists():
        pytest.fail(f"{monitor} is missing: run scripts/install.sh")
    conf = tmp_path / "containers.conf"
    conf.write_text("[engine]\n")
    return Settings(containers_conf=str(conf), monitor=str(monitor))


def _install(path: Path, settings: Settings, units: Path) -> list[str]:
    return install(path, settings, unit_dir=units, reload=False, host_checks=False, verify=False).written


def test_written_with_the_first_pod_and_removed_with_the_last(tmp_path: Path, settings: Settings) -> None:
    units = tmp_path / "units"
    assert set(_install(BLOG, settings, units)) >= SERVER
    socket = (units / "podvisor-conmon.socket").read_text()
    service = (units / "podvisor-conmon.service").read_text()
    assert f"ListenStream={forksocket.socket_path()}\n" in socket and "SocketMode=0600" in socket
    python = serverunits.unit_word(str(Path(sys.executable).parent / "python3"))
    assert f"ExecStart={python} -I -m supervisor.monitor.server {forksocket.socket_path()}\n" in service
    assert "KillMode=process" in service
    # a second pod: nothing to rewrite; removing one pod keeps the server for the other
    other = tmp_path / "other.yaml"
    other.write_text(SOCKETS.read_text().replace("name: blog", "name: other", 1))
    assert SERVER.isdisjoint(_install(other, settings, units))
    assert SERVER.isdisjoint(uninstall("other", unit_dir=units, reload=False))
    assert {p.name for p in units.iterdir()} >= SERVER
    assert set(uninstall("blog", unit_dir=units, reload=False)) >= SERVER
    assert [p.name for p in units.iterdir()] == []


def test_an_operators_own_units_are_left_alone(tmp_path: Path, settings: Settings) -> None:
    units = tmp_path / "units"
    units.mkdir()
    own = "[Service]\nExecStart=/usr/local/bin/my-server\n"
    (units / "podvisor-conmon.service").write_text(own)
    written = _install(BLOG, settings, units)
    assert "podvisor-conmon.socket" in written and "podvisor-conmon.service" not in written
    removed = uninstall("blog", unit_dir=units, reload=False)
    assert "podvisor-conmon.service" not in removed
    assert [p.name for p in units.iterdir()] == ["podvisor-conmon.service"]
    assert (units / "podvisor-conmon.service").read_text() == own


def test_not_for_user_pods_nor_another_installs_monitor(tmp_path: Path, settings: Settings) -> None:
    elsewhere = tmp_path / "bin" / "podvisor-conmon"
    elsewhere.parent.mkdir()
    elsewhere.write_text("#!/bin/sh\n")
    elsewhere.chmod(0o755)
    for i, s in enumerate([dataclasses.replace(settings, user=True),
                           dataclasses.replace(settings, monitor=str(elsewhere))]):
        units = tmp_path / f"units{i}"
        assert SERVER.isdisjoint(_install(BLOG, s, units)), s
        assert not SERVER & {p.name for p in units.iterdir()}
