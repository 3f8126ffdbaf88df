"""The monitor under a real systemd (PID 1 of a sandbox) and real journald: readiness,
status and watchdog through the notify proxy, the journald log driver, OOM reporting."""
from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import pytest

from supervisor.lab.sandbox import Sandbox

from .conftest import IMAGE, OURS, install_unit, sh, unit_props
from .conftest import TIME_SCALE as S

pytestmark = pytest.mark.systemd


# PID 1 of a pid namespace ignores SIGTERM unless it handles it: stay stoppable
IDLE = 'trap "exit 0" TERM; sleep 1000 & wait'


def _unit(name: str, script: str, tool: Path, *, notify: str = "container", extra: str = "",
          service: str = "") -> str:
    # the container runs `script` with the static sd-notify tool mounted at /n; systemd
    # unescapes \ and expands $ and % in ExecStart=, so all three are doubled
    script = script.replace("\\", "\\\\").replace("%", "%%").replace("$", "$$")
    return f"""[Unit]
Description=podvisor test {name}
[Service]
Type=notify
NotifyAccess=all
TimeoutStopSec=20
{service}
ExecStartPre=-/usr/bin/podman rm -f -t 0 {name}
ExecStart=/usr/bin/podman run --rm --name {name} --network none --sdnotify={notify} \\
  -v {tool}:/n:ro {extra} {IMAGE} sh -c '{script}'
ExecStopPost=-/usr/bin/podman rm -f -t 0 {name}
"""


def _main_pid_is_monitor(sb: Sandbox, unit: str) -> int:
    pid = int(unit_props(sb, unit, "MainPID")["MainPID"])
    assert pid > 0
    cmdline = sh(sb, f"tr '\\0' ' ' < /proc/{pid}/cmdline").stdout
    assert "podvisor-conmon --api-version 1" in cmdline, cmdline  # podvisor-conmon, not podman or conmon
    return pid


def test_start_waits_for_container_readiness(sandbox: Sandbox, sd_notify_tool: Path) -> None:
    script = "/n STATUS=warming-up; sleep 3; /n READY=1 STATUS=serving-blog; " + IDLE
    install_unit(sandbox, "rd.service", _unit("rd", script, sd_notify_tool))
    t0 = time.monotonic()
    sh(sandbox, "systemctl start rd.service", timeout=60)
    took = time.monotonic() - t0
    try:
        assert took >= 3.0, f"systemctl start returned after {took:.2f}s, before READY=1"
        props = unit_props(sandbox, "rd.service", "ActiveState", "SubState", "StatusText")
        assert props["ActiveState"] == "active" and props["SubState"] == "running"
        assert props["StatusText"] == "serving-blog"  # conmon 2.1.6 drops STATUS=
        _main_pid_is_monitor(sandbox, "rd.service")
    finally:
        sh(sandbox, "systemctl stop rd.service", check=False)


def test_container_that_never_gets_ready_fails_the_start(sandbox: Sandbox,
                                                          sd_notify_tool: Path) -> None:
    install_unit(sandbox, "never.service",
                 _unit("never", IDLE, sd_notify_tool, service="TimeoutStartSec=4"))
    res = sh(sandbox, "systemctl start never.service", check=False, timeout=60)
    assert res.returncode != 0
    props = unit_props(sandbox, "never.service", "ActiveState", "Result")
    assert props["Result"] == "timeout"
    assert props["ActiveState"] in ("failed", "inactive")
    gone = sh(sandbox, "podman ps -a --format '{{.Names}}'").stdout.split()
    assert "never" not in gone


def test_watchdog_pings_keep_the_unit_and_silence_restarts_it(sandbox: Sandbox,
                                                               sd_notify_tool: Path) -> None:
    # pings every 0.5 s for 6 s (3 watchdog periods), then goes quiet (times S under emulation)
    script = (f"/n READY=1; i=0; while [ $i -lt 12 ]; do /n WATCHDOG=1; sleep {0.5 * S:g}; i=$((i+1)); done; "
              + IDLE)
    install_unit(sandbox, "wd.service",
                 _unit("wd", script, sd_notify_tool, service=f"WatchdogSec={2 * S:g}\nRestart=on-failure\nRestartSec=1"))
    sh(sandbox, "systemctl start wd.service")
    try:
        time.sleep(5 * S)  # beyond two watchdog periods: only the forwarded pings keep it alive
        props = unit_props(sandbox, "wd.service", "ActiveState", "NRestarts")
        assert props["ActiveState"] == "active" and props["NRestarts"] == "0"
        deadline = time.monotonic() + 20 * S
        while time.monotonic() < deadline:
            props = unit_props(sandbox, "wd.service", "NRestarts")
            if props["NRestarts"] != "0":
                break
            time.sleep(0.5)
        assert props["NRestarts"] != "0", "the watchdog never fired after the pings stopped"
        log = sh(sandbox, "journalctl -u wd.service --no-pager").stdout
        assert "Watchdog timeout" in log
    finally:
        sh(sandbox, "systemctl stop wd.service", check=False, timeout=60)


