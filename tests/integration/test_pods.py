"""Pods: an infra container (podman's locally built pause image) plus two containers, and
`podman kube play`. Every member, infra included, gets its own monitor."""
from __future__ import annotations

from pathlib import Path

from supervisor.lab.testenv import PodmanEnv
from tests.integration.helpers import assert_monitored, wait_until

KUBE_YAML = """\
apiVersion: v1
kind: Pod
metadata:
  name: kp
spec:
  restartPolicy: Never
  containers:
  - name: web
    image: {image}
    command: ["sh", "-c", "echo web-up; exec sleep 1000"]
  - name: side
    image: {image}
    command: ["sh", "-c", "echo side-up >&2; exec sleep 1000"]
"""


def namespaces(env: PodmanEnv, name: str) -> str:
    return str(env.run("exec", name, "sh", "-c",
                       "for ns in ipc uts net; do readlink /proc/1/ns/$ns; done").stdout)


def test_pod_with_infra(podman: PodmanEnv, image: str) -> None:
    # the infra image localhost/podman-pause is built offline from the host's catatonit
    podman.run("pod", "create", "--name", "pd", "--network", "none")
    podman.run("run", "-d", "--pod", "pd", "--name", "pa", image, "sleep", "1000")
    podman.run("run", "-d", "--pod", "pd", "--name", "pb", image,
               "sh", "-c", "echo pb-up; exec sleep 1000")
    infra = podman.inspect("pd", "{{.InfraContainerID}}")
    assert podman.inspect("pd", "{{.State}} {{len .Containers}}") == "Running 3"
    monitors = {assert_monitored(podman, n) for n in (infra, "pa", "pb")}
    assert len(monitors) == 3  # one per container
    assert namespaces(podman, "pa") == namespaces(podman, "pb")  # shared with infra
    wait_until(lambda: podman.run("logs", "pb").stdout == "pb-up\n", what="pb output")

    podman.run("pod", "stop", "--time", "1", "pd")  # sleep ignores SIGTERM as PID 1
    assert podman.inspect("pa", "{{.State.Status}} {{.State.ExitCode}}") == "exited 137"
    assert podman.inspect("pd", "{{.State}}") == "Exited"
    podman.run("pod", "rm", "pd")
    assert podman.run("ps", "--all", "--quiet").stdout == ""


def test_kube_play(podman: PodmanEnv, image: str, tmp_path: Path) -> None:
    yaml = tmp_path / "pod.yaml"
    yaml.write_text(KUBE_YAML.format(image=image))
    podman.run("kube", "play", "--network", "none", str(yaml))
    assert podman.inspect("kp", "{{.State}} {{len .Containers}}") == "Running 3"
    for name in ("kp-web", "kp-side", podman.inspect("kp", "{{.InfraContainerID}}")):
        assert_monitored(podman, name)
    wait_until(lambda: podman.run("logs", "kp-web").stdout == "web-up\n", what="web output")
    wait_until(lambda: podman.run("logs", "kp-side").stderr == "side-up\n", what="side output")
    assert namespaces(podman, "kp-web") == namespaces(podman, "kp-side")

    podman.run("kube", "down", str(yaml))
    assert podman.run("pod", "ps", "--quiet").stdout == ""
    assert podman.run("ps", "--all", "--quiet").stdout == ""
