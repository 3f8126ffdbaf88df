"""The reaper and the exit records without podman: real child processes and their statuses,
a container that exits before its pid is known, the exit and OOM files in temp dirs, an exec
session's status on a real pipe, the OOM report on a real notify socket."""
from __future__ import annotations

import functools
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.monitor import reaper
from supervisor.monitor.cli import Options
from supervisor.monitor.logs import journald
from supervisor.monitor.loop import Loop
from supervisor.monitor.notify import NotifyProxy
from supervisor.monitor.reaper import (
    Reaper,
    record_exit,
    report_exec_status,
    report_oom,
    write_oom_files,
)

CID = "e" * 64


def _child(code: int | None = None, sig: int | None = None, delay: float = 0) -> int:
    """A child that exits with `code` or is killed by `sig` after `delay`; returned once its
    signal dispositions are the default ones (so a signal sent to it is never lost)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            for s in (signal.SIGINT, signal.SIGTERM):  # a plain process, not pytest's
                signal.signal(s, signal.SIG_DFL)
            os.write(w, b"r")
            time.sleep(delay)
            if sig is not None:
                os.kill(os.getpid(), sig)
            os._exit(code or 0)
        finally:
            os._exit(99)
    os.close(w)
    assert os.read(r, 1) == b"r"
    os.close(r)
    return pid


def _reap_until(r: Reaper, done) -> None:
    deadline = time.monotonic() + 10
    while not done():
        assert time.monotonic() < deadline, "not reaped"
        r.reap()
        time.sleep(0.01)


def test_statuses_land_where_they_belong() -> None:
    r = Reaper()
    r.runtime_pid = _child(code=0)
    r.container_pid = _child(sig=signal.SIGTERM)
    _reap_until(r, lambda: r.runtime_done() and r.container_done())
    assert r.runtime_status == 0
    assert r.container_status == 128 + signal.SIGTERM  # conmon's 128 + signal


def test_a_container_reaped_before_its_pid_is_known() -> None:
    r = Reaper()
    early = _child(code=3)
    r.runtime_pid = _child(code=0, delay=0.1)
    _reap_until(r, r.runtime_done)
    assert r.early == {early: 3} and not r.container_done()
    r.set_container(early)  # read from the pid file afterwards
    assert r.container_status == 3 and r.early == {}


def test_others_are_collected_once_the_container_is_known() -> None:
    r = Reaper()
    r.container_pid = _child(delay=0.3)
    stray = _child(code=9)  # e.g. a background process reparented to the subreaper
    _reap_until(r, r.container_done)
    assert r.early == {}  # not kept: only statuses from before the pid was known matter
    with pytest.raises(ChildProcessError):
        os.waitpid(stray, os.WNOHANG)  # already collected: no zombie left


def test_reap_with_no_children_returns() -> None:
    r = Reaper()
    r.reap()
    assert not r.runtime_done()


def test_forward_goes_to_the_container_else_the_runtime() -> None:
    r = Reaper()
    r.forward(signal.SIGTERM)  # nobody yet: nothing happens
    r.runtime_pid = _child(delay=30)
    r.forward(signal.SIGTERM)
    _reap_until(r, r.runtime_done)
    assert r.runtime_status == 128 + signal.SIGTERM
    r.container_pid = _child(delay=30)
    r.forward(signal.SIGINT)
    _reap_until(r, r.container_done)
    assert r.container_status == 128 + signal.SIGINT


def test_kill_and_reap_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    r = Reaper()
    r.container_pid = _child(delay=30)
    r.kill_and_reap(r.container_pid, r.container_done)
    assert r.container_status == 128 + signal.SIGKILL
    monkeypatch.setattr(reaper, "REAP_SECONDS", 0.2)
    t0 = time.monotonic()
    r.kill_and_reap(1 << 22, lambda: False)  # no such process, never reaped: gives up
    assert time.monotonic() - t0 < 5


# ---- the exit records -------------------------------------------------------------------------

def _opts(tmp_path: Path, **kw: object) -> Options:
    return Options(cid=CID, cuuid=CID, runtime="/bin/true", bundle=str(tmp_path / "bundle"),
                   container_pidfile="", conmon_pidfile=None, name="web", logs=(), **kw)


@pytest.fixture
def dirs(tmp_path: Path) -> Path:
    for d in ("bundle", "exits", "persist"):
        (tmp_path / d).mkdir()
    return tmp_path


def test_exit_file_and_persist_copy(dirs: Path) -> None:
    opts = _opts(dirs, exit_dir=str(dirs / "exits"), persist_dir=str(dirs / "persist"))
    assert record_exit(opts, 137)
    assert (dirs / "exits" / CID).read_text() == "137"  # no newline, as conmon
    assert (dirs / "persist" / "exit").read_text() == "137"
    assert sorted(p.name for p in (dirs / "exits").iterdir()) == [CID]  # no temp file left


def test_exit_file_failure_is_reported(dirs: Path, capfd: pytest.CaptureFixture[str]) -> None:
    opts = _opts(dirs, exit_dir=str(dirs / "missing"))
    assert not record_exit(opts, 0)
    assert "Failed to write" in capfd.readouterr().err
    assert record_exit(_opts(dirs), 0)  # no --exit-dir: nothing to write


def test_oom_files(dirs: Path) -> None:
    write_oom_files(_opts(dirs, persist_dir=str(dirs / "persist")))
    assert (dirs / "bundle" / "oom").exists() and (dirs / "persist" / "oom").exists()


def test_exec_status_on_the_sync_pipe(dirs: Path) -> None:
    r, w = os.pipe()
    report_exec_status(_opts(dirs), w, 5, False)  # not exec: nothing
    report_exec_status(_opts(dirs, exec=True), w, 5, False)
    report_exec_status(_opts(dirs, exec=True), w, -1, True)
    os.close(w)
    assert os.read(r, 1000) == b'{"data": 5}\n{"data": -1, "message": "command timed out"}\n'
    os.close(r)


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(tmp_path / "systemd-notify"))
    s.settimeout(5)
    yield s
    s.close()


def test_oom_report_reaches_the_unit_status_and_the_journal(dirs: Path, systemd: socket.socket,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    journal.bind(str(dirs / "journal"))
    journal.settimeout(5)
    monkeypatch.setattr(journald, "send_event",
                        functools.partial(journald.send_event, path=str(dirs / "journal")))
    opts = _opts(dirs)
    notify = NotifyProxy(Loop(), opts.bundle, str(dirs / "systemd-notify"))
    report_oom(opts, notify)
    text = f"container web ({CID[:12]}) was killed by the OOM killer"
    assert systemd.recv(4096) == f"STATUS={text}".encode()
    entry = journal.recv(65536)
    assert text.encode() in entry and b"PODVISOR_CONTAINER_ID=" + CID.encode() in entry
    notify.close()
    journal.close()
