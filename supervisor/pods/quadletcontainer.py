"""The ``[Container]`` section of a Quadlet-style ``.container`` file (pods/quadlet.py): each key
becomes a field of the container or a ``podman run`` flag; Health* and Reload* go to
pods/health.py; an unknown key is an error naming file, line and key."""
from __future__ import annotations

from dataclasses import dataclass, field

from . import health, sockets
from .model import Container, DefinitionError, Loc, Mount, Port, Readiness, Socket, UnitLines, Verbatim, Volume
from .naming import POD_NAME
from .quadletvalues import (
    OWNED_SERVICE_KEYS,
    OWNED_UNIT_KEYS,
    File,
    boolean,
    duration,
    entries,
    entrypoint,
    pairs,
    publish,
    refuse,
    seconds,
    unit_lines,
    words,
)

# key -> podman flag; one flag per line ("multi") or per blank-separated word ("words")
CONTAINER_FLAGS: dict[str, tuple[str, str]] = {
    "AddCapability": ("--cap-add", "words"), "DropCapability": ("--cap-drop", "words"),
    "AddDevice": ("--device", "multi"), "EnvironmentFile": ("--env-file", "multi"),
    "ExposeHostPort": ("--expose", "multi"), "GroupAdd": ("--group-add", "multi"),
    "LogDriver": ("--log-driver", "multi"), "LogOpt": ("--log-opt", "multi"), "Mount": ("--mount", "multi"),
    "PidsLimit": ("--pids-limit", "multi"), "Secret": ("--secret", "multi"), "ShmSize": ("--shm-size", "multi"),
    "StopSignal": ("--stop-signal", "multi"), "Sysctl": ("--sysctl", "words"), "Timezone": ("--tz", "multi"),
    "Tmpfs": ("--tmpfs", "multi"), "Ulimit": ("--ulimit", "multi"), "Memory": ("--memory", "multi"),
    "Pull": ("--pull", "multi"), "SeccompProfile": ("--security-opt=seccomp", "multi"),
    "Mask": ("--security-opt=mask", "multi"), "Unmask": ("--security-opt=unmask", "multi"),
}  # Health* and Reload*: pods/health.py
CONTAINER_BOOLS = {"ReadOnly": "--read-only", "RunInit": "--init", "EnvironmentHost": "--env-host",
                   "NoNewPrivileges": "--security-opt=no-new-privileges",
                   "SecurityLabelDisable": "--security-opt=label=disable"}


@dataclass
class ContainerParts:
    container: Container
    pod_file: str | None  # Pod= value
    ports: list[Port]
    network: list[str]
    hostname: str | None
    volumes: list[Volume]
    install: tuple[tuple[str, str], ...]
    socket: Socket | None = None  # CONTAINER.socket beside the .container file


@dataclass
class _Keys:
    """What the [Container] keys said, before the container is assembled."""
    name: str
    image: str | None = None
    pod_file: str | None = None
    entrypoint: tuple[str, ...] | None = None
    args: tuple[str, ...] = ()
    env: list[tuple[str, str]] = field(default_factory=list)
    labels: list[tuple[str, str]] = field(default_factory=list)
    annotations: list[tuple[str, str]] = field(default_factory=list)
    podman_args: list[str] = field(default_factory=list)
    ports: list[Port] = field(default_factory=list)
    network: list[str] = field(default_factory=list)
    hostname: str | None = None
    volumes: list[Volume] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    group: str | None = None
    notify: Readiness = Readiness.CONMON
    notify_loc: Loc = field(default_factory=lambda: Loc(""))
    health: dict[str, tuple[str, Loc]] = field(default_factory=dict)
    stop_timeout: int = 10


def _what_runs(k: _Keys, key: str, value: str, loc: Loc) -> bool:
    """Image, name, pod, command, environment and metadata keys; False: not one of them."""
    if key == "Image":
        k.image = Verbatim(value)
    elif key == "ContainerName":
        k.name = value
    elif key == "Pod":
        if not value.endswith(".pod") or "/" in value:
            raise DefinitionError(loc, f"{value!r}: expected the name of a .pod file in this directory")
        k.pod_file = value
    elif key == "Exec":
        k.args = tuple(words(value, loc, command=True))  # the last one wins, as in Quadlet
    elif key == "Entrypoint":
        k.entrypoint = entrypoint(value, loc)
    elif key == "Environment":
        k.env += pairs(value, loc)
    elif key == "Label":
        k.labels += pairs(value, loc)
    elif key == "Annotation":
        k.annotations += pairs(value, loc)
    elif key == "AutoUpdate":
        k.labels.append((Verbatim("io.containers.autoupdate"), Verbatim(value)))
    elif key == "WorkingDir":
        k.workdir = Verbatim(value)
    elif key == "User":
        k.user = value
    elif key == "Group":
        k.group = value
    else:
        return False
    return True


