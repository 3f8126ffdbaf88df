"""`podvisor ready-probe`: readiness, startup and liveness probes for podman 4.3.1, which has no
--sdnotify=healthy and cannot act on a failed healthcheck.

A probed container's unit runs (``Type=notify``, ``NotifyAccess=all``)::

    podvisor ready-probe [probe options] -- podman [global flags] run --sdnotify=ignore
        --conmon-pidfile=%t/%n.pid --cidfile=%t/%n.ctr-id --detach ...

1. run that podman command (``--sdnotify=ignore``: podman sends nothing to systemd itself;
   ``--sdnotify=container``: podman and the app do, and this process only adds liveness);
2. send ``MAINPID=<monitor>``: systemd now supervises the container's monitor and this process
   is a helper in the unit. With a startup probe that waits until the startup probe passed: while
   this process is still the main PID, its exit fails the start with its own message;
3. startup probe (if any) until it passed, at most ``failure-threshold`` failures; then the
   readiness probe until it passed ``success-threshold`` times in a row; then ``READY=1``;
4. liveness probe (if any) every period: ``WATCHDOG=1`` after each success; at
   ``failure-threshold`` failures in a row the action (``--on-failure``): ``watchdog`` sends
   ``WATCHDOG=trigger`` (systemd >= 243 stops the unit with result "watchdog" and restarts it per
   Restart=); ``stop`` stops the unit; ``none`` only reports. The unit's WatchdogSec= exceeds
   period x threshold + timeout, so if this process itself hangs or dies the pings stop and
   systemd acts anyway.

One process, no threads: every attempt is bounded by its timeout (checks.py), so a hung
container never holds up the pings of a healthy one. HTTP/TCP probes run in the container's
network namespace, which this process joins once. ``STATUS=`` says healthy, starting or
``unhealthy (3/3 failed: HTTP 500 from /healthz)``; ``--state-file`` keeps the last results
with their times for `podvisor status`.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from . import checks

KEEP_RESULTS = 10  # in the state file
ACTIONS = ("none", "watchdog", "stop")


class ProbeSetupError(RuntimeError):
    pass


class Notifier:
    """Datagrams to systemd's NOTIFY_SOCKET; the socket is made before we change network namespace."""

    def __init__(self) -> None:
        address = os.environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) if address else None

    def __call__(self, message: str) -> None:
        if self.sock is not None:
            try:
                self.sock.sendto(message.encode(), self.address)
            except OSError as e:
                log(f"cannot notify systemd: {e}")


def log(message: str) -> None:
    print(f"podvisor ready-probe: {message}", file=sys.stderr, flush=True)


@dataclass
class Spec:
    """One probe: what to check, and how often."""

    role: str  # readiness | startup | liveness
    exec_command: list[str]
    http_get: str | None
    http_headers: list[tuple[str, str]]
    tcp_socket: str | None
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3  # 0: unlimited (startup: until TimeoutStartSec=)
    grpc: str | None = None
    grpc_service: str = ""

    @property
    def network(self) -> bool:
        return not self.exec_command

    def describe(self) -> str:
        what = " ".join(self.exec_command) if self.exec_command else self.http_get or \
            (f"grpc {self.grpc}" if self.grpc else f"tcp {self.tcp_socket}")
        return f"{self.role} probe ({what})"


@dataclass
class Options:
    pidfile: str
    cidfile: str
    readiness: Spec | None
    command: list[str]
    startup: Spec | None = None
    liveness: Spec | None = None
    on_failure: str = "watchdog"
    start_period: float = 0.0
    state_file: str | None = None

    @property
    def specs(self) -> list[Spec]:
        return [s for s in (self.startup, self.readiness, self.liveness) if s is not None]


