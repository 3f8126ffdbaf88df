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

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000


def enter_netns(fd: int) -> None:
    """Move this (single-threaded) process into network namespace `fd`."""
    _setns(fd, CLONE_NEWNET)


def enter_userns_of(pid: int) -> bool:
    """Join the user namespace of `pid` if it is not ours (rootless podman's: its network
    namespaces belong to it, so an unprivileged process must be inside to join them; the owner
    of a user namespace may). True if joined."""
    path = f"/proc/{pid}/ns/user"
    if os.stat(path).st_ino == os.stat("/proc/self/ns/user").st_ino:
        return False
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd, CLONE_NEWUSER)
    finally:
        os.close(fd)
    return True


def _setns(fd: int, nstype: int) -> None:
    setns = getattr(os, "setns", None)  # Python >= 3.12
    if setns is not None:
        setns(fd, nstype)
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, nstype) != 0:
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
    sock: socket.socket | None = None
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
    except TimeoutError:
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
    except TimeoutError:
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


# --------------------------------------------------------------------------- gRPC health
# grpc.health.v1.Health/Check over cleartext HTTP/2 (h2c prior knowledge), as Kubernetes' grpc
# probe: success iff the response's status is SERVING. The request is HPACK-encoded from the static
# table and literals (no Huffman, no dynamic table); the reply is judged by its message alone, so
# no HPACK decoder is needed (a reply without a message is a failure: the call itself failed).

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PING, _GOAWAY = 0, 1, 3, 4, 6, 7
_END_STREAM, _ACK, _END_HEADERS, _PADDED = 0x1, 0x1, 0x4, 0x8
SERVING_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def _hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def _hpack_str(text: str) -> bytes:
    data = text.encode()
    return _hpack_int(len(data), 7) + data


def _literal(index: int, value: str) -> bytes:
    """Literal header field without indexing, name from the static table."""
    return _hpack_int(index, 4) + _hpack_str(value)


def grpc_request(authority: str, service: str) -> bytes:
    headers = (b"\x83\x86"  # :method POST, :scheme http
               + _literal(4, "/grpc.health.v1.Health/Check") + _literal(1, authority)
               + _literal(31, "application/grpc")  # content-type
               + b"\x00" + _hpack_str("te") + _hpack_str("trailers")
               + _literal(58, "podvisor-probe"))  # user-agent
    body = service.encode()
    message = (b"\x0a" + _hpack_int(len(body), 7) + body) if body else b""  # field 1, length-delimited
    return (_PREFACE + _frame(_SETTINGS, 0, 0) + _frame(_HEADERS, _END_HEADERS, 1, headers)
            + _frame(_DATA, _END_STREAM, 1, b"\x00" + len(message).to_bytes(4, "big") + message))


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while i < len(data):
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i
    raise ValueError("truncated varint")


def grpc_serving_status(message: bytes) -> int:
    """HealthCheckResponse.status (field 1, varint) of one protobuf message; absent = 0 (UNKNOWN)."""
    i, status = 0, 0
    while i < len(message):
        key, i = _varint(message, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(message, i)
            if field == 1:
                status = value
        elif wire == 2:
            length, i = _varint(message, i)
            i += length
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise ValueError(f"protobuf wire type {wire}")
    return status


def grpc_check(target: str, service: str, timeout: float) -> str | None:
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    deadline = time.monotonic() + timeout
    sock: socket.socket | None = None
    try:
        sock = socket.create_connection((host, int(port)), timeout=_left(deadline))
        sock.settimeout(_left(deadline))
        sock.sendall(grpc_request(target, service))
        buf, data, ended = b"", b"", False
        while not ended:
            while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
                sock.settimeout(_left(deadline))
                chunk = sock.recv(65536)
                if not chunk:
                    return f"gRPC {target}: connection closed before the reply"
                buf += chunk
            length = int.from_bytes(buf[:3], "big")
            kind, flags, stream = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            payload, buf = buf[9:9 + length], buf[9 + length:]
            if kind == _SETTINGS and not flags & _ACK:
                sock.sendall(_frame(_SETTINGS, _ACK, 0))
            elif kind == _PING and not flags & _ACK:
                sock.sendall(_frame(_PING, _ACK, 0, payload))
            elif kind == _GOAWAY:
                return f"gRPC {target}: the server closed the connection (GOAWAY)"
            elif stream == 1 and kind == _RST_STREAM:
                return f"gRPC {target}: stream reset (HTTP/2 error {int.from_bytes(payload[:4], 'big')})"
            elif stream == 1 and kind in (_DATA, _HEADERS):
                if kind == _DATA:
                    if flags & _PADDED and payload:
                        payload = payload[1:len(payload) - payload[0]]
                    data += payload
                ended = bool(flags & _END_STREAM)
    except TimeoutError:
        return f"gRPC {target}: no answer within {timeout:g}s"
    except OSError as e:
        return f"gRPC {target}: {e.strerror or e}"
    finally:
        if sock is not None:
            sock.close()
    if len(data) < 5:
        return f"gRPC {target}: the call failed (no reply message; is grpc.health.v1.Health served" \
               f"{' for ' + repr(service) if service else ''}?)"
    if data[0]:
        return f"gRPC {target}: compressed reply"
    try:
        status = grpc_serving_status(data[5:5 + int.from_bytes(data[1:5], "big")])
    except ValueError as e:
        return f"gRPC {target}: bad reply ({e})"
    return None if status == 1 else f"gRPC status {SERVING_STATUS.get(status, status)}" \
                                    f"{' for ' + repr(service) if service else ''}"
