"""Management CLI: the pure parts (formatting, --since, podman's JSON, unit properties, views)."""
from __future__ import annotations

import json
import time
from datetime import datetime

import pytest

from supervisor.manage import fmt, journal, ps, views
from supervisor.manage.errors import ManageError
from supervisor.manage.inventory import Inventory
from supervisor.manage.model import ContainerStatus, PodStatus, PortMapping, UnitStatus, Usage
from supervisor.manage.podman import PodmanCommand, parse_ps


@pytest.mark.parametrize("seconds, text", [
    (None, "-"), (0, "0s"), (59.9, "59s"), (60, "1m00s"), (252, "4m12s"), (3600, "1h00m"),
    (3 * 3600 + 5 * 60 + 9, "3h05m"), (2 * 86400 + 4 * 3600, "2d04h"), (-5, "0s"),
])
def test_duration(seconds: float | None, text: str) -> None:
    assert fmt.duration(seconds) == text


@pytest.mark.parametrize("n, text", [
    (None, "-"), (0, "0B"), (1023, "1023B"), (1024, "1K"), (812 * 1024, "812K"),
    (int(8.1 * 1024 * 1024), "8.1M"), (150 * 1024 * 1024, "150M"), (3 * 1024 ** 3, "3.0G"),
])
def test_size(n: int | None, text: str) -> None:
    assert fmt.size(n) == text


def test_table_aligns_on_visible_width_and_colours_only_when_enabled() -> None:
    on, off = fmt.Palette(True), fmt.Palette(False)
    assert off("x", "red") == "x"
    assert on("x", "red") == "\x1b[31mx\x1b[0m"
    lines = fmt.table(["A", "NUM", "C"], [[on("xx", "green"), "1", "last"], ["y", "100", ""]], right={1})
    plain = [fmt._ANSI.sub("", line) for line in lines]
    assert plain == ["A   NUM  C", "xx    1  last", "y   100"]


def test_palette_is_off_for_pipes_and_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert fmt.Palette.for_stream(Tty()).enabled  # type: ignore[arg-type]
    monkeypatch.setenv("NO_COLOR", "1")
    assert not fmt.Palette.for_stream(Tty()).enabled  # type: ignore[arg-type]
    import io
    monkeypatch.delenv("NO_COLOR")
    assert not fmt.Palette.for_stream(io.StringIO()).enabled


NOW = 1_800_000_000.0


@pytest.mark.parametrize("text, expected", [
    ("10m", NOW - 600), ("-2h", NOW - 7200), ("30 min ago", NOW - 1800), ("45s", NOW - 45),
    ("1d", NOW - 86400), ("1.5h", NOW - 5400), ("now", NOW), ("@1700000000", 1_700_000_000.0),
    ("@1700000000.25", 1_700_000_000.25),
])
def test_parse_since_relative(text: str, expected: float) -> None:
    assert journal.parse_since(text, now=NOW) == pytest.approx(expected)


def test_parse_since_dates() -> None:
    assert journal.parse_since("2026-11-28T10:00:00+00:00") == datetime.fromisoformat(
        "2026-11-28T10:00:00+00:00").timestamp()
    local = datetime(2026, 11, 28, 10, 0).timestamp()  # no offset: local time, as journalctl reads it
    assert journal.parse_since("2026-11-28 10:00") == local
    today = journal.parse_since("today", now=NOW)
    assert journal.parse_since("yesterday", now=NOW) == pytest.approx(today - 86400, abs=3600)  # DST
    assert datetime.fromtimestamp(today).hour == 0


@pytest.mark.parametrize("bad", ["", "soon", "10 parsecs", "@x", "@nan", "@inf", "@-inf", "@1e400",
                                 "@-1", "@253402300800", "99999999999 weeks", "0001-01-01",
                                 "9999-12-31T23:59:59-14:00"])
def test_parse_since_rejects(bad: str) -> None:
    with pytest.raises(ManageError, match="--since"):
        journal.parse_since(bad)


