"""ready-probe's options: one table for both parsers, argparse (`podvisor ready-probe --help`,
the CLI's dispatch) and parse_lean (the re-executed lean process, which must not import
argparse), and the probe specs they make. Plain classes: dataclasses would import inspect and ast
into a process that lives as long as the container."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

ACTIONS = ("none", "watchdog", "stop")


class ProbeSetupError(RuntimeError):
    """Bad ready-probe options: reported with exit status 2, before anything runs."""


class Spec:
    """One probe: what to check, and how often."""

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
_PREFIXES: tuple[tuple[str, str, set[str]], ...] = (
             ("", "readiness", {"failure-threshold"}), ("startup-", "startup", set()),
             ("liveness-", "liveness", {"success-threshold"}))


Row = tuple[str, str, str, object, str, str | None, str]  # option, dest, kind, default, metavar, help, group


def _table() -> list[Row]:
    rows: list[Row] = [
            ("pidfile", "pidfile", "str", None, "PATH", "the monitor's PID file (podman --conmon-pidfile)", ""),
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


def _spec(args: Any, prefix: str, role: str) -> Spec | None:
    def get(name: str, default: Any = None) -> Any:
        return getattr(args, f"{prefix}{name}", default)

    kinds = [k for k in (get("exec_command"), get("http_get"), get("tcp_socket"), get("grpc")) if k]
    flag = "--" + prefix.replace("_", "-")
    if not kinds:
        return None
    if len(kinds) != 1:
        raise ProbeSetupError(f"give exactly one of {flag}exec, {flag}http-get, {flag}tcp-socket, {flag}grpc")
    headers = []
    for h in get("http_headers") or []:
        name, sep, value = h.partition(":")
        if not sep or not name:
            raise ProbeSetupError(f"{flag}http-header {h!r}: expected 'Name: value'")
        headers.append((name, value.strip(" ")))
    s = Spec(role, list(get("exec_command") or []), get("http_get"), headers, get("tcp_socket"),
             float(get("initial_delay")), float(get("period")), float(get("timeout")),
             int(get("success_threshold", 1)), int(get("failure_threshold", 3)), get("grpc"),
             str(get("grpc_service") or ""))
    if s.period <= 0 or s.timeout <= 0 or s.initial_delay < 0 or s.success_threshold < 1 or s.failure_threshold < 0:
        raise ProbeSetupError(f"{role}: period and timeout must be positive, success threshold at least 1")
    if role == "liveness" and s.failure_threshold < 1:
        raise ProbeSetupError("liveness: failure threshold at least 1")
    return s


def options_from(args: Any) -> Options:
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
