"""`podvisor status POD`: the pod and each container in detail, why it last failed or was
OOM-killed, and the last lines of the pod's journal.

"Last failure" is systemd's own word: the unit's Result while it is failed, else the newest
"Failed with result" entry systemd logged for the unit (an automatic restart clears Result).
"Last OOM" is the monitor's OOM notice (podman's containers run outside the unit's cgroup, so
on cgroup v1 systemd never sees the kill itself) or systemd's OOM message on cgroup v2.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from supervisor.pods import naming

from ..systemd import Systemd
from . import fmt, health, journal, sockets, views
from .inventory import Inventory, collect
from .model import ContainerStatus, PodStatus, UnitStatus

CPU_INTERVAL = 0.25


@dataclass
class Event:
    time: float
    what: str  # failure: systemd's UNIT_RESULT; oom: "oom"
    detail: str  # exit status, or the message

    def json(self) -> dict[str, Any]:
        return {"time": fmt.iso(self.time), "what": self.what, "detail": self.detail}


@dataclass
class JournalLine:
    time: float
    container: str  # the member ("web", "infra"), "" for the pod unit itself
    identifier: str  # SYSLOG_IDENTIFIER: blog.web (output), systemd, podman, pod-blog@web, ...
    text: str


@dataclass
class Details:
    pod: PodStatus
    failures: dict[str, Event | None] = field(default_factory=dict)  # by unit
    ooms: dict[str, Event | None] = field(default_factory=dict)  # by unit
    lines: list[JournalLine] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    taken_at: float = field(default_factory=time.time)


def last_failure(u: UnitStatus, user: bool = False) -> Event | None:
    if u.failure() and u.load_state == "loaded":
        return Event(u.state_since or 0.0, u.result or u.active_state, u.exit_description())
    group = [*journal.manager_match(u.name, user), f"MESSAGE_ID={journal.UNIT_FAILURE_RESULT}",
             f"MESSAGE_ID={journal.UNIT_PROCESS_EXIT}"]
    exit_detail = ""
    failure: dict[str, Any] | None = None
    for e in journal.read([group], lines=20, reverse=True):  # newest first
        mid = journal.text(e.get("MESSAGE_ID"))
        if failure is None and mid == journal.UNIT_FAILURE_RESULT:
            failure = e
        elif failure is not None and mid == journal.UNIT_PROCESS_EXIT:
            code, status = journal.text(e.get("EXIT_CODE")), journal.text(e.get("EXIT_STATUS"))
            exit_detail = f"{'status' if code == 'exited' else 'signal'}={status}" if code else ""
            break
    if failure is None:
        return None
    return Event(journal.entry_time(failure), journal.text(failure.get("UNIT_RESULT")) or "failed", exit_detail)


def last_oom(c: ContainerStatus) -> Event | None:
    groups = [[f"CONTAINER_NAME={c.podman_name}", f"SYSLOG_IDENTIFIER={journal.MONITOR_IDENTIFIER}",
               journal.owner(c.user)],
              [*journal.manager_match(c.unit.name, c.user), f"MESSAGE_ID={journal.UNIT_OUT_OF_MEMORY}"]]
    for e in journal.read(groups, lines=50, reverse=True):
        message = journal.text(e.get("MESSAGE"))
        if "OOM" in message or journal.text(e.get("MESSAGE_ID")) == journal.UNIT_OUT_OF_MEMORY:
            return Event(journal.entry_time(e), "oom", message.strip())
    if c.unit.result == "oom-kill":
        return Event(c.unit.state_since or 0.0, "oom", "systemd: Result: oom-kill")
    return None


def journal_tail(pod: PodStatus, n: int, user: bool = False) -> list[JournalLine]:
    """The pod's journal as `journalctl -u` (`--user-unit`) shows it for each unit, merged, minus
    podman's event records (container create/init/start/died... for every podman call): the last
    `n` lines."""
    units = {pod.unit.name: ""} | {c.unit.name: c.name for c in pod.members}
    groups = [g for unit in units for g in journal.unit_groups(unit, user)]
    out = []
    for e in journal.last(groups, n * 4 + 20):
        if e.get("PODMAN_EVENT"):
            continue
        out.append(JournalLine(journal.entry_time(e), units.get(journal.unit_of(e, user), ""),
                               journal.text(e.get("SYSLOG_IDENTIFIER")),
                               journal.text(e.get("MESSAGE")).rstrip("\n")))
    return out[-n:] if n else []


def gather(sd: Systemd, pod: str, lines: int = 10) -> Details:
    inv: Inventory = collect(sd, [pod], cpu_interval=CPU_INTERVAL)
    d = Details(inv.pods[0], warnings=inv.warnings, taken_at=inv.taken_at)
    d.failures[d.pod.unit.name] = last_failure(d.pod.unit, sd.user)
    for c in d.pod.members:
        d.failures[c.unit.name] = last_failure(c.unit, sd.user)
        d.ooms[c.unit.name] = last_oom(c) if c.name != naming.INFRA else None
    d.lines = journal_tail(d.pod, lines, sd.user)
    return d


# ---------------------------------------------------------------------------- output


def to_json(d: Details) -> str:
    data = views.pod_json(d.pod, d.taken_at)
    data["last_failure"] = _event(d.failures.get(d.pod.unit.name))
    views_json = [data["infra"], *data["containers"]] if data["infra"] else data["containers"]
    for c, cj in zip(d.pod.members, views_json, strict=True):
        cj["last_failure"] = _event(d.failures.get(c.unit.name))
        cj["last_oom"] = _event(d.ooms.get(c.unit.name))
        cj["probes"] = [{**r, "time": fmt.iso(r.get("time"))} for r in health.results(c)]
    data["log"] = [{"time": fmt.iso(x.time), "container": x.container or None, "identifier": x.identifier,
                    "message": x.text} for x in d.lines]
    data["warnings"] = d.warnings
    return json.dumps(data, indent=2)


def _event(e: Event | None) -> dict[str, Any] | None:
    return e.json() if e else None


def _since(u: UnitStatus, now: float) -> str:
    return f" since {fmt.timestamp(u.state_since)}; {fmt.ago(u.state_since, now)}" if u.state_since else ""


def _event_text(e: Event | None) -> str:
    if e is None:
        return "-"
    return f"{fmt.timestamp(e.time)}: {e.what}{' (' + e.detail + ')' if e.detail else ''}"


def to_text(d: Details, pal: fmt.Palette) -> str:
    p, now = d.pod, d.taken_at
    dot = pal("●", "green" if p.ready else "red" if p.unit.active_state == "failed" else "yellow")
    out = [f"{dot} {pal(p.name, 'bold')} - {pal.state(p.unit.state, p.unit.active_state)}{_since(p.unit, now)}"]
    ready = f"{p.ready_count}/{len(p.containers)} containers ready"
    out.append(f"    Ready: {pal(ready, 'green' if p.ready else 'yellow')}")
    out.append(f"     Unit: {p.unit.name} ({p.unit.fragment_path or 'no unit file'})")
    out.append(f"    Ports: {', '.join(str(x) for x in p.ports) or '-'}")
    out.extend(sockets.status_lines(p.sockets, pal))
    out.append(f"    Usage: memory {fmt.size(p.memory_bytes())}, cpu {fmt.percent(p.cpu_percent())}")
    if d.failures.get(p.unit.name):
        out.append(f" Last failure: {_event_text(d.failures[p.unit.name])}")
    for c in p.members:
        out.append("")
        out.extend(_container_text(c, d, pal, now))
    out.append("")
    out.append(pal(f"Last {len(d.lines)} journal lines:", "bold") if d.lines else "No journal lines.")
    width = max((len(x.container or p.name) for x in d.lines), default=0)
    for x in d.lines:
        stamp = fmt.timestamp(x.time)[:19]
        who = (x.container or p.name).ljust(width)
        out.append(f"  {pal(stamp, 'dim')} {who} {x.identifier}: {x.text}")
    for w in d.warnings:
        out.append(pal(f"warning: {w}", "yellow"))
    return "\n".join(out)


def _container_text(c: ContainerStatus, d: Details, pal: fmt.Palette, now: float) -> list[str]:
    u = c.unit
    head = f"  {pal(c.name, 'bold')}  {u.name}  {pal.state(u.state, u.active_state)}{_since(u, now)}"
    if u.job:
        head += f" [job: {u.job}]"
    lines = [head]
    pad = "      "
    if c.name != naming.INFRA:
        lines.append(f"{pad}Ready: {pal('yes', 'green') if c.ready else pal('no', 'red')}")
    if u.status_text:
        lines.append(f"{pad}Status: {u.status_text}")
    lines.extend(_probe_lines(c, pad))
    ids = f"monitor {u.main_pid or '-'}"
    if c.podman:
        ids += f", container {c.podman.pid or '-'} ({c.podman.id[:12]}, {c.podman.state}), image {c.podman.image}"
    lines.append(f"{pad}Restarts: {u.restarts}   PIDs: {ids}")
    if c.usage:
        lines.append(f"{pad}Usage: {fmt.plural(len(c.usage.pids), 'process')}, "
                     f"memory {fmt.size(c.usage.memory_bytes)}, "
                     f"cpu {fmt.percent(c.usage.cpu_percent)} ({c.usage.cpu_seconds:.2f}s total)")
    failure = d.failures.get(u.name)
    lines.append(f"{pad}Last failure: {pal(_event_text(failure), 'red') if failure else '-'}")
    if c.name != naming.INFRA:
        oom = d.ooms.get(u.name)
        lines.append(f"{pad}Last OOM: {pal(_event_text(oom), 'red') if oom else '-'}")
    return lines


def _probe_lines(c: ContainerStatus, pad: str, n: int = 3) -> list[str]:
    """Health and the last probe attempts (ready-probe's state file), newest last."""
    state, last = health.health(c), health.results(c)[-n:]
    if not state and not last:
        return []
    out = [f"{pad}Health: {state or '-'}"]
    for r in last:
        t = r.get("time")
        stamp = fmt.timestamp(t)[:19] if isinstance(t, (int, float)) else "?"
        verdict = "ok" if r.get("ok") else f"failed: {r.get('detail')}"
        out.append(f"{pad}  {stamp} {r.get('probe')} probe {verdict} ({r.get('took')}s)")
    return out