def _probe_arguments(p: argparse.ArgumentParser, prefix: str, what: str, success: bool, failure: bool) -> None:
    d = prefix.replace("-", "_")
    g = p.add_argument_group(f"{what} probe")
    g.add_argument(f"--{prefix}initial-delay", dest=f"{d}initial_delay", type=float, default=0.0, metavar="SECONDS")
    g.add_argument(f"--{prefix}period", dest=f"{d}period", type=float, default=10.0, metavar="SECONDS")
    g.add_argument(f"--{prefix}timeout", dest=f"{d}timeout", type=float, default=1.0, metavar="SECONDS",
                   help="per attempt")
    if success:
        g.add_argument(f"--{prefix}success-threshold", dest=f"{d}success_threshold", type=int, default=1, metavar="N")
    if failure:
        g.add_argument(f"--{prefix}failure-threshold", dest=f"{d}failure_threshold", type=int, default=3, metavar="N")
    g.add_argument(f"--{prefix}exec", dest=f"{d}exec_command", action="append", default=[], metavar="WORD",
                   help="exec probe: one argv word per option, run with podman exec")
    g.add_argument(f"--{prefix}http-get", dest=f"{d}http_get", metavar="URL", help="HTTP probe: 200-399 is success")
    g.add_argument(f"--{prefix}http-header", dest=f"{d}http_headers", action="append", default=[],
                   metavar="NAME: VALUE")
    g.add_argument(f"--{prefix}tcp-socket", dest=f"{d}tcp_socket", metavar="HOST:PORT",
                   help="TCP probe: a connection is success")
    g.add_argument(f"--{prefix}grpc", dest=f"{d}grpc", metavar="HOST:PORT",
                   help="gRPC probe (grpc.health.v1.Health/Check, cleartext): SERVING is success")
    g.add_argument(f"--{prefix}grpc-service", dest=f"{d}grpc_service", default="", metavar="NAME")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pidfile", required=True, help="the monitor's PID file (podman --conmon-pidfile)")
    p.add_argument("--cidfile", required=True, help="the container ID file (podman --cidfile)")
    p.add_argument("--state-file", metavar="PATH", help="keep the last probe results here (JSON)")
    p.add_argument("--on-failure", choices=ACTIONS, default="watchdog",
                   help="when the liveness probe fails failure-threshold times in a row (default: watchdog)")
    p.add_argument("--liveness-start-period", type=float, default=0.0, metavar="SECONDS",
                   help="liveness failures this soon after the start do not count (Quadlet HealthStartPeriod)")
    _probe_arguments(p, "", "readiness", True, False)
    _probe_arguments(p, "startup-", "startup", True, True)
    _probe_arguments(p, "liveness-", "liveness", False, True)
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- PODMAN [GLOBAL...] run ...")


def _spec(args: argparse.Namespace, prefix: str, role: str) -> Spec | None:
    def get(name: str, default: object = None) -> object:
        return getattr(args, f"{prefix}{name}", default)

    kinds = [k for k in (get("exec_command"), get("http_get"), get("tcp_socket"), get("grpc")) if k]
    flag = "--" + prefix.replace("_", "-")
    if not kinds:
        return None
    if len(kinds) != 1:
        raise ProbeSetupError(f"give exactly one of {flag}exec, {flag}http-get, {flag}tcp-socket, {flag}grpc")
    headers = []
    for h in get("http_headers") or []:  # type: ignore[attr-defined]
        name, sep, value = h.partition(":")
        if not sep or not name:
            raise ProbeSetupError(f"{flag}http-header {h!r}: expected 'Name: value'")
        headers.append((name, value.strip(" ")))
    s = Spec(role, list(get("exec_command") or []), get("http_get"), headers,  # type: ignore[arg-type]
             get("tcp_socket"), float(get("initial_delay")), float(get("period")),  # type: ignore[arg-type]
             float(get("timeout")), int(get("success_threshold", 1)),  # type: ignore[arg-type]
             int(get("failure_threshold", 3)), get("grpc"), str(get("grpc_service") or ""))  # type: ignore[arg-type]
    if s.period <= 0 or s.timeout <= 0 or s.initial_delay < 0 or s.success_threshold < 1 or s.failure_threshold < 0:
        raise ProbeSetupError(f"{role}: period and timeout must be positive, success threshold at least 1")
    if role == "liveness" and s.failure_threshold < 1:
        raise ProbeSetupError("liveness: failure threshold at least 1")
    return s


def options_from(args: argparse.Namespace) -> Options:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise ProbeSetupError("no podman command after --")
    opts = Options(args.pidfile, args.cidfile, _spec(args, "", "readiness"), command,
                   startup=_spec(args, "startup_", "startup"), liveness=_spec(args, "liveness_", "liveness"),
                   on_failure=args.on_failure, start_period=args.liveness_start_period, state_file=args.state_file)
    if not opts.specs:
        raise ProbeSetupError("give exactly one of --exec, --http-get, --tcp-socket, --grpc "
                              "(or a --startup-... or --liveness-... probe)")
    return opts


def podman_prefix(command: list[str]) -> list[str]:
    """`podman --global=flags` of the run command: generated global flags are all --flag=value."""
    i = 1
    while i < len(command) and command[i].startswith("--"):
        i += 1
    if i >= len(command) or command[i] != "run":
        raise ProbeSetupError(f"expected `podman [--flag=value...] run ...` after --, got {command[:i + 1]}")
    return command[:i]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


