"""TTY mode: the runtime sends us the pty master over a console socket (SCM_RIGHTS)."""
from __future__ import annotations

import fcntl
import os
import socket
import struct
import termios

RECEIVE_SECONDS = 5.0


class ConsoleSocket:
    """A listening socket in a fresh 0700 directory, whose path goes to `--console-socket`."""

    def __init__(self) -> None:
        base = os.environ.get("TMPDIR") or "/tmp"
        while True:
            self.dir = os.path.join(base, f"podvisor-term.{os.urandom(6).hex()}")
            try:
                os.mkdir(self.dir, 0o700)
                break
            except FileExistsError:
                continue
        self.path = os.path.join(self.dir, "console.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC
                                  | socket.SOCK_NONBLOCK)
        self.sock.bind(self.path)
        self.sock.listen(128)

    def receive(self) -> int | None:
        """Accept one connection and take the fd it carries; None if nobody connected yet."""
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return None
        with conn:
            # the runtime sends the fd right after connecting; bounded, as it runs in the loop
            conn.settimeout(RECEIVE_SECONDS)
            _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        if not fds:
            return None
        os.set_inheritable(fds[0], False)
        return fds[0]

    def close(self) -> None:
        self.sock.close()
        for p in (self.path, self.dir):
            try:
                (os.unlink if p == self.path else os.rmdir)(p)
            except OSError:
                pass


def prepare_master(fd: int) -> None:
    # the same output processing conmon sets (ONLCR); raw mode is the client's business
    attrs = termios.tcgetattr(fd)
    attrs[1] |= termios.ONLCR
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
    os.set_blocking(fd, False)


def resize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