def test_journal_argv_groups_and_fields() -> None:
    argv = journal.argv([["CONTAINER_NAME=a", "CONTAINER_NAME=b"], ["_SYSTEMD_UNIT=u", "SYSLOG_IDENTIFIER=u"]],
                        since=1700000000.7, lines=5, follow=True, after_cursor="s=1")
    assert argv[0].endswith("journalctl")
    assert "--output=json" in argv and "--since=@1700000000" in argv and "--lines=5" in argv
    assert "--follow" in argv and "--after-cursor=s=1" in argv
    assert argv[-5:] == ["CONTAINER_NAME=a", "CONTAINER_NAME=b", "+", "_SYSTEMD_UNIT=u", "SYSLOG_IDENTIFIER=u"]
    fields = next(a for a in argv if a.startswith("--output-fields="))
    assert "MESSAGE" in fields and "CONTAINER_NAME" in fields


def test_journal_text_decodes_binary_fields() -> None:
    assert journal.text("plain") == "plain"
    assert journal.text([104, 105, 255]) == "hi\ufffd"
    assert journal.text(None) == ""


PS_JSON = json.dumps([
    {"Id": "aa" * 32, "Names": ["blog.infra"], "State": "running", "Pid": 511, "Image": "localhost/podman-pause:4.3.1-0",
     "StartedAt": 1795861681, "Exited": False, "ExitCode": 0, "IsInfra": True,
     "Ports": [{"host_ip": "", "container_port": 8080, "host_port": 8080, "range": 1, "protocol": "tcp"},
               {"host_ip": "127.0.0.1", "container_port": 53, "host_port": 5353, "range": 2, "protocol": "udp"}]},
    {"Id": "bb" * 32, "Names": ["blog.web"], "State": "exited", "Pid": 0, "Image": "localhost/podvisor-blog:latest",
     "StartedAt": -62135596800, "Exited": True, "ExitCode": 3, "Ports": None},
])


def test_parse_podman_ps() -> None:
    found = parse_ps(PS_JSON)
    infra, web = found["blog.infra"], found["blog.web"]
    assert infra.pid == 511 and infra.state == "running" and infra.exit_code is None
    assert [str(p) for p in infra.ports] == ["0.0.0.0:8080->8080/tcp", "127.0.0.1:5353->53/udp",
                                             "127.0.0.1:5354->54/udp"]
    assert web.started_at is None and web.exit_code == 3 and web.ports == []
    assert parse_ps("") == {} and parse_ps("null") == {}


def test_podman_command_from_unit_properties() -> None:
    props = {
        "ExecStart": [("/usr/local/bin/podvisor", ["/usr/local/bin/podvisor", "ready-probe", "--", "/usr/bin/podman",
                                                   "run"], False, 0, 0, 0, 0, 0, 0, 0)],
        "ExecStop": [("/usr/bin/podman", ["/usr/bin/podman", "--root=/srv/c", "--runroot=/run/c", "stop", "--ignore",
                                          "--cidfile=/run/x.ctr-id"], False, 0, 0, 0, 0, 0, 0, 0)],
        "Environment": ["CONTAINERS_CONF=/etc/podvisor/containers.conf", "PODMAN_SYSTEMD_UNIT=pod-blog@web.service"],
    }
    cmd = PodmanCommand.from_unit(props)
    assert cmd.argv == ("/usr/bin/podman", "--root=/srv/c", "--runroot=/run/c")
    assert cmd.containers_conf == "/etc/podvisor/containers.conf"
    assert PodmanCommand.from_unit({}) == PodmanCommand(("podman",), None)


def _unit(**p: object) -> UnitStatus:
    base = {"LoadState": "loaded", "ActiveState": "active", "SubState": "running", "Result": "success",
            "MainPID": 42, "NRestarts": 2, "StatusText": "ready", "StateChangeTimestamp": 1_700_000_000_000_000,
            "ActiveEnterTimestamp": 1_700_000_000_500_000, "ExecMainCode": 0, "ExecMainStatus": 0,
            "FragmentPath": "/etc/systemd/system/x.service", "NeedDaemonReload": False, "LoadError": ("", "")}
    base.update(p)
    return UnitStatus.from_properties("pod-blog@web.service", base)


