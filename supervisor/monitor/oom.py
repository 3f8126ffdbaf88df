"""OOM watching for the container's memory cgroup, without polling.

cgroup v1: an eventfd registered for memory.oom_control through cgroup.event_control. It
fires when the cgroup enters OOM - before the kernel's oom_kill counter moves - and also when
the cgroup is removed. So a wake-up while the cgroup still exists makes an OOM candidate; at
exit the counter decides if it can still be read, and the candidate if systemd has already
removed the emptied scope (seen under systemd's cgroup manager). cgroup v2: inotify on memory.events,
comparing the oom_kill counter with the value at start; a move of its `oom` counter (the limit
was hit and reclaim failed: the kill follows) makes the candidate, for the same reason - systemd
removes an emptied libpod-<id>.scope at once, maybe before the monitor reads the file again.
If it is gone before the monitor read it at all after the last event (seen under emulation, with a
user manager), the parent's counter decides: memory.events counts the subtree's kills, so a kill in
the parent since the last read of our own file, an event we could not read, and a SIGKILLed
container make the OOM. The window is the few milliseconds between our last read and the removal.
"""
from __future__ import annotations

import os
from collections.abc import Callable

from .files import read_small, write_small
from .loop import READ, Loop

TYPE_CHECKING = False  # typing costs start time; only type checkers need it
if TYPE_CHECKING:
    from .inotify import Inotify

CGROUP_ROOT = "/sys/fs/cgroup"
CGROUP2_SUPER_MAGIC = 0x63677270


# files are read as bytes with plain syscalls: text-mode open() runs the io and codecs layers,
# whose objects every forked monitor would copy (bench/monitor_pages.py)

def _cgroup_paths(pid: int) -> dict[str, str]:
    paths: dict[str, str] = {}
    for line in read_small(f"/proc/{pid}/cgroup").decode(errors="surrogateescape").splitlines():
        _, ctrls, path = line.split(":", 2)
        for c in ctrls.split(",") if ctrls else [""]:
            paths[c] = path
    return paths


