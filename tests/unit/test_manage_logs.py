"""`podvisor logs` without systemd: k8s-file records (rotation, partial lines), journal entries
(partial pieces, streams), interleaving by time."""
from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from supervisor.manage import logs
from supervisor.manage.logs import JournalDecoder, K8sFileReader, LogLine, Target


def _rec(t: str, stream: str, kind: str, text: str) -> str:
    return f"2026-11-28T10:00:{t}+00:00 {stream} {kind} {text}\n"


def _epoch(t: str) -> float:
    return datetime.fromisoformat(f"2026-11-28T10:00:{t}+00:00").timestamp()


def test_k8s_time_reads_nanoseconds_and_offsets() -> None:
    assert logs.k8s_time("2026-11-28T10:00:01.123456789+00:00") == _epoch("01.123456")
    assert logs.k8s_time("2026-11-28T11:00:01.5+01:00") == _epoch("01.5")
    assert logs.k8s_time("garbage") == 0.0


def test_k8s_file_with_rotation_and_partials(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    (tmp_path / "ctr.log.2").write_text(_rec("01.000000001", "stdout", "F", "oldest"))
    (tmp_path / "ctr.log.1").write_text(_rec("02.000000000", "stderr", "P", "half ")
                                        + _rec("02.100", "stderr", "F", "done"))
    path.write_text(_rec("03.000000000", "stdout", "F", "current") + _rec("03.5", "stdout", "F", "") +
                    _rec("04.0", "stdout", "F", "torn"))
    reader = K8sFileReader(Target("web", "blog.web", "pod-blog@web.service", "k8s-file", str(path)))
    got = list(reader.backlog())
    assert [(x.stream, x.text) for x in got] == [("stdout", "oldest"), ("stderr", "half done"), ("stdout", "current"),
                                                ("stdout", ""), ("stdout", "torn")]
    assert got[0].time == _epoch("01.000000") and all(x.container == "web" for x in got)

    # appended lines, a record written in two pieces, then the monitor's rotation (rename + new file)
    with open(path, "a") as f:
        f.write(_rec("05", "stdout", "F", "new"))
        f.write("2026-11-28T10:00:06+00:00 stdout F spl")
    assert [x.text for x in reader.poll()] == ["new"]
    with open(path, "a") as f:
        f.write("it\n")
    assert [x.text for x in reader.poll()] == ["split"]
    os.rename(path, tmp_path / "ctr.log.1")
    path.write_text(_rec("07", "stdout", "F", "after rotation"))
    assert [x.text for x in reader.poll()] == ["after rotation"]
    reader.close()


def test_journal_decoder_joins_partials_and_names_streams() -> None:
    t = Target("web", "blog.web", "pod-blog@web.service")
    d = JournalDecoder([t])

    def entry(msg: str, prio: str = "6", partial: bool = False, ident: str = "blog.web", usec: int = 1) -> dict:
        e = {"MESSAGE": msg, "PRIORITY": prio, "CONTAINER_NAME": "blog.web", "SYSLOG_IDENTIFIER": ident,
             "__REALTIME_TIMESTAMP": str(usec), "__CURSOR": f"c{usec}"}
        if partial:
            e["CONTAINER_PARTIAL_MESSAGE"] = "true"
        return e

    assert d.decode(entry("one\n")) == LogLine(1e-6, "web", "stdout", "one")
    assert d.decode(entry("long ", partial=True, usec=2)) is None
    assert d.decode(entry("err\n", prio="3", usec=3)) == LogLine(3e-6, "web", "stderr", "err")
    assert d.decode(entry("line\n", usec=4)) == LogLine(4e-6, "web", "stdout", "long line")
    oom = d.decode(entry("container web was killed by the OOM killer", prio="3", ident="podvisor-conmon", usec=5))
    assert oom is not None and oom.stream == "monitor"
    assert d.cursor == "c5"
    # passthrough: the unit's own stdout, matched by unit
    p = JournalDecoder([Target("api", "x.api", "pod-x@api.service", "passthrough")])
    line = p.decode({"MESSAGE": "hello", "_SYSTEMD_UNIT": "pod-x@api.service", "__REALTIME_TIMESTAMP": "7"})
    assert line is not None and line.container == "api"


def test_journal_groups_per_driver() -> None:
    ts = [Target("a", "p.a", "pod-p@a.service"), Target("b", "p.b", "pod-p@b.service", "k8s-file", "/x"),
          Target("c", "p.c", "pod-p@c.service", "passthrough"), Target("d", "p.d", "pod-p@d.service")]
    # root's containers: their monitors' entries are root's (_UID=0), never a user's of the same name
    assert logs.journal_groups(ts) == [["CONTAINER_NAME=p.a", "CONTAINER_NAME=p.d", "_UID=0"],
                                       ["_SYSTEMD_UNIT=pod-p@c.service", "SYSLOG_IDENTIFIER=pod-p@c"]]
    assert logs.journal_groups([ts[1]]) == []
    # a user's (--user): its own uid, and its manager's unit field
    mine = [Target("a", "p.a", "pod-p@a.service", user=True),
            Target("c", "p.c", "pod-p@c.service", "passthrough", user=True)]
    uid = f"_UID={os.getuid()}"
    assert logs.journal_groups(mine) == [["CONTAINER_NAME=p.a", uid],
                                         ["_SYSTEMD_USER_UNIT=pod-p@c.service", uid, "SYSLOG_IDENTIFIER=pod-p@c"]]


def test_read_all_interleaves_files_by_time(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text(_rec("01", "stdout", "F", "a1") + _rec("03", "stdout", "F", "a3") + _rec("05", "stdout", "F", "a5"))
    b.write_text(_rec("02", "stderr", "F", "b2") + _rec("04", "stdout", "F", "b4"))
    ts = [Target("a", "p.a", "pod-p@a.service", "k8s-file", str(a)),
          Target("b", "p.b", "pod-p@b.service", "k8s-file", str(b))]
    assert [x.text for x in logs.read_all(ts)] == ["a1", "b2", "a3", "b4", "a5"]
    assert [x.text for x in logs.read_all(ts, tail=2)] == ["b4", "a5"]
    assert [x.text for x in logs.read_all(ts, since=_epoch("03"))] == ["a3", "b4", "a5"]
    assert [x.container for x in logs.read_all(ts, tail=3)] == ["a", "b", "a"]
