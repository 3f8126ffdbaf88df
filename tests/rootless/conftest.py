"""Rootless: the integration fixtures again, with podman run by a throw-away unprivileged user.

The session creates one user (subuid/subgid ranges, a private store in its home, its own
XDG_RUNTIME_DIR) and removes it, with every process it still has, at the end. `podman` and
`tmp_path` are overridden here, so integration tests imported into this package run rootless
against both monitors (the `monitor` param of tests/conftest.py).
"""
from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.lab.testenv import ensure_busybox_image
from supervisor.lab.testuser import RootlessPodmanEnv, TestUser, create_user, make_rootless_env, remove_user

from ..conftest import CONMON


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


@pytest.fixture(params=("conmon", "podvisor"))
def monitor_kind(request: pytest.FixtureRequest) -> str:
    """Rootless runs both monitors, not the forked one: the fork server serves root only (its
    socket is root's and it checks SO_PEERCRED), so a rootless launcher always runs directly."""
    return str(request.param)


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
def podman(monitor: str, test_user: TestUser,
           rootless_envs: dict[str, RootlessPodmanEnv]) -> Iterator[RootlessPodmanEnv]:
    """A rootless PodmanEnv of the test user using `monitor`; emptied afterwards."""
    key = "conmon" if monitor == CONMON else "podvisor"
    if key not in rootless_envs:
        user_can_run(test_user, monitor)
        rootless_envs[key] = make_rootless_env(test_user, key, monitor)
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
