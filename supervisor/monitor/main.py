"""podvisor-conmon's life: the first process waits for podman's go, forks the monitor and
exits; the monitor starts the runtime, reports the pid, pumps stdio until the container
exits, writes the exit file, and runs the exit command.

The monitor's parts: reaper.py (child statuses; exit file, OOM files, exit command),
container_io.py (pipes or terminal, stdio and attach wiring), and `Monitor` here, the
lifecycle that sequences them: set-up, signals, the timeout, containment."""
from __future__ import annotations

import os
import signal

# the parts used after the fork are imported before it: the first process's start-up can overlap podman's
# own work before the start byte, while the monitor's is on the critical path
from . import syncpipe
from .cli import Options, parse
from .container_io import ContainerIO
from .errors import die, enable_syslog, report_exception, strerror, warn
from .files import read_small, write_atomic
from .linux import set_child_subreaper, set_oom_score_adj
from .logs import LogSinks, open_drivers
from .loop import READ, Loop
from .process import getenv, open_fds
from .reaper import (
    TIMED_OUT,
    Reaper,
    record_exit,
    report_exec_status,
    report_oom,
    run_exit_command,
    write_file,
    write_oom_files,
)
from .runtime import build_argv, spawn

TYPE_CHECKING = False  # typing costs ~2 ms of every start; only type checkers need it
if TYPE_CHECKING:
    from collections.abc import Callable

    from .notify import NotifyProxy
    from .oom import OomWatcher

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
REAPED_SIGNALS = (signal.SIGCHLD, signal.SIGUSR1)
KILLED = 128 + signal.SIGKILL  # the status of a SIGKILLed container, as the OOM killer leaves it


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


def _fork_monitor(opts: Options, launcher: int) -> None:
    """The first process writes the monitor's pid for podman and exits; the monitor returns."""
    pid = os.fork()
    if pid == 0:
        if launcher >= 0:
            os.close(launcher)
        return
    if opts.conmon_pidfile:
        try:
            write_atomic(opts.conmon_pidfile, str(pid))
        except OSError as e:
            os.kill(pid, signal.SIGKILL)
            die(f"Failed to write conmon pidfile {opts.conmon_pidfile}: {strerror(e)}")
    if launcher >= 0:  # the status launch.py exits with, as conmon's first process exits 0 here
        try:
            os.write(launcher, b"X 0\n")
        except OSError:
            pass
    os._exit(0)


def run(argv: list[str], launcher: int = -1) -> int:
    """`launcher`: a first process forked by the fork server has its launcher's connection here
    (handover.py), answered once the monitor is forked."""
    inherited = open_fds()  # before we open anything: closed at exit (podman's port fds)
    inherited.discard(launcher)
    opts = parse(argv)
    sync_fd = _env_fd("_OCI_SYNCPIPE")
    start_fd = _env_fd("_OCI_STARTPIPE")
    attach_pipe = _env_fd("_OCI_ATTACHPIPE") if opts.exec_attach else None
    if opts.exec_attach and attach_pipe is None:
        die("--exec-attach specified but _OCI_ATTACHPIPE was not")
    if opts.passthrough and any(os.isatty(fd) for fd in (0, 1, 2)):
        die("cannot use a tty with passthrough logging mode to prevent attacks via TIOCSTI")
    sinks = open_drivers(opts)
    set_oom_score_adj(-1000)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    if start_fd is not None:
        inherited.discard(start_fd)
    start_fd = _wait_for_start(opts, start_fd)
    if not opts.sync:
        _fork_monitor(opts, launcher)
    # fds we manage ourselves; the start fd's number may be reused once we close it
    inherited.difference_update({0, 1, 2, sync_fd, start_fd, attach_pipe})
    try:
        monitor = Monitor(opts, sinks, sync_fd, start_fd, attach_pipe, inherited)
    except Exception as e:
        syncpipe.send(sync_fd, -1, f"podvisor-conmon: setting up the container's monitor failed: {e}".encode())
        return 1
    return monitor.run()


