"""The fork server under a real systemd: socket activation (podvisor-conmon.socket), and the
container units behave exactly as with directly started monitors — the monitor is MainPID, a
child of PID 1, systemd sees the container's exit status, a crash loop restarts and a stop ends as
success with KillMode=mixed. Each test runs on both paths."""
from __future__ import annotations

import shlex
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.lab.sandbox import Sandbox

from .conftest import IMAGE, OURS, install_unit, sh, unit_props

pytestmark = pytest.mark.systemd

PYTHON = shlex.quote(str(Path(OURS).parent / "python3"))  # for sh -c: the checkout may hold blanks
SERVER = "podvisor-conmon.service"


@pytest.fixture(params=["direct", "forked"])
def path(request: pytest.FixtureRequest, sandbox: Sandbox) -> Iterator[str]:
    """forked: the install's socket unit is listening; direct: nothing listens (and where
    systemd runs the launcher never starts a server itself)."""
    if request.param == "forked":
        sh(sandbox, f"{PYTHON} -I -m supervisor.generator.serverunits /etc/systemd/system"
                    " && systemctl daemon-reload && systemctl start podvisor-conmon.socket")
    else:  # `podvisor install` in an earlier test may have left it listening
        sh(sandbox, "systemctl stop podvisor-conmon.socket podvisor-conmon.service", check=False)
    yield str(request.param)
    sh(sandbox, "systemctl stop podvisor-conmon.socket podvisor-conmon.service; "
                "rm -f /etc/systemd/system/podvisor-conmon.*; systemctl daemon-reload", check=False)


def _unit(name: str, script: str, service: str) -> str:
    script = script.replace("\\", "\\\\").replace("%", "%%").replace("$", "$$")
    return f"""[Unit]
Description=podvisor fork-server test {name}
StartLimitBurst=100
[Service]
Type=notify
NotifyAccess=all
TimeoutStopSec=20
{service}
ExecStartPre=-/usr/bin/podman rm -f -t 0 {name}
ExecStart=/usr/bin/podman run --rm --name {name} --network none --sdnotify=conmon {IMAGE} \\
  sh -c '{script}'
ExecStopPost=-/usr/bin/podman rm -f -t 0 {name}
"""


def _monitor(sb: Sandbox, unit: str) -> int:
    """MainPID is podvisor-conmon, reparented to PID 1, in the unit's own cgroup."""
    pid = int(unit_props(sb, unit, "MainPID")["MainPID"])
    assert pid > 0, sh(sb, f"systemctl status --no-pager {unit}", check=False).stdout
    assert "podvisor-conmon --api-version 1" in sh(sb, f"tr '\\0' ' ' < /proc/{pid}/cmdline").stdout
    ppid = sh(sb, f"cut -d')' -f2 /proc/{pid}/stat").stdout.split()[1]
    assert ppid == "1", f"monitor {pid} is a child of {ppid}, not of systemd"
    assert f"/{unit}" in sh(sb, f"grep name=systemd /proc/{pid}/cgroup").stdout
    return pid


def _served(sb: Sandbox, path: str) -> None:
    state = unit_props(sb, SERVER, "ActiveState")["ActiveState"]
    assert state == ("active" if path == "forked" else "inactive"), state


def _journal(sb: Sandbox, unit: str) -> str:
    return sh(sb, f"journalctl -u {unit} -o cat --no-pager").stdout


