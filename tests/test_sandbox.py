"""The real-systemd sandbox: boot, units, journald, cgroup limits, podman, and a clean teardown.

The sandbox tests (marked `systemd`) need root and systemd-nspawn; each uses a sandbox name
unique to this test session, so parallel sessions (and a developer's own `podvisor-sandbox`)
don't collide. The guard-rail and CLI-error tests at the end need neither.
Timings are printed: run with `-s` (or `-rP`) to see them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from supervisor.lab.sandbox import (
    Bind,
    Sandbox,
    SandboxConfig,
    SandboxError,
    checkout_binds,
    default_conmon_path,
    plan_cgroups,
)


def needs_sandbox(test: Callable[..., None]) -> Callable[..., None]:
    """Marks a test that boots (or uses) a real sandbox."""
    for mark in (pytest.mark.systemd,
                 pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root"),
                 pytest.mark.skipif(shutil.which("systemd-nspawn") is None,
                                    reason="systemd-nspawn missing (package systemd-container)")):
        test = mark(test)
    return test


SESSION = f"pvt{os.getpid()}"
REPO = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024


_made: list[Sandbox] = []


def make(suffix: str, binds: tuple[Bind, ...] = (), stop_timeout: float = 20,
         storage_dir: Path | None = None) -> Sandbox:
    sb = Sandbox(SandboxConfig(name=f"{SESSION}-{suffix}", boot_timeout=60, stop_timeout=stop_timeout,
                               binds=binds, storage_dir=storage_dir))
    _made.append(sb)
    return sb


@pytest.fixture(autouse=True)
def _stop_what_the_test_started() -> Iterator[None]:
    """A test that fails half-way must not leave its sandbox running (stop is a no-op otherwise).
    Sandboxes of wider-scoped fixtures were made before this runs and are theirs to stop."""
    before = len(_made)
    yield
    while len(_made) > before:
        _made.pop().stop()


def starttime(pid: int) -> int | None:
    """Start time of a live process, None if it is gone or a zombie (dead, only not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


@dataclass(frozen=True)
class Footprint:
    """Everything a running sandbox owns on the host, captured before stop."""

    state_dir: Path
    storage_dir: Path
    cgroups: tuple[str, ...]
    pids: tuple[tuple[int, int | None], ...]  # (pid, starttime): nspawn, systemd, extra

    @classmethod
    def of(cls, sb: Sandbox, *extra_pids: int) -> Footprint:
        state = json.loads((sb.state_dir / "state.json").read_text())
        pids = (state["nspawn_pid"], state["systemd_pid"], *extra_pids)
        return cls(sb.state_dir, sb.storage_dir, tuple(c["path"] for c in state["cgroups"]),
                   tuple((p, starttime(p)) for p in pids))

    def leftovers(self) -> list[str]:
        found = [f"mount {m}" for m in mount_points() if m.startswith(f"{self.state_dir}/") or m == str(self.state_dir)]
        found += [f"cgroup {c}" for c in self.cgroups if os.path.exists(c)]
        found += [f"process {p}" for p, st in self.pids if st is not None and starttime(p) == st]
        propagate = Path("/run/systemd/nspawn/propagate", self.state_dir.name)  # nspawn's, kept when /run is no tmpfs
        found += [f"dir {d}" for d in (self.state_dir, self.storage_dir, propagate) if d.exists()]
        return found


def mount_points() -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]


def inner(sb: Sandbox, *cmd: str, input: str | None = None) -> str:
    res = sb.run(list(cmd), input=input)
    assert res.returncode == 0, f"{cmd}: exit {res.returncode}: {res.stderr}"
    return res.stdout.strip()


def system_state(sb: Sandbox) -> str:
    return sb.run(["systemctl", "is-system-running"]).stdout.strip()  # exit 1 when degraded


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


@pytest.fixture(scope="module")
def booted() -> Iterator[Sandbox]:
    sb = make("main")
    report = sb.start()
    print(f"\nsandbox {sb.name}: {report.system_state} after {report.seconds_to_ready:.2f}s")
    footprint = Footprint.of(sb)
    try:
        yield sb
    finally:
        sb.stop()
        assert footprint.leftovers() == []


