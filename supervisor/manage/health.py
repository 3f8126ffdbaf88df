"""Health of probed containers for `podvisor ps` and `status`: from the STATUS= that
`podvisor ready-probe` sends (healthy / unhealthy (...) / starting) and its state file
(`%t/<unit>.health`: the last probe results with their times).

A container without liveness or startup probe has no health ("-"), as in podman. podman's own
`.State.Health` stays empty for probed containers (they run with --no-healthcheck), so the two
never disagree.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .model import ContainerStatus

RUN_DIR = Path("/run")
STATES = ("unhealthy", "healthy", "starting")  # "unhealthy" first: "healthy" is its suffix


def state_file(c: ContainerStatus) -> Path:
    """`%t/UNIT.health`: %t is /run for root's units, the user's XDG_RUNTIME_DIR for a user's (so
    a user never reads root's probe results for a pod of the same name, nor root a user's)."""
    run = Path(os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}") if c.user else RUN_DIR
    return run / f"{c.unit.name}.health"


def health(c: ContainerStatus) -> str:
    """healthy | unhealthy | starting, or "" for a container without liveness/startup probes."""
    u = c.unit
    if u.active_state not in ("active", "activating", "reloading"):
        return ""
    text = u.status_text
    for state in STATES:
        if text.startswith(state):
            return state
    if u.active_state == "activating" and state_file(c).exists():
        return "starting"
    return ""


def results(c: ContainerStatus) -> list[dict[str, Any]]:
    """The last probe attempts, oldest first: probe, time (epoch), ok, took (s), detail."""
    try:
        data = json.loads(state_file(c).read_text())
    except (OSError, ValueError):
        return []
    out = data.get("results") if isinstance(data, dict) else None
    return [r for r in out if isinstance(r, dict)] if isinstance(out, list) else []