def test_sdnotify_conmon_mode(sandbox: Sandbox, sd_notify_tool: Path) -> None:
    install_unit(sandbox, "cm.service", _unit("cm", IDLE, sd_notify_tool, notify="conmon"))
    t0 = time.monotonic()
    sh(sandbox, "systemctl start cm.service")
    try:
        assert time.monotonic() - t0 < 20
        assert unit_props(sandbox, "cm.service", "ActiveState")["ActiveState"] == "active"
        _main_pid_is_monitor(sandbox, "cm.service")
    finally:
        sh(sandbox, "systemctl stop cm.service", check=False)


def test_notify_floods_and_junk(sandbox: Sandbox, sd_notify_tool: Path) -> None:
    """Floods, oversized and binary datagrams and MAINPID=1 from the container: the monitor
    stays responsive, forwards only what it should, and stays systemd's main PID."""
    script = ("/n --flood 20000 STATUS=flooding; head -c 100000 /dev/urandom | /n --stdin; "
              "printf \"STATUS=bad\\377\" | /n --stdin; /n --child MAINPID=1 READY=1; "
              "/n FDSTORE=1 STATUS=after-junk; " + IDLE)
    install_unit(sandbox, "fl.service", _unit("fl", script, sd_notify_tool))
    sh(sandbox, "systemctl start fl.service", timeout=90)
    try:
        pid = _main_pid_is_monitor(sandbox, "fl.service")
        props = unit_props(sandbox, "fl.service", "StatusText", "ActiveState")
        assert props["ActiveState"] == "active"
        assert props["StatusText"] == "after-junk"
        # still responsive: an exec through the same monitor's container works
        assert sh(sandbox, "podman exec fl echo alive").stdout == "alive\n"
        assert int(unit_props(sandbox, "fl.service", "MainPID")["MainPID"]) == pid
    finally:
        sh(sandbox, "systemctl stop fl.service", check=False)


@pytest.mark.parametrize("monitor", ["/usr/bin/conmon", OURS])
def test_journald_driver(sandbox: Sandbox, monitor: str) -> None:
    """Entries carry the fields podman's reader and `journalctl CONTAINER_NAME=` need; both
    monitors produce the same set and podman logs reads them back."""
    name = "jl-" + ("ref" if monitor.endswith("/conmon") else "ours")
    sh(sandbox, f"podman --conmon {shlex.quote(monitor)} run --name {name} --network none --log-driver journald "
                f"{IMAGE} sh -c 'echo out-line; echo err-line >&2; printf tail-noeol'")
    try:
        raw = sh(sandbox, f"journalctl CONTAINER_NAME={name} -o json --no-pager").stdout
        entries = [json.loads(line) for line in raw.splitlines()]
        got = sorted((e["MESSAGE"], e["PRIORITY"], e.get("CONTAINER_PARTIAL_MESSAGE", "")) for e in entries)
        assert got == sorted([("out-line\n", "6", ""), ("err-line\n", "3", ""),
                              ("tail-noeol", "6", "true")])
        cid = sh(sandbox, f"podman inspect -f '{{{{.Id}}}}' {name}").stdout.strip()
        for e in entries:
            assert e["CONTAINER_ID_FULL"] == cid and e["CONTAINER_ID"] == cid[:12]
            assert e["SYSLOG_IDENTIFIER"] == name
        logs = sh(sandbox, f"podman logs {name}")
        assert logs.stdout.startswith("out-line\n") and "tail-noeol" in logs.stdout
        assert "err-line" in logs.stderr
    finally:
        sh(sandbox, f"podman rm -f {name}", check=False)


