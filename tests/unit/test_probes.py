"""`podvisor ready-probe` without systemd or podman: a fake podman, a local notify socket."""
from __future__ import annotations

import argparse
import http.server
import json
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from supervisor.probes import checks, options, ready

FAKE_PODMAN = r"""#!/bin/sh
# run: start a stand-in "monitor" (sleep), write the files podman would; exec: succeed once $FLAG exists
state=$(dirname "$0")
while [ $# -gt 0 ] && [ "${1#--}" != "$1" ]; do echo "$1" >> "$state/globals"; shift; done
cmd=$1; shift
case $cmd in
run)
    for a; do case $a in
        --conmon-pidfile=*) pidfile=${a#*=} ;;
        --cidfile=*) cidfile=${a#*=} ;;
    esac; done
    sleep 30 & echo $! > "$pidfile"; echo cid123 > "$cidfile"; exit 0 ;;
inspect) echo $$ ;;
exec) [ "$1" = cid123 ] || exit 125; shift; [ -e "$state/flag" ] && exit 0; echo "not yet: $*" >&2; exit 1 ;;
esac
exit 3
"""


def parse(*argv: str) -> options.Options:
    p = argparse.ArgumentParser()
    options.add_arguments(p)
    return options.options_from(p.parse_args(list(argv)))


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    p = tmp_path / "podman"
    p.write_text(FAKE_PODMAN)
    p.chmod(0o755)
    return p


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(tmp_path / "notify"))
    s.settimeout(10)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    yield s
    s.close()


def test_exec_probe_protocol(tmp_path: Path, fake: Path, notify_socket: socket.socket) -> None:
    """MAINPID (the monitor) first, READY=1 only once the probe passed."""
    opts = parse(f"--pidfile={tmp_path}/pid", f"--cidfile={tmp_path}/cid", "--period=0.2", "--exec=test",
                 "--exec=-e", "--exec=/ready", "--", str(fake), "--root=/x", "run", f"--conmon-pidfile={tmp_path}/pid",
                 f"--cidfile={tmp_path}/cid", "--detach", "img")
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(ready.run(opts)))
    t.start()
    first = notify_socket.recv(4096).decode()
    monitor = int((tmp_path / "pid").read_text())
    assert first.startswith(f"MAINPID={monitor}\n")
    time.sleep(0.5)
    assert t.is_alive()  # still probing
    (tmp_path / "flag").touch()
    messages: list[str] = []
    while not any("READY=1" in m for m in messages):
        messages.append(notify_socket.recv(4096).decode())
    t.join(10)
    assert result == [0]
    assert any("STATUS=not ready, attempt 1: test: exit status 1" in m for m in messages)
    assert "--root=/x" in (tmp_path / "globals").read_text().split()  # exec used the same global flags
    os.kill(monitor, 9)


def test_monitor_death_ends_the_wait(tmp_path: Path, fake: Path, notify_socket: socket.socket) -> None:
    opts = parse(f"--pidfile={tmp_path}/pid", f"--cidfile={tmp_path}/cid", "--period=0.1", "--exec=false",
                 "--", str(fake), "run", f"--conmon-pidfile={tmp_path}/pid", f"--cidfile={tmp_path}/cid", "img")
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(ready.run(opts)))
    t.start()
    notify_socket.recv(4096)
    pid = int((tmp_path / "pid").read_text())
    os.kill(pid, 9)  # a zombie until someone reaps it: the probe must see it as gone
    t.join(15)
    assert result == [1]


def test_podman_run_failure_is_the_exit_status(tmp_path: Path, notify_socket: socket.socket) -> None:
    bad = tmp_path / "podman"
    bad.write_text("#!/bin/sh\nexit 125\n")
    bad.chmod(0o755)
    opts = parse(f"--pidfile={tmp_path}/pid", f"--cidfile={tmp_path}/cid", "--tcp-socket=127.0.0.1:1", "--",
                 str(bad), "run", "img")
    assert ready.run(opts) == 125


@pytest.fixture(scope="module")
def http_server() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = 200 if self.path == "/ok" and self.headers.get("X-Token") == "t" else 503
            self.send_response(code)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def test_http_and_tcp_probes(http_server: int) -> None:
    assert checks.http_check(f"http://127.0.0.1:{http_server}/ok", [("X-Token", "t")], 2) is None
    assert "HTTP 503" in (checks.http_check(f"http://127.0.0.1:{http_server}/ok", [], 2) or "")
    assert checks.tcp_check(f"127.0.0.1:{http_server}", 2) is None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert "refused" in (checks.tcp_check(f"127.0.0.1:{port}", 2) or "").lower()


