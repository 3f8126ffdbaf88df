"""`podvisor ready-probe`: "healthy" readiness for podman 4.3.1, which has no --sdnotify=healthy.

A container unit with healthy readiness runs (``Type=notify``, ``NotifyAccess=all``)::

    podvisor ready-probe [probe options] -- podman [global flags] run --sdnotify=ignore
        --conmon-pidfile=%t/%n.pid --cidfile=%t/%n.ctr-id --detach ...

1. run that podman command (``--sdnotify=ignore``: podman sends nothing to systemd itself);
2. send ``MAINPID=<monitor>`` (from the pid file): systemd now supervises the container's
   monitor, exactly as with ``--sdnotify=conmon``, and this process is just a helper;
3. run the readiness probe every period until it passed ``success-threshold`` times in a row:
   exec probes through ``podman exec``, HTTP/TCP probes from inside the pod's network namespace
   (a thread that setns()-es into it), so unpublished ports and 127.0.0.1 work;
4. send ``READY=1`` and exit 0. ``STATUS=`` tells ``systemctl status`` what the last attempt
   saw. If the monitor dies first, exit 1; TimeoutStartSec= bounds the whole wait.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# http.client, ssl, ctypes and threading are imported where used: `podvisor` builds this
# subcommand's parser on every run, and only HTTP/TCP probes need them

CLONE_NEWNET = 0x40000000


class ProbeSetupError(RuntimeError):
    pass


def notify(message: str) -> None:
    """Send one datagram to systemd's NOTIFY_SOCKET (nothing when not run by systemd)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.sendto(message.encode(), address)


def log(message: str) -> None:
    print(f"podvisor ready-probe: {message}", file=sys.stderr, flush=True)


@dataclass
class Options:
    pidfile: str
    cidfile: str
    initial_delay: float
    period: float
    timeout: float
    success_threshold: int
    exec_command: list[str]
    http_get: str | None
    http_headers: list[tuple[str, str]]
    tcp_socket: str | None
    command: list[str]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pidfile", required=True, help="the monitor's PID file (podman --conmon-pidfile)")
    p.add_argument("--cidfile", required=True, help="the container ID file (podman --cidfile)")
    p.add_argument("--initial-delay", type=float, default=0.0, metavar="SECONDS")
    p.add_argument("--period", type=float, default=10.0, metavar="SECONDS")
    p.add_argument("--timeout", type=float, default=1.0, metavar="SECONDS", help="per attempt")
    p.add_argument("--success-threshold", type=int, default=1, metavar="N")
    p.add_argument("--exec", dest="exec_command", action="append", default=[], metavar="WORD",
                   help="exec probe: one argv word per option, run with podman exec")
    p.add_argument("--http-get", metavar="URL", help="HTTP probe: 200-399 is success")
    p.add_argument("--http-header", dest="http_headers", action="append", default=[], metavar="NAME: VALUE")
    p.add_argument("--tcp-socket", metavar="HOST:PORT", help="TCP probe: a connection is success")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- PODMAN [GLOBAL...] run ...")


def options_from(args: argparse.Namespace) -> Options:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise ProbeSetupError("no podman command after --")
    kinds = [k for k in (args.exec_command, args.http_get, args.tcp_socket) if k]
    if len(kinds) != 1:
        raise ProbeSetupError("give exactly one of --exec, --http-get, --tcp-socket")
    headers = []
    for h in args.http_headers:
        name, sep, value = h.partition(":")
        if not sep or not name:
            raise ProbeSetupError(f"--http-header {h!r}: expected 'Name: value'")
        headers.append((name, value.strip(" ")))
    if args.period <= 0 or args.timeout <= 0 or args.initial_delay < 0 or args.success_threshold < 1:
        raise ProbeSetupError("period and timeout must be positive, success threshold at least 1")
    return Options(args.pidfile, args.cidfile, args.initial_delay, args.period, args.timeout,
                   args.success_threshold, list(args.exec_command), args.http_get, headers, args.tcp_socket,
                   command)


