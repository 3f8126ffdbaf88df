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
   max(period, timeout) x threshold + timeout, so if this process itself hangs or dies the pings stop and
   systemd acts anyway.

One process, no threads: every attempt is bounded by its timeout (checks.py), so a hung
container never holds up the pings of a healthy one. HTTP/TCP probes run in the container's
network namespace, which this process joins once. ``STATUS=`` says healthy, starting or
``unhealthy (3/3 failed: HTTP 500 from /healthz)``; ``--state-file`` keeps the last results
with their times for `podvisor status`.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from . import checks

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

KEEP_RESULTS = 10  # in the state file
ACTIONS = ("none", "watchdog", "stop")
LEAN_ENV = "PODVISOR_PROBE_LEAN"  # set in the re-executed lean process (see main)


def _enter_rootless_userns(pid: int) -> None:
    """Rootless: join podman's user namespace (that owns the container's network namespace).
    The podman processes started afterwards (exec probes, stop) must know they are already
    inside it, as podman tells its own re-executed children."""
    uid, gid = os.getuid(), os.getgid()
    if checks.enter_userns_of(pid):
        os.environ.update({"_CONTAINERS_USERNS_CONFIGURED": "init", "_CONTAINERS_ROOTLESS_UID": str(uid),
                           "_CONTAINERS_ROOTLESS_GID": str(gid)})


def _systemctl() -> list[str]:
    """systemctl for the manager running this unit: a user manager sets MANAGERPID (systemd.exec(5))."""
    return ["systemctl", "--user"] if "MANAGERPID" in os.environ else ["systemctl"]


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


class Spec:
    """One probe: what to check, and how often. (Plain classes: dataclasses would import inspect
    and ast into a process that lives as long as the container.)"""

    def __init__(self, role: str, exec_command: list[str], http_get: str | None, http_headers: list[tuple[str, str]],
                 tcp_socket: str | None, initial_delay: float = 0.0, period: float = 10.0, timeout: float = 1.0,
                 success_threshold: int = 1, failure_threshold: int = 3, grpc: str | None = None,
                 grpc_service: str = "") -> None:
        self.role = role  # readiness | startup | liveness
        self.exec_command = exec_command
        self.http_get = http_get
        self.http_headers = http_headers
        self.tcp_socket = tcp_socket
        self.initial_delay = initial_delay
        self.period = period
        self.timeout = timeout
        self.success_threshold = success_threshold
        self.failure_threshold = failure_threshold  # 0: unlimited (startup: until TimeoutStartSec=)
        self.grpc = grpc
        self.grpc_service = grpc_service

    @property
    def network(self) -> bool:
        return not self.exec_command

    def describe(self) -> str:
        what = " ".join(self.exec_command) if self.exec_command else self.http_get or \
            (f"grpc {self.grpc}" if self.grpc else f"tcp {self.tcp_socket}")
        return f"{self.role} probe ({what})"


class Options:
    def __init__(self, pidfile: str, cidfile: str, readiness: Spec | None, command: list[str],
                 startup: Spec | None = None, liveness: Spec | None = None, on_failure: str = "watchdog",
                 start_period: float = 0.0, state_file: str | None = None) -> None:
        self.pidfile = pidfile
        self.cidfile = cidfile
        self.readiness = readiness
        self.command = command
        self.startup = startup
        self.liveness = liveness
        self.on_failure = on_failure
        self.start_period = start_period
        self.state_file = state_file

    @property
    def specs(self) -> list[Spec]:
        return [s for s in (self.startup, self.readiness, self.liveness) if s is not None]


# --------------------------------------------------------------------------- options
# One table for both parsers: argparse (`podvisor ready-probe --help`, the CLI's dispatch) and
# parse_lean (the re-executed process, which must not import argparse).
# option -> (dest, kind, default, metavar, help); kinds: str, float, int, list (append), choice

