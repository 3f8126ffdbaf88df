"""A forked monitor's set-up done in a child that exits, so the monitor that stays is the fork
server's image with as few pages written as possible (server.py has the whole design).

Copy-on-write charges a monitor for every page it writes, and CPython writes the refcount of every
object it touches: the set-up (the hand-over, the option parser, the log drivers, ContainerIO, the
runtime's start) touches ~440 pages, while waiting touches next to none. So the monitor, a
child subreaper that has written almost nothing, forks a set-up child and waits. The child does
all of the set-up; the runtime is its child, and the container reparents to the monitor (the
nearest subreaper above it) once the runtime exits. Then the child sends the monitor every fd it
holds (at the same numbers) and the pickled `Monitor`, and exits. The monitor takes its umask and
argv, waits for the first event on any fd the loop watches (or its first timer), and only then
unpickles the `Monitor` and runs the rest of the container's life, exit command included: an idle
container's monitor never writes the pages that building its objects would.

If the set-up child ends without handing off (the runtime failed, a refusal, --sync), it has done
the container's whole life itself, and the monitor exits with its status.
"""
from __future__ import annotations

import _socket
import io
import marshal
import os
import pickle
import select
import socket
import sys
import time

from .process import open_fds, put_fds

TYPE_CHECKING = False  # typing costs ~2 ms of every start; only type checkers need it
if TYPE_CHECKING:
    from typing import Any

FDS_PER_MESSAGE = 250  # SCM_MAX_FD is 253
HEADER = 8  # fd count, payload length
CMSG_SIZE = socket.CMSG_SPACE(FDS_PER_MESSAGE * 4)


class HandoffFailed(Exception):
    pass


def _adopt_socket(fd: int, timeout: float | None) -> socket.socket:
    sock = socket.socket(fileno=fd)
    sock.settimeout(timeout)
    return sock


# Classes and functions travel as indexes into this table, which the fork server fills (`prepare`)
# and both sides inherit: unpickling by name would run the import system for each (module specs,
# module dicts, ~100 kB of pages touched in the monitor).
_table: list[object] = []
_index: dict[int, int] = {}


def prepare() -> None:
    """In the fork server, once every monitor module is imported."""
    import collections
    import functools

    found: list[object] = [getattr, functools.partial, collections.deque, memoryview, _adopt_socket]
    for name, mod in sorted(sys.modules.items()):
        if name.startswith(__package__ + ".") or name == __package__:
            found += [v for v in vars(mod).values()
                      if isinstance(v, type) or (callable(v) and getattr(v, "__module__", None) == name)]
    for obj in found:
        if id(obj) not in _index:
            _index[id(obj)] = len(_table)
            _table.append(obj)
    _warm_type_cache()


def _warm_type_cache() -> None:
    """Look up, once here, what unpickling and running a monitor's objects looks up on their
    classes: the interpreter's type cache then holds the answers (found or not), and a forked
    monitor reads them instead of walking each class's MRO and writing the cache's pages."""
    for cls in _table:
        if not isinstance(cls, type) or not cls.__module__.startswith(__package__ or "-"):
            continue
        names = {"__setstate__", "__dict__", "__reduce_ex__", *vars(cls)}
        for v in vars(cls).values():
            code = getattr(v, "__code__", None)
            if code is not None:
                names.update(code.co_names)
        for name in sorted(names):
            getattr(cls, name, None)
    import types

    module_names: set[str] = set()
    for name, mod in list(sys.modules.items()):
        if name.startswith(__package__ or "-"):
            for v in vars(mod).values():
                code = getattr(v, "__code__", None)
                if code is not None:
                    module_names.update(code.co_names)
    for name in sorted(module_names):
        getattr(types.ModuleType, name, None)


class _Pickler(pickle.Pickler):
    """Sockets travel as their fd numbers (the fds themselves go as SCM_RIGHTS, to the same
    numbers); memoryviews (an attach client's queue) as their bytes; classes and functions as
    indexes into _table."""

    def persistent_id(self, obj: object) -> int | None:
        return _index.get(id(obj))

    def reducer_override(self, obj: object) -> Any:
        if isinstance(obj, socket.socket):
            return _adopt_socket, (obj.fileno(), obj.gettimeout())
        if isinstance(obj, memoryview):
            return memoryview, (obj.tobytes(),)
        return NotImplemented