def test_unit_status_from_properties() -> None:
    u = _unit()
    assert u.ready and u.state == "active (running)" and u.main_pid == 42 and u.restarts == 2
    assert u.active_since == 1_700_000_000.5 and u.failure() == ""
    assert not _unit(ActiveState="activating", SubState="start").ready
    assert _unit(ActiveEnterTimestamp=0).active_since is None


def test_unit_failure_in_systemd_terms() -> None:
    failed = _unit(ActiveState="failed", SubState="failed", Result="exit-code", ExecMainCode=1, ExecMainStatus=3)
    assert failed.failure() == "Result: exit-code, status=3"
    killed = _unit(ActiveState="failed", Result="signal", ExecMainCode=2, ExecMainStatus=9)
    assert killed.failure() == "Result: signal, signal=KILL"
    assert _unit(ActiveState="failed", Result="start-limit-hit", ExecMainCode=1, ExecMainStatus=3).failure() \
        == "Result: start-limit-hit"
    missing = UnitStatus.from_properties("x.service", {"LoadState": "not-found",
                                                       "LoadError": ("org.freedesktop.systemd1.NoSuchUnit", "gone")})
    assert missing.failure() == "not-found: gone"


def _inventory() -> Inventory:
    infra = ContainerStatus("infra", "blog.infra", _unit(NRestarts=0), usage=Usage([12], 1 << 20, 0.5, 0.0))
    web = ContainerStatus("web", "blog.web", _unit(), usage=Usage([13, 14], 9 << 20, 1.25, 2.5))
    bad = ContainerStatus("bad", "blog.bad", _unit(ActiveState="failed", SubState="failed", Result="exit-code",
                                                    ExecMainCode=1, ExecMainStatus=3, MainPID=0))
    pod = PodStatus("blog", _unit(SubState="exited", MainPID=0), infra, [bad, web],
                    [PortMapping("", 8080, 8080, "tcp")])
    return Inventory([pod], ["a warning"], taken_at=1_700_000_100.5)


def test_ps_json_shape() -> None:
    data = json.loads(ps.to_json(_inventory()))
    assert data["warnings"] == ["a warning"]
    pod = data["pods"][0]
    assert pod["pod"] == "blog" and pod["ready"] is False
    assert (pod["containers_ready"], pod["containers_total"]) == (1, 2)
    assert pod["memory_bytes"] == 10 << 20 and pod["cpu_percent"] == 2.5
    assert pod["ports"] == [{"host_ip": "", "host_port": 8080, "container_port": 8080, "protocol": "tcp"}]
    bad, web = pod["containers"]
    assert bad["failure"] == "Result: exit-code, status=3" and bad["ready"] is False and bad["main_pid"] is None
    assert web["uptime_seconds"] == 100.0 and web["restarts"] == 2 and web["pids"] == [13, 14]
    assert web["podman"] is None and pod["infra"]["name"] == "infra"


def test_ps_table_plain() -> None:
    text = ps.to_table(_inventory(), fmt.Palette(False), now=1_700_000_100.5)
    lines = text.splitlines()
    assert lines[0].split() == list(ps.HEADERS)
    assert lines[1].split()[:4] == ["blog", "active", "(exited)", "1/2"]
    assert "0.0.0.0:8080->8080/tcp" in lines[1]
    assert lines[3].split()[:3] == ["bad", "failed", "(exit-code)"]
    web = lines[4].split()
    assert web[:6] == ["web", "active", "(running)", "yes", "-", "2"] and "1m40s" in web and "9.0M" in web
    assert "\x1b" not in text
    assert ps.to_table(Inventory([]), fmt.Palette(False)).startswith("no pods installed")


def test_views_times_are_iso() -> None:
    u = _unit()
    j = views.unit_json(u, now=time.time())
    assert datetime.fromisoformat(j["active_since"]).timestamp() == 1_700_000_000.5
