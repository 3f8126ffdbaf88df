"""podvisor-conmon's first process: it waits for podman's go, writes the monitor's pid and
exits, as conmon's does. Started directly, it forks the monitor (main.Monitor); in the fork
server's set-up process (handoff.py) the monitor already runs, and this process does its set-up
before handing the container over to it.
"""
from __future__ import annotations

import os
import signal

from . import syncpipe
from .cli import Options, parse
from .errors import die, strerror
from .files import write_atomic
from .linux import set_oom_score_adj
from .logs import open_drivers
from .main import Monitor
from .process import getenv, open_fds


def _env_fd(name: str) -> int | None:
    value = getenv(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        die(f"invalid {name}: {value!r}")


def _wait_for_start(opts: Options, start_fd: int | None) -> int | None:
    """podman writes once it has put us in the right cgroup; EOF also means go. The start fd
    stays open only for exec --exec-attach, whose runtime waits for a second go."""
    if start_fd is None:
        return None
    try:
        os.read(start_fd, 8192)
    except OSError as e:
        die(f"Failed to read from the start pipe: {strerror(e)}")
    if opts.exec_attach:
        return start_fd
    os.close(start_fd)
    return None


class Launcher:
    """A fork server's launcher (launch.py), waiting for `X code`: the status it exits with, as
    conmon's first process exits 0 once the monitor's pid is written. -1: started directly."""

    def __init__(self, fd: int = -1) -> None:
        self.fd = fd

    def answer(self, code: int) -> None:
        if self.fd >= 0:
            try:
                os.write(self.fd, b"X %d\n" % code)
            except OSError:
                pass
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _write_conmon_pidfile(opts: Options, pid: int) -> None:
    if opts.conmon_pidfile:
        try:
            write_atomic(opts.conmon_pidfile, str(pid))
        except OSError as e:
            os.kill(pid, signal.SIGKILL)
            die(f"Failed to write conmon pidfile {opts.conmon_pidfile}: {strerror(e)}")


def _fork_monitor(opts: Options, launcher: Launcher) -> None:
    """The first process writes the monitor's pid for podman and exits; the monitor returns."""
    pid = os.fork()
    if pid == 0:
        launcher.close()
        return
    _write_conmon_pidfile(opts, pid)
    launcher.answer(0)
    os._exit(0)


def run(argv: list[str], launcher: Launcher | None = None, handoff: tuple[int, int] | None = None) -> int:
    """`launcher`: a first process forked by the fork server has its launcher's connection here
    (handover.py), answered once the monitor's pid is written. `handoff`: the pid of the monitor
    that already runs, waiting for this process to do the set-up and hand it over (handoff.py)
    on the given fd; this process is then the first process and the set-up both, and exits."""
    launcher = launcher or Launcher()
    inherited = open_fds()  # before we open anything: closed at exit (podman's port fds)
    inherited.difference_update({launcher.fd, handoff[1] if handoff else -1})
    opts = parse(argv)
    if handoff is not None and opts.sync:  # no monitor apart from the first process: we are it
        os.close(handoff[1])
        handoff = None
    sync_fd = _env_fd("_OCI_SYNCPIPE")
    start_fd = _env_fd("_OCI_STARTPIPE")
    attach_pipe = _env_fd("_OCI_ATTACHPIPE") if opts.exec_attach else None
    if opts.exec_attach and attach_pipe is None:
        die("--exec-attach specified but _OCI_ATTACHPIPE was not")
    if opts.passthrough and any(os.isatty(fd) for fd in (0, 1, 2)):
        die("cannot use a tty with passthrough logging mode to prevent attacks via TIOCSTI")
    sinks = open_drivers(opts)
    set_oom_score_adj(-1000)
    if handoff is not None:  # and the waiting monitor's, from its start rather than from the hand-over
        set_oom_score_adj(-1000, handoff[0])
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    if start_fd is not None:
        inherited.discard(start_fd)
    start_fd = _wait_for_start(opts, start_fd)
    if handoff is not None:
        _write_conmon_pidfile(opts, handoff[0])
        launcher.answer(0)
    elif not opts.sync:
        _fork_monitor(opts, launcher)
    # fds we manage ourselves; the start fd's number may be reused once we close it
    inherited.difference_update({0, 1, 2, sync_fd, start_fd, attach_pipe})
    try:
        monitor = Monitor(opts, sinks, sync_fd, start_fd, attach_pipe, inherited,
                          handoff[1] if handoff else None)
    except Exception as e:
        syncpipe.send(sync_fd, -1, f"podvisor-conmon: setting up the container's monitor failed: {e}".encode())
        return 1
    return monitor.run()
