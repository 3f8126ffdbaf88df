"""Socket activation under a real systemd (the sandbox), on pods installed by `podvisor install`:

* the socket-activated blog (units/blog-sockets/blog.yaml): armed with no container running,
  the first request starts the whole pod and is served (no 502: the proxy starts after the blog
  is ready), requests sent after a stop and during a restart all succeed (counted);
* a Kubernetes pod with `network: none` serving TCP and UDP only through passed sockets, its
  readiness probe's exec sessions seeing none of them;
* the Quadlet form: web.container + web.socket;
* uninstall removes the sockets and frees the port.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.lab.images import BLOG_IMAGE, ensure_image
from supervisor.lab.sandbox import Sandbox

from .conftest import IMAGE, sh, unit_props

pytestmark = pytest.mark.systemd

REPO = Path(__file__).resolve().parents[2]
PYTHON = shlex.quote(sys.executable)
PODVISOR = shlex.quote(str(Path(sys.executable).parent / "podvisor"))  # for sh -c: the checkout may hold blanks
TOOL_SOURCE = REPO / "tests" / "tools" / "listen-serve.c"

# Many concurrent HTTP clients inside the sandbox; prints one JSON line with the counts.
BURST = r"""
import json, sys, threading, time, urllib.request
n, spacing, port = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
ok, failures, latencies = 0, [], []
lock = threading.Lock()
def one():
    global ok
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=120) as r:
            good = r.status == 200 and b"Hello from the podvisor blog" in r.read()
            why = f"status {r.status}"
    except Exception as e:
        good, why = False, repr(e)
    with lock:
        latencies.append(time.monotonic() - t0)
        if good:
            ok += 1
        else:
            failures.append(why)
threads = [threading.Thread(target=one) for _ in range(n)]
for t in threads:
    t.start()
    time.sleep(spacing)
for t in threads:
    t.join()
