"""Process bookkeeping: inherited fds, exit statuses, zombies."""
from __future__ import annotations

import fcntl
import os


def getenv(name: str) -> str | None:
    """os.environ.get without os.environ's Python layers (Mapping.get, __getitem__, the key and
    value codecs), whose functions and constants every forked monitor would copy."""
    data = getattr(os.environ, "_data", None)  # CPython's: bytes -> bytes
    if not isinstance(data, dict):
        return os.environ.get(name)
    value = data.get(name.encode())
    return None if value is None else value.decode("utf-8", "surrogateescape")


def open_fds() -> set[int]:
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        fds.add(int(name))
    # listdir's own directory fd is already closed again
    return {fd for fd in fds if _valid(fd)}


def _valid(fd: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)  # no stat_result made, unlike os.fstat
        return True
    except OSError:
        return False


def put_fds(fds: list[int], targets: list[int], inheritable: list[bool], keep: list[int]) -> list[int]:
    """Make `fds` open at the numbers `targets` (with these inheritable flags) and `keep` open at
    new numbers above them all, which are returned; every other fd is closed."""
    base = max([*fds, *targets, *keep, 2]) + 1
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, base) for fd in fds]
    kept = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, base) for fd in keep]
    low = 0
    for fd in sorted([*high, *kept]):  # close_range(2) around them: the originals and all else
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)
    for src, dst, inh in zip(high, targets, inheritable, strict=True):
        os.dup2(src, dst, inheritable=inh)
        os.close(src)
    return kept


def exit_status(wait_status: int) -> int:
    """conmon's status: the exit code, or 128 + the signal that killed the process."""
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    if os.WIFEXITED(wait_status):
        return os.WEXITSTATUS(wait_status)
    return -1


def close_fds_from(first: int) -> None:
    """Close every open fd >= `first` (those listed in /proc/self/fd: no 64k close() calls)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        os.closerange(first, 65536)
        return
    for fd in fds:
        if fd >= first:
            try:
                os.close(fd)
            except OSError:
                pass  # listdir's own directory fd, already closed


def reap_zombies() -> None:
    """Collect children that have already exited (e.g. a runtime that failed), never wait."""
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


def set_environ(env: dict[bytes, bytes]) -> None:
    """Make `env` the process's environment: os.environb keeps the C one (which exec passes on)
    and os.environ, whose data it shares, in step."""
    for k in list(os.environb):  # not clear(): its popitem lists the keys again for each one
        del os.environb[k]
    os.environb.update(env)
