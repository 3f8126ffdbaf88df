"""podvisor-conmon's fork server: one long-lived interpreter with the monitor imported, which
forks a monitor for each launcher (launch.py) that hands it a container.

A forked monitor shares the server's pages (interpreter, modules, libc) until it writes them, so
each container costs only what its monitor dirties: the garbage collector is frozen before each
fork so that it never walks, and so copies, the server's objects, and everything a monitor may need
is imported here first, never after the fork.

Per request: the peer must be root (SO_PEERCRED), run this install's interpreter, sit in the same
namespaces and root with the same capabilities, seccomp and no_new_privs (else its monitor would
escape limits podman runs under), and send this install's token; anything else is refused (`F`)
and the launcher runs the monitor itself. Then the server forks the monitor's first process:
it takes the launcher's fds (at the same numbers), environment, cwd, umask and rlimits, waits for
podman's start byte, joins the launcher's cgroups, says `S`, and runs main.run like a directly
started first process: it forks the monitor, writes the conmon pid file and exits. The server
relays that exit status (`X code`). The monitor is the first process's child, so it is orphaned at
once and reparented to init (systemd, where it runs), which reaps it and sees the container's status
as before; it never depends on the server, which can be killed at any time.

What a forked monitor still costs (bench/, 20 and 100 idle containers): ~2.5 MB private against a
direct start's ~5.5 MB and conmon's ~0.33 MB. It is copy-on-write of refcounts: CPython 3.11 writes
every object it touches, so each function, code object and constant a monitor uses copies its 4 kB
page. A page-level diff against the server (/proc/PID/pagemap) puts the interpreter's own data
(~450 kB) and argparse's code and functions first; a table-driven option parser is the next step.

Run: `python -m supervisor.monitor.server [SOCKET]`, by podvisor-conmon.socket (systemd socket
activation, LISTEN_FDS) or on demand by a launcher (see launch.start_server).
"""
from __future__ import annotations

import fcntl
import gc
import os
import resource
import select
import signal
import socket
import stat
import sys

from . import launch

NAMESPACES = ("mnt", "pid", "net", "ipc", "uts", "user", "cgroup")
SECURITY_FIELDS = (b"CapInh:", b"CapPrm:", b"CapEff:", b"CapBnd:", b"CapAmb:", b"NoNewPrivs:",
                   b"Seccomp:")
MAX_REQUEST = 4 << 20
REQUEST_TIMEOUT = 10.0  # seconds for a launcher to send its request
WARM_UP_ROUNDS = 20
STALE = 3  # a first process's exit status: the launcher is of another install (or build)


def preload() -> None:
    """Import now what any monitor may import later, and load libc through ctypes once."""
    import syslog  # noqa: F401 - --syslog
    import traceback  # noqa: F401 - the monitor's last-resort report

    from . import (  # noqa: F401
        attach,
        cgroups,
        cli,
        control,
        identity,
        inotify,
        linux,
        main,
        notify,
        oom,
        process,
        runtime,
        stdio,
        syncpipe,
        terminal,
    )
    from .logs import journald, k8s_file  # noqa: F401

    identity._setproctitle()
    linux._c()
    # run the option parser a few times: its lazy imports, regex and gettext caches and the
    # interpreter's specialised bytecode are then made here, once, not in every monitor
    sample = ["--api-version", "1", "-c", "0" * 64, "-u", "0" * 64, "-r", sys.executable,
              "-b", "/", "-p", "/pidfile", "-n", "warm-up", "--exit-dir", "/", "--full-attach",
              "-s", "-l", "k8s-file:/ctr.log", "--log-level", "warning", "--runtime-arg",
              "--log-format=json", "--runtime-arg", "--log", "--runtime-arg=/oci-log",
              "--conmon-pidfile", "/conmon.pid", "--exit-command", sys.executable,
              "--exit-command-arg", "--root", "--exit-command-arg", "/storage"]
    for _ in range(WARM_UP_ROUNDS):
        try:
            cli.parse(sample)
        except SystemExit:
            break


_fillers: list[object] = []


def _free_blocks() -> dict[int, int]:
    """pymalloc's size classes -> free blocks in pools already allocated (sys._debugmallocstats,
    which writes to the C stderr: caught in a memfd)."""
    out: dict[int, int] = {}
    if not hasattr(sys, "_debugmallocstats") or not hasattr(os, "memfd_create"):
        return out
    fd = os.memfd_create("mallocstats", os.MFD_CLOEXEC)
    saved = os.dup(2)
    try:
        sys.stderr.flush()
        os.dup2(fd, 2)
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    os.close(fd)
    for line in data.decode(errors="replace").splitlines():
        f = line.split()
        if len(f) == 5 and all(x.isdigit() for x in f):
            out[int(f[1])] = int(f[4])
        elif out and not f:
            break
    return out


