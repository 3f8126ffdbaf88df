"""A minimal inotify binding (the standard library has none), loaded only for cgroup v2."""
from __future__ import annotations

import ctypes
import os
import sys

IN_MODIFY = 0x2
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

_libc = ctypes.CDLL(None, use_errno=True)


class Inotify:
    def __init__(self) -> None:
        fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        self.fd = int(fd)

    def add_watch(self, path: str, mask: int) -> int:
        wd = _libc.inotify_add_watch(self.fd, os.fsencode(path), ctypes.c_uint32(mask))
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
        return int(wd)

    def read_modified(self) -> bool:
        """Drain the queue: whether any event in it was IN_MODIFY (not, say, the watch's removal)."""
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # BlockingIOError: nothing queued
            return False
        at, modified = 0, False
        while at + 16 <= len(data):  # struct inotify_event: wd, mask, cookie, len, name
            modified |= bool(int.from_bytes(data[at + 4:at + 8], sys.byteorder) & IN_MODIFY)
            at += 16 + int.from_bytes(data[at + 12:at + 16], sys.byteorder)
        return modified
