"""Shared fixtures: one private podman store per session, one env per monitor.

The `monitor` fixture is parametrized over `conmon` (/usr/bin/conmon, the reference), `podvisor`
(our podvisor-conmon started directly, PODVISOR_CONMON_SERVER=off) and `podvisor-forked` (the same
launcher, every monitor forked by the session's fork server, PODVISOR_CONMON_SERVER=only so nothing
silently runs directly), so every integration test asserts the same observable truth on all three.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor.lab.testenv import BUSYBOX_IMAGE, PodmanEnv, ensure_busybox_image, make_env

# the lab finds units/blog and the git tree here (supervisor/lab/checkout.py); subprocesses inherit it
os.environ.setdefault("PODVISOR_CHECKOUT", str(Path(__file__).resolve().parents[1]))

CONMON = "/usr/bin/conmon"
# Time limits and waits are multiplied by PODVISOR_TEST_TIME_SCALE (default 1): the check VM runs
# under software emulation, 25x slower or worse (scripts/vm/checks.py sets it).
TIME_SCALE = float(os.environ.get("PODVISOR_TEST_TIME_SCALE") or 1)
DEFAULT_TIMEOUT = 120 * TIME_SCALE  # seconds per test, unless a test sets its own


@functools.cache
def podvisor_conmon() -> tuple[str | None, str]:
    """(path, "") for a usable podvisor-conmon, or (None, why it is not usable)."""
    beside = Path(sys.executable).parent / "podvisor-conmon"  # this tree's venv runs pytest
    path = (os.environ.get("PODVISOR_CONMON") or (str(beside) if beside.exists() else None)
            or shutil.which("podvisor-conmon"))
    if not path:
        return None, "podvisor-conmon not found (set PODVISOR_CONMON or install the venv)"
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30,
                             check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"{path} --version failed: {e}"
    # podman's own probe: anything else makes it fall back to /usr/bin/conmon silently
    m = re.match(r"conmon version (\d+)\.(\d+)\.(\d+)", out.stdout)
    if out.returncode != 0 or not m or tuple(map(int, m.groups())) < (2, 0, 1):
        why = (out.stdout + out.stderr).strip().splitlines()[-1:] or ["no output"]
        return None, f"{path} --version is not 'conmon version >= 2.0.1' (rc {out.returncode}: {why[0]})"
    return str(Path(path).absolute()), ""


ALLOW_SKIPS = os.environ.get("PODVISOR_ALLOW_SKIPS") == "1"  # a dev machine without the monitor, say


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_podvisor_skip(reason): this test's [podvisor...] parameters "
                                       "may skip (the reason says why that is not a hole in the suite)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """A skipped [podvisor...] parameter fails: half of a comparison silently not run is a hole, not
    a pass. Allowed where a skip/skipif mark skips every parameter alike, where the test is marked
    allow_podvisor_skip, or with PODVISOR_ALLOW_SKIPS=1."""
    outcome: Any = yield
    report = outcome.get_result()
    callspec = getattr(item, "callspec", None)
    if (not report.skipped or hasattr(report, "wasxfail") or ALLOW_SKIPS or callspec is None
            or "podvisor" not in callspec.id or item.get_closest_marker("allow_podvisor_skip")):
        return
    marks = [m for m in item.iter_markers() if m.name == "skip"
             or (m.name == "skipif" and any(bool(a) for a in m.args if not isinstance(a, str)))]
    if marks:
        return  # the whole test is skipped, every monitor alike
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = (f"[{callspec.id}] was skipped ({reason}): the podvisor half of the suite must run "
                       "(PODVISOR_ALLOW_SKIPS=1 allows it on purpose)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A hung test fails on its own instead of stalling the run; @pytest.mark.timeout overrides."""
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT))


@pytest.fixture(scope="session")
def store() -> Iterator[Path]:
    """A session-wide directory holding the shared podman storage and one dir per monitor."""
    base = Path(tempfile.mkdtemp(prefix="pvt-", dir="/var/tmp"))
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def envs(store: Path) -> Iterator[dict[str, PodmanEnv]]:
    """Lazily created PodmanEnv per monitor id, all sharing one image store; torn down at the end."""
    made: dict[str, PodmanEnv] = {}
    yield made
    for env in made.values():
        env.remove_all()
    if made:
        next(iter(made.values())).cleanup(storage=True)
    leftovers = _pids_mentioning(str(store))
    assert not leftovers, f"processes still using the test store: {leftovers}"


