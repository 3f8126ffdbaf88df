"""Messages to podman on the sync and attach pipes: one JSON object per line, byte-exact
with conmon (`{"data": N}` or `{"data": N, "message": "..."}`)."""
from __future__ import annotations

import os


def _escape(raw: bytes) -> bytes:
    out = bytearray()
    for b in raw:
        if b == 0x22 or b == 0x5C:  # " and backslash
            out += b"\\" + bytes((b,))
        elif b == 0x0A:
            out += b"\\n"
        elif b == 0x09:
            out += b"\\t"
        elif 0x01 <= b <= 0x1E or b == 0x7F:  # the range conmon escapes
            out += b"\\u%04x" % b
        else:
            out.append(b)
    return bytes(out)


def encode(value: int, message: bytes | None = None, key: str = "data") -> bytes:
    if message is None:
        return b'{"%s": %d}\n' % (key.encode(), value)
    return b'{"%s": %d, "message": "%s"}\n' % (key.encode(), value, _escape(message))


def send(fd: int | None, value: int, message: bytes | None = None, key: str = "data") -> bool:
    """One write per message; podman may already have closed its end (exec), so errors are soft."""
    if fd is None:
        return False
    try:
        os.write(fd, encode(value, message, key))
        return True
    except OSError:
        return False
