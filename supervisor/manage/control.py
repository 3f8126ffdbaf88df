"""`podvisor start|stop|restart POD`: one systemd job on the pod unit, watched until it ends.

The pod unit's start job completes only when every member's start job has (for Type=notify
containers: READY=1), and its stop job when every member stopped, so the pod unit's job is
the one to wait for. Completion comes from systemd's JobRemoved signal (subscribed before the
job is queued: a fast job can end before StartUnit returns); the progress line polls the
members' states meanwhile. A failed job is explained with the members' own results.

Before start/restart we reset the units' failed state: a container that hit its start limit
(StartLimitBurst) would otherwise refuse the start an operator just asked for.
"""
from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from typing import TextIO

from supervisor.pods import naming

from ..systemd import Systemd
from . import discover, fmt, journal
from .errors import ManageError
from .inventory import unit_status
from .model import UnitStatus

POLL = 0.2  # seconds between progress updates
VERBS = {"start": ("starting", "started"), "stop": ("stopping", "stopped"), "restart": ("restarting", "restarted")}
REASON_LINES = 3  # journal lines quoted for each failed member


@dataclass
class Outcome:
    ok: bool
    job_result: str  # systemd's: done, failed, timeout, canceled, dependency, skipped ("" if unknown)
    seconds: float
    pod: UnitStatus
    members: list[UnitStatus]
    started_at: float = 0.0  # epoch: the journal lines quoted for a failure are from this job on
    user: bool = False  # the pod is a user manager's: its journal entries are that user's


class Progress:
    """One rewritten line on a terminal; on a pipe, a new line only when the state changes."""

    def __init__(self, out: TextIO, quiet: bool = False) -> None:
        self.out = out
        self.tty = out.isatty()
        self.quiet = quiet
        self.last = ""
        self.width = 0

    def show(self, head: str, elapsed: float, states: str) -> None:
        if self.quiet or (not self.tty and states == self.last):
            return
        text = f"{head} [{elapsed:.1f}s]: {states}"
        if self.tty:
            text = text[:shutil.get_terminal_size().columns - 1]  # a wrapped line can't be rewritten
            self.out.write("\r" + text.ljust(self.width))
            self.width = len(text)
        else:
            self.out.write(text + "\n")
        self.out.flush()
        self.last = states

    def done(self) -> None:
        if self.tty and self.last and not self.quiet:
            self.out.write("\n")
            self.out.flush()


def _member_text(u: UnitStatus) -> str:
    name = discover.PodUnits.container_of(u.name)
    text = f"{name} {u.active_state}"
    if u.active_state in ("activating", "deactivating") and u.status_text:
        status = u.status_text if len(u.status_text) <= 60 else u.status_text[:59] + "…"
        text += f" ({status})"
    return text


def describe_member_failure(pod: str, u: UnitStatus, since: float | None = None, user: bool = False) -> str:
    """One member's failure as systemd states it, then what the container last printed (or,
    for the infra unit, the unit's last journal lines)."""
    text = f"{u.name}: {u.failure() or u.state}"
    if u.status_text:
        text += f"; status: {u.status_text}"
    container = discover.PodUnits.container_of(u.name)
    if container == naming.INFRA:
        groups = journal.unit_groups(u.name, user)
    else:
        groups = [[f"CONTAINER_NAME={naming.podman_container(pod, container)}", journal.owner(user)]]
    try:
        entries = list(journal.read(groups, since=since, lines=REASON_LINES))
        tail = [journal.text(e.get("MESSAGE")).rstrip("\n") for e in entries]
    except ManageError:
        tail = []
    return text + "".join(f"\n    | {line}" for line in tail)


def run(sd: Systemd, pod: str, verb: str, *, timeout: float | None = None, out: TextIO = sys.stdout,
        quiet: bool = False) -> Outcome:
    pu = discover.load_pod(sd, pod)
    units = [pu.unit, *pu.members]
    if verb in ("start", "restart"):
        for u in units:
            sd.reset_failed(u)
    results: dict[str, str] = {}
    sd.on_job_removed(lambda job_id, path, unit, result: results.__setitem__(path, result))
    job = sd.enqueue(verb, pu.unit)
    progress = Progress(out, quiet)
    ing, _ = VERBS[verb]
    t0, started_at = time.monotonic(), time.time()
    try:
        while job not in results:
            elapsed = time.monotonic() - t0
            if timeout is not None and elapsed > timeout:
                raise ManageError(f"{pu.unit}: still {ing} after {timeout:g}s; the job continues "
                                  f"(podvisor status {pod})")
            members = [unit_status(sd, m)[0] for m in pu.members]
            progress.show(f"{ing} pod {pod}", elapsed, ", ".join(_member_text(m) for m in members))
            sd.pump(POLL)
    finally:
        progress.done()
    seconds = time.monotonic() - t0
    pod_status = unit_status(sd, pu.unit)[0]
    members = [unit_status(sd, m)[0] for m in pu.members]
    result = results[job]
    if verb == "stop":
        ok = result == "done" and all(m.active_state in ("inactive", "failed") for m in members)
    else:
        ok = result == "done" and pod_status.ready and all(m.ready for m in members)
    return Outcome(ok, result, seconds, pod_status, members, started_at, sd.user)


def report(pod: str, verb: str, o: Outcome, pal: fmt.Palette) -> str:
    """The final line on success; raises ManageError with systemd's reasons on failure."""
    _, ed = VERBS[verb]
    if o.ok:
        if verb == "stop":
            return f"pod {pod} {ed} in {o.seconds:.2f}s"
        containers = [m for m in o.members if not naming.is_infra_unit(m.name)]
        return (f"pod {pod} {ed} in {o.seconds:.2f}s: "
                + pal(f"{sum(m.ready for m in containers)}/{len(containers)} containers ready", "green"))
    if verb == "stop":
        busy = [m for m in o.members if m.active_state not in ("inactive", "failed")]
        detail = "\n".join(f"  {m.name}: {m.state}" for m in busy)
        raise ManageError(f"stopping pod {pod} failed (job {o.job_result or 'unknown'})"
                          + (f":\n{detail}" if detail else ""))
    # the members that failed; the others were most likely stopped because of them
    bad = [m for m in o.members if m.failure()] or [m for m in o.members if not m.ready]
    reasons = "\n".join("  " + describe_member_failure(pod, m, o.started_at, o.user) for m in bad)
    if o.job_result == "done":
        why = "the job completed, but not every container is running and ready"
    else:
        why = f"systemd's job result: {o.job_result or 'unknown'}"
    raise ManageError(f"{verb} of pod {pod} failed after {o.seconds:.2f}s ({why}; {o.pod.name}: "
                      f"{o.pod.failure() or o.pod.state}):\n{reasons}")
