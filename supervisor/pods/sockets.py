"""Socket activation: systemd owns a container's listening sockets and passes them to it.

The two readers' entry points and the rules a pod with sockets
must satisfy. No I/O beyond reading a ``.socket`` file it is given.

* Kubernetes: the annotation ``podvisor.io/socket-activation[.CONTAINER]`` names activated
  ports: ``all``, or words (blank- or comma-separated) ``PORT``, ``PORT/PROTOCOL`` or a port
  name. Each names a ``ports[]`` entry of the container (pod-wide: of whichever container
  declares it) that has a ``hostPort``; it becomes ``ListenStream=`` (TCP) or
  ``ListenDatagram=`` (UDP) on ``hostIP:hostPort`` (default ``0.0.0.0``). Activated ports are
  not published: the socket is systemd's, in the host's network namespace.
* Quadlet: ``CONTAINER.socket`` beside ``CONTAINER.container``: a [Socket] section with
  ``ListenStream=``/``ListenDatagram=``/``ListenSequentialPacket=`` lines and a few options.

The container receives the sockets as fds 3, 4, ... in definition order, with ``LISTEN_FDS``
set (podman passes them on; ``LISTEN_PID`` is 1 inside the container).
"""
from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING

from .model import DefinitionError, Listen, Loc, Port, Socket, UnitLines, Verbatim

if TYPE_CHECKING:
    from .model import Pod

OPTION = "socket-activation"
LISTEN_KEYS = ("ListenStream", "ListenDatagram", "ListenSequentialPacket")
_KIND_OF = {"tcp": "ListenStream", "udp": "ListenDatagram"}
# [Socket] keys a .socket may set: they change how the socket is set up, not whom it activates
SOCKET_OPTIONS = frozenset({
    "Backlog", "BindIPv6Only", "BindToDevice", "FreeBind", "Transparent", "ReusePort", "NoDelay",
    "KeepAlive", "KeepAliveTimeSec", "KeepAliveIntervalSec", "KeepAliveProbes", "DeferAcceptSec",
    "ReceiveBuffer", "SendBuffer", "IPTOS", "IPTTL", "Mark", "SocketUser", "SocketGroup", "SocketMode",
    "DirectoryMode", "RemoveOnStop", "FileDescriptorName", "TriggerLimitIntervalSec", "TriggerLimitBurst",
    "PassCredentials", "PassSecurity", "Broadcast", "Priority",
})
REFUSED = {
    "Service": "a container's socket always activates that container's unit (pod-POD@CONTAINER.service)",
    "Accept": "Accept=yes starts one service per connection; a container is one long-running service",
    "ListenFIFO": "only network and Unix sockets are passed to containers",
    "ListenSpecial": "only network and Unix sockets are passed to containers",
    "ListenNetlink": "only network and Unix sockets are passed to containers",
    "ListenMessageQueue": "only network and Unix sockets are passed to containers",
    "ListenUSBFunction": "only network and Unix sockets are passed to containers",
    "ExecStartPre": "socket hooks are not supported", "ExecStartPost": "socket hooks are not supported",
    "ExecStopPre": "socket hooks are not supported", "ExecStopPost": "socket hooks are not supported",
}


def _address(p: Port) -> str:
    ip = p.host_ip or "0.0.0.0"
    if ipaddress.ip_address(ip).version == 6:
        ip = f"[{ip}]"
    return f"{ip}:{p.host_port}"


# --------------------------------------------------------------------------- Kubernetes


