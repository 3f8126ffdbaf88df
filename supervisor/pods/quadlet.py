"""Quadlet-style ``NAME.pod`` and ``NAME.container`` files -> the pod model.

Only keys that map onto flags podman 4.3.1 has are accepted (see POD_FLAGS here, CONTAINER_FLAGS in
quadletcontainer.py, and the special keys handled there); anything else is an error naming file, line and key. Values
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

from dataclasses import dataclass, field, replace
from pathlib import Path

from . import validate
from .model import DefinitionError, Diagnostic, Loc, Pod, Port, Restart, UnitLines, Verbatim, Volume
from .quadletcontainer import ContainerParts, container
from .quadletvalues import (
    OWNED_SERVICE_KEYS,
    OWNED_UNIT_KEYS,
    File,
    entries,
    pairs,
    publish,
    read,
    refuse,
    seconds,
    unit_lines,
    words,
)
from .unitfile import SyntaxProblem, read_unit

# key -> podman flag; one flag per line ("multi") or per blank-separated word ("words")
POD_FLAGS: dict[str, tuple[str, str]] = {
    "AddHost": ("--add-host", "multi"), "DNS": ("--dns", "multi"), "DNSOption": ("--dns-option", "multi"),
    "DNSSearch": ("--dns-search", "multi"), "IP": ("--ip", "multi"), "IP6": ("--ip6", "multi"),
    "NetworkAlias": ("--network-alias", "multi"), "ShmSize": ("--shm-size", "multi"),
    "UserNS": ("--userns", "multi"), "UIDMap": ("--uidmap", "multi"), "GIDMap": ("--gidmap", "multi"),
    "SubUIDMap": ("--subuidname", "multi"), "SubGIDMap": ("--subgidname", "multi"),
    "Volume": ("--volume", "multi"),
}


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


def _pod_section(f: File) -> _PodParts:
    parts = _PodParts(name=f.path.stem)
    for key, value, line in entries(f, "Pod"):
        loc = f.loc(line, key)
        if key == "PodName":
            parts.name = value
        elif key == "PublishPort":
            parts.ports.append(publish(value, loc))
        elif key == "Network":
            parts.network.append(Verbatim(value))
        elif key == "Label":
            parts.labels += pairs(value, loc)
        elif key == "HostName":
            parts.hostname = Verbatim(value)
        elif key == "StopTimeout":
            parts.stop_timeout = seconds(value, loc)
        elif key == "PodmanArgs":
            parts.podman_args += words(value, loc, command=True)
        elif key in POD_FLAGS:
            flag, _ = POD_FLAGS[key]
            parts.podman_args.append(Verbatim(f"{flag}={value}"))
        else:
            refuse(f, key, line)
    validate.check_pod_name(parts.name, f.loc(None, "PodName"))
    return parts


# --------------------------------------------------------------------------- assembling pods


def _standalone(f: File, parts: ContainerParts) -> Pod:
    c = parts.container
    pod = Pod(name=c.name, source=f.source, containers=(c,), ports=tuple(parts.ports),
              volumes=tuple(parts.volumes), restart=Restart.NO, labels=(), hostname=parts.hostname,
              network=tuple(parts.network), stop_timeout=c.stop_timeout,
              unit_lines=UnitLines(install=parts.install), wanted_by=(),
              sockets=(parts.socket,) if parts.socket else (), loc=Loc(f.source))
    validate.check(pod)
    return pod


def _pod(f: File, members: list[tuple[File, ContainerParts]]) -> Pod:
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
    pod_unit = unit_lines(f, "Unit", OWNED_UNIT_KEYS)
    pod = Pod(name=parts.name, source=f.source, containers=tuple(containers), ports=tuple(parts.ports),
              volumes=tuple(volumes), restart=Restart.NO, labels=tuple(parts.labels), hostname=parts.hostname,
              network=tuple(parts.network), stop_timeout=parts.stop_timeout, podman_args=tuple(parts.podman_args),
              unit_lines=UnitLines(unit=pod_unit, install=unit_lines(f, "Install", frozenset())),
              infra_lines=UnitLines(service=unit_lines(f, "Service", OWNED_SERVICE_KEYS)),
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


def _members(pod_file: Path) -> list[tuple[File, ContainerParts]]:
    """The .container files next to `pod_file` naming it; a broken one fails the pod, a broken
    file belonging to another pod does not."""
    out = []
    for path in sorted(pod_file.parent.glob("*.container")):
        if pod_reference(path) != pod_file.name:
            continue
        cf = read(path)
        out.append((cf, container(cf)))
    return out


def load_file(path: Path) -> tuple[list[Pod], list[Diagnostic]]:
    f = read(path)
    if f.kind == "pod":
        return [_pod(f, _members(path))], f.warnings
    parts = container(f)
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
                f = read(path)
                parts = container(f)
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
