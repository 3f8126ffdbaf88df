"""Liveness, startup probes and reload in the generated units: Kubernetes and Quadlet input,
golden files, the errors for what cannot be honoured, and systemd-analyze verify."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor.generator import health
from supervisor.generator.pipeline import generate
from supervisor.pods import kube, quadlet
from supervisor.pods.model import DefinitionError, OnFailure, Readiness

from .test_generator_render import GOLDEN, SETTINGS, argvs, keys, needs_analyze


def _golden(name: str, source: Path) -> dict[str, str]:
    rendered = {n: t.replace(str(GOLDEN), "GOLDEN") for n, t in generate(source, SETTINGS, verify=False).files().items()}
    expected_dir = GOLDEN / name
    if os.environ.get("PODVISOR_UPDATE_GOLDEN"):
        expected_dir.mkdir(exist_ok=True)
        for n, t in rendered.items():
            (expected_dir / n).write_text(t)
    assert {p.name: p.read_text() for p in expected_dir.iterdir()} == rendered
    return rendered


def test_kube_golden() -> None:
    units = _golden("health", GOLDEN / "health.yaml")
    web = units["pod-health@web.service"]
    svc = keys(web)["Service"]
    # period 2 x threshold 3 + timeout 1 + margin 5
    assert svc["WatchdogSec"] == ["12"] and svc["WatchdogSignal"] == ["SIGTERM"]
    assert svc["TimeoutAbortSec"] == ["3"]  # the probe's own terminationGracePeriodSeconds
    [start] = argvs(web, "ExecStart", "pod-health@web.service")
    assert start[1] == "ready-probe" and "--liveness-http-get=http://127.0.0.1:8080/healthz" in start
    assert "--liveness-http-header=X-Probe: live" in start and "--on-failure=watchdog" in start
    run = start[start.index("--") + 1:]
    assert "--sdnotify=ignore" in run and "--no-healthcheck" in run and "--conmon-pidfile=/run/pod-health@web.service.pid" in run
    assert argvs(web, "ExecReload", "pod-health@web.service") == [[
        "/usr/bin/podman", "--root=/srv/containers", "--runroot=/run/pv", "--cgroup-manager=systemd", "kill",
        "--signal=SIGHUP", "--cidfile=/run/pod-health@web.service.ctr-id"]]
    api = units["pod-health@api.service"]
    svc = keys(api)["Service"]
    assert svc["TimeoutStartSec"] == [str(1 * 30 + 1 + 90)]  # the startup probe's bound + systemd's default
    [start] = argvs(api, "ExecStart", "pod-health@api.service")
    assert "--tcp-socket=127.0.0.1:9000" in start and "--startup-exec=test" in start
    assert "--startup-failure-threshold=30" in start and "--liveness-initial-delay=5" in start
    assert argvs(api, "ExecReload", "pod-health@api.service")[0][-4:] == ["health.api", "/bin/sh", "-c", "kill -USR1 1"]
    [start] = argvs(units["pod-health@rpc.service"], "ExecStart", "pod-health@rpc.service")
    assert "--liveness-grpc=127.0.0.1:9090" in start and "--liveness-grpc-service=app.v1" in start
    # a container without probes is exactly what it was
    plain = keys(units["pod-health@plain.service"])["Service"]
    assert not {"WatchdogSec", "ExecReload", "TimeoutAbortSec"} & plain.keys()
    [start] = argvs(units["pod-health@plain.service"], "ExecStart", "pod-health@plain.service")
    assert "ready-probe" not in start and "--sdnotify=conmon" in start and "--no-healthcheck" not in start


def test_quadlet_golden() -> None:
    units = _golden("health-quadlet-units", GOLDEN / "health-quadlet" / "hq.pod")
    web = units["pod-hq@web.service"]
    svc = keys(web)["Service"]
    assert svc["WatchdogSec"] == [str(5 * 2 + 2 + 5)]
    [start] = argvs(web, "ExecStart", "pod-hq@web.service")
    # Notify=healthy: the HealthCmd is the readiness probe too
    assert start[start.index("--exec=/bin/sh"):start.index("--exec=/bin/sh") + 3] == [
        "--exec=/bin/sh", "--exec=-c", "--exec=wget -q -O /dev/null http://127.0.0.1:8080/"]
    for arg in ("--liveness-period=5", "--liveness-failure-threshold=2", "--liveness-timeout=2",
                "--liveness-start-period=10", "--startup-exec=test", "--startup-success-threshold=2",
                "--startup-failure-threshold=20", "--startup-period=1"):
        assert arg in start, arg
    assert not any(a.startswith("--health") for a in start)  # podman's own healthcheck is never configured
    assert argvs(web, "ExecReload", "pod-hq@web.service")[0][-2:] == ["--signal=SIGHUP",
                                                                      "--cidfile=/run/pod-hq@web.service.ctr-id"]
    status = keys(units["pod-hq@status.service"])["Service"]
    assert "WatchdogSec" not in status  # HealthOnFailure=none: only reported
    [start] = argvs(units["pod-hq@status.service"], "ExecStart", "pod-hq@status.service")
    assert "--on-failure=none" in start and "--liveness-period=30" in start and "--sdnotify=ignore" in start
    assert argvs(units["pod-hq@status.service"], "ExecReload", "pod-hq@status.service")[0][-3:] == [
        "/bin/sh", "-c", "echo reloaded > /tmp/reloaded"]
    [start] = argvs(units["pod-hq@stopper.service"], "ExecStart", "pod-hq@stopper.service")
    assert "--on-failure=stop" in start
    restarter = keys(units["pod-hq@restarter.service"])["Service"]
    assert restarter["Restart"] == ["no", "on-watchdog"] and "WatchdogSec" in restarter
    stopper = keys(units["pod-hq@stopper.service"])["Service"]
    assert stopper["Restart"][-1] == "always" and "WatchdogSec" not in stopper
    [start] = argvs(units["pod-hq@nohc.service"], "ExecStart", "pod-hq@nohc.service")
    assert "ready-probe" not in start and "--no-healthcheck" in start


@needs_analyze
@pytest.mark.parametrize("source", ["health.yaml", "health-quadlet/hq.pod"])
def test_verify_clean(source: str) -> None:
    generate(GOLDEN / source, SETTINGS, verify=True)


def _kube(tmp_path: Path, container: str, annotations: str = "{}") -> None:
    p = tmp_path / "p.yaml"
    p.write_text(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: p, annotations: {annotations}}}\n"
                 f"spec:\n  containers:\n  - {{name: c, image: i, {container}}}\n")
    kube.load_file(p)


@pytest.mark.parametrize("container, annotations, message", [
    ("livenessProbe: {grpc: {port: grpc}}", "{}", "livenessProbe.grpc.port: expected an integer"),
    ("livenessProbe: {exec: {command: [x]}, successThreshold: 2}", "{}", "successThreshold: must be 1"),
    ("startupProbe: {exec: {command: [x]}, successThreshold: 3}", "{}", "must be 1 for liveness and startup"),
    ("livenessProbe: {exec: {command: [x]}, failureThreshold: 0}", "{}", "failureThreshold"),
    ("startupProbe: {exec: {command: [x]}}", "{podvisor.io/readiness: container}", "cannot hold back readiness"),
    ("args: [x]", "{podvisor.io/reload-signal: NOPE}", "'NOPE' is not a signal"),
    ("args: [x]", "{podvisor.io/reload-signal: HUP, podvisor.io/reload-cmd: x}", "not both"),
])
def test_kube_errors(tmp_path: Path, container: str, annotations: str, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        _kube(tmp_path, container, annotations)


@pytest.mark.parametrize("text, message", [
    ("HealthInterval=5s\n", "HealthInterval: needs HealthCmd="),
    ("HealthCmd=x\nHealthOnFailure=reboot\n", "expected none, kill, restart or stop"),
    ("HealthCmd=x\nHealthRetries=zero\n", "expected a whole number"),
    ("HealthStartupRetries=3\n", "needs HealthStartupCmd="),
    ("HealthCmd=x\nHealthInterval=disable\nHealthOnFailure=kill\n", "never runs"),
    ("Notify=yes\nHealthStartupCmd=x\n", "cannot hold back Notify=yes"),
    ("ReloadCmd=x\nReloadSignal=HUP\n", "not both"),
    ("ReloadSignal=SIGNOPE\n", "not a signal"),
])
def test_quadlet_errors(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "c.container"
    p.write_text("[Container]\nImage=i\n" + text)
    with pytest.raises(DefinitionError, match=message):
        quadlet.load_file(p)


def test_quadlet_model(tmp_path: Path) -> None:
    p = tmp_path / "c.container"
    p.write_text("[Container]\nImage=i\nHealthCmd=true\nHealthStartupCmd=true\n")
    [pod], _ = quadlet.load_file(p)
    c = pod.containers[0]
    assert c.readiness is Readiness.CONMON and c.probe is None
    h = c.health
    assert h.on_failure is OnFailure.NONE and h.liveness is not None and h.liveness.period == 30.0
    assert h.liveness.failure_threshold == 3 and h.startup is not None and h.startup.failure_threshold == 0
    assert health.wrapped(c)


def test_detection_bound() -> None:
    from supervisor.pods.model import Probe

    p = Probe("http", port=80, period=2, timeout=1, failure_threshold=3)
    assert health.detection_bound(p) == 7 and health.watchdog_sec(p) == 12
    slow = Probe("exec", command=("x",), period=1, timeout=5, failure_threshold=2)  # attempts never overlap
    assert health.detection_bound(slow) == 15 and health.watchdog_sec(slow) == 20
