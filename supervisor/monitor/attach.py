"""The attach socket: `<bundle>/attach`, SEQPACKET, 0700.

Output goes to every client as packets of one stream byte (2 stdout, 3 stderr) plus at most
8192 bytes, which is what podman's 8193-byte reads expect. Client packets are raw stdin.
Sends never block: a client that doesn't read gets its packets queued, and is dropped once
its queue passes QUEUE_MAX, so a stuck client can't stall the container.
"""
from __future__ import annotations

import os
import select
import socket
import time
from collections import deque
from collections.abc import Callable

from .errors import warn
from .files import remove_stale
from .loop import READ, WRITE, Loop

_HUP = select.EPOLLHUP
_ERR = select.EPOLLERR

PACKET_DATA_MAX = 8192
CLIENT_READ_MAX = 32768
QUEUE_MAX = 64 << 20
SNDBUF = 1 << 20


class Client:
    def __init__(self, server: AttachServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        self.queue: deque[memoryview] = deque()
        self.queued = 0
        self.reading = True
        self.writable = True

    def _update(self) -> None:
        mask = (READ if self.reading and self.server.input_enabled else 0) | (WRITE if self.queue else 0)
        self.server.loop.modify(self.fd, mask)

    def send(self, packet: bytes) -> None:
        if not self.writable:
            return
        if not self.queue:
            try:
                self.sock.send(packet, socket.MSG_DONTWAIT)
                return
            except BlockingIOError:
                pass
            except OSError:
                self._stop_output()
                return
        if self.queued + len(packet) > QUEUE_MAX:
            warn("attach client is not reading its output; disconnecting it")
            self.server.drop(self)
            return
        self.queue.append(memoryview(packet))
        self.queued += len(packet)
        self._update()

    def _flush(self) -> None:
        while self.queue:
            pkt = self.queue[0]
            try:
                self.sock.send(pkt, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                self._stop_output()
                return
            self.queue.popleft()
            self.queued -= len(pkt)
        self._update()

    def _stop_output(self) -> None:
        self.writable = False
        self.queue.clear()
        self.queued = 0
        if not self.reading:
            self.server.drop(self)
        else:
            self._update()

    def on_event(self, ev: int) -> None:
        if ev & WRITE:
            self._flush()
        if self.reading and ev & (READ | _HUP | _ERR):
            self._read()
        elif ev & (_HUP | _ERR):
            self.server.drop(self)

    def _read(self) -> None:
        try:
            data = self.sock.recv(CLIENT_READ_MAX)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.server.on_input(data)
            return
        # EOF: the client is done sending (podman shuts down its write side when its stdin
        # ends); keep sending it output until it goes away.
        self.reading = False
        self.server.on_client_eof()
        if self.writable:
            self._update()
        else:
            self.server.drop(self)


class AttachServer:
    def __init__(self, loop: Loop, bundle_fd: int, on_input: Callable[[bytes], None],
                 on_client_eof: Callable[[], None]) -> None:
        self.loop = loop
        self.bundle_fd = bundle_fd
        self.on_input = on_input
        self.on_client_eof = on_client_eof
        self.clients: dict[int, Client] = {}
        self.input_enabled = True
        self.path = f"/proc/self/fd/{bundle_fd}/attach"
        remove_stale(bundle_fd, "attach")  # a stale socket, or anything planted there
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC
                                      | socket.SOCK_NONBLOCK)
        # bind through the directory fd: long bundle paths exceed sun_path's 108 bytes
        old = os.umask(0o077)
        try:
            self.listener.bind(self.path)
        finally:
            os.umask(old)
        self.listener.listen(10)
        loop.add(self.listener.fileno(), READ, self._accept)

    def _accept(self, ev: int) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
        except OSError:
            pass
        c = Client(self, sock)
        self.clients[c.fd] = c
        self.loop.add(c.fd, READ if self.input_enabled else 0, c.on_event)

    def broadcast(self, stream_id: int, data: bytes) -> None:
        if not self.clients:
            return
        head = bytes((stream_id,))
        for off in range(0, len(data), PACKET_DATA_MAX):
            pkt = head + data[off:off + PACKET_DATA_MAX]
            for c in list(self.clients.values()):
                c.send(pkt)

    def set_input_enabled(self, on: bool) -> None:
        """Stop reading clients while the container's stdin is full (no unbounded buffering)."""
        if on == self.input_enabled:
            return
        self.input_enabled = on
        for c in self.clients.values():
            c._update()

    def drop(self, c: Client) -> None:
        if self.clients.pop(c.fd, None) is None:
            return
        self.loop.remove(c.fd)
        c.sock.close()

    def flush(self, deadline: float) -> None:
        """At exit: give clients until `deadline` to take what is queued for them."""
        self.set_input_enabled(False)
        while any(c.queue for c in self.clients.values()):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.loop.run_once(left)

    def close(self) -> None:
        for c in list(self.clients.values()):
            self.drop(c)
        self.loop.remove(self.listener.fileno())
        self.listener.close()
        try:
            os.unlink("attach", dir_fd=self.bundle_fd)
        except OSError:
            pass