_PROBE_OPTIONS = (
    ("initial-delay", "initial_delay", "float", 0.0, "SECONDS", None),
    ("period", "period", "float", 10.0, "SECONDS", None),
    ("timeout", "timeout", "float", 1.0, "SECONDS", "per attempt"),
    ("success-threshold", "success_threshold", "int", 1, "N", None),
    ("failure-threshold", "failure_threshold", "int", 3, "N", None),
    ("exec", "exec_command", "list", None, "WORD", "exec probe: one argv word per option, run with podman exec"),
    ("http-get", "http_get", "str", None, "URL", "HTTP probe: 200-399 is success"),
    ("http-header", "http_headers", "list", None, "NAME: VALUE", None),
    ("tcp-socket", "tcp_socket", "str", None, "HOST:PORT", "TCP probe: a connection is success"),
    ("grpc", "grpc", "str", None, "HOST:PORT", "gRPC probe (grpc.health.v1.Health/Check, cleartext): SERVING passes"),
    ("grpc-service", "grpc_service", "str", "", "NAME", None),
)
_PREFIXES = (("", "readiness", {"failure-threshold"}), ("startup-", "startup", set()),
             ("liveness-", "liveness", {"success-threshold"}))


def _table() -> list[tuple[str, str, str, object, str, str | None, str]]:
    rows = [("pidfile", "pidfile", "str", None, "PATH", "the monitor's PID file (podman --conmon-pidfile)", ""),
            ("cidfile", "cidfile", "str", None, "PATH", "the container ID file (podman --cidfile)", ""),
            ("state-file", "state_file", "str", None, "PATH", "keep the last probe results here (JSON)", ""),
            ("on-failure", "on_failure", "choice", "watchdog", "ACTION",
             "when the liveness probe fails failure-threshold times in a row: none, watchdog (default), stop", ""),
            ("liveness-start-period", "liveness_start_period", "float", 0.0, "SECONDS",
             "liveness failures this soon after the start do not count (Quadlet HealthStartPeriod)", "")]
    for prefix, group, skip in _PREFIXES:
        for name, dest, kind, default, metavar, help in _PROBE_OPTIONS:
            if name not in skip:
                rows.append((prefix + name, prefix.replace("-", "_") + dest, kind, default, metavar, help, group))
    return rows


def add_arguments(p: argparse.ArgumentParser) -> None:
    groups = {g: p.add_argument_group(f"{g} probe") for _, g, _ in _PREFIXES}
    for name, dest, kind, default, metavar, help, group in _table():
        target = groups[group] if group else p
        kw: dict[str, object] = {"dest": dest, "metavar": metavar, "help": help}
        if kind == "list":
            kw.update(action="append", default=[])
        elif kind == "choice":
            kw.update(choices=ACTIONS, default=default)
        else:
            kw.update(type={"float": float, "int": int, "str": str}[kind], default=default)
        if name in ("pidfile", "cidfile"):
            kw["required"] = True
        target.add_argument(f"--{name}", **kw)  # type: ignore[arg-type]
    p.add_argument("command", nargs="...", metavar="-- PODMAN [GLOBAL...] run ...")


class _Namespace:
    pass


def parse_lean(argv: list[str]) -> _Namespace:
    """`--name=value ... -- command` without argparse (the generator writes every option so)."""
    table = {row[0]: row for row in _table()}
    ns = _Namespace()
    for _, dest, kind, default, *_ in table.values():
        setattr(ns, dest, [] if kind == "list" else default)
    i = 0
    while i < len(argv) and argv[i] != "--":
        name, sep, value = argv[i].removeprefix("--").partition("=")
        row = table.get(name) if argv[i].startswith("--") else None
        if row is not None and not sep and i + 1 < len(argv) and argv[i + 1] != "--":
            i, sep, value = i + 1, "=", argv[i + 1]  # --name value
        if row is None or not sep:
            raise ProbeSetupError(f"{argv[i]!r}: expected --OPTION=VALUE (see podvisor ready-probe --help)")
        dest, kind = row[1], row[2]
        try:
            if kind == "list":
                getattr(ns, dest).append(value)
            elif kind in ("float", "int"):
                setattr(ns, dest, float(value) if kind == "float" else int(value))
            elif kind == "choice" and value not in ACTIONS:
                raise ValueError(value)
            else:
                setattr(ns, dest, value)
        except ValueError:
            raise ProbeSetupError(f"--{name}: invalid value {value!r}") from None
        i += 1
    for required in ("pidfile", "cidfile"):
        if getattr(ns, required) is None:
            raise ProbeSetupError(f"--{required} is required")
    ns.command = argv[i:]  # type: ignore[attr-defined]
    return ns


