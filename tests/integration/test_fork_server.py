"""podvisor-conmon's fork server (supervisor/monitor/server.py) against real podman and runc:
where a forked monitor lives, what the server refuses, and that it can die at any time."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor import forksocket
from supervisor.lab.testenv import BUSYBOX_IMAGE as image
from supervisor.lab.testenv import PodmanEnv
from supervisor.monitor import launch

from ..conftest import podvisor_conmon
from .helpers import assert_monitored, pid_alive, pids_with_cmdline, wait_until


@pytest.fixture
def podvisor() -> str:
    path, why = podvisor_conmon()
    if path is None:
        pytest.skip(why)
    return path


def _servers_on(sock: Path) -> list[int]:
    """Live fork servers whose title names `sock`."""
    return pids_with_cmdline(lambda cmd: b"--fork-server" in cmd and str(sock).encode() in cmd)


@pytest.fixture
def private_socket(tmp_path: Path) -> Iterator[Path]:
    """A socket path of this test's own; every server started on it is stopped afterwards."""
    d = tmp_path / "srv"
    d.mkdir(mode=0o700)
    sock = d / "conmon.sock"
    yield sock
    for pid in _servers_on(sock):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not _servers_on(sock), what="the test's fork servers to go")


def _start_server(podvisor: str, sock: Path) -> subprocess.Popen[bytes]:
    python = str(Path(podvisor).parent / "python3")
    proc = subprocess.Popen([python, "-I", "-m", "supervisor.monitor.server", str(sock)], cwd="/",
                            stdin=subprocess.DEVNULL)
    wait_until(lambda: sock.exists() or proc.poll() is not None, what="the fork server's socket")
    assert sock.exists(), f"server exited {proc.poll()}"
    return proc


CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(bytes.fromhex(sys.argv[2]))
print(s.recv(200).split(b"\n")[0].decode())
"""


def _installed_token(podvisor: str) -> bytes:
    """The install's token (pytest imports the checkout, whose files are other ones)."""
    python = str(Path(podvisor).parent / "python3")
    return subprocess.run([python, "-I", "-c", "import sys; from supervisor.monitor import launch; "
                           "sys.stdout.buffer.write(launch.install_token())"], cwd="/",
                          capture_output=True, check=True).stdout


def _ask(sock: Path, *wrap: str, token: bytes, user: int | None = None) -> str:
    """Send the server a request with no fds, as the launcher would (optionally from another
    namespace or as another user); return its first reply line. The client is the system's
    python3, the server's interpreter too (a venv's python3 is a link to it)."""
    fields = [launch.PROTOCOL, token, b"/", b"18", b"1", b"--version",
              b"0", b"0"]
    payload = b"\0".join(fields)
    request = (len(payload).to_bytes(4, "little") + payload).hex()
    kw: dict[str, Any] = {}
    path = str(sock)
    dirfd = -1
    if user is not None:
        # through an fd of the socket's directory: tmp_path's ancestors are root's alone, and
        # what is tested is the directory's and the socket's own mode
        dirfd = os.open(sock.parent, os.O_PATH)
        path = f"/proc/self/fd/{dirfd}/{sock.name}"
        kw = {"user": user, "group": user, "extra_groups": [], "cwd": "/", "pass_fds": (dirfd,)}
    argv = [*wrap, os.path.realpath(sys.executable), "-I", "-c", CLIENT, path, request]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True, **kw)
    finally:
        if dirfd >= 0:
            os.close(dirfd)
    return out.stdout.strip()


def _cgroups(pid: int) -> list[str]:
    return sorted(Path(f"/proc/{pid}/cgroup").read_text().split())


def test_forked_monitor_sits_where_a_direct_one_does(
        podman_for: Callable[..., PodmanEnv], podvisor: str, fork_server: Callable[[], Path],
        ) -> None:
    direct = podman_for("podvisor", podvisor)
    forked = podman_for("podvisor-forked", podvisor, "podvisor-forked")
    server = _servers_on(fork_server())
    assert len(server) == 1
    try:
        pids = {}
        for name, env in (("d", direct), ("f", forked)):
            env.run("run", "-d", "--name", f"where-{name}", image, "sleep", "1000")
            pids[name] = assert_monitored(env, f"where-{name}")
        mon = pids["f"]
        # podman put the launcher in <cgroup-parent>/conmon in every v1 hierarchy: so is the
        # monitor, exactly as when started directly, and nowhere the server is
        assert _cgroups(mon) == _cgroups(pids["d"])
        assert any("libpod_parent/conmon" in line for line in _cgroups(mon))
        assert _cgroups(mon) != _cgroups(server[0])
        # the launcher's rlimits, which the first process gets from outside (prlimit by pid)
        assert Path(f"/proc/{mon}/limits").read_text() == Path(f"/proc/{pids['d']}/limits").read_text()
        stat = Path(f"/proc/{mon}/stat").read_text().rsplit(")", 1)[1].split()
        assert int(stat[1]) != server[0], "the monitor must not be the server's child"
        # the server keeps nothing per container: its first processes are gone, reaped by the
        # kernel (SIGCHLD ignored), no zombie left for it to wait for
        children = Path(f"/proc/{server[0]}/task/{server[0]}/children")
        wait_until(lambda: not children.read_text().split(), what="the server's children to go")
        assert Path(f"/proc/{mon}/comm").read_text().strip() == "podvisor-conmon"
        cid = forked.inspect("where-f", "{{.Id}}")
        title = Path(f"/proc/{mon}/cmdline").read_bytes().decode()
        assert title.startswith(f"podvisor-conmon --api-version 1 -c {cid} "), title
    finally:
        direct.remove_all()
        forked.remove_all()


