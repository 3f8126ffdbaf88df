"""A container's processes and their CPU and memory, with psutil.

Which processes: the container unit's MainPID is the podvisor-conmon monitor, a child subreaper
whose child is the container's init, so the monitor's descendants are the container's process
tree. We add the members of the container init's own cgroup (podman puts it in
machine.slice/libpod-<id>.scope): that catches ``podman exec`` sessions, whose processes hang
below a monitor of their own. Needs no podman call, so it works for non-root callers too. The
monitor itself is reported apart (``top`` shows it as the root of the tree), not in the usage.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from .model import Usage

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass
class Proc:
    pid: int
    ppid: int
    name: str
    cmdline: str
    user: str
    rss: int
    cpu_seconds: float
    cpu_percent: float | None = None
    children: list[Proc] = field(default_factory=list)


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(root, mount point, controllers) of every cgroup file system; {"2"} for cgroup2."""
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields, rfields = left.split(), right.split()
                if len(rfields) < 3 or rfields[0] not in ("cgroup", "cgroup2"):
                    continue
                # v1 super options name the controllers ("rw,memory", "rw,xattr,name=systemd")
                kinds = {"2"} if rfields[0] == "cgroup2" else set(rfields[2].split(","))
                out.append((fields[3], fields[4], kinds))
    except OSError:
        pass
    return out


def cgroup_dir(pid: int) -> Path | None:
    """The directory of `pid`'s cgroup in one hierarchy (v1 pids/memory, else systemd's, else v2)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    paths: dict[str, str] = {}
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else ["2"]:
            paths[c] = path
    mounts = _mounts()
    for kind in ("pids", "memory", "name=systemd", "2"):
        cg = paths.get(kind, "")
        if cg in ("/", "") or "/.." in cg:
            continue  # the root cgroup holds everything; ".." is outside our namespace
        for root, mountpoint, kinds in mounts:
            if kind in kinds and (cg + "/").startswith(root.rstrip("/") + "/"):
                return Path(mountpoint) / cg[len(root.rstrip("/")):].lstrip("/")
    return None


def cgroup_pids(directory: Path | None) -> set[int]:
    if directory is None:
        return set()
    try:
        return {int(p) for p in (directory / "cgroup.procs").read_text().split()}
    except (OSError, ValueError):
        return set()


def container_processes(monitor_pid: int, container_pid: int = 0) -> list[psutil.Process]:
    """The container's processes (monitor excluded): see the module doc. `container_pid`
    (podman's State.Pid) is optional: by default the monitor's first child is the init."""
    procs: dict[int, psutil.Process] = {}
    if monitor_pid > 0:
        try:
            for p in psutil.Process(monitor_pid).children(recursive=True):
                procs[p.pid] = p
        except psutil.Error:
            pass
    init = container_pid or min(procs, default=0)
    monitor_cg = cgroup_dir(monitor_pid) if monitor_pid > 0 else None
    init_cg = cgroup_dir(init) if init > 0 else None
    if init_cg is not None and init_cg != monitor_cg:
        for pid in cgroup_pids(init_cg) - set(procs) - {monitor_pid}:
            try:
                procs[pid] = psutil.Process(pid)
            except psutil.Error:
                pass
    return [procs[p] for p in sorted(procs)]


class CpuSampler:
    """CPU percentages as top computes them: time used between two looks / wall time."""

    def __init__(self) -> None:
        self.last: dict[tuple[int, float], float] = {}  # (pid, create_time) -> cpu seconds
        self.last_time = 0.0
        self.now = 0.0
        self.current: dict[tuple[int, float], float] = {}

    @staticmethod
    def _key(p: psutil.Process) -> tuple[int, float]:
        try:
            return (p.pid, p.create_time())  # pid reuse makes a new key
        except psutil.Error:
            return (p.pid, 0.0)

    def sample(self, procs: Iterable[psutil.Process]) -> None:
        """Record CPU times now; percentages then compare with the previous sample()."""
        self.last, self.last_time = self.current, self.now
        self.current, self.now = {}, time.monotonic()
        for p in procs:
            try:
                t = p.cpu_times()
                self.current[self._key(p)] = t.user + t.system
            except psutil.Error:
                pass

    def seconds(self, p: psutil.Process) -> float:
        return self.current.get(self._key(p), 0.0)

    def percent(self, p: psutil.Process) -> float | None:
        key = self._key(p)
        elapsed = self.now - self.last_time
        if not self.last_time or elapsed <= 0 or key not in self.current:
            return None
        before = self.last.get(key)
        if before is None:
            # not seen last time: only a process born since then has a known start (zero)
            last_epoch = time.time() - (time.monotonic() - self.last_time)
            if key[1] < last_epoch:
                return None
            before = 0.0
        return max(0.0, (self.current[key] - before) / elapsed * 100)


def rss(p: psutil.Process) -> int:
    try:
        return int(p.memory_info().rss)
    except psutil.Error:
        return 0


def container_cgroup(monitor_pid: int, init_pid: int) -> Path | None:
    """The container's own cgroup (libpod-<id>.scope, or podman's cgroupfs path), or None when
    the container shares the monitor's cgroup (--cgroups=split/disabled) or has none of its own."""
    if init_pid <= 0:
        return None
    init_cg = cgroup_dir(init_pid)
    if init_cg is None or init_cg == (cgroup_dir(monitor_pid) if monitor_pid > 0 else None):
        return None
    return init_cg


