"""The process podman execs (from bin/podvisor-conmon): hand the monitor's start to the fork
server when one answers, else run the monitor here, as before.

Through the server (see server.py) the monitor is forked from a long-lived, pre-imported
interpreter and shares its memory, instead of paying a whole Python start per container. podman
sees the same protocol either way: this process passes every fd it has (stdio, the sync, start and
attach pipes, preserved and LISTEN_FDS fds), its argv, environment, cwd and umask over a unix socket
(SCM_RIGHTS), waits until the monitor's first process is done (it has read the start pipe, forked the
monitor and written the conmon pid file) and exits with that process's status, like conmon's first
process.

PODVISOR_CONMON_SERVER: `on` (default) use the server if one answers, and where systemd does not run
start one on demand for the next containers; `off` never; `only` fail rather than run directly
(tests). PODVISOR_CONMON_SOCKET overrides the socket's path.

Only the standard library's C parts are imported here (_socket, zlib): this runs for every
container, and the direct path must not get slower.
"""
from __future__ import annotations

import os
import sys

from supervisor.forksocket import socket_path

TYPE_CHECKING = False  # typing costs ~2 ms of every start; only type checkers need it
if TYPE_CHECKING:
    import _socket

PROTOCOL = b"podvisor-conmon-fork/1"
MAX_FDS = 253  # SCM_MAX_FD


def install_token() -> bytes:
    """Which install and which build of it: a reinstall changes the files' inode and mtime, so
    a server started before an upgrade never serves the new launcher."""
    from .. import __version__ as VERSION

    here = os.path.dirname(os.path.realpath(__file__))
    st = os.stat(os.path.join(here, "main.py"))
    return f"{VERSION}:{here}:{st.st_ino}:{st.st_mtime_ns}".encode()


def _open_fds() -> list[int]:
    fds = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            os.fstat(fd)  # listdir's own directory fd is closed again by now
        except OSError:
            continue
        fds.append(fd)
    return sorted(fds)


def _safe_dir(path: str) -> bool:
    """Only a socket in a root-owned directory nobody else can write to is the server's."""
    try:
        st = os.stat(os.path.dirname(path) or ".")
    except OSError:
        return False
    return st.st_uid == 0 and not st.st_mode & 0o022


def encode_request(argv: list[str], fds: list[int]) -> bytes:
    env = [k + b"=" + v for k, v in os.environb.items()]
    umask = os.umask(0)
    os.umask(umask)
    fields = [PROTOCOL, install_token(), os.getcwdb(), b"%d" % umask,
              b"%d" % len(argv), *map(os.fsencode, argv),
              b"%d" % len(env), *env,
              b"%d" % len(fds), *(b"%d" % fd for fd in fds)]
    payload = b"\0".join(fields)
    return len(payload).to_bytes(4, "little") + payload


def served(argv: list[str], mode: str) -> int | None:
    """The first process's exit status through the server, or None: run the monitor here."""
    import _socket

    path = socket_path()
    fds = _open_fds()
    if len(fds) > MAX_FDS or not _safe_dir(path):
        return None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        try:
            sock.connect(path)
        except OSError:
            if mode == "on":
                start_server(path)
            return None
        cred = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
        if int.from_bytes(cred[4:8], sys.byteorder) != 0:  # uid: the server must be root
            return None
        request = encode_request(argv, fds)
        rights = b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds)
        sent = sock.sendmsg([request], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
        if sent < len(request):
            sock.sendall(request[sent:])
        return _await(sock)
    except OSError:
        return None  # the server went away before taking anything over
    finally:
        sock.close()


def _await(sock: _socket.socket) -> int | None:
    """The first process's replies (the server forks it and is out of it), one line each: `S` it has
    taken over (from here on it owns the start pipe), `F reason` refused (nothing was touched),
    `X code` its status, once it has forked the monitor and written the conmon pid file."""
    buf = b""
    started = False
    while True:
        data = sock.recv(256)
        if not data:
            # before `S`: nothing was taken over, run here. After: the first process died before
            # saying how it went (the server is no party by then); the sync pipe tells podman
            return 0 if started else None
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line == b"S":
                started = True
            elif line.startswith(b"X "):
                return int(line[2:])
            elif line.startswith(b"F"):
                if os.environ.get("PODVISOR_CONMON_SERVER") == "only":
                    sys.stderr.write(f"[conmon:e]: fork server refused: {line[2:].decode()}\n")
                    return 1
                return None


def start_server(path: str) -> None:
    """Where systemd runs, podvisor-conmon.socket starts the server; elsewhere start one for the
    next containers (this one runs directly), detached from this process and its fds."""
    if os.path.isdir("/run/systemd/system"):
        return
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    except OSError:
        return
    if not _safe_dir(path):
        return
    site = sys.path[0]
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.closerange(3, 1 << 16)
                code = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
                        "from supervisor.monitor.server import main; sys.exit(main(sys.argv[1:]))")
                env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
                os.execve(sys.executable, [sys.executable, "-I", "-S", "-c", code, site, path],
                          env)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def main() -> int:
    argv = sys.argv[1:]
    mode = os.environ.get("PODVISOR_CONMON_SERVER", "on")
    # --sync: the first process is the monitor and podman waits for it; nothing to share
    if mode != "off" and "--sync" not in argv:
        code = served(argv, mode)
        if code is not None:
            os._exit(code)
        if mode == "only":
            sys.stderr.write("[conmon:e]: no fork server answers at " + socket_path() + "\n")
            os._exit(1)
    from .__main__ import main as direct

    return direct()
