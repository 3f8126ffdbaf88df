"""Writing values into unit files so systemd reads back exactly what we meant (systemd.syntax(7),
systemd.service(5) COMMAND LINES, systemd.unit(5) SPECIFIERS; the reading side, used as the
tests' oracle, is supervisor.pods.unitfile).

Per word: ``%`` -> ``%%`` (specifiers are expanded everywhere), in command lines ``$`` -> ``$$``
(variables are substituted at exec time). A word is wrapped in double quotes, with C escapes
inside, when it could be read any other way: empty, blanks, quotes, backslashes, control
characters, or a first character that means something (``;`` alone separates commands, and a
continuation line starting with ``#``/``;`` is a comment). Words of `Verbatim` type are unit
syntax written by a user (Quadlet files): their ``%`` and ``$`` stay, they are still quoted.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from supervisor.pods.model import Verbatim

LINE_MAX = 1 << 20  # systemd refuses longer (joined) lines (LONG_LINE_MAX)
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\v": "\\v",
          "\\": "\\\\", '"': '\\"'}
_NEEDS_QUOTES = set(" \t\n\r\"'\\")


class EscapeError(ValueError):
    """A value no unit file can carry."""


def _is_control(c: str) -> bool:
    o = ord(c)
    return o < 0x20 or 0x7F <= o <= 0x9F


def specifiers(text: str) -> str:
    """Literal text in a setting that expands specifiers (Description=, paths, Environment=)."""
    return text if isinstance(text, Verbatim) else text.replace("%", "%%")


def word(value: str, *, command: bool = True) -> str:
    """One argument of a command line (`command`) or one item of a quoted list (Environment=)."""
    if "\x00" in value:
        raise EscapeError("NUL cannot be passed in a unit file")
    text = value
    if not isinstance(value, Verbatim):
        text = text.replace("%", "%%")
        if command:
            text = text.replace("$", "$$")
    if text and not any(c in _NEEDS_QUOTES or _is_control(c) for c in text) and text[0] not in "#;":
        return text
    out = ['"']
    for c in text:
        if c in _NAMED:
            out.append(_NAMED[c])
        elif _is_control(c):
            # \xNN would be a raw byte; for C1 controls that is not their UTF-8 encoding
            out.append(f"\\x{ord(c):02x}" if ord(c) < 0x80 else f"\\u{ord(c):04x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def command(argv: Sequence[str], prefix: str = "", width: int = 100) -> str:
    """An Exec*= value: the executable (absolute, quoted when needed) with optional prefix (``-``) and
    the escaped arguments, wrapped onto continuation lines of about `width` columns."""
    exe = argv[0]
    # quoted and %-escaped like any word (a checkout path may hold blanks); '$' is refused: systemd
    # substitutes variables in argv[0] but not in the path it executes, so no escaping fits both
    if not exe.startswith("/") or "$" in exe or any(_is_control(c) for c in exe):
        raise EscapeError(f"executable {exe!r} must be an absolute path without '$' or control characters")
    lines: list[str] = []
    current = prefix + word(exe)
    for arg in argv[1:]:
        w = word(arg)
        if len(current) + 1 + len(w) > width and current.strip():
            lines.append(current)
            current = "\t" + w
        else:
            current += " " + w
    lines.append(current)
    text = " \\\n".join(lines)
    if len(text) >= LINE_MAX:
        raise EscapeError(f"command line of {len(text)} bytes is longer than systemd accepts ({LINE_MAX})")
    return text


def environment(assignments: Iterable[tuple[str, str]]) -> list[str]:
    """Environment= values, one assignment each (values are %-expanded, not $-expanded)."""
    out = []
    for key, value in assignments:
        if not key or "=" in key or any(c in _NEEDS_QUOTES or _is_control(c) for c in key):
            raise EscapeError(f"{key!r} is not an environment variable name a unit can set")
        text = f"{key}={value}"
        out.append(word(Verbatim(text) if isinstance(value, Verbatim) else text, command=False))
    return out


def path(value: str) -> str:
    """A single path setting (PIDFile=, AssertPathExists=, SourcePath=): no quoting there, so
    only paths without blanks at the ends or control characters can be written."""
    if not value.startswith("/") or value != value.strip(" \t") or any(_is_control(c) for c in value):
        raise EscapeError(f"{value!r} cannot be written as a path setting")
    return specifiers(value)


def path_list(values: Iterable[str]) -> str:
    """A blank-separated, quotable path list (RequiresMountsFor=)."""
    return " ".join(word(v, command=False) for v in values)
