"""Probes beyond readiness, read from Kubernetes YAML and Quadlet files: livenessProbe,
startupProbe, Quadlet's Health* keys, and reload (ExecReload=).

The result is a `model.Health` per container; supervisor/generator/health.py turns it into
`podvisor ready-probe` options and unit lines (WatchdogSec=, ExecReload=, ...).
"""
from __future__ import annotations

import json
import shlex
import signal
from collections.abc import Callable, Sequence
from typing import Any

from .model import DefinitionError, Health, Loc, OnFailure, Probe, Readiness, Verbatim

CONTAINER_FIELDS = ("livenessProbe", "startupProbe")
KUBE_OPTIONS = {
    "reload-signal": ("container", "signal `systemctl reload` sends to the container (ExecReload=podman kill)"),
    "reload-cmd": ("container", "command `systemctl reload` runs in the container (ExecReload=podman exec); "
                                "a JSON array or shell-style words"),
}
# Quadlet keys handled here (quadlet.py routes them to from_quadlet)
QUADLET_KEYS = frozenset({
    "HealthCmd", "HealthInterval", "HealthRetries", "HealthStartPeriod", "HealthTimeout", "HealthOnFailure",
    "HealthStartupCmd", "HealthStartupInterval", "HealthStartupRetries", "HealthStartupSuccess",
    "HealthStartupTimeout", "ReloadCmd", "ReloadSignal",
})
# podman's healthcheck defaults
PODMAN_INTERVAL = 30.0
PODMAN_TIMEOUT = 30.0
PODMAN_RETRIES = 3


def check_thresholds(reader: Any, fields: dict[str, Any]) -> int:
    """liveness/startup probes: successThreshold must be 1 (as Kubernetes demands); the failureThreshold."""
    if "successThreshold" in fields and reader.integer(fields["successThreshold"], 1, 86400) != 1:
        raise DefinitionError(fields["successThreshold"].loc, "must be 1 for liveness and startup probes")
    if "terminationGracePeriodSeconds" in fields:
        reader.integer(fields["terminationGracePeriodSeconds"], 1, 86400)
    if "failureThreshold" in fields:
        return int(reader.integer(fields["failureThreshold"], 1, 86400))
    return 3


def signal_name(value: str, loc: Loc) -> str:
    """SIGHUP, HUP, hup or 1 -> "SIGHUP"."""
    text = value.strip()
    try:
        sig = signal.Signals(int(text)) if text.isdigit() else \
            signal.Signals[("" if text.upper().startswith("SIG") else "SIG") + text.upper()]
    except (KeyError, ValueError):
        raise DefinitionError(loc, f"{value!r} is not a signal name or number") from None
    return sig.name


def from_kube(reader: Any, fields: dict[str, Any], ports: list[Any],
              option: Callable[[str], tuple[str, Loc] | None], readiness: Readiness,
              start_timeout: float | None) -> Health:
    liveness = reader.probe(fields["livenessProbe"], ports, "liveness") if "livenessProbe" in fields else None
    startup = reader.probe(fields["startupProbe"], ports, "startup") if "startupProbe" in fields else None
    if startup is not None and readiness is Readiness.CONTAINER:
        raise DefinitionError(startup.loc, "a startupProbe cannot hold back readiness 'container' (the app "
                                           "sends READY=1 itself); use readiness conmon or healthy")
    grace = None
    if liveness is not None:
        g = fields["livenessProbe"].value.get("terminationGracePeriodSeconds")
        if g is not None:
            grace = int(g.value)
    if startup is not None and "terminationGracePeriodSeconds" in fields["startupProbe"].value:
        reader.warn(fields["startupProbe"].value["terminationGracePeriodSeconds"].loc,
                    "ignored: a failed startup probe fails the unit's start, which kills at once")
    reload_command: tuple[str, ...] = ()
    reload_signal = ""
    cmd, sig = option("reload-cmd"), option("reload-signal")
    if cmd and sig:
        raise DefinitionError(sig[1], "give reload-cmd or reload-signal, not both")
    if cmd:
        reload_command = _command(cmd[0], cmd[1])
    if sig:
        reload_signal = signal_name(*sig)
    return Health(liveness=liveness, startup=startup, kill_grace=grace,
                  reload_command=reload_command, reload_signal=reload_signal)


