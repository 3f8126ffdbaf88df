"""The monitor's own diagnostics, in conmon's `[conmon:X]` format.

Before the monitor detaches they reach podman's stderr (so podman can show them);
afterwards stderr is /dev/null and `--syslog` also sends them to syslog.
"""
from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing costs ~2 ms of every start; only type checkers need it
if TYPE_CHECKING:
    from typing import NoReturn

_use_syslog = False
_ident = "conmon"


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

        prio = {"e": syslog.LOG_ERR, "w": syslog.LOG_WARNING}.get(level, syslog.LOG_INFO)
        syslog.syslog(prio, msg)


def die(msg: str, colon: bool = True) -> NoReturn:
    _emit("e", msg, colon)
    raise SystemExit(1)


def warn(msg: str) -> None:
    _emit("w", msg, True)


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
