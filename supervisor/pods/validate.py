"""Rules every pod must satisfy, whatever file it came from. Readers check the shape of their own
syntax; this module checks what the generator relies on: names that make valid, unambiguous unit
and podman names, unique containers, ports and mounts, strings that can be passed on exactly."""
from __future__ import annotations

import ipaddress
import re

from . import naming
from .model import Container, DefinitionError, Loc, Pod
from .naming import POD_NAME

# Container names have no '.', so NAME.CTR is unambiguous across pods ("a.b"+"c" vs "a"+"b.c").
CONTAINER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
RESERVED_CONTAINER_NAMES = frozenset({naming.INFRA})  # pod-NAME@infra.service is the infra unit
# Unit names may have 255 characters; we append ".ctr-id" to them for files in /run.
MAX_UNIT_NAME = 255 - len(".ctr-id")
ENV_NAME = re.compile(r"^[^=\x00]+$")
PROTOCOLS = ("tcp", "udp", "sctp")


def unit_name_length(pod: str, container: str = naming.INFRA) -> int:
    return len(naming.container_unit(pod, container))


def check_pod_name(name: str, loc: Loc) -> None:
    if not POD_NAME.match(name):
        raise DefinitionError(loc, f"{name!r} is not a valid pod name: it becomes part of unit names "
                                   "(pod-NAME.service); use letters, digits, '_', '.' and '-', "
                                   "starting with a letter or digit")
    if unit_name_length(name) > MAX_UNIT_NAME:
        raise DefinitionError(loc, f"pod name {name[:40]!r}... is too long for a unit name")


def check_container_name(pod: str, name: str, loc: Loc) -> None:
    if not CONTAINER_NAME.match(name):
        raise DefinitionError(loc, f"{name!r} is not a valid container name: it becomes part of the unit "
                                   "name pod-POD@NAME.service; use letters, digits, '_' and '-', "
                                   "starting with a letter or digit")
    if name in RESERVED_CONTAINER_NAMES:
        raise DefinitionError(loc, f"{name!r} is reserved for the pod's infra container "
                                   f"({naming.container_unit(pod, name)}); rename the container")
    if unit_name_length(pod, name) > MAX_UNIT_NAME:
        raise DefinitionError(loc, f"{naming.container_unit(pod, name)} is longer than a unit name may be")


def check_text(value: str, loc: Loc, what: str = "value") -> None:
    """Strings reach podman through a unit file and argv: no NUL, valid Unicode."""
    if "\x00" in value:
        raise DefinitionError(loc, f"{what} contains a NUL character, which cannot be passed to a program")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise DefinitionError(loc, f"{what} is not valid Unicode (lone surrogate)") from None
    bad = next((ch for ch in value if _systemd_refuses(ord(ch))), None)
    if bad is not None:
        raise DefinitionError(loc, f"{what} contains U+{ord(bad):04X}, a Unicode non-character, "
                                   "which systemd refuses in a unit file")


def _systemd_refuses(cp: int) -> bool:
    # systemd's unit parser takes only valid Unicode scalar values minus the non-characters
    # (U+FDD0..U+FDEF and the last two code points of every plane): "not UTF-8 clean"
    return 0xFDD0 <= cp <= 0xFDEF or (cp & 0xFFFE) == 0xFFFE


def check_path(value: str, loc: Loc, what: str) -> None:
    check_text(value, loc, what)
    if not value.startswith("/"):
        raise DefinitionError(loc, f"{what} {value!r} must be an absolute path")
    if ":" in value:
        raise DefinitionError(loc, f"{what} {value!r} contains ':', which podman's --volume cannot express")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise DefinitionError(loc, f"{what} {value!r} contains control characters")


def check(pod: Pod) -> None:
    """Raise DefinitionError for the first rule `pod` breaks."""
    check_pod_name(pod.name, pod.loc.child("name") if pod.loc.path else pod.loc)
    seen: dict[str, Loc] = {}
    for c in pod.containers:
        check_container_name(pod.name, c.name, c.loc.child("name"))
        if c.name in seen:
            raise DefinitionError(c.loc.child("name"), f"duplicate container name {c.name!r} "
                                                       f"(first defined at {seen[c.name]})")
        seen[c.name] = c.loc
        check_text(c.image, c.loc.child("image"), "image")
        if not c.image or c.image.startswith("-") or any(ch.isspace() for ch in c.image):
            raise DefinitionError(c.loc.child("image"), f"{c.image!r} is not an image reference")
        for i, word in enumerate(c.entrypoint or ()):
            check_text(word, c.loc.child("command").child(i), "command")
        for i, word in enumerate(c.args):
            check_text(word, c.loc.child("args").child(i), "argument")
        for i, (k, v) in enumerate(c.env):
            loc = c.loc.child("env").child(i)
            check_text(k, loc.child("name"), "name")
            check_text(v, loc.child("value"), "value")
            if not ENV_NAME.match(k):
                raise DefinitionError(loc.child("name"), f"{k!r} is not a valid environment variable name")
        if c.workdir is not None:
            check_path(c.workdir, c.loc.child("workingDir"), "working directory")
        for k, v in (*c.labels, *c.annotations):
            check_text(k, c.loc, "label/annotation key")
            check_text(v, c.loc, "label/annotation value")
        _check_mounts(pod, c)
    _check_ports(pod)
    for vol in pod.volumes:
        if vol.kind == "hostPath":
            check_path(vol.path, vol.loc.child("hostPath").child("path"), "host path")
    for k, v in pod.labels:
        check_text(k, pod.loc, "label key")
        check_text(v, pod.loc, "label value")
    from . import sockets

    sockets.check(pod, host_network=pod.network[:1] == ("host",))


def _check_mounts(pod: Pod, c: Container) -> None:
    paths: dict[str, Loc] = {}
    for m in c.mounts:
        if pod.volume(m.volume) is None:
            raise DefinitionError(m.loc.child("name"), f"no volume named {m.volume!r} in the pod")
        check_path(m.path, m.loc.child("mountPath"), "mount path")
        norm = m.path.rstrip("/") or "/"
        if norm in paths:
            raise DefinitionError(m.loc.child("mountPath"), f"{m.path!r} is already mounted (at {paths[norm]})")
        paths[norm] = m.loc


def _check_ports(pod: Pod) -> None:
    published: dict[tuple[str, int, str], Loc] = {}
    for p in pod.ports:
        for number, field in ((p.container_port, "containerPort"), (p.host_port, "hostPort")):
            if number is not None and not 1 <= number <= 65535:
                raise DefinitionError(p.loc.child(field), f"{number} is not a port number (1-65535)")
        if p.protocol not in PROTOCOLS:
            raise DefinitionError(p.loc.child("protocol"), f"{p.protocol!r}: expected TCP, UDP or SCTP")
        if p.host_ip:
            try:
                ipaddress.ip_address(p.host_ip)
            except ValueError:
                raise DefinitionError(p.loc.child("hostIP"), f"{p.host_ip!r} is not an IP address") from None
        if p.host_port is None:
            continue
        key = (p.host_ip, p.host_port, p.protocol)
        # 0.0.0.0 (no hostIP) overlaps every address
        clash = next((loc for (ip, port, proto), loc in published.items()
                      if port == p.host_port and proto == p.protocol
                      and (ip == p.host_ip or not ip or not p.host_ip)), None)
        if clash is not None:
            raise DefinitionError(p.loc.child("hostPort"), f"host port {p.host_port}/{p.protocol} is "
                                                           f"already published by this pod (at {clash})")
        published[key] = p.loc
