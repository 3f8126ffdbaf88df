"""Property tests: whatever bytes arrive on the ctl and winsz FIFOs, the notify socket or the
attach socket, no loop handler raises, nothing invalid gets through, and the loop still serves.
(tests/integration/test_monitor_fuzz.py does the same against a real container.)"""
from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.monitor.attach import AttachServer
from supervisor.monitor.control import Control
from supervisor.monitor.loop import Loop
from supervisor.monitor.notify import _ALLOWED, NotifyProxy

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

# random bytes, plus lines that look right but are not (huge or odd numbers, wrong counts)
number = st.one_of(st.integers(0, 70000), st.integers(0, 2 ** 80), st.integers(-5, -1))
line = st.builds(lambda nums, sep, end: sep.join(b"%d" % n for n in nums) + end,
                 st.lists(number, min_size=0, max_size=4), st.sampled_from([b" ", b"  ", b"\t", b","]),
                 st.sampled_from([b"\n", b"", b"\r\n", b"\n\n"]))
chunks = st.lists(st.one_of(st.binary(max_size=600), line), min_size=1, max_size=8)


def _settle(loop: Loop, rounds: int = 20) -> None:
    for _ in range(rounds):
        loop.run_once(0)


class Harness:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.loop = Loop(self._fault)
        self.faults: list[str] = []
        self.bundle_fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)

    def _fault(self, what: str, exc: BaseException) -> None:
        self.faults.append(f"{what}: {type(exc).__name__}: {exc}")


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    yield h
    os.close(h.bundle_fd)


@SETTINGS
@given(data=chunks, fifo=st.sampled_from(["ctl", "winsz"]))
def test_fifos_take_any_bytes(harness: Harness, data: list[bytes], fifo: str) -> None:
    sizes: list[tuple[int, int]] = []
    reopens: list[int] = []
    ctl = Control(harness.loop, harness.bundle_fd, lambda r, c: sizes.append((r, c)),
                  lambda: reopens.append(1))
    try:
        w = os.open(harness.tmp / fifo, os.O_WRONLY | os.O_NONBLOCK)
        try:
            for chunk in data:
                if chunk:
                    os.write(w, chunk)
                _settle(harness.loop, 3)
            os.write(w, b"\n1 24 80\n" if fifo == "ctl" else b"\n24 80\n")
            _settle(harness.loop)
        finally:
            os.close(w)
        assert not harness.faults
        assert all(0 <= r <= 0xFFFF and 0 <= c <= 0xFFFF for r, c in sizes)
        assert sizes[-1:] == [(24, 80)]  # still serving: the last, valid line was applied
    finally:
        for fd in ctl.fds:
            harness.loop.remove(fd)
            os.close(fd)


@SETTINGS
@given(datagrams=st.lists(st.one_of(st.binary(max_size=5000), line,
                                    st.sampled_from([b"READY=1", b"STATUS=ok\nMAINPID=1",
                                                     b"WATCHDOG=1\nFDSTORE=1", b"STATUS=\xff"])),
                          min_size=1, max_size=10))
def test_notify_socket_takes_any_datagram(harness: Harness, datagrams: list[bytes]) -> None:
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx_path = harness.tmp / f"systemd-{time.monotonic_ns()}"
    rx.bind(str(rx_path))
    rx.setblocking(False)
    proxy = NotifyProxy(harness.loop, str(harness.tmp), str(rx_path))
    tx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    d = os.open(harness.tmp / "notify", os.O_PATH)
    try:
        for dg in [*datagrams, b"READY=1"]:
            tx.sendto(dg, f"/proc/self/fd/{d}/notify.sock")
            _settle(harness.loop, 2)
        got = []
        while True:
            try:
                got.append(rx.recv(8192))
            except BlockingIOError:
                break
        assert not harness.faults
        for msg in got:  # only whitelisted lines ever reach systemd
            assert msg and all(_ALLOWED.fullmatch(part) for part in msg.split(b"\n")), msg
        assert got[-1:] == [b"READY=1"]  # still serving
    finally:
        os.close(d)
        tx.close()
        proxy.close()
        rx.close()


@SETTINGS
@given(packets=st.lists(st.binary(min_size=1, max_size=40000), min_size=1, max_size=6))
def test_attach_socket_takes_any_packet(harness: Harness, packets: list[bytes]) -> None:
    received: list[bytes] = []
    eofs: list[int] = []
    server = AttachServer(harness.loop, harness.bundle_fd, received.append, lambda: eofs.append(1))
    client = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    d = os.open(harness.tmp, os.O_PATH)
    try:
        client.connect(f"/proc/self/fd/{d}/attach")
        _settle(harness.loop, 2)
        for p in packets:
            client.send(p)
            _settle(harness.loop, 2)
        server.broadcast(2, b"still here")
        assert client.recv(9000) == b"\x02still here"
        client.shutdown(socket.SHUT_WR)
        _settle(harness.loop, 3)
        assert not harness.faults
        assert b"".join(received) == b"".join(p[:32768] for p in packets)
        assert eofs == [1]
    finally:
        os.close(d)
        client.close()
        server.close()
