"""The container's stdio: output pipes (or the pty master) read in big chunks, and stdin
fed from attach clients without ever blocking the loop."""
from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Callable

from .loop import READ, WRITE, Loop

# 256 KiB reads from a 1 MiB pipe: few syscalls, and buffers small enough to stay in the
# heap (see linux.keep_io_buffers_in_heap) without growing the monitor much after a burst
READ_MAX = 256 << 10
PIPE_SIZE = 1 << 20
HEAP_MMAP_THRESHOLD = 1 << 20
HEAP_TRIM_THRESHOLD = 4 << 20
# ...but not kept while idle: this long after the last big read, the free heap goes back
BURST_QUIET_SECONDS = 2.0
BIG_READ = 64 << 10


class _Trimmer:
    """Hands the heap's free pages back (malloc_trim) once output has been quiet for
    BURST_QUIET_SECONDS after big reads: a timer runs only after a burst, so an idle monitor
    still never wakes up, and a steady stream costs one wake-up per period."""

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.armed = False
        self.busy = False

    def note_big_read(self) -> None:
        self.busy = True
        if not self.armed:
            self.armed = True
            self.loop.call_later(BURST_QUIET_SECONDS, self._check)

    def _check(self) -> None:
        if self.busy:  # still streaming: look again later
            self.busy = False
            self.loop.call_later(BURST_QUIET_SECONDS, self._check)
            return
        self.armed = False
        from .linux import release_free_memory

        try:
            release_free_memory()
        except (OSError, AttributeError):
            pass


_trimmers: dict[int, _Trimmer] = {}  # per loop (one in a monitor)
# at exit, read at most this much more per output: what the process left behind fits in its
# pipe, and a background child that keeps writing must not keep the monitor draining forever
DRAIN_MAX = 2 * PIPE_SIZE


def make_pipe() -> tuple[int, int]:
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        # fewer, larger reads: a bigger pipe lets a fast writer fill more per wake-up
        fcntl.fcntl(r, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass
    return r, w


class Output:
    """One output fd: every chunk goes to `sink(stream, data)`; EOF (or EIO from a pty
    whose last slave closed) calls `on_eof`."""

    def __init__(self, loop: Loop, fd: int, stream: int,
                 sink: Callable[[int, bytes], None], on_eof: Callable[[], None]) -> None:
        self.loop = loop
        self.fd = fd
        self.stream = stream
        self.sink = sink
        self.on_eof = on_eof
        self.eof = False
        self.trimmer = _trimmers.get(id(loop)) or _trimmers.setdefault(id(loop), _Trimmer(loop))
        self.last_read = 0
        os.set_blocking(fd, False)
        loop.add(fd, READ, self._on_event, essential=True)

    def _on_event(self, ev: int) -> None:
        self.read_once()

    def read_once(self) -> bool:
        """Read one chunk; False once nothing is available right now (or ever again)."""
        if self.eof:
            return False
        try:
            data = os.read(self.fd, READ_MAX)
        except BlockingIOError:
            return False
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            data = b""
        if not data:
            self.eof = True
            self.loop.remove(self.fd)
            self.on_eof()
            return False
        if len(data) >= BIG_READ:
            self.trimmer.note_big_read()
        self.last_read = len(data)
        self.sink(self.stream, data)
        return True

    def drain(self, limit: int = DRAIN_MAX) -> None:
        """What is readable now, bounded: the writer may be a background child still running."""
        done = 0
        while done < limit and self.read_once():
            done += self.last_read

    def pause(self, on: bool) -> None:
        """Stop (or resume) reading while a log sink can't take more: the container's writes
        then wait in the pipe, and the loop serves everything else meanwhile."""
        if not self.eof:
            self.loop.modify(self.fd, 0 if on else READ)

    def stop(self) -> None:
        """No more reading (the fd stays open: a background child may still hold the other end)."""
        if not self.eof:
            self.loop.remove(self.fd)
            self.eof = True


class Stdin:
    """The container's stdin (a pipe's write end, or a dup of the pty master)."""

    HIGH_WATER = 1 << 20

    def __init__(self, loop: Loop, fd: int, on_backpressure: Callable[[bool], None]) -> None:
        self.loop = loop
        self.fd: int | None = fd
        self.buf = bytearray()
        self.close_when_drained = False
        self.on_backpressure = on_backpressure
        os.set_blocking(fd, False)

    def write(self, data: bytes) -> None:
        if self.fd is None:
            return
        self.buf += data
        self._flush()

    def _flush(self) -> None:
        assert self.fd is not None
        while self.buf:
            try:
                n = os.write(self.fd, self.buf)
            except BlockingIOError:
                break
            except OSError:  # the reader is gone: nothing will ever take this input
                self.buf.clear()
                self.close()
                return
            del self.buf[:n]
        pending = bool(self.buf)
        if pending and not self.loop.watching(self.fd):
            self.loop.add(self.fd, WRITE, self._on_writable)
        elif not pending and self.loop.watching(self.fd):
            self.loop.remove(self.fd)
        self.on_backpressure(len(self.buf) >= self.HIGH_WATER)
        if not pending and self.close_when_drained:
            self.close()

    def _on_writable(self, ev: int) -> None:
        self._flush()

    def close_after_flush(self) -> None:
        if self.buf:
            self.close_when_drained = True
        else:
            self.close()

    def close(self) -> None:
        if self.fd is None:
            return
        self.loop.remove(self.fd)
        os.close(self.fd)
        self.fd = None
        self.on_backpressure(False)