class _Unpickler(pickle.Unpickler):
    def persistent_load(self, pid: int) -> object:
        return _table[pid]


def send(conn: int, monitor: object, watch: list[tuple[int, int]], deadline: float | None,
         wakeup_fd: int) -> None:
    """In the set-up child: every fd it holds but `conn`, and the monitor's state; `watch`, the
    loop's (fd, event mask) pairs, `deadline` its first timer (time.monotonic) and `wakeup_fd`
    the signal pipe's write end let the monitor wait for the first event before it unpickles."""
    fds = sorted(open_fds() - {conn})
    inheritable = [os.get_inheritable(fd) for fd in fds]
    umask = os.umask(0)
    os.umask(umask)
    head = marshal.dumps((fds, inheritable, watch, deadline, wakeup_fd, umask, sys.argv[1:]))
    buf = io.BytesIO()
    _Pickler(buf, pickle.HIGHEST_PROTOCOL).dump(monitor)
    payload = len(head).to_bytes(4, "little") + head + buf.getvalue()
    sock = socket.socket(fileno=conn)
    try:
        sock.sendall(len(fds).to_bytes(4, "little") + len(payload).to_bytes(4, "little"))
        for i in range(0, len(fds), FDS_PER_MESSAGE):
            chunk = fds[i:i + FDS_PER_MESSAGE]
            sock.sendmsg([b"f"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                   b"".join(fd.to_bytes(4, sys.byteorder) for fd in chunk))])
        sock.sendall(payload)
    finally:
        sock.detach()


def _recv_exact(sock: _socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        more = sock.recv(n - len(data))
        if not more:
            raise HandoffFailed("the set-up child went away")
        data += more
    return data


def _recv_fds(sock: _socket.socket, count: int) -> list[int]:
    fds: list[int] = []
    size = CMSG_SIZE
    while len(fds) < count:
        data, anc, _, _ = sock.recvmsg(1, size)
        if not data:
            raise HandoffFailed("the set-up child went away")
        for _, _, blob in anc:
            fds += [int.from_bytes(blob[i:i + 4], sys.byteorder) for i in range(0, len(blob) - 3, 4)]
    return fds


class Handed:
    """What the set-up process handed over, its fds already in place."""

    def __init__(self, pickled: bytes, watch: list[tuple[int, int]], deadline: float | None,
                 wakeup_fd: int) -> None:
        self.pickled = pickled
        self.watch = watch
        self.deadline = deadline
        self.wakeup_fd = wakeup_fd

    def wait(self) -> None:
        """Until the first event on any fd the monitor's loop watches (output, a client, a
        signal through the wakeup fd, ...) or its first timer. An idle container's monitor
        stays here, and so never writes the pages that building its objects would."""
        ep = select.epoll()
        try:
            for fd, mask in self.watch:
                ep.register(fd, mask)
            timeout = -1.0 if self.deadline is None else max(0.0, self.deadline - time.monotonic())
            ep.poll(timeout, 1)
        finally:
            ep.close()

    def load(self) -> object:
        """The `Monitor` (pickled)."""
        return _Unpickler(io.BytesIO(self.pickled)).load()


def receive(conn: _socket.socket) -> Handed | None:
    """In the monitor: the set-up child's fds, put at its numbers, its umask and argv, and its
    state; None when it ended without handing over."""
    try:
        head = _recv_exact(conn, HEADER)
    except HandoffFailed:
        return None
    count = int.from_bytes(head[:4], "little")
    received = _recv_fds(conn, count)
    payload = _recv_exact(conn, int.from_bytes(head[4:], "little"))
    n = int.from_bytes(payload[:4], "little")
    targets, inheritable, watch, deadline, wakeup_fd, umask, argv = marshal.loads(payload[4:4 + n])
    if len(targets) != len(received):
        raise HandoffFailed(f"{len(received)} fds for {len(targets)} numbers")
    # at the set-up process's numbers, the server's fds (its lock, listener, pidfd, stdio) closed
    os.close(put_fds(received, targets, inheritable, [conn.detach()])[0])
    # its environment and cwd are the exit command's alone (Monitor.exit_env)
    os.umask(umask)
    sys.argv[1:] = argv
    return Handed(payload[4 + n:], watch, deadline, wakeup_fd)
