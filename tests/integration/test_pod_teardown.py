"""`podman kube down` right after `podman kube play` of a pod with a hostPort (issue 15).

A two-container pod with a published port, torn down the moment `kube play` returns, many
times: every `kube down` must succeed and leave no pod, container or mount behind. It once
failed now and then with `unlinkat …/userdata/shm: device or resource busy`, leaving the pod
half-removed.

A published port needs a bridge network (netavark, iptables), so podman runs here in a network
namespace of the test's own: the bridge, the veths and the firewall rules never touch the host's.
(Only podman's IPAM database is shared: rootful podman keeps it in /run/containers/networks,
whatever the store.)
Several pods are played and downed side by side, which keeps the test short and adds the load
under which such races show.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from supervisor.lab.testenv import PodmanEnv
from tests.integration.helpers import wait_until

WORKERS = 4
CYCLES_PER_WORKER = 10  # 40 play/down cycles per monitor: a 1-in-10 failure shows up (p > 0.98)
BASE_PORT = 18080

POD_YAML = """\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  containers:
  - name: web
    image: {image}
    command: ["httpd", "-f", "-p", "80"]
    ports: [{{containerPort: 80, hostPort: {port}}}]
  - name: side
    image: {image}
    command: ["sleep", "1000"]
"""


@pytest.fixture
def netns_podman(podman: PodmanEnv, monitor_kind: str, monitor: str,
                 podman_for: Callable[..., PodmanEnv], tmp_path: Path) -> Iterator[PodmanEnv]:
    """`podman` (same store, same monitor) run inside a fresh network namespace of ours."""
    holder = subprocess.Popen(["unshare", "--net", "--", "sleep", "infinity"],
                              stdin=subprocess.DEVNULL)
    server: subprocess.Popen[bytes] | None = None
    try:
        netns = f"/proc/{holder.pid}/ns/net"
        # readlink, not Path.resolve: resolve() joins the "net:[inode]" target onto each
        # process's own /proc/PID, so it differed at once and nsenter could enter the holder
        # before unshare had run (the fork server then sat in our namespace, not the new one)
        own = os.readlink("/proc/self/ns/net")
        for _ in range(200):  # unshare has unshared once the link changes
            try:
                if os.readlink(netns) != own:
                    break
            except FileNotFoundError:
                pass
            time.sleep(0.01)
        else:
            raise AssertionError("the network namespace holder did not start")
        if monitor_kind == "podvisor-forked":
            # the fork server refuses a launcher in another network namespace (a monitor lives in
            # podman's namespaces), so the forked monitors here come from a server in ours
            sock = tmp_path / "fork-server" / "conmon.sock"
            sock.parent.mkdir(mode=0o700)
            python = str(Path(monitor).parent / "python3")
            server = subprocess.Popen(["nsenter", f"--net={netns}", "--", python, "-I", "-m",
                                       "supervisor.monitor.server", str(sock)], cwd="/",
                                      stdin=subprocess.DEVNULL)
            wait_until(lambda: sock.exists() or server.poll() is not None, timeout=30,
                       what="the fork server in the namespace")
            assert sock.exists(), f"fork server did not start (exit {server.poll()})"
            podman = podman_for("podvisor-forked-netns", monitor, conmon_env={
                "PODVISOR_CONMON_SERVER": "only", "PODVISOR_CONMON_SOCKET": str(sock)})
        wrapper = tmp_path / "podman-in-netns"
        wrapper.write_text(f'#!/bin/sh\nexec nsenter --net={netns} -- podman "$@"\n')
        wrapper.chmod(0o755)
        env = dataclasses.replace(podman, podman=str(wrapper))
        try:
            yield env
        finally:
            # inside the namespace, so that netavark can tear the networks down
            env.remove_all()
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        holder.kill()
        holder.wait()


def _cycles(env: PodmanEnv, yaml: Path, name: str) -> list[str]:
    """Play and down the pod CYCLES_PER_WORKER times; a line per failed step."""
    failures = []
    for i in range(CYCLES_PER_WORKER):
        play = env.run("kube", "play", str(yaml), check=False, timeout=180)
        if play.returncode != 0:
            failures.append(f"{name} #{i}: kube play rc {play.returncode}: {play.stderr.strip()}")
            env.run("pod", "rm", "--force", "--time", "0", name, check=False)
            continue
        down = env.run("kube", "down", str(yaml), check=False, timeout=180)
        if down.returncode != 0 or "busy" in down.stderr:
            failures.append(f"{name} #{i}: kube down rc {down.returncode}: {down.stderr.strip()}")
            env.run("pod", "rm", "--force", "--time", "0", name, check=False)
    return failures


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kube_down_right_after_play(netns_podman: PodmanEnv, image: str, tmp_path: Path) -> None:
    env = netns_podman
    pods = []
    for w in range(WORKERS):
        yaml = tmp_path / f"teardown-{w}.yaml"
        yaml.write_text(POD_YAML.format(name=f"teardown-{w}", image=image, port=BASE_PORT + w))
        pods.append((yaml, f"teardown-{w}"))
    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(lambda p: _cycles(env, *p), pods))
    failures = [f for r in results for f in r]
    assert not failures, f"{len(failures)} of {WORKERS * CYCLES_PER_WORKER} cycles failed:\n" + \
        "\n".join(failures)

    assert env.run("pod", "ps", "--quiet").stdout == ""
    assert env.run("ps", "--all", "--quiet").stdout == ""
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if "/overlay-containers/" in line.split()[4] and line.split()[4].startswith(str(env.root))]
    assert not mounts, f"mounts left behind: {mounts}"
