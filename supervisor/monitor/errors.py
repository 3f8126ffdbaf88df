"""The monitor's own diagnostics, in conmon's `[conmon:X]` format.

Before the monitor detaches they reach podman's stderr (so podman can show them); afterwards
stderr is /dev/null, or the file PODVISOR_CONMON_LOG names, and `--syslog` also sends them to
syslog. `--log-level` filters them as conmon's does: errors always; warnings at warn(ing) and
below (the default); `info`, `debug` and `trace` add lines of those kinds.
"""
from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing costs ~2 ms of every start; only type checkers need it
if TYPE_CHECKING:
    from typing import NoReturn

_use_syslog = False
_ident = "conmon"
# conmon's ranks: error/fatal/panic 0, warn(ing) 1, info 2, debug 3, trace 4
RANKS = {"error": 0, "fatal": 0, "panic": 0, "warn": 1, "warning": 1, "info": 2, "debug": 3,
         "trace": 4}
_rank = 1


def set_level(level: str) -> None:
    global _rank
    _rank = RANKS.get(level.lower(), 1)


def enabled(level: str) -> bool:
    """Whether messages of `level` (warning, info, debug, trace) are written."""
    return RANKS[level] <= _rank


def enable_syslog(cid: str, tag: str | None) -> None:
    global _use_syslog, _ident
    import syslog

    _use_syslog = True
    _ident = f"conmon {(cid + (': ' + tag if tag else ''))[:20]}"
    syslog.openlog(_ident, 0, syslog.LOG_DAEMON)


def _emit(level: str, msg: str, colon: bool) -> None:
    try:
        sys.stderr.write(f"[conmon:{level}]{':' if colon else ''} {msg}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    if _use_syslog:
        import syslog

        prio = {"e": syslog.LOG_ERR, "w": syslog.LOG_WARNING, "i": syslog.LOG_INFO}.get(
            level, syslog.LOG_DEBUG)
        syslog.syslog(prio, msg)


def die(msg: str, colon: bool = True) -> NoReturn:
    _emit("e", msg, colon)
    raise SystemExit(1)


def warn(msg: str) -> None:
    if _rank >= 1:
        _emit("w", msg, True)


def info(msg: str) -> None:
    if _rank >= 2:
        _emit("i", msg, True)


def debug(msg: str) -> None:
    if _rank >= 3:
        _emit("d", msg, True)


_faults_reported = 0
FAULT_TRACEBACKS = 20  # then one line per 100 faults: a fault per datagram must not flood


def report_exception(what: str, exc: BaseException) -> None:
    """An unexpected exception, with its traceback, to the diagnostics (log file, syslog)."""
    global _faults_reported
    _faults_reported += 1
    n = _faults_reported
    if n > FAULT_TRACEBACKS:
        if n % 100 == 0:
            _emit("e", f"{n} unexpected exceptions so far; latest in {what}: "
                       f"{type(exc).__name__}: {exc}", True)
        return
    import traceback  # only on this rare path: it costs start-up time

    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
    _emit("e", f"unexpected exception in {what}: {type(exc).__name__}: {exc}\n{tb}", True)


def strerror(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno else str(exc)