def _how_it_runs(k: _Keys, f: File, key: str, value: str, loc: Loc) -> bool:
    """Network, storage, readiness, stopping and podman flag keys; False: not one of them."""
    if key == "PublishPort":
        k.ports.append(publish(value, loc))
    elif key == "Network":
        k.network.append(Verbatim(value))
    elif key == "HostName":
        k.hostname = Verbatim(value)
    elif key == "Volume":
        _volume(f, value, loc, k)
    elif key == "Notify":
        k.notify_loc = loc
        if value == "healthy":
            k.notify = Readiness.HEALTHY
        else:
            k.notify = Readiness.CONTAINER if boolean(value, loc) else Readiness.CONMON
    elif key == "StopTimeout":
        k.stop_timeout = seconds(value, loc)
    elif key == "PodmanArgs":
        k.podman_args += words(value, loc, command=True)
    elif key in health.QUADLET_KEYS:
        k.health[key] = (value, loc)
    elif key in CONTAINER_BOOLS:
        if boolean(value, loc):
            k.podman_args.append(Verbatim(CONTAINER_BOOLS[key]))
    elif key in CONTAINER_FLAGS:
        flag, style = CONTAINER_FLAGS[key]
        values = words(value, loc) if style == "words" else [Verbatim(value)]
        k.podman_args += [Verbatim(f"{flag}={v}") for v in values]
    else:
        return False
    return True


def container(f: File) -> ContainerParts:
    k = _Keys(name=f.path.stem, notify_loc=f.loc())
    for key, value, line in entries(f, "Container"):
        loc = f.loc(line, key)
        if not _what_runs(k, key, value, loc) and not _how_it_runs(k, f, key, value, loc):
            refuse(f, key, line)
    if k.image is None:
        raise DefinitionError(f.loc(None, "Image"), "missing: podvisor runs images")
    if k.group is not None and k.user is None:
        raise DefinitionError(f.loc(None, "Group"), "needs User= as well")
    if k.user is not None:
        k.podman_args.insert(0, Verbatim(f"--user={k.user}" + (f":{k.group}" if k.group else "")))
    probe, probes, no_healthcheck = health.from_quadlet(k.health, k.notify, k.notify_loc, duration,
                                                        lambda v, loc: words(v, loc, command=True))
    if no_healthcheck:
        k.podman_args.append(Verbatim("--no-healthcheck"))
    c = Container(health=probes, name=k.name, image=k.image, entrypoint=k.entrypoint, args=k.args,
                  env=tuple(k.env), workdir=k.workdir, mounts=tuple(k.mounts), probe=probe, readiness=k.notify,
                  stop_timeout=k.stop_timeout, labels=tuple(k.labels), annotations=tuple(k.annotations),
                  podman_args=tuple(k.podman_args),
                  unit_lines=UnitLines(unit=unit_lines(f, "Unit", OWNED_UNIT_KEYS),
                                       service=unit_lines(f, "Service", OWNED_SERVICE_KEYS)),
                  loc=Loc(f.source))
    sock_path = sockets.socket_file(f.path)
    sock = sockets.from_quadlet(sock_path, k.name) if sock_path.exists() else None
    return ContainerParts(c, k.pod_file, k.ports, k.network, k.hostname, k.volumes,
                          unit_lines(f, "Install", frozenset()), sock)


def _volume(f: File, value: str, loc: Loc, k: _Keys) -> None:
    parts = value.split(":")
    if len(parts) == 1:  # an anonymous volume: podman's business
        k.podman_args.append(Verbatim(f"--volume={value}"))
        return
    if len(parts) > 3:
        raise DefinitionError(loc, f"{value!r}: expected SOURCE:DEST[:OPTIONS]")
    source, dest = parts[0], parts[1]
    options = tuple(o for o in (parts[2].split(",") if len(parts) == 3 else ()) if o)
    if source.endswith(".volume"):
        raise DefinitionError(loc, ".volume units are not supported; name a podman volume or a host path")
    vname = f"volume{len(k.volumes)}"
    if source.startswith(("./", "../", "/")):
        path = str((f.path.parent / source).resolve()) if not source.startswith("/") else source
        k.volumes.append(Volume(vname, "hostPath", path=path, loc=loc))
    else:
        if not POD_NAME.match(source):
            raise DefinitionError(loc, f"{source!r} is not a podman volume name or a path")
        k.volumes.append(Volume(vname, "named", path=source, loc=loc))
    k.mounts.append(Mount(vname, dest, read_only="ro" in options, options=tuple(o for o in options if o != "ro"),
                          loc=loc))
