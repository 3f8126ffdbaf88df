"""sd_notify(3) datagrams to systemd's NOTIFY_SOCKET: the one way podvisor sends them, used by the
monitor's notify proxy (non-blocking, connected, driven by its epoll loop) and by ready-probe
(blocking, one sendto per message, so it still reaches an abstract socket after the probe joined
the container's network namespace). Bottom layer: stdlib only (os and socket, which the monitor
loads anyway), so importing it costs the monitor's hot path nothing."""
from __future__ import annotations

import errno
import socket

# systemd went away and came back (daemon-reexec): connect again
RECONNECT = (errno.ECONNREFUSED, errno.ENOTCONN, errno.ECONNRESET, errno.ENOENT, errno.EPIPE)


def address(name: str) -> str:
    """The socket address of a NOTIFY_SOCKET value: '@' starts an abstract name."""
    return "\0" + name[1:] if name.startswith("@") else name


def open_socket(*, blocking: bool) -> socket.socket:
    flags = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | (0 if blocking else socket.SOCK_NONBLOCK)
    return socket.socket(socket.AF_UNIX, flags)


def connect(name: str) -> socket.socket:
    """A non-blocking socket connected to `name`: epoll says when systemd's queue has room."""
    sock = open_socket(blocking=False)
    try:
        sock.connect(address(name))
    except OSError:
        sock.close()
        raise
    return sock


def send(sock: socket.socket, message: bytes, to: str | None = None) -> None:
    """One datagram; `to` (a NOTIFY_SOCKET value) for an unconnected socket. Raises OSError
    (BlockingIOError when a non-blocking socket's peer queue is full)."""
    if to is None:
        sock.send(message, socket.MSG_NOSIGNAL)
    else:
        sock.sendto(message, socket.MSG_NOSIGNAL, address(to))
