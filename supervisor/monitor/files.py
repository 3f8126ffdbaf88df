"""Files podman reads while we write them: pid files and exit files must never be seen torn."""
from __future__ import annotations

import os


def write_atomic(path: str, data: str, mode: int = 0o666) -> None:
    """Write to a temp file in the same directory, then rename over `path`."""
    d, base = os.path.split(path)
    tmp = os.path.join(d, f".{base}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)
    try:
        os.rename(tmp, path)
    except OSError:
        os.unlink(tmp)
        raise


def read_small(path: str, limit: int = 1 << 16) -> bytes:
    """A small file's bytes (at most `limit`), with plain syscalls: open() in text mode would run
    the io and codecs layers, whose objects every forked monitor then copies."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = b""
        while len(data) < limit and (chunk := os.read(fd, limit - len(data))):
            data += chunk
        return data
    finally:
        os.close(fd)


def write_small(path: str, data: bytes) -> None:
    """One write to an existing file (a /proc or cgroup knob), without the io layers."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def remove_stale(dir_fd: int, name: str) -> None:
    """Unlink `name` if it is there: looked up first, as the usual FileNotFoundError would make
    an exception and its traceback in every monitor, and copy their types' pages."""
    if os.access(name, os.F_OK, dir_fd=dir_fd, follow_symlinks=False):
        try:
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            pass


def touch(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    os.close(fd)
