"""The ctl/winsz FIFOs and the OOM watcher, on real FIFOs and a real memory cgroup: every line
of a read is handled, bad lines are refused with a warning, a writer leaving never makes the
loop spin; an OOM kill in the container's cgroup is seen, and a normal exit is not one."""
from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from supervisor.monitor import files, oom
from supervisor.monitor.control import Control
from supervisor.monitor.loop import Loop
from supervisor.monitor.oom import OomWatcher


def _pump(loop: Loop, until: Callable[[], object], seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not until():
        assert time.monotonic() < deadline, "timed out"
        loop.run_once(0.05)


class Ctl:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.loop = Loop()
        self.resizes: list[tuple[int, int]] = []
        self.reopens = 0
        self.control = Control(self.loop, self.fd, lambda r, c: self.resizes.append((r, c)),
                               self._reopen)

    def _reopen(self) -> None:
        self.reopens += 1

    def write(self, name: str, data: bytes) -> None:
        fd = os.open(self.path / name, os.O_WRONLY)  # as podman: open, write, close
        os.write(fd, data)
        os.close(fd)


@pytest.fixture
def ctl(tmp_path: Path) -> Iterator[Ctl]:
    c = Ctl(tmp_path)
    yield c
    for fd in c.control.fds:
        os.close(fd)
    os.close(c.fd)


def test_fifos_are_made_fresh(tmp_path: Path) -> None:
    (tmp_path / "ctl").write_text("stale regular file")
    c = Ctl(tmp_path)
    for name in ("ctl", "winsz"):
        st = (tmp_path / name).stat()
        assert stat.S_ISFIFO(st.st_mode) and not st.st_mode & 0o007  # a FIFO, nothing for others
    for fd in c.control.fds:
        os.close(fd)
    os.close(c.fd)


def test_every_line_of_a_write_is_handled(ctl: Ctl) -> None:
    ctl.write("ctl", b"1 24 80\n2 0 0\n1 50 132\n")
    _pump(ctl.loop, lambda: len(ctl.resizes) == 2 and ctl.reopens == 1)
    assert ctl.resizes == [(24, 80), (50, 132)]
    ctl.write("winsz", b"30 100\n")
    _pump(ctl.loop, lambda: len(ctl.resizes) == 3)
    assert ctl.resizes[-1] == (30, 100)


def test_a_line_split_across_writes_is_joined(ctl: Ctl) -> None:
    ctl.write("ctl", b"1 4")
    for _ in range(3):
        ctl.loop.run_once(0.02)
    assert ctl.resizes == []
    ctl.write("ctl", b"0 120\n")
    _pump(ctl.loop, lambda: ctl.resizes)
    assert ctl.resizes == [(40, 120)]


def test_bad_lines_are_refused_and_reported(ctl: Ctl, capfd: pytest.CaptureFixture[str]) -> None:
    ctl.write("ctl", b"1 70000 80\nhello\n9 1 1\n1 -2 3\n" + b"7" * 500 + b"\n1 10 20\n")
    _pump(ctl.loop, lambda: ctl.resizes)
    assert ctl.resizes == [(10, 20)] and ctl.reopens == 0
    err = capfd.readouterr().err
    assert "out of range" in err and "malformed line" in err and "unknown message type 9" in err


def test_a_writer_closing_does_not_wake_the_loop(ctl: Ctl) -> None:
    ctl.write("ctl", b"2 0 0\n")
    _pump(ctl.loop, lambda: ctl.reopens == 1)
    calls = [0]
    original = ctl.control._read

    def counting(fd: int, handle: Callable[[bytes], None]) -> None:
        calls[0] += 1
        original(fd, handle)
    ctl.control._read = counting  # type: ignore[method-assign]
    for _ in range(5):
        ctl.loop.run_once(0.02)
    assert calls[0] == 0  # no EPOLLHUP storm: the monitor holds a write end itself


# ---- OOM --------------------------------------------------------------------------------------

class Cgroup:
    """A memory cgroup of its own (v1 or v2, whichever this host has), removed afterwards."""

    def __init__(self, limit: int) -> None:
        name = f"pvt-oom-{os.getpid()}-{time.monotonic_ns()}"
        if oom._is_cgroup2():
            self.path = Path(oom.CGROUP_ROOT) / name
            self.path.mkdir()
            (self.path / "memory.max").write_text(str(limit))
            (self.path / "memory.swap.max").write_text("0")
        else:
            self.path = Path(oom.CGROUP_ROOT) / "memory" / name
            self.path.mkdir()
            (self.path / "memory.limit_in_bytes").write_text(str(limit))
            if (self.path / "memory.memsw.limit_in_bytes").exists():
                (self.path / "memory.memsw.limit_in_bytes").write_text(str(limit))

    def remove(self) -> None:
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.05)
        self.path.rmdir()


