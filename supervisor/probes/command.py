"""`podvisor ready-probe`'s place in the podvisor command (supervisor/cli.py calls register). Run by
units, not people; the handler re-executes itself lean (ready.main), so what this imports is only
paid until then."""
from __future__ import annotations

from typing import Any

from . import options, ready


def register(subparsers: Any) -> None:
    probe = subparsers.add_parser("ready-probe", help="(used by units) run a container, then its readiness "
                                                      "probe, and tell systemd when it is ready")
    options.add_arguments(probe)
    probe.set_defaults(handler=ready.main)
