"""podvisor-conmon's fork server: one long-lived interpreter with the monitor imported, which
forks a monitor for each launcher (launch.py) that hands it a container.

A forked monitor shares the server's pages (interpreter, modules, libc) until it writes them, so
each container costs only what its monitor dirties: the garbage collector is frozen before each
fork so that it never walks, and so copies, the server's objects, and everything a monitor may need
is imported and warmed up here first (warmup.py), never after the fork.

Per request the server accepts, freezes the collector, forks and closes its copy of the
connection: nothing else, and it keeps nothing (SIGCHLD is ignored, the kernel reaps the children),
because every page it writes between two forks stays, as a private copy, in each monitor forked
before. Its child forks the monitor at once and exits, so the monitor is orphaned and reparented
to init (systemd, where it runs), which reaps it and sees the container's status as before; it
never depends on the server, which can be killed at any time.

The monitor is the server's image, written as little as can be: CPython 3.11 writes the refcount of
every object it touches, so each function, code object, attribute name and constant a monitor uses
copies its 4 kB page. So it blocks its signals, becomes a session leader and child subreaper, and
forks a set-up process, which does all the rest before handing the container over (handoff.py):
- the checks (handover.py): the peer must be root (SO_PEERCRED), run this install's interpreter,
  sit in the same namespaces and root with the same capabilities, seccomp and no_new_privs (else
  its monitor would escape limits podman runs under), and send this install's token; anything else
  is refused (`F`) and the launcher runs the monitor itself (a token of a newer install on disk:
  the set-up process tells the server to go, SIGTERM through the server's pidfd);
- the launcher's fds (at the same numbers), environment, cwd, umask and rlimits (the last for the
  monitor too, by pid), podman's start byte, the launcher's cgroups (for both), `S`;
- then startup.run like a directly started first process, but it forks no monitor: it writes the
  waiting monitor's pid as conmon's, answers `X 0`, sets up the container's I/O and starts the
  runtime. The container reparents to the monitor, the nearest subreaper above it, once the runtime
  exits. Once podman has the container's pid, the set-up process sends the monitor its fds and the
  pickled `Monitor`, and exits; if it fails before, it runs the container's end itself and the
  monitor exits with its status.
The monitor then waits, with plain C signal handlers, for the first event on the fds its loop
watches (or its first timer): an idle container's monitor stays there. On that event it unpickles
the `Monitor` and runs the rest of the container's life.

Tried and not kept (bench/README.md): one fork instead of two, clone(2) with CLONE_PARENT so that
the monitor is born a child of the server's parent. It worked (the whole forked suite and the
systemd tests passed) but bought nothing then: copy-on-write never charges a page twice, and the
monitor's own set-up wrote most pages. bench/README.md has the figures.

Run: `python -m supervisor.monitor.server [SOCKET]`, by podvisor-conmon.socket (systemd socket
activation, LISTEN_FDS; serverunits.py) or on demand by a launcher (see launch.start_server).
"""
from __future__ import annotations

import _socket
import fcntl
import gc
import os
import signal
import socket
import stat
import sys

from supervisor.forksocket import socket_path

from . import handoff, handover, launch
from .identity import set_identity
from .linux import set_child_subreaper
from .main import CAUGHT_SIGNALS, Monitor, catch_signals
from .process import exit_status

PAIR = (int(socket.AF_UNIX), int(socket.SOCK_STREAM | socket.SOCK_CLOEXEC))  # ints: no enum members touched
SIGCHLD = int(signal.SIGCHLD)


