"""A container's model.Health -> `podvisor ready-probe` options and extra [Service] lines.

Liveness is systemd's watchdog: the probe (a helper process in the unit, hence NotifyAccess=all,
which the container units already have) sends WATCHDOG=1 after each passing attempt and
WATCHDOG=trigger at failureThreshold failures in a row. systemd then sends WatchdogSignal= to
the main PID (the monitor, which forwards SIGTERM to the container: a graceful stop, as a
kubelet does), SIGKILLs what is left after TimeoutAbortSec= (the grace period), runs
ExecStopPost= (which force-removes the container) and restarts per Restart=. WatchdogSec= is the
backstop should the probe process itself hang or die: longer than the worst case for a failing
probe (max(period, timeout) x threshold + timeout), so the trigger, with its message, comes first.
"""
from __future__ import annotations

import math

from supervisor.pods import naming
from supervisor.pods.model import Container, OnFailure, Probe, Readiness, Verbatim

from . import escape

WATCHDOG_MARGIN = 5.0  # seconds beyond period x threshold + timeout
START_SLACK = 90.0     # TimeoutStartSec beyond a startup probe's own bound (systemd's default start timeout)
STATE_FILE = "%t/%n.health"


def wrapped(c: Container) -> bool:
    """Does the unit run `podman run` under `podvisor ready-probe`?"""
    h = c.health
    return c.readiness is Readiness.HEALTHY or h.liveness is not None or h.startup is not None


def detection_bound(p: Probe) -> float:
    """Worst case from the moment a container goes bad to the action. Attempts start every
    max(period, duration) and last at most `timeout`: the first failing one starts at most one such
    interval after the last good one, then threshold - 1 more, the last one taking its timeout."""
    return max(p.period, p.timeout) * p.failure_threshold + p.timeout


def watchdog_sec(p: Probe) -> int:
    return math.ceil(detection_bound(p) + WATCHDOG_MARGIN)


def _target(p: Probe) -> str:
    host = p.host or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{p.port}"


def _cat(flag: str, word: str) -> str:
    if isinstance(word, Verbatim):
        return Verbatim(flag + word)
    return flag + word


def _seconds(value: float) -> str:
    return f"{value:g}" if value != int(value) else str(int(value))


def probe_options(p: Probe, prefix: str, success: bool = False, failure: bool = True) -> list[str]:
    """`ready-probe` options for probe `p`; `prefix` names its role (empty: readiness)."""
    argv = [f"--{prefix}initial-delay={_seconds(p.initial_delay)}", f"--{prefix}period={_seconds(p.period)}",
            f"--{prefix}timeout={_seconds(p.timeout)}"]
    if failure:
        argv.append(f"--{prefix}failure-threshold={p.failure_threshold}")
    if success:
        argv.append(f"--{prefix}success-threshold={p.success_threshold}")
    if p.kind == "exec":
        argv += [_cat(f"--{prefix}exec=", w) for w in p.command]
    elif p.kind == "http":
        argv.append(f"--{prefix}http-get={p.scheme}://{_target(p)}{p.path}")
        argv += [f"--{prefix}http-header={k}: {v}" for k, v in p.headers]
    elif p.kind == "grpc":
        argv.append(f"--{prefix}grpc={_target(p)}")
        if p.service:
            argv.append(f"--{prefix}grpc-service={p.service}")
    else:
        argv.append(f"--{prefix}tcp-socket={_target(p)}")
    return argv


def _action(c: Container) -> str:
    return {OnFailure.NONE: "none", OnFailure.STOP: "stop"}.get(c.health.on_failure, "watchdog")


def probe_argv(c: Container) -> list[str]:
    """The ready-probe options for startup and liveness (after the readiness ones)."""
    h = c.health
    argv: list[str] = []
    if h.startup is not None:
        argv += probe_options(h.startup, "startup-", success=True)
    if h.liveness is not None:
        argv += probe_options(h.liveness, "liveness-")
        argv.append(f"--on-failure={_action(c)}")
        if h.start_period:
            argv.append(f"--liveness-start-period={_seconds(h.start_period)}")
    if h.liveness is not None or h.startup is not None:
        argv.append(Verbatim(f"--state-file={STATE_FILE}"))
    return argv


def service_lines(c: Container, podman: list[str], container_name: str) -> list[tuple[str, str]]:
    """[Service] lines; `podman` is the podman argv prefix with the global flags."""
    h = c.health
    lines: list[tuple[str, str]] = []
    if h.liveness is not None and h.on_failure in (OnFailure.KILL, OnFailure.RESTART):
        lines.append(("WatchdogSec", str(watchdog_sec(h.liveness))))
        # the monitor forwards SIGTERM to the container; SIGKILL after the grace period
        lines.append(("WatchdogSignal", "SIGTERM"))
        lines.append(("TimeoutAbortSec", str(h.kill_grace if h.kill_grace is not None else c.stop_timeout)))
        if h.on_failure is OnFailure.RESTART:
            lines.append(("Restart", "on-watchdog"))  # a Restart= in the file's [Service] still wins
    if h.startup is not None and c.start_timeout is None and h.startup.failure_threshold:
        s = h.startup
        own = s.initial_delay + s.period * s.failure_threshold + s.timeout
        lines.append(("TimeoutStartSec", str(math.ceil(own + START_SLACK))))
    if h.reload_signal:
        lines.append(("ExecReload", escape.command(
            [*podman, "kill", f"--signal={h.reload_signal}", Verbatim(f"--cidfile={naming.CIDFILE}")])))
    elif h.reload_command:
        lines.append(("ExecReload", escape.command([*podman, "exec", container_name, *h.reload_command])))
    return lines
