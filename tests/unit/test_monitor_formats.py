"""Byte formats the monitor shares with podman: k8s-file records, sync-pipe JSON, and the
sd_notify filter."""
from __future__ import annotations

import json
import random
import re

from supervisor.monitor import syncpipe
from supervisor.monitor.logs import STDERR, STDOUT, timestamp
from supervisor.monitor.logs.k8s_file import RECORD_MAX, format_records, has_long_line
from supervisor.monitor.notify import filter_message

TS = b"2026-11-28T09:50:03.199873880+00:00"
RECORD = re.compile(rb"^(\S+) (stdout|stderr) ([PF]) (.*)$")


def _parse(blob: bytes) -> list[tuple[bytes, bytes, bytes]]:
    assert blob.endswith(b"\n")
    out = []
    for line in blob[:-1].split(b"\n"):
        m = RECORD.match(line)
        assert m, line
        out.append((m.group(2), m.group(3), m.group(4)))
    return out


def _reassemble(recs: list[tuple[bytes, bytes, bytes]]) -> bytes:
    return b"".join(c + (b"\n" if f == b"F" else b"") for _, f, c in recs)


def test_timestamp_shape() -> None:
    # podman parses 2006-01-02T15:04:05.000000000Z07:00; conmon writes numeric offsets
    assert re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}[+-]\d\d:\d\d", timestamp())


def test_lines_and_trailing_partial() -> None:
    recs = _parse(format_records(TS, STDOUT, b"a\nbb\ncc"))
    assert recs == [(b"stdout", b"F", b"a"), (b"stdout", b"F", b"bb"), (b"stdout", b"P", b"cc")]
    assert _parse(format_records(TS, STDERR, b"x\n")) == [(b"stderr", b"F", b"x")]
    assert _parse(format_records(TS, STDOUT, b"\n\n")) == [(b"stdout", b"F", b"")] * 2


def test_long_line_splits_like_conmon() -> None:
    # observed with conmon 2.1.6: a 20000-byte line -> P 8192, P 8192, F 3616
    recs = _parse(format_records(TS, STDOUT, b"x" * 20000 + b"\n"))
    assert [(f, len(c)) for _, f, c in recs] == [(b"P", 8192), (b"P", 8192), (b"F", 3616)]


def test_records_reassemble_random_output() -> None:
    rnd = random.Random(7)
    for _ in range(500):
        parts = [bytes(rnd.choice(b"ab \t\r") for _ in range(rnd.choice([0, 3, 8191, 8192, 9000])))
                 for _ in range(rnd.randint(1, 4))]
        data = b"\n".join(parts) + (b"\n" if rnd.random() < 0.5 else b"")
        if not data:
            continue
        recs = _parse(format_records(TS, STDOUT, data))
        assert _reassemble(recs) == data
        assert all(len(c) <= RECORD_MAX for _, _, c in recs)


def test_has_long_line_boundaries() -> None:
    assert not has_long_line(b"x" * (RECORD_MAX - 1) + b"\n" + b"y" * (RECORD_MAX - 1))
    assert has_long_line(b"x" * RECORD_MAX)
    assert has_long_line(b"a\n" * 5000 + b"x" * RECORD_MAX + b"\n")
    assert not has_long_line(b"")


def test_sync_messages_byte_exact() -> None:
    assert syncpipe.encode(5805) == b'{"data": 5805}\n'
    assert syncpipe.encode(-1, b'runc create failed: "x"\n') == \
        b'{"data": -1, "message": "runc create failed: \\"x\\"\\n"}\n'
    msg = syncpipe.encode(-1, b"tab\there\x01\x7f\\ \xc3\xa9")
    assert msg == b'{"data": -1, "message": "tab\\there\\u0001\\u007f\\\\ \xc3\xa9"}\n'
    assert json.loads(msg)["message"] == "tab\there\x01\x7f\\ é"


def test_notify_filter() -> None:
    assert filter_message(b"READY=1") == b"READY=1"
    assert filter_message(b"MAINPID=1\nREADY=1\nSTATUS=serving") == b"READY=1\nSTATUS=serving"
    assert filter_message(b"FDSTORE=1\nFDNAME=x") == b""
    assert filter_message(b"WATCHDOG=1") == b"WATCHDOG=1"
    assert filter_message(b"EXTEND_TIMEOUT_USEC=5000000") == b"EXTEND_TIMEOUT_USEC=5000000"
    assert filter_message(b"ERRNO=abc") == b""
    assert filter_message(b"READY=1\0") == b""
    assert filter_message(b"STATUS=\xff\xfe") == b""
    assert filter_message(b"STATUS=" + b"x" * 5000) == b""
