"""The k8s-file ("CRI") log: `<time> <stream> <P|F> <content>\n` records, as conmon writes them.

Lines longer than 8192 bytes are split into P records of 8192 like conmon's 8 KiB reads
split them; a chunk that ends without a newline ends in a P record. With --log-size-max,
conmon empties the file and loses its history: podvisor renames it to `<path>.1` (shifting
older ones up to the rotate count) so the newest history survives within a bounded budget.
"""
from __future__ import annotations

import os

from ..errors import strerror, warn
from . import STREAM_NAMES

RECORD_MAX = 8192


def has_long_line(data: bytes) -> bool:
    """Whether some line holds RECORD_MAX bytes without a newline. Each step jumps to the
    last newline of the next RECORD_MAX-byte window: one C-level rfind per 8 KiB."""
    end = len(data)
    pos = 0
    while end - pos >= RECORD_MAX:
        nl = data.rfind(b"\n", pos, pos + RECORD_MAX)
        if nl < 0:
            return True
        pos = nl + 1
    return False


def _split_long(line: bytes, pp: bytes, out: list[bytes]) -> bytes:
    while len(line) >= RECORD_MAX:
        out.append(pp + line[:RECORD_MAX] + b"\n")
        line = line[RECORD_MAX:]
    return line


def format_records(ts: bytes, stream: int, data: bytes) -> bytes:
    name = STREAM_NAMES[stream]
    pf = ts + b" " + name + b" F "
    pp = ts + b" " + name + b" P "
    if has_long_line(data):
        out: list[bytes] = []
        *lines, last = data.split(b"\n")
        for line in lines:
            out.append(pf + _split_long(line, pp, out) + b"\n")
        while len(last) > RECORD_MAX:
            out.append(pp + last[:RECORD_MAX] + b"\n")
            last = last[RECORD_MAX:]
        if last:
            out.append(pp + last + b"\n")
        return b"".join(out)
    # fast path: one C-level replace turns every newline into the next record's prefix
    nl = data.rfind(b"\n")
    if nl == len(data) - 1:
        return pf + data[:-1].replace(b"\n", b"\n" + pf) + b"\n"
    if nl < 0:
        return pp + data + b"\n"
    return pf + data[:nl].replace(b"\n", b"\n" + pf) + b"\n" + pp + data[nl + 1:] + b"\n"


def _open(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)


class K8sFileLog:
    def __init__(self, path: str, size_max: int, rotate_count: int, global_max: int,
                 owner: tuple[str, str | None] = ("", None)) -> None:
        self.path = path
        self.owner = owner  # (container id, name): who the loss reports are about
        try:
            self.fd = _open(path)
        except OSError as e:
            from ..errors import die

            die(f"Failed to open log file {strerror(e)}")
        # count what is already there, so a restarted container doesn't overshoot the cap
        self.size = os.lseek(self.fd, 0, os.SEEK_END)  # O_APPEND: where writes go
        self.size_max = size_max
        self.rotate_count = rotate_count
        self.global_left = global_max if global_max > 0 else -1
        self._failing: str | None = None

    def write(self, ts: bytes, stream: int, data: bytes) -> None:
        blob = format_records(ts, stream, data)
        if self.global_left >= 0:
            if self.global_left < len(blob):
                self.global_left = 0
                return
            self.global_left -= len(blob)
        if 0 < self.size_max < self.size + len(blob):
            for rec in blob[:-1].split(b"\n"):  # every record ends in exactly one \n
                rec += b"\n"
                if self.size + len(rec) > self.size_max and self.size > 0:
                    self.rotate()
                self._write(rec)
        else:
            self._write(blob)

    def _write(self, blob: bytes) -> None:
        start = self.size
        view = memoryview(blob)
        while view:
            try:
                n = os.write(self.fd, view)
            except OSError as e:
                # disk full & co: keep the container running, report once, retry next time;
                # never leave half a record behind for podman's reader to trip over
                if self.size != start:
                    try:
                        os.ftruncate(self.fd, start)
                        self.size = start
                    except OSError:
                        pass
                if self._failing is None:
                    self._failing = strerror(e)
                    self._report(f"log file {self.path}: {self._failing}; "
                                 "dropping log output until it recovers")
                return
            self.size += n
            view = view[n:]
        if self._failing is not None:
            self._report(f"log file {self.path}: writing again after: {self._failing}")
            self._failing = None

    def _report(self, text: str) -> None:
        """Once per failure and once per recovery, never per line."""
        from .journald import send_event

        warn(text)
        send_event(text, self.owner[0], self.owner[1], priority=4)

    def rotate(self) -> None:
        try:
            if self.rotate_count <= 0:
                self._replace_with_empty()
                return
            for i in range(self.rotate_count - 1, 0, -1):
                src = f"{self.path}.{i}"
                if os.path.exists(src):
                    os.rename(src, f"{self.path}.{i + 1}")
            os.rename(self.path, f"{self.path}.1")
            new = _open(self.path)
        except OSError as e:
            warn(f"rotating log file {self.path}: {strerror(e)}")
            return
        os.close(self.fd)
        self.fd = new
        self.size = 0

    def _replace_with_empty(self) -> None:
        tmp = self.path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        os.rename(tmp, self.path)
        os.close(self.fd)
        os.close(fd)
        self.fd = _open(self.path)
        self.size = 0

    def reopen(self) -> None:
        """ctl type 2, as conmon: fsync, then the live path starts again empty."""
        self.flush(True)
        try:
            self._replace_with_empty()
        except OSError as e:
            warn(f"reopening log file {self.path}: {strerror(e)}")

    def flush(self, sync: bool) -> None:
        if sync:
            try:
                os.fsync(self.fd)
            except OSError:
                pass

    def close(self) -> None:
        os.close(self.fd)