# --------------------------------------------------------------------------- inside


@needs_sandbox
def test_pid1_is_systemd_and_system_is_up(booted: Sandbox) -> None:
    assert inner(booted, "cat", "/proc/1/comm") == "systemd"
    assert system_state(booted) in ("running", "degraded")
    assert inner(booted, "findmnt", "-no", "FSTYPE", "/") == "overlay"
    assert booted.status().state == "running"


@needs_sandbox
def test_transient_unit_result_and_journal(booted: Sandbox) -> None:
    token = uuid.uuid4().hex
    unit = f"pvt-echo-{token[:8]}"
    res = booted.run(["systemd-run", "--wait", "--unit", unit, "sh", "-c", f"echo {token}; exit 3"])
    assert res.returncode == 3, res.stderr  # systemd-run --wait passes the unit's exit status on
    assert "Finished with result: exit-code" in res.stderr
    show = inner(booted, "systemctl", "show", "-p", "Result,ExecMainStatus", unit)
    assert sorted(show.splitlines()) == ["ExecMainStatus=3", "Result=exit-code"]
    # journald stores stdout asynchronously
    assert wait_for(lambda: token in inner(booted, "journalctl", "-u", unit, "--no-pager", "-o", "cat"))
    inner(booted, "systemctl", "reset-failed", unit)  # a failed unit would leave the system "degraded"

    ok = booted.run(["systemd-run", "--wait", "--unit", f"{unit}-ok", "true"])
    assert ok.returncode == 0 and "Finished with result: success" in ok.stderr


NOTIFY_READY = """\
import os, socket, time
addr = os.environ["NOTIFY_SOCKET"]
addr = "\\0" + addr[1:] if addr.startswith("@") else addr
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", addr)
print("ready sent", flush=True)
time.sleep(600)
"""


@needs_sandbox
def test_type_notify_unit(booted: Sandbox) -> None:
    unit = "pvt-notify"
    # systemd-run returns only once the start job is done, i.e. after READY=1
    inner(booted, "systemd-run", "--unit", unit, "-p", "Type=notify", "/usr/bin/python3", "-c", NOTIFY_READY)
    try:
        show = inner(booted, "systemctl", "show", "-p", "Type,ActiveState,SubState", unit)
        assert sorted(show.splitlines()) == ["ActiveState=active", "SubState=running", "Type=notify"]
        assert wait_for(lambda: "ready sent" in inner(booted, "journalctl", "-u", unit, "--no-pager", "-o", "cat"))
    finally:
        booted.run(["systemctl", "stop", unit])


@needs_sandbox
def test_memory_limit_is_written_to_the_real_cgroup(booted: Sandbox) -> None:
    unit = "pvt-mem.service"
    inner(booted, "systemd-run", "--unit", unit, "-p", "MemoryMax=64M", "sleep", "infinity")
    try:
        assert inner(booted, "systemctl", "show", "-p", "MemoryMax", "--value", unit) == str(64 * MiB)
        rel = f"system.slice/{unit}/memory.limit_in_bytes"
        assert inner(booted, "cat", f"/sys/fs/cgroup/memory/{rel}") == str(64 * MiB)
        # the same file seen from the host: the limit is in the host's memory hierarchy, so enforced
        host_memcg = next(c for c in plan_cgroups(booted.name) if c.target == "/sys/fs/cgroup/memory")
        assert Path(host_memcg.path, rel).read_text().strip() == str(64 * MiB)
    finally:
        booted.run(["systemctl", "stop", unit])


@needs_sandbox
def test_podman_inside(booted: Sandbox) -> None:
    assert inner(booted, "podman", "--version").startswith("podman version ")
    info = inner(booted, "podman", "info", "--format",
                 "{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}} {{.Host.EventLogger}} {{.Store.GraphRoot}}")
    assert info.split() == ["runc", "systemd", "journald", "/var/lib/containers/storage"]
    conf = inner(booted, "cat", "/etc/containers/containers.conf")
    assert "default_ulimits = []" in conf and f'conmon_path = ["{default_conmon_path()}"]' in conf
    assert not Path("/etc/containers/containers.conf").exists() or "podvisor" not in Path(
        "/etc/containers/containers.conf").read_text()  # written into the RAM layer only


