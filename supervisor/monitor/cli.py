"""conmon 2.1.6's command line, as podman 4.3.1 passes it, parsed into a frozen Options."""
from __future__ import annotations

import argparse
import functools
import os
import sys

from .errors import die

LOG_LEVELS = {"error", "fatal", "panic", "warn", "warning", "info", "debug", "trace"}


class LogTarget:
    __slots__ = ("driver", "path")

    def __init__(self, driver: str, path: str = "") -> None:
        self.driver = driver  # "k8s-file" | "journald" | "passthrough" | "none"
        self.path = path

    def __repr__(self) -> str:
        return f"LogTarget({self.driver!r}, {self.path!r})"


class Options:
    """The parsed command line; read-only once built.

    A plain class rather than a dataclass on purpose: importing dataclasses (it pulls in
    inspect) and generating the class cost ~8 ms, paid by every container start.
    """

    cid: str
    cuuid: str
    runtime: str
    bundle: str
    container_pidfile: str
    conmon_pidfile: str | None
    name: str | None
    logs: tuple[LogTarget, ...]
    exec: bool = False
    exec_process_spec: str | None = None
    exec_attach: bool = False
    api_version: bool = False
    stdin: bool = False
    terminal: bool = False
    leave_stdin_open: bool = False
    systemd_cgroup: bool = False
    timeout: int = 0
    persist_dir: str | None = None
    exit_dir: str | None = None
    exit_command: str | None = None
    exit_command_args: tuple[str, ...] = ()
    exit_delay: int = 0
    runtime_args: tuple[str, ...] = ()
    runtime_opts: tuple[str, ...] = ()
    restore: str | None = None
    log_size_max: int = -1
    log_global_size_max: int = -1
    log_tag: str | None = None
    log_level: str = "warning"
    syslog: bool = False
    socket_dir_path: str = "/var/run/crio"
    full_attach: bool = False
    sdnotify_socket: str | None = None
    no_new_keyring: bool = False
    no_pivot: bool = False
    sync: bool = False
    no_sync_log: bool = False
    replace_listen_pid: bool = False
    # podvisor's own: how many rotated k8s-file logs to keep (0 = conmon's truncate)
    log_rotate_count: int = 1
    extra: tuple[str, ...] = ()

    def __init__(self, **values: object) -> None:
        for name, default in _DEFAULTS.items():
            object.__setattr__(self, name, values.pop(name, default))
        if values:
            raise TypeError(f"unknown options: {sorted(values)}")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Options are read-only")

    @property
    def passthrough(self) -> bool:
        return any(t.driver == "passthrough" for t in self.logs)

    @property
    def k8s_file(self) -> str | None:
        for t in self.logs:
            if t.driver == "k8s-file":
                return t.path
        return None



_REQUIRED = ("cid", "cuuid", "runtime", "bundle", "container_pidfile", "conmon_pidfile", "name",
             "logs")