def test_on_demand_server_and_killing_it_spares_running_monitors(
        podman_for: Callable[..., PodmanEnv], podvisor: str, private_socket: Path,
        request: pytest.FixtureRequest) -> None:
    key = f"on-demand-{request.node.name}"
    auto = podman_for(key, podvisor, conmon_env={
        "PODVISOR_CONMON_SERVER": "on", "PODVISOR_CONMON_SOCKET": str(private_socket)})
    only = podman_for(key + "-only", podvisor, conmon_env={
        "PODVISOR_CONMON_SERVER": "only", "PODVISOR_CONMON_SOCKET": str(private_socket)})
    try:
        # no server answers: this one runs directly and starts a server for the next ones
        assert auto.run("run", "--rm", image, "true").returncode == 0
        wait_until(lambda: len(_servers_on(private_socket)) == 1, what="an on-demand server")
        # a container whose main process exits 7 on SIGTERM, monitored through that server
        only.run("run", "-d", "--name", "survivor", image, "sh", "-c",
                 "trap 'exit 7' TERM; while :; do sleep 0.1; done")
        mon = assert_monitored(only, "survivor")
        (server,) = _servers_on(private_socket)
        os.kill(server, signal.SIGKILL)
        wait_until(lambda: not pid_alive(server), what="the server to die")
        time.sleep(0.3)
        assert pid_alive(mon) and only.inspect("survivor", "{{.State.Status}}") == "running"
        only.run("stop", "-t", "10", "survivor")
        assert only.inspect("survivor", "{{.State.ExitCode}}") == "7"
        # the next container starts directly, or through a new server
        r = auto.run("run", "--rm", image, "sh", "-c", "exit 3", check=False)
        assert r.returncode == 3, r.stderr
        wait_until(lambda: len(_servers_on(private_socket)) == 1, what="a new on-demand server")
        r = only.run("run", "--rm", image, "sh", "-c", "echo served", check=False)
        assert (r.returncode, r.stdout) == (0, "served\n"), r.stderr
    finally:
        auto.remove_all()
        only.remove_all()


def test_server_refuses_strangers(podvisor: str, private_socket: Path) -> None:
    proc = _start_server(podvisor, private_socket)
    token = _installed_token(podvisor)
    try:
        assert oct(private_socket.stat().st_mode & 0o777) == oct(0o600)
        # another install's (or build's) launcher: refused, and the server, not upgraded on disk,
        # stays for its own launchers
        assert _ask(private_socket, token=b"0.0.0:/elsewhere:1:1") == "F install token differs"
        time.sleep(0.2)
        assert proc.poll() is None
        # a launcher in another mount namespace would hand over paths the server cannot see
        assert "another mnt namespace" in _ask(private_socket, "unshare", "--mount", token=token)
        # not root: the 0600 socket keeps it out, and were it reachable, SO_PEERCRED does
        for mode in (0o700, 0o755):  # the socket is 0600 either way
            os.chmod(private_socket.parent, mode)
            with pytest.raises(subprocess.CalledProcessError) as e:
                _ask(private_socket, user=65534, token=token)
            assert "Permission denied" in e.value.stderr
        os.chmod(private_socket, 0o666)
        assert "only root" in _ask(private_socket, user=65534, token=token)
        # its own launcher is served (a bare request: the first process runs `--version`)
        assert _ask(private_socket, token=token) == "S"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert not private_socket.exists(), "a stopped on-demand server removes its socket"


