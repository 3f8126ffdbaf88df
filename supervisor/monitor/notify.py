"""The container's sd_notify socket, proxied to systemd.

podman mounts `<bundle>/notify` into the container as /run/notify and points NOTIFY_SOCKET
there; we bind `notify.sock` in it and forward what systemd should hear from the service's
main process (us): readiness, status, watchdog. MAINPID (systemd's main PID must stay the
monitor), FDSTORE and anything unknown are dropped, as are oversized or malformed datagrams.
"""
from __future__ import annotations

import os
import re
import socket

from .errors import warn
from .loop import READ, Loop

DATAGRAM_MAX = 4096
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


class NotifyProxy:
    def __init__(self, loop: Loop, bundle: str, host_socket: str) -> None:
        import sdnotify  # the systemd side: connects to NOTIFY_SOCKET, '@' abstract included

        self.loop = loop
        os.environ["NOTIFY_SOCKET"] = host_socket
        try:
            self.notifier = sdnotify.SystemdNotifier(debug=True)
        except OSError as e:
            warn(f"cannot reach systemd's notify socket {host_socket}: {e}")
            self.notifier = None
        finally:
            del os.environ["NOTIFY_SOCKET"]  # never leak it to the runtime or the container
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
        if self.notifier is None:
            return
        try:
            # sdnotify encodes str as latin-1, so this round-trips the bytes exactly
            self.notifier.notify(msg.decode("latin-1"))
            self.forwarded += 1
        except OSError as e:
            warn(f"sd_notify to systemd failed: {e}")

    def close(self) -> None:
        self.loop.remove(self.sock.fileno())
        self.sock.close()
        try:
            os.unlink("notify.sock", dir_fd=self.dir_fd)
        except OSError:
            pass
        os.close(self.dir_fd)