def _command(value: str, loc: Loc) -> tuple[str, ...]:
    if value.lstrip().startswith("["):
        try:
            words = json.loads(value)
        except ValueError:
            words = None
        if not isinstance(words, list) or not words or not all(isinstance(w, str) for w in words):
            raise DefinitionError(loc, "expected a non-empty JSON array of strings")
        return tuple(words)
    try:
        words = shlex.split(value)
    except ValueError as e:
        raise DefinitionError(loc, f"cannot split into words: {e}") from None
    if not words:
        raise DefinitionError(loc, "empty command")
    return tuple(words)


def _health_command(cmd: str, loc: Loc) -> tuple[str, ...]:
    """podman's --health-cmd forms: ["CMD", ...], ["CMD-SHELL", "..."], or a shell command."""
    if cmd.startswith("["):
        try:
            words = json.loads(cmd)
        except ValueError:
            words = None
        if not isinstance(words, list) or len(words) < 2 or words[0] not in ("CMD", "CMD-SHELL") \
                or not all(isinstance(w, str) for w in words):
            raise DefinitionError(loc, 'expected ["CMD", ...], ["CMD-SHELL", "..."] or a shell command')
        command = tuple(words[1:]) if words[0] == "CMD" else ("/bin/sh", "-c", " ".join(words[1:]))
    else:
        command = ("/bin/sh", "-c", cmd)
    return tuple(Verbatim(w) for w in command)


class _Keys:
    """The Health*/Reload* keys of one .container file, read with the reader's duration syntax."""

    def __init__(self, keys: dict[str, tuple[str, Loc]], duration: Callable[[str, Loc], float]) -> None:
        self.keys = keys
        self.duration = duration

    def seconds(self, key: str, default: float | None) -> float | None:
        if key not in self.keys:
            return default
        value, loc = self.keys[key]
        if value == "disable":
            return None
        return max(self.duration(value, loc), 0.001)

    def count(self, key: str, default: int, low: int) -> int:
        if key not in self.keys:
            return default
        value, loc = self.keys[key]
        if not value.isdigit() or int(value) < low:
            raise DefinitionError(loc, f"{value!r}: expected a whole number of at least {low}")
        return int(value)

    def require(self, names: tuple[str, ...], needed: str) -> None:
        for key in names:
            if key in self.keys:
                raise DefinitionError(self.keys[key][1], f"needs {needed}=")


def from_quadlet(keys: dict[str, tuple[str, Loc]], notify: Readiness, notify_loc: Loc,
                 duration: Callable[[str, Loc], float],
                 words: Callable[[str, Loc], Sequence[str]]) -> tuple[Probe | None, Health, bool]:
    """Quadlet's Health*/Reload* keys -> (readiness probe for Notify=healthy, Health,
    whether to pass --no-healthcheck). podman's own healthchecks are never configured: podman 4.3.1
    runs them from transient systemd timers and cannot act on a failure."""
    k = _Keys(keys, duration)
    readiness, liveness, no_healthcheck = _quadlet_check(k, notify, notify_loc)
    on_failure = OnFailure.NONE
    if "HealthOnFailure" in keys:
        value, loc = keys["HealthOnFailure"]
        try:
            on_failure = OnFailure(value)
        except ValueError:
            raise DefinitionError(loc, f"{value!r}: expected none, kill, restart or stop") from None
    start_period = k.seconds("HealthStartPeriod", 0.0) or 0.0
    reload_command, reload_signal = _quadlet_reload(keys, words)
    health = Health(liveness=liveness, startup=_quadlet_startup(k, notify), on_failure=on_failure,
                    start_period=start_period, reload_command=reload_command, reload_signal=reload_signal)
    return readiness, health, no_healthcheck


