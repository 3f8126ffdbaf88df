"""What the management commands know about a pod: plain data, filled by ``inventory``."""
from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .sockets import SocketStatus

READY_STATES = ("active", "reloading")  # a Type=notify unit only gets there after READY=1
EXIT_KINDS = {1: "exited", 2: "killed", 3: "dumped"}  # ExecMainCode: CLD_EXITED, CLD_KILLED, CLD_DUMPED


def _ts(usec: Any) -> float | None:
    """systemd's usec-since-epoch timestamps; 0 means "never"."""
    return usec / 1_000_000 if isinstance(usec, int) and usec > 0 else None


@dataclass
class UnitStatus:
    """One unit as systemd reports it (Unit and Service properties)."""

    name: str
    load_state: str = "not-found"
    active_state: str = "inactive"
    sub_state: str = "dead"
    result: str = ""  # Service Result: success, exit-code, signal, timeout, oom-kill, start-limit-hit, ...
    main_pid: int = 0
    restarts: int = 0  # NRestarts: automatic restarts since the last start by hand
    status_text: str = ""  # the last STATUS= the service sent (readiness probe, monitor's OOM report)
    state_since: float | None = None  # when it entered its current ActiveState
    active_since: float | None = None  # when it last became active (for a notify unit: READY=1)
    exit_kind: str = ""  # exited | killed | dumped: how the main process last ended
    exit_status: int = 0
    fragment_path: str = ""
    need_daemon_reload: bool = False
    job: str = ""  # type of a pending job (start, stop, restart, ...), "" when none
    load_error: str = ""

    @classmethod
    def from_properties(cls, name: str, p: dict[str, Any], job: str = "") -> UnitStatus:
        load_error = p.get("LoadError") or ("", "")
        return cls(
            name=name,
            load_state=str(p.get("LoadState", "not-found")),
            active_state=str(p.get("ActiveState", "inactive")),
            sub_state=str(p.get("SubState", "dead")),
            result=str(p.get("Result", "")),
            main_pid=int(p.get("MainPID", 0) or 0),
            restarts=int(p.get("NRestarts", 0) or 0),
            status_text=str(p.get("StatusText", "")),
            state_since=_ts(p.get("StateChangeTimestamp")),
            active_since=_ts(p.get("ActiveEnterTimestamp")),
            exit_kind=EXIT_KINDS.get(int(p.get("ExecMainCode", 0) or 0), ""),
            exit_status=int(p.get("ExecMainStatus", 0) or 0),
            fragment_path=str(p.get("FragmentPath", "")),
            need_daemon_reload=bool(p.get("NeedDaemonReload", False)),
            job=job,
            load_error=str(load_error[1]) if load_error and load_error[0] else "",
        )

    @property
    def ready(self) -> bool:
        return self.active_state in READY_STATES

    @property
    def state(self) -> str:
        """systemctl's "active (running)" form."""
        return f"{self.active_state} ({self.sub_state})"

    def exit_description(self) -> str:
        """How the main process last ended, as systemd says it: "status=3" or "signal=KILL"."""
        if self.exit_kind == "exited":
            return f"status={self.exit_status}"
        if self.exit_kind in ("killed", "dumped"):
            try:
                name = signal.Signals(self.exit_status).name.removeprefix("SIG")
            except ValueError:
                name = str(self.exit_status)
            return f"signal={name}" + (" (core dumped)" if self.exit_kind == "dumped" else "")
        return ""

    def failure(self) -> str:
        """Why the unit is not running, from systemd's own properties; "" when nothing failed."""
        if self.load_state != "loaded":
            return f"{self.load_state}{': ' + self.load_error if self.load_error else ''}"
        if self.result in ("", "success") and self.active_state != "failed":
            return ""
        parts = [f"Result: {self.result}"]
        if self.exit_kind and self.result in ("exit-code", "signal", "core-dump", "oom-kill", "watchdog", "timeout"):
            parts.append(self.exit_description())
        return ", ".join(parts)


@dataclass(frozen=True)
class PortMapping:
    host_ip: str
    host_port: int
    container_port: int
    protocol: str

    def __str__(self) -> str:
        return f"{self.host_ip or '0.0.0.0'}:{self.host_port}->{self.container_port}/{self.protocol}"


@dataclass
class PodmanContainer:
    """podman's view of one container (`podman ps --format json`)."""

    id: str
    name: str
    state: str
    pid: int
    image: str
    started_at: float | None
    exit_code: int | None
    ports: list[PortMapping] = field(default_factory=list)


@dataclass
class Usage:
    """CPU and memory of a container's processes (the monitor excluded: see procs)."""

    pids: list[int]
    memory_bytes: int  # memory.current of its v2 cgroup, else the sum of RSS (shared pages count per process)
    cpu_seconds: float  # user + system time so far
    cpu_percent: float | None  # over the sampling interval; 100 = one CPU busy
    memory_source: str = "rss"  # "cgroup" (v2 memory.current) or "rss"


@dataclass
class ContainerStatus:
    name: str  # as in the pod definition ("web"), or "infra"
    podman_name: str  # NAME.CONTAINER
    unit: UnitStatus
    podman: PodmanContainer | None = None
    usage: Usage | None = None
    user: bool = False  # a user manager's unit (rootless, run as the calling user), not root's

    @property
    def ready(self) -> bool:
        return self.unit.ready


@dataclass
class PodStatus:
    name: str
    unit: UnitStatus
    infra: ContainerStatus | None
    containers: list[ContainerStatus]
    ports: list[PortMapping] = field(default_factory=list)
    sockets: list[SocketStatus] = field(default_factory=list)  # socket activation (manage/sockets.py)

    @property
    def members(self) -> list[ContainerStatus]:
        return ([self.infra] if self.infra else []) + self.containers

    @property
    def ready_count(self) -> int:
        return sum(c.ready for c in self.containers)

    @property
    def ready(self) -> bool:
        return self.unit.ready and all(c.ready for c in self.members)

    def memory_bytes(self) -> int | None:
        values = [c.usage.memory_bytes for c in self.members if c.usage]
        return sum(values) if values else None

    def cpu_percent(self) -> float | None:
        values = [c.usage.cpu_percent for c in self.members if c.usage and c.usage.cpu_percent is not None]
        return sum(values) if values else None