@needs_sandbox
def test_exec_environment_stdin_and_status(booted: Sandbox) -> None:
    env = dict(line.split("=", 1) for line in inner(booted, "env").splitlines())
    assert set(env) == {"PATH", "HOME", "LANG", "TERM"} and env["HOME"] == "/root"
    assert inner(booted, "cat", input="through stdin\n") == "through stdin"
    assert booted.exec(["sh", "-c", "exit 7"]) == 7
    assert booted.run(["sh", "-c", "kill -9 $$"]).returncode == -9  # raw subprocess convention in run()


@needs_sandbox
def test_second_start_with_the_same_name_fails_while_running(booted: Sandbox) -> None:
    with pytest.raises(SandboxError, match="already running"):
        Sandbox(SandboxConfig(name=booted.name)).start()
    assert booted.status().state == "running"
    assert system_state(booted) in ("running", "degraded")


# --------------------------------------------------------------------------- lifecycle


@needs_sandbox
def test_stop_when_never_started_is_a_noop() -> None:
    sb = make("never")
    assert sb.status().state == "stopped"
    assert sb.stop() == 0.0
    assert not sb.state_dir.exists()


@needs_sandbox
def test_full_cycle_leaves_nothing_behind() -> None:
    sb = make("cycle")
    t0 = time.monotonic()
    report = sb.start()
    boot = time.monotonic() - t0
    assert report.system_state in ("running", "degraded")
    # something that would survive a sloppy teardown: a service and its own cgroup
    inner(sb, "systemd-run", "--unit", "pvt-sleeper", "-p", "MemoryMax=32M", "sleep", "infinity")
    memcg = next(c for c in plan_cgroups(sb.name) if c.target == "/sys/fs/cgroup/memory")
    procs = Path(memcg.path, "system.slice/pvt-sleeper.service/cgroup.procs")
    deadline = time.monotonic() + 10  # systemd-run returns once forked, maybe before the cgroup move
    while not procs.read_text().split():
        assert time.monotonic() < deadline, "the service never showed up in its cgroup"
        time.sleep(0.05)
    sleeper = int(procs.read_text().split()[0])
    footprint = Footprint.of(sb, sleeper)
    assert footprint.leftovers() != []  # the check sees a running sandbox

    t1 = time.monotonic()
    sb.stop()
    halt = time.monotonic() - t1
    print(f"\nsandbox {sb.name}: start {boot:.2f}s (ready {report.seconds_to_ready:.2f}s, "
          f"systemd exec'd after {report.seconds_to_systemd:.2f}s), stop {halt:.2f}s")
    assert footprint.leftovers() == []
    assert sb.status().state == "stopped"
    assert sb.stop() == 0.0  # already stopped: no-op
    # how long boot and halt take is a figure, not an assert: bench/bench_sandbox.py


@needs_sandbox
def test_failed_start_cleans_up_after_itself() -> None:
    sb = make("fail", binds=(Bind.parse("/nonexistent-podvisor-test:/mnt/x"),))  # nspawn refuses to start
    with pytest.raises(SandboxError, match="nonexistent-podvisor-test"):
        sb.start()
    assert [c.path for c in plan_cgroups(sb.name) if os.path.exists(c.path)] == []
    assert not any(m.startswith(f"{sb.state_dir}") for m in mount_points())
    assert not sb.state_dir.exists() and not sb.storage_dir.exists()


@needs_sandbox
def test_next_start_cleans_up_after_a_killed_nspawn() -> None:
    sb = make("crash")
    sb.start()
    first = Footprint.of(sb)
    os.kill(first.pids[0][0], signal.SIGKILL)  # systemd inside keeps running without its nspawn
    assert wait_for(lambda: make("crash").status().state == "broken")
    other = make("crash")  # as a new process would: no handle on the old nspawn
    other.start()
    try:
        assert system_state(other) in ("running", "degraded")
        assert starttime(first.pids[1][0]) != first.pids[1][1]  # the orphaned systemd is gone
    finally:
        second = Footprint.of(other)
        other.stop()
        sb._reap()  # collect our killed child so it doesn't linger as a zombie
    assert second.leftovers() == [] and first.leftovers() == []



