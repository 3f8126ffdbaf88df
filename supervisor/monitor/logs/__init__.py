"""Log drivers. Each gets every chunk the container writes, tagged with its stream;
passthrough and none store nothing (the container's output is then not ours to log)."""
from __future__ import annotations

import time

from ..cli import Options

TYPE_CHECKING = False  # typing costs ~2 ms of every start; only type checkers need it
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object

STDOUT = 1
STDERR = 2
STREAM_NAMES = {STDOUT: b"stdout", STDERR: b"stderr"}


class LogDriver(Protocol):
    def write(self, ts: bytes, stream: int, data: bytes) -> None: ...
    def reopen(self) -> None: ...
    def flush(self, sync: bool) -> None: ...
    def close(self) -> None: ...


_last_sec = -1
_sec_text = b""


def timestamp() -> bytes:
    """conmon's k8s-file time: local time, 9-digit nanoseconds, numeric offset (never Z)."""
    global _last_sec, _sec_text
    ns = time.time_ns()
    sec, frac = divmod(ns, 1_000_000_000)
    if sec != _last_sec:
        tm = time.localtime(sec)
        off = tm.tm_gmtoff
        sign = b"+" if off >= 0 else b"-"
        off = abs(off) // 60
        _sec_text = b"%04d-%02d-%02dT%02d:%02d:%02d.%%09d%s%02d:%02d" % (
            tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
            sign, off // 60, off % 60,
        )
        _last_sec = sec
    return _sec_text % frac


class LogSinks:
    """Fans each chunk out to the configured drivers."""

    def __init__(self, drivers: list[LogDriver], needs_timestamp: bool) -> None:
        self.drivers = drivers
        self._needs_ts = needs_timestamp

    def write(self, stream: int, data: bytes) -> None:
        if not self.drivers:
            return
        ts = timestamp() if self._needs_ts else b""
        for d in self.drivers:
            d.write(ts, stream, data)

    def reopen(self) -> None:
        for d in self.drivers:
            d.reopen()

    def attach_loop(self, loop: object, on_backpressure: object) -> None:
        """Drivers whose peer can be full (journald) queue and push back through the loop."""
        for d in self.drivers:
            attach = getattr(d, "attach_loop", None)
            if attach is not None:
                attach(loop, on_backpressure)

    def flush(self, sync: bool) -> None:
        for d in self.drivers:
            d.flush(sync)

    def close(self) -> None:
        for d in self.drivers:
            d.close()


def open_drivers(opts: Options) -> LogSinks:
    """Open every driver before the first fork, so that errors (bad log path) reach podman."""
    drivers: list[LogDriver] = []
    opened: set[str] = set()  # like conmon, one k8s file and one journald at most
    for target in opts.logs:
        if target.driver in opened:
            continue
        if target.driver == "k8s-file":
            from .k8s_file import K8sFileLog

            drivers.append(K8sFileLog(target.path, opts.log_size_max, opts.log_rotate_count,
                                      opts.log_global_size_max, (opts.cid, opts.name)))
        elif target.driver == "journald":
            from .journald import JournaldLog

            drivers.append(JournaldLog(opts.cid, opts.name, opts.log_tag))
        opened.add(target.driver)
    return LogSinks(drivers, "k8s-file" in opened)
