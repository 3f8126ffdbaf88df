"""`podvisor ready-probe`: readiness, startup and liveness probes for podman 4.3.1, which has no
--sdnotify=healthy and cannot act on a failed healthcheck.

A probed container's unit runs (``Type=notify``, ``NotifyAccess=all``)::

    podvisor ready-probe [probe options] -- podman [global flags] run --sdnotify=ignore
        --conmon-pidfile=%t/%n.pid --cidfile=%t/%n.ctr-id --detach ...

1. run that podman command (``--sdnotify=ignore``: podman sends nothing to systemd itself;
   ``--sdnotify=container``: podman and the app do, and this process only adds liveness);
2. send ``MAINPID=<monitor>``: systemd now supervises the container's monitor and this process
   is a helper in the unit. With a startup probe that waits until the startup probe passed: while
   this process is still the main PID, its exit fails the start with its own message;
3. startup probe (if any) until it passed, at most ``failure-threshold`` failures; then the
   readiness probe until it passed ``success-threshold`` times in a row; then ``READY=1``;
4. liveness probe (if any) every period: ``WATCHDOG=1`` after each success; at
   ``failure-threshold`` failures in a row the action (``--on-failure``): ``watchdog`` sends
   ``WATCHDOG=trigger`` (systemd >= 243 stops the unit with result "watchdog" and restarts it per
   Restart=); ``stop`` stops the unit; ``none`` only reports. The unit's WatchdogSec= exceeds
   max(period, timeout) x threshold + timeout, so if this process itself hangs or dies the pings stop and
   systemd acts anyway.

One process, no threads: every attempt is bounded by its timeout (probes/checks.py), so a hung
container never holds up the pings of a healthy one. HTTP/TCP probes run in the container's
network namespace, which this process joins once. ``STATUS=`` says healthy, starting or
``unhealthy (3/3 failed: HTTP 500 from /healthz)``; ``--state-file`` keeps the last results
with their times for `podvisor status`.


The package (probes/): ready (this process: run podman, hand over MAINPID, re-exec lean),
options (both parsers), loop (the gates and the liveness loop), checks (exec, HTTP, TCP, gRPC).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from . import checks
from .loop import Notifier, Supervisor, log
from .options import Options, ProbeSetupError, options_from, parse_lean, podman_prefix

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

LEAN_ENV = "PODVISOR_PROBE_LEAN"  # set in the re-executed lean process (see main)


def _enter_rootless_userns(pid: int) -> None:
    """Rootless: join podman's user namespace (that owns the container's network namespace).
    The podman processes started afterwards (exec probes, stop) must know they are already
    inside it, as podman tells its own re-executed children."""
    uid, gid = os.getuid(), os.getgid()
    if checks.enter_userns_of(pid):
        os.environ.update({"_CONTAINERS_USERNS_CONFIGURED": "init", "_CONTAINERS_ROOTLESS_UID": str(uid),
                           "_CONTAINERS_ROOTLESS_GID": str(gid)})


LISTEN_VARS = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


def listen_fds() -> tuple[int, ...]:
    """The socket-activation fds systemd passed us (3, 4, ...), for `podman run` only."""
    try:
        n = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return ()
    return tuple(range(3, 3 + n))


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def run(opts: Options) -> int:
    prefix = podman_prefix(opts.command)
    notify = Notifier()
    podman_notifies = "--sdnotify=container" in opts.command
    drop = {"WATCHDOG_USEC", "WATCHDOG_PID", LEAN_ENV} | (set() if podman_notifies else {"NOTIFY_SOCKET"})
    env = {k: v for k, v in os.environ.items() if k not in drop}  # podman must stay silent
    # systemd's listening sockets (socket activation) go on to the container, as they would
    # without us in between; podman reads only LISTEN_FDS, LISTEN_PID is 1 in the container
    sockets = listen_fds()
    rc = subprocess.run(opts.command, env=env, stdin=subprocess.DEVNULL, pass_fds=sockets).returncode
    for fd in sockets:
        try:
            os.close(fd)  # the container has them now; the probes' podman calls must not
        except OSError:
            pass
    for name in LISTEN_VARS:  # nor must an exec session get the container's listening sockets
        os.environ.pop(name, None)
    if rc != 0:
        log(f"podman run failed (exit status {rc})")
        return rc if rc > 0 else 1
    started_at = time.monotonic()
    sup = Supervisor(opts, notify, prefix, cid=_read(opts.cidfile), monitor=int(_read(opts.pidfile)))
    if not opts.startup:
        sup.set_status("starting", "waiting for the readiness probe" if opts.readiness else "starting",
                       f"MAINPID={sup.monitor}\n")
    if any(s.network for s in opts.specs):
        pid = subprocess.run([*prefix, "inspect", "--format={{.State.Pid}}", sup.cid], capture_output=True,
                             text=True, stdin=subprocess.DEVNULL).stdout.strip()
        try:
            if os.geteuid() != 0:
                _enter_rootless_userns(int(pid))
            fd = os.open(f"/proc/{int(pid)}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            checks.enter_netns(fd)
            os.close(fd)
        except (ValueError, OSError) as e:
            log(f"cannot enter the container's network namespace (pid {pid!r}): {e}")
            return 1
    if opts.startup:
        sup.set_status("starting", "starting: waiting for the startup probe")
        time.sleep(opts.startup.initial_delay)
        if not sup.gate(opts.startup, started_at):
            return 1  # still the main PID: the start fails with our message
        notify(f"MAINPID={sup.monitor}")
    if opts.readiness:
        time.sleep(opts.readiness.initial_delay)
        if not sup.gate(opts.readiness, started_at):
            return 1
    if opts.liveness is None:
        if not podman_notifies:
            passed = "readiness" if opts.readiness else "startup"
            notify(f"READY=1\nSTATUS=ready: the {passed} probe passed")
        return 0
    if not podman_notifies:
        notify("READY=1")
    sup.set_status("healthy" if opts.readiness or opts.startup else "starting",
                   "healthy" if opts.readiness or opts.startup else "starting: waiting for the liveness probe")
    return sup.live(opts.liveness, started_at)


# the lean process: no site packages, nothing but this package on the path (as the monitor starts)
_LEAN = "import sys; sys.path.insert(0, sys.argv.pop(1)); from supervisor.probes.ready import lean; sys.exit(lean())"


def _package_root() -> str:
    # where this copy of the supervisor package is (a venv's site-packages): the lean
    # interpreter has no site packages of its own
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(args: argparse.Namespace) -> int:
    """The `podvisor ready-probe` handler. The probe lives as long as its container, so instead of
    keeping the CLI's imports (argparse, logging, every subcommand's module) it re-executes itself
    as a lean interpreter (-I -S) that imports only this package."""
    try:
        options_from(args)  # report bad options here, with the CLI's parser
        argv = sys.argv[sys.argv.index("ready-probe") + 1:]
    except ProbeSetupError as e:
        log(str(e))
        return 2
    except ValueError:  # not called as `... ready-probe ...`: run in this process
        argv = None
    if argv is not None and os.environ.get(LEAN_ENV) != "0":
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, "-I", "-S", "-c", _LEAN, _package_root(), *argv],
                  {**os.environ, LEAN_ENV: "1"})
    return _guarded(lambda: run(options_from(args)))


def lean() -> int:
    return _guarded(lambda: run(options_from(parse_lean(sys.argv[1:]))))


def _guarded(fn: Callable[[], int]) -> int:
    try:
        return fn()
    except ProbeSetupError as e:
        log(str(e))
        return 2
    except (OSError, ValueError) as e:
        log(f"{type(e).__name__}: {e}")
        return 1
