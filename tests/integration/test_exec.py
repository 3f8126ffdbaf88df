"""`podman exec`: each exec session gets its own monitor (`-e --exec-attach`)."""
from __future__ import annotations

import pytest

from supervisor.lab.testenv import PodmanEnv
from tests.integration.helpers import assert_monitored, wait_until


@pytest.fixture
def ctr(podman: PodmanEnv, image: str) -> str:
    podman.run("run", "-d", "--name", "ex", image, "sleep", "1000")
    assert_monitored(podman, "ex")
    return "ex"


def test_exec_attached_output(podman: PodmanEnv, ctr: str) -> None:
    p = podman.run("exec", ctr, "sh", "-c", "echo out; echo err >&2; sleep 0.2; printf tail")
    assert (p.returncode, p.stdout, p.stderr) == (0, "out\ntail", "err\n")


@pytest.mark.parametrize("code", [0, 1, 255])
def test_exec_exit_codes(podman: PodmanEnv, ctr: str, code: int) -> None:
    assert podman.run("exec", ctr, "sh", "-c", f"exit {code}", check=False).returncode == code


@pytest.mark.parametrize("signal,code", [("KILL", 137), ("TERM", 143)])
def test_exec_killed_by_signal(podman: PodmanEnv, ctr: str, signal: str, code: int) -> None:
    # the exec'd shell is not the container's PID 1, so it dies of its own signal: 128+N
    p = podman.run("exec", ctr, "sh", "-c", f"kill -{signal} $$", check=False)
    assert p.returncode == code


def test_exec_missing_binary(podman: PodmanEnv, ctr: str) -> None:
    # `runc exec` fails; podman maps "not found" to 127 and shows runc's message
    p = podman.run("exec", ctr, "/no/such/binary", check=False)
    assert p.returncode == 127
    assert "/no/such/binary" in p.stderr


def test_exec_detached(podman: PodmanEnv, ctr: str) -> None:
    p = podman.run("exec", "-d", ctr, "sh", "-c", "sleep 0.3; echo done > /tmp/marker")
    assert len(p.stdout.strip()) == 64  # the exec session id
    wait_until(lambda: podman.run("exec", ctr, "cat", "/tmp/marker", check=False).stdout == "done\n",
               what="the detached exec to finish")
    assert podman.inspect(ctr, "{{.State.Running}}") == "true"


def test_exec_stdin(podman: PodmanEnv, ctr: str) -> None:
    data = "".join(f"line {i}\n" for i in range(20000))  # > one pipe buffer
    p = podman.run("exec", "-i", ctr, "cat", input=data)
    assert p.stdout == data
    p = podman.run("exec", "-i", ctr, "wc", "-l", input=data)
    assert p.stdout.strip() == "20000"
