"""journald driver: one entry per line over journald's native socket protocol, with the
fields podman's journald log reader matches on (CONTAINER_ID_FULL, PRIORITY 6/3, ...)."""
from __future__ import annotations

import socket
import struct

from ..errors import strerror, warn
from . import STDOUT

JOURNAL_SOCKET = "/run/systemd/journal/socket"
LINE_MAX = 8192


def _field(key: bytes, value: bytes) -> bytes:
    if b"\n" in value:
        return key + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"
    return key + b"=" + value + b"\n"


class JournaldLog:
    def __init__(self, cid: str, name: str | None, tag: str | None,
                 path: str = JOURNAL_SOCKET) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
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
        try:
            self.sock.sendto(msg, self.path)
        except OSError as e:
            if self._failing is None:
                self._failing = strerror(e)
                warn(f"journald ({self.path}): {self._failing}; dropping log lines until it recovers")
            return
        self._failing = None

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
        for stream, rest in sorted(self.pending.items()):
            self._send(stream, rest, True)
        self.pending.clear()

    def close(self) -> None:
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
            s.sendto(b"".join(fields), path)
        return True
    except OSError:
        return False  # no journald here (PID 1 is not systemd)