def cgroup_memory(directory: Path | None) -> int | None:
    """memory.current of a cgroup v2 directory: what the kernel charges the container (RSS,
    page cache, kernel memory), the figure its memory limit and the OOM killer act on, and what
    systemd reports as a unit's Memory. None on cgroup v1 or when the cgroup is gone."""
    if directory is None:
        return None
    try:
        return int((directory / "memory.current").read_text())
    except (OSError, ValueError):
        return None


def usage(procs: list[psutil.Process], sampler: CpuSampler | None, cgroup: Path | None = None) -> Usage:
    """Usage of `procs`; memory from the container's v2 `cgroup` where it has one, else the sum
    of the processes' RSS (cgroup v1, or no cgroup of its own)."""
    alive = [p for p in procs if p.is_running()]
    percents = [sampler.percent(p) for p in alive] if sampler else []
    known = [x for x in percents if x is not None]
    charged = cgroup_memory(cgroup) if alive else None
    return Usage(
        pids=[p.pid for p in alive],
        memory_bytes=charged if charged is not None else sum(rss(p) for p in alive),
        memory_source="cgroup" if charged is not None else "rss",
        cpu_seconds=round(sum(sampler.seconds(p) for p in alive), 2) if sampler else 0.0,
        cpu_percent=round(sum(known), 1) if sampler and (known or not alive) else None,
    )


def describe(p: psutil.Process, sampler: CpuSampler | None) -> Proc | None:
    try:
        with p.oneshot():
            cmd = " ".join(p.cmdline()) or f"[{p.name()}]"
            try:
                user = p.username()
            except (KeyError, psutil.Error):
                user = str(p.uids().real)
            return Proc(pid=p.pid, ppid=p.ppid(), name=p.name(), cmdline=cmd, user=user, rss=rss(p),
                        cpu_seconds=sampler.seconds(p) if sampler else sum(p.cpu_times()[:2]),
                        cpu_percent=sampler.percent(p) if sampler else None)
    except psutil.Error:
        return None


def tree(root: psutil.Process | None, others: list[psutil.Process], sampler: CpuSampler | None) -> list[Proc]:
    """Processes as forests: `root` (the monitor) with its descendants, then any of `others`
    not below it (exec sessions), each with its own descendants among `others`."""
    nodes: dict[int, Proc] = {}
    everything = ([root] if root else []) + others
    for p in everything:
        d = describe(p, sampler)
        if d:
            nodes[d.pid] = d
    tops = []
    for pid in sorted(nodes):
        node = nodes[pid]
        parent = nodes.get(node.ppid)
        if parent is not None and pid != (root.pid if root else -1):
            parent.children.append(node)
        else:
            tops.append(node)
    if root and root.pid in nodes:
        tops.sort(key=lambda n: n.pid != root.pid)
    return tops


def monitor_process(pid: int) -> psutil.Process | None:
    if pid <= 0:
        return None
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None