class Monitor:
    """Made once the monitor runs on its own: sets up everything before the runtime starts
    (detach, signals, notify proxy, the container's I/O); `run` then does the rest."""

    def __init__(self, opts: Options, sinks: LogSinks, sync_fd: int | None,
                 start_fd: int | None, attach_pipe: int | None, inherited: set[int]) -> None:
        self.opts = opts
        self.sinks = sinks
        self.sync_fd = sync_fd
        self.start_fd = start_fd
        self.attach_pipe = attach_pipe
        self.inherited = inherited
        self.loop = Loop(report_exception)
        self.children = Reaper()
        self.timed_out = False
        self.pid_reported = False
        self.oom: OomWatcher | None = None  # from the container's pid on, not for exec
        self._detach()
        self.sig_r = self._catch_signals()
        self.notify: NotifyProxy | None = self._notify_proxy()
        self.io = ContainerIO(self.loop, opts, sinks)
        if attach_pipe is not None:
            syncpipe.send(attach_pipe, 0)

    # ---- setup ------------------------------------------------------------------------

    def _detach(self) -> None:
        for fd in (self.sync_fd, self.attach_pipe, self.start_fd):
            if fd is not None:
                os.set_inheritable(fd, False)
        if not self.opts.passthrough:
            self._stdio_to_devnull()
        try:
            os.setsid()
        except OSError:
            pass
        try:
            set_child_subreaper(True)
        except OSError as e:
            warn(f"cannot become a child subreaper: {strerror(e)}")
        if self.opts.syslog:
            enable_syslog(self.opts.cid, self.opts.log_tag)

    @staticmethod
    def _stdio_to_devnull() -> None:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        if null > 2:
            os.close(null)
        # our diagnostics to a file instead (set through containers.conf conmon_env_vars)
        log = getenv("PODVISOR_CONMON_LOG")
        if log:
            try:
                fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
                os.dup2(fd, 2, inheritable=False)
                os.close(fd)
            except OSError:
                pass

    def _catch_signals(self) -> int:
        """Signals arrive as bytes on a pipe the loop watches: no work in signal handlers."""
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        for sig in (*REAPED_SIGNALS, *FORWARDED_SIGNALS):
            signal.signal(sig, lambda s, f: None)  # the wakeup fd carries the signal number
        self.loop.add(r, READ, self._on_signal, essential=True)
        return r

    def _notify_proxy(self) -> NotifyProxy | None:
        if not self.opts.sdnotify_socket:
            return None
        from .notify import NotifyProxy

        return NotifyProxy(self.loop, self.opts.bundle, self.opts.sdnotify_socket)

    def _on_signal(self, ev: int) -> None:
        try:
            data = os.read(self.sig_r, 256)
        except BlockingIOError:
            return
        for sig in set(data):
            if sig in REAPED_SIGNALS:
                self.children.reap()
            elif sig in FORWARDED_SIGNALS:
                self.children.forward(sig)

    # ---- run --------------------------------------------------------------------------

    def run(self) -> int:
        opts = self.opts
        child = self.io.child
        argv = build_argv(opts, self.io.console_path)
        self.children.runtime_pid = spawn(opts, argv, child.stdin, child.stdout, child.stderr,
                                          self.start_fd, [*REAPED_SIGNALS, *FORWARDED_SIGNALS])
        # from here on the exit command runs whatever happens, as with conmon
        child.close_child_ends()
        if self.start_fd is not None:
            os.close(self.start_fd)
            self.start_fd = None
        if opts.passthrough:
            self._stdio_to_devnull()
        try:
            code = self._supervise()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except Exception as e:
            report_exception("the monitor", e)
            code = self._contain()
        except BaseException as e:
            import traceback

            warn(f"monitor failed: {type(e).__name__}: {e}\n{traceback.format_exc()}")
            code = 1
        return run_exit_command(opts, code)

    def _fail(self, message: bytes) -> int:
        syncpipe.send(self.sync_fd, -1, message)
        return 1

    def _supervise(self) -> int:
        failure = self._await_container()
        if failure is not None:
            return self._fail(failure)
        self._watch_oom()
        self.pid_reported = syncpipe.send(self.sync_fd, self.children.container_pid)
        # the container runs: pump its output, watch its memory, honour --timeout
        self.io.start_output()
        if self.opts.timeout > 0:
            self.loop.call_later(self.opts.timeout, self._on_timeout)
        # as conmon: done when the process has exited, exec included. Its own output is in
        # the pipe by then; background children holding the pipe open must not keep us here
        self.loop.run(self.children.container_done)
        return self._finish()

    def _await_container(self) -> bytes | None:
        """The runtime sets the container up (a tty arrives over the console socket meanwhile);
        then its pid file names the container process. The failure for podman, if any."""
        opts = self.opts
        self.loop.run(self.children.runtime_done)
        if self.io.console is not None:
            self.io.take_console()
            self.io.close_console()  # the runtime is gone: nobody connects any more
        status = self.children.runtime_status
        if status != 0:
            return self.io.runtime_error() or b"runtime %s exited with status %d" % (
                os.path.basename(opts.runtime).encode(), status or 0)
        if opts.terminal and not self.io.has_terminal:
            return b"Runtime did not set up terminal"
        try:
            pid = int(read_small(opts.container_pidfile).strip())
        except (OSError, ValueError) as e:
            return f"Failed to read the container pid from {opts.container_pidfile}: {e}".encode()
        self.children.set_container(pid)
        return None

    def _watch_oom(self) -> None:
        # before podman hears the pid: it starts the container right away, and a fast
        # OOM would otherwise land in the watcher's baseline and go unreported
        if self.opts.exec:
            return
        try:
            from .oom import OomWatcher

            self.oom = OomWatcher(self.loop, self.children.container_pid, self._on_oom)
        except (ImportError, OSError) as e:
            warn(f"OOM monitoring unavailable: {e}")

    def _on_oom(self) -> None:
        report_oom(self.opts, self.notify)

    def _on_timeout(self) -> None:
        if self.children.container_done():
            return
        self.timed_out = True
        pid = self.children.container_pid
        try:
            pgid = os.getpgid(pid)
            if pgid > 1:
                os.killpg(pgid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass

    # ---- exit -------------------------------------------------------------------------

    def _contain(self) -> int:
        """The monitor cannot go on. Leave podman a consistent container: kill it, reap it and
        write its exit file (status 137), so that podman stop and rm work as for any exit."""
        children = self.children
        try:
            if not children.container_pid and not children.runtime_done() and children.runtime_pid:
                children.kill_and_reap(children.runtime_pid, children.runtime_done)
            if children.container_pid and not children.container_done():
                warn(f"killing container process {children.container_pid}: its monitor cannot go on")
                children.kill_and_reap(children.container_pid, children.container_done)
            if not self.pid_reported:  # podman is still waiting for the start: make it fail
                return self._fail(b"podvisor-conmon: the container's monitor failed")
            return self._finish()
        except Exception as e:
            report_exception("containing the monitor's failure", e)
            if self.opts.exit_dir:
                status = children.container_status
                write_file(os.path.join(self.opts.exit_dir, self.opts.cid),
                           str(status if status is not None else 128 + signal.SIGKILL))
            return 1

    def _step(self, what: str, fn: Callable[[], object]) -> None:
        """One step of winding down; a failure is reported and the next step still runs."""
        try:
            fn()
        except Exception as e:
            report_exception(what, e)

    def _release_inherited(self) -> None:
        for fd in self.inherited:
            try:
                os.close(fd)
            except OSError:
                pass
        self.inherited = set()

    def _final_oom_check(self) -> bool:
        if self.oom is None:
            return False
        oom, self.oom = self.oom, None
        try:
            return oom.final_check(self.children.container_status == KILLED)
        except Exception as e:
            report_exception("the final OOM check", e)
            return False

    def _finish(self) -> int:
        opts = self.opts
        oomed = self._final_oom_check()
        self._step("draining the output", self.io.drain_outputs)
        self._step("flushing the logs", lambda: self.sinks.flush(not opts.no_sync_log))
        status = TIMED_OUT if self.timed_out else (self.children.container_status or 0)
        # release what podman handed us (reserved host ports) before it sees the exit
        self._release_inherited()
        self._step("closing attach clients", self.io.close_attach)
        if oomed:
            write_oom_files(opts)
        if not record_exit(opts, status):
            return 1
        report_exec_status(opts, self.sync_fd, status, self.timed_out)
        if self.notify is not None:
            self._step("closing the notify socket", self.notify.close)
        self._step("closing the logs", self.sinks.close)
        return status & 0xFF