@pytest.mark.skipif(os.geteuid() != 0, reason="setns needs root")
def test_probe_runs_inside_a_network_namespace(http_server: int) -> None:
    # a fresh namespace (unshare) stands in for the container's: a server there, this process outside
    server = subprocess.Popen(["unshare", "--net", "sh", "-c", "ip link set lo up; exec " + shlex.quote(sys.executable) +
                               " -m http.server --bind 127.0.0.1 18123"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        code = ("import os, sys, time; from supervisor.probes import checks\n"
                "print(checks.tcp_check('127.0.0.1:18123', 1))\n"
                "checks.enter_netns(os.open(f'/proc/{sys.argv[1]}/ns/net', os.O_RDONLY))\n"
                "for _ in range(50):\n"
                "    why = checks.http_check('http://127.0.0.1:18123/', [], 1)\n"
                "    if why is None: break\n"
                "    time.sleep(0.1)\n"
                "print(why)\n")
        time.sleep(0.3)
        out = subprocess.run([sys.executable, "-c", code, str(server.pid)], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parents[2], timeout=30).stdout.splitlines()
        assert out[0] != "None" and out[1] == "None", out  # refused outside, served inside
    finally:
        server.kill()
        server.wait()


@pytest.mark.parametrize("argv, message", [
    (["--pidfile=p", "--cidfile=c", "--exec=x"], "no podman command after --"),
    (["--pidfile=p", "--cidfile=c", "--", "podman", "run"], "exactly one of"),
    (["--pidfile=p", "--cidfile=c", "--tcp-socket=h:1", "--exec=x", "--", "podman", "run"], "exactly one of"),
    (["--pidfile=p", "--cidfile=c", "--http-get=http://x/", "--http-header=bad", "--", "podman", "run"], "Name: value"),
])
def test_bad_options(argv: list[str], message: str) -> None:
    with pytest.raises(options.ProbeSetupError, match=message):
        parse(*argv)


def test_podman_prefix() -> None:
    assert options.podman_prefix(["/p", "--root=/a b", "--log-level=debug", "run", "x"]) == \
        ["/p", "--root=/a b", "--log-level=debug"]
    with pytest.raises(options.ProbeSetupError):
        options.podman_prefix(["/p", "--root", "/x", "run"])  # global flags must be --flag=value


def test_cli_entry_point(tmp_path: Path) -> None:
    """As units run it: `podvisor ready-probe ...` (here through `python -m supervisor.cli`)."""
    res = subprocess.run([sys.executable, "-m", "supervisor.cli", "ready-probe", "--pidfile=p",
                          "--cidfile=c", "--", "/nonexistent/podman", "run"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], env={**os.environ, "NOTIFY_SOCKET": ""})
    assert res.returncode == 2 and "exactly one of --exec, --http-get, --tcp-socket" in res.stderr


def _messages(sock: socket.socket, until: Callable[[list[str]], bool], timeout: float = 15) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while not until(got):
        assert time.monotonic() < deadline, got
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            pass
    return got


def test_liveness_pings_then_triggers_the_watchdog(tmp_path: Path, fake: Path, notify_socket: socket.socket) -> None:
    """No readiness probe: READY=1 at once; WATCHDOG=1 after each pass; at the threshold WATCHDOG=trigger
    with the reason in STATUS=, and the state file keeps the attempts with their times."""
    (tmp_path / "flag").touch()
    state = tmp_path / "health.json"
    opts = parse(f"--pidfile={tmp_path}/pid", f"--cidfile={tmp_path}/cid", "--liveness-period=0.2",
                 "--liveness-failure-threshold=3", "--liveness-exec=true", f"--state-file={state}",
                 "--", str(fake), "run", f"--conmon-pidfile={tmp_path}/pid", f"--cidfile={tmp_path}/cid", "img")
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(ready.run(opts)))
    t0 = time.monotonic()
    t.start()
    got = _messages(notify_socket, lambda m: sum("WATCHDOG=1" in x for x in m) >= 3)
    assert got[0].startswith("MAINPID=") and any(x.startswith("READY=1") for x in got)
    assert any("STATUS=healthy" in x for x in got)
    (tmp_path / "flag").unlink()
    broke = time.monotonic()
    got = _messages(notify_socket, lambda m: any("WATCHDOG=trigger" in x for x in m))
    took = time.monotonic() - broke
    t.join(10)
    assert result == [0]
    trigger = next(x for x in got if "WATCHDOG=trigger" in x)
    assert "STATUS=unhealthy (3/3 failed: true: exit status 1: not yet: true)" in trigger
    assert not any("WATCHDOG=1" in x for x in got[1:])  # no pings once failing
    assert any("healthy (1/3 failed" in x for x in got)
    assert 0.4 <= took <= 0.2 * 3 + 1 + 1, took  # about threshold x period
    data = json.loads(state.read_text())
    assert data["health"] == "unhealthy" and data["failures"] == 3 and data["threshold"] == 3
    assert data["results"][-1]["ok"] is False and data["results"][0]["time"] >= time.time() - (time.monotonic() - t0) - 1
    os.kill(int((tmp_path / "pid").read_text()), 9)


def test_hung_probe_is_a_failure_at_its_timeout(http_server: int) -> None:
    with socket.socket() as server:  # accepts, never answers
        server.bind(("127.0.0.1", 0))
        server.listen()
        t0 = time.monotonic()
        why = checks.http_check(f"http://127.0.0.1:{server.getsockname()[1]}/healthz", [], 0.5)
        assert why == "no answer within 0.5s from /healthz" and time.monotonic() - t0 < 1.5


def test_startup_failure_fails_while_still_the_main_pid(tmp_path: Path, fake: Path, notify_socket: socket.socket) -> None:
    opts = parse(f"--pidfile={tmp_path}/pid", f"--cidfile={tmp_path}/cid", "--startup-period=0.1",
                 "--startup-failure-threshold=3", "--startup-exec=true", "--liveness-exec=true",
                 "--", str(fake), "run", f"--conmon-pidfile={tmp_path}/pid", f"--cidfile={tmp_path}/cid", "img")
    assert ready.run(opts) == 1
    notify_socket.settimeout(0.5)
    got = []
    try:
        while True:
            got.append(notify_socket.recv(4096).decode())
    except TimeoutError:
        pass
    assert not any("MAINPID=" in m or "READY=1" in m for m in got), got  # the start fails with our exit
    assert any("STATUS=start failed: startup probe failed 3 times in a row (every 0.1s, failureThreshold 3" in m
               for m in got), got
    os.kill(int((tmp_path / "pid").read_text()), 9)


def test_one_process_one_thread(tmp_path: Path, fake: Path) -> None:
    """As units run it (`podvisor ready-probe`): the liveness loop is a single thread."""
    (tmp_path / "flag").touch()
    state = tmp_path / "health.json"
    proc = subprocess.Popen([sys.executable, "-m", "supervisor.cli", "ready-probe",
                             f"--pidfile={tmp_path}/pid", f"--cidfile={tmp_path}/cid", "--liveness-period=0.1",
                             "--liveness-exec=true", f"--state-file={state}", "--", str(fake), "run",
                             f"--conmon-pidfile={tmp_path}/pid", f"--cidfile={tmp_path}/cid", "img"],
                            cwd=Path(__file__).resolve().parents[2], env={**os.environ, "NOTIFY_SOCKET": ""})
    try:
        deadline = time.monotonic() + 20
        while not (state.exists() and len(json.loads(state.read_text())["results"]) >= 3):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        threads = [ln for ln in Path(f"/proc/{proc.pid}/status").read_text().splitlines() if ln.startswith("Threads:")]
        assert threads == ["Threads:\t1"]
    finally:
        proc.kill()
        proc.wait()
        os.kill(int((tmp_path / "pid").read_text()), 9)


def test_grpc_probe_against_a_real_grpc_server() -> None:
    """grpcio's server (its own HTTP/2 and HPACK) answers grpc.health.v1.Health/Check; the messages
    are protobuf HealthCheckRequest/Response, encoded by hand here (field 1)."""
    from concurrent import futures

    import grpc

    status = {"": b"\x08\x01", "app.v1": b"\x08\x02"}  # SERVING; NOT_SERVING

    def check(request: bytes, context: grpc.ServicerContext) -> bytes:
        service = request[2:].decode() if request else ""
        if service not in status:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return status[service]

    handler = grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(check)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    target = f"127.0.0.1:{port}"
    try:
        assert checks.grpc_check(target, "", 2) is None
        assert checks.grpc_check(target, "app.v1", 2) == "gRPC status NOT_SERVING for 'app.v1'"
        assert "the call failed" in (checks.grpc_check(target, "other", 2) or "")
    finally:
        # stop() closes the listener asynchronously: until its event is set a connection can still be
        # accepted and then reset, so wait for the shutdown before probing a server that is gone.
        assert server.stop(0).wait(10)
    assert "refused" in (checks.grpc_check(target, "", 2) or "").lower()


def test_grpc_codec() -> None:
    assert checks.grpc_serving_status(b"") == 0 and checks.grpc_serving_status(b"\x08\x03") == 3
    assert checks.grpc_serving_status(b"\x12\x02ab\x08\x01") == 1  # unknown fields skipped
    assert checks._hpack_int(31, 4) == b"\x0f\x10" and checks._hpack_int(300, 7) == b"\x7f\xad\x01"


def test_lean_parser_matches_argparse() -> None:
    argv = ["--pidfile=p", "--cidfile", "c", "--liveness-http-get=http://127.0.0.1:80/x", "--liveness-period=2.5",
            "--liveness-failure-threshold=4", "--liveness-http-header=A: b", "--liveness-http-header=C: d",
            "--on-failure=stop", "--startup-exec=test", "--startup-exec=-e", "--startup-success-threshold=2",
            "--exec=--exec=x", "--", "podman", "run", "--exec=not ours"]
    a, b = options.options_from(options.parse_lean(argv)), parse(*argv)
    assert vars(a.liveness) == vars(b.liveness) and vars(a.startup) == vars(b.startup)
    assert vars(a.readiness) == vars(b.readiness) and a.readiness is not None and a.readiness.exec_command == ["--exec=x"]
    assert (a.command, a.on_failure, a.pidfile, a.cidfile) == (b.command, b.on_failure, "p", "c")
    with pytest.raises(options.ProbeSetupError, match="--liveness-period: invalid value"):
        options.parse_lean(["--pidfile=p", "--cidfile=c", "--liveness-period=soon", "--", "podman", "run"])
    with pytest.raises(options.ProbeSetupError, match="--bogus=1"):
        options.parse_lean(["--bogus=1"])