def _spec(args: object, prefix: str, role: str) -> Spec | None:
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


def options_from(args: object) -> Options:
    command = list(args.command)  # type: ignore[attr-defined]
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise ProbeSetupError("no podman command after --")
    a: object = args
    opts = Options(a.pidfile, a.cidfile, _spec(a, "", "readiness"), command,  # type: ignore[attr-defined]
                   startup=_spec(a, "startup_", "startup"), liveness=_spec(a, "liveness_", "liveness"),
                   on_failure=a.on_failure, start_period=a.liveness_start_period,  # type: ignore[attr-defined]
                   state_file=a.state_file)  # type: ignore[attr-defined]
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


LISTEN_VARS = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


def listen_fds() -> tuple[int, ...]:
    """The socket-activation fds systemd passed us (3, 4, ...), for `podman run` only."""
    try:
        n = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return ()
    return tuple(range(3, 3 + n))


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


# kept for callers of the first version
http_probe = checks.http_check
tcp_probe = checks.tcp_check
exec_probe = checks.exec_check


class Supervisor:
    """The probe loop's state: what systemd and the state file are told."""

    def __init__(self, opts: Options, notify: Notifier, prefix: list[str], cid: str = "", monitor: int = 0) -> None:
        self.opts = opts
        self.notify = notify
        self.prefix = prefix
        self.cid = cid
        self.monitor = monitor
        self.results: list[dict[str, object]] = []
        self.health = "starting"
        self.status = ""
        self.failures = 0

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
        return subprocess.run([*_systemctl(), "show", "--property=ActiveState", "--value", unit],
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
            subprocess.run([*_systemctl(), "stop", "--no-block", unit], stdin=subprocess.DEVNULL)
            return 0
        return -1  # none: keep probing and reporting


def run(opts: Options) -> int:
    prefix = podman_prefix(opts.command)
    notify = Notifier()
    podman_notifies = "--sdnotify=container" in opts.command
    drop = {"WATCHDOG_USEC", "WATCHDOG_PID", LEAN_ENV} | (set() if podman_notifies else {"NOTIFY_SOCKET"})
    env = {k: v for k, v in os.environ.items() if k not in drop}  # podman must stay silent
    # systemd's listening sockets (socket activation) go on to the container, as they would
    # without us in between; podman reads only LISTEN_FDS, LISTEN_PID is 1 in the container
    sockets = listen_fds()
    rc = subprocess.run(opts.command, env=env, stdin=subprocess.DEVNULL, pass_fds=sockets).returncode
    for fd in sockets:
        try:
            os.close(fd)  # the container has them now; the probes' podman calls must not
        except OSError:
            pass
    for name in LISTEN_VARS:  # nor must an exec session get the container's listening sockets
        os.environ.pop(name, None)
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
            if os.geteuid() != 0:
                _enter_rootless_userns(int(pid))
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


# the lean process: no site packages, nothing but this package on the path (as the monitor starts)
_LEAN = "import sys; sys.path.insert(0, sys.argv.pop(1)); from supervisor.generator.probe import lean; sys.exit(lean())"


def _package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(args: argparse.Namespace) -> int:
    """The `podvisor ready-probe` handler. The probe lives as long as its container, so instead of
    keeping the CLI's imports (argparse, logging, every subcommand's module) it re-executes itself
    as a lean interpreter (-I -S) that imports only this module and checks.py."""
    try:
        options_from(args)  # report bad options here, with the CLI's parser
        argv = sys.argv[sys.argv.index("ready-probe") + 1:]
    except ProbeSetupError as e:
        log(str(e))
        return 2
    except ValueError:  # not called as `... ready-probe ...`: run in this process
        argv = None
    if argv is not None and os.environ.get(LEAN_ENV) != "0":
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, "-I", "-S", "-c", _LEAN, _package_root(), *argv],
                  {**os.environ, LEAN_ENV: "1"})
    return _guarded(lambda: run(options_from(args)))


def lean() -> int:
    return _guarded(lambda: run(options_from(parse_lean(sys.argv[1:]))))


def _guarded(fn: Callable[[], int]) -> int:
    try:
        return fn()
    except ProbeSetupError as e:
        log(str(e))
        return 2
    except (OSError, ValueError) as e:
        log(f"{type(e).__name__}: {e}")
        return 1
