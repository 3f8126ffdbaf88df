"""The container's sd_notify socket, proxied to systemd.

podman mounts `<bundle>/notify` into the container as /run/notify and points NOTIFY_SOCKET
there; we bind `notify.sock` in it and forward what systemd should hear from the service's
main process (us): readiness, status, watchdog. MAINPID (systemd's main PID must stay the
monitor), FDSTORE and anything unknown are dropped, as are oversized or malformed datagrams.

Nothing here may block the monitor's only loop: the container's socket is always read, and
sends to systemd are non-blocking on a connected socket (so epoll can say when systemd has
room again). While systemd doesn't read (busy PID 1, a flooding container), up to QUEUE_MAX
messages wait in order; beyond that they are dropped, counted and reported.
"""
from __future__ import annotations

import os
import re
import socket
from collections import deque

from .. import notifysocket
from .errors import warn
from .loop import READ, WRITE, Loop

DATAGRAM_MAX = 4096
QUEUE_MAX = 64  # datagrams; systemd's own socket queue is about this deep too
_ALLOWED = re.compile(
    rb"(?:READY=1|RELOADING=1|STOPPING=1|WATCHDOG=1|WATCHDOG=trigger"
    rb"|STATUS=[^\n]{0,1024}|ERRNO=\d{1,10}|BUSERROR=[A-Za-z0-9_.\-]{1,255}"
    rb"|WATCHDOG_USEC=\d{1,20}|EXTEND_TIMEOUT_USEC=\d{1,20}|MONOTONIC_USEC=\d{1,20})"
)


def filter_message(data: bytes) -> bytes:
    """The lines of one datagram that may reach systemd, joined again; b"" for none."""
    if b"\0" in data:
        return b""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return b""
    keep = [line for line in data.split(b"\n") if _ALLOWED.fullmatch(line)]
    return b"\n".join(keep)


class SystemdSocket:
    """Non-blocking, ordered, bounded delivery to systemd's NOTIFY_SOCKET ('@' = abstract)."""

    def __init__(self, loop: Loop, address: str) -> None:
        self.loop = loop
        self.display = address
        self.sock: socket.socket | None = None
        self.queue: deque[bytes] = deque()
        self.sent = 0
        self.dropped = 0
        self._dropping = False  # reported once per episode, not per message
        self._failing: str | None = None
        self._connect()

    def _connect(self) -> bool:
        self._close_sock()
        try:
            sock = notifysocket.connect(self.display)
        except OSError as e:
            self._fail(f"cannot reach systemd's notify socket {self.display}: {e}")
            return False
        self.sock = sock
        return True

    def _close_sock(self) -> None:
        if self.sock is not None:
            self.loop.remove(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def _fail(self, text: str) -> None:
        if self._failing != text:
            self._failing = text
            warn(text)

    def send(self, msg: bytes) -> None:
        if self.queue:
            self._enqueue(msg)
            return
        if not self._try(msg):
            self._enqueue(msg)

    def _try(self, msg: bytes) -> bool:
        """True once the message is dealt with (sent, or refused for good)."""
        for attempt in (1, 2):
            if self.sock is None and not self._connect():
                self._count_drop(1)
                return True
            assert self.sock is not None
            try:
                notifysocket.send(self.sock, msg)
            except BlockingIOError:
                return False
            except OSError as e:
                if e.errno in notifysocket.RECONNECT and attempt == 1:
                    self._close_sock()
                    continue
                self._fail(f"sd_notify to systemd failed: {e}")
                self._count_drop(1)
                return True
            self.sent += 1
            self._failing = None
            return True
        return True

    def _enqueue(self, msg: bytes) -> None:
        if self.queue and self.queue[-1] == msg:
            return  # the same state again (WATCHDOG=1, STATUS=…): systemd gets it once
        if len(self.queue) >= QUEUE_MAX:
            self._count_drop(1)
            return
        self.queue.append(msg)
        self._watch()

    def _watch(self) -> None:
        if self.sock is not None and not self.loop.watching(self.sock.fileno()):
            self.loop.add(self.sock.fileno(), WRITE, self._on_writable)

    def _count_drop(self, n: int) -> None:
        self.dropped += n
        if not self._dropping:
            self._dropping = True
            warn(f"systemd is not taking notifications on {self.display}: "
                 "dropping them until it does")

    def _on_writable(self, ev: int) -> None:
        self.flush()

    def flush(self) -> None:
        while self.queue:
            if not self._try(self.queue[0]):
                self._watch()  # the socket may be a new one after a reconnect
                return
            self.queue.popleft()
        if self.sock is not None:
            self.loop.remove(self.sock.fileno())
        if self._dropping:
            self._dropping = False
            warn(f"systemd takes notifications again; {self.dropped} dropped so far")

    def close(self) -> None:
        if self.queue:
            self.flush()
        if self.queue:
            self.dropped += len(self.queue)
            self.queue.clear()
        if self.dropped:
            warn(f"{self.dropped} notifications to systemd were dropped: it did not read them")
        self._close_sock()


class NotifyProxy:
    def __init__(self, loop: Loop, bundle: str, host_socket: str) -> None:
        self.loop = loop
        self.systemd = SystemdSocket(loop, host_socket)
        d = os.path.join(bundle, "notify")
        os.makedirs(d, mode=0o755, exist_ok=True)
        self.dir_fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            os.unlink("notify.sock", dir_fd=self.dir_fd)
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                                  | socket.SOCK_NONBLOCK)
        # through the directory fd: bundle paths easily exceed sun_path's 108 bytes
        self.path = f"/proc/self/fd/{self.dir_fd}/notify.sock"
        old = os.umask(0)  # any user in the container may notify: the socket is 0777
        try:
            self.sock.bind(self.path)
        finally:
            os.umask(old)
        loop.add(self.sock.fileno(), READ, self._on_event)
        self.forwarded = 0
        self.dropped = 0

    def _on_event(self, ev: int) -> None:
        try:
            data, anc, flags, _ = self.sock.recvmsg(DATAGRAM_MAX, socket.CMSG_SPACE(16 * 4))
        except BlockingIOError:
            return
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                # FDSTORE and friends: we never pass fds on, so don't keep them open either
                for i in range(0, len(payload) - len(payload) % 4, 4):
                    try:
                        os.close(int.from_bytes(payload[i:i + 4], "little"))
                    except OSError:
                        pass
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            self.dropped += 1
            return
        msg = filter_message(data)
        if msg:
            self.send(msg)
        else:
            self.dropped += 1

    def send(self, msg: bytes) -> None:
        self.forwarded += 1
        self.systemd.send(msg)

    def close(self) -> None:
        self.systemd.close()
        self.loop.remove(self.sock.fileno())
        self.sock.close()
        try:
            os.unlink("notify.sock", dir_fd=self.dir_fd)
        except OSError:
            pass
        os.close(self.dir_fd)
