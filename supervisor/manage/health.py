"""Health of probed containers for `podvisor ps` and `status`: from the STATUS= that
`podvisor ready-probe` sends (healthy / unhealthy (...) / starting) and its state file
(`%t/<unit>.health`: the last probe results with their times).

A container without liveness or startup probe has no health ("-"), as in podman. podman's own
`.State.Health` stays empty for probed containers (they run with --no-healthcheck), so the two
never disagree.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .model import ContainerStatus

RUN_DIR = Path("/run")
STATES = ("unhealthy", "healthy", "starting")  # "unhealthy" first: "healthy" is its suffix


def state_file(unit: str) -> Path:
    return RUN_DIR / f"{unit}.health"


def health(c: ContainerStatus) -> str:
    """healthy | unhealthy | starting, or "" for a container without liveness/startup probes."""
    u = c.unit
    if u.active_state not in ("active", "activating", "reloading"):
        return ""
    text = u.status_text
    for state in STATES:
        if text.startswith(state):
            return state
    if u.active_state == "activating" and state_file(u.name).exists():
        return "starting"
    return ""


def results(unit: str) -> list[dict[str, Any]]:
    """The last probe attempts, oldest first: probe, time (epoch), ok, took (s), detail."""
    try:
        data = json.loads(state_file(unit).read_text())
    except (OSError, ValueError):
        return []
    out = data.get("results") if isinstance(data, dict) else None
    return [r for r in out if isinstance(r, dict)] if isinstance(out, list) else []
