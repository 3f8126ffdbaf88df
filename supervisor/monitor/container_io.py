"""The container's I/O, kept apart as conmon-rs keeps container_io.rs: the fds the runtime gets
as its stdio (pipes, or a terminal whose master arrives over the console socket), its output
pumped to the logs and to attach clients, its stdin fed from them, and the ctl/winsz FIFOs.

In passthrough mode the runtime gets the monitor's own stdio and none of this is served.
"""
from __future__ import annotations

import os
import time

from .attach import AttachServer
from .cli import Options
from .control import Control
from .errors import strerror, warn
from .linux import keep_io_buffers_in_heap
from .logs import STDERR, STDOUT, LogSinks
from .loop import READ, Loop
from .stdio import HEAP_MMAP_THRESHOLD, HEAP_TRIM_THRESHOLD, Output, Stdin, make_pipe

TYPE_CHECKING = False  # typing costs ~2 ms of every start; only type checkers need it
if TYPE_CHECKING:
    from .terminal import ConsoleSocket

ATTACH_STDOUT = 2  # stream ids on the attach socket
ATTACH_STDERR = 3
CLIENT_FLUSH_SECONDS = 5.0
RUNTIME_ERROR_MAX = 8191  # of the runtime's stderr, relayed to podman when it fails


def _nothing() -> None:  # a function, not a lambda: the loop's handlers are pickled (handoff.py)
    pass


class ChildStdio:
    """The runtime's fds 0, 1 and 2, /dev/null (for the ends it doesn't get), and the monitor's
    read ends of its stdout and stderr pipes (-1: no such pipe)."""

    __slots__ = ("err_r", "null", "out_r", "stderr", "stdin", "stdout")

    def __init__(self, stdin: int, stdout: int, stderr: int, null: int, out_r: int,
                 err_r: int) -> None:
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.null = null
        self.out_r = out_r
        self.err_r = err_r

    def close_child_ends(self) -> None:
        """Once the runtime has them: the monitor must not hold the pipes' write ends open."""
        for fd in {self.stdin, self.stdout, self.stderr, self.null} - {0, 1, 2}:
            os.close(fd)


class ContainerIO:
    """Made before the runtime starts: the bundle's attach socket and FIFOs exist from then on."""

    def __init__(self, loop: Loop, opts: Options, sinks: LogSinks) -> None:
        self.loop = loop
        self.opts = opts
        self.sinks = sinks
        self.stdin: Stdin | None = None
        self.attach: AttachServer | None = None
        self.control: Control | None = None
        self.console: ConsoleSocket | None = None  # until the pty master has arrived
        self.master: int | None = None
        self.pending_size: tuple[int, int] | None = None  # a resize before the master came
        self.outputs: list[Output] = []
        self.bundle_fd = os.open(opts.bundle, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.child = self._plumb()

    def _plumb(self) -> ChildStdio:
        opts = self.opts
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        if opts.passthrough:
            return ChildStdio(0, 1, 2, null, -1, -1)
        child_in = child_out = null
        out_r = -1
        err_r, child_err = make_pipe()
        if opts.terminal:
            from .terminal import ConsoleSocket

            self.console = ConsoleSocket()
            self.loop.add(self.console.sock.fileno(), READ, self._on_console)
        else:
            if opts.stdin:
                child_in, stdin_w = os.pipe2(os.O_CLOEXEC)
                self._make_stdin(stdin_w)
            out_r, child_out = make_pipe()
        self.attach = AttachServer(self.loop, self.bundle_fd, self._on_input, self._on_client_eof)
        self.control = Control(self.loop, self.bundle_fd, self.resize, self.sinks.reopen)
        return ChildStdio(child_in, child_out, child_err, null, out_r, err_r)

    def _on_console(self, ev: int) -> None:
        self.take_console()

    @property
    def console_path(self) -> str | None:
        return self.console.path if self.console is not None else None

    @property
    def has_terminal(self) -> bool:
        return self.master is not None

    # ---- the TTY handover ----------------------------------------------------------------

    def close_console(self) -> None:
        """Once the master came, or the runtime exited without sending it: no directory is left
        in $TMPDIR, whatever the runtime did."""
        if self.console is not None:
            self.loop.remove(self.console.sock.fileno())
            self.console.close()
            self.console = None

    def take_console(self) -> None:
        """The runtime connects to the console socket and sends the pty master over it."""
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
        self.close_console()
        self._make_stdin(os.dup(fd))
        if self.pending_size:
            self.resize(*self.pending_size)

    def resize(self, rows: int, cols: int) -> None:
        if self.master is None:
            self.pending_size = (rows, cols)  # applied when the console arrives
            return
        from .terminal import resize

        try:
            resize(self.master, rows, cols)
        except OSError as e:
            warn(f"resize failed: {strerror(e)}")

    # ---- stdin ---------------------------------------------------------------------------

    def _make_stdin(self, fd: int) -> None:
        self.stdin = Stdin(self.loop, fd, self._stdin_backpressure)

    def _stdin_backpressure(self, full: bool) -> None:
        if self.attach is not None:
            self.attach.set_input_enabled(not full)

    def _on_input(self, data: bytes) -> None:
        if self.stdin is not None:
            self.stdin.write(data)

    def _on_client_eof(self) -> None:
        # conmon: a client leaving closes stdin if -i was asked, unless --leave-stdin-open
        if self.opts.stdin and not self.opts.leave_stdin_open and self.stdin is not None:
            self.stdin.close_after_flush()

    # ---- output --------------------------------------------------------------------------

    def runtime_error(self) -> bytes:
        """What a failed runtime wrote to its stderr (runc's reason), bounded; b"" if nothing."""
        if self.child.err_r < 0:
            return b""
        os.set_blocking(self.child.err_r, False)
        try:
            return os.read(self.child.err_r, RUNTIME_ERROR_MAX)
        except OSError:
            return b""

    def start_output(self) -> None:
        """The container runs: pump its output (the pty master, or the pipes) to logs and clients."""
        keep_io_buffers_in_heap(HEAP_MMAP_THRESHOLD, HEAP_TRIM_THRESHOLD)
        self.sinks.attach_loop(self.loop, self._log_backpressure)
        out = self.master if self.master is not None else self.child.out_r
        if out >= 0:
            self.outputs.append(Output(self.loop, out, STDOUT, self._output, _nothing))
        if self.child.err_r >= 0:
            self.outputs.append(Output(self.loop, self.child.err_r, STDERR, self._output, _nothing))

    def _log_backpressure(self, full: bool) -> None:
        for o in self.outputs:
            o.pause(full)

    def _output(self, stream: int, data: bytes) -> None:
        self.sinks.write(stream, data)
        if self.attach is not None:
            self.attach.broadcast(ATTACH_STDOUT if stream == STDOUT else ATTACH_STDERR, data)

    def drain_outputs(self) -> None:
        """At exit: what the process left in its pipes (bounded), then no more reading."""
        for o in self.outputs:
            o.drain()
            o.stop()  # the attach flush that follows runs the loop: no new output meanwhile

    def close_attach(self, flush_seconds: float = CLIENT_FLUSH_SECONDS) -> None:
        """Give attach clients a bounded time to take their queued output, then close them."""
        if self.attach is not None:
            attach, self.attach = self.attach, None
            try:
                attach.flush(time.monotonic() + flush_seconds)
            finally:
                attach.close()
