"""`podvisor logs`: the containers' output, interleaved by time, each line naming its container.

Where the output is, per container (podman's log driver, from `podman inspect` while the
container exists):

* journald (podman's default under systemd): the monitor writes one entry per line with
  CONTAINER_NAME=NAME.CONTAINER; entries of earlier runs (restarts) match too, and they outlive
  the container (units run it with --rm).
* k8s-file: the file podman names, plus the monitor's rotated ``.1``, ``.2``... copies. It goes
  away with the container.
* passthrough: the unit's own stdout, i.e. the unit's journal under its SyslogIdentifier.

Without podman (not root, or the container is gone) we fall back to the journal. With
--follow, the backlog is merged by time first, then new lines print as they arrive.
"""
from __future__ import annotations

import heapq
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from supervisor.pods import naming

from ..systemd import Systemd
from . import discover, journal
from .errors import ManageError
from .podman import PodmanCommand, PodmanError, containers, inspect

POLL = 0.2  # seconds between looks at a followed k8s-file


@dataclass(frozen=True, order=True)
class LogLine:
    time: float
    container: str
    stream: str  # stdout | stderr | monitor (the monitor's own notices, e.g. an OOM kill)
    text: str


@dataclass
class Target:
    container: str
    podman_name: str
    unit: str
    driver: str = "journald"  # what we read: journald | k8s-file | passthrough
    path: str = ""  # k8s-file
    user: bool = False  # a user manager's unit: the journal entries are that user's (journal.owner)


# ---------------------------------------------------------------------------- which containers


def targets(sd: Systemd, pod: str, wanted: list[str]) -> list[Target]:
    pu = discover.load_pod(sd, pod)
    members = {discover.PodUnits.container_of(m): m for m in pu.members}
    unknown = [w for w in wanted if w not in members]
    if unknown:
        names = ", ".join(c for c in members if c != naming.INFRA)
        raise ManageError(f"pod {pod!r} has no container {unknown[0]!r} (containers: {names or 'none'})")
    chosen = wanted or [c for c in members if c != naming.INFRA]
    out = []
    for c in chosen:
        podman_name = naming.podman_infra(pod) if c == naming.INFRA else naming.podman_container(pod, c)
        out.append(Target(c, podman_name, members[c], user=sd.user))
    _add_drivers(sd, out)
    return out


def _add_drivers(sd: Systemd, ts: list[Target]) -> None:
    if not ts or (os.geteuid() != 0 and not ts[0].user):
        return  # non-root podman sees other containers (a user's own are its own); the journal is the fallback
    cmd = PodmanCommand.from_unit(sd.unit(ts[0].unit))
    try:
        existing = containers(cmd)
        data = inspect(cmd, [t.podman_name for t in ts if t.podman_name in existing])
    except PodmanError:
        return
    by_name = {str(d.get("Name", "")).lstrip("/"): d for d in data}
    for t in ts:
        log_config = (by_name.get(t.podman_name, {}).get("HostConfig") or {}).get("LogConfig") or {}
        driver = str(log_config.get("Type") or "")
        if driver == "k8s-file" and log_config.get("Path"):
            t.driver, t.path = driver, str(log_config["Path"])
        elif driver == "passthrough":
            t.driver = driver


# ---------------------------------------------------------------------------- journal


def journal_groups(targets: Iterable[Target]) -> list[list[str]]:
    ts = list(targets)
    groups: list[list[str]] = []
    names = [f"CONTAINER_NAME={t.podman_name}" for t in ts if t.driver == "journald"]
    if names:
        groups.append([*names, journal.owner(ts[0].user)])
    for t in ts:
        if t.driver == "passthrough":
            unit = [f"_SYSTEMD_USER_UNIT={t.unit}", journal.owner(True)] if t.user else [f"_SYSTEMD_UNIT={t.unit}"]
            groups.append([*unit, f"SYSLOG_IDENTIFIER={t.unit.removesuffix('.service')}"])
    return groups


@dataclass
class JournalDecoder:
    """Journal entries -> lines; joins the monitor's CONTAINER_PARTIAL_MESSAGE pieces."""

    ts: list[Target]
    pending: dict[tuple[str, str], str] = field(default_factory=dict)
    cursor: str | None = None

    def __post_init__(self) -> None:
        self.by_name = {t.podman_name: t.container for t in self.ts}
        self.by_unit = {t.unit: t.container for t in self.ts}

    def decode(self, e: dict[str, Any]) -> LogLine | None:
        self.cursor = e.get("__CURSOR", self.cursor)
        name = journal.text(e.get("CONTAINER_NAME"))
        unit = journal.text(e.get("_SYSTEMD_USER_UNIT")) or journal.text(e.get("_SYSTEMD_UNIT"))
        container = self.by_name.get(name) or self.by_unit.get(unit, "")
        if journal.text(e.get("SYSLOG_IDENTIFIER")) == journal.MONITOR_IDENTIFIER:
            stream = "monitor"
        else:
            stream = "stderr" if journal.text(e.get("PRIORITY")) == "3" else "stdout"
        message = journal.text(e.get("MESSAGE"))
        key = (container, stream)
        if journal.text(e.get("CONTAINER_PARTIAL_MESSAGE")) == "true":
            self.pending[key] = self.pending.get(key, "") + message
            return None
        message = self.pending.pop(key, "") + message
        return LogLine(journal.entry_time(e), container, stream, message.removesuffix("\n"))