def test_oom_under_systemd(sandbox: Sandbox, sd_notify_tool: Path) -> None:
    hog = 'x=a; while true; do x="$x$x"; done'
    # no --rm: podman run's own removal would race the exit command's cleanup, and a failed
    # cleanup becomes the monitor's exit status (as with conmon)
    unit = _unit("hog", f"/n READY=1; {hog}", sd_notify_tool, extra="--memory 32m --memory-swap 32m")
    unit = unit.replace("run --rm --name hog", "run --name hog").replace(
        "ExecStopPost=-/usr/bin/podman rm -f -t 0 hog\n", "")
    install_unit(sandbox, "hog.service", unit)
    sh(sandbox, "systemctl start hog.service", check=False)
    props: dict[str, str] = {}
    deadline = time.monotonic() + 30 * S
    while time.monotonic() < deadline:
        props = unit_props(sandbox, "hog.service", "ActiveState", "ExecMainStatus", "StatusText")
        if props["ActiveState"] in ("failed", "inactive") and "OOM" in props["StatusText"]:
            break
        time.sleep(0.3)
    try:
        assert props["ActiveState"] in ("failed", "inactive"), props
        assert props["ExecMainStatus"] == "137", props
        assert "OOM" in props["StatusText"], props
        assert sh(sandbox, "podman inspect -f '{{.State.OOMKilled}}' hog").stdout.strip() == "true"
        journal = sh(sandbox, "journalctl SYSLOG_IDENTIFIER=podvisor-conmon CONTAINER_NAME=hog "
                              "--no-pager -o cat").stdout
        assert "killed by the OOM killer" in journal
    finally:
        sh(sandbox, "systemctl stop hog.service; podman rm -f hog", check=False)


def test_no_false_oom_after_a_normal_exit(sandbox: Sandbox, sd_notify_tool: Path) -> None:
    """A container that fills most of its memory limit (page cache and anonymous memory, so
    memory.events moves: "high"/"max" pressure) and exits 0 is not reported as OOM-killed."""
    work = 'dd if=/dev/zero of=/tmp/fill bs=1M count=20 2>/dev/null; x=a; i=0; ' \
           'while [ $i -lt 17 ]; do x="$x$x"; i=$((i+1)); done; echo done-normally'
    unit = _unit("calm", f"/n READY=1; {work}", sd_notify_tool, extra="--memory 48m --memory-swap 48m")
    unit = unit.replace("run --rm --name calm", "run --name calm").replace(
        "ExecStopPost=-/usr/bin/podman rm -f -t 0 calm\n", "")
    install_unit(sandbox, "calm.service", unit)
    sh(sandbox, "systemctl start calm.service", check=False)
    props: dict[str, str] = {}
    deadline = time.monotonic() + 60 * S
    while time.monotonic() < deadline:
        props = unit_props(sandbox, "calm.service", "ActiveState", "ExecMainStatus", "StatusText", "Result")
        if props["ActiveState"] in ("failed", "inactive"):
            break
        time.sleep(0.3)
    try:
        assert props["ActiveState"] == "inactive" and props["Result"] == "success", props
        assert props["ExecMainStatus"] == "0" and "OOM" not in props["StatusText"], props
        state = sh(sandbox, "podman inspect -f '{{.State.OOMKilled}} {{.State.ExitCode}}' calm").stdout.split()
        assert state == ["false", "0"]
        journal = sh(sandbox, "journalctl SYSLOG_IDENTIFIER=podvisor-conmon CONTAINER_NAME=calm "
                              "--no-pager -o cat").stdout
        assert "OOM" not in journal, journal
        assert "done-normally" in sh(sandbox, "podman logs calm").stdout
    finally:
        sh(sandbox, "systemctl stop calm.service; podman rm -f calm", check=False)


def test_journald_gets_every_line_of_a_fast_writer(sandbox: Sandbox) -> None:
    """20000 lines as fast as the container can write them: every one is in the journal, in
    order. (journald's own rate limit, 10000 per 30 s by default, is a policy of its own and
    is lifted for this test.)"""
    sh(sandbox, "mkdir -p /etc/systemd/journald.conf.d && printf '[Journal]\\nRateLimitBurst=0\\n' "
                "> /etc/systemd/journald.conf.d/90-pvt-norate.conf && systemctl restart systemd-journald")
    count = 20000
    try:
        sh(sandbox, f"podman run --name jfast --network none --log-driver journald {IMAGE} "
                    f"sh -c 'seq 1 {count} | sed s/^/line-/'", timeout=120)
        deadline = time.monotonic() + 30
        while True:
            # MESSAGE keeps the line's own newline (as with conmon): -o cat shows a blank after each
            out = sh(sandbox, "journalctl CONTAINER_NAME=jfast -o cat --no-pager").stdout
            got = [line for line in out.split("\n") if line]
            if len(got) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert got == [f"line-{i}" for i in range(1, count + 1)]
    finally:
        sh(sandbox, "podman rm -f jfast; rm -f /etc/systemd/journald.conf.d/90-pvt-norate.conf; "
                    "systemctl restart systemd-journald", check=False)
