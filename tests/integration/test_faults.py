"""Fault containment: whatever goes wrong inside the monitor's loop, podman keeps a consistent
container it can stop and remove.

Injected faults (podvisor only: conmon has no Python to patch) break one loop handler at a time
through tests/integration/faulty_monitor.py; the monitor must log the traceback to its
diagnostics and go on, or, when it cannot (no reaping, no output pumping), kill the container,
reap it and write its exit file. The real trigger found (a resize beyond 16 bits on `ctl`) runs
against both monitors.
"""
from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from supervisor.lab.testenv import BUSYBOX_IMAGE, PodmanEnv
from tests.conftest import podvisor_conmon
from tests.integration.helpers import assert_monitored, wait_until

FAULTY = Path(__file__).with_name("faulty_monitor.py")


class FaultEnv:
    def __init__(self, env: PodmanEnv, armed: Path, diag: Path) -> None:
        self.env = env
        self.armed = armed
        self.diag = diag

    def arm(self) -> None:
        self.armed.touch()

    def diagnostics(self) -> str:
        return self.diag.read_text(errors="replace") if self.diag.exists() else ""

    def wait_for_fault(self, target: str) -> str:
        text = wait_until(lambda: (lambda t: t if f"injected fault in {target}" in t else None)(
            self.diagnostics()), timeout=20, what=f"the fault in {target} to be logged")
        assert "Traceback (most recent call last)" in text, text
        return text


@pytest.fixture
def faulty(request: pytest.FixtureRequest, store: Path,
           podman_for: Callable[..., PodmanEnv]) -> Iterator[FaultEnv]:
    """A podman env whose monitor has request.param's handler broken once armed."""
    path, why = podvisor_conmon()
    if path is None:
        pytest.skip(why)
    target = request.param
    d = store / f"fault-{target}"
    d.mkdir(parents=True, exist_ok=True)
    armed, diag = d / "armed", d / "diagnostics.log"
    for f in (armed, diag):
        f.unlink(missing_ok=True)
    python = Path(path).with_name("python")  # the venv's interpreter, beside podvisor-conmon
    wrapper = d / "monitor"
    wrapper.write_text("#!/bin/sh\nexec " + " ".join(shlex.quote(str(a)) for a in (
        python, FAULTY, target, armed)) + ' "$@"\n')
    wrapper.chmod(0o755)
    # the wrapper is the monitor itself (no fork server), its diagnostics go to `diag`
    env = podman_for(f"fault-{target}", str(wrapper),
                     conmon_env={"PODVISOR_CONMON_SERVER": "off", "PODVISOR_CONMON_LOG": str(diag)})
    yield FaultEnv(env, armed, diag)
    armed.unlink(missing_ok=True)
    env.remove_all()
    assert not env.run("ps", "--all", "--quiet").stdout.split()


def _faulty_monitor(env: PodmanEnv, name: str) -> int:
    """The pid of `name`'s monitor, which must be the fault-injecting wrapper."""
    pid = int(env.inspect(name, "{{.State.ConmonPid}}"))
    assert FAULTY.name.encode() in Path(f"/proc/{pid}/cmdline").read_bytes(), \
        f"{name}: monitor {pid} is not {FAULTY.name}"
    return pid


def _bundle(env: PodmanEnv, name: str) -> Path:
    return Path(env.inspect(name, "{{.StaticDir}}"))


def _stop_and_remove(env: PodmanEnv, name: str) -> str:
    """podman stop and rm work; returns the exit code podman recorded."""
    p = env.run("stop", "-t", "2", name, check=False)
    assert p.returncode == 0, p.stderr
    assert env.inspect(name, "{{.State.Status}}") == "exited"
    code = env.inspect(name, "{{.State.ExitCode}}")
    p = env.run("rm", name, check=False)
    assert p.returncode == 0, p.stderr
    return code


