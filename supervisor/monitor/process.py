"""Process bookkeeping: inherited fds, exit statuses, and the exit command."""
from __future__ import annotations

import os
import signal
import time

from .cli import Options
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


def run_exit_command(opts: Options, code: int) -> int:
    """Run `--exit-command` (podman's `container cleanup`) and wait for every child.

    Subreaping is dropped first so the command's own children reparent to init rather than
    to us. The monitor's exit status is the container's, unless the command failed."""
    if not opts.exit_command:
        return code
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        set_child_subreaper(False)
    except OSError:
        pass
    argv = [opts.exit_command, *opts.exit_command_args]
    pid = os.fork()
    if pid == 0:
        try:
            os.closerange(3, 65536)
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
