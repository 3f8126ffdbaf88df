"""Where the fork server of this install listens: the one fact the monitor's launcher and server
(supervisor/monitor/) share with the units `podvisor install` writes for the server
(supervisor/generator/serverunits.py). Standard library only: the launcher imports it for every
container."""
from __future__ import annotations

import os

SOCKET_DIR = "/run/podvisor"


def socket_path() -> str:
    """One socket per install, so two virtualenvs (or a reinstall elsewhere) never meet.
    PODVISOR_CONMON_SOCKET overrides it."""
    path = os.environ.get("PODVISOR_CONMON_SOCKET")
    if path:
        return path
    import zlib

    here = os.path.join(os.path.dirname(os.path.realpath(__file__)), "monitor").encode()
    return f"{SOCKET_DIR}/conmon-{zlib.crc32(here):08x}.sock"
