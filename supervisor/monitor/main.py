"""podvisor-conmon's life: the first process waits for podman's go, forks the monitor and
exits; the monitor starts the runtime, reports the pid, pumps stdio until the container
exits, writes the exit file, and runs the exit command."""
from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable

# used after the fork, imported before it: the first process's start-up can overlap podman's
# own work before the start byte, while the monitor's is on the critical path
from . import attach, control, stdio, syncpipe  # noqa: F401
from .cli import Options, parse
from .errors import die, enable_syslog, report_exception, strerror, warn
from .files import touch, write_atomic
from .linux import set_child_subreaper, set_oom_score_adj
from .logs import STDERR, STDOUT, LogSinks, open_drivers
from .loop import READ, Loop
from .process import exit_status, open_fds, run_exit_command
from .runtime import build_argv, spawn

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
ATTACH_STDOUT = 2
ATTACH_STDERR = 3
CLIENT_FLUSH_SECONDS = 5.0
REAP_SECONDS = 10.0  # containment: how long a SIGKILLed container may take to be reaped


def _env_fd(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        die(f"invalid {name}: {value!r}")


def run(argv: list[str]) -> int:
    inherited = open_fds()  # before we open anything: closed at exit (podman's port fds)
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
        # podman writes once it has put us in the right cgroup; EOF also means go
        try:
            os.read(start_fd, 8192)
        except OSError as e:
            die(f"Failed to read from the start pipe: {strerror(e)}")
        if not opts.exec_attach:
            os.close(start_fd)
            start_fd = None

    if not opts.sync:
        pid = os.fork()
        if pid:
            if opts.conmon_pidfile:
                try:
                    write_atomic(opts.conmon_pidfile, str(pid))
                except OSError as e:
                    os.kill(pid, signal.SIGKILL)
                    die(f"Failed to write conmon pidfile {opts.conmon_pidfile}: {strerror(e)}")
            os._exit(0)

    # fds we manage ourselves; the start fd's number may be reused once we close it
    inherited.difference_update({0, 1, 2, sync_fd, start_fd, attach_pipe})
    monitor = Monitor(opts, sinks, sync_fd, start_fd, attach_pipe, inherited)
    return monitor.run()


class Monitor:
    def __init__(self, opts: Options, sinks: LogSinks, sync_fd: int | None,
                 start_fd: int | None, attach_pipe: int | None, inherited: set[int]) -> None:
        self.opts = opts
        self.sinks = sinks
        self.sync_fd = sync_fd
        self.start_fd = start_fd
        self.attach_pipe = attach_pipe
        self.inherited = inherited
        self.loop = Loop(report_exception)
        self.runtime_pid = 0
        self.runtime_status: int | None = None
        self.container_pid = 0
        self.container_status: int | None = None
        self.pid_reported = False
        self.exited: dict[int, int] = {}
        self.timed_out = False
        self.outputs: list = []
        self.stdin = None
        self.attach = None
        self.control = None
        self.console = None
        self.master: int | None = None
        self.pending_size: tuple[int, int] | None = None
        self.oom = None
        self.notify = None

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
        log = os.environ.get("PODVISOR_CONMON_LOG")
        if log:
            try:
                fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
                os.dup2(fd, 2, inheritable=False)
                os.close(fd)
            except OSError:
                pass

    def _signals(self) -> None:
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._sig_r = r
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        for sig in (signal.SIGCHLD, signal.SIGUSR1, *FORWARDED_SIGNALS):
            signal.signal(sig, lambda s, f: None)  # the wakeup fd carries the signal number
        self.loop.add(r, READ, self._on_signal, essential=True)

    def _on_signal(self, ev: int) -> None:
        try:
            data = os.read(self._sig_r, 256)
        except BlockingIOError:
            return
        for sig in set(data):
            if sig in (signal.SIGCHLD, signal.SIGUSR1):
                self._reap()
            elif sig in FORWARDED_SIGNALS:
                target = self.container_pid or self.runtime_pid
                if target:
                    try:
                        os.kill(target, sig)
                    except OSError:
                        pass

    def _reap(self) -> None:
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
                # the container may exit before we have read its pid from the pid file
                self.exited[pid] = code

    # ---- run --------------------------------------------------------------------------

    def run(self) -> int:
        try:
            child_fds = self._prepare()
        except Exception as e:
            self._fail(f"podvisor-conmon: setting up the container's monitor failed: {e}".encode())
            return 1
        return self._start_runtime(*child_fds)

    def _prepare(self) -> tuple[int, int, int, int, int, int]:
        """Everything before the runtime starts: stdio plumbing, attach socket, FIFOs."""
        opts = self.opts
        self._detach()
        self._signals()
        if opts.sdnotify_socket:
            from .notify import NotifyProxy

            self.notify = NotifyProxy(self.loop, opts.bundle, opts.sdnotify_socket)
        self.bundle_fd = os.open(opts.bundle, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        child_in = child_out = child_err = null
        out_r = err_r = -1
        if opts.passthrough:
            child_in, child_out, child_err = 0, 1, 2
        else:
            from .stdio import make_pipe

            err_r, child_err = make_pipe()
            if opts.terminal:
                from .terminal import ConsoleSocket

                self.console = ConsoleSocket()
                self.loop.add(self.console.sock.fileno(), READ, lambda ev: self._take_console())
            else:
                if opts.stdin:
                    child_in, stdin_w = os.pipe2(os.O_CLOEXEC)
                    self._make_stdin(stdin_w)
                out_r, child_out = make_pipe()
            self._make_attach_and_control()
        if self.attach_pipe is not None:
            syncpipe.send(self.attach_pipe, 0)
        return child_in, child_out, child_err, null, out_r, err_r

    def _start_runtime(self, child_in: int, child_out: int, child_err: int, null: int,
                       out_r: int, err_r: int) -> int:
        opts = self.opts
        argv = build_argv(opts, self.console.path if self.console else None)
        self.runtime_pid = spawn(opts, argv, child_in, child_out, child_err, self.start_fd,
                                 [signal.SIGCHLD, signal.SIGUSR1, *FORWARDED_SIGNALS])
        # from here on the exit command runs whatever happens, as with conmon
        for fd in {child_in, child_out, child_err, null} - {0, 1, 2}:
            os.close(fd)
        if self.start_fd is not None:
            os.close(self.start_fd)
            self.start_fd = None
        if opts.passthrough:
            self._stdio_to_devnull()
        try:
            code = self._supervise(out_r, err_r)
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

    def _make_stdin(self, fd: int) -> None:
        from .stdio import Stdin

        self.stdin = Stdin(self.loop, fd, self._stdin_backpressure)

    def _stdin_backpressure(self, full: bool) -> None:
        if self.attach is not None:
            self.attach.set_input_enabled(not full)

    def _make_attach_and_control(self) -> None:
        from .attach import AttachServer
        from .control import Control

        self.attach = AttachServer(self.loop, self.bundle_fd, self._on_input, self._on_client_eof)
        self.control = Control(self.loop, self.bundle_fd, self._on_resize, self.sinks.reopen)

    def _on_input(self, data: bytes) -> None:
        if self.stdin is not None:
            self.stdin.write(data)

    def _on_client_eof(self) -> None:
        # conmon: a client leaving closes stdin if -i was asked, unless --leave-stdin-open
        if self.opts.stdin and not self.opts.leave_stdin_open and self.stdin is not None:
            self.stdin.close_after_flush()

    def _on_resize(self, rows: int, cols: int) -> None:
        if self.master is None:
            self.pending_size = (rows, cols)  # applied when the console arrives
            return
        from .terminal import resize

        try:
            resize(self.master, rows, cols)
        except OSError as e:
            warn(f"resize failed: {strerror(e)}")

    def _take_console(self) -> None:
        if self.console is None or self.master is not None:
            return
        try:
            fd = self.console.receive()
        except OSError as e:
            warn(f"console socket: {strerror(e)}")
            return
        if fd is None:
            return
        from .terminal import prepare_master

        prepare_master(fd)
        self.master = fd
        self.loop.remove(self.console.sock.fileno())
        self.console.close()
        self.console = None
        self._make_stdin(os.dup(fd))
        if self.pending_size:
            self._on_resize(*self.pending_size)

    def _fail(self, message: bytes) -> int:
        syncpipe.send(self.sync_fd, -1, message)
        return 1

    def _supervise(self, out_r: int, err_r: int) -> int:
        opts = self.opts
        # 1. the runtime sets the container up; a tty arrives over the console socket meanwhile
        self.loop.run(lambda: self.runtime_status is not None)
        if self.console is not None:
            self._take_console()
        if self.runtime_status != 0:
            message = b""
            if err_r >= 0:
                os.set_blocking(err_r, False)
                try:
                    message = os.read(err_r, 8191)
                except OSError:
                    pass
            if not message:
                message = b"runtime %s exited with status %d" % (
                    os.path.basename(opts.runtime).encode(), self.runtime_status or 0)
            return self._fail(message)
        if opts.terminal and self.master is None:
            return self._fail(b"Runtime did not set up terminal")
        try:
            with open(opts.container_pidfile) as f:
                self.container_pid = int(f.read().strip())
        except (OSError, ValueError) as e:
            return self._fail(f"Failed to read the container pid from {opts.container_pidfile}: {e}"
                              .encode())
        if self.container_pid in self.exited:
            self.container_status = self.exited.pop(self.container_pid)
        if not opts.exec:
            # before podman hears the pid: it starts the container right away, and a fast
            # OOM would otherwise land in the watcher's baseline and go unreported
            try:
                from .oom import OomWatcher

                self.oom = OomWatcher(self.loop, self.container_pid, self._on_oom)
            except (ImportError, OSError) as e:
                warn(f"OOM monitoring unavailable: {e}")
        self.pid_reported = syncpipe.send(self.sync_fd, self.container_pid)

        # 2. the container runs: pump its output, watch its memory, honour --timeout
        from .linux import keep_io_buffers_in_heap
        from .stdio import HEAP_MMAP_THRESHOLD, HEAP_TRIM_THRESHOLD, Output

        keep_io_buffers_in_heap(HEAP_MMAP_THRESHOLD, HEAP_TRIM_THRESHOLD)
        self.sinks.attach_loop(self.loop, self._log_backpressure)
        sink = self._output
        if self.master is not None:
            self.outputs.append(Output(self.loop, self.master, STDOUT, sink, lambda: None))
        elif out_r >= 0:
            self.outputs.append(Output(self.loop, out_r, STDOUT, sink, lambda: None))
        if err_r >= 0:
            self.outputs.append(Output(self.loop, err_r, STDERR, sink, lambda: None))
        if opts.timeout > 0:
            self.loop.call_later(opts.timeout, self._on_timeout)
        # as conmon: done when the process has exited, exec included. Its own output is in
        # the pipe by then; background children holding the pipe open must not keep us here
        self.loop.run(lambda: self.container_status is not None)
        return self._finish()

    def _on_oom(self) -> None:
        """Say it where systemd users look: the unit's status line and the journal."""
        who = self.opts.name or self.opts.cid[:12]
        text = f"container {who} ({self.opts.cid[:12]}) was killed by the OOM killer"
        if self.notify is not None:
            self.notify.send(f"STATUS={text}".encode())
        from .logs.journald import send_event

        send_event(text, self.opts.cid, self.opts.name)

    def _log_backpressure(self, full: bool) -> None:
        for o in self.outputs:
            o.pause(full)

    def _output(self, stream: int, data: bytes) -> None:
        self.sinks.write(stream, data)
        if self.attach is not None:
            self.attach.broadcast(ATTACH_STDOUT if stream == STDOUT else ATTACH_STDERR, data)

    def _on_timeout(self) -> None:
        if self.container_status is not None:
            return
        self.timed_out = True
        pid = self.container_pid
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
        try:
            if not self.container_pid and self.runtime_status is None and self.runtime_pid:
                self._kill_and_reap(self.runtime_pid, lambda: self.runtime_status is not None)
            if self.container_pid and self.container_status is None:
                warn(f"killing container process {self.container_pid}: its monitor cannot go on")
                self._kill_and_reap(self.container_pid, lambda: self.container_status is not None)
            if not self.pid_reported:  # podman is still waiting for the start: make it fail
                return self._fail(b"podvisor-conmon: the container's monitor failed")
            return self._finish()
        except Exception as e:
            report_exception("containing the monitor's failure", e)
            if self.opts.exit_dir:
                self._write_file(os.path.join(self.opts.exit_dir, self.opts.cid),
                                 str(self.container_status if self.container_status is not None
                                     else 128 + signal.SIGKILL))
            return 1

    def _kill_and_reap(self, pid: int, reaped: Callable[[], bool]) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
        deadline = time.monotonic() + REAP_SECONDS
        while True:
            self._reap()
            if reaped() or time.monotonic() > deadline:
                return
            time.sleep(0.01)  # only on this failure path; SIGKILL takes effect in ms

    def _step(self, what: str, fn: Callable[[], object]) -> None:
        """One step of winding down; a failure is reported and the next step still runs."""
        try:
            fn()
        except Exception as e:
            report_exception(what, e)

    def _drain_outputs(self) -> None:
        for o in self.outputs:
            o.drain()
            o.stop()  # the attach flush below runs the loop: no new output meanwhile

    def _release_inherited(self) -> None:
        for fd in self.inherited:
            try:
                os.close(fd)
            except OSError:
                pass
        self.inherited = set()

    def _close_attach(self) -> None:
        if self.attach is not None:
            attach, self.attach = self.attach, None
            try:
                attach.flush(time.monotonic() + CLIENT_FLUSH_SECONDS)
            finally:
                attach.close()

    def _finish(self) -> int:
        opts = self.opts
        oomed = False
        if self.oom is not None:
            oom, self.oom = self.oom, None
            try:
                oomed = oom.final_check()
            except Exception as e:
                report_exception("the final OOM check", e)
        self._step("draining the output", self._drain_outputs)
        self._step("flushing the logs", lambda: self.sinks.flush(not opts.no_sync_log))
        status = -1 if self.timed_out else (self.container_status or 0)
        # release what podman handed us (reserved host ports) before it sees the exit
        self._release_inherited()
        self._step("closing attach clients", self._close_attach)
        if oomed:
            self._write_oom_files()
        text = str(status)
        if opts.persist_dir:
            self._write_file(os.path.join(opts.persist_dir, "exit"), text)
        if opts.exit_dir:
            if not self._write_file(os.path.join(opts.exit_dir, opts.cid), text):
                return 1
        if opts.exec:
            if self.timed_out:
                syncpipe.send(self.sync_fd, -1, b"command timed out")
            else:
                syncpipe.send(self.sync_fd, status)
        if self.notify is not None:
            self._step("closing the notify socket", self.notify.close)
        self._step("closing the logs", self.sinks.close)
        return status & 0xFF

    @staticmethod
    def _write_file(path: str, text: str) -> bool:
        try:
            write_atomic(path, text)
            return True
        except OSError as e:
            warn(f"Failed to write {path}: {strerror(e)}")
            return False

    def _write_oom_files(self) -> None:
        # podman 4.3.1 reads <bundle>/oom; conmon 2.1.6 wrote it to its cwd instead (conmon#504)
        paths = [os.path.join(self.opts.bundle, "oom")]
        if self.opts.persist_dir:
            paths.append(os.path.join(self.opts.persist_dir, "oom"))
        for p in paths:
            try:
                touch(p)
            except OSError as e:
                warn(f"Failed to write {p}: {strerror(e)}")


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
