"""A NOTIFY_SOCKET receiver that never reads must not stall the monitor.

The container floods sd_notify; the receiver (standing in for a PID 1 busy in a daemon-reload)
never reads, so its queue is full after a few datagrams. The container's own sd_notify must not
block, its output must be logged, and its exit recorded at once.

conmon 2.1.6 sends with MSG_DONTWAIT, but on EAGAIN it keeps the datagram and stops reading the
container's socket until systemd takes it, so the container's own sd_notify blocks: known-wrong
reference, strict xfail.
"""
from __future__ import annotations

import os
import select
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.lab.testenv import PodmanEnv
from tests.conftest import CONMON
from tests.integration.helpers import ExitFileWatcher, assert_monitored, cid, wait_until

TOOL_SOURCE = Path(__file__).resolve().parents[1] / "tools" / "sd-notify.c"
LINES = 200


@pytest.fixture(scope="module")
def sd_notify(store: Path) -> Path:
    """tests/tools/sd-notify.c, static, to run inside the busybox container."""
    out = store / "tools"
    out.mkdir(exist_ok=True)
    binary = out / "sd-notify"
    if not binary.exists():
        subprocess.run(["gcc", "-static", "-O2", "-o", str(binary), str(TOOL_SOURCE)], check=True)
    return binary


@pytest.fixture
def deaf_receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    yield sock, path
    sock.close()


def test_receiver_that_never_reads(podman: PodmanEnv, image: str, sd_notify: Path,
                                   deaf_receiver: tuple[socket.socket, str],
                                   tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if podman.monitor == CONMON:
        request.applymarker(pytest.mark.xfail(strict=True, reason=(
            "conmon 2.1.6 stops reading the container's notify socket while systemd's is full, "
            "so the container's sd_notify blocks")))
    receiver, address = deaf_receiver
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    # the flood waits for podman run -d to return: podman's own MAINPID message to the receiver
    # is a blocking send, and would hang podman (not the monitor) once the queue is full
    script = ("while [ ! -e /ctl/go ]; do sleep 0.05; done; /n/sd-notify --flood 500 READY=1 STATUS=flooding; "
              f"i=0; while [ $i -lt {LINES} ]; do echo line $i; i=$((i+1)); done; "
              "while [ ! -e /ctl/stop ]; do sleep 0.05; done; echo last; exit 5")
    watcher = ExitFileWatcher(podman.tmpdir / "exits")
    try:
        p = subprocess.run(podman.argv("run", "-d", "--sdnotify=container", "--name", "deaf",
                                       "-v", f"{sd_notify}:/n/sd-notify:ro", "-v", f"{ctl}:/ctl",
                                       image, "sh", "-c", script),
                           env={**podman.environ(), "NOTIFY_SOCKET": address}, text=True,
                           capture_output=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
        assert p.returncode == 0, p.stderr
        assert_monitored(podman, "deaf")
        (ctl / "go").touch()
        # the flood got through the proxy (sd_notify never blocked) and the output was logged
        wait_until(lambda: f"line {LINES - 1}\n" in podman.run("logs", "deaf").stdout,
                   timeout=30, what="the container's output after its sd_notify flood")
        receiver.setblocking(False)
        assert receiver.recv(4096, socket.MSG_PEEK)  # full, and still nobody reads it
        name = cid(podman, "deaf")
        # timed from the container process's own exit (its pidfd), not from its polling loop
        pidfd = os.pidfd_open(int(podman.inspect("deaf", "{{.State.Pid}}")))
        try:
            (ctl / "stop").touch()
            assert select.select([pidfd], [], [], 20)[0], "the container did not exit"
            t0 = time.monotonic()
        finally:
            os.close(pidfd)
        assert watcher.wait_for(name, timeout=10) == b"5"
        took = time.monotonic() - t0
        assert took < 1.0, f"the exit was recorded {took:.2f}s after the container exited"
    finally:
        watcher.close()
    assert podman.inspect("deaf", "{{.State.Status}} {{.State.ExitCode}}") == "exited 5"
    out = podman.run("logs", "deaf").stdout
    assert out == "".join(f"line {i}\n" for i in range(LINES)) + "last\n"