def _quadlet_check(k: _Keys, notify: Readiness, notify_loc: Loc) -> tuple[Probe | None, Probe | None, bool]:
    """HealthCmd= and its timing -> (readiness probe, liveness probe, --no-healthcheck)."""
    keys = k.keys
    cmd = keys.get("HealthCmd")
    no_healthcheck = cmd is not None and cmd[0].strip().lower() == "none"  # also turns off an image HEALTHCHECK
    if cmd is None or no_healthcheck:
        k.require(("HealthInterval", "HealthRetries", "HealthStartPeriod", "HealthTimeout", "HealthOnFailure"),
                  "HealthCmd")
        if notify is Readiness.HEALTHY:
            raise DefinitionError(notify_loc, "Notify=healthy needs HealthCmd=")
        return None, None, no_healthcheck
    readiness = liveness = None
    command = _health_command(*cmd)
    interval = k.seconds("HealthInterval", PODMAN_INTERVAL)
    timeout = k.seconds("HealthTimeout", PODMAN_TIMEOUT) or PODMAN_TIMEOUT
    retries = k.count("HealthRetries", PODMAN_RETRIES, 1)
    if notify is Readiness.HEALTHY:
        # readiness wants the first answer sooner than podman's 30 s
        readiness = Probe("exec", command=command, period=interval if "HealthInterval" in keys and interval
                          else 1.0, timeout=timeout, loc=notify_loc)
    if interval is not None:  # "disable": podman never runs it on its own
        liveness = Probe("exec", command=command, period=interval, timeout=timeout,
                         failure_threshold=retries, loc=cmd[1])
    elif "HealthOnFailure" in keys and keys["HealthOnFailure"][0] != "none":
        raise DefinitionError(keys["HealthOnFailure"][1], "HealthInterval=disable: the check never runs, "
                                                          "so there is no failure to act on")
    return readiness, liveness, False


def _quadlet_startup(k: _Keys, notify: Readiness) -> Probe | None:
    scmd = k.keys.get("HealthStartupCmd")
    if scmd is None:
        k.require(("HealthStartupInterval", "HealthStartupRetries", "HealthStartupSuccess", "HealthStartupTimeout"),
                  "HealthStartupCmd")
        return None
    if notify is Readiness.CONTAINER:
        raise DefinitionError(scmd[1], "a startup check cannot hold back Notify=yes (the app sends READY=1 "
                                       "itself); use Notify=no or Notify=healthy")
    sinterval = k.seconds("HealthStartupInterval", PODMAN_INTERVAL)
    if sinterval is None:
        raise DefinitionError(k.keys["HealthStartupInterval"][1], "the startup check must run: give a duration")
    return Probe("exec", command=_health_command(*scmd), period=sinterval,
                 timeout=k.seconds("HealthStartupTimeout", PODMAN_TIMEOUT) or PODMAN_TIMEOUT,
                 # podman: 0 retries = retry until the start times out (TimeoutStartSec=)
                 failure_threshold=k.count("HealthStartupRetries", 0, 0),
                 success_threshold=max(1, k.count("HealthStartupSuccess", 1, 0)), loc=scmd[1])


def _quadlet_reload(keys: dict[str, tuple[str, Loc]],
                    words: Callable[[str, Loc], Sequence[str]]) -> tuple[tuple[str, ...], str]:
    reload_command: tuple[str, ...] = ()
    reload_signal = ""
    if "ReloadCmd" in keys and "ReloadSignal" in keys:
        raise DefinitionError(keys["ReloadSignal"][1], "give ReloadCmd= or ReloadSignal=, not both")
    if "ReloadCmd" in keys:
        reload_command = tuple(words(*keys["ReloadCmd"]))
        if not reload_command:
            raise DefinitionError(keys["ReloadCmd"][1], "empty command")
    if "ReloadSignal" in keys:
        reload_signal = signal_name(*keys["ReloadSignal"])
    return reload_command, reload_signal
