"""Socket activation through the monitor, on both monitors: `systemd-socket-activate` owns a
listening socket and starts `podman run` on the first connection; podman hands the socket to
the monitor and the runtime; the container (tests/tools/listen-serve.c, with no network of its
own) accepts on fd 3 and answers a real TCP client with what it sees.

Checked on both: LISTEN_FDS=1 and LISTEN_PID=1 inside, fd 3 is the very socket, the monitor
keeps its copy open (exactly one) while the container runs, no other fd of the container or
the monitor is a duplicate of it, and an exec session gets none of it. `--replace-listen-pid`
(which podman never passes) is checked by running each monitor directly with a stand-in
runtime that reports its own environment."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.lab.testenv import PodmanEnv
from tests.integration.helpers import assert_monitored, wait_until

TOOL_SOURCE = Path(__file__).resolve().parents[1] / "tools" / "listen-serve.c"


@pytest.fixture(scope="session")
def listen_serve() -> Iterator[Path]:
    out = Path("/var/tmp") / f"pvt-listen-{uuid.uuid4().hex[:8]}"
    out.mkdir()
    binary = out / "listen-serve"
    subprocess.run(["gcc", "-static", "-O2", "-o", str(binary), str(TOOL_SOURCE)], check=True)
    yield binary
    subprocess.run(["rm", "-rf", str(out)], check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def exchange(port: int, line: bytes, timeout: float = 60) -> str:
    """One TCP round trip: connect (queued by the kernel until someone accepts), send, read to EOF."""
    deadline = time.monotonic() + 10
    while True:  # until the owner listens (the connection that gets through starts podman)
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    with s:
        s.sendall(line + b"\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def socket_inodes(pid: int) -> dict[int, str]:
    """fd -> 'socket:[inode]' for every socket fd of `pid`."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            out[int(fd)] = target
    return out


def reported_fds(reply: str) -> dict[int, str]:
    return {int(m[1]): m[2] for m in re.finditer(r"^FD (\d+) (.*)$", reply, re.M)}


@pytest.mark.parametrize("mode", ["detached", "pod"])
def test_socket_reaches_the_container(podman: PodmanEnv, image: str, listen_serve: Path, mode: str) -> None:
    port = free_port()
    name = f"sa-{mode}"
    run = ["run", "-d", "--name", name, "--network", "none"]
    if mode == "pod":
        pod = f"sap-{uuid.uuid4().hex[:6]}"
        podman.run("pod", "create", "--name", pod, "--network", "none")
        # as the infra unit does: podman 4.3.1 hands LISTEN_FDS sockets to the first container it
        # starts, so a `run --pod` that must also start the infra loses them to it
        podman.run("pod", "start", pod)
        run = ["run", "-d", "--name", name, "--pod", pod]
    run += ["-v", f"{listen_serve}:/listen-serve:ro", image, "/listen-serve"]
    # systemd-socket-activate listens, and execs podman only once a connection arrives
    # (it passes on only the variables named with -E)
    keep = [a for k in ("PATH", "HOME", "CONTAINERS_CONF") for a in ("-E", k)]
    owner = subprocess.Popen(["systemd-socket-activate", "-l", f"127.0.0.1:{port}", *keep, *podman.argv(*run)],
                             env=podman.environ(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    try:
        reply = exchange(port, b"hello through the kernel queue")
        _, err = owner.communicate(timeout=60)
        assert owner.returncode == 0, err
        assert reply.startswith("ECHO hello through the kernel queue\n"), reply
        assert "LISTEN_FDS=1 LISTEN_PID=1 PID=1\n" in reply, reply
        fds = reported_fds(reply)
        # fd 3 is the listening socket, 4 the accepted connection; nothing else was passed on
        assert sorted(fds) == [0, 1, 2, 3, 4], reply
        assert fds[3].startswith("socket:") and fds[4].startswith("socket:"), reply
        listening = fds[3]
        # a second client, served by the same container from the same socket
        assert exchange(port, b"again").startswith("ECHO again\n")

        monitor = assert_monitored(podman, name)
        held = [fd for fd, t in socket_inodes(monitor).items() if t == listening]
        assert len(held) == 1, f"the monitor holds {len(held)} copies of the listening socket"
        ctr = int(podman.inspect(name, "{{.State.Pid}}"))
        assert [fd for fd, t in socket_inodes(ctr).items() if t == listening] == [3]

        # an exec session sees none of the container's passed sockets
        listing = podman.run("exec", name, "ls", "-l", "/proc/self/fd").stdout
        assert "socket:" not in listing, listing
        assert "LISTEN_FDS" not in podman.run("exec", name, "env").stdout
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        podman.remove_all()


FAKE_RUNTIME = """#!/bin/sh
# stands in for runc: reports the environment and fds the monitor gave it, then fails
{{ echo "PID=$$ LISTEN_PID=${{LISTEN_PID:-}} LISTEN_FDS=${{LISTEN_FDS:-}}"; ls -l /proc/$$/fd; }} > {report}.tmp
mv {report}.tmp {report}
echo "fake runtime: done" >&2
exit 1
"""


@pytest.mark.parametrize("replace", [True, False], ids=["replace-listen-pid", "keep-listen-pid"])
def test_replace_listen_pid(monitor: str, tmp_path: Path, replace: bool) -> None:
    report = tmp_path / "report"
    runtime = tmp_path / "runtime"
    runtime.write_text(FAKE_RUNTIME.format(report=report))
    runtime.chmod(0o755)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (tmp_path / "sockets").mkdir()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    n = listener.fileno()
    cid = uuid.uuid4().hex * 2
    argv = [monitor, "--api-version", "1", "-c", cid, "-u", cid, "-r", str(runtime), "-b", str(bundle),
            "-p", str(tmp_path / "pidfile"), "-n", "fake", "--exit-dir", str(tmp_path),
            "-l", f"k8s-file:{tmp_path / 'ctr.log'}", "--conmon-pidfile", str(tmp_path / "conmon.pid"),
            "--socket-dir-path", str(tmp_path / "sockets")]
    if replace:
        argv.append("--replace-listen-pid")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LISTEN_FDS": "1", "LISTEN_PID": "424242"}
    try:
        # the socket as fd 3 and nowhere else, as systemd passes it
        res = subprocess.run(["/bin/bash", "-c", f'exec "$@" 3<&{n} {n}<&-', "bash", *argv], env=env,
                             pass_fds=(n,), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        text = wait_until(lambda: report.read_text() if report.exists() else None,
                          timeout=20, what=f"the runtime's report (monitor: {res.returncode} {res.stderr})")
    finally:
        listener.close()
    head = text.splitlines()[0]
    pid = re.match(r"PID=(\d+) ", head)
    assert pid, text
    expected = pid[1] if replace else "424242"
    assert head == f"PID={pid[1]} LISTEN_PID={expected} LISTEN_FDS=1", text
    # the socket reached the runtime as fd 3, unduplicated
    fd3 = re.search(r" 3 -> (socket:\[\d+\])", text)
    assert fd3, text
    assert text.count(fd3[1]) == 1, text
