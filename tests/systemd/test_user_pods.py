"""Rootless pods as user units, under real systemd (the sandbox): a user with linger on installs
the blog pod with `podvisor install --user`, `systemctl --user start` returns once both
readiness probes pass (they join the container's network namespace through podman's rootless
user namespace), the blog answers on its published port (rootless network), `podvisor ps --user`
shows podvisor-conmon running as that user as the main PIDs, and `uninstall --user` leaves nothing.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.lab.images import BLOG_IMAGE, ensure_image
from supervisor.lab.sandbox import Sandbox

from .conftest import sh

pytestmark = pytest.mark.systemd

REPO = Path(__file__).resolve().parents[2]
PODVISOR = str(Path(sys.executable).parent / "podvisor")
USER = "pvtalice"


class User:
    """Commands as USER inside the sandbox, as its login session would run them."""

    def __init__(self, sb: Sandbox, uid: int) -> None:
        self.sb, self.uid = sb, uid
        self.prefix = ["runuser", "-u", USER, "--", "env", f"XDG_RUNTIME_DIR=/run/user/{uid}",
                       f"DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/{uid}/bus", f"HOME=/home/{USER}"]

    def argv(self, *cmd: str) -> list[str]:
        argv, _ = self.sb.command(["sh", "-c", f'cd /home/{USER} && exec "$@"', "-", *self.prefix, *cmd])
        return argv

    def run(self, *cmd: str, timeout: float = 120, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        _, env = self.sb.command(["true"])
        return subprocess.run(self.argv(*cmd), env=env, input=input, capture_output=True, timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def text(self, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        r = self.run(*cmd, timeout=timeout)
        return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(errors="replace"),
                                           r.stderr.decode(errors="replace"))


@pytest.fixture
def user(sandbox: Sandbox) -> Iterator[User]:
    # the checkout may sit below a 0700 directory: in the sandbox's RAM layer only, open the way
    for parent in reversed(REPO.parents):
        if not parent.stat().st_mode & 0o001:
            sh(sandbox, f"chmod o+x {shlex.quote(str(parent))}")
    # systemd-journal: the sandbox's journal is volatile, so there are no per-user journal files a
    # user could read (only persistent storage splits them by uid); the group reads the system's
    sh(sandbox, f"useradd --create-home --shell /bin/sh --groups systemd-journal {USER} && "
                f"loginctl enable-linger {USER}")
    uid = int(sh(sandbox, f"id -u {USER}").stdout)
    try:
        sh(sandbox, f"for i in $(seq 100); do systemctl is-active -q user@{uid}.service && "
                    f"test -S /run/user/{uid}/bus && exit 0; sleep 0.1; done; exit 1")
        u = User(sandbox, uid)
        res = u.text(PODVISOR, "--help")
        if res.returncode:
            pytest.skip(f"user {USER} cannot run {PODVISOR} (the checkout is not readable by others: "
                        f"{res.stderr.strip().splitlines()[-1:]})")
        yield u
    finally:
        sh(sandbox, f"loginctl disable-linger {USER}; systemctl stop user@{uid}.service; "
                    f"userdel --remove {USER} 2>/dev/null; true", timeout=120)
        assert sh(sandbox, f"pgrep -u {uid} || true").stdout == ""


def test_blog_as_user_units(user: User) -> None:
    def upodman(*args: str, check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        r = user.run("podman", *args, input=input, timeout=300)
        if check and r.returncode:
            raise AssertionError(f"podman {args[:2]} as {USER}: {r.stderr.decode(errors='replace')}")
        return r

    ensure_image(upodman, BLOG_IMAGE)
    res = user.text(PODVISOR, "install", "--user", str(REPO / "units" / "blog" / "blog.yaml"), timeout=300)
    assert res.returncode == 0, res.stderr
    assert "linger is off" not in res.stderr  # it is on
    assert f"wrote /home/{USER}/.config/systemd/user" not in res.stdout  # names are listed bare
    assert "start it with: systemctl --user start pod-blog.service" in res.stdout

    res = user.text("systemctl", "--user", "start", "pod-blog.service", timeout=300)
    assert res.returncode == 0, res.stderr + user.text("systemctl", "--user", "status", "pod-blog@*",
                                                       "--no-pager").stdout
    page = user.text("curl", "-sS", "--max-time", "10", "http://127.0.0.1:8080/")
    assert page.returncode == 0 and "<html" in page.stdout.lower(), page.stderr

    res = user.text(PODVISOR, "ps", "--user", "--json", "--cpu-interval=0")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["warnings"] == []  # the user's own podman answers for the user's pods
    (pod,) = data["pods"]
    assert pod["pod"] == "blog" and pod["ready"] and pod["containers_ready"] == 2
    assert {c["name"]: c["podman"]["state"] for c in pod["containers"]} == {"proxy": "running", "web": "running"}
    assert "8080" in json.dumps(pod["ports"])
    for c in pod["containers"]:
        pid = c["main_pid"]
        status = sh(user.sb, f"cat /proc/{pid}/status; tr '\\0' ' ' < /proc/{pid}/cmdline").stdout
        assert "supervisor.monitor" in status or "podvisor-conmon" in status, status
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
        assert uids == [str(user.uid)] * 4

    res = user.text(PODVISOR, "status", "--user", "blog")
    assert res.returncode == 0 and "pod-blog@web.service" in res.stdout, res.stdout + res.stderr

    res = user.text(PODVISOR, "logs", "--user", "blog", "proxy")
    assert res.returncode == 0, res.stderr
    res = user.text(PODVISOR, "stop", "--user", "-q", "blog", timeout=300)
    assert res.returncode == 0, res.stderr
    assert user.text("systemctl", "--user", "is-active", "pod-blog@web.service").stdout == "inactive\n"
    res = user.text(PODVISOR, "start", "--user", "-q", "blog", timeout=300)
    assert res.returncode == 0, res.stderr
    assert user.text("curl", "-sS", "--max-time", "10", "http://127.0.0.1:8080/").returncode == 0

    res = user.text(PODVISOR, "uninstall", "--user", "blog", timeout=300)
    assert res.returncode == 0, res.stderr
    assert user.text("sh", "-c", "ls -A ~/.config/systemd/user").stdout == ""
    assert user.text("podman", "ps", "--all", "--quiet").stdout == ""
    assert user.text("podman", "pod", "ps", "--quiet").stdout == ""
