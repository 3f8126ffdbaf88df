"""The monitor's first process on the fork server's side: the set-up process a forked monitor
forks for one launcher (see server.py for the whole design). It checks the launcher, takes over
its fds, environment, cwd, umask, rlimits and cgroups, and then runs startup.run as a directly
started first process would, handing the container over to the waiting monitor (handoff.py).

Plain syscalls and bytes where it can: it is the monitor's child and exits, so what it touches
is not the monitor's, but it is still on every container's start path.
"""
from __future__ import annotations

import gc
import os
import resource
import select
import signal
import socket
import sys

from . import launch
from .process import put_fds, set_environ

NAMESPACES = ("mnt", "pid", "net", "ipc", "uts", "user", "cgroup")
SECURITY_FIELDS = (b"CapInh:", b"CapPrm:", b"CapEff:", b"CapBnd:", b"CapAmb:", b"NoNewPrivs:",
                   b"Seccomp:")
MAX_REQUEST = 4 << 20
REQUEST_TIMEOUT = 10.0  # seconds for a launcher to send its request
STALE = 3  # a first process's exit status: the launcher is of another install (or build)
MSG_CTRUNC = int(socket.MSG_CTRUNC)  # a plain int: `flags & MsgFlag` runs the enum machinery
RLIMITS = tuple(getattr(resource, n) for n in dir(resource) if n.startswith("RLIMIT_"))

Context = tuple[tuple[str, object], ...]


class Refused(Exception):
    pass


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def context(pid: int | str) -> Context:
    """What a monitor inherits from where it starts and may not gain by coming from us: the
    interpreter, namespaces, root, capabilities, seccomp, no_new_privs, LSM label."""
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


def check_peer(pid: int, uid: int, own: Context) -> None:
    """The launcher must be root, this install's interpreter, and no more confined than us."""
    if uid != 0 or os.geteuid() != 0:
        raise Refused(f"peer uid {uid}: only root")
    theirs = context(pid)
    if theirs != own:
        for (what, a), (_, b) in zip(theirs, own, strict=False):
            if a != b:
                raise Refused(f"peer has another {what}" if what != "interpreter"
                              else f"peer runs {a}, not {b}")
        raise Refused("peer differs")


class Request:
    """launch.encode_request's fields: protocol, token, cwd, umask, argv, environment, fd numbers."""

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
        self.env: dict[bytes, bytes] = {}
        for e in f[i + 1:i + 1 + m]:
            key, _, value = e.partition(b"=")
            self.env[key] = value
        i += 1 + m
        k = int(f[i])
        self.targets = [int(x) for x in f[i + 1:i + 1 + k]]
        if len(self.targets) != len(fds):
            raise Refused(f"{len(fds)} fds for {len(self.targets)} numbers")
        self.fds = fds


