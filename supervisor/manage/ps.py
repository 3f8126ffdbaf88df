"""`podvisor ps`: every pod and its containers, one line each."""
from __future__ import annotations

import json
import time

from . import fmt, health, sockets, views
from .inventory import Inventory
from .model import ContainerStatus, PodStatus

HEADERS = ("POD/CONTAINER", "STATE", "READY", "HEALTH", "RESTARTS", "PID", "UPTIME", "MEMORY", "CPU", "PORTS")
RIGHT = {4, 5, 7, 8}  # numeric columns


def to_json(inv: Inventory) -> str:
    now = inv.taken_at
    return json.dumps({"pods": [views.pod_json(p, now) for p in inv.pods], "warnings": inv.warnings}, indent=2)


def _state(c: PodStatus | ContainerStatus, pal: fmt.Palette) -> str:
    u = c.unit
    failed = u.active_state == "failed" and u.result not in ("", "success")
    text = f"failed ({u.result})" if failed else u.state
    return pal.state(text, u.active_state)


def _uptime(active_since: float | None, ready: bool, now: float) -> str:
    return fmt.duration(now - active_since) if ready and active_since else "-"


def _health(c: ContainerStatus, pal: fmt.Palette) -> str:
    state = health.health(c)
    return pal(state, {"healthy": "green", "unhealthy": "red"}.get(state, "yellow")) if state else "-"


def _container_row(c: ContainerStatus, now: float, pal: fmt.Palette) -> list[str]:
    u = c.unit
    ready = pal("yes", "green") if c.ready else pal("no", "red" if u.active_state == "failed" else "yellow")
    usage = c.usage
    return ["  " + c.name, _state(c, pal), ready, _health(c, pal), str(u.restarts), str(u.main_pid or "-"),
            _uptime(u.active_since, c.ready, now), fmt.size(usage.memory_bytes if usage else None),
            fmt.percent(usage.cpu_percent if usage else None), ""]


def _pod_row(p: PodStatus, now: float, pal: fmt.Palette) -> list[str]:
    counts = f"{p.ready_count}/{len(p.containers)}"
    ready = pal(counts, "green" if p.ready else "red" if p.unit.active_state == "failed" else "yellow")
    restarts = sum(c.unit.restarts for c in p.members)
    return [pal(p.name, "bold"), _state(p, pal), ready, "", str(restarts), "",
            _uptime(p.unit.active_since, p.unit.ready, now), fmt.size(p.memory_bytes()), fmt.percent(p.cpu_percent()),
            ", ".join(str(x) for x in p.ports) or "-"]


def to_table(inv: Inventory, pal: fmt.Palette, now: float | None = None) -> str:
    now = time.time() if now is None else now
    if not inv.pods:
        return "no pods installed (podvisor install FILE)"
    rows = []
    for p in inv.pods:
        rows.append(_pod_row(p, now, pal))
        rows.extend(_container_row(c, now, pal) for c in p.members)
        rows.extend(sockets.ps_rows(p.sockets, pal))
    return "\n".join(fmt.table([pal(h, "bold") for h in HEADERS], rows, right=RIGHT))
