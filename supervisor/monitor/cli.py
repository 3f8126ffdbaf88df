"""conmon 2.1.6's command line, as podman 4.3.1 passes it, parsed into a frozen Options."""
from __future__ import annotations

import os
import sys

from .errors import die, set_level
from .process import getenv

TYPE_CHECKING = False  # typing costs ~2 ms of every start; only type checkers need it
if TYPE_CHECKING:
    from typing import Any, NoReturn

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


# conmon's options as GLib parses them: (long names, short name, attribute, kind). Kinds: flag,
# str (last one wins), int (C int, strtol base 0), list (repeatable, in order). A table and a loop
# rather than argparse: argparse builds hundreds of objects per parse, and in a monitor forked by
# the fork server every object touched copies a page the server shares (~0.3 MB per monitor).
FLAG, STR, INT, LIST = 0, 1, 2, 3
_TABLE: tuple[tuple[tuple[str, ...], str, str, int], ...] = (
    (("api-version",), "", "api_version", FLAG),
    (("cid",), "c", "cid", STR),
    (("cuuid",), "u", "cuuid", STR),
    (("runtime",), "r", "runtime", STR),
    (("bundle",), "b", "bundle", STR),
    (("container-pidfile", "pidfile"), "p", "container_pidfile", STR),
    (("conmon-pidfile",), "P", "conmon_pidfile", STR),
    (("name",), "n", "name", STR),
    (("log-path",), "l", "log_path", LIST),
    (("stdin",), "i", "stdin", FLAG),
    (("terminal",), "t", "terminal", FLAG),
    (("leave-stdin-open",), "", "leave_stdin_open", FLAG),
    (("exec",), "e", "exec", FLAG),
    (("exec-process-spec",), "", "exec_process_spec", STR),
    (("exec-attach",), "", "exec_attach", FLAG),
    (("systemd-cgroup",), "s", "systemd_cgroup", FLAG),
    (("timeout",), "T", "timeout", INT),
    (("persist-dir",), "0", "persist_dir", STR),
    (("exit-dir",), "", "exit_dir", STR),
    (("exit-command",), "", "exit_command", STR),
    (("exit-command-arg",), "", "exit_command_args", LIST),
    (("exit-delay",), "", "exit_delay", INT),
    (("runtime-arg",), "", "runtime_args", LIST),
    (("runtime-opt", "restore-arg"), "", "runtime_opts", LIST),
    (("restore",), "", "restore", STR),
    (("log-size-max",), "", "log_size_max", INT),
    (("log-global-size-max",), "", "log_global_size_max", INT),
    (("log-tag",), "", "log_tag", STR),
    (("log-level",), "", "log_level", STR),
    (("syslog",), "", "syslog", FLAG),
    (("socket-dir-path",), "", "socket_dir_path", STR),
    (("full-attach",), "", "full_attach", FLAG),
    (("sdnotify-socket",), "", "sdnotify_socket", STR),
    (("no-new-keyring",), "", "no_new_keyring", FLAG),
    (("no-pivot",), "", "no_pivot", FLAG),
    (("sync",), "", "sync", FLAG),
    (("no-sync-log",), "", "no_sync_log", FLAG),
    (("replace-listen-pid",), "", "replace_listen_pid", FLAG),
    (("seccomp-notify-socket",), "", "seccomp_notify_socket", STR),
    (("seccomp-notify-plugins",), "", "seccomp_notify_plugins", STR),
    # podvisor's own: rotated k8s-file logs kept on --log-size-max (0: truncate like conmon)
    (("log-rotate-count",), "", "log_rotate_count", INT),
)
_LONG = {name: (attr, kind) for names, _, attr, kind in _TABLE for name in names}
_SHORT = {short: (attr, kind) for _, short, attr, kind in _TABLE if short}
INT_MIN, INT_MAX = -(1 << 31), (1 << 31) - 1


def _fail(message: str) -> NoReturn:
    # conmon (GLib) reports option errors on stdout with this prefix, exit 1
    sys.stdout.write(f"conmon: option parsing failed: {message}\n")
    sys.stdout.flush()
    raise SystemExit(1)


def _help() -> NoReturn:
    lines = ["Usage:", "  conmon [OPTION…] - conmon utility (podvisor-conmon)", "", "Options:"]
    for names, short, _, kind in _TABLE:
        flags = ", ".join([*([f"-{short}"] if short else []), *(f"--{n}" for n in names)])
        lines.append(f"  {flags}{'' if kind == FLAG else ' VALUE'}")
    lines.append("  --version")
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
    raise SystemExit(0)


def _int(value: str, option: str) -> int:
    """A C int as GLib reads it: strtol(base 0) over the whole word, leading blanks allowed."""
    text = value.lstrip(" \t\n\r\f\v")
    sign = -1 if text[:1] == "-" else 1
    digits = text[1:] if text[:1] in "+-" and text else text
    base = 16 if digits[:2].lower() == "0x" else 8 if digits[:1] == "0" and len(digits) > 1 else 10
    try:
        number = sign * int(digits[2:] if base == 16 else digits, base)
    except ValueError:
        _fail(f"Cannot parse integer value “{value}” for {option}")
    if not INT_MIN <= number <= INT_MAX:
        _fail(f"Integer value “{value}” for {option} out of range")
    return number