print(json.dumps({"ok": ok, "sent": n, "failures": failures[:5], "max": max(latencies)}))
"""


@pytest.fixture(scope="module")
def tools(sandbox: Sandbox) -> Iterator[Path]:
    """/var/tmp/pvt-sock-*/: the burst client and listen-serve, built statically (visible inside)."""
    out = Path("/var/tmp") / f"pvt-sock-{uuid.uuid4().hex[:8]}"
    out.mkdir()
    (out / "burst.py").write_text(BURST)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(out / "listen-serve"), str(TOOL_SOURCE)], check=True)
    yield out
    subprocess.run(["rm", "-rf", str(out)], check=False)


def _install(sb: Sandbox, files: dict[str, str], main: str) -> str:
    d = f"/run/pvt-sock-{uuid.uuid4().hex[:6]}"
    for name, text in files.items():
        sh(sb, f"mkdir -p {d} && cat > {d}/{name}", input=text)
    return sh(sb, f"{PODVISOR} install {d}/{main}", timeout=120).stdout


def _states(sb: Sandbox, pod: str) -> dict[str, str]:
    out = sh(sb, f"systemctl list-units --all --plain --no-legend --no-pager 'pod-{pod}*'").stdout
    return {line.split()[0]: line.split()[2] for line in out.splitlines() if line.strip()}


def _burst(sb: Sandbox, tools: Path, n: int, spacing: float = 0.0, port: int = 8080) -> dict[str, object]:
    res = sh(sb, f"{PYTHON} {tools}/burst.py {n} {spacing} {port}", timeout=300)
    return json.loads(res.stdout.strip().splitlines()[-1])


def _containers(sb: Sandbox) -> list[str]:
    return sh(sb, "podman ps -a --format '{{.Names}}'").stdout.split()


def test_blog_on_demand(sandbox: Sandbox, tools: Path) -> None:
    ensure_image(sandbox.podman, BLOG_IMAGE)
    out = _install(sandbox, {"blog.yaml": (REPO / "units" / "blog-sockets" / "blog.yaml").read_text()}, "blog.yaml")
    try:
        assert "pod-blog-sockets.target is enabled and started" in out, out
        # armed: systemd listens on 8080, nothing runs
        states = _states(sandbox, "blog")
        assert states["pod-blog@proxy.socket"] == "active" and states["pod-blog-sockets.target"] == "active"
        assert all(states[u] == "inactive" for u in ("pod-blog.service", "pod-blog@infra.service",
                                                    "pod-blog@web.service", "pod-blog@proxy.service")), states
        assert _containers(sandbox) == []
        assert "systemd" in sh(sandbox, "ss -ltnpH 'sport = :8080'").stdout
        assert sh(sandbox, "systemctl is-enabled pod-blog-sockets.target").stdout.strip() == "enabled"
        (listed,) = json.loads(sh(sandbox, f"{PODVISOR} ps --json blog").stdout)["pods"]
        assert [(s["unit"], s["sub_state"], s["listen"]) for s in listed["sockets"]] == [
            ("pod-blog@proxy.socket", "listening", [{"type": "Stream", "address": "0.0.0.0:8080"}])]
        table = sh(sandbox, f"{PODVISOR} ps blog").stdout
        assert "proxy.socket" in table and "0.0.0.0:8080 (stream) accepted 0, connections 0" in table, table

        # the first request starts the whole pod and gets the page, through the proxy
        first = _burst(sandbox, tools, 1)
        assert first["ok"] == 1, first
        states = _states(sandbox, "blog")
        assert all(states[u] == "active" for u in ("pod-blog.service", "pod-blog@infra.service",
                                                  "pod-blog@web.service", "pod-blog@proxy.service")), states
        assert sorted(_containers(sandbox)) == ["blog.infra", "blog.proxy", "blog.web"]
        # readiness gating: the proxy (which accepts the queued connection) left "inactive" only
        # after the blog behind it was ready (its probe passed)
        web_ready = unit_props(sandbox, "pod-blog@web.service", "ActiveEnterTimestampMonotonic")
        proxy_start = unit_props(sandbox, "pod-blog@proxy.service", "InactiveExitTimestampMonotonic")
        assert int(web_ready["ActiveEnterTimestampMonotonic"]) <= int(proxy_start["InactiveExitTimestampMonotonic"])
        status = sh(sandbox, f"{PODVISOR} status blog").stdout
        assert "Sockets: pod-blog@proxy.socket active (running)" in status, status
        assert "listen 0.0.0.0:8080 (stream); accepted 0, connections 0, refused 0" in status, status
        # no port publishing, no network: the pod has loopback only
        infra = json.loads(sh(sandbox, "podman pod inspect blog").stdout)["InfraConfig"]
        assert infra["PortBindings"] == {} and not infra["Networks"] and "--network=none" in \
            sh(sandbox, "cat /etc/systemd/system/pod-blog@infra.service").stdout, infra

        # stop, then a burst: every request waits for the pod to come back, none is lost
        sh(sandbox, "systemctl stop pod-blog.service", timeout=120)
        assert _containers(sandbox) == []
        assert _states(sandbox, "blog")["pod-blog@proxy.socket"] == "active"
        after_stop = _burst(sandbox, tools, 100)
        assert after_stop["ok"] == 100, after_stop

        # 200 requests spread over a restart of the pod: all succeed
        argv, env = sandbox.command(["sh", "-c", "sleep 0.5; systemctl restart pod-blog.service"])
        restart = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        during = _burst(sandbox, tools, 200, spacing=0.03)
        _, err = restart.communicate(timeout=120)
        assert restart.returncode == 0, err
        assert during["ok"] == 200, during

        # uninstall: sockets stopped and removed, the port free again
        sh(sandbox, f"{PODVISOR} uninstall blog", timeout=120)
        assert sh(sandbox, "ls /etc/systemd/system | grep -c '^pod-blog'", check=False).stdout.strip() == "0"
        assert sh(sandbox, "ss -ltnH 'sport = :8080'").stdout.strip() == ""
        assert sh(sandbox, "test -e /etc/systemd/system/sockets.target.wants/pod-blog-sockets.target",
                  check=False).returncode != 0
        assert _containers(sandbox) == []
    finally:
        sh(sandbox, "systemctl stop pod-blog-sockets.target pod-blog.service", check=False, timeout=120)
        sh(sandbox, f"{PODVISOR} uninstall blog", check=False, timeout=120)


ECHO_POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: echo
  annotations:
    podvisor.io/socket-activation: all
    podvisor.io/network: none
    podvisor.io/readiness: healthy
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 2
  containers:
    - name: srv
      image: {image}
      command: ["/listen-serve"]
      # through `podvisor ready-probe`, which must pass the sockets to podman run, and only there:
      # the probe's exec session fails if it sees any socket
      readinessProbe:
        exec: {{command: [sh, -c, "! ls -l /proc/self/fd/ | grep -q socket:"]}}
        periodSeconds: 1
        timeoutSeconds: 20   # podman exec alone can take seconds on a loaded machine
      ports:
        - {{containerPort: 7000, hostPort: 17000, hostIP: 127.0.0.1}}
        - {{containerPort: 7001, hostPort: 17001, hostIP: 127.0.0.1, protocol: UDP}}
      volumeMounts: [{{name: tool, mountPath: /listen-serve, readOnly: true}}]
  volumes:
    - {{name: tool, hostPath: {{path: {tool}, type: File}}}}
"""

CLIENT = r"""
import socket, sys
port, kind = int(sys.argv[1]), sys.argv[2]
if kind == "tcp":
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.sendall(b"ping over tcp\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(60)
    s.sendto(b"ping over udp\n", ("127.0.0.1", port))
    data = s.recv(65536)
print(data.decode())
"""


def _client(sb: Sandbox, tools: Path, port: int, kind: str) -> str:
    (tools / "client.py").write_text(CLIENT)
    return sh(sb, f"{PYTHON} {tools}/client.py {port} {kind}", timeout=90).stdout


