"""Liveness, startup probes and reload under a real systemd 252 with podman 4.3.1 (the sandbox).

Detection latency is measured from the moment a test breaks the container (host clock, shared
with the sandbox) to systemd's own journal entry for the watchdog request, and compared with the
configured bound (max(period, timeout) x failureThreshold + timeout, generator/health.py); the figures are
printed (pytest -s) and kept in bench/ by bench/bench_probe.py, not asserted as timings beyond the bound.
"""
from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

from supervisor.generator import health

from .harness import GeneratorSandbox
from .test_under_systemd import IMAGE, gen, pytestmark  # noqa: F401  (the module's sandbox and marks)

PYTHON = shlex.quote(sys.executable)
PODVISOR = shlex.quote(str(Path(sys.executable).parent / "podvisor"))  # the venv's, quoted for sh -c (blanks)
PERIOD, THRESHOLD, TIMEOUT = 1, 3, 1
BOUND = PERIOD * THRESHOLD + TIMEOUT
LIVE = f"""\
apiVersion: v1
kind: Pod
metadata:
  name: live
  annotations:
    podvisor.io/restart-sec: "1"
    podvisor.io/reload-signal.web: HUP
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: web
    image: {IMAGE}
    command: [sh, -c, 'mkdir -p /www; echo ok > /www/healthz; trap "echo hup >> /www/hups" HUP;
              httpd -f -p 8080 -h /www & while :; do sleep 0.2; done']
    livenessProbe:
      httpGet: {{path: /healthz, port: 8080}}
      periodSeconds: {PERIOD}
      timeoutSeconds: {TIMEOUT}
      failureThreshold: {THRESHOLD}
  - name: plain
    image: {IMAGE}
    args: [sleep, infinity]
"""


