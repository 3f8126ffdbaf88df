"""The pod model every reader produces and the generator consumes: frozen dataclasses, no I/O.

Values are already validated and normalised (bytes for memory, millicores for CPU, seconds for
times) so the generator never second-guesses them. Every object that can be wrong at a later stage
(e.g. a host port found in use) keeps a `Loc` naming where it came from.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

from supervisor.errors import UserError


@dataclass(frozen=True)
class Loc:
    """Where a value was read: file, dotted path inside it (``spec.containers[1].ports[0]``), line."""

    source: str
    path: str = ""
    line: int | None = None

    def __str__(self) -> str:
        head = f"{self.source}:{self.line}" if self.line else self.source
        return f"{head}: {self.path}" if self.path else head

    def child(self, key: str | int, line: int | None = None) -> Loc:
        if isinstance(key, int):
            path = f"{self.path}[{key}]"
        else:
            path = f"{self.path}.{key}" if self.path else key
        return Loc(self.source, path, line if line is not None else self.line)


class DefinitionError(UserError, ValueError):
    """A pod definition we cannot turn into units; str() names file, path and field."""

    def __init__(self, loc: Loc, message: str) -> None:
        self.loc = loc
        self.message = message
        super().__init__(f"{loc}: {message}")


@dataclass(frozen=True)
class Diagnostic:
    """A warning: something in the definition is not honoured, or only partly."""

    loc: Loc
    message: str

    def __str__(self) -> str:
        return f"{self.loc}: {self.message}"


class Verbatim(str):
    """Text already in systemd unit syntax (from Quadlet files): its ``%`` specifiers and ``$``
    variables are meant for systemd, so the escaper leaves them alone (it still quotes)."""

    __slots__ = ()


class Readiness(enum.Enum):
    """When a container's unit becomes active (its start job completes)."""

    CONMON = "conmon"        # the container process was started
    CONTAINER = "container"  # the app sent READY=1 itself (sd_notify, through the monitor's proxy)
    HEALTHY = "healthy"      # its readiness probe passed for the first time


class Restart(enum.Enum):
    """systemd's Restart= values that Kubernetes restart policies map to."""

    ALWAYS = "always"
    ON_FAILURE = "on-failure"
    NO = "no"


@dataclass(frozen=True)
class Port:
    container_port: int
    host_port: int | None  # None: not published (reachable inside the pod only)
    protocol: str = "tcp"  # tcp | udp | sctp
    host_ip: str = ""
    name: str = ""
    loc: Loc = field(default=Loc(""), compare=False)


@dataclass(frozen=True)
class Probe:
    kind: str  # "exec" | "http" | "tcp" | "grpc"
    command: tuple[str, ...] = ()  # exec
    port: int = 0                  # http, tcp
    host: str = ""                 # http, tcp; "" = the pod's loopback
    path: str = "/"                # http
    scheme: str = "http"           # http | https
    headers: tuple[tuple[str, str], ...] = ()
    service: str = ""              # grpc: the service name asked about ("" = the server as a whole)
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3     # liveness/startup: consecutive failures that count as failed
    loc: Loc = field(default=Loc(""), compare=False)


class OnFailure(enum.Enum):
    """What a failed liveness probe does (Quadlet's HealthOnFailure=; Kubernetes: kill)."""

    NONE = "none"        # only STATUS= and `podvisor ps` say unhealthy
    KILL = "kill"        # WATCHDOG=trigger: systemd stops the unit and restarts it per Restart=
    RESTART = "restart"  # the same, with Restart=on-watchdog unless the unit sets Restart= itself
    STOP = "stop"        # the unit is stopped and stays stopped


@dataclass(frozen=True)
class Health:
    """Probes beyond readiness, and reload (see supervisor/pods/health.py)."""

    liveness: Probe | None = None
    startup: Probe | None = None
    on_failure: OnFailure = OnFailure.KILL
    start_period: float = 0.0          # liveness failures in the first seconds do not count (Quadlet)
    kill_grace: int | None = None      # seconds from SIGTERM to SIGKILL on a liveness kill; None: stop_timeout
    reload_command: tuple[str, ...] = ()  # ExecReload= runs it with podman exec
    reload_signal: str = ""            # ExecReload= sends it with podman kill --signal


