"""Generated units under a real systemd 252 with podman 4.3.1 and podvisor-conmon (the sandbox).

What only a real systemd can show: the argv an escaped ExecStart= delivers, that `systemctl start
pod-X` returns exactly when every container is ready (and fails when one is not), that one
container's restart leaves the others alone, and that the generator entry point runs at
daemon-reload."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.lab.sandbox import Bind, Sandbox, SandboxConfig

from ..unit.test_generator_escape import HOSTILE
from ..unit.test_generator_property import words
from .harness import REPO, GeneratorSandbox

pytestmark = [
    pytest.mark.systemd,
    pytest.mark.timeout(600),
    pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root"),
    pytest.mark.skipif(shutil.which("systemd-nspawn") is None, reason="systemd-nspawn missing"),
]
IMAGE = "localhost/podvisor-busybox:latest"
MONITOR = Path(sys.executable).parent / "podvisor-conmon"
TOOLS = REPO / "tests" / "tools"


@pytest.fixture(scope="module")
def gen() -> Iterator[GeneratorSandbox]:
    if not MONITOR.exists():
        pytest.skip(f"{MONITOR} is not installed (run scripts/install.sh)")
    workdir = Path(tempfile.mkdtemp(prefix="pvt-gen-", dir="/var/tmp"))
    # binds show host edits at once (the overlay may keep serving a file's older content)
    sb = Sandbox(SandboxConfig(name=f"pvt-gen-{uuid.uuid4().hex[:6]}", conmon_path=str(MONITOR),
                               binds=(Bind(REPO, REPO, readonly=True), Bind(workdir, workdir))))
    sb.start()
    try:
        g = GeneratorSandbox(sb, workdir)
        from supervisor.lab.images import ensure_image

        ensure_image(sb.podman, IMAGE)
        subprocess.run(["gcc", "-static", "-O2", "-o", str(workdir / "sd-notify"), str(TOOLS / "sd-notify.c")],
                       check=True)
        yield g
    finally:
        sb.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_escaped_argv_arrives_byte_for_byte(gen: GeneratorSandbox) -> None:
    import random

    rnd = random.Random(4)
    alphabet = "ab %$;'\"\\#\n\t\x01\x7f\u0085é😀{}"
    argvs = [HOSTILE, [""], [";"], ["\\;"], ["#", ";"]]
    argvs += [["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 8))) for _ in range(6)] for _ in range(20)]
    got = gen.argv_under_systemd(argvs)
    assert got == [[a.encode() for a in argv] for argv in argvs]


POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  annotations:
    podvisor.io/readiness.worker: container
    podvisor.io/restart-sec: "1"
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: web
    image: {image}
    command: [sh, -c, 'sleep 2; echo "hello 100% $HOME" > /www/index.html; exec httpd -f -p 80 -h /www']
    ports: [{{containerPort: 80, hostPort: 8080}}]
    volumeMounts: [{{name: www, mountPath: /www}}]
    resources: {{limits: {{memory: 64Mi, cpu: 500m}}}}
    readinessProbe:
      httpGet: {{path: /index.html, port: 80}}
      periodSeconds: 1
  - name: worker
    image: {image}
    args: [sh, -c, 'sleep 1; /n READY=1; exec sleep infinity']
    volumeMounts: [{{name: tool, mountPath: /n, readOnly: true}}]
  - name: echo
    image: {image}
    args: [sh, -c, 'for a; do printf "%s" "$a" | od -An -tx1 -v | tr -d " \\n"; echo; done; printf "%s" "$V" | od -An -tx1 -v | tr -d " \\n"; echo; exec sleep infinity', sh]
  volumes:
  - {{name: www, emptyDir: {{}}}}
  - {{name: tool, hostPath: {{path: {tool}, type: File}}}}
"""


def test_pod_lifecycle(gen: GeneratorSandbox) -> None:
    import yaml

    definition = yaml.safe_load(POD.format(name="blog", image=IMAGE, tool=gen.workdir / "sd-notify"))
    hostile = [a for a in HOSTILE if a]  # as container arguments (an empty one prints an empty line too)
    definition["spec"]["containers"][2]["args"] += [*hostile, ""]
    definition["spec"]["containers"][2]["env"] = [{"name": "V", "value": "x $HOME %n ; \"q\" 'q' \\ \n end"}]
    path = gen.write("blog.yaml", yaml.safe_dump(definition))
    gen.install(path)
    units = ["pod-blog@infra.service", "pod-blog@web.service", "pod-blog@worker.service", "pod-blog@echo.service"]

    t0 = time.monotonic()
    gen.sh("systemctl start pod-blog.service")
    took = time.monotonic() - t0
    assert took >= 2.0, f"returned after {took:.1f}s, before web's probe could pass"
    for u in ["pod-blog.service", *units]:
        assert gen.props(u, "ActiveState")["ActiveState"] == "active", u
    pids = gen.main_pids(units)
    for u, pid in pids.items():  # systemd supervises the monitor of each container
        assert "podvisor-conmon --api-version 1" in gen.cmdline(pid), (u, gen.cmdline(pid))
    assert gen.props("pod-blog@web.service", "StatusText")["StatusText"].startswith("ready: the readiness probe passed")
    assert gen.sh("wget -q -O - http://127.0.0.1:8080/index.html").stdout == "hello 100% /root\n"

    # argv and environment reached the container byte for byte
    lines = gen.sh("podman logs blog.echo").stdout.split("\n")
    got = [bytes.fromhex(h) for h in lines[:len(hostile) + 2]]
    assert got == [a.encode() for a in hostile] + [b"", definition["spec"]["containers"][2]["env"][0]["value"].encode()]

    # one container's crash restarts that container only
    gen.sh("podman kill blog.echo")
    deadline = time.monotonic() + 30
    while gen.main_pids(["pod-blog@echo.service"])["pod-blog@echo.service"] in (0, pids["pod-blog@echo.service"]):
        assert time.monotonic() < deadline, "echo was not restarted"
        time.sleep(0.5)
    after = gen.main_pids(units)
    assert {u: p for u, p in after.items() if u != "pod-blog@echo.service"} == \
        {u: p for u, p in pids.items() if u != "pod-blog@echo.service"}

    # restarting the pod restarts everything; stopping it waits until everything is gone
    gen.sh("systemctl restart pod-blog.service")
    assert all(p not in pids.values() and p > 0 for p in gen.main_pids(units).values())
    gen.sh("systemctl stop pod-blog.service")
    for u in units:
        assert gen.props(u, "ActiveState")["ActiveState"] == "inactive", u
    assert gen.sh("podman ps -a -q; podman pod ps -q; podman volume ls -q").stdout.strip() == ""
    gen.sh(f"{gen.podvisor} uninstall blog")
    assert gen.sh("ls /etc/systemd/system/ | grep -c pod-blog", check=False).stdout.strip() == "0"


