"""podvisor-conmon's life once its first process (startup.py) is done: the monitor starts the
runtime, reports the pid, pumps stdio until the container exits, writes the exit file, and runs
the exit command. Forked by the fork server, the monitor hands the running container over from
its set-up process to the waiting monitor instead (`_hand_off`, `resume`; handoff.py).

The monitor's parts: reaper.py (child statuses; exit file, OOM files, exit command),
container_io.py (pipes or terminal, stdio and attach wiring), and `Monitor` here, the
lifecycle that sequences them: set-up, signals, the timeout, containment."""
from __future__ import annotations

import os
import signal
import sys

# the parts used after the fork are imported before it: the first process's start-up can overlap podman's
# own work before the start byte, while the monitor's is on the critical path
from . import syncpipe
from .cli import Options
from .container_io import ContainerIO
from .errors import enable_syslog, report_exception, strerror, warn
from .files import read_small
from .linux import set_child_subreaper
from .logs import LogSinks
from .loop import READ, Loop
from .process import getenv
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

# plain ints, not Signals members: each member a monitor touches costs it a page
FORWARDED_SIGNALS = (int(signal.SIGTERM), int(signal.SIGINT), int(signal.SIGQUIT))
REAPED_SIGNALS = (int(signal.SIGCHLD), int(signal.SIGUSR1))
CAUGHT_SIGNALS = (*REAPED_SIGNALS, *FORWARDED_SIGNALS)
KILLED = 128 + signal.SIGKILL  # the status of a SIGKILLed container, as the OOM killer leaves it


def _ignore_signal(signum: int, frame: object) -> None:
    pass


def catch_signals(wakeup_fd: int) -> None:
    """Signals arrive as bytes on a pipe the loop watches (`wakeup_fd`, its write end): no work in
    signal handlers. The C module's calls, not signal.py's, whose enum round trips would cost a
    forked monitor pages."""
    c = sys.modules["_signal"]
    c.set_wakeup_fd(wakeup_fd, warn_on_full_buffer=False)
    for sig in CAUGHT_SIGNALS:
        c.signal(sig, _ignore_signal)  # the wakeup fd carries the signal number


class Monitor:
    """Made once the monitor runs on its own: sets up everything before the runtime starts
    (detach, signals, notify proxy, the container's I/O); `run` then does the rest."""

    def __init__(self, opts: Options, sinks: LogSinks, sync_fd: int | None,
                 start_fd: int | None, attach_pipe: int | None, inherited: set[int],
                 handoff_fd: int | None = None) -> None:
        self.opts = opts
        self.handoff_fd = handoff_fd
        self.exit_env: tuple[dict[bytes, bytes], bytes] | None = None  # handed over: the exit command's
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
        self.sig_r, self.sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.loop.add(self.sig_r, READ, self._on_signal, essential=True)
        catch_signals(self.sig_w)
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
        if self.handoff_fd is None:  # else the monitor, our parent, has done both for itself
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
        code = self._guarded(self._start)
        if code is None and self.handoff_fd is not None:
            code = self._hand_off()
        return self._to_the_end(code)

    def _to_the_end(self, code: int | None) -> int:
        """The container's life from `code` None (it runs) or a failure's status on, to the exit
        command's end."""
        if code is None:
            code = self._guarded(self._watch)
        return run_exit_command(self.opts, 1 if code is None else code, self.exit_env)

    def _guarded(self, step: Callable[[], int | None]) -> int | None:
        try:
            return step()
        except SystemExit as e:
            return e.code if isinstance(e.code, int) else 1
        except Exception as e:
            report_exception("the monitor", e)
            return self._contain()
        except BaseException as e:
            import traceback

            warn(f"monitor failed: {type(e).__name__}: {e}\n{traceback.format_exc()}")
            return 1

    # ---- the hand-over to a waiting monitor (handoff.py) -----------------------------

    def _hand_off(self) -> int | None:
        """In the set-up process: the container runs; the monitor takes it from here."""
        from . import handoff

        fd, self.handoff_fd = self.handoff_fd, None
        assert fd is not None
        # the monitor runs nothing but the exit command: it takes our environment and cwd for
        # that alone, in the command's own process, rather than setting them for itself
        self.exit_env = (dict(os.environb), os.getcwdb())
        try:
            handoff.send(fd, self, *self.loop.wait_set(), self.sig_w)
        except Exception as e:
            # the container is the monitor's child, not ours to reap: end it, and its life here
            report_exception("handing the container over to its monitor", e)
            try:
                os.kill(self.children.container_pid, signal.SIGKILL)
            except OSError:
                pass
            self.children.container_status = KILLED
            return self._guarded(self._finish)
        os._exit(0)

    def resume(self) -> int:
        """In the monitor, once handed over: take on what a process has of its own, then the
        container's life from where the set-up process left it."""
        import gc

        from .errors import set_level

        gc.enable()  # the server's is off (and its objects frozen); a monitor lives long
        set_level(self.opts.log_level)
        if self.opts.syslog:
            enable_syslog(self.opts.cid, self.opts.log_tag)
        # the set-up process set our oom_score_adj (startup.run), the server malloc's thresholds,
        # and the monitor its signal handlers (server.py) before waiting for the first event
        self.children.reap()  # what exited before the handlers were ours
        return self._to_the_end(None)

    def _fail(self, message: bytes) -> int:
        syncpipe.send(self.sync_fd, -1, message)
        return 1

    def _start(self) -> int | None:
        """Until the container runs: None, or the exit status of a failure."""
        failure = self._await_container()
        if failure is not None:
            return self._fail(failure)
        self._watch_oom()
        self.pid_reported = syncpipe.send(self.sync_fd, self.children.container_pid)
        # the container runs: pump its output, watch its memory, honour --timeout
        self.io.start_output()
        if self.opts.timeout > 0:
            self.loop.call_later(self.opts.timeout, self._on_timeout)
        return None

    def _watch(self) -> int:
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
            try:
                self.io.take_console()
            finally:  # the runtime is gone: nobody connects any more, even if taking it failed
                self.io.close_console()
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