def _is_cgroup2() -> bool:
    # the unified layout mounts cgroup2 at /sys/fs/cgroup itself; the hybrid one a tmpfs
    needle = b" " + CGROUP_ROOT.encode() + b" "
    try:
        fd = os.open("/proc/self/mounts", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        tail = b""
        while chunk := os.read(fd, 1 << 16):  # mounted early: in the first chunk
            data = tail + chunk
            at = data.find(needle)
            if at >= 0 and data.find(b" ", at + len(needle)) > 0:
                return data[at + len(needle):].startswith(b"cgroup2 ")
            tail = data[at:] if at >= 0 else data[-len(needle):]
    except OSError:
        pass
    finally:
        os.close(fd)
    return False


def _read_counters(path: str, *keys: str) -> list[int] | None:
    """The named counters from one read of the file, or None when the cgroup (or a key) is gone."""
    try:
        found = dict(line.split(b" ", 1) for line in read_small(path).split(b"\n") if line)
        return [int(found[k.encode()]) for k in keys]
    except (OSError, ValueError, KeyError):
        return None


def _read_counter(path: str, key: str) -> int | None:
    counters = _read_counters(path, key)
    return None if counters is None else counters[0]


class OomWatcher:
    def __init__(self, loop: Loop, pid: int, on_oom: Callable[[], None] | None = None) -> None:
        self.loop = loop
        self.on_oom = on_oom
        self.oomed = False
        self.candidate = False
        self.fds: list[int] = []
        self.events_file = ""  # memory.oom_control (v1) or memory.events (v2)
        self.start_kills = 0  # the oom_kill counter when the container started
        self.start_ooms = 0  # v2: the oom counter then
        self.event_fd = -1  # v1: the eventfd; v2: the inotify fd
        self.inotify: Inotify | None = None  # v2
        self.parent_file = ""  # v2: the parent cgroup's memory.events
        self.parent_kills: int | None = None  # its oom_kill when we last read our own counter
        self.unread = False  # v2: an event came after our last read, and the cgroup was gone
        paths = _cgroup_paths(pid)
        if _is_cgroup2():
            self._setup_v2(CGROUP_ROOT + paths.get("", "/"))
        else:
            self._setup_v1(CGROUP_ROOT + "/memory" + paths["memory"])

    # cgroup v1 ---------------------------------------------------------------------------
    def _setup_v1(self, cg: str) -> None:
        self.events_file = cg + "/memory.oom_control"
        ctl = os.open(self.events_file, os.O_RDONLY | os.O_CLOEXEC)
        efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self.fds += [ctl, efd]
        self.start_kills = _read_counter(self.events_file, "oom_kill") or 0
        write_small(cg + "/cgroup.event_control", b"%d %d" % (efd, ctl))
        self.event_fd = efd
        self.loop.add(efd, READ, self._on_v1_event)

    def _on_v1_event(self, ev: int) -> None:
        try:
            os.eventfd_read(self.event_fd)
        except BlockingIOError:
            return
        if self._check_counter():
            return
        if os.path.exists(self.events_file):
            self.candidate = True  # entering OOM: the kill (and the counter) follow
        else:  # the cgroup was removed: nothing more will come
            self.loop.remove(self.event_fd)

    # cgroup v2 ---------------------------------------------------------------------------
    def _setup_v2(self, cg: str) -> None:
        from .inotify import IN_MODIFY, Inotify

        self.events_file = cg + "/memory.events"
        self.start_kills, self.start_ooms = _read_counters(self.events_file, "oom_kill", "oom") or (0, 0)
        self.parent_file = os.path.dirname(cg) + "/memory.events"
        self.parent_kills = _read_counter(self.parent_file, "oom_kill")
        inotify = Inotify()
        inotify.add_watch(self.events_file, IN_MODIFY)
        self.fds.append(inotify.fd)
        self.event_fd = inotify.fd
        self.inotify = inotify
        self.loop.add(inotify.fd, READ, self._on_v2_event)

    def _on_v2_event(self, ev: int) -> None:
        if self._v2_pending():
            self._v2_read()

    def _v2_read(self) -> None:
        parent = _read_counter(self.parent_file, "oom_kill")  # first: no kill of ours is missed
        now = _read_counters(self.events_file, "oom_kill", "oom")  # both counters from one read
        if now is None:
            self.unread = True
        elif now[0] > self.start_kills:
            self._oom()
        else:
            self.parent_kills = parent
            if now[1] > self.start_ooms:
                self.candidate = True

    def _check_counter(self) -> bool | None:
        """True/False: the counter moved or not; None: the cgroup is gone."""
        kills = _read_counter(self.events_file, "oom_kill")
        if kills is None:
            return None
        if kills > self.start_kills:
            self._oom()
            return True
        return False

    def _v2_pending(self) -> bool:
        """Whether a counter changed since the last read."""
        return self.inotify is not None and self.inotify.read_modified()

    def _parent_moved(self) -> bool:
        if self.parent_kills is None:
            return False
        now = _read_counter(self.parent_file, "oom_kill")
        return now is not None and now > self.parent_kills

    # -------------------------------------------------------------------------------------
    def _oom(self) -> None:
        if not self.oomed:
            self.oomed = True
            if self.on_oom is not None:
                self.on_oom()

    def final_check(self, sigkilled: bool = False) -> bool:
        """Once more at exit: the counter may have moved after the last wake-up."""
        if not self.oomed and self._v2_pending():
            self._v2_read()
        gone = not self.oomed and self._check_counter() is None
        if gone and (self.candidate or (sigkilled and self.unread and self._parent_moved())):
            self._oom()
        for fd in self.fds:
            self.loop.remove(fd)
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []
        return self.oomed
