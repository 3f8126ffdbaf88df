"""Rootless: the integration fixtures again, with podman run by a throw-away unprivileged user.

The session creates one user (subuid/subgid ranges, a private store in its home, its own
XDG_RUNTIME_DIR) and removes it, with every process it still has, at the end. `podman` and
`tmp_path` are overridden here, so integration tests imported into this package run rootless
against both monitors (the `monitor` param of tests/conftest.py).
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.lab.testenv import ensure_busybox_image
from supervisor.lab.testuser import RootlessPodmanEnv, TestUser, create_user, make_rootless_env, remove_user

from ..conftest import podvisor_conmon


@pytest.fixture(scope="session")
def test_user() -> Iterator[TestUser]:
    if os.geteuid() != 0:
        pytest.skip("creating the rootless test user needs root (useradd, usermod --add-subuids)")
    base = Path(tempfile.mkdtemp(prefix="pvt-rootless-", dir="/var/tmp"))
    user = create_user(base, f"pvt{secrets.token_hex(4)}")
    try:
        yield user
    finally:
        remove_user(user)
    assert not user.pids(), f"processes of {user.name} left: {user.pids()}"
    for f in ("/etc/passwd", "/etc/subuid", "/etc/subgid"):
        assert f"{user.name}:" not in Path(f).read_text(), f"{user.name} left in {f}"
    assert not base.exists()


@pytest.fixture(params=("conmon", "podvisor", "podvisor-forked"))
def monitor_kind(request: pytest.FixtureRequest) -> str:
    """Rootless against conmon, podvisor-conmon started directly (server off) and podvisor-conmon
    configured as for the fork server (`on`, root's server on a socket the user can reach). The
    server is root's by design (it forks monitors with its own privileges and checks SO_PEERCRED),
    and a launcher trusts only a socket in a directory owned by root as its user namespace sees
    it, which a rootless one's never is: so `podvisor-forked` proves the direct fallback."""
    return str(request.param)


@pytest.fixture(scope="session")
def reachable_fork_server() -> Iterator[Path]:
    """Root's fork server on a socket anyone may connect to (0755 directory, 0666 socket): what
    keeps rootless launchers away is then ownership alone, not file modes."""
    path, why = podvisor_conmon()
    if path is None:
        pytest.skip(why)
    d = Path(tempfile.mkdtemp(prefix="pvt-rootless-srv-", dir="/var/tmp"))
    d.chmod(0o755)
    sock = d / "conmon.sock"
    python = str(Path(path).parent / "python3")
    proc = subprocess.Popen([python, "-I", "-m", "supervisor.monitor.server", str(sock)], cwd="/",
                            stdin=subprocess.DEVNULL)
    try:
        for _ in range(500):
            if sock.exists() or proc.poll() is not None:
                break
            time.sleep(0.02)
        assert sock.exists(), f"fork server did not start (exit {proc.poll()})"
        sock.chmod(0o666)
        yield sock
        assert proc.poll() is None, "the fork server died"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(d, ignore_errors=True)


def conmon_env(kind: str, sock: Path | None) -> dict[str, str] | None:
    if kind == "podvisor":
        return {"PODVISOR_CONMON_SERVER": "off"}
    if kind == "podvisor-forked":
        assert sock is not None
        return {"PODVISOR_CONMON_SERVER": "on", "PODVISOR_CONMON_SOCKET": str(sock)}
    return None


@pytest.fixture(scope="session")
def rootless_envs(test_user: TestUser) -> Iterator[dict[str, RootlessPodmanEnv]]:
    made: dict[str, RootlessPodmanEnv] = {}
    yield made
    for env in made.values():
        env.remove_all()


def user_can_run(user: TestUser, monitor: str) -> None:
    """Skip (with the reason) if `user` cannot execute `monitor`: a checkout in a 0700 home."""
    res = user.run([monitor, "--version"], timeout=60)
    if res.returncode:
        pytest.skip(f"user {user.name} cannot run {monitor} (is the checkout readable by others? "
                    f"{(res.stderr.strip().splitlines() or ['no output'])[-1]})")


@pytest.fixture
def podman(monitor_kind: str, monitor: str, test_user: TestUser, rootless_envs: dict[str, RootlessPodmanEnv],
           request: pytest.FixtureRequest) -> Iterator[RootlessPodmanEnv]:
    """A rootless PodmanEnv of the test user using `monitor`; emptied afterwards."""
    key = monitor_kind
    if key not in rootless_envs:
        user_can_run(test_user, monitor)
        sock = request.getfixturevalue("reachable_fork_server") if key == "podvisor-forked" else None
        rootless_envs[key] = make_rootless_env(test_user, key, monitor, conmon_env(key, sock))
        ensure_busybox_image(rootless_envs[key])
    env = rootless_envs[key]
    info = env.run("info", "--format", "{{.Host.Conmon.Path}} {{.Host.Security.Rootless}}")
    assert info.stdout.strip().rsplit(" ", 1) == [monitor, "true"], info.stdout + info.stderr
    yield env
    env.remove_all()
    left = env.run("ps", "--all", "--quiet").stdout.split()
    assert not left, f"containers left behind: {left}"


@pytest.fixture
def tmp_path(test_user: TestUser, request: pytest.FixtureRequest) -> Path:
    """A directory the test user owns (pytest's own are 0700 root's)."""
    d = test_user.home / "tmp" / f"{request.node.name[:60]}-{secrets.token_hex(3)}"
    d.mkdir(parents=True)
    for p in (d.parent, d):
        os.chown(p, test_user.uid, test_user.gid)
    return d