class Server:
    def __init__(self, listener: socket.socket, path: str, activated: bool,
                 own: handover.Context) -> None:
        self.listener = listener
        self.path = path
        self.activated = activated
        self.own = own
        self.token = launch.install_token()
        self.pidfd = os.pidfd_open(os.getpid())  # for a first process to stop a stale server
        self.running = True
        self.inode = 0 if activated else os.stat(path).st_ino  # ours to remove at the end

    def serve(self) -> None:
        """Accept and fork, nothing else: every page the server writes between two forks stays, as
        a private copy, in each monitor forked before (measured ~45 kB per monitor when the server
        also polled, kept each child's pidfd and connection, reaped it and relayed its status).
        The first process answers its launcher itself, and the kernel reaps it (SIGCHLD ignored)."""
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        # _socket.socket._accept: (fd, address), no socket object made here per request
        accept = self.listener._accept  # type: ignore[attr-defined]
        while True:
            try:
                fd, _ = accept()
            except InterruptedError:
                continue
            gc.freeze()  # the child's collections never touch (copy) what exists now
            if os.fork() == 0:
                self._child(fd)
            os.close(fd)

    def _child(self, fd: int) -> None:
        code = 1
        try:
            self.listener.detach()
            if os.fork() != 0:  # the first fork's child just forks again: the monitor is orphaned
                os._exit(0)     # at once, and goes to init, which reaps it (systemd: its unit)
            code = self._monitor(fd)
        except BaseException as e:
            import traceback

            try:
                sys.stderr.write(f"[conmon:e]: monitor start failed: {e}\n{traceback.format_exc()}")
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
        finally:
            os._exit(code)

    def _monitor(self, conn: int) -> int:
        """The monitor, as the server's image: it forks its set-up process (handoff.py) and waits
        for the container, touching as little as it can meanwhile, so that it shares all else."""
        c = sys.modules["_signal"]  # signal.py's wrappers run the enum machinery
        c.pthread_sigmask(c.SIG_BLOCK, CAUGHT_SIGNALS)  # until the handlers are ours
        c.signal(SIGCHLD, c.SIG_DFL)  # the server's SIG_IGN would reap our container
        os.setsid()
        set_child_subreaper(True)
        # _socket's, not socket.py's: its Python layer would cost the monitor pages
        ours, theirs = _socket.socketpair(*PAIR)
        pid = os.fork()
        if pid == 0:
            ours.close()
            c.pthread_sigmask(c.SIG_UNBLOCK, CAUGHT_SIGNALS)
            return handover.first_process(socket.socket(fileno=conn), self.token, self.own,
                                          self.pidfd, (os.getppid(), theirs.detach()))
        theirs.close()
        os.close(conn)
        handed = handoff.receive(ours)
        status = exit_status(os.waitpid(pid, 0)[1])  # it exits once it has handed over
        if handed is None:  # it ended without: it did all, or failed
            return status
        # its SIGCHLD must not end the wait below; a container's, meanwhile, does (waitid)
        c.sigtimedwait((SIGCHLD,), 0)
        catch_signals(handed.wakeup_fd)  # signals go through the loop's wakeup fd from now on
        c.pthread_sigmask(c.SIG_UNBLOCK, CAUGHT_SIGNALS)
        set_identity(sys.argv[1:])  # podman's arguments, as handoff.receive set them
        if os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            handed.wait()
        monitor = handed.load()
        assert isinstance(monitor, Monitor)
        return monitor.resume()

    def stop(self) -> None:
        if not self.running:
            return
        self.running = False
        if not self.activated:
            try:
                if os.stat(self.path).st_ino == self.inode:
                    os.unlink(self.path)
            except OSError:
                pass
        self.listener.close()


def _activated() -> socket.socket | None:
    """The one socket systemd passed us (LISTEN_FDS), if it did."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or os.environ.get("LISTEN_FDS") != "1":
        return None
    for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(k, None)
    sock = socket.socket(fileno=3)
    os.set_inheritable(3, False)
    return sock


def _listen(path: str) -> tuple[socket.socket, bool] | None:
    """The socket systemd passed us, else a fresh one at `path` (None: another server has it)."""
    passed = _activated()
    if passed is not None:
        return passed, True
    d = os.path.dirname(path) or "."
    os.makedirs(d, mode=0o700, exist_ok=True)
    st = os.stat(d)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise SystemExit(f"podvisor-conmon server: {d} must be owned by root and not writable "
                         "by others")
    lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        return None  # another server is starting or serving here; the lock lives as long as we do
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o177)  # srw------- from the start
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    sock.listen(128)
    return sock, False


USAGE = "usage: python -m supervisor.monitor.server [SOCKET]\n"


def _exit_on_sigterm(signum: int, frame: object) -> None:
    sys.exit(0)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0].startswith("-"):
        sys.stderr.write(USAGE)
        return 2
    path = args[0] if args else socket_path()
    gc.disable()  # the server allocates little; frozen before each fork anyway
    from . import warmup

    warmup.preload()
    from .identity import set_identity

    made = _listen(path)
    if made is None:
        return 0
    listener, activated = made
    listener.setblocking(True)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    set_identity(["--fork-server", path])
    own = handover.context("self")
    warmup.plain_signals()
    warmup.warm_up(own)
    warmup.fill_free_blocks()
    for stream in (sys.stdout, sys.stderr):  # nothing is written to them from here on
        stream.flush()
    gc.freeze()
    server = Server(listener, path, activated, own)
    try:
        server.serve()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
