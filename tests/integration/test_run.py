"""`podman run` in its main shapes: detached, attached with output, stdin, exit codes, --timeout."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest

from supervisor.lab.testenv import PodmanEnv
from tests.integration.helpers import (
    ExitFileWatcher,
    assert_monitored,
    cid,
    pid_alive,
    ppid,
    wait_until,
)


@pytest.fixture
def exit_files(podman: PodmanEnv) -> Iterator[ExitFileWatcher]:
    watcher = ExitFileWatcher(podman.tmpdir / "exits")
    yield watcher
    watcher.close()


def test_run_detached(podman: PodmanEnv, image: str) -> None:
    # podman's stdout/stderr are pipes here: this returns only if the monitor let go of them
    podman.run("run", "-d", "--name", "rd", image, "sleep", "1000", timeout=30)
    state = podman.inspect("rd", "{{.State.Status}} {{.State.Running}}")
    assert state == "running true"
    monitor_pid = assert_monitored(podman, "rd")
    # conmon.pid holds the long-lived monitor's pid, no newline
    ident = cid(podman, "rd")
    pidfile = podman.runroot / "overlay-containers" / ident / "userdata" / "conmon.pid"
    assert pidfile.read_text() == str(monitor_pid)
    # the monitor is a subreaper: the container's init is reparented to it
    ctr_pid = int(podman.inspect("rd", "{{.State.Pid}}"))
    assert pid_alive(ctr_pid) and ppid(ctr_pid) == monitor_pid

    podman.run("stop", "--time", "1", "rd")  # sleep as PID 1 ignores SIGTERM: killed after 1 s
    assert podman.inspect("rd", "{{.State.Status}} {{.State.ExitCode}}") == "exited 137"
    wait_until(lambda: not pid_alive(monitor_pid), what="monitor to exit")
    assert not pid_alive(ctr_pid)


def test_run_rm_stdout_stderr(podman: PodmanEnv, image: str) -> None:
    p = podman.run("run", "--rm", "--name", "rr", image,
                   "sh", "-c", "echo out1; echo err1 >&2; echo out2; exit 3", check=False)
    assert (p.returncode, p.stdout, p.stderr) == (3, "out1\nout2\n", "err1\n")
    assert podman.run("ps", "-a", "--quiet").stdout == ""


def test_run_stdin_pipe(podman: PodmanEnv, image: str) -> None:
    p = podman.run("run", "-i", "--rm", image, "cat", input="hello\nworld\n")
    assert p.stdout == "hello\nworld\n"


def test_run_stdin_large(podman: PodmanEnv, image: str) -> None:
    data = os.urandom(1_500_000)
    p = podman.run("run", "-i", "--rm", image, "cat", input=data)
    assert len(p.stdout) == len(data)
    assert hashlib.sha256(p.stdout).hexdigest() == hashlib.sha256(data).hexdigest()
    # and inside the container: what cat read is what we sent
    p = podman.run("run", "-i", "--rm", image, "sha256sum", input=data)
    assert p.stdout.split()[0] == hashlib.sha256(data).hexdigest().encode()


@pytest.mark.parametrize("code", [0, 3])
def test_exit_code_and_exit_file(podman: PodmanEnv, image: str, exit_files: ExitFileWatcher,
                                 code: int) -> None:
    p = podman.run("run", "--name", "ec", image, "sh", "-c", f"exit {code}", check=False)
    assert p.returncode == code
    # decimal status, no newline; podman deletes the file right after reading it
    assert exit_files.wait_for(cid(podman, "ec")) == str(code).encode()
    assert podman.inspect("ec", "{{.State.Status}} {{.State.ExitCode}}") == f"exited {code}"


def test_exit_by_signal(podman: PodmanEnv, image: str, exit_files: ExitFileWatcher) -> None:
    podman.run("run", "-d", "--name", "sig", image, "sleep", "1000")
    assert_monitored(podman, "sig")
    podman.run("kill", "sig")  # SIGKILL: the only signal PID 1 cannot ignore
    assert podman.run("wait", "sig").stdout.strip() == "137"
    assert exit_files.wait_for(cid(podman, "sig")) == b"137"
    assert podman.inspect("sig", "{{.State.ExitCode}}") == "137"


def test_run_timeout(podman: PodmanEnv, image: str, exit_files: ExitFileWatcher) -> None:
    p = podman.run("run", "--timeout", "2", "--name", "to", image, "sleep", "100", check=False)
    assert p.returncode == 255
    assert exit_files.wait_for(cid(podman, "to")) == b"-1"
    assert podman.inspect("to", "{{.State.Status}} {{.State.ExitCode}}") == "exited -1"


def test_runtime_error_reaches_podman(podman: PodmanEnv, image: str) -> None:
    # runc fails in `create`; the monitor reports runc's message on the sync pipe
    p = podman.run("run", "--rm", image, "/no/such/binary", check=False)
    assert p.returncode == 127
    assert "/no/such/binary" in p.stderr and "no such file or directory" in p.stderr