@dataclass(frozen=True)
class Volume:
    """A volume declared by the pod, mounted by its containers by name."""

    name: str
    kind: str                 # "hostPath" | "emptyDir" | "named" (a persistent podman volume)
    path: str = ""            # hostPath: the host path; named: the podman volume name
    host_type: str = ""       # hostPath: "" | Directory | DirectoryOrCreate | File | FileOrCreate | Socket
    medium: str = ""          # emptyDir: "" (disk) | "Memory" (tmpfs)
    size_limit: int | None = None  # emptyDir, bytes
    loc: Loc = field(default=Loc(""), compare=False)


@dataclass(frozen=True)
class Mount:
    volume: str               # a Volume.name of the pod
    path: str                 # inside the container
    read_only: bool = False
    options: tuple[str, ...] = ()  # extra -v options (Quadlet: z, Z, U, ...)
    loc: Loc = field(default=Loc(""), compare=False)


@dataclass(frozen=True)
class Resources:
    memory_limit: int | None = None     # bytes
    memory_request: int | None = None   # bytes
    cpu_limit: int | None = None        # millicores
    cpu_request: int | None = None      # millicores


@dataclass(frozen=True)
class UnitLines:
    """Extra ``Key=value`` lines (unit syntax, Verbatim) appended to a unit's sections."""

    unit: tuple[tuple[str, str], ...] = ()
    service: tuple[tuple[str, str], ...] = ()
    install: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Listen:
    """One listening socket: a unit's ``Listen*=`` line."""

    kind: str                 # ListenStream, ListenDatagram or ListenSequentialPacket
    address: str              # systemd's syntax: [IP:]PORT, [IPv6]:PORT, /path, @abstract
    port: Port | None = None  # the declared container port it serves (Kubernetes)
    loc: Loc = field(default=Loc(""), compare=False)


@dataclass(frozen=True)
class Socket:
    """A container's socket unit (socket activation, pods/sockets.py): systemd listens, the first
    connection starts the pod."""

    container: str
    listens: tuple[Listen, ...]
    options: tuple[tuple[str, str], ...] = ()  # extra [Socket] lines (unit syntax)
    unit_lines: UnitLines = field(default_factory=UnitLines)  # extra [Unit]/[Install] lines
    loc: Loc = field(default=Loc(""), compare=False)


@dataclass(frozen=True)
class Container:
    name: str
    image: str
    entrypoint: tuple[str, ...] | None = None  # None: the image's ENTRYPOINT (and CMD unless args)
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    workdir: str | None = None
    mounts: tuple[Mount, ...] = ()
    resources: Resources = Resources()
    probe: Probe | None = None
    readiness: Readiness = Readiness.CONMON
    health: Health = Health()
    pull: str | None = None          # podman --pull: always | missing | never; None: podman's default
    stop_timeout: int = 10           # seconds between the stop signal and SIGKILL
    start_timeout: float | None = None  # TimeoutStartSec; None: systemd's default
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    podman_args: tuple[str, ...] = ()  # extra `podman run` options, placed before the image
    unit_lines: UnitLines = UnitLines()
    loc: Loc = field(default=Loc(""), compare=False)


@dataclass(frozen=True)
class Pod:
    name: str
    source: str                      # the definition file, as given
    containers: tuple[Container, ...] = ()
    ports: tuple[Port, ...] = ()
    volumes: tuple[Volume, ...] = ()
    restart: Restart = Restart.ALWAYS
    restart_sec: float = 5.0
    labels: tuple[tuple[str, str], ...] = ()
    hostname: str | None = None
    network: tuple[str, ...] = ()    # `pod create --network` values; () = podman's default
    stop_timeout: int = 10           # `pod stop --time` for the infra unit
    podman_args: tuple[str, ...] = ()  # extra `podman pod create` options
    unit_lines: UnitLines = UnitLines()       # [Unit]/[Install] -> umbrella (and [Unit] -> infra)
    infra_lines: UnitLines = UnitLines()      # [Service] -> infra
    wanted_by: tuple[str, ...] = ()  # targets that pull the pod in ([Install] WantedBy=)
    sockets: tuple[Socket, ...] = ()  # socket activation (pods.sockets), one per activated container
    loc: Loc = field(default=Loc(""), compare=False)

    def volume(self, name: str) -> Volume | None:
        return next((v for v in self.volumes if v.name == name), None)