def fill_free_blocks() -> None:
    """Occupy every free block of the server's object allocator with an object nobody touches.

    A forked monitor's new objects would otherwise land in those blocks, scattered over pools
    the server shares with every monitor, and each one copies its whole page: measured, that was
    most of a forked monitor's private memory. Filled, the monitor's objects go to fresh pools."""
    gc.collect()  # a full collection also empties the interpreter's free lists into the pools
    for size, free in _free_blocks().items():
        if size >= 48:
            _fillers.extend(bytes(size - 33) for _ in range(free))  # header 32 + NUL: one block
        elif size == 32:
            _fillers.extend(10 ** 12 + i for i in range(free))  # a two-digit int: 32 bytes


class Refused(Exception):
    pass


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def context(pid: int | str) -> tuple[tuple[str, object], ...]:
    """What a monitor inherits from where it starts and may not gain by coming from us: the
    interpreter, namespaces, root, capabilities, seccomp, no_new_privs, LSM label. Plain
    syscalls and bytes only: this runs in every forked first process, and every object touched
    there is a page copied from the server."""
    out: list[tuple[str, object]] = [("interpreter", os.readlink(f"/proc/{pid}/exe"))]
    for ns in NAMESPACES:
        try:
            out.append((f"{ns} namespace", os.readlink(f"/proc/{pid}/ns/{ns}")))
        except FileNotFoundError:
            pass
    st = os.stat(f"/proc/{pid}/root")
    out.append(("root directory", (st.st_dev, st.st_ino)))
    status = _read(f"/proc/{pid}/status")
    out.append(("capabilities, seccomp or no_new_privs",
                [line for line in status.split(b"\n") if line.startswith(SECURITY_FIELDS)]))
    try:
        out.append(("security label", _read(f"/proc/{pid}/attr/current")))
    except OSError:
        pass
    return tuple(out)


_own_context: tuple[tuple[str, object], ...] = ()


def check_peer(pid: int, uid: int) -> None:
    """The launcher must be root, this install's interpreter, and no more confined than us."""
    if uid != 0 or os.geteuid() != 0:
        raise Refused(f"peer uid {uid}: only root")
    theirs = context(pid)
    if theirs != _own_context:
        for (what, a), (_, b) in zip(theirs, _own_context):
            if a != b:
                raise Refused(f"peer has another {what}" if what != "interpreter"
                              else f"peer runs {a}, not {b}")
        raise Refused("peer differs")


class Request:
    def __init__(self, payload: bytes, fds: list[int]) -> None:
        f = payload.split(b"\0")
        if f[0] != launch.PROTOCOL:
            raise Refused(f"protocol {f[0][:40]!r}")
        self.token = f[1]
        self.cwd = f[2]
        self.umask = int(f[3])
        n = int(f[4])
        self.argv = [os.fsdecode(a) for a in f[5:5 + n]]
        i = 5 + n
        m = int(f[i])
        self.env = dict(e.split(b"=", 1) for e in f[i + 1:i + 1 + m])
        i += 1 + m
        k = int(f[i])
        self.targets = [int(x) for x in f[i + 1:i + 1 + k]]
        if len(self.targets) != len(fds):
            raise Refused(f"{len(fds)} fds for {len(self.targets)} numbers")
        self.fds = fds


def read_request(conn: socket.socket) -> Request:
    fds: list[int] = []
    data = b""
    try:
        msg, anc, flags, _ = conn.recvmsg(65536, socket.CMSG_SPACE(launch.MAX_FDS * 4))
        for level, kind, blob in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += [int.from_bytes(blob[i:i + 4], sys.byteorder, signed=True)
                        for i in range(0, len(blob) - 3, 4)]
        if flags & socket.MSG_CTRUNC:
            raise Refused("too many fds")
        data = msg
        if len(data) < 4:
            raise Refused("short request")
        size = int.from_bytes(data[:4], "little")
        if size > MAX_REQUEST:
            raise Refused("request too large")
        while len(data) < size + 4:
            more = conn.recv(size + 4 - len(data))
            if not more:
                raise Refused("truncated request")
            data += more
        for fd in fds:
            os.set_inheritable(fd, False)  # until placed in the monitor
        return Request(data[4:4 + size], fds)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _send(conn: socket.socket, line: bytes) -> None:
    try:
        conn.sendall(line + b"\n")
    except OSError:
        pass


