"""The `ctl` and `winsz` FIFOs in the bundle.

ctl lines are `<type> <a> <b>\n`: type 1 = resize to a rows x b columns, type 2 = reopen the
log. winsz lines are `<rows> <cols>\n`. Every line of a read is handled (conmon 2.1.6 re-read
the first one). Each FIFO is also opened for writing by us, so a writer closing never makes
it hang up and spin the loop.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial

from .errors import warn
from .files import remove_stale
from .loop import READ, Loop

LINE_MAX = 200
SIZE_MAX = 0xFFFF  # struct winsize holds unsigned shorts


def _make_fifo(bundle_fd: int, name: str) -> tuple[int, int]:
    remove_stale(bundle_fd, name)
    os.mkfifo(name, 0o660, dir_fd=bundle_fd)
    flags = os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW
    r = os.open(name, os.O_RDONLY | flags, dir_fd=bundle_fd)
    w = os.open(name, os.O_WRONLY | flags, dir_fd=bundle_fd)
    return r, w


def _ints(line: bytes, n: int) -> list[int] | None:
    parts = line.split()
    if len(parts) != n or not all(p.isdigit() for p in parts):
        return None
    return [int(p) for p in parts]


class Control:
    def __init__(self, loop: Loop, bundle_fd: int, on_resize: Callable[[int, int], None],
                 on_reopen: Callable[[], None]) -> None:
        self.on_resize = on_resize
        self.on_reopen = on_reopen
        self.fds: list[int] = []
        self._bufs: dict[int, bytes] = {}
        for name, handler in (("ctl", self._ctl_line), ("winsz", self._winsz_line)):
            r, w = _make_fifo(bundle_fd, name)
            self.fds += [r, w]
            self._bufs[r] = b""
            loop.add(r, READ, self._reader(r, handler))

    def _reader(self, fd: int, handle: Callable[[bytes], None]) -> Callable[[int], None]:
        return partial(self._on_readable, fd, handle)  # a partial, not a lambda: picklable (handoff.py)

    def _on_readable(self, fd: int, handle: Callable[[bytes], None], ev: int) -> None:
        self._read(fd, handle)

    def _read(self, fd: int, handle: Callable[[bytes], None]) -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        buf = self._bufs[fd] + data
        *lines, rest = buf.split(b"\n")
        for line in lines:
            handle(line)
        if len(rest) > LINE_MAX:
            warn("ctl: discarding an over-long line")
            rest = b""
        self._bufs[fd] = rest

    def _ctl_line(self, line: bytes) -> None:
        vals = _ints(line, 3)
        if vals is None:
            warn(f"ctl: ignoring malformed line {line[:64]!r}")
            return
        kind, a, b = vals
        if kind == 1:
            self._resize(a, b)
        elif kind == 2:
            self.on_reopen()
        else:
            warn(f"ctl: unknown message type {kind}")

    def _winsz_line(self, line: bytes) -> None:
        vals = _ints(line, 2)
        if vals is not None:
            self._resize(*vals)

    def _resize(self, rows: int, cols: int) -> None:
        # conmon 2.1.6 truncates to 16 bits; a size no terminal has is refused instead
        if rows > SIZE_MAX or cols > SIZE_MAX:
            warn(f"ctl: ignoring resize to {rows}x{cols}: out of range")
            return
        self.on_resize(rows, cols)
