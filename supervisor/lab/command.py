"""`podvisor sandbox ...`: the lab's subcommands. supervisor/cli.py hands these over without
importing the lab until one of them runs (the product never imports the lab at import time)."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from supervisor.errors import UserError, run

from .sandbox import DEFAULT_NAME, Bind, Sandbox, SandboxConfig

COMMANDS = ("sandbox",)  # what supervisor/cli.py hands over (it lists the same names)
Subparsers = Any


def _add_sandbox(subparsers: Subparsers) -> None:
    sandbox = subparsers.add_parser(
        "sandbox", help="a throwaway real-systemd machine for tests (systemd-nspawn)",
        description="Boot systemd in a systemd-nspawn container over a RAM copy-on-write view of /.")
    actions = sandbox.add_subparsers(dest="action", metavar="ACTION", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--name", default=None, help="sandbox name (default: podvisor-sandbox)")
    common.add_argument("--state-dir", type=Path, help="state directory (default: /run/podvisor-sandbox/NAME)")

    start = actions.add_parser("start", parents=[common], help="boot it; returns once systemd is up")
    start.add_argument("--storage-dir", type=Path, help="podman storage: a host dir bound at "
                       "/var/lib/containers/storage (default: /var/tmp/podvisor-sandbox/NAME/storage)")
    start.add_argument("--boot-timeout", type=float, default=120.0, metavar="SECONDS")
    start.add_argument("--stop-timeout", type=float, default=30.0, metavar="SECONDS",
                       help="how long stop waits for the orderly halt (recorded for later stops)")
    start.add_argument("--bind", action="append", default=[], metavar="SRC[:DST]", help="extra read-write bind mount")
    start.add_argument("--bind-ro", action="append", default=[], metavar="SRC[:DST]", help="extra read-only bind mount")
    start.add_argument("--keep-storage", action="store_true", help="keep the podman storage dir at stop (image cache)")
    start.add_argument("--conmon-path", help="podman's conmon_path inside "
                       "(default: podvisor-conmon next to this Python, else /usr/bin/conmon)")
    start.set_defaults(handler=_sandbox_start)

    for action, help_text in (("exec", "run CMD inside with this terminal; exits with its status"),
                              ("run", "run CMD inside, capture and then print its output; exits with its status")):
        p = actions.add_parser(action, parents=[common], help=help_text)
        p.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD [ARG...]")
        p.set_defaults(handler=_sandbox_exec if action == "exec" else _sandbox_run)

    stop = actions.add_parser("stop", parents=[common], help="halt and remove everything (no-op when stopped)")
    stop.add_argument("--keep-storage", action="store_true", default=None, help="keep the podman storage dir")
    stop.set_defaults(handler=_sandbox_stop)

    status = actions.add_parser("status", parents=[common],
                                help="print running|starting|stopping|broken|stopped; exit 0|0|0|4|3")
    status.set_defaults(handler=_sandbox_status)


def _sandbox(args: argparse.Namespace, **extra: Any) -> Sandbox:
    return Sandbox(SandboxConfig(name=args.name or DEFAULT_NAME, state_dir=args.state_dir, **extra))


def _sandbox_start(args: argparse.Namespace) -> int:
    binds = tuple(Bind.parse(b) for b in args.bind) + tuple(Bind.parse(b, readonly=True) for b in args.bind_ro)
    sb = _sandbox(args, storage_dir=args.storage_dir, boot_timeout=args.boot_timeout,
                  stop_timeout=args.stop_timeout, binds=binds, keep_storage=args.keep_storage,
                  conmon_path=args.conmon_path)
    report = sb.start()
    print(f"sandbox {sb.name} is {report.system_state} after {report.seconds_to_ready:.2f}s "
          f"(systemd started after {report.seconds_to_systemd:.2f}s)")
    if report.failed_units:
        print(f"failed units: {' '.join(report.failed_units)}", file=sys.stderr)
    return 0


def _command(args: argparse.Namespace) -> list[str]:
    cmd = list(args.command)
    if cmd[:1] == ["--"]:
        cmd = cmd[1:]
    if not cmd:
        raise UserError(f"sandbox {args.action}: no command given")
    return cmd


def _sandbox_exec(args: argparse.Namespace) -> NoReturn:
    argv, env = _sandbox(args).command(_command(args), os.environ.get("TERM"))
    sys.stdout.flush()
    os.execve(argv[0], argv, env)  # become nsenter: signals, the tty and the exit status pass straight through


def _sandbox_run(args: argparse.Namespace) -> int:
    res = _sandbox(args).run(_command(args), timeout=None)
    sys.stdout.write(res.stdout)
    sys.stderr.write(res.stderr)
    return res.returncode if res.returncode >= 0 else 128 - res.returncode


def _sandbox_stop(args: argparse.Namespace) -> int:
    sb = _sandbox(args)
    seconds = sb.stop(keep_storage=args.keep_storage)
    print(f"sandbox {sb.name} stopped in {seconds:.2f}s" if seconds else f"sandbox {sb.name} is not running")
    return 0


def _sandbox_status(args: argparse.Namespace) -> int:
    st = _sandbox(args).status()
    pids = f" nspawn={st.nspawn_pid} systemd={st.systemd_pid}" if st.nspawn_pid else ""
    print(f"{st.state}{pids}{': ' + st.detail if st.detail else ''}")
    return {"running": 0, "starting": 0, "stopping": 0, "stopped": 3}.get(st.state, 4)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="podvisor", description="podvisor's lab commands")
    parser.add_argument("-v", "--verbose", action="store_true", help="more detail on stderr")
    _add_sandbox(parser.add_subparsers(dest="command_name", metavar="COMMAND", required=True))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="podvisor: %(message)s", level=logging.INFO if args.verbose else logging.WARNING)
    return run(args.handler, args, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