# kept for callers of the first version
http_probe = checks.http_check
tcp_probe = checks.tcp_check
exec_probe = checks.exec_check


@dataclass
class Supervisor:
    """The probe loop's state: what systemd and the state file are told."""

    opts: Options
    notify: Notifier
    prefix: list[str]
    cid: str = ""
    monitor: int = 0
    results: list[dict[str, object]] = field(default_factory=list)
    health: str = "starting"
    status: str = ""
    failures: int = 0

    def attempt(self, spec: Spec) -> str | None:
        started, wall = time.monotonic(), time.time()
        if spec.exec_command:
            why = checks.exec_check(self.prefix, self.cid, spec.exec_command, spec.timeout)
        elif spec.http_get:
            why = checks.http_check(spec.http_get, spec.http_headers, spec.timeout)
        elif spec.grpc:
            why = checks.grpc_check(spec.grpc, spec.grpc_service, spec.timeout)
        else:
            why = checks.tcp_check(spec.tcp_socket or "", spec.timeout)
        self.results.append({"probe": spec.role, "time": round(wall, 3), "ok": why is None,
                             "took": round(time.monotonic() - started, 3), "detail": why or ""})
        del self.results[:-KEEP_RESULTS]
        return why

    def set_status(self, health: str, status: str, extra: str = "") -> None:
        """STATUS= only when it changed (each change is a D-Bus signal); the state file always."""
        self.health = health
        if status != self.status or extra:
            self.status = status
            self.notify(f"{extra}STATUS={status}"[:1000])
        self.save()

    def save(self) -> None:
        if not self.opts.state_file:
            return
        import json

        tmp = f"{self.opts.state_file}.tmp"
        try:
            with open(tmp, "w") as f:
                json.dump({"health": self.health, "status": self.status, "failures": self.failures,
                           "threshold": self.opts.liveness.failure_threshold if self.opts.liveness else 0,
                           "results": self.results, "pid": os.getpid()}, f)
            os.replace(tmp, self.opts.state_file)
        except OSError as e:
            log(f"cannot write {self.opts.state_file}: {e}")

    def gate(self, spec: Spec, since: float) -> bool:
        """Run `spec` until it passed success_threshold times in a row. False: the monitor died,
        or (startup) failure_threshold failures in a row."""
        passed = failed = attempt = 0
        while True:
            if not _alive(self.monitor):
                log(f"the container stopped before its {spec.role} probe passed")
                return False
            attempt += 1
            started = time.monotonic()
            why = self.attempt(spec)
            if why is None:
                passed += 1
                if passed >= spec.success_threshold:
                    return True
            else:
                passed = 0
                failed += 1
                log(f"{spec.role} probe, attempt {attempt}: {why}")
                if spec.role == "startup" and spec.failure_threshold and failed >= spec.failure_threshold:
                    took = time.monotonic() - since
                    message = (f"startup probe failed {failed} times in a row (every {spec.period:g}s, "
                               f"failureThreshold {spec.failure_threshold}; {took:.0f}s since the start): {why}")
                    log(message + "; the start fails")
                    self.set_status("unhealthy", f"start failed: {message}")
                    return False
                if spec.role == "startup":
                    self.set_status("starting", f"starting ({failed}/{spec.failure_threshold or '-'} startup "
                                                f"probe failures: {why})")
                else:
                    self.set_status("starting", f"not ready, attempt {attempt}: {why}")
            if why is None:
                failed = 0
            time.sleep(max(0.0, spec.period - (time.monotonic() - started)))

    def _unit_state(self) -> str:
        unit = os.environ.get("PODMAN_SYSTEMD_UNIT", "")
        if not unit:
            return ""
        return subprocess.run(["systemctl", "show", "--property=ActiveState", "--value", unit],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL).stdout.strip()

    def live(self, spec: Spec, started_at: float) -> int:
        """The liveness loop; returns once it acted (or the container is gone)."""
        watchdog = self.opts.on_failure == "watchdog"
        usec = os.environ.get("WATCHDOG_USEC", "")
        ping_every = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 else None
        next_at = started_at + spec.initial_delay
        while True:
            # wait for the next attempt; keep pinging while healthy (a long initialDelaySeconds)
            while (left := next_at - time.monotonic()) > 0:
                if ping_every and self.failures == 0:
                    self.notify("WATCHDOG=1")
                time.sleep(min(left, ping_every or left))
            if not _alive(self.monitor):
                return 0
            begun = time.monotonic()
            why = self.attempt(spec)
            threshold = spec.failure_threshold
            if why is None:
                self.failures = 0
                self.set_status("healthy", "healthy", "WATCHDOG=1\n" if watchdog else "")
            elif begun - started_at < self.opts.start_period:
                log(f"liveness probe failed within the start period: {why}")
                self.set_status("starting", f"starting: {why}", "WATCHDOG=1\n" if watchdog else "")
            else:
                self.failures += 1
                log(f"liveness probe failed ({self.failures}/{threshold}): {why}")
                if self.failures < threshold:
                    self.set_status("healthy", f"healthy ({self.failures}/{threshold} failed: {why})")
                elif self.failures > threshold:  # HealthOnFailure=none: acted once, keep reporting
                    self.set_status("unhealthy", f"unhealthy ({self.failures}/{threshold} failed: {why})")
                elif (rc := self.act(spec, why)) >= 0:
                    return rc
            next_at = begun + spec.period

    def act(self, spec: Spec, why: str) -> int:
        threshold = spec.failure_threshold
        status = f"unhealthy ({self.failures}/{threshold} failed: {why})"
        if self.opts.on_failure != "none" and self._unit_state() in ("deactivating", "inactive", "failed"):
            return 0  # the unit is being stopped: the probe failing is expected, not a reason to act
        what = {"watchdog": "systemd stops the unit and restarts it per Restart= (WATCHDOG=trigger)",
                "stop": "stopping the unit", "none": "HealthOnFailure=none: no action"}[self.opts.on_failure]
        log(f"{spec.describe()} failed {self.failures} times in a row (every {spec.period:g}s, timeout "
            f"{spec.timeout:g}s): {why}; {what}")
        if self.opts.on_failure == "watchdog":
            self.set_status("unhealthy", status, "WATCHDOG=trigger\n")
            return 0
        self.set_status("unhealthy", status)
        if self.opts.on_failure == "stop":
            unit = os.environ.get("PODMAN_SYSTEMD_UNIT", "")
            subprocess.run(["systemctl", "stop", "--no-block", unit], stdin=subprocess.DEVNULL)
            return 0
        return -1  # none: keep probing and reporting