def from_kube(options: dict[str, tuple[str, Loc]], ports: dict[str, list[Port]]) -> tuple[Socket, ...]:
    """Sockets for the annotation values in `options` (``socket-activation[.CTR]`` -> (value,
    loc)); `ports` are each container's declared ports, in definition order."""
    claimed: dict[int, tuple[str, Loc]] = {}  # id(Port) -> (container, annotation)
    chosen: dict[str, list[Port]] = {c: [] for c in ports}
    for key in sorted(k for k in options if k == OPTION or k.startswith(OPTION + ".")):
        value, loc = options[key]
        _, _, only = key.partition(".")
        scope = {only: ports[only]} if only else ports
        words = [w for w in value.replace(",", " ").split()]
        if not words:
            raise DefinitionError(loc, "expected port numbers, PORT/PROTOCOL, port names or 'all'")
        for word in words:
            if word == "all":
                found = [(c, p) for c, ps in scope.items() for p in ps if p.host_port is not None]
                if not found:
                    raise DefinitionError(loc, "'all': no port with a hostPort to activate")
            else:
                found = _match(word, scope, loc)
            for c, p in found:
                if p.host_port is None:
                    raise DefinitionError(p.loc.child("hostPort"),
                                          f"port {p.container_port} is socket-activated ({loc.path}): "
                                          "it needs a hostPort, the port systemd listens on")
                if p.protocol not in _KIND_OF:
                    raise DefinitionError(p.loc.child("protocol"),
                                          f"{p.protocol.upper()} ports cannot be socket-activated ({loc.path})")
                if id(p) in claimed:
                    if claimed[id(p)][1] == loc:
                        raise DefinitionError(loc, f"{word!r} names port {p.container_port} twice")
                    continue  # pod-wide and per-container both name it: fine
                claimed[id(p)] = (c, loc)
                chosen[c].append(p)
    sockets = []
    for c, ps in chosen.items():
        if ps:
            ordered = [p for p in ports[c] if any(p is q for q in ps)]  # definition order = fd order
            listens = tuple(Listen(_KIND_OF[p.protocol], _address(p), p, claimed[id(p)][1]) for p in ordered)
            sockets.append(Socket(c, listens, loc=claimed[id(ordered[0])][1]))
    return tuple(sockets)


def _match(word: str, scope: dict[str, list[Port]], loc: Loc) -> list[tuple[str, Port]]:
    number, _, proto = word.partition("/")
    if number.isdigit():
        n = int(number)
        if proto and proto not in ("tcp", "udp", "TCP", "UDP"):
            raise DefinitionError(loc, f"{word!r}: expected PORT, PORT/tcp or PORT/udp")
        same = [(c, p) for c, ps in scope.items() for p in ps if p.container_port == n]
        if not same:
            where = f"container {next(iter(scope))!r}" if len(scope) == 1 else "any container"
            raise DefinitionError(loc, f"port {n} is not declared by {where} (spec.containers[].ports)")
        found = [(c, p) for c, p in same if not proto or p.protocol == proto.lower()]
        if not found:
            have = ", ".join(sorted({p.protocol.upper() for _, p in same}))
            needs = "a stream socket needs TCP" if proto.lower() == "tcp" else "a datagram socket needs UDP"
            raise DefinitionError(loc, f"{word!r}: port {n} is declared as {have}, not {proto.upper()} ({needs})")
    else:
        if proto:
            raise DefinitionError(loc, f"{word!r}: a port name takes no protocol")
        found = [(c, p) for c, ps in scope.items() for p in ps if p.name == word]
        if not found:
            raise DefinitionError(loc, f"no port named {word!r} is declared")
    owners = sorted({c for c, _ in found})
    if len(owners) > 1:
        raise DefinitionError(loc, f"{word!r} is declared by containers {' and '.join(owners)}: one port, "
                                   f"one socket; name it per container (podvisor.io/{OPTION}.CONTAINER)")
    return found


def published(ports: list[Port], sockets: tuple[Socket, ...]) -> list[Port]:
    """`ports` without the activated ones (systemd owns those sockets, nothing to publish)."""
    active = [lst.port for s in sockets for lst in s.listens if lst.port is not None]
    return [p for p in ports if not any(p is q for q in active)]


# --------------------------------------------------------------------------- Quadlet


def socket_file(container_file: Path) -> Path:
    return container_file.with_suffix(".socket")


