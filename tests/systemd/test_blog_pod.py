"""Issue 4's proof on the shipped example (units/blog/blog.yaml) under a real systemd: the
pod's start returns when the blog is served, container output is in the journal, a killed
container is restarted by systemd, and a stop leaves nothing behind for the next start."""
from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import pytest

from supervisor.lab.images import BLOG_IMAGE, ensure_image
from supervisor.lab.sandbox import Sandbox

from .conftest import IMAGE, sh, unit_props

pytestmark = pytest.mark.systemd

REPO = Path(__file__).resolve().parents[2]
PODVISOR = shlex.quote(str(Path(sys.executable).parent / "podvisor"))  # for sh -c: the checkout may hold blanks
FETCH = ("import urllib.request as u; r = u.urlopen('http://127.0.0.1:8080/', timeout=5); "
         "print(r.headers.get('X-Served-By')); print(r.read().decode())")


def _install(sb: Sandbox, name: str, text: str) -> None:
    sh(sb, f"mkdir -p /run/pvt-defs && cat > /run/pvt-defs/{name}", input=text)
    sh(sb, f"{PODVISOR} install /run/pvt-defs/{name}")


def _fetch(sb: Sandbox) -> str:
    return sh(sb, f"{shlex.quote(sys.executable)} -c {shlex.quote(FETCH)}").stdout


def _main_pid(sb: Sandbox, unit: str) -> int:
    return int(unit_props(sb, unit, "MainPID")["MainPID"])


def test_blog_pod(sandbox: Sandbox) -> None:
    ensure_image(sandbox.podman, BLOG_IMAGE)
    _install(sandbox, "blog.yaml", (REPO / "units" / "blog" / "blog.yaml").read_text())
    try:
        sh(sandbox, "systemctl start pod-blog.service", timeout=120)
        # start returned: both probes passed, so the blog is served through the sidecar now
        page = _fetch(sandbox)
        assert page.startswith("podvisor-blog-proxy\n") and "Hello from the podvisor blog" in page
        for c in ("web", "proxy"):
            props = unit_props(sandbox, f"pod-blog@{c}.service", "ActiveState", "StatusText")
            assert props["ActiveState"] == "active" and props["StatusText"].startswith("ready"), props
            pid = _main_pid(sandbox, f"pod-blog@{c}.service")
            assert "podvisor-conmon --api-version 1" in sh(sandbox, f"tr '\\0' ' ' < /proc/{pid}/cmdline").stdout

        # the container's output (nginx's access log line for that GET) is in the unit's journal
        deadline = time.monotonic() + 10
        while '"GET / HTTP/1.0" 200' not in (journal := sh(
                sandbox, "journalctl -u pod-blog@web.service --no-pager -o cat").stdout):
            assert time.monotonic() < deadline, journal[-2000:]
            time.sleep(0.3)

        # SIGKILL the blog's nginx: restartPolicy Always -> systemd restarts that container
        old = _main_pid(sandbox, "pod-blog@web.service")
        ctr = sh(sandbox, "podman inspect -f '{{.State.Pid}}' blog.web").stdout.strip()
        sh(sandbox, f"kill -9 {ctr}")
        deadline = time.monotonic() + 60
        while _main_pid(sandbox, "pod-blog@web.service") in (0, old) or unit_props(
                sandbox, "pod-blog@web.service", "ActiveState")["ActiveState"] != "active":
            assert time.monotonic() < deadline, sh(sandbox, "systemctl status --no-pager 'pod-blog*'",
                                                   check=False).stdout
            time.sleep(0.5)
        assert unit_props(sandbox, "pod-blog@web.service", "NRestarts")["NRestarts"] == "1"
        assert "Hello from the podvisor blog" in _fetch(sandbox)

        # stop: every container and the pod gone, no run-time files left to trip the next start
        sh(sandbox, "systemctl stop pod-blog.service", timeout=120)
        assert sh(sandbox, "podman ps -a -q; podman pod ps -q").stdout.strip() == ""
        assert sh(sandbox, "ls /run | grep -c '^pod-blog'", check=False).stdout.strip() == "0"
        sh(sandbox, "systemctl start pod-blog.service", timeout=120)
        assert "Hello from the podvisor blog" in _fetch(sandbox)
    finally:
        sh(sandbox, "systemctl stop pod-blog.service", check=False, timeout=120)
        sh(sandbox, f"{PODVISOR} uninstall blog", check=False)


