"""Peers the container can fill up (systemd's notify socket, journald) never block the monitor's
loop: what they can't take yet is queued in order, bounded, and the loss beyond is counted."""
from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path

import pytest

from supervisor.monitor.logs import journald
from supervisor.monitor.logs.journald import JournaldLog
from supervisor.monitor.loop import Loop
from supervisor.monitor.notify import QUEUE_MAX, SystemdSocket

CID = "c" * 64


def _deaf(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    return s


def _read_all(s: socket.socket) -> list[bytes]:
    s.setblocking(False)
    got = []
    while True:
        try:
            got.append(s.recv(1 << 17))
        except BlockingIOError:
            return got


def _pump(loop: Loop, until, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not until() and time.monotonic() < deadline:
        loop.run_once(0.05)


# ---- notify -----------------------------------------------------------------------------------

def test_notify_queues_in_order_while_systemd_does_not_read(tmp_path: Path, capfd) -> None:
    rx = _deaf(tmp_path / "notify")
    loop = Loop()
    sd = SystemdSocket(loop, str(tmp_path / "notify"))
    t0 = time.monotonic()
    for i in range(QUEUE_MAX + 500):
        sd.send(b"STATUS=%d" % i)
    assert time.monotonic() - t0 < 5  # it returned: nothing blocked (a blocking send hangs here)
    assert sd.dropped > 0 and len(sd.queue) == QUEUE_MAX
    assert "not taking notifications" in capfd.readouterr().err
    got: list[bytes] = []

    def more() -> bool:
        got.extend(_read_all(rx))
        return not sd.queue and len(got) == sd.sent
    _pump(loop, more)
    numbers = [int(m.split(b"=")[1]) for m in got]
    assert numbers == sorted(numbers) and numbers[0] == 0  # in order, oldest first
    assert len(got) + sd.dropped == QUEUE_MAX + 500
    assert "takes notifications again" in capfd.readouterr().err
    sd.close()
    assert "dropped" in capfd.readouterr().err
    rx.close()


def test_notify_coalesces_repeats_while_queued(tmp_path: Path) -> None:
    rx = _deaf(tmp_path / "n")
    loop = Loop()
    sd = SystemdSocket(loop, str(tmp_path / "n"))
    for _ in range(1000):
        sd.send(b"WATCHDOG=1")
    assert len(sd.queue) == 1 and sd.dropped == 0
    sd.close()
    rx.close()


def test_notify_abstract_address_and_missing_receiver(tmp_path: Path, capfd) -> None:
    name = f"@pvt-notify-{os.getpid()}"
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind("\0" + name[1:])
    sd = SystemdSocket(Loop(), name)
    sd.send(b"READY=1")
    assert rx.recv(100) == b"READY=1"
    rx.close()
    gone = SystemdSocket(Loop(), str(tmp_path / "nobody"))
    gone.send(b"READY=1")
    assert gone.dropped == 1 and "cannot reach" in capfd.readouterr().err
    sd.close()
    gone.close()


# ---- journald ---------------------------------------------------------------------------------

def _message(entry: bytes) -> bytes:
    i = entry.index(b"MESSAGE\n") + 8
    n = struct.unpack("<Q", entry[i:i + 8])[0]
    return entry[i + 8:i + 8 + n]


def test_journald_pushes_back_instead_of_blocking(tmp_path: Path) -> None:
    rx = _deaf(tmp_path / "journal")
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    loop = Loop()
    log = JournaldLog(CID, "n", None, path=str(tmp_path / "journal"))
    states: list[bool] = []
    log.attach_loop(loop, states.append)
    lines = [b"line %06d\n" % i for i in range(40000)]  # ~1.7 MB of entries: past QUEUE_HIGH
    t0 = time.monotonic()
    for i in range(0, len(lines), 100):
        log.write(b"", 1, b"".join(lines[i:i + 100]))
    assert time.monotonic() - t0 < 10
    assert states == [True]  # the output is paused, not the loop, and nothing is lost
    assert log.dropped == 0
    got: list[bytes] = []

    def done() -> bool:
        got.extend(_read_all(rx))
        return not log.queue and len(got) == len(lines)
    _pump(loop, done, 20)
    assert states == [True, False]
    assert [_message(e) for e in got] == lines
    log.close()
    rx.close()


def test_journald_exit_flush_gives_up_on_a_stall_and_counts_the_loss(tmp_path: Path, capfd,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journald, "EXIT_STALL_SECONDS", 0.3)
    rx = _deaf(tmp_path / "journal")
    loop = Loop()
    log = JournaldLog(CID, None, None, path=str(tmp_path / "journal"))
    log.attach_loop(loop, lambda full: None)
    log.write(b"", 1, b"".join(b"x%d\n" % i for i in range(5000)))
    queued = len(log.queue)
    assert queued > 0
    t0 = time.monotonic()
    log.flush(True)
    assert time.monotonic() - t0 < 3
    assert log.dropped == queued and not log.queue
    log.close()
    assert f"{queued} log entries were dropped" in capfd.readouterr().err
    rx.close()


def test_journald_absent_drops_and_reports_once(tmp_path: Path, capfd) -> None:
    log = JournaldLog(CID, None, None, path=str(tmp_path / "none"))
    log.attach_loop(Loop(), lambda full: None)
    for _ in range(3):
        log.write(b"", 2, b"a\nb\n")
    assert log.dropped == 6
    err = capfd.readouterr().err
    assert err.count("dropping log lines until it recovers") == 1
    log.close()
