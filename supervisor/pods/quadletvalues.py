"""The files and values of Quadlet-style definitions (pods/quadlet.py): reading a unit file,
and the value syntaxes (words, KEY=VALUE pairs, booleans, Go durations, ports, entrypoints) each
checked with a DefinitionError naming file, line and key."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import validate
from .model import DefinitionError, Diagnostic, Loc, Port, Verbatim
from .unitfile import Section, SyntaxProblem, read_unit, split_words

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
_PUBLISH = re.compile(r"^(?:(?:\[(?P<ip6>[0-9a-fA-F:.]+)\]|(?P<ip>[0-9.]+)):)?(?P<host>\d+):(?P<ctr>\d+)"
                      r"(?:/(?P<proto>tcp|udp|sctp))?$")



@dataclass
class File:
    path: Path
    kind: str  # "pod" | "container"
    sections: list[Section]
    warnings: list[Diagnostic] = field(default_factory=list)

    @property
    def source(self) -> str:
        return str(self.path)

    def loc(self, line: int | None = None, key: str = "") -> Loc:
        return Loc(self.source, key, line)


def read(path: Path) -> File:
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
    f = File(path, kind, sections)
    main = "Pod" if kind == "pod" else "Container"
    for s in sections:
        if s.name not in (main, "Unit", "Service", "Install") and not s.name.startswith("X-"):
            raise DefinitionError(f.loc(s.line), f"unsupported section [{s.name}] in a .{kind} file")
        for entry in s.entries:
            validate.check_text(entry.value, f.loc(entry.line, entry.key))
    if not any(s.name == main for s in sections):
        raise DefinitionError(f.loc(), f"no [{main}] section")
    return f


def entries(f: File, section: str) -> list[tuple[str, str, int]]:
    return [(e.key, e.value, e.line) for s in f.sections if s.name == section for e in s.entries]


def words(value: str, loc: Loc, command: bool = False) -> list[Verbatim]:
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


def pairs(value: str, loc: Loc) -> list[tuple[Verbatim, Verbatim]]:
    out = []
    for w in words(value, loc):
        k, eq, v = w.partition("=")
        if not eq or not k:
            raise DefinitionError(loc, f"{w!r}: expected KEY=VALUE")
        out.append((Verbatim(k), Verbatim(v)))
    return out


def boolean(value: str, loc: Loc) -> bool:
    if value.lower() not in _BOOL:
        raise DefinitionError(loc, f"{value!r} is not a boolean")
    return _BOOL[value.lower()]


def duration(value: str, loc: Loc) -> float:
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


def seconds(value: str, loc: Loc) -> int:
    if not value.isdigit():
        raise DefinitionError(loc, f"{value!r}: expected whole seconds")
    return int(value)


def unit_lines(f: File, section: str, owned: frozenset[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for key, value, line in entries(f, section):
        if key in owned:
            raise DefinitionError(f.loc(line, f"[{section}] {key}"), "set by podvisor; it cannot be changed here")
        if section == "Service" and key == "Environment":
            for k, _ in pairs(value, f.loc(line, key)):
                if k in OWNED_ENVIRONMENT:
                    raise DefinitionError(f.loc(line, f"[{section}] {key}"), f"{k} is set by podvisor")
        out.append((key, Verbatim(value)))
    return tuple(out)


def refuse(f: File, key: str, line: int) -> None:
    if key in REFUSED:
        raise DefinitionError(f.loc(line, key), f"not supported: {REFUSED[key]}")
    section = "Pod" if f.kind == "pod" else "Container"
    raise DefinitionError(f.loc(line, key), f"unknown or unsupported key in [{section}]")


def publish(value: str, loc: Loc) -> Port:
    m = _PUBLISH.match(value)
    if not m:
        raise DefinitionError(loc, f"{value!r}: podvisor understands [IP:]HOSTPORT:CONTAINERPORT[/PROTOCOL] "
                                   "(ranges and random host ports: use PodmanArgs=)")
    return Port(container_port=int(m.group("ctr")), host_port=int(m.group("host")),
                protocol=m.group("proto") or "tcp", host_ip=m.group("ip6") or m.group("ip") or "", loc=loc)


def entrypoint(value: str, loc: Loc) -> tuple[str, ...]:
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