@needs_sandbox
def test_next_start_cleans_up_after_a_killed_starter() -> None:
    name = f"{SESSION}-starter"
    sb = Sandbox(SandboxConfig(name=name))
    state_file = sb.state_dir / "state.json"

    def nspawn_launched() -> bool:
        try:
            return int(json.loads(state_file.read_text())["nspawn_pid"]) > 0
        except (OSError, ValueError):
            return False

    starter = subprocess.Popen([sys.executable, "-m", "supervisor.cli", "sandbox", "start", "--name", name],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(nspawn_launched, timeout=30, interval=0.005)
    starter.kill()  # mid-boot: nspawn runs on, but nobody will finish the start
    starter.wait()
    status = sb.status()
    assert status.state == "broken" and "died during the boot" in status.detail, status
    sb.start()
    footprint = Footprint.of(sb)
    sb.stop()
    assert footprint.leftovers() == []


@needs_sandbox
def test_a_running_sandboxs_storage_is_neither_shared_nor_deleted(booted: Sandbox) -> None:
    other = make("thief", storage_dir=booted.storage_dir)
    with pytest.raises(SandboxError, match="in use by another running sandbox"):
        other.start()
    assert booted.storage_dir.is_dir() and any(booted.storage_dir.iterdir())
    assert inner(booted, "podman", "info", "--format", "{{.Store.GraphRoot}}") == "/var/lib/containers/storage"
    assert not other.state_dir.exists()


@needs_sandbox
def test_stop_escalates_when_the_halt_hangs() -> None:
    sb = make("stubborn", stop_timeout=1.0)
    sb.start()
    # ignores SIGTERM, so systemd's own stop timeout (90 s) would hold the halt up
    inner(sb, "systemd-run", "--unit", "pvt-stubborn", "sh", "-c", "trap '' TERM; while :; do sleep 0.2; done")
    footprint = Footprint.of(sb)
    t0 = time.monotonic()
    sb.stop()
    took = time.monotonic() - t0
    print(f"\nsandbox {sb.name}: stop with a stubborn unit took {took:.2f}s (stop timeout 1s)")
    assert footprint.leftovers() == []
    assert took < 10


@needs_sandbox
def test_cli_across_processes() -> None:
    """start, exec, run, status and stop each in their own `podvisor` process."""
    name = f"{SESSION}-cli"

    def podvisor(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "supervisor.cli", "sandbox", *args], input=input,
                              capture_output=True, text=True, cwd=REPO, timeout=120)

    start = podvisor("start", "--name", name)
    assert start.returncode == 0, start.stderr
    assert "running after" in start.stdout
    try:
        again = podvisor("start", "--name", name)
        assert again.returncode == 1 and "already running" in again.stderr
        assert podvisor("status", "--name", name).stdout.startswith("running ")
        ex = podvisor("exec", "--name", name, "--", "sh", "-c", "read x; echo got $x; exit 5", input="it\n")
        assert (ex.returncode, ex.stdout) == (5, "got it\n")
        run = podvisor("run", "--name", name, "cat", "/proc/1/comm")
        assert (run.returncode, run.stdout) == (0, "systemd\n")
        footprint = Footprint.of(Sandbox(SandboxConfig(name=name)))
    finally:
        stop = podvisor("stop", "--name", name)
    assert stop.returncode == 0, stop.stderr
    assert footprint.leftovers() == []
    status = podvisor("status", "--name", name)
    assert (status.returncode, status.stdout) == (3, "stopped\n")
    assert podvisor("stop", "--name", name).returncode == 0


# --------------------------------------------------------------------------- no sandbox needed


