"""A pod's socket units (socket activation) for `podvisor ps` and `status`: what systemd listens
on, the socket's state (``listening``: waiting for the first connection; ``running``: the
container has it) and its counters. NAccepted/NConnections count per-connection services
(``Accept=yes``), which podvisor never generates, so they stay 0; NRefused counts connections
refused while the socket could not start its service (e.g. the start limit was hit)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from supervisor.pods import naming

from ..systemd import Systemd
from . import fmt


@dataclass
class SocketStatus:
    unit: str
    container: str
    active_state: str = "inactive"
    sub_state: str = "dead"
    result: str = ""
    listen: list[tuple[str, str]] = field(default_factory=list)  # (type, address): ("Stream", "0.0.0.0:8080")
    accepted: int = 0     # NAccepted
    connections: int = 0  # NConnections
    refused: int = 0      # NRefused

    @property
    def state(self) -> str:
        return f"{self.active_state} ({self.sub_state})"

    def addresses(self) -> str:
        return ", ".join(f"{a} ({t.lower()})" for t, a in self.listen) or "-"


def collect(sd: Systemd, pod: str) -> list[SocketStatus]:
    pattern = naming.socket_unit(pod, "*")
    names = {os.path.basename(p) for p, _ in sd.unit_files([pattern])} | set(sd.loaded_units([pattern]))
    out = []
    for name in sorted(names):
        p: dict[str, Any] = sd.unit(name)
        container = name[len(naming.member_prefix(pod)):].removesuffix(".socket")
        out.append(SocketStatus(
            unit=name, container=container, active_state=str(p.get("ActiveState", "inactive")),
            sub_state=str(p.get("SubState", "dead")), result=str(p.get("Result", "")),
            listen=[(str(t), str(a)) for t, a in p.get("Listen", [])],
            accepted=int(p.get("NAccepted", 0) or 0), connections=int(p.get("NConnections", 0) or 0),
            refused=int(p.get("NRefused", 0) or 0)))
    return out


def socket_json(s: SocketStatus) -> dict[str, Any]:
    return {"unit": s.unit, "container": s.container, "active_state": s.active_state, "sub_state": s.sub_state,
            "result": s.result or None, "listen": [{"type": t, "address": a} for t, a in s.listen],
            "accepted": s.accepted, "connections": s.connections, "refused": s.refused}


def _state(s: SocketStatus, pal: fmt.Palette) -> str:
    failed = s.active_state == "failed"
    return pal.state(f"failed ({s.result})" if failed and s.result else s.state, s.active_state)


def ps_rows(sockets: list[SocketStatus], pal: fmt.Palette) -> list[list[str]]:
    """One `ps` row per socket unit, under the pod's containers (the PORTS column: what it listens on)."""
    return [[f"  {s.container}.socket", _state(s, pal), "", "", "", "", "", "",
             f"{s.addresses()} accepted {s.accepted}, connections {s.connections}"] for s in sockets]


def status_lines(sockets: list[SocketStatus], pal: fmt.Palette) -> list[str]:
    lines = []
    for i, s in enumerate(sockets):
        lines.append(f"{'  Sockets: ' if i == 0 else ' ' * 11}{s.unit} {_state(s, pal)}")
        lines.append(f"{' ' * 13}listen {s.addresses()}; accepted {s.accepted}, connections {s.connections}, "
                     f"refused {s.refused}")
    return lines