def _wait(what: str, cond, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def test_crash_loop_restarts(sandbox: Sandbox, path: str) -> None:
    unit = "crashy.service"
    install_unit(sandbox, unit, _unit("crashy", "sleep 2; exit 3",
                                      "Restart=on-failure\nRestartSec=1"))
    try:
        sh(sandbox, f"systemctl start {unit}", timeout=120)
        _monitor(sandbox, unit)
        _served(sandbox, path)
        _wait("two restarts", lambda: int(unit_props(sandbox, unit, "NRestarts")["NRestarts"]) >= 2)
        # systemd saw its main process, the monitor, exit with the container's status
        journal = _journal(sandbox, unit)
        assert journal.count("Main process exited, code=exited, status=3/") >= 2, journal
        _wait("the restarted container's monitor",
              lambda: unit_props(sandbox, unit, "ActiveState")["ActiveState"] == "active")
        _monitor(sandbox, unit)
    finally:
        sh(sandbox, f"systemctl stop {unit}; rm -f /etc/systemd/system/{unit}; "
                    "systemctl daemon-reload", check=False, timeout=120)


def test_stop_ends_as_success_with_kill_mode_mixed(sandbox: Sandbox, path: str) -> None:
    unit = "stoppable.service"
    # PID 1 of a pid namespace ignores SIGTERM unless it handles it
    install_unit(sandbox, unit, _unit("stoppable", 'trap "exit 0" TERM; sleep 1000 & wait',
                                      "KillMode=mixed\nRestart=on-failure\n"
                                      "SuccessExitStatus=137 143"))
    try:
        sh(sandbox, f"systemctl start {unit}", timeout=120)
        monitor = _monitor(sandbox, unit)
        _served(sandbox, path)
        if path == "forked":  # the server can go at any time: its monitors do not notice
            server = unit_props(sandbox, SERVER, "MainPID")["MainPID"]
            sh(sandbox, f"kill -9 {server}")
            _wait("the server to die",
                  lambda: sh(sandbox, f"test -e /proc/{server}", check=False).returncode != 0)
        # systemd SIGTERMs the monitor, which forwards it to the container
        sh(sandbox, f"systemctl stop {unit}", timeout=60)
        props = unit_props(sandbox, unit, "Result", "NRestarts", "ActiveState")
        journal = _journal(sandbox, unit)
        assert props == {"Result": "success", "NRestarts": "0", "ActiveState": "inactive"}, journal
        # the monitor exited 0 (the container's status): a clean exit systemd does not log
        assert "Main process exited" not in journal and "Deactivated successfully" in journal, \
            journal
        assert sh(sandbox, f"test -e /proc/{monitor}", check=False).returncode != 0
        assert sh(sandbox, "podman ps -aq --filter name=stoppable").stdout.strip() == ""
    finally:
        sh(sandbox, f"systemctl stop {unit}; rm -f /etc/systemd/system/{unit}; "
                    "systemctl daemon-reload", check=False, timeout=120)


def test_blog_pod_main_process_is_podvisor_conmon(sandbox: Sandbox, path: str) -> None:
    """The shipped example: `podvisor install` brings the fork server's socket with it, which then
    serves the pod's monitors; `systemctl status pod-blog@web` names podvisor-conmon as the main
    process, and the pod serves, on either path; `podvisor uninstall` of the last pod takes the
    server's units away again."""
    from supervisor.lab.images import BLOG_IMAGE, ensure_image

    from .test_blog_pod import PODVISOR, REPO, _fetch, _install

    ensure_image(sandbox.podman, BLOG_IMAGE)
    _install(sandbox, "blog.yaml", (REPO / "units" / "blog" / "blog.yaml").read_text())
    try:
        socket = unit_props(sandbox, "podvisor-conmon.socket", "ActiveState", "UnitFileState")
        assert socket == {"ActiveState": "active", "UnitFileState": "enabled"}, socket
        if path == "direct":
            sh(sandbox, "systemctl stop podvisor-conmon.socket")
        sh(sandbox, "systemctl start pod-blog.service", timeout=120)
        assert "Hello from the podvisor blog" in _fetch(sandbox)
        for c in ("web", "proxy"):
            unit = f"pod-blog@{c}.service"
            pid = _monitor(sandbox, unit)
            status = sh(sandbox, f"systemctl status --no-pager --lines 0 {unit}", check=False).stdout
            main = next(line for line in status.splitlines() if "Main PID:" in line)
            assert f"Main PID: {pid} (podvisor-conmon)" in main, status
            # the title is one argv word (setproctitle), so systemd quotes it in the tree
            assert f'{pid} "podvisor-conmon --api-version 1 -c ' in status, status
        _served(sandbox, path)  # socket-activated: active only once a launcher connected
    finally:
        sh(sandbox, "systemctl stop pod-blog.service", check=False, timeout=120)
        sh(sandbox, f"{PODVISOR} uninstall blog", check=False)
    left = sh(sandbox, "ls /etc/systemd/system | grep -c '^podvisor-conmon' || true").stdout.strip()
    assert left == "0", "the last pod's uninstall leaves the fork server's units behind"
    props = unit_props(sandbox, "podvisor-conmon.socket", "ActiveState")
    assert props["ActiveState"] == "inactive", props