# ---- the monitor's first process (in the forked child) ------------------------------------------

def _place_fds(req: Request, keep: socket.socket) -> socket.socket:
    """Give the child exactly the launcher's fds at the launcher's numbers (plus `keep`)."""
    present = [int(n) for n in os.listdir("/proc/self/fd")]
    base = max([*present, *req.targets, 2]) + 1
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, base) for fd in req.fds]
    conn_fd = fcntl.fcntl(keep.fileno(), fcntl.F_DUPFD_CLOEXEC, base)
    keep.detach()  # its number is about to be closed, and may be a target: never close it again
    wanted = {*high, conn_fd}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in wanted:
            try:
                os.close(fd)
            except OSError:
                pass
    for src, dst in zip(high, req.targets):
        os.dup2(src, dst, inheritable=True)
        os.close(src)
    return socket.socket(fileno=conn_fd)


def _wait_start(env: dict[bytes, bytes]) -> None:
    """podman writes the start pipe once it has put the launcher in its cgroups: wait for that
    without reading it (main.run reads it, as in a direct start)."""
    try:
        fd = int(env[b"_OCI_STARTPIPE"])
    except (KeyError, ValueError):
        return
    p = select.poll()
    p.register(fd, select.POLLIN)
    while True:
        try:
            p.poll()
            return
        except InterruptedError:
            continue


RLIMITS = tuple(getattr(resource, n) for n in dir(resource) if n.startswith("RLIMIT_"))


def _limits_of(pid: int) -> list[tuple[int, tuple[int, int]]]:
    out = []
    for r in RLIMITS:
        try:
            out.append((r, resource.prlimit(pid, r)))
        except (OSError, ValueError):
            pass
    return out


def _set_environ(env: dict[bytes, bytes]) -> None:
    """Make `env` the process's environment (the C one, which exec passes on, and os.environ)."""
    data = getattr(os.environ, "_data", None)  # CPython's: bytes -> bytes, spares re-encoding
    if not isinstance(data, dict):
        os.environ.clear()
        for k, v in env.items():
            os.environ[os.fsdecode(k)] = os.fsdecode(v)
        return
    for k in list(data):
        os.unsetenv(k)
    data.clear()
    for k, v in env.items():
        os.putenv(k, v)
        data[k] = v


