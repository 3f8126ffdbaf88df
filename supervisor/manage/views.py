"""The JSON shapes of ``ps --json`` and ``status --json`` (field names are an interface: keep them)."""
from __future__ import annotations

import time
from typing import Any

from . import health
from .fmt import iso
from .model import ContainerStatus, PodmanContainer, PodStatus, PortMapping, UnitStatus, Usage
from .sockets import socket_json


def _uptime(u: UnitStatus, now: float) -> float | None:
    return round(now - u.active_since, 3) if u.ready and u.active_since else None


def unit_json(u: UnitStatus, now: float) -> dict[str, Any]:
    return {
        "unit": u.name,
        "load_state": u.load_state,
        "active_state": u.active_state,
        "sub_state": u.sub_state,
        "job": u.job or None,
        "result": u.result or None,
        "status_text": u.status_text or None,
        "main_pid": u.main_pid or None,
        "restarts": u.restarts,
        "state_since": iso(u.state_since),
        "active_since": iso(u.active_since),
        "uptime_seconds": _uptime(u, now),
        "last_exit": u.exit_description() or None,
        "failure": u.failure() or None,
        "fragment_path": u.fragment_path or None,
        "need_daemon_reload": u.need_daemon_reload,
    }


def port_json(p: PortMapping) -> dict[str, Any]:
    return {"host_ip": p.host_ip, "host_port": p.host_port, "container_port": p.container_port,
            "protocol": p.protocol}


def podman_json(c: PodmanContainer | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {"id": c.id, "name": c.name, "state": c.state, "pid": c.pid or None, "image": c.image,
            "started_at": iso(c.started_at), "exit_code": c.exit_code}


def usage_json(u: Usage | None) -> dict[str, Any]:
    if u is None:
        return {"pids": [], "memory_bytes": None, "memory_source": None, "cpu_seconds": None,
                "cpu_percent": None}
    return {"pids": u.pids, "memory_bytes": u.memory_bytes, "memory_source": u.memory_source,
            "cpu_seconds": u.cpu_seconds, "cpu_percent": u.cpu_percent}


def container_json(c: ContainerStatus, now: float) -> dict[str, Any]:
    return {"name": c.name, "podman_name": c.podman_name, "ready": c.ready, "health": health.health(c) or None,
            **unit_json(c.unit, now), **usage_json(c.usage), "podman": podman_json(c.podman)}


def pod_json(p: PodStatus, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    return {
        "pod": p.name,
        **unit_json(p.unit, now),
        "ready": p.ready,
        "containers_ready": p.ready_count,
        "containers_total": len(p.containers),
        "memory_bytes": p.memory_bytes(),
        "cpu_percent": None if (cpu := p.cpu_percent()) is None else round(cpu, 1),
        "ports": [port_json(x) for x in p.ports],
        "infra": container_json(p.infra, now) if p.infra else None,
        "containers": [container_json(c, now) for c in p.containers],
        "sockets": [socket_json(s) for s in p.sockets],
    }
