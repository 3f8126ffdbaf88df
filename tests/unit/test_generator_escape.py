"""Escaping per systemd.syntax(7): every argv must come back byte-for-byte through the oracle
(supervisor.pods.unitfile, itself checked against systemd 252) and pass systemd-analyze verify."""
from __future__ import annotations

import shutil
import subprocess

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from supervisor.generator import escape
from supervisor.pods.model import Verbatim
from supervisor.pods.unitfile import read_unit, split_command, split_words, substitute_env

SPECIFIERS = {"n": "x.service", "N": "x", "t": "/run", "p": "x", "i": ""}
ENV = {"X": "expanded", "HOME": "/root"}  # what systemd would substitute if we forgot a '$'
HOSTILE = ["", " ", "  ", ";", "\\;", "%", "%%", "%n", "100%z", "$", "$$", "${X}", "$X", "$HOME", '"', "'",
           "''", '""', "\\", "\\\\", "\n", "\r\n", "\t", "\v", "#x", ";x", "#", "a b", "a\nb", "\x01", "\x1b[0m",
           "\x7f", "\u0085", "\u2028", "\u00a0", "é", "😀", "\\x41", "\\n", "--flag=x y", "-", "--", "a\"b c\"d",
           "'quoted'", "%t/%n", "$(date)", "`id`", "*", "~", "x\\", "\\;\\;"]
# any Unicode but NUL, lone surrogates and the non-characters (argv and systemd's unit files cannot
# carry those; the loaders refuse them, see test_pods_kube)
NONCHARACTERS = "".join([chr(c) for c in range(0xFDD0, 0xFDF0)]
                        + [chr(plane << 16 | low) for plane in range(17) for low in (0xFFFE, 0xFFFF)])
text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00" + NONCHARACTERS))
words = st.one_of(text, st.sampled_from(HOSTILE))


def roundtrip(argv: list[str], width: int = 100) -> list[bytes]:
    """argv -> unit file text -> what systemd would exec."""
    unit = f"[Service]\nExecStart={escape.command(['/usr/bin/env', *argv], width=width)}\n"
    [service] = read_unit(unit)
    [cmd] = split_command(service.entries[0].value, SPECIFIERS)
    return substitute_env(cmd.argv, ENV)[1:]


@given(st.lists(words, max_size=12), st.integers(min_value=1, max_value=120))
@example(HOSTILE, 1)
@example(HOSTILE, 100)
def test_argv_round_trips(argv: list[str], width: int) -> None:
    assert roundtrip(argv, width) == [a.encode() for a in argv]


@given(words)
def test_one_word_is_one_word(word: str) -> None:
    out = escape.word(word)
    assert "\n" not in out and "\r" not in out
    assert roundtrip([word]) == [word.encode()]


def test_hostile_words_written_as_expected() -> None:
    assert escape.word("plain-word_1.2") == "plain-word_1.2"
    assert escape.word("") == '""'
    assert escape.word(";") == '";"'
    assert escape.word("#x") == '"#x"'
    assert escape.word("100%") == "100%%"
    assert escape.word("$HOME") == "$$HOME"
    assert escape.word("$HOME", command=False) == "$HOME"  # Environment= does not expand $
    assert escape.word('say "hi"\n') == '"say \\"hi\\"\\n"'
    assert escape.word("a\\b") == '"a\\\\b"'
    assert escape.word("\u0085") == '"\\u0085"'  # \x85 would be a raw byte, not U+0085


def test_verbatim_keeps_unit_syntax() -> None:
    # Quadlet values: %n and $X are meant for systemd
    assert roundtrip([Verbatim("%n"), Verbatim("${X}"), Verbatim("a b")]) == [b"x.service", b"expanded", b"a b"]


def test_nul_and_relative_executables_refused() -> None:
    with pytest.raises(escape.EscapeError):
        escape.word("a\x00b")
    with pytest.raises(escape.EscapeError):
        escape.command(["podman", "run"])
    with pytest.raises(escape.EscapeError):
        escape.command(["/x"] + ["y" * 1000] * 1100)  # over systemd's 1 MiB line limit


@given(st.lists(st.tuples(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True), words), max_size=5))
def test_environment_round_trips(assignments: list[tuple[str, str]]) -> None:
    for k, v in assignments:
        [line] = escape.environment([(k, v)])
        [service] = read_unit(f"[Service]\nEnvironment={line}\n")
        from supervisor.pods.unitfile import expand_specifiers

        assert split_words(expand_specifiers(service.entries[0].value, SPECIFIERS)) == [f"{k}={v}".encode()]


needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")


@needs_analyze
@settings(max_examples=25, deadline=None)
@given(st.lists(words, min_size=1, max_size=20))
@example(HOSTILE)
def test_hostile_argv_passes_systemd_analyze(tmp_path_factory: pytest.TempPathFactory, argv: list[str]) -> None:
    d = tmp_path_factory.mktemp("verify")
    unit = d / "hostile.service"
    unit.write_text("[Service]\nType=oneshot\n"
                    f"ExecStart={escape.command(['/usr/bin/env', *argv], width=60)}\n"
                    f"{''.join(f'Environment={e}' + chr(10) for e in escape.environment([('V', a) for a in argv]))}",
                    encoding="utf-8")
    res = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True)
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr


def test_paths() -> None:
    assert escape.path("/run/x%y") == "/run/x%%y"
    with pytest.raises(escape.EscapeError):
        escape.path("relative")
    with pytest.raises(escape.EscapeError):
        escape.path("/a\nb")
    assert escape.path_list(["/a", "/b c"]) == '/a "/b c"'