def test_network_none_serves_tcp_and_udp_through_passed_sockets(sandbox: Sandbox, tools: Path) -> None:
    _install(sandbox, {"echo.yaml": ECHO_POD.format(image=IMAGE, tool=tools / "listen-serve")}, "echo.yaml")
    try:
        text = sh(sandbox, "cat /etc/systemd/system/pod-echo@srv.socket").stdout
        assert "ListenStream=127.0.0.1:17000\nListenDatagram=127.0.0.1:17001\n" in text, text
        assert _containers(sandbox) == []
        reply = _client(sandbox, tools, 17000, "tcp")
        assert reply.startswith("ECHO ping over tcp\nLISTEN_FDS=2 LISTEN_PID=1 PID=1\n"), reply
        # fds 3 and 4 are the two sockets, in definition order; the container has no network
        assert "\nFD 3 socket:" in reply and "\nFD 4 socket:" in reply, reply
        assert sh(sandbox, "podman exec echo.srv cat /proc/net/dev").stdout.count(":") == 1  # lo only
        udp = _client(sandbox, tools, 17001, "udp")
        assert udp.startswith("ECHO ping over udp\nLISTEN_FDS=2"), udp
        # an exec session gets none of the passed sockets
        assert "socket:" not in sh(sandbox, "podman exec echo.srv ls -l /proc/self/fd").stdout

        # the container serves before it is ready; wait until the pod's start (its probe) is done
        sh(sandbox, "systemctl start pod-echo.service", timeout=120)
        assert unit_props(sandbox, "pod-echo@srv.service", "StatusText")["StatusText"].startswith("ready")
        # an eager start (sockets stopped) brings the sockets along (Sockets=), so it still serves
        sh(sandbox, "systemctl stop pod-echo.service pod-echo-sockets.target", timeout=120)
        assert _states(sandbox, "echo")["pod-echo@srv.socket"] == "inactive"
        sh(sandbox, "systemctl start pod-echo.service", timeout=120)
        assert _states(sandbox, "echo")["pod-echo@srv.socket"] == "active"
        assert _client(sandbox, tools, 17000, "tcp").startswith("ECHO ping over tcp\nLISTEN_FDS=2")
    finally:
        sh(sandbox, f"{PODVISOR} uninstall echo", check=False, timeout=120)


QUADLET_CONTAINER = """\
[Container]
Image={image}
Exec=/listen-serve
Network=none
Volume={tool}:/listen-serve:ro
"""
QUADLET_SOCKET = """\
[Socket]
ListenStream=127.0.0.1:17100
Backlog=64
"""


def test_quadlet_socket_file(sandbox: Sandbox, tools: Path) -> None:
    out = _install(sandbox, {"web.container": QUADLET_CONTAINER.format(image=IMAGE, tool=tools / "listen-serve"),
                             "web.socket": QUADLET_SOCKET}, "web.container")
    try:
        assert "wrote pod-web@web.socket" in out and "wrote pod-web-sockets.target" in out, out
        assert _states(sandbox, "web")["pod-web@web.socket"] == "active"
        assert unit_props(sandbox, "pod-web@web.socket", "Backlog")["Backlog"] == "64"
        assert _containers(sandbox) == []
        reply = _client(sandbox, tools, 17100, "tcp")
        assert reply.startswith("ECHO ping over tcp\nLISTEN_FDS=1 LISTEN_PID=1 PID=1\n"), reply
        assert sorted(_containers(sandbox)) == ["web.infra", "web.web"]
    finally:
        sh(sandbox, f"{PODVISOR} uninstall web", check=False, timeout=120)


def test_install_names_a_socket_that_cannot_listen(sandbox: Sandbox, tools: Path) -> None:
    """An address already taken: install fails naming the socket unit (the units stay installed,
    as with any failure after the files are written) and nothing starts."""
    blocker = "pvt-sock-blocker"
    sh(sandbox, f"systemd-run --unit={blocker} {PYTHON} -c \"import socket, time; s = socket.socket(); "
                "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', 17100)); "
                "s.listen(); time.sleep(600)\"")
    try:
        deadline = time.monotonic() + 10
        while ":17100" not in sh(sandbox, "ss -ltnH 'sport = :17100'").stdout:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        d = f"/run/pvt-sock-{uuid.uuid4().hex[:6]}"
        sh(sandbox, f"mkdir -p {d} && cat > {d}/web.container", input=QUADLET_CONTAINER.format(
            image=IMAGE, tool=tools / "listen-serve"))
        sh(sandbox, f"cat > {d}/web.socket", input=QUADLET_SOCKET)
        res = sh(sandbox, f"{PODVISOR} install {d}/web.container", check=False, timeout=120)
        assert res.returncode == 1, res.stdout + res.stderr
        assert "pod-web@web.socket failed to listen" in res.stderr, res.stderr
        assert _containers(sandbox) == []
    finally:
        sh(sandbox, f"systemctl stop {blocker}", check=False)
        sh(sandbox, f"{PODVISOR} uninstall web", check=False, timeout=120)
        sh(sandbox, "systemctl reset-failed", check=False)