def test_app_readiness_delays_the_pod_start(sandbox: Sandbox, sd_notify_tool: Path) -> None:
    """A container in `container` readiness mode that sends READY=1 after 3 s holds the pod's
    `systemctl start` for at least those 3 s."""
    _install(sandbox, "late.yaml", f"""\
apiVersion: v1
kind: Pod
metadata:
  name: late
  annotations: {{podvisor.io/readiness.app: container}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
    - name: app
      image: {IMAGE}
      command: [sh, -c, 'sleep 3; /n READY=1 STATUS=warmed-up; trap "exit 0" TERM; sleep 1000 & wait']
      volumeMounts: [{{name: tool, mountPath: /n, readOnly: true}}]
  volumes:
    - {{name: tool, hostPath: {{path: {sd_notify_tool}, type: File}}}}
""")
    try:
        t0 = time.monotonic()
        sh(sandbox, "systemctl start pod-late.service", timeout=120)
        took = time.monotonic() - t0
        assert took >= 3.0, f"the pod's start returned after {took:.2f}s, before the app's READY=1"
        assert unit_props(sandbox, "pod-late@app.service", "StatusText")["StatusText"] == "warmed-up"
    finally:
        sh(sandbox, "systemctl stop pod-late.service", check=False, timeout=60)
        sh(sandbox, f"{PODVISOR} uninstall late", check=False)


def _span_seconds(span: str) -> float:
    """systemd's time span text ("1min 3s", "500ms") in seconds."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "min": 60, "h": 3600}
    total = 0.0
    for part in span.split():
        number = part.rstrip("abcdefghijklmnopqrstuvwxyz")
        total += float(number) * units[part[len(number):]]
    return total


def test_stop_of_a_container_that_ignores_sigterm(sandbox: Sandbox) -> None:
    """The stop finishes within the unit's stop timeout (SIGKILL after the grace period) and
    leaves no container, pod or run-time file behind."""
    _install(sandbox, "stubborn.yaml", f"""\
apiVersion: v1
kind: Pod
metadata: {{name: stubborn}}
spec:
  terminationGracePeriodSeconds: 3
  containers:
    - name: app
      image: {IMAGE}
      command: [sh, -c, 'trap "" TERM; while true; do sleep 1; done']
""")
    try:
        sh(sandbox, "systemctl start pod-stubborn.service", timeout=120)
        limit = _span_seconds(unit_props(sandbox, "pod-stubborn@app.service",
                                         "TimeoutStopUSec")["TimeoutStopUSec"])
        t0 = time.monotonic()
        sh(sandbox, "systemctl stop pod-stubborn.service", timeout=120)
        took = time.monotonic() - t0
        assert took >= 3.0, f"stopped after {took:.1f}s: the grace period was not given"
        assert took < limit, f"stop took {took:.1f}s, the unit allows {limit}s"
        assert unit_props(sandbox, "pod-stubborn@app.service", "ActiveState")["ActiveState"] == "inactive"
        assert sh(sandbox, "podman ps -a -q; podman pod ps -q").stdout.strip() == ""
        assert sh(sandbox, "ls /run | grep -c '^pod-stubborn'", check=False).stdout.strip() == "0"
    finally:
        sh(sandbox, "systemctl stop pod-stubborn.service", check=False, timeout=60)
        sh(sandbox, f"{PODVISOR} uninstall stubborn", check=False)


def test_monitor_killed_under_systemd(sandbox: Sandbox) -> None:
    """SIGKILL of a container's podvisor-conmon (the unit's main process): the unit fails, is
    restarted per restartPolicy, the new start replaces the orphaned container, and the blog
    is served again."""
    ensure_image(sandbox.podman, BLOG_IMAGE)
    _install(sandbox, "blog.yaml", (REPO / "units" / "blog" / "blog.yaml").read_text())
    try:
        sh(sandbox, "systemctl start pod-blog.service", timeout=120)
        unit = "pod-blog@web.service"
        monitor = _main_pid(sandbox, unit)
        old_ctr = sh(sandbox, "podman inspect -f '{{.State.Pid}}' blog.web").stdout.strip()
        sh(sandbox, f"kill -9 {monitor}")
        deadline = time.monotonic() + 60
        while _main_pid(sandbox, unit) in (0, monitor) or unit_props(
                sandbox, unit, "ActiveState")["ActiveState"] != "active":
            assert time.monotonic() < deadline, sh(sandbox, f"systemctl status --no-pager {unit}",
                                                   check=False).stdout
            time.sleep(0.5)
        assert int(unit_props(sandbox, unit, "NRestarts")["NRestarts"]) >= 1
        assert "podvisor-conmon --api-version 1" in sh(
            sandbox, f"tr '\\0' ' ' < /proc/{_main_pid(sandbox, unit)}/cmdline").stdout
        # the orphaned container process was replaced, not left running beside the new one
        assert sh(sandbox, f"test -e /proc/{old_ctr}", check=False).returncode != 0
        assert sh(sandbox, "podman ps -q --filter name=blog.web | wc -l").stdout.strip() == "1"
        assert "Hello from the podvisor blog" in _fetch(sandbox)
    finally:
        sh(sandbox, "systemctl stop pod-blog.service", check=False, timeout=120)
        sh(sandbox, f"{PODVISOR} uninstall blog", check=False)