_DEFAULTS: dict[str, object] = {
    **{name: None for name in _REQUIRED},
    **{name: getattr(Options, name) for name in Options.__annotations__ if name not in _REQUIRED},
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # conmon (GLib) reports option errors on stdout with this prefix, exit 1
        sys.stdout.write(f"conmon: option parsing failed: {message}\n")
        sys.stdout.flush()
        raise SystemExit(1)


class _Formatter(argparse.HelpFormatter):
    # a given width spares argparse importing shutil (and with it bz2, lzma, fnmatch) on every
    # start just to size help text nobody asked for
    def __init__(self, prog: str) -> None:
        try:
            width = int(os.environ.get("COLUMNS", "80")) - 2
        except ValueError:
            width = 78
        super().__init__(prog, width=width)


@functools.cache  # one per process: the fork server builds it once for all its monitors
def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="conmon", add_help=True, allow_abbrev=False, formatter_class=_Formatter)
    a = p.add_argument
    a("--api-version", action="store_true")
    a("-c", "--cid")
    a("-u", "--cuuid")
    a("-r", "--runtime")
    a("-b", "--bundle")
    a("-p", "--container-pidfile", "--pidfile", dest="container_pidfile")
    a("-P", "--conmon-pidfile")
    a("-n", "--name")
    a("-l", "--log-path", action="append", default=[])
    a("-i", "--stdin", action="store_true")
    a("-t", "--terminal", action="store_true")
    a("--leave-stdin-open", action="store_true")
    a("-e", "--exec", action="store_true")
    a("--exec-process-spec")
    a("--exec-attach", action="store_true")
    a("-s", "--systemd-cgroup", action="store_true")
    a("-T", "--timeout", type=int, default=0)
    a("-0", "--persist-dir")
    a("--exit-dir")
    a("--exit-command")
    a("--exit-command-arg", action="append", default=[])
    a("--exit-delay", type=int, default=0)
    a("--runtime-arg", action="append", default=[])
    a("--runtime-opt", "--restore-arg", dest="runtime_opt", action="append", default=[])
    a("--restore")
    a("--log-size-max", type=int, default=-1)
    a("--log-global-size-max", type=int, default=-1)
    a("--log-tag")
    a("--log-level", default="warning")
    a("--syslog", action="store_true")
    a("--socket-dir-path", default="/var/run/crio")
    a("--full-attach", action="store_true")
    a("--sdnotify-socket")
    a("--no-new-keyring", action="store_true")
    a("--no-pivot", action="store_true")
    a("--sync", action="store_true")
    a("--no-sync-log", action="store_true")
    a("--replace-listen-pid", action="store_true")
    a("--seccomp-notify-socket")
    a("--seccomp-notify-plugins")
    a("--log-rotate-count", type=int, default=None,
      help="podvisor: rotated k8s-file logs kept on --log-size-max (0: truncate like conmon)")
    # podman passes "--api-version 1": the 1 is a stray positional, tolerated like GLib does
    a("extra", nargs="*")
    return p


def parse_log_target(spec: str) -> LogTarget:
    """`-l` value: DRIVER:PATH or a bare PATH (k8s-file), as conmon parses it."""
    if spec == "":
        die("log-path must not be empty")
    driver, sep, path = spec.partition(":")
    if not sep:
        if spec in ("none", "off", "null"):
            return LogTarget("none")
        if spec in ("journald", "passthrough"):
            return LogTarget(spec)
        if spec == "k8s-file":
            die("k8s-file requires a filename")
        return LogTarget("k8s-file", spec)
    if driver in ("", "k8s-file"):
        if not path:
            die("k8s-file requires a filename")
        return LogTarget("k8s-file", path)
    if driver == "journald":
        return LogTarget("journald")
    if driver in ("none", "off", "null"):
        return LogTarget("none")
    if driver == "passthrough":
        return LogTarget("passthrough")
    die(f"No such log driver {driver}")
    raise AssertionError  # unreachable


def _rotate_count(arg: int | None) -> int:
    """--log-rotate-count, else PODVISOR_LOG_ROTATE_COUNT (reaches us via containers.conf
    conmon_env_vars, since podman builds the monitor's environment itself), else 1."""
    if arg is not None:
        value = str(arg)
    else:
        value = os.environ.get("PODVISOR_LOG_ROTATE_COUNT", "1")
    try:
        count = int(value)
    except ValueError:
        die(f"PODVISOR_LOG_ROTATE_COUNT must be an integer, got {value!r}")
    if count < 0 or count > 1000:
        die(f"log rotate count must be between 0 and 1000, got {count}")
    return count


