"""podvisor-conmon: a conmon 2.1.6 compatible container monitor.

podman probes `<monitor> --version` and only accepts `conmon version X.Y.Z` >= 2.0.1;
anything else makes it fall back to /usr/bin/conmon silently. bin/podvisor-conmon prints the
same text without starting Python (a test keeps the two equal).
"""

from .. import __version__ as VERSION

__all__ = ["VERSION", "VERSION_TEXT"]

VERSION_TEXT = f"conmon version 2.1.6\ncommit: podvisor-conmon {VERSION}\n"
