"""ContainerIO without podman: a real child process on the pipes it makes, a real pty handed
over the console socket as runc does, real attach clients and ctl FIFO writes."""
from __future__ import annotations

import fcntl
import os
import socket
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from supervisor.monitor.cli import LogTarget, Options
from supervisor.monitor.container_io import ContainerIO
from supervisor.monitor.logs import STDERR, STDOUT, LogSinks
from supervisor.monitor.loop import Loop

CID = "d" * 64


class RecordingLog:
    """A log driver that keeps what it is given (the drivers themselves have their own tests)."""

    def __init__(self) -> None:
        self.chunks: list[tuple[int, bytes]] = []
        self.reopens = 0

    def write(self, ts: bytes, stream: int, data: bytes) -> None:
        self.chunks.append((stream, data))

    def reopen(self) -> None:
        self.reopens += 1

    def flush(self, sync: bool) -> None:
        pass

    def close(self) -> None:
        pass

    def stream(self, stream: int) -> bytes:
        return b"".join(d for s, d in self.chunks if s == stream)


def _pump(loop: Loop, until: Callable[[], object], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not until():
        assert time.monotonic() < deadline, "timed out"
        loop.run_once(0.05)


class Setup:
    def __init__(self, bundle: Path, **opts: object) -> None:
        self.bundle = bundle
        self.log = RecordingLog()
        self.loop = Loop()
        self.opts = Options(cid=CID, cuuid=CID, runtime="/bin/true", bundle=str(bundle),
                            container_pidfile="", conmon_pidfile=None, name="n",
                            **{"logs": (LogTarget("k8s-file", "x"),), **opts})
        self.io = ContainerIO(self.loop, self.opts, LogSinks([self.log], False))

    def client(self) -> socket.socket:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        c.connect(str(self.bundle / "attach"))
        assert self.io.attach is not None
        _pump(self.loop, lambda: self.io.attach is not None and self.io.attach.clients)
        return c

    def spawn(self, script: str) -> subprocess.Popen[bytes]:
        """The container: a real process on the fds the runtime would get."""
        child = self.io.child
        proc = subprocess.Popen(["/bin/sh", "-c", script], stdin=child.stdin, stdout=child.stdout,
                                stderr=child.stderr)
        child.close_child_ends()
        self.io.start_output()
        return proc

    def outputs_done(self) -> bool:
        return all(o.eof for o in self.io.outputs)

    def finish(self) -> None:
        self.io.drain_outputs()
        self.io.close_attach(flush_seconds=2)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    d = tmp_path / "bundle with space"
    d.mkdir()
    return d


def _received(c: socket.socket) -> dict[int, bytes]:
    c.settimeout(2)
    got: dict[int, bytes] = {2: b"", 3: b""}
    while True:
        try:
            pkt = c.recv(8193)
        except (TimeoutError, BlockingIOError):
            return got
        if not pkt:
            return got
        got[pkt[0]] += pkt[1:]


def test_pipes_carry_stdin_stdout_and_stderr(bundle: Path) -> None:
    s = Setup(bundle, stdin=True)
    assert {p.name for p in bundle.iterdir()} == {"attach", "ctl", "winsz"}
    proc = s.spawn('read x; echo "got $x"; echo oops >&2')
    c = s.client()
    c.send(b"hello\n")
    _pump(s.loop, s.outputs_done)
    assert proc.wait(10) == 0
    s.finish()
    assert s.log.stream(STDOUT) == b"got hello\n" and s.log.stream(STDERR) == b"oops\n"
    assert _received(c) == {2: b"got hello\n", 3: b"oops\n"}  # the attach stream ids
    assert not (bundle / "attach").exists()  # closed with the clients
    c.close()


def test_a_client_leaving_closes_stdin(bundle: Path) -> None:
    s = Setup(bundle, stdin=True)
    proc = s.spawn("cat")
    c = s.client()
    c.send(b"abc")
    c.shutdown(socket.SHUT_WR)  # podman's stdin ended
    _pump(s.loop, s.outputs_done)
    assert proc.wait(10) == 0  # cat saw EOF
    s.finish()
    assert s.log.stream(STDOUT) == b"abc"
    c.close()


def test_leave_stdin_open_keeps_it_open(bundle: Path) -> None:
    s = Setup(bundle, stdin=True, leave_stdin_open=True)
    proc = s.spawn("exec cat")
    c = s.client()
    c.send(b"abc")
    c.shutdown(socket.SHUT_WR)
    _pump(s.loop, lambda: s.log.stream(STDOUT) == b"abc")
    for _ in range(5):
        s.loop.run_once(0.05)
    assert proc.poll() is None  # still reading its stdin
    proc.kill()
    proc.wait(10)
    _pump(s.loop, s.outputs_done)
    s.finish()
    c.close()


def test_without_stdin_the_container_reads_dev_null(bundle: Path) -> None:
    s = Setup(bundle)
    proc = s.spawn("cat; echo end")
    _pump(s.loop, s.outputs_done)
    assert proc.wait(10) == 0
    s.finish()
    assert s.log.stream(STDOUT) == b"end\n"


def test_runtime_error_is_what_it_wrote_to_stderr(bundle: Path) -> None:
    s = Setup(bundle)
    os.write(s.io.child.stderr, b"runc: bad config\n")
    assert s.io.runtime_error() == b"runc: bad config\n"
    assert s.io.runtime_error() == b""  # nothing more, and no blocking


def test_passthrough_serves_nothing(bundle: Path) -> None:
    s = Setup(bundle, logs=(LogTarget("passthrough"),))
    child = s.io.child
    assert (child.stdin, child.stdout, child.stderr, child.out_r, child.err_r) == (0, 1, 2, -1, -1)
    assert list(bundle.iterdir()) == [] and s.io.attach is None and s.io.control is None
    os.close(child.null)


def _winsize(fd: int) -> tuple[int, int]:
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return rows, cols


@pytest.fixture
def tty(bundle: Path) -> Iterator[tuple[Setup, int]]:
    """A terminal container: the pty master sent over the console socket, as runc does."""
    s = Setup(bundle, terminal=True, stdin=True)
    path = s.io.console_path
    assert path is not None and os.path.exists(path)
    # a resize before the terminal exists is kept and applied on arrival
    fd = os.open(bundle / "ctl", os.O_WRONLY)
    os.write(fd, b"1 30 100\n")
    os.close(fd)
    for _ in range(3):
        s.loop.run_once(0.02)
    master, slave = os.openpty()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as runtime:
        runtime.connect(path)
        socket.send_fds(runtime, [b"\0"], [master])
    os.close(master)
    s.io.child.close_child_ends()  # the runtime's stderr pipe: it has exited
    _pump(s.loop, lambda: s.io.has_terminal)
    assert not os.path.exists(os.path.dirname(path))  # the console socket's dir is gone
    yield s, slave
    try:
        os.close(slave)
    except OSError:
        pass


def test_tty_handover_resize_and_io(tty: tuple[Setup, int]) -> None:
    s, slave = tty
    assert _winsize(slave) == (30, 100)
    s.io.start_output()
    c = s.client()
    os.write(slave, b"line\n")
    _pump(s.loop, lambda: s.log.stream(STDOUT) == b"line\r\n")  # ONLCR on the master side
    c.send(b"typed\n")
    os.set_blocking(slave, False)
    got = b""

    def typed() -> bool:
        nonlocal got
        try:
            got += os.read(slave, 100)
        except BlockingIOError:
            pass
        return got.endswith(b"typed\n")
    _pump(s.loop, typed)
    fd = os.open(s.bundle / "winsz", os.O_WRONLY)
    os.write(fd, b"40 120\n")
    os.close(fd)
    _pump(s.loop, lambda: _winsize(slave) == (40, 120))
    os.close(slave)  # the last slave closes: EIO on the master is the output's end
    _pump(s.loop, s.outputs_done)
    s.finish()
    assert _received(c)[2].startswith(b"line\r\n")
    c.close()