def podman_prefix(command: list[str]) -> list[str]:
    """`podman --global=flags` of the run command: generated global flags are all --flag=value."""
    i = 1
    while i < len(command) and command[i].startswith("--"):
        i += 1
    if i >= len(command) or command[i] != "run":
        raise ProbeSetupError(f"expected `podman [--flag=value...] run ...` after --, got {command[:i + 1]}")
    return command[:i]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _setns(fd: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def in_netns(fd: int | None, fn: Callable[[], str | None], timeout: float) -> str | None:
    """fn() in a thread that joined network namespace `fd` (the thread dies with its namespace);
    returns fn's result: None for success, else why the attempt failed."""
    import threading

    if fd is None:
        return fn()
    result: list[str | None] = ["probe did not finish"]

    def run() -> None:
        try:
            _setns(fd)
            result[0] = fn()
        except OSError as e:
            result[0] = str(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout + 1)
    return result[0]


def http_probe(url: str, headers: list[tuple[str, str]], timeout: float) -> str | None:
    import http.client
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port
    if parts.scheme == "https":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # as Kubernetes: probes do not verify certificates
        conn: Any = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True,
                        skip_host=any(k.lower() == "host" for k, _ in headers))
        if not any(k.lower() == "user-agent" for k, _ in headers):
            conn.putheader("User-Agent", "podvisor-ready-probe")
        for k, v in headers:
            conn.putheader(k, v)
        conn.endheaders()
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as e:
        return f"GET {url}: {e or type(e).__name__}"
    finally:
        conn.close()
    return None if 200 <= status < 400 else f"GET {url}: HTTP {status}"


def tcp_probe(target: str, timeout: float) -> str | None:
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        return f"connect {target}: {e.strerror or e}"
    return None


LISTEN_VARS = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


def listen_fds() -> tuple[int, ...]:
    """The socket-activation fds systemd passed us (3, 4, ...), for `podman run` only."""
    try:
        n = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return ()
    return tuple(range(3, 3 + n))


def _quiet_env() -> dict[str, str]:
    """Our environment for podman calls other than `run`: podman passes LISTEN_FDS sockets on to
    whatever it starts, and an exec session must not get the container's listening sockets."""
    return {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET" and k not in LISTEN_VARS}


def exec_probe(prefix: list[str], cid: str, command: list[str], timeout: float) -> str | None:
    try:
        res = subprocess.run([*prefix, "exec", cid, *command], stdin=subprocess.DEVNULL, env=_quiet_env(),
                             capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"{command[0]}: no answer within {timeout:g}s"
    except OSError as e:
        return f"podman exec: {e}"
    if res.returncode == 0:
        return None
    tail = (res.stderr or res.stdout).decode(errors="replace").strip().splitlines()[-1:]
    return f"{command[0]}: exit status {res.returncode}{': ' + tail[0] if tail else ''}"


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def run(opts: Options) -> int:
    prefix = podman_prefix(opts.command)
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}  # podman must stay silent
    # systemd's listening sockets (socket activation) go on to the container, as they would
    # without us in between; podman reads only LISTEN_FDS, LISTEN_PID is 1 in the container
    rc = subprocess.run(opts.command, env=env, stdin=subprocess.DEVNULL, pass_fds=listen_fds()).returncode
    for fd in listen_fds():
        try:
            os.close(fd)  # the container has them now; the probes' podman calls must not
        except OSError:
            pass
    if rc != 0:
        log(f"podman run failed (exit status {rc})")
        return rc if rc > 0 else 1
    monitor = int(_read(opts.pidfile))
    cid = _read(opts.cidfile)
    notify(f"MAINPID={monitor}\nSTATUS=waiting for the readiness probe")
    netns = None
    if not opts.exec_command:
        pid = subprocess.run([*prefix, "inspect", "--format={{.State.Pid}}", cid], capture_output=True,
                             text=True, stdin=subprocess.DEVNULL, env=_quiet_env()).stdout.strip()
        try:
            netns = os.open(f"/proc/{int(pid)}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except (ValueError, OSError) as e:
            log(f"cannot enter the container's network namespace (pid {pid!r}): {e}")
            return 1
    time.sleep(opts.initial_delay)
    passed = attempt = 0
    while True:
        if not _alive(monitor):
            log("the container stopped before it was ready")
            return 1
        attempt += 1
        started = time.monotonic()
        if opts.exec_command:
            why = exec_probe(prefix, cid, opts.exec_command, opts.timeout)
        elif opts.http_get:
            why = in_netns(netns, lambda: http_probe(opts.http_get or "", opts.http_headers, opts.timeout),
                           opts.timeout)
        else:
            why = in_netns(netns, lambda: tcp_probe(opts.tcp_socket or "", opts.timeout), opts.timeout)
        if why is None:
            passed += 1
            if passed >= opts.success_threshold:
                notify(f"READY=1\nSTATUS=ready: the readiness probe passed (attempt {attempt})")
                return 0
        else:
            passed = 0
            log(f"attempt {attempt}: {why}")
            notify(f"STATUS=not ready, attempt {attempt}: {why}"[:1000])
        time.sleep(max(0.0, opts.period - (time.monotonic() - started)))


def main(args: argparse.Namespace) -> int:
    try:
        return run(options_from(args))
    except ProbeSetupError as e:
        log(str(e))
        return 2
    except (OSError, ValueError) as e:
        log(f"{type(e).__name__}: {e}")
        return 1
