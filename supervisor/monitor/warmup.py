"""What the fork server does once, before its first fork, so that each forked monitor has less to
copy: import everything a monitor may use, run the hand-over and the option parser on a sample (the
interpreter's type cache, specialised bytecode and lazy imports are then made here, once), and fill
the object allocator's free blocks.

Measured on a forked first process (bench/bench_monitor.py, per-mapping private kB): the warm-up
halves what reading and checking a request copies (~450 -> ~230 kB).
"""
from __future__ import annotations

import gc
import os
import signal
import socket
import sys

from . import handover, launch

WARM_UP_ROUNDS = 20


def preload() -> None:
    """Import now what any monitor may import later, and load libc through ctypes once."""
    import syslog  # noqa: F401 - --syslog
    import traceback  # noqa: F401 - the monitor's last-resort report

    from . import (  # noqa: F401
        attach,
        cgroups,
        cli,
        control,
        handoff,
        identity,
        inotify,
        linux,
        main,
        notify,
        oom,
        process,
        runtime,
        startup,
        stdio,
        syncpipe,
        terminal,
    )
    from .logs import journald, k8s_file  # noqa: F401

    identity.load_setproctitle()
    handoff.prepare()
    # malloc's thresholds for the output path's buffers (container_io.start_output), set here
    # once: a forked monitor inherits them and makes no ctypes call of its own
    linux.keep_io_buffers_in_heap(stdio.HEAP_MMAP_THRESHOLD, stdio.HEAP_TRIM_THRESHOLD)
    libc = linux._c()
    for name in ("prctl", "mallopt", "malloc_trim"):  # ctypes makes (and caches) these on first use
        getattr(libc, name)


SAMPLE_ARGV = ["--api-version", "1", "-c", "0" * 64, "-u", "0" * 64, "-r", sys.executable,
               "-b", "/", "-p", "/pidfile", "-n", "warm-up", "--exit-dir", "/", "--full-attach",
               "-s", "-l", "k8s-file:/ctr.log", "--log-level", "warning", "--runtime-arg",
               "--log-format=json", "--runtime-arg", "--log", "--runtime-arg=/oci-log",
               "--conmon-pidfile", "/conmon.pid", "--exit-command", sys.executable,
               "--exit-command-arg", "--root", "--exit-command-arg", "/storage"]


def _handover_once(own: handover.Context) -> None:
    """A first process's checks on a request from ourselves, up to (not including) taking over."""
    from . import cgroups

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        request = launch.encode_request(SAMPLE_ARGV, [0])
        ours.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, (0).to_bytes(4, sys.byteorder))])
        req = handover.read_request(theirs)
        for fd in req.fds:
            os.close(fd)
        try:
            handover.check_peer(os.getpid(), 0, own)
        except handover.Refused:
            pass
        handover.limits_of(os.getpid())
        cgroups.join_cgroups_of(os.getpid(), os.getpid())  # already a member: only reads
        cgroups._mounts()
    finally:
        ours.close()
        theirs.close()


def _plain_signal(signalnum: int, handler: object) -> object:
    """signal.signal without its enum round trip: signal.py turns the old handler back into a
    Handlers member through the Enum machinery, whose objects (spread over many pages) every
    forked monitor then copies: measured ~90 kB per monitor for the first calls."""
    c = sys.modules["_signal"]  # the C module under signal.py (untyped for mypy)
    if handler is signal.SIG_DFL:
        handler = c.SIG_DFL
    elif handler is signal.SIG_IGN:
        handler = c.SIG_IGN
    return c.signal(signalnum, handler)


def plain_signals() -> None:
    """In the fork server only: its monitors call signal.signal through _plain_signal."""
    signal.signal = _plain_signal  # type: ignore[assignment]


def warm_up(own: handover.Context) -> None:
    from . import cli, errors

    for _ in range(WARM_UP_ROUNDS):
        try:
            cli.parse(SAMPLE_ARGV)
        except SystemExit:
            break
        _handover_once(own)
    errors.set_level("warning")


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
