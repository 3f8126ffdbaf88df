"""Process bookkeeping: inherited fds, exit statuses, and the exit command."""
from __future__ import annotations

import os
import signal
import time

from .cli import Options
from .errors import debug
from .linux import set_child_subreaper


def open_fds() -> set[int]:
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        fds.add(int(name))
    # listdir's own directory fd is already closed again
    return {fd for fd in fds if _valid(fd)}


def _valid(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def exit_status(wait_status: int) -> int:
    """conmon's status: the exit code, or 128 + the signal that killed the process."""
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    if os.WIFEXITED(wait_status):
        return os.WEXITSTATUS(wait_status)
    return -1


def close_fds_from(first: int) -> None:
    """Close every open fd >= `first` (those listed in /proc/self/fd: no 64k close() calls)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        os.closerange(first, 65536)
        return
    for fd in fds:
        if fd >= first:
            try:
                os.close(fd)
            except OSError:
                pass  # listdir's own directory fd, already closed


def run_exit_command(opts: Options, code: int) -> int:
    """Run `--exit-command` (podman's `container cleanup`) and wait for every child.

    As conmon does, the monitor first closes everything but stdio: while podman's cleanup
    unmounts the container's storage and removes its bundle, the monitor that waits for it
    holds nothing in the bundle (directory fd, log, FIFOs, sockets) or the container's cgroup.
    Subreaping is dropped so the command's own children reparent to init rather than to us.
    The monitor's exit status is the container's, unless the command failed."""
    if not opts.exit_command:
        return code
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    close_fds_from(3)
    try:
        set_child_subreaper(False)
    except OSError:
        pass
    argv = [opts.exit_command, *opts.exit_command_args]
    debug(f"container exited with {code}; running the exit command: {' '.join(argv)}")
    pid = os.fork()
    if pid == 0:
        try:
            # stderr is /dev/null, or the diagnostics log (PODVISOR_CONMON_LOG), which the monitor
            # keeps close-on-exec: the cleanup's errors belong there, and a closed fd 2 would be
            # be taken by the next file podman opens, which would then receive its log lines
            os.set_inheritable(2, True)
            if opts.exit_delay > 0:
                time.sleep(opts.exit_delay)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    result = code
    while True:
        try:
            # only the exit command: conmon waits for every child, so a background process
            # reparented to us (exec in a host pid namespace) kept it alive for its lifetime
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            return result
        except InterruptedError:
            continue
    st = exit_status(status)
    if st != 0:
        result = st
    reap_zombies()
    return result


def reap_zombies() -> None:
    """Collect children that have already exited (e.g. a runtime that failed), never wait."""
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return