def _pids_mentioning(text: str) -> list[str]:
    """Live (non-zombie) processes whose command line mentions `text`."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if text.encode() in (d / "cmdline").read_bytes():
                found.append(f"{d.name}: {(d / 'cmdline').read_bytes()[:200]!r}")
        except OSError:
            continue
    return found


MONITOR_KINDS = ("conmon", "podvisor", "podvisor-forked")


@pytest.fixture(params=MONITOR_KINDS)
def monitor_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def monitor(monitor_kind: str) -> str:
    """Path of the monitor under test; the podvisor params are skipped while it cannot run."""
    if monitor_kind == "conmon":
        return CONMON
    path, why = podvisor_conmon()
    if path is None:
        pytest.skip(why)
    return path


@pytest.fixture(scope="session")
def fork_server(store: Path) -> Iterator[Callable[[], Path]]:
    """Starts (once, on first use) podvisor-conmon's fork server on a socket in the session's
    store; returns the socket's path. Stopped at the end of the session."""
    procs: list[subprocess.Popen[bytes]] = []
    sock = store / "fork-server" / "conmon.sock"

    def get() -> Path:
        if not procs:
            sock.parent.mkdir(mode=0o700, exist_ok=True)
            path, why = podvisor_conmon()
            assert path, why
            python = str(Path(path).parent / "python3")  # the launcher's own interpreter
            # -I: the installed package, never a checkout that happens to be the cwd
            procs.append(subprocess.Popen([python, "-I", "-m", "supervisor.monitor.server",
                                           str(sock)], cwd="/", stdin=subprocess.DEVNULL))
            for _ in range(200):
                if sock.exists() or procs[0].poll() is not None:
                    break
                time.sleep(0.02)
            assert sock.exists(), f"fork server did not start (exit {procs[0].poll()})"
        return sock

    yield get
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def podman_for(store: Path, envs: dict[str, PodmanEnv],
               fork_server: Callable[[], Path]) -> Callable[..., PodmanEnv]:
    """A function (key, monitor path[, kind]) -> PodmanEnv sharing the session's store, made once
    per key; `kind` podvisor-forked points the monitor at the session's fork server."""
    def get(key: str, monitor: str, kind: str = "",
            conmon_env: dict[str, str] | None = None) -> PodmanEnv:
        if key not in envs:
            storage = store / "storage"
            if conmon_env is not None:
                pass
            elif kind == "podvisor-forked":
                conmon_env = {"PODVISOR_CONMON_SERVER": "only",
                              "PODVISOR_CONMON_SOCKET": str(fork_server())}
            elif monitor != CONMON:
                conmon_env = {"PODVISOR_CONMON_SERVER": "off"}
            envs[key] = make_env(store / key, monitor, root=storage / "root",
                                 runroot=storage / "run", tmpdir=storage / "tmp",
                                 conmon_env=conmon_env)
            ensure_busybox_image(envs[key])
        return envs[key]
    return get


_conmon_path_checked: set[Path] = set()


@pytest.fixture
def podman(monitor_kind: str, monitor: str,
           podman_for: Callable[..., PodmanEnv]) -> Iterator[PodmanEnv]:
    """A PodmanEnv using `monitor`; every container and pod is force-removed afterwards."""
    env = podman_for(monitor_kind, monitor, monitor_kind)
    # The guard against podman's silent fallback to /usr/bin/conmon (see helpers.assert_monitored),
    # once per env: its answer depends only on the env's containers.conf and the monitor's
    # --version, fixed for the session, and `podman info` takes a minute in the emulated check VM
    if env.conf not in _conmon_path_checked:
        used = env.run("info", "--format", "{{.Host.Conmon.Path}}").stdout.strip()
        assert used == monitor, f"podman uses {used!r}, not {monitor!r}"
        _conmon_path_checked.add(env.conf)
    yield env
    env.remove_all()
    left = env.run("ps", "--all", "--quiet").stdout.split()
    assert not left, f"containers left behind: {left}"


@pytest.fixture
def image(podman: PodmanEnv) -> str:
    """The busybox test image (imported when the env was made)."""
    return BUSYBOX_IMAGE