def _attach_socket(bundle: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    d = os.open(bundle, os.O_PATH)
    try:
        s.connect(f"/proc/self/fd/{d}/attach")  # bundle paths are longer than sun_path
    finally:
        os.close(d)
    return s


def _running(env: PodmanEnv, name: str) -> bool:
    return env.inspect(name, "{{.State.Running}}") == "true"


# ---- faults the monitor survives: the handler is logged (and dropped), the container runs on ----

@pytest.mark.parametrize("faulty", ["ctl", "ctl-line"], indirect=True)
def test_fault_in_ctl(faulty: FaultEnv) -> None:
    env = faulty.env
    env.run("run", "-d", "--name", "f", BUSYBOX_IMAGE, "sleep", "1000")
    _faulty_monitor(env, "f")
    faulty.arm()
    with open(_bundle(env, "f") / "ctl", "w") as f:
        f.write("1 10 10\n")
    faulty.wait_for_fault(faulty.armed.parent.name.removeprefix("fault-"))
    assert _running(env, "f")
    _stop_and_remove(env, "f")


@pytest.mark.parametrize("faulty", ["attach-accept"], indirect=True)
def test_fault_in_attach_accept(faulty: FaultEnv) -> None:
    env = faulty.env
    env.run("run", "-d", "--name", "f", BUSYBOX_IMAGE, "sleep", "1000")
    faulty.arm()
    s = _attach_socket(_bundle(env, "f"))
    faulty.wait_for_fault("attach-accept")
    s.close()
    assert _running(env, "f")
    _stop_and_remove(env, "f")


@pytest.mark.parametrize("faulty", ["attach-client"], indirect=True)
def test_fault_in_attach_client(faulty: FaultEnv) -> None:
    env = faulty.env
    env.run("run", "-d", "-i", "--name", "f", BUSYBOX_IMAGE, "sleep", "1000")
    s = _attach_socket(_bundle(env, "f"))
    time.sleep(0.3)  # accepted before the fault is armed
    faulty.arm()
    s.send(b"input\n")
    faulty.wait_for_fault("attach-client")
    s.close()
    assert _running(env, "f")
    _stop_and_remove(env, "f")


@pytest.mark.parametrize("faulty", ["notify"], indirect=True)
def test_fault_in_notify(faulty: FaultEnv, tmp_path: Path) -> None:
    env = faulty.env
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(tmp_path / "notify"))
    try:
        p = subprocess.run(env.argv("run", "-d", "--sdnotify=container", "--name", "f",
                                    BUSYBOX_IMAGE, "sleep", "1000"),
                           env={**env.environ(), "NOTIFY_SOCKET": str(tmp_path / "notify")},
                           capture_output=True, text=True, timeout=60, check=False)
        assert p.returncode == 0, p.stderr
        faulty.arm()
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        d = os.open(_bundle(env, "f") / "notify", os.O_PATH)
        try:
            sender.sendto(b"READY=1", f"/proc/self/fd/{d}/notify.sock")
        finally:
            os.close(d)
            sender.close()
        faulty.wait_for_fault("notify")
        assert _running(env, "f")
        _stop_and_remove(env, "f")
    finally:
        receiver.close()


@pytest.mark.parametrize("faulty", ["timer"], indirect=True)
def test_fault_in_timer(faulty: FaultEnv) -> None:
    env = faulty.env
    faulty.arm()
    env.run("run", "-d", "--timeout", "1", "--name", "f", BUSYBOX_IMAGE, "sleep", "1000")
    faulty.wait_for_fault("timer")
    assert _running(env, "f")  # the timeout was lost with its timer; the monitor goes on
    _stop_and_remove(env, "f")


@pytest.mark.parametrize("faulty", ["oom"], indirect=True)
def test_fault_in_oom_watcher(faulty: FaultEnv) -> None:
    env = faulty.env
    faulty.arm()
    p = env.run("run", "--memory", "20m", "--memory-swap", "20m", "--name", "f", BUSYBOX_IMAGE,
                "sh", "-c", "tail /dev/zero", check=False)
    assert p.returncode == 137
    faulty.wait_for_fault("oom")
    assert env.inspect("f", "{{.State.Status}}") == "exited"
    assert env.run("rm", "f", check=False).returncode == 0


