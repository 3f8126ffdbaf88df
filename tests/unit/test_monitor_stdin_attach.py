"""The container's stdin and the attach socket, on real pipes and SEQPACKET sockets: input is
never lost or reordered, a full stdin pushes back on attach clients instead of buffering
without bound, and output reaches every client in podman's packet framing."""
from __future__ import annotations

import fcntl
import os
import socket
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from supervisor.monitor import attach
from supervisor.monitor.attach import PACKET_DATA_MAX, AttachServer
from supervisor.monitor.loop import Loop
from supervisor.monitor.stdio import Stdin


def _pump(loop: Loop, until: Callable[[], object], seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not until():
        assert time.monotonic() < deadline, "timed out"
        loop.run_once(0.05)


@pytest.fixture
def small_pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe2(os.O_CLOEXEC)
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)
    os.set_blocking(r, False)
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def _read_all(fd: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


# ---- Stdin ------------------------------------------------------------------------------------

def test_stdin_queues_what_the_pipe_cannot_take_and_pushes_back(small_pipe, monkeypatch) -> None:
    r, w = small_pipe
    monkeypatch.setattr(Stdin, "HIGH_WATER", 16 << 10)
    loop = Loop()
    states: list[bool] = []
    stdin = Stdin(loop, w, states.append)
    data = bytes(range(256)) * 200  # 51200 bytes, far more than the 4 KiB pipe holds
    t0 = time.monotonic()
    stdin.write(data)
    assert time.monotonic() - t0 < 1  # did not block on the full pipe
    assert len(stdin.buf) > Stdin.HIGH_WATER and states[-1] is True
    assert loop.watching(w)  # waits for room through the loop
    got = b""

    def drained() -> bool:
        nonlocal got
        got += _read_all(r)
        return len(got) == len(data)
    _pump(loop, drained)
    assert got == data  # all of it, in order
    assert states[-1] is False and not loop.watching(w)


def test_stdin_close_after_flush_delivers_then_closes(small_pipe) -> None:
    r, w = small_pipe
    loop = Loop()
    stdin = Stdin(loop, w, lambda full: None)
    data = b"x" * 20000
    stdin.write(data)
    stdin.close_after_flush()
    assert stdin.fd is not None  # still data to deliver
    got = b""

    def eof() -> bool:
        nonlocal got
        try:
            chunk = os.read(r, 1 << 16)
        except BlockingIOError:
            return False
        got += chunk
        return chunk == b""
    _pump(loop, eof)
    assert got == data and stdin.fd is None


def test_stdin_whose_reader_is_gone_drops_input(small_pipe) -> None:
    r, w = small_pipe
    os.close(r)
    loop = Loop()
    states: list[bool] = []
    stdin = Stdin(loop, w, states.append)
    stdin.write(b"nobody reads this")  # EPIPE (SIGPIPE is ignored in Python)
    assert stdin.fd is None and not stdin.buf and states[-1] is False
    stdin.write(b"more")  # no-op once closed
    assert stdin.fd is None


# ---- the attach socket ------------------------------------------------------------------------

class Bundle:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.loop = Loop()
        self.input: list[bytes] = []
        self.eofs = 0
        self.server = AttachServer(self.loop, self.fd, self.input.append, self._eof)

    def _eof(self) -> None:
        self.eofs += 1

    def client(self) -> socket.socket:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        c.connect(str(self.path / "attach"))
        _pump(self.loop, lambda: len(self.server.clients) >= 1)
        return c


@pytest.fixture
def bundle(tmp_path: Path) -> Iterator[Bundle]:
    b = Bundle(tmp_path)
    yield b
    b.server.close()
    os.close(b.fd)


def _packets(c: socket.socket, n: int) -> list[bytes]:
    c.settimeout(5)
    return [c.recv(PACKET_DATA_MAX + 1) for _ in range(n)]


def test_attach_socket_is_private_and_replaces_a_stale_one(tmp_path: Path) -> None:
    (tmp_path / "attach").write_text("planted")
    b = Bundle(tmp_path)
    st = (tmp_path / "attach").stat()
    assert stat.S_ISSOCK(st.st_mode) and (st.st_mode & 0o777) == 0o700
    b.server.close()
    assert not (tmp_path / "attach").exists()
    os.close(b.fd)


def test_output_goes_to_every_client_in_podmans_framing(bundle: Bundle) -> None:
    a, b = bundle.client(), bundle.client()
    _pump(bundle.loop, lambda: len(bundle.server.clients) == 2)
    data = os.urandom(PACKET_DATA_MAX * 2 + 100)
    bundle.server.broadcast(2, data)
    bundle.server.broadcast(3, b"err")
    for c in (a, b):
        pkts = _packets(c, 4)
        assert [p[0] for p in pkts] == [2, 2, 2, 3]
        assert [len(p) - 1 for p in pkts] == [PACKET_DATA_MAX, PACKET_DATA_MAX, 100, 3]
        assert b"".join(p[1:] for p in pkts[:3]) == data and pkts[3][1:] == b"err"
        c.close()


def test_client_input_and_eof(bundle: Bundle) -> None:
    c = bundle.client()
    c.send(b"hello")
    c.send(b" world")
    _pump(bundle.loop, lambda: b"".join(bundle.input) == b"hello world")
    c.shutdown(socket.SHUT_WR)  # as podman does when its stdin ends
    _pump(bundle.loop, lambda: bundle.eofs == 1)
    bundle.server.broadcast(2, b"still there")  # output still flows after its EOF
    assert _packets(c, 1) == [b"\x02still there"]
    c.close()
    _pump(bundle.loop, lambda: not bundle.server.clients)  # gone: dropped


def test_input_paused_while_stdin_is_full(bundle: Bundle) -> None:
    c = bundle.client()
    bundle.server.set_input_enabled(False)
    c.send(b"wait")
    for _ in range(5):
        bundle.loop.run_once(0.02)
    assert bundle.input == []  # left in the socket: the client's sends block, not our memory
    bundle.server.set_input_enabled(True)
    _pump(bundle.loop, lambda: bundle.input == [b"wait"])
    c.close()


def test_a_client_that_does_not_read_is_queued_then_dropped(bundle: Bundle, monkeypatch,
                                                         capfd) -> None:
    monkeypatch.setattr(attach, "QUEUE_MAX", 1 << 20)
    deaf = bundle.client()
    ok = bundle.client()
    _pump(bundle.loop, lambda: len(bundle.server.clients) == 2)
    ok.setblocking(False)
    chunk = b"y" * PACKET_DATA_MAX
    received = 0
    t0 = time.monotonic()
    for _ in range(2000):  # 16 MB: past the socket buffer and QUEUE_MAX
        bundle.server.broadcast(2, chunk)
        try:
            while True:
                received += len(ok.recv(PACKET_DATA_MAX + 1)) - 1
        except BlockingIOError:
            pass
    assert time.monotonic() - t0 < 30  # broadcast never blocked
    assert len(bundle.server.clients) == 1  # the deaf one is gone, the reader stays
    assert "not reading its output; disconnecting it" in capfd.readouterr().err
    ok.setblocking(True)
    deaf.close()
    ok.close()
    assert received > 0


def test_exit_flush_gives_queued_output_to_a_slow_client(bundle: Bundle) -> None:
    c = bundle.client()
    data = b"z" * (PACKET_DATA_MAX * 1024)  # 8 MB, past the socket buffer: some is queued
    bundle.server.broadcast(2, data)
    assert any(cl.queue for cl in bundle.server.clients.values())
    pid = os.fork()
    if pid == 0:  # the client reads, slowly, while the server flushes
        try:
            time.sleep(0.2)
            c.settimeout(5)
            total = 0
            while total < len(data):
                total += len(c.recv(PACKET_DATA_MAX + 1)) - 1
            os._exit(0 if total == len(data) else 1)
        finally:
            os._exit(2)
    bundle.server.flush(time.monotonic() + 10)
    assert not any(cl.queue for cl in bundle.server.clients.values())
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0  # it got every byte
    c.close()
