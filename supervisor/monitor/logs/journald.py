"""journald driver: one entry per line over journald's native socket protocol, with the
fields podman's journald log reader matches on (CONTAINER_ID_FULL, PRIORITY 6/3, ...).

Sends never block the monitor's loop: the socket is non-blocking and connected, so epoll says
when journald has room again. Entries journald can't take yet wait in order; above QUEUE_HIGH
the container's output is no longer read (backpressure, nothing lost) until the queue drains
below QUEUE_LOW. At exit, journald is given the rest for as long as it keeps taking entries;
once it has taken nothing for EXIT_STALL_SECONDS, what is left is dropped (as is anything
beyond QUEUE_MAX), counted and reported.
"""
from __future__ import annotations

import errno
import socket
import struct
from collections import deque
from collections.abc import Callable

from ..errors import strerror, warn
from ..loop import WRITE
from . import STDOUT

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..loop import Loop

JOURNAL_SOCKET = "/run/systemd/journal/socket"
LINE_MAX = 8192
QUEUE_HIGH = 1 << 20
QUEUE_LOW = 256 << 10
QUEUE_MAX = 16 << 20
EXIT_STALL_SECONDS = 2.0
# journald restarted: its socket is a new one at the same path
_RECONNECT = (errno.ECONNREFUSED, errno.ENOTCONN, errno.ECONNRESET, errno.EPIPE)


def _field(key: bytes, value: bytes) -> bytes:
    if b"\n" in value:
        return key + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"
    return key + b"=" + value + b"\n"