def test_a_server_upgraded_on_disk_makes_way(podvisor: str, private_socket: Path) -> None:
    """After an upgrade the old server refuses the new launcher (which then runs directly), and its
    first process tells it to go: it exits and removes its socket, for a new server to take over."""
    proc = _start_server(podvisor, private_socket)
    python = str(Path(podvisor).parent / "python3")
    main_py = Path(subprocess.run([python, "-I", "-c", "import supervisor.monitor.main as m; "
                                   "print(m.__file__)"], cwd="/", capture_output=True, text=True,
                                  check=True).stdout.strip())
    st = main_py.stat()
    try:
        os.utime(main_py, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # "reinstalled"
        assert _ask(private_socket, token=_installed_token(podvisor)) == "F install token differs"
        assert proc.wait(timeout=30) == 0
        assert not private_socket.exists()
    finally:
        os.utime(main_py, ns=(st.st_atime_ns, st.st_mtime_ns))
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_launcher_runs_directly_when_the_server_socket_is_unsafe(
        podman_for: Callable[..., PodmanEnv], podvisor: str, private_socket: Path,
        request: pytest.FixtureRequest) -> None:
    """A socket in a directory others may write to is never trusted: `only` fails, `on` runs
    the monitor itself."""
    proc = _start_server(podvisor, private_socket)
    os.chmod(private_socket.parent, 0o777)
    key = f"unsafe-{request.node.name}"
    try:
        only = podman_for(key + "-only", podvisor, conmon_env={
            "PODVISOR_CONMON_SERVER": "only", "PODVISOR_CONMON_SOCKET": str(private_socket)})
        r = only.run("run", "--rm", image, "true", check=False)
        assert r.returncode != 0 and "no fork server answers" in r.stderr, r.stderr
        auto = podman_for(key, podvisor, conmon_env={
            "PODVISOR_CONMON_SERVER": "on", "PODVISOR_CONMON_SOCKET": str(private_socket)})
        assert auto.run("run", "--rm", image, "sh", "-c", "exit 5", check=False).returncode == 5
    finally:
        os.chmod(private_socket.parent, 0o700)
        proc.terminate()
        proc.wait(timeout=30)
        for env in (only, auto) if "auto" in locals() else (only,):
            env.remove_all()


# a stand-in OCI runtime: `create … --pid-file P … ID` starts the "container" and writes its pid
STAND_IN_RUNTIME = """#!/bin/sh
while [ $# -gt 1 ]; do [ "$1" = --pid-file ] && pf=$2; shift; done
sh -c 'sleep 0.3; exit 3' </dev/null >/dev/null 2>&1 &
echo $! > "$pf"
"""


def _launch(podvisor: str, tmp: Path, sock: Path | None, *extra: str) -> tuple[int, str, bytes, Path]:
    """The installed launcher, as podman runs it, forked by the server on `sock` (None: direct):
    its exit status, stderr, what came on the sync pipe, and the exit dir."""
    runtime = tmp / "runtime"
    runtime.write_text(STAND_IN_RUNTIME)
    runtime.chmod(0o755)
    exits = tmp / "exits"
    exits.mkdir()
    cid = "c" * 64
    argv = [podvisor, "--api-version", "1", "-c", cid, "-u", cid, "-r", str(runtime), "-b", str(tmp),
            "-p", str(tmp / "pidfile"), "-n", "ctr", "--exit-dir", str(exits), "--log-level", "error",
            *extra]
    r, w = os.pipe()
    env = {**os.environ, "_OCI_SYNCPIPE": str(w),
           "PODVISOR_CONMON_SERVER": "off" if sock is None else "only",
           "PODVISOR_CONMON_SOCKET": str(sock or tmp / "none.sock")}
    try:
        proc = subprocess.run(argv, env=env, pass_fds=(w,), cwd=tmp, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60)
    finally:
        os.close(w)
    sync = b""
    wait_until(lambda: (exits / cid).exists() or proc.returncode != 0, what="the exit file")
    while chunk := os.read(r, 4096):  # EOF once the monitor is gone
        sync += chunk
    os.close(r)
    return proc.returncode, proc.stderr, sync, exits / cid


@pytest.mark.parametrize("case", ["bad log path", "sync", "plain"])
def test_forked_monitor_ends_as_a_direct_one(
        podvisor: str, fork_server: Callable[[], Path], tmp_path: Path, case: str) -> None:
    """A forked monitor fails (a log it cannot open), runs in the first process (--sync) and exits
    exactly as a directly started one: status, stderr, sync pipe, exit file."""
    extra = {"bad log path": ["-l", f"k8s-file:{tmp_path}/missing/ctr.log"],
             "sync": ["-l", f"k8s-file:{tmp_path}/ctr-%s.log", "--sync"],
             "plain": ["-l", f"k8s-file:{tmp_path}/ctr-%s.log"]}[case]
    results = {}
    for path, sock in (("direct", None), ("forked", fork_server())):
        d = tmp_path / path
        d.mkdir()
        results[path] = _launch(podvisor, d, sock, *[x.replace("%s", path) for x in extra])
    (dcode, derr, dsync, dexit), (fcode, ferr, fsync, fexit) = results["direct"], results["forked"]
    assert fcode == dcode, (ferr, derr)
    assert re.sub(rb"\d+", b"N", fsync) == re.sub(rb"\d+", b"N", dsync)
    if case == "bad log path":
        assert dcode != 0 and "Failed to open log file" in derr, derr
        assert "Failed to open log file" in ferr and not fexit.exists(), ferr
    else:
        assert dcode == (3 if case == "sync" else 0), derr
        assert fexit.read_text() == dexit.read_text() == "3"


def test_socket_path_is_per_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PODVISOR_CONMON_SOCKET", raising=False)
    path = forksocket.socket_path()
    assert path.startswith(forksocket.SOCKET_DIR + "/conmon-") and path.endswith(".sock")
    monkeypatch.setenv("PODVISOR_CONMON_SOCKET", "/x/y.sock")
    assert forksocket.socket_path() == "/x/y.sock"
    here = os.path.dirname(os.path.realpath(launch.__file__))
    assert launch.install_token().split(b":")[1] == here.encode()  # this install's files