@pytest.mark.parametrize("config, message", [
    (SandboxConfig(name="../etc"), "bad sandbox name"),
    (SandboxConfig(state_dir=Path("/etc/podvisor")), "system directory"),
    (SandboxConfig(state_dir=Path("/var/tmp")), "system directory"),
    (SandboxConfig(storage_dir=Path("/var/lib/containers/storage")), "system directory"),
    (SandboxConfig(storage_dir=Path("relative/dir")), "absolute"),
    (SandboxConfig(state_dir=Path("/var/tmp/pvt/a"), storage_dir=Path("/var/tmp/pvt/a/s")), "contain each other"),
])
def test_guard_rails(config: SandboxConfig, message: str) -> None:
    with pytest.raises(SandboxError, match=message):
        Sandbox(config)


def test_foreign_state_dir_is_never_touched() -> None:
    state_dir = Path("/var/tmp") / f"pvt-foreign-{uuid.uuid4().hex[:8]}"
    state_dir.mkdir()
    try:
        (state_dir / "precious.txt").write_text("keep me")
        sb = Sandbox(SandboxConfig(name="pvt-foreign", state_dir=state_dir))
        with pytest.raises(SandboxError, match="not a podvisor sandbox state dir"):
            sb.stop()
        assert (state_dir / "precious.txt").read_text() == "keep me"
    finally:
        shutil.rmtree(state_dir)


def test_cli_errors_are_clear(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from supervisor.cli import main

    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert main(["sandbox", "start", "--name", "pvt-never"]) == 1
    assert "needs root" in capsys.readouterr().err

    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setattr("shutil.which", lambda *a, **k: None)
    assert main(["sandbox", "start", "--name", "pvt-never"]) == 1
    err = capsys.readouterr().err
    assert "systemd-nspawn not found" in err and "systemd-container" in err

    assert main(["sandbox", "exec", "--name", "pvt-never"]) == 1
    assert "no command given" in capsys.readouterr().err
    assert main(["sandbox", "status", "--name", "pvt-never"]) == 3


def test_default_conmon_is_ours_when_the_venv_has_it_and_it_is_visible_inside(
        monkeypatch: pytest.MonkeyPatch) -> None:
    venv_bin = Path("/var/tmp") / f"pvt-venv-{uuid.uuid4().hex[:8]}"  # /tmp would be hidden inside
    venv_bin.mkdir()
    try:
        monkeypatch.setattr("sys.executable", str(venv_bin / "python"))
        assert default_conmon_path() == "/usr/bin/conmon"  # not installed: fallback
        ours = venv_bin / "podvisor-conmon"
        ours.write_text("#!/bin/sh\n")
        ours.chmod(0o755)
        assert default_conmon_path() == str(ours)
    finally:
        shutil.rmtree(venv_bin)

    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:  # /tmp is a fresh tmpfs inside the sandbox
        hidden = Path(tmp, "podvisor-conmon")
        hidden.write_text("#!/bin/sh\n")
        hidden.chmod(0o755)
        monkeypatch.setattr("sys.executable", str(Path(tmp, "python")))
        monkeypatch.setattr("sys.prefix", tmp)
        # still ours: the venv gets bound in read-only, rather than testing the wrong monitor
        assert default_conmon_path() == str(hidden)
        assert checkout_binds() == (Bind(Path(tmp), Path(tmp), readonly=True),)


def test_the_checkout_is_bound_in_read_only_wherever_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="pvt my:checkout ") as tmp:  # a blank and a colon
        checkout = Path(tmp)
        (checkout / "setup.cfg").touch()
        (checkout / "supervisor").mkdir()
        monkeypatch.setattr("sys.prefix", str(checkout / ".venv"))
        assert checkout_binds() == (Bind(checkout, checkout, readonly=True),)  # the venv is inside it
        escaped = tmp.replace(":", "\\:")  # nspawn's syntax: ':' separates, '\:' is a colon
        assert Bind(checkout, checkout, readonly=True).nspawn_option() == f"--bind-ro={escaped}:{escaped}"
    monkeypatch.setattr("sys.prefix", "/var/tmp/some-venv")  # a venv outside any checkout: itself
    venv = Path("/var/tmp/some-venv")
    assert checkout_binds() == (Bind(venv, venv, readonly=True),)