class JournaldLog:
    def __init__(self, cid: str, name: str | None, tag: str | None,
                 path: str = JOURNAL_SOCKET) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                                  | socket.SOCK_NONBLOCK)
        self.connected = False
        self.queue: deque[bytes] = deque()
        self.queued = 0
        self.dropped = 0
        self.loop: Loop | None = None
        self.on_backpressure: Callable[[bool], None] | None = None
        self.paused = False
        ident = tag or name or cid[:12]
        common = [
            _field(b"CONTAINER_ID_FULL", cid.encode()),
            _field(b"CONTAINER_ID", cid[:12].encode()),
            _field(b"SYSLOG_IDENTIFIER", ident.encode()),
        ]
        if name:
            common.append(_field(b"CONTAINER_NAME", name.encode()))
        if tag:
            common.append(_field(b"CONTAINER_TAG", tag.encode()))
        self.common = b"".join(common)
        self.pending: dict[int, bytes] = {}
        self._failing: str | None = None

    def _send(self, stream: int, line: bytes, partial: bool) -> None:
        msg = (b"MESSAGE\n" + struct.pack("<Q", len(line)) + line + b"\n"
               + (b"PRIORITY=6\n" if stream == STDOUT else b"PRIORITY=3\n") + self.common)
        if partial:
            msg += b"CONTAINER_PARTIAL_MESSAGE=true\n"
        if self.queue or not self._transmit(msg):
            self._enqueue(msg)

    # ---- non-blocking delivery ----------------------------------------------------------

    def attach_loop(self, loop: Loop, on_backpressure: Callable[[bool], None]) -> None:
        """From now on a full journald queues entries and pauses the output instead of blocking."""
        self.loop = loop
        self.on_backpressure = on_backpressure

    def _connect(self) -> bool:
        try:
            self.sock.connect(self.path)
        except OSError as e:
            self._fail(e)
            return False
        self.connected = True
        return True

    def _fail(self, e: OSError) -> None:
        if self._failing is None:
            self._failing = strerror(e)
            warn(f"journald ({self.path}): {self._failing}; dropping log lines until it recovers")

    def _transmit(self, msg: bytes) -> bool:
        """True once the entry is dealt with: sent, or dropped because journald fails."""
        for attempt in (1, 2):
            if not self.connected and not self._connect():
                self.dropped += 1
                return True
            try:
                self.sock.send(msg, socket.MSG_NOSIGNAL)
            except BlockingIOError:
                if self.loop is None:  # before the loop exists (never in practice): drop
                    self.dropped += 1
                    return True
                return False
            except OSError as e:
                if e.errno in _RECONNECT and attempt == 1:
                    self.connected = False
                    continue
                self._fail(e)
                self.dropped += 1
                return True
            if self._failing is not None:
                warn(f"journald ({self.path}): logging again after: {self._failing}")
                self._failing = None
            return True
        return True

    def _enqueue(self, msg: bytes) -> None:
        if self.queued + len(msg) > QUEUE_MAX:
            self.dropped += 1
            return
        self.queue.append(msg)
        self.queued += len(msg)
        assert self.loop is not None
        fd = self.sock.fileno()
        if not self.loop.watching(fd):
            self.loop.add(fd, WRITE, self._on_writable)
        if not self.paused and self.queued > QUEUE_HIGH:
            self._pause(True)

    def _pause(self, on: bool) -> None:
        self.paused = on
        if self.on_backpressure is not None:
            self.on_backpressure(on)

    def _on_writable(self, ev: int) -> None:
        self._push()

    def _push(self) -> None:
        while self.queue:
            msg = self.queue[0]
            if not self._transmit(msg):
                break
            self.queue.popleft()
            self.queued -= len(msg)
        if not self.queue and self.loop is not None:
            self.loop.remove(self.sock.fileno())
        if self.paused and self.queued < QUEUE_LOW:
            self._pause(False)

    def _drain_queue(self, stall_seconds: float) -> None:
        """At exit: journald gets what waits while it makes progress; a stall drops the rest.
        (A busy journald is slow, not stuck: a fixed deadline lost a fast writer's tail.)"""
        import select
        import time

        self._push()
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLOUT)
        last_progress = time.monotonic()
        while self.queue:
            left = last_progress + stall_seconds - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                break
            before = len(self.queue)
            self._push()
            if len(self.queue) < before:
                last_progress = time.monotonic()
        if self.queue:
            self.dropped += len(self.queue)
            self.queue.clear()
            self.queued = 0
        if self.loop is not None:
            self.loop.remove(self.sock.fileno())

    def write(self, ts: bytes, stream: int, data: bytes) -> None:
        buf = self.pending.pop(stream, b"") + data
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            line = buf[start:nl + 1]
            while len(line) > LINE_MAX:  # a line too long for one entry: partial pieces
                self._send(stream, line[:LINE_MAX], True)
                line = line[LINE_MAX:]
            self._send(stream, line, False)
            start = nl + 1
        rest = buf[start:]
        while len(rest) >= LINE_MAX:
            self._send(stream, rest[:LINE_MAX], True)
            rest = rest[LINE_MAX:]
        if rest:
            self.pending[stream] = rest

    def reopen(self) -> None:
        pass

    def flush(self, sync: bool) -> None:
        """At exit (the only caller): partial lines out, then what journald hasn't taken yet."""
        for stream, rest in sorted(self.pending.items()):
            self._send(stream, rest, True)
        self.pending.clear()
        if self.queue:
            self._drain_queue(EXIT_STALL_SECONDS)

    def close(self) -> None:
        if self.queue:
            self._drain_queue(0)
        if self.dropped:
            warn(f"journald ({self.path}): {self.dropped} log entries were dropped")
        self.sock.close()


def send_event(message: str, cid: str, name: str | None, priority: int = 3,
               path: str = JOURNAL_SOCKET) -> bool:
    """One journal entry from the monitor itself (e.g. an OOM kill). It names the container
    but has no CONTAINER_ID_FULL, so podman's journald log reader doesn't take it for output."""
    fields = [_field(b"MESSAGE", message.encode()), b"PRIORITY=%d\n" % priority,
              _field(b"SYSLOG_IDENTIFIER", b"podvisor-conmon"),
              _field(b"CONTAINER_ID", cid[:12].encode()),
              _field(b"PODVISOR_CONTAINER_ID", cid.encode())]
    if name:
        fields.append(_field(b"CONTAINER_NAME", name.encode()))
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            # from inside the loop: a full journald loses this event rather than stall us
            s.sendto(b"".join(fields), socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL, path)
        return True
    except OSError:
        return False  # no journald here (PID 1 is not systemd), or it is full