def from_quadlet(path: Path, container: str) -> Socket:
    """The ``.socket`` file at `path`, for `container`."""
    from .unitfile import SyntaxProblem, read_unit

    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DefinitionError(Loc(source), f"not UTF-8 (byte {e.start})") from None
    except OSError as e:
        raise DefinitionError(Loc(source), f"cannot read: {e.strerror or e}") from None
    try:
        sections = read_unit(text)
    except SyntaxProblem as e:
        raise DefinitionError(Loc(source), str(e)) from None
    listens: list[Listen] = []
    options: list[tuple[str, str]] = []
    unit: list[tuple[str, str]] = []
    install: list[tuple[str, str]] = []
    for s in sections:
        if s.name not in ("Socket", "Unit", "Install") and not s.name.startswith("X-"):
            raise DefinitionError(Loc(source, line=s.line), f"unsupported section [{s.name}] in a .socket file")
        for entry in s.entries:
            loc = Loc(source, entry.key, entry.line)
            if "\x00" in entry.value or "\n" in entry.value:
                raise DefinitionError(loc, "control characters in the value")
            if s.name == "Unit":
                if entry.key in ("SourcePath", "BindsTo", "PartOf"):
                    raise DefinitionError(loc, "podvisor sets this key of the socket unit")
                unit.append((entry.key, Verbatim(entry.value)))
            elif s.name == "Install":
                install.append((entry.key, Verbatim(entry.value)))
            elif s.name.startswith("X-"):
                continue
            elif entry.key in LISTEN_KEYS:
                if not entry.value:
                    raise DefinitionError(loc, "an empty value would reset the list; name an address")
                if entry.value != entry.value.strip() or " " in entry.value:
                    raise DefinitionError(loc, f"{entry.value!r}: one address per line")
                listens.append(Listen(entry.key, Verbatim(entry.value), loc=loc))
            elif entry.key in REFUSED:
                raise DefinitionError(loc, f"not supported: {REFUSED[entry.key]}")
            elif entry.key in SOCKET_OPTIONS:
                options.append((entry.key, Verbatim(entry.value)))
            else:
                raise DefinitionError(loc, "unknown or unsupported key in [Socket]")
    if not listens:
        raise DefinitionError(Loc(source, "Socket"), "no ListenStream=, ListenDatagram= or "
                                                      "ListenSequentialPacket= line: nothing to listen on")
    return Socket(container, tuple(listens), tuple(options), UnitLines(unit=tuple(unit), install=tuple(install)),
                  loc=Loc(source))


# --------------------------------------------------------------------------- rules


def _norm(lst: Listen) -> tuple[str, str, str]:
    """(family, host, port) of an IP listen address, for overlap checks; ("", addr, "") for paths."""
    a = lst.address
    kind = "dgram" if lst.kind == "ListenDatagram" else "stream"
    if a.startswith(("/", "@")):
        return (kind, a, "")
    if a.isdigit():
        return (kind, "", a)
    host, _, port = a.rpartition(":")
    host = host.strip("[]")
    return (kind, "" if host in ("0.0.0.0", "::") else host, port)


def check(pod: Pod, host_network: bool = False) -> None:
    """Raise DefinitionError for the first socket rule `pod` breaks."""
    names = {c.name for c in pod.containers}
    seen: dict[tuple[str, str, str], tuple[str, Loc]] = {}
    for s in pod.sockets:
        if s.container not in names:
            raise DefinitionError(s.loc, f"socket for container {s.container!r}, which the pod does not have")
        for lst in s.listens:
            key = _norm(lst)
            clash = next(((c, loc) for k, (c, loc) in seen.items()
                          if k[0] == key[0] and k[2] == key[2]
                          and (k[1] == key[1] or (key[2] and not (k[1] and key[1])))), None)
            if clash is not None:
                who = "this container" if clash[0] == s.container else f"container {clash[0]!r}"
                raise DefinitionError(lst.loc, f"{lst.address} is already claimed by {who} (at {clash[1]})")
            seen[key] = (s.container, lst.loc)
            if key[2]:
                proto = "udp" if key[0] == "dgram" else "tcp"
                for p in pod.ports:
                    if p.host_port is not None and str(p.host_port) == key[2] and p.protocol == proto and (
                            not p.host_ip or not key[1] or p.host_ip == key[1]):
                        raise DefinitionError(lst.loc, f"{lst.address} is socket-activated and also published "
                                                       f"(at {p.loc}): systemd owns the socket, drop the publishing")
    activated = {s.container for s in pod.sockets}
    for c in pod.containers:
        if c.name in activated and c.probe is not None and c.probe.kind in ("http", "tcp") and not host_network:
            s = next(s for s in pod.sockets if s.container == c.name)
            if any(lst.port is not None and lst.port.container_port == c.probe.port for lst in s.listens):
                raise DefinitionError(c.probe.loc, f"probes port {c.probe.port}, which is socket-activated: that "
                                                   "socket lives in the host's network namespace, not the pod's; "
                                                   "probe another port or use readiness conmon")
    if pod.network[:1] == ("none",) and any(p.host_port is not None for p in pod.ports):
        p = next(p for p in pod.ports if p.host_port is not None)
        raise DefinitionError(p.loc.child("hostPort"), "network none cannot publish ports; socket-activate "
                                                       f"this port (podvisor.io/{OPTION}) instead")
