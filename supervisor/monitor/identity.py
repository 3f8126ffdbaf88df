"""How the monitor shows itself in ps, top, `systemctl status` and `podvisor top`.

comm is `podvisor-conmon` and the command line reads `podvisor-conmon --api-version 1 -c <id> …`,
as podman's arguments. /proc/PID/exe stays the Python interpreter: the kernel sets it at exec,
and re-pointing it (PR_SET_MM_EXE_FILE) at a shell script would lie about what runs; tools that
look for a monitor should match comm or the command line (both say podvisor-conmon), which is
also what `pgrep conmon` does.
"""
from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~2 ms of every start; only type checkers need it
if TYPE_CHECKING:
    from collections.abc import Callable

NAME = "podvisor-conmon"  # 15 bytes: all of it fits in comm
_loaded: list[Callable[[str], None] | None] = []  # found once (the fork server: before forking)


def load_setproctitle() -> Callable[[str], None] | None:
    """setproctitle's C extension, loaded without its package's __init__: that one imports
    logging (and so threading, traceback, tokenize…), ~1.5 ms per start, and logging's at-fork
    handler alone dirtied ~400 kB of every monitor the fork server forks."""
    if _loaded:
        return _loaded[0]
    # the import system's own frozen modules, always loaded: importlib.util would pull in more
    import _frozen_importlib as boot
    import _frozen_importlib_external as ext
    import _imp
    import os
    import sys

    mod = sys.modules.get("setproctitle._setproctitle")
    if mod is None:
        for d in sys.path:
            for suffix in _imp.extension_suffixes():
                path = os.path.join(d or ".", "setproctitle", "_setproctitle" + suffix)
                if os.path.exists(path):
                    name = "setproctitle._setproctitle"
                    spec = boot.spec_from_loader(name, ext.ExtensionFileLoader(name, path),
                                                 origin=path)
                    if spec is None:
                        return None
                    mod = boot.module_from_spec(spec)
                    sys.modules[name] = mod
                    break
            if mod is not None:
                break
    function: Callable[[str], None] | None = getattr(mod, "setproctitle", None)
    _loaded.append(function)
    return function


def set_identity(argv: list[str]) -> None:
    # setproctitle (PyPI) rewrites the argv area the kernel shows as /proc/PID/cmdline, moving
    # environ out of the way first: nothing in the standard library can do that. On Linux it
    # also sets comm with prctl(PR_SET_NAME) to the title's first 15 bytes, "podvisor-conmon".
    setproctitle = load_setproctitle()
    if setproctitle is not None:
        setproctitle(" ".join([NAME, *argv]))
        return
    # an install without it still runs, shown as python3 … but named podvisor-conmon
    from .linux import set_comm

    try:
        set_comm(NAME)
    except OSError:
        pass
