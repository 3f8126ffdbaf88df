"""The monitor's children and what their end leaves for podman, kept apart from the rest as
conmon keeps ctr_exit.c and conmon-rs child_reaper.rs.

`Reaper` collects every child that exits: first the runtime, then the container process (it
reparents to the monitor, a child subreaper, once the runtime has exited). The container may
exit before its pid has been read from the runtime's pid file: such statuses are kept until
the pid is known. The rest writes the exit file (and its copy in the persist dir), the OOM
markers and report, an exec session's status on the sync pipe, and runs the exit command
(podman's `container cleanup`).
"""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from . import syncpipe
from .cli import Options
from .errors import debug, strerror, warn
from .files import touch, write_atomic
from .linux import set_child_subreaper
from .process import close_fds_from, exit_status, reap_zombies, set_environ

TYPE_CHECKING = False  # typing costs ~2 ms of every start; only type checkers need it
if TYPE_CHECKING:
    from .notify import NotifyProxy

REAP_SECONDS = 10.0  # containment: how long a SIGKILLed process may take to be reaped
TIMED_OUT = -1  # the exit file's status after --timeout, as conmon's


class Reaper:
    def __init__(self) -> None:
        self.runtime_pid = 0
        self.runtime_status: int | None = None
        self.container_pid = 0
        self.container_status: int | None = None
        self.early: dict[int, int] = {}  # pid -> status, exited before container_pid was known

    def reap(self) -> None:
        """Collect every child that has exited; never waits."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = exit_status(status)
            if pid == self.runtime_pid:
                self.runtime_status = code
            elif pid == self.container_pid:
                self.container_status = code
            elif not self.container_pid:
                self.early[pid] = code

    def runtime_done(self) -> bool:
        return self.runtime_status is not None

    def container_done(self) -> bool:
        return self.container_status is not None

    def set_container(self, pid: int) -> None:
        """The container's pid, read from the runtime's pid file; it may already be reaped."""
        self.container_pid = pid
        if pid in self.early:
            self.container_status = self.early.pop(pid)

    def forward(self, sig: int) -> None:
        """A signal for the container goes to it, or to the runtime while it sets it up."""
        target = self.container_pid or self.runtime_pid
        if target:
            try:
                os.kill(target, sig)
            except OSError:
                pass

    def kill_and_reap(self, pid: int, reaped: Callable[[], bool]) -> None:
        """SIGKILL `pid` and wait (bounded) until `reaped()`: the containment path only."""
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
        deadline = time.monotonic() + REAP_SECONDS
        while True:
            self.reap()
            if reaped() or time.monotonic() > deadline:
                return
            time.sleep(0.01)  # only on this failure path; SIGKILL takes effect in ms



def write_file(path: str, text: str) -> bool:
    try:
        write_atomic(path, text)
        return True
    except OSError as e:
        warn(f"Failed to write {path}: {strerror(e)}")
        return False


def record_exit(opts: Options, status: int) -> bool:
    """The exit file podman waits for; False if it could not be written."""
    text = str(status)
    if opts.persist_dir:
        write_file(os.path.join(opts.persist_dir, "exit"), text)
    if opts.exit_dir:
        return write_file(os.path.join(opts.exit_dir, opts.cid), text)
    return True


def write_oom_files(opts: Options) -> None:
    # podman 4.3.1 reads <bundle>/oom; conmon 2.1.6 wrote it to its cwd instead (conmon#504)
    paths = [os.path.join(opts.bundle, "oom")]
    if opts.persist_dir:
        paths.append(os.path.join(opts.persist_dir, "oom"))
    for p in paths:
        try:
            touch(p)
        except OSError as e:
            warn(f"Failed to write {p}: {strerror(e)}")


def report_oom(opts: Options, notify: NotifyProxy | None) -> None:
    """Say it where systemd users look: the unit's status line and the journal."""
    who = opts.name or opts.cid[:12]
    text = f"container {who} ({opts.cid[:12]}) was killed by the OOM killer"
    if notify is not None:
        notify.send(f"STATUS={text}".encode())
    from .logs.journald import send_event

    send_event(text, opts.cid, opts.name)


def report_exec_status(opts: Options, sync_fd: int | None, status: int, timed_out: bool) -> None:
    """An exec session's second sync message: its exit code, or that it timed out."""
    if not opts.exec:
        return
    if timed_out:
        syncpipe.send(sync_fd, -1, b"command timed out")
    else:
        syncpipe.send(sync_fd, status)


def run_exit_command(opts: Options, code: int, env: tuple[dict[bytes, bytes], bytes] | None = None) -> int:
    """Run `--exit-command` (podman's `container cleanup`) and wait for it.

    As conmon does, the monitor first closes everything but stdio: while podman's cleanup
    unmounts the container's storage and removes its bundle, the monitor that waits for it
    holds nothing in the bundle (directory fd, log, FIFOs, sockets) or the container's cgroup.
    Subreaping is dropped so the command's own children reparent to init rather than to us.
    The monitor's exit status is the container's, unless the command failed. `env`: the
    environment and cwd to run it in, when they are not the monitor's own (handoff.py)."""
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
            # keeps close-on-exec: the cleanup's errors belong there, and a closed fd 2 would
            # be taken by the next file podman opens, which would then receive its log lines
            os.set_inheritable(2, True)
            if env is not None:
                set_environ(env[0])
                os.chdir(env[1])
            if opts.exit_delay > 0:
                time.sleep(opts.exit_delay)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    while True:
        try:
            # only the exit command: conmon waits for every child, so a background process
            # reparented to us (exec in a host pid namespace) kept it alive for its lifetime
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            return code
        except InterruptedError:
            continue
    st = exit_status(status)
    reap_zombies()
    return st if st != 0 else code
