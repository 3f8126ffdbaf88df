"""The one user-facing error type of podvisor, and the one way every `podvisor` subcommand reports.

Each package raises its own subclass of UserError (SystemdError, ManageError, GenerateError, ...):
its message is for humans and names the problem. `run()` turns it into ``podvisor: error: ...``
and exit status 1. Anything else is a bug of ours: ``podvisor: error: internal error: ...`` and
exit 70 (EX_SOFTWARE), the traceback only with -v. This module is the bottom layer: stdlib only,
imported by anything, importing nothing of podvisor.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

EXIT_ERROR = 1  # argparse itself exits with 2 on usage errors
EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug of ours, not the user's input

Handler = Callable[[argparse.Namespace], int]


class UserError(Exception):
    """An expected failure: bad input, a missing pod, an unreachable systemd. Nothing was half-done."""


def run(handler: Handler, args: argparse.Namespace, *, verbose: bool = False) -> int:
    """Call a subcommand's handler and report the way every podvisor subcommand does."""
    try:
        return handler(args)
    except UserError as e:
        print(f"podvisor: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # the reader went away (`podvisor logs blog | head`): not an error; keep Python's flush at
        # exit from failing again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if verbose:
            import traceback

            traceback.print_exc()
        print(f"podvisor: error: internal error: {type(e).__name__}: {e}"
              + ("" if verbose else " (run with -v for the details)"), file=sys.stderr)
        return EXIT_INTERNAL
