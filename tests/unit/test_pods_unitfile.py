"""The unit-file reader (the escaper's oracle) against what systemd 252 did with the same text.

Each expectation below was observed from a unit started by a real systemd 252 (the argv the
started program received), not derived from reading code."""
from __future__ import annotations

import pytest

from supervisor.pods.unitfile import (
    SyntaxProblem,
    expand_specifiers,
    read_unit,
    split_command,
    split_words,
    substitute_env,
)

# ExecStart= of a Type=oneshot unit with Environment=X=envx, exactly as written in the unit file
OBSERVED_UNIT = (
    "[Service]\nType=oneshot\nEnvironment=X=envx\n"
    "ExecStart=/usr/bin/python3 -c \"import sys\" a \\\n"
    "\t#hash \\\n"
    "\t;semi \\\n"
    "\tb \\\n"
    "\t\"#q\" \\\n"
    "\t\\; \\\n"
    "\t\";\" \\\n"
    "\t'it''s' \\\n"
    "\ta\"b c\"d \\\n"
    "\t\"\" \\\n"
    "\t$$X ${X} $X \"$$\" \"%%\" \\\n"
    "\t\"\\x41\\101\\u00e9\\s\" \\\n"
    "\tx\\ty\n")
# what the program got after -c "import sys"
OBSERVED_ARGV = ["a", "b", "#q", ";", ";", "its", "ab cd", "", "$X", "envx", "envx", "$", "%",
                 "AA\u00e9 ", "x\ty"]


def _exec_start(text: str) -> str:
    [service] = read_unit(text)
    return [e.value for e in service.entries if e.key == "ExecStart"][-1]


def test_matches_systemd_252() -> None:
    [cmd] = split_command(_exec_start(OBSERVED_UNIT))
    argv = substitute_env(cmd.argv, {"X": "envx"})
    assert [a.decode() for a in argv[3:]] == OBSERVED_ARGV


def test_continuation_comments_vanish() -> None:
    # a continuation line starting with # or ; (after blanks) is a comment: the word is lost
    [s] = read_unit("[S]\nK=a \\\n  #b \\\n ;c \\\nd\n")
    assert s.entries[0].value == "a  d"


def test_sections_and_odd_backslashes() -> None:
    [s] = read_unit("[S]\n# c\n; c\nK=x\\\\\nL = y \\\\\\\nz\n")
    assert [(e.key, e.value) for e in s.entries] == [("K", "x\\\\"), ("L", "y \\\\ z")]


def test_semicolons_separate_commands() -> None:
    cmds = split_command("/bin/a x ; /bin/b \\; y")
    assert [c.argv for c in cmds] == [[b"/bin/a", b"x"], [b"/bin/b", b";", b"y"]]


def test_prefixes_are_not_part_of_argv0() -> None:
    [c] = split_command("-/bin/rm -f x")
    assert c.prefixes == "-" and c.argv == [b"/bin/rm", b"-f", b"x"]


@pytest.mark.parametrize("bad", ["\"unterminated", "\\q", "\\x0", "\\x00", "\\u0000", "a\\"])
def test_malformed_words(bad: str) -> None:
    with pytest.raises(SyntaxProblem):
        split_words(bad)


def test_specifiers() -> None:
    assert expand_specifiers("%%n %n %t", {"n": "u.service", "t": "/run"}) == "%n u.service /run"
    with pytest.raises(SyntaxProblem):
        expand_specifiers("100%z")


def test_raw_bytes_from_hex_and_octal() -> None:
    assert split_words("\\xe9\\351") == [b"\xe9\xe9"]  # not UTF-8 encoded: bytes as written