def test_start_fails_when_a_container_is_not_ready_in_time(gen: GeneratorSandbox) -> None:
    path = gen.write("slow.yaml", f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: slow}}
spec:
  template:
    metadata:
      annotations: {{podvisor.io/start-timeout.never: "4"}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {{name: ok, image: {IMAGE}, args: [sleep, infinity]}}
      - name: never
        image: {IMAGE}
        args: [sleep, infinity]
        readinessProbe: {{exec: {{command: [test, -e, /ready]}}, periodSeconds: 1}}
""")
    gen.install(path)
    t0 = time.monotonic()
    res = gen.sh("systemctl start pod-slow.service", check=False)
    took = time.monotonic() - t0
    assert res.returncode != 0 and 4 <= took < 30, (res.returncode, took)
    props = gen.props("pod-slow@never.service", "Result", "StatusText")
    assert props["Result"] == "timeout" and "not ready" in props["StatusText"]
    deadline = time.monotonic() + 30  # the rest of the pod is stopped too (PropagatesStopTo=)
    while gen.sh("podman ps -q").stdout.strip():
        assert time.monotonic() < deadline, gen.sh("podman ps -a").stdout
        time.sleep(0.5)
    gen.sh(f"{gen.podvisor} uninstall slow")


def test_generator_entry_point(gen: GeneratorSandbox) -> None:
    gen.sh(f"{gen.podvisor} install-generator")
    gen.sh("mkdir -p /etc/containers/systemd")
    gen.sh(f"printf '[Pod]\\n[Install]\\nWantedBy=multi-user.target\\n' > /etc/containers/systemd/quad.pod && "
           f"printf '[Container]\\nImage={IMAGE}\\nPod=quad.pod\\nExec=sleep infinity\\n' > /etc/containers/systemd/c.container")
    gen.sh("systemctl daemon-reload")
    assert gen.sh("ls /run/systemd/generator/").stdout.split().count("pod-quad@c.service") == 1
    gen.sh("test -L /run/systemd/generator/multi-user.target.wants/pod-quad.service")
    # units point at the containers.conf install writes; the generator cannot write /etc itself
    gen.sh("test -e /etc/podvisor/containers.conf")
    gen.sh("systemctl start pod-quad.service")
    assert gen.props("pod-quad@c.service", "ActiveState", "SourcePath") == {
        "ActiveState": "active", "SourcePath": "/etc/containers/systemd/quad.pod"}
    pid = gen.main_pids(["pod-quad@c.service"])["pod-quad@c.service"]
    assert "podvisor-conmon --api-version 1" in gen.cmdline(pid)  # conmon_path of the containers.conf it names
    gen.sh("systemctl stop pod-quad.service; rm -f /etc/containers/systemd/quad.pod /etc/containers/systemd/c.container; "
           "systemctl daemon-reload")


ECHO_POD: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "argv"},
    "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
        "name": "echo", "image": IMAGE,
        # one hex line per argument: the bytes the container's process really received
        "command": ["sh", "-c", 'for a; do printf "%s" "$a" | od -An -tx1 -v | tr -d " \\n"; echo; done; '
                                'echo END; exec sleep infinity', "sh"]}]},
}


@settings(max_examples=6, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(args=st.lists(words, min_size=1, max_size=4))
def test_hypothesis_hostile_argv_reaches_the_container(gen: GeneratorSandbox, args: list[str]) -> None:
    """Property, under the real systemd: whatever argv the YAML holds, the generated unit's
    escaping delivers it to the container's process byte for byte."""
    import copy

    import yaml

    definition = copy.deepcopy(ECHO_POD)
    definition["spec"]["containers"][0]["command"] += args
    gen.install(gen.write("argv.yaml", yaml.safe_dump(definition)))
    try:
        gen.sh("systemctl start pod-argv.service")
        deadline = time.monotonic() + 20
        while "END" not in (out := gen.sh("podman logs argv.echo").stdout):
            assert time.monotonic() < deadline, out
            time.sleep(0.2)
        lines = out.split("\n")
        got = [bytes.fromhex(h) for h in lines[:lines.index("END")]]
        assert got == [a.encode() for a in args]
    finally:
        gen.sh("systemctl stop pod-argv.service", check=False)
        gen.sh(f"{gen.podvisor} uninstall argv", check=False)