def journal_lines(ts: list[Target], since: float | None, tail: int | None,
                  decoder: JournalDecoder | None = None) -> Iterator[LogLine]:
    groups = journal_groups(ts)
    decoder = decoder or JournalDecoder(ts)
    for e in journal.read(groups, since=since, lines=tail):
        line = decoder.decode(e)
        if line is not None:
            yield line


# ---------------------------------------------------------------------------- k8s-file

_K8S = re.compile(r"^(\S+) (stdout|stderr) ([PF]) ?(.*)$", re.S)
_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def k8s_time(stamp: str) -> float:
    """conmon's RFC 3339 times with nanoseconds (Python reads at most microseconds)."""
    try:
        return datetime.fromisoformat(_FRACTION.sub(r"\1", stamp, count=1).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


class K8sFileReader:
    """One container's k8s-file log: rotated copies oldest first, then the live file."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.partial: dict[str, str] = {}
        self.f: Any = None
        self.ino = 0
        self.buf = b""

    def _records(self, data: bytes) -> Iterator[LogLine]:
        self.buf += data
        *complete, self.buf = self.buf.split(b"\n")
        for raw in complete:
            m = _K8S.match(raw.decode("utf-8", "replace"))
            if not m:
                continue
            stamp, stream, kind, content = m.groups()
            if kind == "P":
                self.partial[stream] = self.partial.get(stream, "") + content
                continue
            yield LogLine(k8s_time(stamp), self.target.container, stream, self.partial.pop(stream, "") + content)

    def backlog(self) -> Iterator[LogLine]:
        path = self.target.path
        rotated = []
        n = 1
        while os.path.exists(f"{path}.{n}"):
            rotated.append(f"{path}.{n}")
            n += 1
        for old in reversed(rotated):
            try:
                with open(old, "rb") as f:
                    yield from self._records(f.read())
            except OSError:
                pass
            self.buf = b""
        try:
            self.f = open(path, "rb")
            self.ino = os.fstat(self.f.fileno()).st_ino
            yield from self._records(self.f.read())
        except OSError:
            self.f = None

    def poll(self) -> Iterator[LogLine]:
        """New lines since the last look; follows the monitor's rotation (rename + new file)."""
        if self.f is not None:
            yield from self._records(self.f.read())
        try:
            st = os.stat(self.target.path)
        except OSError:
            return  # the container (and its log) is gone; it may come back on restart
        if self.f is None or st.st_ino != self.ino or st.st_size < self.f.tell():
            if self.f is not None:
                self.f.close()
            self.f, self.buf = open(self.target.path, "rb"), b""
            self.ino = st.st_ino
            yield from self._records(self.f.read())

    def close(self) -> None:
        if self.f is not None:
            self.f.close()


# ---------------------------------------------------------------------------- all together


def _tail(lines: Iterable[LogLine], since: float | None, tail: int | None) -> list[LogLine]:
    kept = [x for x in lines if since is None or x.time >= since]
    if tail is None:
        return kept
    return kept[-tail:] if tail > 0 else []


def read_all(ts: list[Target], since: float | None = None, tail: int | None = None) -> list[LogLine]:
    """Every matching line, oldest first, interleaved by time; the last `tail` of them."""
    streams: list[list[LogLine]] = []
    if journal_groups(ts):
        streams.append(list(journal_lines(ts, since, tail)))
    for t in ts:
        if t.driver == "k8s-file":
            reader = K8sFileReader(t)
            streams.append(sorted(_tail(reader.backlog(), since, tail)))
            reader.close()
    return _tail(heapq.merge(*streams), None, tail)


def follow(ts: list[Target], emit: Callable[[LogLine], None], since: float | None = None,
           tail: int | None = None, stop: threading.Event | None = None) -> None:
    """The backlog (merged by time), then new lines as they come, until `stop` is set."""
    stop = stop or threading.Event()
    decoder = JournalDecoder(ts)
    readers = [K8sFileReader(t) for t in ts if t.driver == "k8s-file"]
    backlog: list[list[LogLine]] = []
    groups = journal_groups(ts)
    if groups:
        backlog.append(list(journal_lines(ts, since, tail, decoder)))
    for r in readers:
        backlog.append(sorted(_tail(r.backlog(), since, tail)))
    for line in _tail(heapq.merge(*backlog), None, tail):
        emit(line)

    lines: queue.Queue[LogLine | BaseException] = queue.Queue()
    threads = []
    if groups:
        threads.append(threading.Thread(target=_follow_journal, args=(groups, decoder, lines, stop), daemon=True))
    if readers:
        threads.append(threading.Thread(target=_follow_files, args=(readers, lines, stop), daemon=True))
    for th in threads:
        th.start()
    while not stop.is_set():
        try:
            item = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if isinstance(item, BaseException):
            raise item
        emit(item)


def _follow_journal(groups: list[list[str]], decoder: JournalDecoder, out: queue.Queue[Any],
                    stop: threading.Event) -> None:
    try:
        # from just after the backlog's last entry: nothing lost, nothing twice
        entries = journal.read(groups, follow=True, after_cursor=decoder.cursor,
                               lines=None if decoder.cursor else 0)
        for e in entries:
            if stop.is_set():
                return
            line = decoder.decode(e)
            if line is not None:
                out.put(line)
    except BaseException as e:  # surfaced by the main thread
        out.put(e)


def _follow_files(readers: list[K8sFileReader], out: queue.Queue[Any], stop: threading.Event) -> None:
    try:
        while not stop.is_set():
            for r in readers:
                for line in r.poll():
                    out.put(line)
            time.sleep(POLL)
    except BaseException as e:
        out.put(e)
