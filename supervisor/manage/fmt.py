"""Text for people: durations, sizes, times, colours (only on a terminal), aligned tables."""
from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import TextIO

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
COLOURS = {"red": "31", "green": "32", "yellow": "33", "blue": "34", "magenta": "35", "cyan": "36",
           "bold": "1", "dim": "2"}
STREAM_COLOURS = ("cyan", "magenta", "blue", "yellow", "green")  # one per container in logs


class Palette:
    """ANSI colours when writing to a terminal (and NO_COLOR unset), plain text otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    @classmethod
    def for_stream(cls, stream: TextIO = sys.stdout) -> Palette:
        isatty = getattr(stream, "isatty", lambda: False)()
        return cls(bool(isatty) and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb")

    def __call__(self, text: str, *styles: str) -> str:
        if not self.enabled or not styles or not text:
            return text
        codes = ";".join(COLOURS[s] for s in styles if s in COLOURS)
        return f"\x1b[{codes}m{text}\x1b[0m"

    def state(self, text: str, active_state: str) -> str:
        colour = {"active": "green", "reloading": "green", "failed": "red", "activating": "yellow",
                  "deactivating": "yellow"}.get(active_state)
        return self(text, colour) if colour else text


def visible_len(text: str) -> int:
    return len(_ANSI.sub("", text))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int] = (),
          gap: str = "  ") -> list[str]:
    """Aligned columns; widths ignore colour codes; the last column is not padded."""
    widths = [visible_len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], visible_len(cell))
    lines = []
    for row in [list(headers), *rows]:
        cells = []
        for i, cell in enumerate(row):
            pad = " " * (widths[i] - visible_len(cell))
            last = i == len(row) - 1
            cells.append(pad + cell if i in right else cell + ("" if last else pad))
        lines.append(gap.join(cells).rstrip())
    return lines


def duration(seconds: float | None) -> str:
    """5s, 4m12s, 3h05m, 2d04h: two units at most, like podman's "Up ..." but shorter."""
    if seconds is None:
        return "-"
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def size(n: int | None) -> str:
    """Binary units: 812K, 8.1M, 1.2G."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{value:.0f}{unit}" if unit in ("B", "K") or value >= 100 else f"{value:.1f}{unit}"
        value /= 1024
    return f"{n}B"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 'es' if word.endswith('s') else 's'}"


def percent(p: float | None) -> str:
    return "-" if p is None else f"{p:.1f}%"


def timestamp(t: float | None) -> str:
    """Local time, like systemctl status: 2026-11-28 10:28:01 UTC."""
    if t is None:
        return "-"
    return datetime.fromtimestamp(t).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def iso(t: float | None) -> str | None:
    """For JSON: ISO 8601 with the offset, microseconds."""
    if t is None:
        return None
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="microseconds")


def ago(t: float | None, now: float | None = None) -> str:
    if t is None:
        return "-"
    return duration((now or time.time()) - t) + " ago"