# ---- faults the monitor cannot go on with: it kills, reaps and writes the exit file ----------

@pytest.mark.parametrize("faulty", ["output", "log-sink"], indirect=True)
def test_fault_in_output_kills_and_records(faulty: FaultEnv) -> None:
    env = faulty.env
    env.run("run", "-d", "--name", "f", BUSYBOX_IMAGE, "sh", "-c",
            "echo before; while :; do sleep 0.2; [ -e /tmp/go ] && echo tick; done")
    wait_until(lambda: "before" in env.run("logs", "f").stdout, what="the first output")
    faulty.arm()
    env.run("exec", "f", "touch", "/tmp/go")
    faulty.wait_for_fault(faulty.armed.parent.name.removeprefix("fault-"))
    wait_until(lambda: "killing container process" in faulty.diagnostics(),
               what="the monitor to give up on its output")
    assert env.run("wait", "f").stdout.strip() == "137"
    assert "before" in env.run("logs", "f").stdout
    assert env.run("rm", "f", check=False).returncode == 0


@pytest.mark.parametrize("faulty", ["signal"], indirect=True)
def test_fault_in_signal_handling_kills_and_records(faulty: FaultEnv) -> None:
    env = faulty.env
    env.run("run", "-d", "--name", "f", BUSYBOX_IMAGE, "sleep", "1000")
    monitor = _faulty_monitor(env, "f")
    faulty.arm()
    os.kill(monitor, signal.SIGUSR1)  # "check children": goes through the signal handler
    faulty.wait_for_fault("signal")
    assert env.run("wait", "f").stdout.strip() == "137"
    assert env.run("rm", "f", check=False).returncode == 0


@pytest.mark.parametrize("faulty", ["console"], indirect=True)
def test_fault_while_starting_fails_the_start_cleanly(faulty: FaultEnv) -> None:
    env = faulty.env
    tmp = Path(os.environ.get("TMPDIR") or "/tmp")  # where the monitor makes its console socket
    consoles = set(tmp.glob("podvisor-term.*"))
    faulty.arm()
    p = env.run("run", "-d", "-t", "--name", "f", BUSYBOX_IMAGE, "sleep", "1000", check=False)
    assert p.returncode != 0
    assert "monitor failed" in p.stderr, p.stderr
    faulty.wait_for_fault("console")
    assert env.run("rm", "-f", "f", check=False).returncode == 0
    assert not env.run("ps", "--all", "--quiet").stdout.split()
    # its console socket's directory went with it, though taking the terminal failed
    assert set(tmp.glob("podvisor-term.*")) == consoles


# ---- the real trigger, both monitors ------------------------------------------------------------

def test_oversized_resize_on_ctl(podman: PodmanEnv, image: str) -> None:
    # conmon 2.1.6 truncates such a size to 16 bits (the pty gets 4464 rows); podvisor refuses
    # it with a warning. Either way the monitor goes on serving its FIFO.
    podman.run("run", "-d", "-t", "--name", "rs", image, "sh", "-c",
               "while :; do stty size; sleep 0.1; done")
    assert_monitored(podman, "rs")
    ctl = _bundle(podman, "rs") / "ctl"
    with open(ctl, "w") as f:
        f.write("1 70000 99999\n")
    # one line per read: conmon 2.1.6 handles only the first line of a read (fixed in 2.2.0)
    time.sleep(1)
    with open(ctl, "w") as f:
        f.write("1 33 101\n")
    try:
        wait_until(lambda: "33 101" in podman.run("logs", "rs").stdout, timeout=20,
                   what="the terminal to be resized to 33x101")
    except AssertionError:
        raise AssertionError(podman.run("logs", "rs").stdout[-2000:]) from None
    assert _running(podman, "rs")
    _stop_and_remove(podman, "rs")