def _join_values(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """GLib takes the word after an option verbatim, even if it is empty or starts with '-'
    (podman passes `--runtime-arg --log-format=json`); argparse would not, so glue each such
    pair into `--long-name=value`."""
    long_name = {s: next(o for o in a.option_strings if o.startswith("--"))
                 for a in parser._actions if a.option_strings and a.nargs is None
                 for s in a.option_strings}
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in long_name and i + 1 < len(argv):
            out.append(f"{long_name[arg]}={argv[i + 1]}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def parse(argv: list[str]) -> Options:
    parser = _build_parser()
    ns, unknown = parser.parse_known_args(_join_values(parser, argv))
    for word in unknown:
        if word.startswith("-"):
            parser.error(f"Unknown option {word.split('=', 1)[0]}")
    if not ns.cid:
        sys.stderr.write("conmon: Container ID not provided. Use --cid\n")
        raise SystemExit(1)
    if not ns.cuuid and not (ns.exec and not ns.api_version):
        die("Container UUID not provided. Use --cuuid", colon=False)
    if not ns.runtime:
        die("Runtime path not provided. Use --runtime", colon=False)
    if not os.access(ns.runtime, os.X_OK):
        err = os.strerror(2 if not os.path.exists(ns.runtime) else 13)
        die(f"Runtime path {ns.runtime} is not valid {err}")
    if ns.exec and not ns.exec_process_spec:
        die("Exec process spec path not provided. Use --exec-process-spec", colon=False)
    if ns.exec_attach and not ns.exec:
        die("Attach can only be specified with exec", colon=False)
    if ns.exec_attach and not ns.api_version:
        die("Attach can only be specified for a non-legacy exec session", colon=False)
    if ns.seccomp_notify_socket or ns.seccomp_notify_plugins:
        # podman (4.3.1 to 5.4) never passes them; a silent no-op would leave the container's
        # seccomp notifications unanswered
        die("--seccomp-notify-socket/--seccomp-notify-plugins are not supported by podvisor-conmon")
    if ns.restore and ns.exec:
        die("Cannot use 'exec' and 'restore' at the same time", colon=False)
    if not ns.log_path:
        die("Log driver not provided. Use --log-path", colon=False)
    logs = tuple(parse_log_target(s) for s in ns.log_path)
    if ns.log_level.lower() not in LOG_LEVELS:
        die(f"No such log level {ns.log_level}")
    if any(t.driver == "journald" for t in logs) and len(ns.cid) <= 12:
        die("Container ID must be longer than 12 characters", colon=False)
    if ns.log_tag and any(t.driver == "k8s-file" for t in logs) and not any(
        t.driver == "journald" for t in logs
    ):
        die("k8s-file doesn't support --log-tag", colon=False)
    cwd = os.getcwd()
    bundle = ns.bundle or cwd
    return Options(
        cid=ns.cid,
        cuuid=ns.cuuid or "",
        runtime=ns.runtime,
        bundle=bundle,
        container_pidfile=ns.container_pidfile or os.path.join(cwd, f"pidfile-{ns.cid}"),
        conmon_pidfile=ns.conmon_pidfile,
        name=ns.name,
        logs=logs,
        exec=ns.exec,
        exec_process_spec=ns.exec_process_spec,
        exec_attach=ns.exec_attach,
        api_version=ns.api_version,
        stdin=ns.stdin,
        terminal=ns.terminal,
        leave_stdin_open=ns.leave_stdin_open,
        systemd_cgroup=ns.systemd_cgroup,
        timeout=ns.timeout,
        persist_dir=ns.persist_dir,
        exit_dir=ns.exit_dir,
        exit_command=ns.exit_command,
        exit_command_args=tuple(ns.exit_command_arg),
        exit_delay=ns.exit_delay,
        runtime_args=tuple(ns.runtime_arg),
        runtime_opts=tuple(ns.runtime_opt),
        restore=ns.restore,
        log_size_max=ns.log_size_max,
        log_global_size_max=ns.log_global_size_max,
        log_tag=ns.log_tag,
        log_level=ns.log_level.lower(),
        syslog=ns.syslog,
        socket_dir_path=ns.socket_dir_path,
        full_attach=ns.full_attach,
        sdnotify_socket=ns.sdnotify_socket,
        no_new_keyring=ns.no_new_keyring,
        no_pivot=ns.no_pivot,
        sync=ns.sync,
        no_sync_log=ns.no_sync_log,
        replace_listen_pid=ns.replace_listen_pid,
        log_rotate_count=_rotate_count(ns.log_rotate_count),
        extra=tuple(ns.extra),
    )