def first_process(conn: socket.socket, token: bytes) -> int:
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    try:
        conn.settimeout(REQUEST_TIMEOUT)
        cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        peer = int.from_bytes(cred[0:4], sys.byteorder)
        uid = int.from_bytes(cred[4:8], sys.byteorder)
        # read first even from a stranger: closing on unread data would reset the connection
        # and the launcher would never see why it was refused
        req = read_request(conn)
        check_peer(peer, uid)
    except (Refused, OSError, ValueError, IndexError) as e:
        _send(conn, f"F {e}".encode())
        return 1
    if req.token != token:
        _send(conn, b"F install token differs")
        return STALE
    limits = _limits_of(peer)
    conn.settimeout(None)
    conn = _place_fds(req, conn)
    _set_environ(req.env)
    os.chdir(req.cwd)
    os.umask(req.umask)
    for r, lim in limits:
        try:
            resource.setrlimit(r, lim)
        except (OSError, ValueError):
            pass
    from .cgroups import join_cgroups_of
    from .identity import set_identity
    from .main import run

    _wait_start(req.env)
    try:
        join_cgroups_of(peer)
    except OSError as e:
        _send(conn, f"F cannot join the launcher's cgroups: {e}".encode())
        return 1
    set_identity(req.argv)
    _send(conn, b"S")
    conn.close()
    sys.argv[1:] = req.argv
    gc.enable()
    try:
        return run(req.argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass


# ---- the server -----------------------------------------------------------------------------------

class Server:
    def __init__(self, listener: socket.socket, path: str, activated: bool) -> None:
        self.listener = listener
        self.path = path
        self.activated = activated
        self.token = launch.install_token()
        self.poll = select.poll()
        self.poll.register(listener.fileno(), select.POLLIN)
        self.children: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, launcher)
        self.running = True
        self.inode = 0 if activated else os.stat(path).st_ino  # ours to remove at the end

    def serve(self) -> None:
        while self.running or self.children:
            try:
                events = self.poll.poll()
            except InterruptedError:
                continue
            for fd, _ in events:
                if fd == self.listener.fileno():
                    self._accept()
                else:
                    self._reap(fd)

    def _accept(self) -> None:
        """Fork at once: every object the server touches after a fork stays, as a private copy,
        in every monitor forked before it, so reading and checking the request is the child's."""
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        gc.freeze()  # the child's collections never touch (copy) what exists now
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                self.listener.detach()
                for _, other in self.children.values():
                    other.detach()
                code = first_process(conn, self.token)
            except BaseException as e:
                import traceback

                try:
                    sys.stderr.write(f"[conmon:e]: monitor start failed: {e}\n"
                                     f"{traceback.format_exc()}")
                    sys.stderr.flush()
                except (OSError, ValueError):
                    pass
            finally:
                os._exit(code)
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:  # no pidfds: the first process lives for milliseconds, wait for it
            _, status = os.waitpid(pid, 0)
            self._done(conn, status)
            return
        self.children[pidfd] = (pid, conn)
        self.poll.register(pidfd, select.POLLIN)

    def _done(self, conn: socket.socket, status: int) -> None:
        code = _code(status)
        if code == STALE:
            try:
                stale = launch.install_token() != self.token
            except OSError:
                stale = True
            if stale:  # we were upgraded on disk: make way for a server of the new install
                self.stop()
        _send(conn, b"X %d" % code)  # ignored by a launcher that was refused
        conn.close()

    def _reap(self, pidfd: int) -> None:
        pid, conn = self.children.pop(pidfd)
        self.poll.unregister(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        self._done(conn, status)

    def stop(self) -> None:
        self.running = False
        self.poll.unregister(self.listener.fileno())
        if not self.activated:
            try:
                if os.stat(self.path).st_ino == self.inode:
                    os.unlink(self.path)
            except OSError:
                pass
        self.listener.close()


def _code(status: int) -> int:
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else 1


def _listen(path: str) -> tuple[socket.socket, bool] | None:
    """The socket systemd passed us, else a fresh one at `path` (None: another server has it)."""
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and os.environ.get("LISTEN_FDS") == "1":
        for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(k, None)
        sock = socket.socket(fileno=3)
        os.set_inheritable(3, False)
        return sock, True
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


SOCKET_UNIT = """\
[Unit]
Description=podvisor-conmon fork server socket
{doc}
[Socket]
ListenStream={socket}
SocketMode=0600
DirectoryMode=0700
# root only: the server also checks SO_PEERCRED, namespaces and the install of every launcher

[Install]
WantedBy=sockets.target
"""

SERVICE_UNIT = """\
[Unit]
Description=podvisor-conmon fork server (forks the container monitors)
{doc}Requires=podvisor-conmon.socket
After=podvisor-conmon.socket

[Service]
ExecStart={python} -I -m supervisor.monitor.server {socket}
# monitors leave this cgroup (each joins its launcher's) before they run; a first process still
# here when the server stops must finish its hand-over, so only the server itself is signalled
KillMode=process
Restart=on-failure
"""


def _needs_quoting(word: str) -> bool:
    return any(c.isspace() or c in "\"'\\%$;" for c in word)


def _unit_word(word: str) -> str:
    """One ExecStart= word as systemd reads it: quoted, with specifiers and variables escaped."""
    if not _needs_quoting(word):
        return word
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def write_units(directory: str) -> list[str]:
    """podvisor-conmon.socket and .service for this install (its interpreter and socket)."""
    python = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "python3")
    if not os.path.exists(python):
        python = sys.executable
    doc = os.path.abspath(__file__)
    values = {"socket": launch.socket_path(), "python": _unit_word(python),
              # a URL: only where the path needs no escaping (a checkout may hold blanks)
              "doc": "" if _needs_quoting(doc) else f"Documentation=file://{doc}\n"}
    written = []
    for name, text in (("podvisor-conmon.socket", SOCKET_UNIT),
                       ("podvisor-conmon.service", SERVICE_UNIT)):
        path = os.path.join(directory, name)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text.format(**values))
        os.rename(tmp, path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "--write-units":
        for path in write_units(args[1]):
            print(path)
        return 0
    if args and args[0].startswith("-"):
        sys.stderr.write("usage: python -m supervisor.monitor.server [SOCKET]\n"
                         "       python -m supervisor.monitor.server --write-units DIR\n")
        return 2
    path = args[0] if args else launch.socket_path()
    gc.disable()  # the server allocates little; frozen before each fork anyway
    preload()
    from .identity import set_identity

    made = _listen(path)
    if made is None:
        return 0
    listener, activated = made
    listener.setblocking(False)
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(0))
    set_identity(["--fork-server", path])
    global _own_context
    _own_context = context("self")
    fill_free_blocks()
    gc.freeze()
    server = Server(listener, path, activated)
    try:
        server.serve()
    finally:
        if server.running:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
