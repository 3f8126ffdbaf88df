"""`podvisor reload POD [CONTAINER...]`: systemd reload jobs on the container units, whose
ExecReload= (from podvisor.io/reload-signal/-cmd or Quadlet's ReloadSignal=/ReloadCmd=) runs
`podman kill --signal` or `podman exec`. Waits for the jobs; a failed one is an error."""
from __future__ import annotations

import time

from supervisor.pods import naming

from ..systemd import Systemd
from . import discover
from .errors import ManageError
from .inventory import unit_status

POLL = 0.2


def run(sd: Systemd, pod: str, containers: list[str], timeout: float = 90.0) -> list[str]:
    pu = discover.load_pod(sd, pod)
    members = {discover.PodUnits.container_of(m): m for m in pu.members}
    members.pop(naming.INFRA, None)
    for name in containers:
        if name not in members:
            raise ManageError(f"pod {pod} has no container {name!r} (it has: {', '.join(sorted(members)) or 'none'})")
    chosen = [members[n] for n in containers] if containers else list(members.values())
    targets = []
    for unit in chosen:
        props = sd.unit(unit)
        if not props.get("CanReload"):
            if containers:
                raise ManageError(f"{unit} cannot reload: give the container podvisor.io/reload-signal or "
                                  "reload-cmd (Quadlet: ReloadSignal= or ReloadCmd=)")
            continue
        if props.get("ActiveState") != "active":
            raise ManageError(f"{unit} is {props.get('ActiveState')}: only a running container can reload")
        targets.append(unit)
    if not targets:
        raise ManageError(f"no container of pod {pod} can reload (none has ExecReload=)")
    results: dict[str, str] = {}
    sd.on_job_removed(lambda job_id, path, unit, result: results.__setitem__(path, result))
    jobs = {sd.enqueue("reload", u): u for u in targets}
    deadline = time.monotonic() + timeout
    while not all(j in results for j in jobs):
        if time.monotonic() > deadline:
            raise ManageError(f"still reloading after {timeout:g}s: "
                              + " ".join(u for j, u in jobs.items() if j not in results))
        sd.pump(POLL)
    failed = [u for j, u in jobs.items() if results[j] != "done"]
    if failed:
        why = "; ".join(f"{u}: {results[j]}, {unit_status(sd, u)[0].failure() or 'see journalctl -u ' + u}"
                        for j, u in jobs.items() if u in failed)
        raise ManageError(f"reload failed: {why}")
    return targets
