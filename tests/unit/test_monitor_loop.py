"""The monitor's event loop contains faults: an exception out of a handler or timer is reported
with its traceback and the loop goes on; a handler stuck failing is dropped, or, if the monitor
cannot do without it, ends the loop with LoopFailed for the monitor to contain."""
from __future__ import annotations

import os
import re
import time

import pytest

from supervisor.monitor import errors
from supervisor.monitor.loop import FAULT_LIMIT, READ, Loop, LoopFailed


class Recorder:
    def __init__(self) -> None:
        self.faults: list[tuple[str, BaseException]] = []

    def __call__(self, what: str, exc: BaseException) -> None:
        self.faults.append((what, exc))


@pytest.fixture
def pipe():
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def test_a_failing_handler_is_reported_and_the_loop_goes_on(pipe) -> None:
    r, w = pipe
    rec = Recorder()
    loop = Loop(rec)
    got: list[bytes] = []

    def handler(ev: int) -> None:
        data = os.read(r, 100)
        if data == b"boom":
            raise ValueError("bad input")
        got.append(data)

    loop.add(r, READ, handler)
    os.write(w, b"boom")
    loop.run_once(0)
    os.write(w, b"fine")
    loop.run_once(0)
    assert got == [b"fine"]
    assert len(rec.faults) == 1 and isinstance(rec.faults[0][1], ValueError)
    assert "handler" in rec.faults[0][0] and f"fd {r}" in rec.faults[0][0]
    assert loop.watching(r)


def test_a_stuck_handler_is_dropped_after_the_limit(pipe) -> None:
    r, w = pipe
    rec = Recorder()
    loop = Loop(rec)
    calls = []

    def stuck(ev: int) -> None:  # never reads: level-triggered epoll calls it again and again
        calls.append(ev)
        raise RuntimeError("stuck")

    loop.add(r, READ, stuck)
    os.write(w, b"x")
    for _ in range(FAULT_LIMIT + 3):
        loop.run_once(0)
    assert len(calls) == FAULT_LIMIT
    assert not loop.watching(r)
    assert "no longer watched" in str(rec.faults[-1][1])


def test_successes_reset_the_count(pipe) -> None:
    r, w = pipe
    loop = Loop(Recorder())
    n = [0]

    def flaky(ev: int) -> None:
        os.read(r, 1)
        n[0] += 1
        if n[0] % 2:
            raise RuntimeError("every other call")

    loop.add(r, READ, flaky)
    for _ in range(4 * FAULT_LIMIT):
        os.write(w, b"x")
        loop.run_once(0)
    assert loop.watching(r)


def test_a_stuck_essential_handler_ends_the_loop(pipe) -> None:
    r, w = pipe
    loop = Loop(Recorder())
    def stuck(ev: int) -> None:
        raise ZeroDivisionError("stuck")

    loop.add(r, READ, stuck, essential=True)
    os.write(w, b"x")
    with pytest.raises(LoopFailed, match="ZeroDivisionError"):
        loop.run(lambda: False)


def test_a_failing_timer_is_reported_and_later_timers_run() -> None:
    rec = Recorder()
    loop = Loop(rec)
    fired: list[int] = []

    def failing() -> None:
        fired.append(1)
        raise IndexError("timer")

    loop.call_later(0, failing)
    loop.call_later(0, lambda: fired.append(2))
    loop.run_once(0)
    assert fired == [1, 2]
    assert len(rec.faults) == 1 and isinstance(rec.faults[0][1], IndexError)


def test_a_failing_fault_reporter_does_not_break_the_loop(pipe) -> None:
    r, w = pipe

    def broken_reporter(what: str, exc: BaseException) -> None:
        raise OSError("diagnostics gone")

    loop = Loop(broken_reporter)
    def failing(ev: int) -> None:
        os.read(r, 1)
        raise ZeroDivisionError("handler")

    loop.add(r, READ, failing)
    os.write(w, b"x")
    loop.run_once(0)
    assert loop.fault_count == 1


def test_report_exception_logs_the_traceback(capsys, monkeypatch) -> None:
    monkeypatch.setattr(errors, "_faults_reported", 0)

    def inner() -> None:
        raise KeyError("the key")

    try:
        inner()
    except KeyError as e:
        errors.report_exception("handler X", e)
    err = capsys.readouterr().err
    assert err.startswith("[conmon:e]: unexpected exception in handler X: KeyError")
    assert "Traceback (most recent call last)" in err and "in inner" in err


def test_report_exception_is_bounded(capsys, monkeypatch) -> None:
    monkeypatch.setattr(errors, "_faults_reported", 0)
    for _ in range(1000):
        errors.report_exception("flood", RuntimeError("x"))
    err = capsys.readouterr().err
    assert err.count("unexpected exception in flood") == errors.FAULT_TRACEBACKS
    assert len(re.findall(r"\d+ unexpected exceptions so far", err)) == (1000 - 0) // 100


# ---- the loop itself: events, timers, and no wake-ups while idle ---------------------------------

def _count_iterations(loop: Loop, until) -> int:
    """How many times the loop went round (it checks `until` once per round)."""
    rounds = [0]

    def check() -> bool:
        rounds[0] += 1
        return bool(until())
    loop.run(check)
    return rounds[0] - 1


def _write_later(fd: int, data: bytes, seconds: float) -> int:
    pid = os.fork()
    if pid == 0:
        time.sleep(seconds)
        os.write(fd, data)
        os._exit(0)
    return pid


def test_an_idle_loop_sleeps_until_its_fd_is_ready(pipe) -> None:
    r, w = pipe
    loop = Loop()
    got: list[bytes] = []
    loop.add(r, READ, lambda ev: got.append(os.read(r, 100)))
    child = _write_later(w, b"late", 0.3)
    t0 = time.monotonic()
    rounds = _count_iterations(loop, lambda: got)
    os.waitpid(child, 0)
    assert got == [b"late"]
    assert rounds == 1  # one epoll_wait, woken by the write: no polling meanwhile
    assert time.monotonic() - t0 >= 0.25


def test_timers_fire_in_order_and_the_loop_sleeps_between_them() -> None:
    """Also: a timer that ends `run`'s wait is seen at once (epoll would otherwise sleep for
    ever once the last timer has fired)."""
    loop = Loop()
    fired: list[str] = []
    loop.call_later(0.2, lambda: fired.append("b"))
    loop.call_later(0.1, lambda: fired.append("a"))
    loop.call_later(0.2, lambda: fired.append("c"))  # same time as b: after it
    rounds = _count_iterations(loop, lambda: len(fired) == 3)
    assert fired == ["a", "b", "c"]
    assert rounds <= 6  # a sleep to each deadline and a look after each firing: no polling


def test_modify_and_remove(pipe) -> None:
    r, w = pipe
    loop = Loop()
    calls: list[int] = []
    loop.add(r, READ, calls.append)
    os.write(w, b"x")
    loop.modify(r, 0)  # paused: the data waits
    loop.run_once(0)
    assert calls == []
    loop.modify(r, READ)
    loop.run_once(0)
    assert calls == [READ]
    loop.remove(r)
    assert not loop.watching(r)
    loop.run_once(0)
    assert calls == [READ]
    loop.remove(r)  # twice is harmless


def test_run_once_bounded_wait_returns_without_events() -> None:
    loop = Loop()
    t0 = time.monotonic()
    loop.run_once(0.1)
    assert 0.05 <= time.monotonic() - t0 < 5
