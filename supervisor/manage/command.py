"""The management subcommands of `podvisor`: ps (list), status, logs, top, start, stop, restart.

`register(subparsers)` is what supervisor/cli.py calls. Handlers import their work modules
lazily (pystemd, psutil); their ManageError and SystemdError are UserErrors, reported by
supervisor.errors.run like every other subcommand's.
"""
from __future__ import annotations

import argparse
import functools
import math
import os
import sys
from collections.abc import Callable
from typing import Any

from ..errors import run


def _number(value: str) -> float:
    try:
        f = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not math.isfinite(f):
        raise argparse.ArgumentTypeError(f"{value!r} is not a finite number")
    return f


def _positive(value: str) -> float:
    f = _number(value)
    if f <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return f


def _non_negative(value: str) -> float:
    f = _number(value)
    if f < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return f


def _since(value: str) -> float:
    """Checked while parsing, before anything connects to systemd."""
    from .errors import ManageError
    from .journal import parse_since

    try:
        return parse_since(value)
    except ManageError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--since: ")) from None


def _count(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return n


def _user_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--user", action="store_true",
                   help="your own pods, from your service manager (systemd --user) over its D-Bus")


def register(subparsers: Any) -> None:
    _add_views(subparsers)
    _add_control(subparsers)


def _add_views(subparsers: Any) -> None:
    ps = subparsers.add_parser(
        "ps", aliases=["list"], help="every installed pod: unit states, readiness, restarts, PIDs, usage, ports",
        description="List the pods podvisor installed and their containers, from systemd (D-Bus), podman and /proc.")
    ps.add_argument("pods", nargs="*", default=[], metavar="POD", help="only these pods")
    ps.add_argument("--json", action="store_true", help="machine-readable output")
    ps.add_argument("--cpu-interval", type=_non_negative, default=0.25, metavar="SECONDS",
                    help="how long CPU use is measured (default 0.25; 0: no CPU percentages)")
    _user_option(ps)
    ps.set_defaults(handler=_ps)

    st = subparsers.add_parser("status", help="a pod and its containers in detail, last failure, OOM, log lines",
                               description="Show one pod in detail: every unit's state and readiness, PIDs, "
                                           "usage, the last failure and OOM kill, and the last journal lines.")
    st.add_argument("pod", metavar="POD")
    _user_option(st)
    st.add_argument("-n", "--lines", type=_count, default=10, help="journal lines to show (default 10)")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(handler=_status)

    lg = subparsers.add_parser("logs", help="the containers' output, interleaved by time",
                               description="Print the output of a pod's containers (or of the CONTAINERs named) "
                                           "from the journal, or from the k8s-file log where that driver is used.")
    lg.add_argument("pod", metavar="POD")
    # a default makes argparse treat it as optional in its usage errors too
    lg.add_argument("containers", nargs="*", default=[], metavar="CONTAINER",
                    help="only these containers (default: all of the pod's)")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    lg.add_argument("--since", type=_since, metavar="TIME",
                    help="10m, 2h, \"30 min ago\", today, \"2026-11-28 10:00\", @EPOCH")
    lg.add_argument("-n", "--tail", type=_count, default=None, metavar="N", help="only the last N lines")
    lg.add_argument("--json", action="store_true", help="one JSON object per line")
    _user_option(lg)
    lg.set_defaults(handler=_logs)

    top = subparsers.add_parser("top", help="each container's process tree with CPU and memory, refreshed",
                                description="Show the process tree of every container of POD with CPU and memory.")
    top.add_argument("pod", metavar="POD")
    top.add_argument("-d", "--delay", type=_positive, default=2.0, metavar="SECONDS",
                     help="refresh interval (default 2)")
    top.add_argument("-n", "--iterations", type=_count, default=None, metavar="N",
                     help="stop after N frames (default: until Ctrl-C on a terminal, else 1)")
    top.add_argument("--json", action="store_true", help="one JSON object per frame")
    _user_option(top)
    top.set_defaults(handler=_top)


def _add_control(subparsers: Any) -> None:
    for verb, text in (("start", "start a pod; returns when every container is ready"),
                       ("stop", "stop a pod and all its containers"),
                       ("restart", "stop, then start a pod; returns when every container is ready")):
        p = subparsers.add_parser(verb, help=text, description=f"{text[0].upper()}{text[1:]} (a systemd job on "
                                  "pod-POD.service over D-Bus, watched until it ends).")
        p.add_argument("pod", metavar="POD")
        p.add_argument("--timeout", type=_positive, default=None, metavar="SECONDS",
                       help="stop waiting after this long (the job itself goes on)")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress line")
        _user_option(p)
        p.set_defaults(handler=functools.partial(_control, verb))

    rl = subparsers.add_parser("reload", help="reload a pod's containers (their ExecReload=: a signal or a command)",
                               description="Run `systemctl reload` on pod-POD@CONTAINER.service (every container "
                                           "of POD that can reload, if none is named) and wait for it.")
    rl.add_argument("pod", metavar="POD")
    rl.add_argument("containers", nargs="*", metavar="CONTAINER")
    rl.add_argument("--timeout", type=_positive, default=90.0, metavar="SECONDS", help="default 90")
    _user_option(rl)
    rl.set_defaults(handler=_reload)


