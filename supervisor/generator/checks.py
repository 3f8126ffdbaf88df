"""One probe attempt each, bounded by its timeout, without threads: exec (podman exec), HTTP GET,
TCP connect. Each returns None on success, else why it failed, short enough for STATUS=.

HTTP and TCP run in the caller's network namespace: `podvisor ready-probe` joins the container's
once (enter_netns), so 127.0.0.1 and unpublished ports work. The HTTP client is a minimal
HTTP/1.0 GET (status line only, as Kubernetes: 200-399 is success) because http.client and its
email imports would double the probe process's memory; ssl is imported only for https.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
from typing import Any

CLONE_NEWNET = 0x40000000


def enter_netns(fd: int) -> None:
    """Move this (single-threaded) process into network namespace `fd`."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _split_url(url: str) -> tuple[str, str, int, str]:
    scheme, _, rest = url.partition("://")
    hostport, slash, path = rest.partition("/")
    path = slash + path if slash else "/"
    if hostport.startswith("["):
        host, _, port = hostport[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
    default = 443 if scheme == "https" else 80
    return scheme, host or "127.0.0.1", int(port) if port else default, path


def http_check(url: str, headers: list[tuple[str, str]], timeout: float) -> str | None:
    scheme, host, port, path = _split_url(url)
    shown = path.partition("?")[0]
    deadline = time.monotonic() + timeout
    sock: Any = None
    try:
        sock = socket.create_connection((host, port), timeout=_left(deadline))
        if scheme == "https":
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # as Kubernetes: probes do not verify certificates
            sock.settimeout(_left(deadline))
            sock = ctx.wrap_socket(sock, server_hostname=host)
        names = {k.lower() for k, _ in headers}
        lines = [f"GET {path} HTTP/1.0"]
        if "host" not in names:
            lines.append(f"Host: {'[' + host + ']' if ':' in host else host}:{port}")
        if "user-agent" not in names:
            lines.append("User-Agent: podvisor-probe")
        lines += [f"{k}: {v}" for k, v in headers]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        sock.settimeout(_left(deadline))
        sock.sendall(request)
        data = b""
        while b"\n" not in data and len(data) < 4096:
            sock.settimeout(_left(deadline))
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, socket.timeout):
        return f"no answer within {timeout:g}s from {shown}"
    except OSError as e:
        return f"GET {shown}: {e.strerror or e}"
    finally:
        if sock is not None:
            sock.close()
    parts = data.split(b"\n", 1)[0].split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return f"GET {shown}: not an HTTP response"
    status = int(parts[1])
    return None if 200 <= status < 400 else f"HTTP {status} from {shown}"


def tcp_check(target: str, timeout: float) -> str | None:
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (TimeoutError, socket.timeout):
        return f"connect {target}: no answer within {timeout:g}s"
    except OSError as e:
        return f"connect {target}: {e.strerror or e}"
    return None


def exec_check(prefix: list[str], cid: str, command: list[str], timeout: float) -> str | None:
    """`podman exec`; on timeout podman exec is killed (SIGKILL) and the attempt failed."""
    try:
        res = subprocess.run([*prefix, "exec", cid, *command], stdin=subprocess.DEVNULL,
                             capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"{_shown(command)}: no answer within {timeout:g}s"
    except OSError as e:
        return f"podman exec: {e}"
    if res.returncode == 0:
        return None
    tail = (res.stderr or res.stdout).decode(errors="replace").strip().splitlines()[-1:]
    return f"{_shown(command)}: exit status {res.returncode}{': ' + tail[0][:200] if tail else ''}"


def _shown(command: list[str]) -> str:
    """The program, or for `sh -c SCRIPT` (Quadlet's HealthCmd) the script, shortened."""
    if len(command) >= 3 and command[1] == "-c" and command[0].rsplit("/", 1)[-1] in ("sh", "bash", "ash"):
        script = command[2]
        return script if len(script) <= 60 else script[:57] + "..."
    return command[0]
