"""Property test against a real container, both monitors: random bytes on the ctl and winsz
FIFOs, the notify socket and the attach socket; after each example the monitor still serves
(a new attach client gets the container's output) and at the end podman stops and removes the
container with its real exit code, and systemd's side only ever got whitelisted lines."""
from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.lab.testenv import PodmanEnv
from tests.integration.helpers import assert_monitored, pid_alive

# conmon 2.1.6 forwards READY=1/WATCHDOG=1 only; podvisor its whitelist (monitor/notify.py)
FORWARDABLE = re.compile(
    rb"(?:READY=1|RELOADING=1|STOPPING=1|WATCHDOG=1|WATCHDOG=trigger|STATUS=[^\n]{0,1024}"
    rb"|ERRNO=\d{1,10}|BUSERROR=[A-Za-z0-9_.\-]{1,255}|WATCHDOG_USEC=\d{1,20}"
    rb"|EXTEND_TIMEOUT_USEC=\d{1,20}|MONOTONIC_USEC=\d{1,20}|MAINPID=\d+)")

number = st.one_of(st.integers(0, 65535), st.integers(65536, 2 ** 40))
line = st.builds(lambda kind, a, b: b"%d %d %d\n" % (kind, a, b), st.sampled_from([1, 3, 9]),
                 number, number)
fifo_bytes = st.one_of(st.binary(min_size=1, max_size=300), line)
target = st.sampled_from(["ctl", "winsz", "notify", "attach"])


class Container:
    def __init__(self, podman: PodmanEnv, name: str, receiver: socket.socket) -> None:
        self.podman = podman
        self.name = name
        self.bundle = Path(podman.inspect(name, "{{.StaticDir}}"))
        self.monitor = assert_monitored(podman, name)
        self.receiver = receiver
        self._dir = os.open(self.bundle, os.O_PATH)

    def feed(self, where: str, data: bytes) -> None:
        if where in ("ctl", "winsz"):
            fd = os.open(self.bundle / where, os.O_WRONLY | os.O_NONBLOCK)
            try:
                os.write(fd, data)
            except BlockingIOError:
                pass  # the FIFO is full: the monitor is behind, which the check below tells
            finally:
                os.close(fd)
        elif where == "notify":
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                d = os.open(self.bundle / "notify", os.O_PATH)
                try:
                    s.sendto(data[:4096], socket.MSG_DONTWAIT, f"/proc/self/fd/{d}/notify.sock")
                except BlockingIOError:
                    pass
                finally:
                    os.close(d)
        else:
            with self._attach() as s:
                s.send(data[:8192])

    def _attach(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.connect(f"/proc/self/fd/{self._dir}/attach")
        return s

    def serving(self) -> bool:
        """A fresh attach client gets the container's next tick."""
        with self._attach() as s:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if select.select([s], [], [], 0.5)[0]:
                    pkt = s.recv(8193)
                    if pkt.startswith(b"\x02") and b"tick" in pkt:
                        return True
        return False

    def close(self) -> None:
        os.close(self._dir)


@pytest.mark.timeout(600)
def test_random_bytes_never_stop_the_monitor(podman: PodmanEnv, image: str, tmp_path: Path) -> None:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(tmp_path / "notify"))
    receiver.setblocking(False)
    # a tty, so that resize lines reach the pty (TIOCSWINSZ)
    p = subprocess.run(podman.argv("run", "-d", "-t", "--sdnotify=container", "--name", "fz",
                                   image, "sh", "-c",
                                   # raw: random input must not signal or stop the ticker
                                   "stty raw -echo -isig; trap '' INT QUIT TSTP TTIN TTOU HUP; "
                                   "trap 'exit 7' TERM; while :; do echo tick; sleep 0.1; done"),
                       env={**podman.environ(), "NOTIFY_SOCKET": str(tmp_path / "notify")},
                       text=True, capture_output=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    ctr = Container(podman, "fz", receiver)
    forwarded: list[bytes] = []

    @settings(max_examples=40, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(target, fifo_bytes), min_size=1, max_size=6))
    def example(feeds: list[tuple[str, bytes]]) -> None:
        for where, data in feeds:
            ctr.feed(where, data)
        assert pid_alive(ctr.monitor), "the monitor died"
        assert ctr.serving(), "the monitor no longer serves attach clients"
        while True:
            try:
                forwarded.append(receiver.recv(8192))
            except BlockingIOError:
                break

    try:
        example()
        for msg in forwarded:
            assert all(FORWARDABLE.fullmatch(part) for part in msg.split(b"\n")), msg
        podman.run("stop", "-t", "5", "fz")
        assert podman.inspect("fz", "{{.State.Status}} {{.State.ExitCode}}") == "exited 7"
        podman.run("rm", "fz")
    finally:
        ctr.close()
        receiver.close()