def _reload(args: argparse.Namespace) -> int:
    from ..systemd import Systemd
    from . import reload

    with Systemd.connect(args.user) as sd:
        done = reload.run(sd, args.pod, args.containers, timeout=args.timeout)
    print(f"reloaded {' '.join(done)}")
    return 0


def _ps(args: argparse.Namespace) -> int:
    from ..systemd import Systemd
    from . import ps
    from .fmt import Palette
    from .inventory import collect

    with Systemd.connect(args.user) as sd:
        inv = collect(sd, args.pods or None, cpu_interval=max(0.0, args.cpu_interval))
    if args.json:
        print(ps.to_json(inv))
        return 0
    print(ps.to_table(inv, Palette.for_stream(sys.stdout), inv.taken_at))
    for w in inv.warnings:
        print(f"podvisor: warning: {w}", file=sys.stderr)
    return 0


def _status(args: argparse.Namespace) -> int:
    from ..systemd import Systemd
    from . import status
    from .fmt import Palette

    with Systemd.connect(args.user) as sd:
        details = status.gather(sd, args.pod, args.lines)
    print(status.to_json(details) if args.json else status.to_text(details, Palette.for_stream(sys.stdout)))
    return 0


def _log_formatter(args: argparse.Namespace, names: list[str]) -> Callable[[Any], str]:
    import json
    from datetime import datetime

    from .fmt import STREAM_COLOURS, Palette

    if args.json:
        def as_json(line: Any) -> str:
            stamp = datetime.fromtimestamp(line.time).astimezone().isoformat(timespec="microseconds")
            return json.dumps({"time": stamp, "container": line.container, "stream": line.stream, "message": line.text})
        return as_json
    pal = Palette.for_stream(sys.stdout)
    width = max((len(n) for n in names), default=0)
    colours = {n: STREAM_COLOURS[i % len(STREAM_COLOURS)] for i, n in enumerate(names)}

    def as_text(line: Any) -> str:
        stamp = datetime.fromtimestamp(line.time).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        sep = {"stderr": pal("|", "red"), "monitor": pal("!", "yellow")}.get(line.stream, "|")
        name = pal(line.container.ljust(width), colours.get(line.container, ""))
        return f"{pal(stamp, 'dim')} {name} {sep} {line.text}"
    return as_text


def _logs(args: argparse.Namespace) -> int:
    from ..systemd import Systemd
    from . import logs

    since = args.since  # an epoch time already (see _since)
    with Systemd.connect(args.user) as sd:
        targets = logs.targets(sd, args.pod, args.containers)
    if os.geteuid() != 0:
        print("podvisor: warning: not root: the journal shows only what this user may read "
              "(members of the systemd-journal group see everything)", file=sys.stderr)
    fmt_line = _log_formatter(args, [t.container for t in targets])
    if not args.follow:
        for line in logs.read_all(targets, since, args.tail):
            sys.stdout.write(fmt_line(line) + "\n")
        sys.stdout.flush()
        return 0

    def emit(line: Any) -> None:
        sys.stdout.write(fmt_line(line) + "\n")
        sys.stdout.flush()

    logs.follow(targets, emit, since, args.tail)
    return 0


def _top(args: argparse.Namespace) -> int:
    from ..systemd import Systemd
    from . import top

    iterations = args.iterations
    if iterations is None and (args.json or not sys.stdout.isatty()):
        iterations = 1
    with Systemd.connect(args.user) as sd:
        return top.run(sd, args.pod, delay=args.delay, iterations=iterations or None, as_json=args.json)


def _control(verb: str, args: argparse.Namespace) -> int:
    from ..systemd import Systemd
    from . import control
    from .fmt import Palette

    with Systemd.connect(args.user) as sd:
        outcome = control.run(sd, args.pod, verb, timeout=args.timeout, out=sys.stderr, quiet=args.quiet)
    print(control.report(args.pod, verb, outcome, Palette.for_stream(sys.stdout)))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m supervisor.manage.command SUBCOMMAND ...`: these subcommands alone."""
    parser = argparse.ArgumentParser(prog="podvisor")
    register(parser.add_subparsers(dest="command_name", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    return run(args.handler, args)


if __name__ == "__main__":
    sys.exit(main())
