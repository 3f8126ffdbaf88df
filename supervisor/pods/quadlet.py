"""Quadlet-style ``NAME.pod`` and ``NAME.container`` files -> the pod model.

Only keys that map onto flags podman 4.3.1 has are accepted (see POD_FLAGS, CONTAINER_FLAGS and
the special keys handled below); anything else is an error naming file, line and key. Values
are unit-file syntax, as in Quadlet: ``%`` specifiers and ``$VARS`` are for systemd, so they
reach the generated unit unchanged (`Verbatim`). ``Exec=``/``PodmanArgs=`` are split like
command lines; ``Environment=``/``Label=``/``Annotation=`` like systemd's Environment=.

Grouping: a ``.container`` with ``Pod=blog.pod`` is a container of the pod defined by
``blog.pod`` in the same directory; a ``.container`` without ``Pod=`` is a pod of its own, named
after the container. ``[Unit]``/``[Service]`` lines are appended to the matching unit (a
``.pod``'s to the infra unit, its ``[Unit]`` and ``[Install]`` also to the pod unit); keys the
generator owns (Type=, ExecStart=, ...) are errors.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import health, sockets, validate
from .model import (
    Container,
    DefinitionError,
    Diagnostic,
    Loc,
    Mount,
    Pod,
    Port,
    Readiness,
    Restart,
    UnitLines,
    Verbatim,
    Volume,
)
from .sockets import Socket
from .unitfile import Section, SyntaxProblem, read_unit, split_words

# key -> podman flag; one flag per line ("multi") or per blank-separated word ("words")
POD_FLAGS: dict[str, tuple[str, str]] = {
    "AddHost": ("--add-host", "multi"), "DNS": ("--dns", "multi"), "DNSOption": ("--dns-option", "multi"),
    "DNSSearch": ("--dns-search", "multi"), "IP": ("--ip", "multi"), "IP6": ("--ip6", "multi"),
    "NetworkAlias": ("--network-alias", "multi"), "ShmSize": ("--shm-size", "multi"),
    "UserNS": ("--userns", "multi"), "UIDMap": ("--uidmap", "multi"), "GIDMap": ("--gidmap", "multi"),
    "SubUIDMap": ("--subuidname", "multi"), "SubGIDMap": ("--subgidname", "multi"),
    "Volume": ("--volume", "multi"),
}
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
# keys that exist in Quadlet but cannot work here, and why
REFUSED = {
    "GlobalArgs": "podman's global flags come from podvisor's settings, so every call uses the same store",
    "ContainersConfModule": "needs podman >= 4.7; the containers.conf is podvisor's",
    "ServiceName": "podvisor names the units pod-NAME.service and pod-NAME@CONTAINER.service",
    "ExitPolicy": "podvisor creates pods with --exit-policy=continue: systemd decides when they stop",
    "Rootfs": "podvisor runs images only",
    "StartWithPod": "every container starts with its pod",
}
OWNED_SERVICE_KEYS = frozenset({"Type", "NotifyAccess", "ExecStart", "ExecStartPre", "ExecStartPost",
                                "ExecStop", "ExecStopPost", "ExecReload", "PIDFile", "RemainAfterExit",
                                "KillMode", "BusName"})
OWNED_UNIT_KEYS = frozenset({"SourcePath"})
OWNED_ENVIRONMENT = frozenset({"CONTAINERS_CONF", "PODMAN_SYSTEMD_UNIT", "NOTIFY_SOCKET"})
_BOOL = {"1": True, "yes": True, "y": True, "true": True, "t": True, "on": True,
         "0": False, "no": False, "n": False, "false": False, "f": False, "off": False}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_PUBLISH = re.compile(r"^(?:(?:\[(?P<ip6>[0-9a-fA-F:.]+)\]|(?P<ip>[0-9.]+)):)?(?P<host>\d+):(?P<ctr>\d+)(?:/(?P<proto>tcp|udp|sctp))?$")


@dataclass
class _File:
    path: Path
    kind: str  # "pod" | "container"
    sections: list[Section]
    warnings: list[Diagnostic] = field(default_factory=list)

    @property
    def source(self) -> str:
        return str(self.path)

    def loc(self, line: int | None = None, key: str = "") -> Loc:
        return Loc(self.source, key, line)


def _read(path: Path) -> _File:
    kind = path.suffix[1:]
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DefinitionError(Loc(str(path)), f"not UTF-8 (byte {e.start})") from None
    except OSError as e:
        raise DefinitionError(Loc(str(path)), f"cannot read: {e.strerror or e}") from None
    try:
        sections = read_unit(text)
    except SyntaxProblem as e:
        raise DefinitionError(Loc(str(path)), str(e)) from None
    f = _File(path, kind, sections)
    main = "Pod" if kind == "pod" else "Container"
    for s in sections:
        if s.name not in (main, "Unit", "Service", "Install") and not s.name.startswith("X-"):
            raise DefinitionError(f.loc(s.line), f"unsupported section [{s.name}] in a .{kind} file")
        for entry in s.entries:
            validate.check_text(entry.value, f.loc(entry.line, entry.key))
    if not any(s.name == main for s in sections):
        raise DefinitionError(f.loc(), f"no [{main}] section")
    return f


def _entries(f: _File, section: str) -> list[tuple[str, str, int]]:
    return [(e.key, e.value, e.line) for s in f.sections if s.name == section for e in s.entries]


def _words(value: str, loc: Loc, command: bool = False) -> list[Verbatim]:
    try:
        raw = split_words(value, escaped_semicolons=command)
    except SyntaxProblem as e:
        raise DefinitionError(loc, str(e)) from None
    out = []
    for w in raw:
        try:
            out.append(Verbatim(w.decode("utf-8")))
        except UnicodeDecodeError:
            raise DefinitionError(loc, "escapes produce bytes that are not UTF-8") from None
    return out


def _pairs(value: str, loc: Loc) -> list[tuple[Verbatim, Verbatim]]:
    out = []
    for w in _words(value, loc):
        k, eq, v = w.partition("=")
        if not eq or not k:
            raise DefinitionError(loc, f"{w!r}: expected KEY=VALUE")
        out.append((Verbatim(k), Verbatim(v)))
    return out


def _bool(value: str, loc: Loc) -> bool:
    if value.lower() not in _BOOL:
        raise DefinitionError(loc, f"{value!r} is not a boolean")
    return _BOOL[value.lower()]


def _duration(value: str, loc: Loc) -> float:
    """Go/podman durations (30s, 1m30s, 500ms) in seconds."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    pos, total = 0, 0.0
    for m in _DURATION.finditer(value):
        if m.start() != pos:
            break
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if not value or pos != len(value):
        raise DefinitionError(loc, f"{value!r} is not a duration (like 30s, 1m30s, 500ms)")
    return total


