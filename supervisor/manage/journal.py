"""Reading the journal through ``journalctl -o json`` (reading it natively would need the
systemd-python bindings; pystemd can only write to it).

A match group is a list of ``FIELD=value`` terms; journalctl ANDs different fields, ORs
repeats of one field, and ORs the groups (``+``).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from .errors import ManageError

# what we read; journalctl -o json would otherwise ship every field (_CMDLINE is kilobytes)
FIELDS = ("MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "CONTAINER_NAME", "CONTAINER_ID_FULL",
          "CONTAINER_PARTIAL_MESSAGE", "UNIT", "_SYSTEMD_UNIT", "MESSAGE_ID", "UNIT_RESULT",
          "EXIT_CODE", "EXIT_STATUS", "JOB_TYPE", "JOB_RESULT", "_PID", "PODMAN_EVENT",
          "USER_UNIT", "_SYSTEMD_USER_UNIT", "_UID")
# systemd's catalog ids (sd-messages.h)
UNIT_FAILURE_RESULT = "d9b373ed55a64feb8242e02dbe79a49c"  # "Failed with result '...'", UNIT_RESULT=
UNIT_PROCESS_EXIT = "98e322203f7a4ed290d09fe03c09fe15"  # "Main process exited, code=..., status=..."
UNIT_OUT_OF_MEMORY = "fe6faa94e7774663a0da52717891d8ef"  # systemd's own OOM notice (cgroup v2 only)
MONITOR_IDENTIFIER = "podvisor-conmon"  # the monitor's own events (OOM kill) carry this

Group = Sequence[str]

_RELATIVE = re.compile(r"^-?\s*(\d+(?:\.\d+)?)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?|w|weeks?)"
                       r"(?:\s+ago)?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
SINCE_MAX = 253402300799  # 9999-12-31 23:59:59 UTC, journalctl's own upper bound


def parse_since(text: str, now: float | None = None) -> float:
    """--since: an epoch time from "10m", "-2h", "30 min ago", "today", "yesterday",
    "@1700000000", or a date/time ("2026-11-28 10:00", ISO 8601, local unless it has an offset).
    Anything else, or a time outside 1970..9999 (@nan, @inf, @1e400, 1e9 weeks), is a ManageError."""
    now = time.time() if now is None else now
    t = _parse_since(text, now)
    if not math.isfinite(t) or not 0 <= t <= SINCE_MAX:
        raise ManageError(f"--since: {text!r} is out of range: give a time between 1970 and 9999")
    return t


def _parse_since(text: str, now: float) -> float:
    value = text.strip()
    if not value:
        raise ManageError("--since: empty time")
    m = _RELATIVE.match(value)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)[0]]
    midnight = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
    if value == "now":
        return now
    if value == "today":
        return midnight.timestamp()
    if value == "yesterday":
        return (midnight - timedelta(days=1)).timestamp()
    if value.startswith("@"):
        try:
            return float(value[1:])
        except ValueError:
            pass
    else:
        try:
            return datetime.fromisoformat(value).timestamp()  # naive = local time, as journalctl
        except (ValueError, OverflowError, OSError):  # OverflowError/OSError: year 1 and such
            pass
    raise ManageError(f"--since: cannot read {text!r}; try 10m, 2h, \"30 min ago\", today, "
                      "\"2026-11-28 10:00\" or @EPOCH")


def entry_time(e: dict[str, Any]) -> float:
    return int(e.get("__REALTIME_TIMESTAMP", 0)) / 1_000_000


def text(value: Any) -> str:
    """A journal field: a string, or an array of byte values when not valid UTF-8."""
    if isinstance(value, list):
        try:
            return bytes(value).decode("utf-8", "replace")
        except (TypeError, ValueError):
            return ""
    return "" if value is None else str(value)


def argv(groups: Sequence[Group], *, since: float | None = None, lines: int | None = None,
         follow: bool = False, reverse: bool = False, after_cursor: str | None = None) -> list[str]:
    exe = shutil.which("journalctl")
    if exe is None:
        raise ManageError("journalctl not found: reading logs needs systemd's journalctl")
    cmd = [exe, "--no-pager", "--quiet", "--output=json", f"--output-fields={','.join(FIELDS)}"]
    if since is not None:
        cmd.append(f"--since=@{int(since)}")  # whole seconds; callers filter the rest
    if lines is not None:
        cmd.append(f"--lines={lines}")
    if after_cursor:
        cmd.append(f"--after-cursor={after_cursor}")
    if follow:
        cmd.append("--follow")
    if reverse:
        cmd.append("--reverse")
    for i, group in enumerate(groups):
        if i:
            cmd.append("+")
        cmd.extend(group)
    return cmd


def read(groups: Sequence[Group], *, since: float | None = None, lines: int | None = None,
         follow: bool = False, reverse: bool = False, after_cursor: str | None = None) -> Iterator[dict[str, Any]]:
    """Entries matching any of `groups`, oldest first (newest first with `reverse`)."""
    if not groups:
        return
    errors = tempfile.TemporaryFile()  # not a pipe: nobody reads it while stdout streams
    proc = subprocess.Popen(argv(groups, since=since, lines=lines, follow=follow, reverse=reverse,
                                 after_cursor=after_cursor),
                            stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if since is not None and entry_time(entry) < since:
                continue
            yield entry
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait()
        proc.stdout.close()
        errors.seek(0)
        err = errors.read(4096)
        errors.close()
    if proc.returncode not in (0, -15) and err.strip():
        raise ManageError(f"journalctl: {err.decode(errors='replace').strip()}")


def owner(user: bool) -> str:
    """Whose entries: root's pods run their monitors as root, a user's as that user (rootless).
    Names repeat across managers (root's and a user's pod-blog@web, both blog.web), and a member
    of systemd-journal reads everyone's, so every match by name is also one by owner."""
    return f"_UID={os.getuid() if user else 0}"


def manager_match(unit: str, user: bool = False) -> list[str]:
    """systemd's own messages about `unit`: PID 1's name it in UNIT=, a user manager's in USER_UNIT=."""
    return [f"USER_UNIT={unit}", owner(True)] if user else ["_PID=1", f"UNIT={unit}"]


def unit_groups(unit: str, user: bool = False) -> list[list[str]]:
    """What `journalctl -u UNIT` (`--user-unit UNIT`) matches: the unit's processes and systemd's
    messages about it."""
    if user:
        return [[f"_SYSTEMD_USER_UNIT={unit}", owner(True)], manager_match(unit, True)]
    return [[f"_SYSTEMD_UNIT={unit}"], manager_match(unit)]


def unit_of(e: dict[str, Any], user: bool = False) -> str:
    """The unit an entry is about (systemd's messages) or from (the unit's processes)."""
    if user:
        return text(e.get("USER_UNIT")) or text(e.get("_SYSTEMD_USER_UNIT"))
    return (text(e.get("UNIT")) if text(e.get("_PID")) == "1" else "") or text(e.get("_SYSTEMD_UNIT"))


def last(groups: Sequence[Group], n: int) -> list[dict[str, Any]]:
    """The newest `n` entries, oldest first."""
    return list(read(groups, lines=n)) if n > 0 else []