def _journal(gen: GeneratorSandbox, unit: str, since: float) -> list[dict[str, str]]:
    out = gen.sh(f"journalctl -o json --no-pager --since=@{since:.3f} _SYSTEMD_UNIT={unit} + UNIT={unit}").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _wait(what: str, cond, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _watchdog_latency(gen: GeneratorSandbox, unit: str, broke_at: float) -> tuple[float, list[str]]:
    """Seconds from `broke_at` to systemd's "Watchdog request" entry; the unit's messages since then."""
    entries: list[dict[str, str]] = []

    def seen() -> bool:
        entries[:] = _journal(gen, unit, broke_at - 1)
        return any("Watchdog request" in str(e.get("MESSAGE", "")) for e in entries)

    _wait("systemd's watchdog request", seen, timeout=BOUND + 30)
    at = min(int(e["__REALTIME_TIMESTAMP"]) / 1e6 for e in entries if "Watchdog request" in str(e.get("MESSAGE")))
    return at - broke_at, [str(e.get("MESSAGE", "")) for e in entries]


def _restarted(gen: GeneratorSandbox, unit: str, before: int) -> None:
    def up() -> bool:
        p = gen.props(unit, "NRestarts", "ActiveState", "StatusText")
        return int(p["NRestarts"]) > before and p["ActiveState"] == "active" and p["StatusText"] == "healthy"
    _wait(f"{unit} restarted and healthy", up, timeout=60)


def test_liveness_restarts_a_failing_and_a_hung_container(gen: GeneratorSandbox) -> None:
    gen.install(gen.write("live.yaml", LIVE))
    unit = "pod-live@web.service"
    try:
        gen.sh("systemctl start pod-live.service")
        _wait("healthy", lambda: gen.props(unit, "StatusText")["StatusText"] == "healthy", 20)
        props = gen.props(unit, "WatchdogUSec", "NRestarts", "MainPID")
        assert props["WatchdogUSec"] == f"{health.WATCHDOG_MARGIN + BOUND:g}s"
        assert "podvisor-conmon --api-version 1" in gen.cmdline(int(props["MainPID"]))
        plain = gen.props("pod-live@plain.service", "WatchdogUSec", "MainPID")
        assert plain["WatchdogUSec"] == "0"  # no probe, no watchdog: as before
        time.sleep(BOUND + 6)  # healthy for longer than WatchdogSec: the pings keep it alive
        assert gen.props(unit, "NRestarts")["NRestarts"] == "0"

        # the health endpoint starts failing
        broke_at = time.time()
        gen.sh("podman exec live.web rm /www/healthz")
        broken = time.time() - broke_at  # the file went somewhere in between
        latency, _ = _watchdog_latency(gen, unit, broke_at)
        _restarted(gen, unit, 0)
        text = "\n".join(str(e.get("MESSAGE", "")) for e in _journal(gen, unit, broke_at - 1))
        assert "liveness probe (http://127.0.0.1:8080/healthz) failed 3 times in a row" in text, text
        assert "HTTP 404 from /healthz" in text
        assert "unhealthy (3/3 failed: HTTP 404 from /healthz)" in text  # systemd quotes our STATUS=
        assert "Failed with result 'watchdog'" in text
        print(f"\nHTTP failure: detected {latency - broken:.2f}-{latency:.2f}s after the break (podman exec took "
              f"{broken:.2f}s), bound {BOUND}s; WatchdogSec {BOUND + health.WATCHDOG_MARGIN:g}s")
        assert latency - broken <= BOUND + 1.0
        assert gen.props("pod-live@plain.service", "MainPID")["MainPID"] == plain["MainPID"]  # left alone

        # the container hangs: every process in it stopped
        pid = gen.sh("podman inspect --format '{{.State.Pid}}' live.web").stdout.strip()
        broke_at = time.time()
        gen.sh(f"kill -STOP $(cat /proc/{pid}/task/*/children 2>/dev/null) {pid}")
        latency, messages = _watchdog_latency(gen, unit, broke_at)
        assert "no answer within 1s from /healthz" in "\n".join(messages)
        print(f"SIGSTOP: detected after {latency:.2f}s, bound {BOUND}s")
        assert latency <= BOUND + 1.5
        _restarted(gen, unit, 1)

        # systemctl reload, and podvisor reload: the signal reaches the container
        gen.sh(f"systemctl reload {unit}")
        _wait("the HUP", lambda: "hup" in gen.sh("podman exec live.web cat /www/hups", check=False).stdout, 10)
        out = gen.sh(f"{PODVISOR} reload live web").stdout
        assert out.strip() == f"reloaded {unit}"
        _wait("2 HUPs", lambda: gen.sh("podman exec live.web cat /www/hups", check=False).stdout.count("hup") == 2, 10)
        res = gen.sh(f"{PODVISOR} reload live plain", check=False)
        assert res.returncode == 1 and "pod-live@plain.service cannot reload" in res.stderr

        # visible health: ps, status, --json
        _wait("healthy", lambda: gen.props(unit, "StatusText")["StatusText"] == "healthy", 20)
        pods = json.loads(gen.sh(f"{PODVISOR} ps live --json").stdout)["pods"]
        health_of = {c["name"]: c["health"] for c in pods[0]["containers"]}
        assert health_of == {"web": "healthy", "plain": None}
        table = gen.sh(f"{PODVISOR} ps live").stdout.splitlines()
        col = table[0].split().index("HEALTH") + 1  # STATE is two words
        assert {ln.split()[0]: ln.split()[col] for ln in table[2:]} == {"infra": "-", "plain": "-", "web": "healthy"}
        detail = json.loads(gen.sh(f"{PODVISOR} status live --json").stdout)
        probes = next(c for c in detail["containers"] if c["name"] == "web")["probes"]
        assert probes and probes[-1]["probe"] == "liveness" and probes[-1]["ok"] is True and probes[-1]["time"]
        assert "Health: healthy" in gen.sh(f"{PODVISOR} status live").stdout

        # a stop is not a liveness failure
        gen.sh("systemctl stop pod-live.service")
        assert gen.props(unit, "Result", "ActiveState") == {"Result": "success", "ActiveState": "inactive"}
    finally:
        gen.sh("systemctl stop pod-live.service", check=False)
        gen.sh(f"{gen.podvisor} uninstall live", check=False)


SLOW = f"""\
apiVersion: v1
kind: Pod
metadata: {{name: slow, annotations: {{podvisor.io/restart-sec: "1"}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {IMAGE}
    command: [sh, -c, 'sleep 6; mkdir -p /www; echo ok > /www/healthz; exec httpd -f -p 8081 -h /www']
    startupProbe:
      httpGet: {{path: /healthz, port: 8081}}
      periodSeconds: 1
      failureThreshold: 20
    livenessProbe:
      httpGet: {{path: /healthz, port: 8081}}
      periodSeconds: 1
      failureThreshold: 1
  - name: never
    image: {IMAGE}
    args: [sleep, infinity]
    startupProbe:
      exec: {{command: [test, -e, /started]}}
      periodSeconds: 1
      failureThreshold: 3
"""


def test_startup_probe_holds_liveness_back_and_bounds_the_start(gen: GeneratorSandbox) -> None:
    gen.install(gen.write("slow.yaml", SLOW))
    try:
        t0 = time.monotonic()
        res = gen.sh("systemctl start pod-slow@app.service")
        took = time.monotonic() - t0
        assert res.returncode == 0 and took >= 6, took  # readiness waited for the startup probe
        p = gen.props("pod-slow@app.service", "ActiveState", "NRestarts", "StatusText", "MainPID")
        assert p["ActiveState"] == "active" and p["NRestarts"] == "0" and p["StatusText"] == "healthy", p
        assert "podvisor-conmon --api-version 1" in gen.cmdline(int(p["MainPID"]))

        t0 = time.monotonic()
        res = gen.sh("systemctl start pod-slow@never.service", check=False)
        took = time.monotonic() - t0
        assert res.returncode != 0 and took < 20, took
        p = gen.props("pod-slow@never.service", "Result", "StatusText")
        assert p["Result"] == "exit-code"
        assert p["StatusText"].startswith("start failed: startup probe failed 3 times in a row (every 1s, "
                                          "failureThreshold 3"), p
        log = gen.sh("journalctl --no-pager -u pod-slow@never.service").stdout
        assert "the start fails" in log
        _wait("the container removed", lambda: "slow.never" not in gen.sh("podman ps -a").stdout, 30)
    finally:
        gen.sh("systemctl stop pod-slow.service pod-slow@app.service pod-slow@never.service", check=False)
        gen.sh(f"{gen.podvisor} uninstall slow", check=False)


def test_quadlet_health_keys(gen: GeneratorSandbox) -> None:
    d = gen.workdir / "hq"
    d.mkdir(exist_ok=True)
    (d / "hq.pod").write_text("[Pod]\n")
    (d / "web.container").write_text(f"""\
[Container]
Image={IMAGE}
Pod=hq.pod
Exec=sh -c 'sleep 2; touch /tmp/started; trap "echo reloaded >> /tmp/r" USR1; while :; do sleep 0.2; done'
Notify=healthy
HealthCmd=test -e /tmp/started -a ! -e /tmp/broken
HealthInterval=2s
HealthRetries=2
HealthTimeout=5s
HealthOnFailure=kill
HealthStartupCmd=test -e /tmp/started
HealthStartupInterval=1s
HealthStartupRetries=10
ReloadCmd=/bin/sh -c "kill -USR1 1"

[Service]
Restart=on-failure
RestartSec=1
""")
    (d / "stopper.container").write_text(f"""\
[Container]
Image={IMAGE}
Pod=hq.pod
Exec=sh -c 'touch /tmp/ok; while :; do sleep 0.2; done'
HealthCmd=test -e /tmp/ok
HealthInterval=1s
HealthRetries=1
HealthOnFailure=stop

[Service]
Restart=always
RestartSec=1
""")
    gen.sh(f"{gen.podvisor} install {d / 'hq.pod'} --podvisor={gen.podvisor}")
    unit = "pod-hq@web.service"
    try:
        gen.sh("systemctl start pod-hq.service")
        assert gen.props(unit, "StatusText")["StatusText"] == "healthy"
        gen.sh(f"systemctl reload {unit}")
        _wait("reloaded", lambda: "reloaded" in gen.sh("podman exec hq.web cat /tmp/r", check=False).stdout, 10)
        # podman keeps no health state of its own: nothing to contradict
        assert gen.sh("podman inspect --format '{{.State.Health.Status}}' hq.web").stdout.strip() in ("", "<no value>")
        broke_at = time.time()
        gen.sh("podman exec hq.web touch /tmp/broken")
        broken = time.time() - broke_at
        latency, messages = _watchdog_latency(gen, unit, broke_at)
        assert "unhealthy (2/2 failed: test -e /tmp/started -a ! -e /tmp/broken: exit status 1)" in "\n".join(messages)
        bound = max(2, 5) * 2 + 5  # podman exec is slow here: a timeout above the interval
        print(f"\nQuadlet exec check: detected {latency - broken:.2f}-{latency:.2f}s after the break, bound {bound}s")
        assert latency - broken <= bound + 1.0
        _restarted(gen, unit, 0)

        # HealthOnFailure=stop: stopped for good, even with Restart=always
        stopper = "pod-hq@stopper.service"
        _wait("stopper healthy", lambda: gen.props(stopper, "StatusText")["StatusText"] == "healthy", 20)
        gen.sh("podman exec hq.stopper rm /tmp/ok")
        _wait("stopper stopped", lambda: gen.props(stopper, "ActiveState")["ActiveState"] == "inactive", 40)
        time.sleep(3)  # RestartSec=1: a restart would have come by now
        p = gen.props(stopper, "ActiveState", "NRestarts", "Result")
        assert p == {"ActiveState": "inactive", "NRestarts": "0", "Result": "success"}, p
        log = gen.sh(f"journalctl --no-pager -u {stopper}").stdout
        assert "failed 1 times in a row (every 1s, timeout 30s): test -e /tmp/ok: exit status 1; stopping the unit" in log
    except BaseException:
        print(gen.sh(f"journalctl --no-pager -o short-precise -u {unit} | grep -v ' podman\\['", check=False).stdout[-6000:])
        raise
    finally:
        gen.sh("systemctl stop pod-hq.service", check=False)
        gen.sh(f"{gen.podvisor} uninstall hq", check=False)


GRPC_SERVER = """\
import os, sys, time
from concurrent import futures
import grpc

flag = sys.argv[2]

def check(request, context):
    return b"\\x08\\x02" if os.path.exists(flag) else b"\\x08\\x01"  # NOT_SERVING / SERVING

handler = grpc.method_handlers_generic_handler(
    "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(check)})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
server.add_generic_rpc_handlers((handler,))
server.add_insecure_port("127.0.0.1:" + sys.argv[1])
server.start()
server.wait_for_termination()
"""


def test_grpc_liveness(gen: GeneratorSandbox) -> None:
    """A real gRPC health server (grpcio, in the sandbox's network, shared by a hostNetwork pod)."""
    server = gen.write("grpc_server.py", GRPC_SERVER)
    flag = "/run/pvt-grpc-not-serving"
    gen.sh(f"rm -f {flag}; systemd-run --unit=pvt-grpc {PYTHON} {server} 18555 {flag}")
    gen.install(gen.write("rpc.yaml", f"""\
apiVersion: v1
kind: Pod
metadata: {{name: rpc, annotations: {{podvisor.io/restart-sec: "1"}}}}
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {IMAGE}
    args: [sleep, infinity]
    livenessProbe:
      grpc: {{port: 18555}}
      periodSeconds: 1
      failureThreshold: 2
"""))
    unit = "pod-rpc@app.service"
    try:
        _wait("the gRPC server", lambda: gen.sh("ss -ltn | grep -q ':18555 '", check=False).returncode == 0, 30)
        gen.sh("systemctl start pod-rpc.service")
        _wait("healthy", lambda: gen.props(unit, "StatusText")["StatusText"] == "healthy", 20)
        broke_at = time.time()
        gen.sh(f"touch {flag}")
        latency, _ = _watchdog_latency(gen, unit, broke_at)
        gen.sh(f"rm -f {flag}")
        _restarted(gen, unit, 0)
        text = "\n".join(str(e.get("MESSAGE", "")) for e in _journal(gen, unit, broke_at - 1))
        assert "unhealthy (2/2 failed: gRPC status NOT_SERVING)" in text, text
        print(f"\ngRPC NOT_SERVING: detected after {latency:.2f}s, bound {1 * 2 + 1}s")
        assert latency <= 1 * 2 + 1 + 1.5
    finally:
        gen.sh("systemctl stop pod-rpc.service pvt-grpc.service", check=False)
        gen.sh(f"{gen.podvisor} uninstall rpc", check=False)