def _store(values: dict[str, Any], attr: str, kind: int, value: str, option: str) -> None:
    if kind == INT:
        values[attr] = _int(value, option)
    elif kind == LIST:
        values.setdefault(attr, [])
        lst = values[attr]
        assert isinstance(lst, list)
        lst.append(value)
    else:
        values[attr] = value


def _scan(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """argv -> (attribute -> value, positional words). GLib's rules: an option's value is the
    next word verbatim (even empty or starting with '-'; podman passes `--runtime-arg --log`)
    or follows `--long=`; short flags group (`-it`); `--` ends the options."""
    values: dict[str, Any] = {}
    rest: list[str] = []
    i, n = 0, len(argv)
    while i < n:
        word = argv[i]
        i += 1
        if word == "--":
            rest += argv[i:]
            break
        if word.startswith("--"):
            name, eq, value = word[2:].partition("=")
            if name in ("help", "help-all"):
                _help()
            if name not in _LONG:
                _fail(f"Unknown option {word}")
            attr, kind = _LONG[name]
            if kind == FLAG:
                values[attr] = True
                continue
            if not eq:
                if i == n:
                    _fail(f"Missing argument for {word}")
                value = argv[i]
                i += 1
            _store(values, attr, kind, value, f"--{name}")
        elif word.startswith("-") and len(word) > 1:
            group = word[1:]
            for k, ch in enumerate(group):
                if ch in "h?":
                    _help()
                if ch not in _SHORT:
                    _fail(f"Unknown option {word}")
                attr, kind = _SHORT[ch]
                if kind == FLAG:
                    values[attr] = True
                    continue
                if k != len(group) - 1 or i == n:
                    _fail(f"Missing argument for -{ch}")
                _store(values, attr, kind, argv[i], f"-{ch}")
                i += 1
        else:
            rest.append(word)
    return values, rest


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
        env = getenv("PODVISOR_LOG_ROTATE_COUNT")
        value = "1" if env is None else env
    try:
        count = int(value)
    except ValueError:
        die(f"PODVISOR_LOG_ROTATE_COUNT must be an integer, got {value!r}")
    if count < 0 or count > 1000:
        die(f"log rotate count must be between 0 and 1000, got {count}")
    return count


def _validate(v: dict[str, Any]) -> tuple[LogTarget, ...]:
    """conmon's checks, in conmon's order and words (podman shows them to users)."""
    if not v.get("cid"):
        sys.stderr.write("conmon: Container ID not provided. Use --cid\n")
        raise SystemExit(1)
    if not v.get("cuuid") and not (v.get("exec") and not v.get("api_version")):
        die("Container UUID not provided. Use --cuuid", colon=False)
    runtime = v.get("runtime")
    if not runtime:
        die("Runtime path not provided. Use --runtime", colon=False)
    if not os.access(runtime, os.X_OK):
        err = os.strerror(2 if not os.path.exists(runtime) else 13)
        die(f"Runtime path {runtime} is not valid {err}")
    if v.get("exec") and not v.get("exec_process_spec"):
        die("Exec process spec path not provided. Use --exec-process-spec", colon=False)
    if v.get("exec_attach") and not v.get("exec"):
        die("Attach can only be specified with exec", colon=False)
    if v.get("exec_attach") and not v.get("api_version"):
        die("Attach can only be specified for a non-legacy exec session", colon=False)
    if v.get("seccomp_notify_socket") or v.get("seccomp_notify_plugins"):
        # podman (4.3.1 to 5.4) never passes them; a silent no-op would leave the container's
        # seccomp notifications unanswered
        die("--seccomp-notify-socket/--seccomp-notify-plugins are not supported by podvisor-conmon")
    if v.get("restore") and v.get("exec"):
        die("Cannot use 'exec' and 'restore' at the same time", colon=False)
    if not v.get("log_path"):
        die("Log driver not provided. Use --log-path", colon=False)
    logs = tuple(parse_log_target(s) for s in v["log_path"])
    level = v.get("log_level", Options.log_level)
    if level.lower() not in LOG_LEVELS:
        die(f"No such log level {level}")
    drivers = {t.driver for t in logs}
    if "journald" in drivers and len(v["cid"]) <= 12:
        die("Container ID must be longer than 12 characters", colon=False)
    if v.get("log_tag") and "k8s-file" in drivers and "journald" not in drivers:
        die("k8s-file doesn't support --log-tag", colon=False)
    return logs


def parse(argv: list[str]) -> Options:
    values, extra = _scan(argv)
    logs = _validate(values)
    for unused in ("log_path", "seccomp_notify_socket", "seccomp_notify_plugins"):
        values.pop(unused, None)
    for name in ("exit_command_args", "runtime_args", "runtime_opts"):
        if name in values:
            values[name] = tuple(values[name])
    cwd = os.getcwd()
    values["bundle"] = values.get("bundle") or cwd
    values["cuuid"] = values.get("cuuid") or ""
    values["container_pidfile"] = (values.get("container_pidfile")
                                   or os.path.join(cwd, f"pidfile-{values['cid']}"))
    values["log_level"] = values.get("log_level", Options.log_level).lower()
    values["log_rotate_count"] = _rotate_count(values.get("log_rotate_count"))
    set_level(values["log_level"])
    return Options(logs=logs, extra=tuple(extra), **values)