def _child_in(cg: Cgroup, allocate: int) -> tuple[int, int]:
    """A process in `cg` that allocates (and touches) `allocate` bytes once told to go."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            (cg.path / "cgroup.procs").write_text(str(os.getpid()))
            os.write(ready_w, b"r")
            os.read(go_r, 1)
            block = b"x" * allocate  # memset: every page is touched
            os._exit(0 if len(block) == allocate else 1)
        finally:
            os._exit(3)
    os.close(ready_w)
    os.close(go_r)
    assert os.read(ready_r, 1) == b"r"
    os.close(ready_r)
    return pid, go_w


@pytest.fixture
def cgroup() -> Iterator[Cgroup]:
    if os.geteuid() != 0:
        pytest.skip("making a memory cgroup needs root")
    cg = Cgroup(32 << 20)
    yield cg
    cg.remove()


def _run_child(loop: Loop, pid: int, go: int) -> int:
    os.write(go, b"g")
    os.close(go)
    status: list[int] = []

    def exited() -> bool:
        p, st = os.waitpid(pid, os.WNOHANG)
        if p:
            status.append(st)
        return bool(status)
    _pump(loop, exited, 30)
    return status[0]


def test_an_oom_kill_is_seen(cgroup: Cgroup) -> None:
    pid, go = _child_in(cgroup, 256 << 20)
    loop = Loop()
    seen: list[int] = []
    watcher = OomWatcher(loop, pid, lambda: seen.append(1))
    status = _run_child(loop, pid, go)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9  # the kernel's OOM kill
    assert watcher.final_check() is True
    assert seen == [1]  # reported once
    assert watcher.fds == []  # its fds are closed


def test_a_normal_exit_is_not_an_oom(cgroup: Cgroup) -> None:
    pid, go = _child_in(cgroup, 4 << 20)
    loop = Loop()
    seen: list[int] = []
    watcher = OomWatcher(loop, pid, lambda: seen.append(1))
    status = _run_child(loop, pid, go)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert watcher.final_check() is False and seen == []


# cgroup v2 when systemd removes the emptied scope before the monitor read the kill: the host here
# has no cgroup v2, so a tree of plain files stands in for it (inotify works the same on them);
# the VM check's rootless step proves it against the real thing.
EVENTS = "low 0\nhigh 0\nmax {max}\noom {oom}\noom_kill {kills}\n"


class FakeV2:
    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.parent = tmp / "machine.slice"
        self.scope = self.parent / "libpod-x.scope"
        self.scope.mkdir(parents=True)
        self.write(self.parent, kills=3)  # other containers' kills before ours started
        self.write(self.scope)
        monkeypatch.setattr(oom, "CGROUP_ROOT", str(self.parent))
        monkeypatch.setattr(oom, "_is_cgroup2", lambda: True)
        monkeypatch.setattr(oom, "_cgroup_paths", lambda pid: {"": "/libpod-x.scope"})
        self.loop = Loop()
        self.reports: list[bool] = []
        self.watcher = OomWatcher(self.loop, os.getpid(), lambda: self.reports.append(True))

    @staticmethod
    def write(d: Path, max: int = 0, oom: int = 0, kills: int = 0) -> None:
        (d / "memory.events").write_text(EVENTS.format(max=max, oom=oom, kills=kills))

    def kill_then_remove(self, in_parent: bool = True) -> None:
        """The OOM killer's counters move (ours, and the parent's as memory.events is
        hierarchical), then the scope is removed before the monitor's loop runs again."""
        self.write(self.scope, max=9, oom=1, kills=1)
        self.write(self.parent, max=9, oom=1, kills=4 if in_parent else 3)
        (self.scope / "memory.events").unlink()
        self.scope.rmdir()


@pytest.fixture
def v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeV2]:
    f = FakeV2(tmp_path, monkeypatch)
    yield f
    f.watcher.final_check()


def test_v2_a_kill_whose_scope_is_gone_before_the_read_is_reported(v2: FakeV2) -> None:
    v2.kill_then_remove()
    assert v2.watcher.final_check(sigkilled=True) is True
    assert v2.reports == [True]


def test_v2_a_gone_scope_is_no_oom_without_a_kill_in_the_parent(v2: FakeV2) -> None:
    v2.kill_then_remove(in_parent=False)
    assert v2.watcher.final_check(sigkilled=True) is False


def test_v2_a_gone_scope_is_no_oom_when_the_container_was_not_sigkilled(v2: FakeV2) -> None:
    v2.kill_then_remove()
    assert v2.watcher.final_check(sigkilled=False) is False


def test_v2_another_containers_kill_is_not_ours(v2: FakeV2) -> None:
    """Our file was read after its last event and had not moved: a kill elsewhere in the parent
    while ours then ends by SIGKILL (podman kill, a stop's time-out) is not our OOM."""
    v2.write(v2.scope, max=2)  # an event of ours, read while the scope exists
    _pump(v2.loop, lambda: v2.watcher.parent_kills == 3)
    v2.loop.run_once(0)
    v2.write(v2.parent, kills=4)
    (v2.scope / "memory.events").unlink()
    v2.scope.rmdir()
    assert v2.watcher.final_check(sigkilled=True) is False
    assert v2.reports == []


def test_v2_a_kill_read_in_time_needs_no_fallback(v2: FakeV2) -> None:
    v2.write(v2.scope, max=9, oom=1, kills=1)
    _pump(v2.loop, lambda: v2.reports)
    assert v2.watcher.final_check(sigkilled=False) is True


def test_v2_a_wake_up_reads_our_counters_once_and_an_oom_event_makes_the_candidate(
        v2: FakeV2, monkeypatch: pytest.MonkeyPatch) -> None:
    """The limit was hit and reclaim failed (`oom` moved, `oom_kill` not yet): one read of our
    memory.events gives both counters, and the scope removed before the kill is read is the OOM."""
    reads: list[str] = []

    def read_small(path: str) -> bytes:
        reads.append(path)
        return files.read_small(path)

    monkeypatch.setattr(oom, "read_small", read_small)
    v2.write(v2.scope, max=5, oom=1)
    _pump(v2.loop, lambda: v2.watcher.candidate)
    ours = str(v2.scope / "memory.events")
    assert reads == [str(v2.parent / "memory.events"), ours], reads
    (v2.scope / "memory.events").unlink()
    v2.scope.rmdir()
    assert v2.watcher.final_check(sigkilled=False) is True and v2.reports == [True]