def run(opts: Options) -> int:
    prefix = podman_prefix(opts.command)
    notify = Notifier()
    podman_notifies = "--sdnotify=container" in opts.command
    drop = {"WATCHDOG_USEC", "WATCHDOG_PID"} | (set() if podman_notifies else {"NOTIFY_SOCKET"})
    env = {k: v for k, v in os.environ.items() if k not in drop}  # podman must stay silent
    rc = subprocess.run(opts.command, env=env, stdin=subprocess.DEVNULL).returncode
    if rc != 0:
        log(f"podman run failed (exit status {rc})")
        return rc if rc > 0 else 1
    started_at = time.monotonic()
    sup = Supervisor(opts, notify, prefix, cid=_read(opts.cidfile), monitor=int(_read(opts.pidfile)))
    if not opts.startup:
        sup.set_status("starting", "waiting for the readiness probe" if opts.readiness else "starting",
                       f"MAINPID={sup.monitor}\n")
    if any(s.network for s in opts.specs):
        pid = subprocess.run([*prefix, "inspect", "--format={{.State.Pid}}", sup.cid], capture_output=True,
                             text=True, stdin=subprocess.DEVNULL).stdout.strip()
        try:
            fd = os.open(f"/proc/{int(pid)}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            checks.enter_netns(fd)
            os.close(fd)
        except (ValueError, OSError) as e:
            log(f"cannot enter the container's network namespace (pid {pid!r}): {e}")
            return 1
    if opts.startup:
        sup.set_status("starting", "starting: waiting for the startup probe")
        time.sleep(opts.startup.initial_delay)
        if not sup.gate(opts.startup, started_at):
            return 1  # still the main PID: the start fails with our message
        notify(f"MAINPID={sup.monitor}")
    if opts.readiness:
        time.sleep(opts.readiness.initial_delay)
        if not sup.gate(opts.readiness, started_at):
            return 1
    if opts.liveness is None:
        if not podman_notifies:
            passed = "readiness" if opts.readiness else "startup"
            notify(f"READY=1\nSTATUS=ready: the {passed} probe passed")
        return 0
    if not podman_notifies:
        notify("READY=1")
    sup.set_status("healthy" if opts.readiness or opts.startup else "starting",
                   "healthy" if opts.readiness or opts.startup else "starting: waiting for the liveness probe")
    return sup.live(opts.liveness, started_at)


def main(args: argparse.Namespace) -> int:
    try:
        return run(options_from(args))
    except ProbeSetupError as e:
        log(str(e))
        return 2
    except (OSError, ValueError) as e:
        log(f"{type(e).__name__}: {e}")
        return 1
