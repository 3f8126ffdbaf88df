"""`podvisor`: the management command, the top layer. Thin on purpose: parse, call one module, print.

Adding a subcommand: write ``_add_<name>(subparsers)`` that builds its parser and sets
``handler`` (a function ``Namespace -> int``), and list it in ``_COMMANDS``. Import the module
that does the work inside the handler, so one subcommand's dependencies (jinja2, pystemd, ...)
never slow down or break another. Expected failures are supervisor.errors.UserError (each package
has its subclasses): ``podvisor: error: ...`` and exit 1.

No traceback ever reaches a user: anything unexpected becomes ``podvisor: error: internal
error: ...`` and exit 70 (EX_SOFTWARE); ``-v`` adds the traceback for a bug report. Both are
supervisor.errors.run, the one reporting wrapper of every subcommand.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from supervisor.errors import EXIT_ERROR, EXIT_INTERNAL, Handler, run
from supervisor.generator.command import register as _add_generator
from supervisor.manage.command import register as _add_manage
from supervisor.probes.command import register as _add_probes

__all__ = ["EXIT_ERROR", "EXIT_INTERNAL", "Handler", "build_parser", "main"]

Subparsers = Any  # argparse's _SubParsersAction is private; nothing useful to type here
LAB_COMMANDS = ("sandbox",)  # supervisor.lab.command.COMMANDS (tests/unit/test_architecture.py checks)


def _add_lab(subparsers: Subparsers) -> None:
    """Listed in the help; main() hands these to supervisor.lab.command, imported only then."""
    for name in LAB_COMMANDS:
        p = subparsers.add_parser(name, add_help=False, help="(the lab) a throwaway real-systemd machine for tests "
                                  "(systemd-nspawn); see podvisor sandbox --help")
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(handler=lambda args: _lab([args.command_name, *args.rest]))


def _lab(argv: list[str]) -> int:
    # the one import of the lab by the product, and only when a lab command runs
    from supervisor.lab import command

    return command.main(argv)


# --------------------------------------------------------------------------- wiring

_COMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    _add_lab,
    _add_generator,
    _add_probes,
    _add_manage,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="podvisor", description="systemd-integrated pod supervisor")
    parser.add_argument("-v", "--verbose", action="store_true", help="more detail on stderr")
    subparsers = parser.add_subparsers(dest="command_name", metavar="COMMAND", required=True)
    for add in _COMMANDS:
        add(subparsers)
    return parser


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # an exception, unlike the default action, lets a half-done start clean up after itself
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        if next((a for a in args if a not in ("-v", "--verbose")), None) in LAB_COMMANDS:
            return _lab(args)  # the lab parses its own options (and -h)
        ns = build_parser().parse_args(args)
        logging.basicConfig(format="podvisor: %(message)s", level=logging.INFO if ns.verbose else logging.WARNING)
        return run(ns.handler, ns, verbose=ns.verbose)
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
