"""handoff.py between two real processes, as in the fork server: a set-up process sends its fds and
a pickled object graph (a Loop with a handler, a socket, a timer, a memoryview); the monitor puts
the fds at the same numbers, waits for the loop's first event, then unpickles and runs the loop."""
from __future__ import annotations

import os
import pickle
import select
import signal
import socket
import sys
from collections import deque
from collections.abc import Callable

import pytest

from supervisor.monitor import handoff
from supervisor.monitor.loop import READ, Loop

pytestmark = pytest.mark.timeout(60)  # a wait that never ends must fail, not hang the suite


class Graph:
    """What stands in for the monitor: a loop whose handler reads a pipe and answers on a socket."""

    def __init__(self, loop: Loop, pipe_r: int, peer: socket.socket) -> None:
        self.loop = loop
        self.pipe_r = pipe_r
        self.peer = peer
        self.queue: deque[memoryview] = deque([memoryview(b"queued")])
        self.got = b""
        loop.add(pipe_r, READ, self.on_pipe)

    def on_pipe(self, ev: int) -> None:
        self.got = os.read(self.pipe_r, 100)
        self.peer.send(b"handled " + self.got)


def _child(fn: Callable[[], None]) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fn()
            code = 0
        except BaseException as e:  # reported on the result pipe by fn when it can
            os.write(2, f"child failed: {e!r}\n".encode())
        finally:
            os._exit(code)
    return pid


def _status(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _end(*pids: int) -> None:
    """A failed test's children would wait for ever: kill and reap what is left."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


@pytest.fixture(autouse=True)
def table() -> None:
    handoff.prepare()  # as the fork server does once everything is imported


def _read_line(fd: int) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        more = os.read(fd, 1)
        if not more:
            break
        data += more
    return data


def test_the_monitor_gets_the_fds_at_their_numbers_and_the_graph_after_the_first_event() -> None:
    results_r, results_w = os.pipe()  # monitor -> test (its write end is handed over too)
    go_r, go_w = os.pipe()  # test -> set-up process: now write the event
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    peer_a, peer_b = socket.socketpair()
    kept_inheritable = os.dup(0)
    os.set_inheritable(kept_inheritable, True)

    def monitor() -> None:
        theirs.close()
        os.dup2(0, 900)  # an fd of the monitor's own (the server's, in real life), above all others
        handed = handoff.receive(ours)
        assert handed is not None
        stray = 900 in {int(n) for n in os.listdir("/proc/self/fd")}
        os.write(results_w, b"waiting %d %d\n" % (os.get_inheritable(kept_inheritable), stray))
        handed.wait()  # until the set-up process writes the pipe
        ready = select.select([handed.watch[0][0]], [], [], 0)[0]
        os.write(results_w, b"woke readable %d\n" % len(ready))
        graph = handed.load()
        assert isinstance(graph, Graph) and isinstance(graph.loop, Loop)
        assert isinstance(graph.peer, socket.socket) and graph.peer.fileno() == peer_a.fileno()
        graph.loop.run_once(5)
        os.write(results_w, b"%s %s %d\n" % (graph.got, bytes(graph.queue[0]), len(sys.argv)))

    def setup() -> None:
        ours.close()
        pipe_r, pipe_w = os.pipe2(os.O_CLOEXEC)
        loop = Loop()
        graph = Graph(loop, pipe_r, peer_a)
        sys.argv[1:] = ["--api-version", "1"]
        handoff.send(theirs.fileno(), graph, *loop.wait_set(), pipe_w)
        os.read(go_r, 1)
        os.write(pipe_w, b"event")

    mon = _child(monitor)
    setup_pid = _child(setup)
    for fd in (results_w, go_r):
        os.close(fd)
    ours.close()
    theirs.close()
    try:
        # the inheritable fd stays so, the monitor's own are closed; it waits before anything
        # is written
        assert _read_line(results_r) == b"waiting 1 0\n"
        os.write(go_w, b"x")
        assert _read_line(results_r) == b"woke readable 1\n"  # not before the event
        assert _status(setup_pid) == 0
        assert _read_line(results_r) == b"event queued 3\n"
        # the restored socket object is the same socket, working
        assert peer_b.recv(100) == b"handled event"
        assert _status(mon) == 0
    finally:
        _end(mon, setup_pid)
        for fd in (results_r, go_w, kept_inheritable):
            os.close(fd)
        peer_a.close()
        peer_b.close()


def test_the_wait_ends_at_the_loops_first_timer() -> None:
    results_r, results_w = os.pipe()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    fired: list[str] = []

    def monitor() -> None:
        theirs.close()
        handed = handoff.receive(ours)
        assert handed is not None and handed.deadline is not None
        handed.wait()  # no fd ever becomes readable: only the timer ends this
        loop = handed.load()
        assert isinstance(loop, Loop)
        loop.run_once(5)
        os.write(results_w, b"timer %d\n" % len(fired))

    def setup() -> None:
        ours.close()
        r, _ = os.pipe2(os.O_CLOEXEC)  # never written
        loop = Loop()
        loop.add(r, READ, os.close)  # never called: the fd is never readable
        loop.call_later(0.2, fired.clear)  # a picklable callback, run by the monitor's loop
        handoff.send(theirs.fileno(), loop, *loop.wait_set(), r)

    mon = _child(monitor)
    setup_pid = _child(setup)
    os.close(results_w)
    ours.close()
    theirs.close()
    try:
        assert _status(setup_pid) == 0
        assert _read_line(results_r) == b"timer 0\n"
        assert _status(mon) == 0
    finally:
        _end(mon, setup_pid)
        os.close(results_r)


def test_no_handover_when_the_setup_process_ends_without() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    theirs.close()
    try:
        assert handoff.receive(ours) is None
    finally:
        ours.close()


def test_a_graph_that_cannot_travel_is_an_error_for_the_setup_process() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        loop = Loop()
        loop.call_later(10, lambda: None)  # a lambda cannot be pickled: the handlers must be methods
        with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
            handoff.send(theirs.fileno(), loop, *loop.wait_set(), 0)
    finally:
        ours.close()
        theirs.close()