def _rights(anc: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, blob in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += [int.from_bytes(blob[i:i + 4], sys.byteorder, signed=True)
                    for i in range(0, len(blob) - 3, 4)]
    return fds


def read_request(conn: socket.socket) -> Request:
    fds: list[int] = []
    try:
        data, anc, flags, _ = conn.recvmsg(65536, socket.CMSG_SPACE(launch.MAX_FDS * 4))
        fds = _rights(anc)
        if flags & MSG_CTRUNC:
            raise Refused("too many fds")
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


def send(conn: socket.socket, line: bytes) -> None:
    try:
        conn.sendall(line + b"\n")
    except OSError:
        pass


def place_fds(req: Request, keep: socket.socket, also: int = -1) -> tuple[socket.socket, int]:
    """Give the child exactly the launcher's fds at the launcher's numbers, plus `keep` and
    `also` (-1: none) at new numbers above them."""
    conn = keep.detach()  # its number is about to be closed, and may be a target
    kept = put_fds(req.fds, req.targets, [True] * len(req.fds), [conn] if also < 0 else [conn, also])
    return socket.socket(fileno=kept[0]), (kept[1] if also >= 0 else -1)


def wait_start(fd: int) -> None:
    """podman writes the start pipe once it has put the launcher in its cgroups: wait for that
    without reading it (startup.run reads it, as in a direct start)."""
    p = select.poll()
    p.register(fd, select.POLLIN)
    while True:
        try:
            p.poll()
            return
        except InterruptedError:
            continue


def limits_of(pid: int) -> list[tuple[int, tuple[int, int]]]:
    out = []
    for r in RLIMITS:
        try:
            out.append((r, resource.prlimit(pid, r)))
        except (OSError, ValueError):
            pass
    return out


def _read_request(conn: socket.socket) -> tuple[Request, int, int] | int:
    """The request and the launcher's pid and uid, or the exit status of a bad one (reported)."""
    try:
        conn.settimeout(REQUEST_TIMEOUT)
        cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        peer = int.from_bytes(cred[0:4], sys.byteorder)
        uid = int.from_bytes(cred[4:8], sys.byteorder)
        # read first even from a stranger: closing on unread data would reset the connection
        # and the launcher would never see why it was refused
        return read_request(conn), peer, uid
    except (Refused, OSError, ValueError, IndexError) as e:
        send(conn, f"F {e}".encode())
        return 1


def _prepare(targets: tuple[int, ...], req: Request, peer: int, uid: int, token: bytes,
             own: Context) -> bytes:
    """Check the launcher and put `targets` (the monitor, if already forked, and the first
    process) in its place where that needs no more than a pid: their rlimits, then, once podman
    says go, their cgroups. Returns the reply: an exit status byte (0: done) and the reason of a
    refusal."""
    from .cgroups import join_cgroups_of

    try:
        check_peer(peer, uid, own)
    except (Refused, OSError, ValueError) as e:
        return b"\1" + str(e).encode()
    if req.token != token:
        return bytes([STALE]) + b"install token differs"
    for r, lim in limits_of(peer):
        for target in targets:
            try:
                resource.prlimit(target, r, lim)
            except (OSError, ValueError):
                pass
    try:
        start = int(req.env[b"_OCI_STARTPIPE"])
        wait_start(req.fds[req.targets.index(start)])
    except (KeyError, ValueError):
        pass
    try:
        for target in targets:
            join_cgroups_of(peer, target)
    except OSError as e:
        return b"\1cannot join the launcher's cgroups: " + str(e).encode()
    return b"\0"


def _prepared(req: Request, peer: int, uid: int, token: bytes, own: Context, monitor: int) -> bytes:
    """_prepare in a child of ours: the pages it touches are copied into that child, which exits,
    not into this process and the monitor it forks (measured ~0.3 MB per monitor)."""
    r, w = os.pipe2(os.O_CLOEXEC)
    me = os.getpid()
    pid = os.fork()
    if pid == 0:
        reply = b"\1internal error"
        try:
            os.close(r)
            reply = _prepare((monitor, me) if monitor else (me,), req, peer, uid, token, own)
        finally:
            try:
                os.write(w, reply)
            finally:
                os._exit(0)
    os.close(w)
    reply = b""
    while chunk := os.read(r, 4096):
        reply += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return reply


def first_process(conn: socket.socket, token: bytes, own: Context, server: int,
                  monitor: tuple[int, int] | None = None) -> int:
    """In the server's descendant (`server`: a pidfd of the server). Answers the launcher itself:
    `F reason` (refused), `S` (taken over), then `X code` once startup.run has written the monitor's
    pid, or has failed before that. `monitor`: the pid of the monitor waiting for this process's
    set-up, and the fd to hand it over on (handoff.py)."""
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    got = _read_request(conn)
    if isinstance(got, int):
        return got
    req, peer, uid = got
    reply = _prepared(req, peer, uid, token, own, monitor[0] if monitor else 0)
    if reply[:1] != b"\0":  # refused, or the child died before it could say
        send(conn, b"F " + (reply[1:] or b"checking the launcher failed"))
        if reply[:1] == bytes([STALE]):
            _stop_if_stale(token, server)
        return reply[0] if reply else 1
    conn.settimeout(None)
    conn, handoff_fd = place_fds(req, conn, monitor[1] if monitor else -1)
    set_environ(req.env)
    os.chdir(req.cwd)
    os.umask(req.umask)
    from .identity import set_identity
    from .startup import Launcher, run

    set_identity(req.argv)
    send(conn, b"S")
    launcher = Launcher(conn.detach())  # startup.run answers `X 0` once the monitor's pid is out
    sys.argv[1:] = req.argv
    gc.enable()
    try:
        code = run(req.argv, launcher, (monitor[0], handoff_fd) if monitor else None)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
    launcher.answer(code)  # unless answered: it failed before the monitor's pid was out
    return code


def _stop_if_stale(token: bytes, server: int) -> None:
    """The launcher is of another install: if ours changed on disk, the server is the old one and
    makes way (SIGTERM: it stops listening and exits; a new one serves the next launcher)."""
    try:
        stale = launch.install_token() != token
    except OSError:
        stale = True
    if stale:
        try:  # through its pidfd: no other process that got the server's pid since
            signal.pidfd_send_signal(server, signal.SIGTERM)
        except OSError:
            pass
