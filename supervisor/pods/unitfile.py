"""Reading systemd unit-file syntax the way systemd 252 does (systemd.syntax(7)).

Used to read Quadlet-style files, and by the tests as the oracle for our escaper: whatever the
generator writes must come back byte-for-byte through `read_unit` + `split_command`. Rules
checked against a real systemd 252 (argv of a started unit), among them:

* a line ending in an odd number of backslashes continues on the next one; the backslash turns
  into a space; while continuing, lines whose first non-blank character is ``#`` or ``;`` are
  comments and vanish (so ``\\<newline>\\t#word`` silently drops ``#word``);
* ``%`` specifiers are expanded on the whole value before it is split into words;
* words: blanks separate; ``"…"``/``'…'`` may start anywhere in a word (``a"b c"d`` is ``ab cd``);
  C escapes apply inside and outside quotes; ``\\xNN``/octal give raw bytes;
* a lone ``;`` separates commands, ``\\;`` is a literal ``;`` argument;
* at exec time ``$$`` is ``$``, ``${X}`` is X's value, a word ``$X`` splits X's value at blanks.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

WHITESPACE = " \t\n\r"
COMMENTS = "#;"
_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34, "'": 39, "s": 32}


class SyntaxProblem(ValueError):
    """Text systemd would reject (or warn about)."""


@dataclass
class Entry:
    key: str
    value: str
    line: int


@dataclass
class Section:
    name: str
    line: int
    entries: list[Entry] = field(default_factory=list)


def read_unit(text: str) -> list[Section]:
    """Sections and their ``Key=value`` entries, continuation lines joined, comments dropped."""
    sections: list[Section] = []
    pending: str | None = None
    pending_line = 0
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.removesuffix("\r")
        if pending is not None:
            stripped = line.lstrip(WHITESPACE)
            if stripped[:1] and stripped[0] in COMMENTS:
                continue
            line = pending + line
        else:
            pending_line = number
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:
            pending = line[:-1] + " "
            continue
        pending = None
        _add_line(sections, line.strip(WHITESPACE), pending_line)
    if pending is not None:
        _add_line(sections, pending.strip(WHITESPACE), pending_line)
    return sections


def _add_line(sections: list[Section], line: str, number: int) -> None:
    if not line or line[0] in COMMENTS:
        return
    if line.startswith("["):
        if not line.endswith("]") or len(line) < 3:
            raise SyntaxProblem(f"line {number}: invalid section header {line!r}")
        sections.append(Section(line[1:-1], number))
        return
    key, eq, value = line.partition("=")
    if not eq:
        raise SyntaxProblem(f"line {number}: expected Key=value, got {line!r}")
    if not sections:
        raise SyntaxProblem(f"line {number}: assignment outside of any section")
    sections[-1].entries.append(Entry(key.strip(WHITESPACE), value.strip(WHITESPACE), number))


# --------------------------------------------------------------------------- specifiers


def expand_specifiers(text: str, specifiers: Mapping[str, str] | None = None) -> str:
    """Replace ``%x``; ``%%`` is ``%``. Unknown specifiers are errors, as in systemd."""
    table = specifiers or {}
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(text):
            raise SyntaxProblem("'%' at the end of a value")
        s = text[i + 1]
        if s == "%":
            out.append("%")
        elif s in table:
            out.append(table[s])
        else:
            raise SyntaxProblem(f"unknown specifier %{s}")
        i += 2
    return "".join(out)


# --------------------------------------------------------------------------- words


def _unescape_one(text: str, i: int) -> tuple[bytes, int]:
    """The bytes of the escape starting after the backslash at text[i-1]; and the next index."""
    if i >= len(text):
        raise SyntaxProblem("backslash at the end of a value")
    c = text[i]
    if c in _SIMPLE_ESCAPES:
        return bytes([_SIMPLE_ESCAPES[c]]), i + 1
    if c == "x":
        digits = text[i + 1:i + 3]
        if not re.fullmatch(r"[0-9a-fA-F]{2}", digits) or int(digits, 16) == 0:
            raise SyntaxProblem(f"invalid escape \\x{digits}")
        return bytes([int(digits, 16)]), i + 3
    if c in "uU":
        n = 4 if c == "u" else 8
        digits = text[i + 1:i + 1 + n]
        if not re.fullmatch(f"[0-9a-fA-F]{{{n}}}", digits):
            raise SyntaxProblem(f"invalid escape \\{c}{digits}")
        cp = int(digits, 16)
        if cp == 0 or cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
            raise SyntaxProblem(f"invalid code point \\{c}{digits}")
        return chr(cp).encode(), i + 1 + n
    if c in "01234567":
        digits = text[i:i + 3]
        if not re.fullmatch(r"[0-3][0-7]{2}", digits) or int(digits, 8) == 0:
            raise SyntaxProblem(f"invalid escape \\{digits}")
        return bytes([int(digits, 8)]), i + 3
    raise SyntaxProblem(f"unknown escape \\{c}")


def extract_word(text: str, i: int) -> tuple[bytes | None, int]:
    """One word starting at or after text[i] (UNQUOTE|CUNESCAPE); (None, end) when none is left."""
    while i < len(text) and text[i] in WHITESPACE:
        i += 1
    if i >= len(text):
        return None, i
    word = bytearray()
    quote = ""
    while i < len(text):
        c = text[i]
        if c == "\\":
            chunk, i = _unescape_one(text, i + 1)
            word += chunk
            continue
        if quote:
            if c == quote:
                quote = ""
            else:
                word += c.encode()
        elif c in "\"'":
            quote = c
        elif c in WHITESPACE:
            break
        else:
            word += c.encode()
        i += 1
    if quote:
        raise SyntaxProblem("unbalanced quotes")
    return bytes(word), i


def split_words(text: str, escaped_semicolons: bool = False) -> list[bytes]:
    """All words of a value (Environment=, RequiresMountsFor=, Quadlet's Exec=...);
    `escaped_semicolons`: a word ``\\;`` is ``;``, as on command lines."""
    words = []
    i = 0
    while True:
        while i < len(text) and text[i] in WHITESPACE:
            i += 1
        after2 = text[i + 2:i + 3]
        if escaped_semicolons and text[i:i + 2] == "\\;" and (not after2 or after2 in WHITESPACE):
            words.append(b";")
            i += 2
            continue
        word, i = extract_word(text, i)
        if word is None:
            return words
        words.append(word)


@dataclass
class Command:
    argv: list[bytes]
    prefixes: str = ""  # "-", "@", ":", "+", "!" as written before the executable


def split_command(value: str, specifiers: Mapping[str, str] | None = None) -> list[Command]:
    """An Exec*= value as systemd reads it: specifiers, words, ';' separators, prefixes.
    Environment variables are not substituted yet (see `substitute_env`)."""
    text = expand_specifiers(value, specifiers)
    commands: list[Command] = []
    i = 0
    while True:
        first, i = extract_word(text, i)
        if first is None:
            return commands
        raw = first.decode("utf-8", "surrogateescape")
        prefixes = ""
        while raw[:1] and raw[0] in "-@:+!":
            prefixes += raw[0]
            raw = raw[1:]
        cmd = Command([raw.encode("utf-8", "surrogateescape")], prefixes)
        commands.append(cmd)
        while True:
            while i < len(text) and text[i] in WHITESPACE:
                i += 1
            if i >= len(text):
                return commands
            after = text[i + 1:i + 2]
            if text[i] == ";" and (not after or after in WHITESPACE):
                i += 1
                break
            after2 = text[i + 2:i + 3]
            if text[i:i + 2] == "\\;" and (not after2 or after2 in WHITESPACE):
                cmd.argv.append(b";")
                i += 2
                continue
            word, i = extract_word(text, i)
            if word is None:
                return commands
            cmd.argv.append(word)


_ENV_WORD = re.compile(rb"^\$([A-Za-z_][A-Za-z0-9_]*)$")


def substitute_env(argv: list[bytes], env: Mapping[str, str],
                   split: Callable[[str], list[bytes]] | None = None) -> list[bytes]:
    """Exec-time variable expansion of an argv (not for ':'-prefixed commands)."""
    out: list[bytes] = []
    for n, word in enumerate(argv):
        m = _ENV_WORD.match(word)
        if m and n > 0:
            value = env.get(m.group(1).decode(), "")
            out.extend((split or split_words)(value))
            continue
        out.append(_replace_env(word, env))
    return out


def _replace_env(word: bytes, env: Mapping[str, str]) -> bytes:
    out = bytearray()
    i = 0
    while i < len(word):
        if word[i:i + 2] == b"$$":
            out += b"$"
            i += 2
        elif word[i:i + 2] == b"${":
            end = word.find(b"}", i + 2)
            if end < 0:
                out += word[i:]
                break
            out += env.get(word[i + 2:end].decode("utf-8", "surrogateescape"), "").encode()
            i = end + 1
        else:
            out.append(word[i])
            i += 1
    return bytes(out)