def _seconds(value: str, loc: Loc) -> int:
    if not value.isdigit():
        raise DefinitionError(loc, f"{value!r}: expected whole seconds")
    return int(value)


def _unit_lines(f: _File, section: str, owned: frozenset[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for key, value, line in _entries(f, section):
        if key in owned:
            raise DefinitionError(f.loc(line, f"[{section}] {key}"), "set by podvisor; it cannot be changed here")
        if section == "Service" and key == "Environment":
            for k, _ in _pairs(value, f.loc(line, key)):
                if k in OWNED_ENVIRONMENT:
                    raise DefinitionError(f.loc(line, f"[{section}] {key}"), f"{k} is set by podvisor")
        out.append((key, Verbatim(value)))
    return tuple(out)


def _refuse(f: _File, key: str, line: int) -> None:
    if key in REFUSED:
        raise DefinitionError(f.loc(line, key), f"not supported: {REFUSED[key]}")
    raise DefinitionError(f.loc(line, key), f"unknown or unsupported key in [{'Pod' if f.kind == 'pod' else 'Container'}]")


def _publish(value: str, loc: Loc) -> Port:
    m = _PUBLISH.match(value)
    if not m:
        raise DefinitionError(loc, f"{value!r}: podvisor understands [IP:]HOSTPORT:CONTAINERPORT[/PROTOCOL] "
                                   "(ranges and random host ports: use PodmanArgs=)")
    return Port(container_port=int(m.group("ctr")), host_port=int(m.group("host")), protocol=m.group("proto") or "tcp",
                host_ip=m.group("ip6") or m.group("ip") or "", loc=loc)


# --------------------------------------------------------------------------- .pod


@dataclass
class _PodParts:
    name: str
    ports: list[Port] = field(default_factory=list)
    network: list[str] = field(default_factory=list)
    labels: list[tuple[str, str]] = field(default_factory=list)
    hostname: str | None = None
    podman_args: list[str] = field(default_factory=list)
    stop_timeout: int = 10


def _pod_section(f: _File) -> _PodParts:
    parts = _PodParts(name=f.path.stem)
    for key, value, line in _entries(f, "Pod"):
        loc = f.loc(line, key)
        if key == "PodName":
            parts.name = value
        elif key == "PublishPort":
            parts.ports.append(_publish(value, loc))
        elif key == "Network":
            parts.network.append(Verbatim(value))
        elif key == "Label":
            parts.labels += _pairs(value, loc)
        elif key == "HostName":
            parts.hostname = Verbatim(value)
        elif key == "StopTimeout":
            parts.stop_timeout = _seconds(value, loc)
        elif key == "PodmanArgs":
            parts.podman_args += _words(value, loc, command=True)
        elif key in POD_FLAGS:
            flag, _ = POD_FLAGS[key]
            parts.podman_args.append(Verbatim(f"{flag}={value}"))
        else:
            _refuse(f, key, line)
    validate.check_pod_name(parts.name, f.loc(None, "PodName"))
    return parts


# --------------------------------------------------------------------------- .container


@dataclass
class _ContainerParts:
    container: Container
    pod_file: str | None  # Pod= value
    ports: list[Port]
    network: list[str]
    hostname: str | None
    volumes: list[Volume]
    install: tuple[tuple[str, str], ...]
    socket: Socket | None = None  # CONTAINER.socket beside the .container file


def _container(f: _File) -> _ContainerParts:
    name = f.path.stem
    image = None
    pod_file = None
    entrypoint: tuple[str, ...] | None = None
    args: tuple[str, ...] = ()
    env: list[tuple[str, str]] = []
    labels: list[tuple[str, str]] = []
    annotations: list[tuple[str, str]] = []
    podman_args: list[str] = []
    ports: list[Port] = []
    network: list[str] = []
    hostname = None
    volumes: list[Volume] = []
    mounts: list[Mount] = []
    workdir = None
    user = group = None
    notify = Readiness.CONMON
    notify_loc = f.loc()
    health_keys: dict[str, tuple[str, Loc]] = {}
    stop_timeout = 10
    for key, value, line in _entries(f, "Container"):
        loc = f.loc(line, key)
        if key == "Image":
            image = Verbatim(value)
        elif key == "ContainerName":
            name = value
        elif key == "Pod":
            if not value.endswith(".pod") or "/" in value:
                raise DefinitionError(loc, f"{value!r}: expected the name of a .pod file in this directory")
            pod_file = value
        elif key == "Exec":
            args = tuple(_words(value, loc, command=True))  # the last one wins, as in Quadlet
        elif key == "Entrypoint":
            entrypoint = _entrypoint(value, loc)
        elif key == "Environment":
            env += _pairs(value, loc)
        elif key == "Label":
            labels += _pairs(value, loc)
        elif key == "Annotation":
            annotations += _pairs(value, loc)
        elif key == "AutoUpdate":
            labels.append((Verbatim("io.containers.autoupdate"), Verbatim(value)))
        elif key == "PublishPort":
            ports.append(_publish(value, loc))
        elif key == "Network":
            network.append(Verbatim(value))
        elif key == "HostName":
            hostname = Verbatim(value)
        elif key == "Volume":
            _volume(f, value, loc, len(volumes), volumes, mounts, podman_args)
        elif key == "WorkingDir":
            workdir = Verbatim(value)
        elif key == "User":
            user = value
        elif key == "Group":
            group = value
        elif key == "Notify":
            notify_loc = loc
            if value == "healthy":
                notify = Readiness.HEALTHY
            else:
                notify = Readiness.CONTAINER if _bool(value, loc) else Readiness.CONMON
        elif key == "StopTimeout":
            stop_timeout = _seconds(value, loc)
        elif key == "PodmanArgs":
            podman_args += _words(value, loc, command=True)
        elif key in health.QUADLET_KEYS:
            health_keys[key] = (value, loc)
        elif key in CONTAINER_BOOLS:
            if _bool(value, loc):
                podman_args.append(Verbatim(CONTAINER_BOOLS[key]))
        elif key in CONTAINER_FLAGS:
            flag, style = CONTAINER_FLAGS[key]
            values = _words(value, loc) if style == "words" else [Verbatim(value)]
            podman_args += [Verbatim(f"{flag}={v}") for v in values]
        else:
            _refuse(f, key, line)
    if image is None:
        raise DefinitionError(f.loc(None, "Image"), "missing: podvisor runs images")
    if group is not None and user is None:
        raise DefinitionError(f.loc(None, "Group"), "needs User= as well")
    if user is not None:
        podman_args.insert(0, Verbatim(f"--user={user}" + (f":{group}" if group else "")))
    probe, probes, no_healthcheck = health.from_quadlet(health_keys, notify, notify_loc, _duration,
                                                        lambda v, loc: _words(v, loc, command=True))
    if no_healthcheck:
        podman_args.append(Verbatim("--no-healthcheck"))
    c = Container(health=probes, name=name, image=image, entrypoint=entrypoint, args=args, env=tuple(env), workdir=workdir,
                  mounts=tuple(mounts), probe=probe, readiness=notify, stop_timeout=stop_timeout,
                  labels=tuple(labels), annotations=tuple(annotations), podman_args=tuple(podman_args),
                  unit_lines=UnitLines(unit=_unit_lines(f, "Unit", OWNED_UNIT_KEYS),
                                       service=_unit_lines(f, "Service", OWNED_SERVICE_KEYS)),
                  loc=Loc(f.source))
    sock_path = sockets.socket_file(f.path)
    sock = sockets.from_quadlet(sock_path, name) if sock_path.exists() else None
    return _ContainerParts(c, pod_file, ports, network, hostname, volumes,
                           _unit_lines(f, "Install", frozenset()), sock)


def _entrypoint(value: str, loc: Loc) -> tuple[str, ...]:
    """podman's --entrypoint: a JSON array, or one string (the executable)."""
    if value.startswith("["):
        try:
            words = json.loads(value)
        except ValueError:
            words = None
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise DefinitionError(loc, "expected a JSON array of strings or a single path")
        return tuple(Verbatim(w) for w in words)
    return (Verbatim(value),)


def _volume(f: _File, value: str, loc: Loc, n: int, volumes: list[Volume], mounts: list[Mount],
            podman_args: list[str]) -> None:
    parts = value.split(":")
    if len(parts) == 1:  # an anonymous volume: podman's business
        podman_args.append(Verbatim(f"--volume={value}"))
        return
    if len(parts) > 3:
        raise DefinitionError(loc, f"{value!r}: expected SOURCE:DEST[:OPTIONS]")
    source, dest = parts[0], parts[1]
    options = tuple(o for o in (parts[2].split(",") if len(parts) == 3 else ()) if o)
    if source.endswith(".volume"):
        raise DefinitionError(loc, ".volume units are not supported; name a podman volume or a host path")
    vname = f"volume{n}"
    if source.startswith(("./", "../", "/")):
        path = str((f.path.parent / source).resolve()) if not source.startswith("/") else source
        volumes.append(Volume(vname, "hostPath", path=path, loc=loc))
    else:
        if not validate.POD_NAME.match(source):
            raise DefinitionError(loc, f"{source!r} is not a podman volume name or a path")
        volumes.append(Volume(vname, "named", path=source, loc=loc))
    mounts.append(Mount(vname, dest, read_only="ro" in options, options=tuple(o for o in options if o != "ro"), loc=loc))


# --------------------------------------------------------------------------- assembling pods


def _standalone(f: _File, parts: _ContainerParts) -> Pod:
    c = parts.container
    pod = Pod(name=c.name, source=f.source, containers=(c,), ports=tuple(parts.ports),
              volumes=tuple(parts.volumes), restart=Restart.NO, labels=(), hostname=parts.hostname,
              network=tuple(parts.network), stop_timeout=c.stop_timeout,
              unit_lines=UnitLines(install=parts.install), wanted_by=(),
              sockets=(parts.socket,) if parts.socket else (), loc=Loc(f.source))
    validate.check(pod)
    return pod


def _pod(f: _File, members: list[tuple[_File, _ContainerParts]]) -> Pod:
    parts = _pod_section(f)
    containers = []
    volumes: list[Volume] = []
    for cf, cp in members:
        for key, value in (("PublishPort", cp.ports), ("Network", cp.network), ("HostName", cp.hostname)):
            if value:
                raise DefinitionError(Loc(cf.source, key), f"containers of a pod share its network: set {key}= "
                                                           f"in {f.path.name}")
        if cp.install:
            raise DefinitionError(Loc(cf.source, "[Install]"),
                                  f"containers start with their pod: put [Install] in {f.path.name}")
        # volume names are per file; make them unique in the pod
        renamed = {v.name: f"{cp.container.name}-{v.name}" for v in cp.volumes}
        volumes += [replace(v, name=renamed[v.name]) for v in cp.volumes]
        mounts = tuple(replace(m, volume=renamed[m.volume]) for m in cp.container.mounts)
        containers.append(replace(cp.container, mounts=mounts))
    unit_lines = _unit_lines(f, "Unit", OWNED_UNIT_KEYS)
    pod = Pod(name=parts.name, source=f.source, containers=tuple(containers), ports=tuple(parts.ports),
              volumes=tuple(volumes), restart=Restart.NO, labels=tuple(parts.labels), hostname=parts.hostname,
              network=tuple(parts.network), stop_timeout=parts.stop_timeout, podman_args=tuple(parts.podman_args),
              unit_lines=UnitLines(unit=unit_lines, install=_unit_lines(f, "Install", frozenset())),
              infra_lines=UnitLines(service=_unit_lines(f, "Service", OWNED_SERVICE_KEYS)),
              wanted_by=(), sockets=tuple(cp.socket for _, cp in members if cp.socket), loc=Loc(f.source))
    validate.check(pod)
    return pod


def pod_reference(path: Path) -> str | None:
    """The Pod= of a .container file, read leniently (None if unreadable or absent): which
    files belong to a pod is decided before, and apart from, reading them properly."""
    try:
        sections = read_unit(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, SyntaxProblem):
        return None
    values = [e.value for s in sections if s.name == "Container" for e in s.entries if e.key == "Pod"]
    return values[-1] if values else None


def _members(pod_file: Path) -> list[tuple[_File, _ContainerParts]]:
    """The .container files next to `pod_file` naming it; a broken one fails the pod, a broken
    file belonging to another pod does not."""
    out = []
    for path in sorted(pod_file.parent.glob("*.container")):
        if pod_reference(path) != pod_file.name:
            continue
        cf = _read(path)
        out.append((cf, _container(cf)))
    return out


def load_file(path: Path) -> tuple[list[Pod], list[Diagnostic]]:
    f = _read(path)
    if f.kind == "pod":
        return [_pod(f, _members(path))], f.warnings
    parts = _container(f)
    if parts.pod_file is not None:
        if not (path.parent / parts.pod_file).exists():
            raise DefinitionError(Loc(f.source, "Pod"), f"{parts.pod_file} does not exist in {path.parent}")
        raise DefinitionError(Loc(f.source, "Pod"), f"this container belongs to {parts.pod_file}: "
                                                    f"use that file (it brings its containers along)")
    return [_standalone(f, parts)], f.warnings


def load_directory(directory: Path) -> list[tuple[Path, list[Pod] | DefinitionError, list[Diagnostic]]]:
    """Every pod defined by the .pod files and pod-less .container files of `directory`, per file.
    A .container naming a .pod that does not exist is reported on its own."""
    results: list[tuple[Path, list[Pod] | DefinitionError, list[Diagnostic]]] = []
    pods = {p.name for p in directory.glob("*.pod")}
    for path in sorted([*directory.glob("*.pod"), *directory.glob("*.container")]):
        try:
            if path.suffix == ".container":
                f = _read(path)
                parts = _container(f)
                if parts.pod_file is not None:
                    if parts.pod_file not in pods:
                        raise DefinitionError(Loc(str(path), "Pod"), f"{parts.pod_file} does not exist in {directory}")
                    continue  # loaded with its pod
                results.append((path, [_standalone(f, parts)], f.warnings))
            else:
                loaded, warnings = load_file(path)
                results.append((path, loaded, warnings))
        except DefinitionError as e:
            results.append((path, e, []))
    return results
