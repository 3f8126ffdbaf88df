"""Issue 6, the monitor's side: what must hold when things go wrong - full disks, a killed
monitor, hostile bundles, clients that never read, big outputs, many cycles."""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from supervisor.lab.testenv import PodmanEnv, unmount_under

from .helpers import K8S_RECORD, assert_monitored, pid_alive, wait_until

CONMON = "/usr/bin/conmon"


def _with_monitor_env(podman: PodmanEnv, tmp_path: Path, **variables: str) -> PodmanEnv:
    """The same env, with `conmon_env_vars` (podman builds the monitor's environment itself,
    so this is the only way a variable reaches it)."""
    text = podman.conf.read_text()
    pairs = ", ".join(f'"{k}={v}"' for k, v in {"PATH": os.environ["PATH"], **variables}.items())
    conf = tmp_path / "containers.conf"
    if "\nconmon_env_vars = [" in text:  # the env's own (e.g. the fork server's): add to it
        text = text.replace("\nconmon_env_vars = [", f"\nconmon_env_vars = [{pairs}, ", 1)
    else:
        text = text.replace("[engine]\n", f"[engine]\nconmon_env_vars = [{pairs}]\n", 1)
    conf.write_text(text)
    return dataclasses.replace(podman, conf=conf)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _kept_size(path: Path, looks: int = 5) -> int:
    """The size the log keeps. While the disk is full the monitor may append part of a record
    and truncate it away an instant later (never leaving it torn), so a single stat can see
    bytes that are never kept (once: 4096 for 4090): the smallest of a few looks is what stays."""
    return min(path.stat().st_size for _ in range(looks))


def _settled_size(path: Path) -> Callable[[], int | None]:
    """A wait_until predicate: the kept size once it has been the same for 3 polls in a row
    (the log has lines by then, so the size is never a falsy 0)."""
    seen: list[int] = []

    def check() -> int | None:
        seen.append(_kept_size(path))
        return seen[-1] if len(seen) >= 3 and len(set(seen[-3:])) == 1 else None
    return check


def _log_lines(path: Path) -> list[str]:
    out = []
    for raw in path.read_text().splitlines():
        m = K8S_RECORD.match(raw)
        assert m, f"torn or malformed record in {path}: {raw!r}"
        out.append(m.group(4))
    return out


def test_log_disk_full_then_recovered(podman: PodmanEnv, image: str, tmp_path: Path) -> None:
    if podman.monitor == CONMON:
        pytest.skip("the loss report and recovery are podvisor's (conmon has no report)")
    diag = tmp_path / "monitor.log"
    env = _with_monitor_env(podman, tmp_path, PODVISOR_CONMON_LOG=str(diag))
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "pvt-logdisk", str(disk)], check=True)
    try:
        log = disk / "ctr.log"
        env.run("run", "-d", "--name", "full", "--log-opt", f"path={log}", image, "sh", "-c",
                'i=0; while true; do echo "n-$i"; i=$((i+1)); usleep 2000; done')
        pid = assert_monitored(env, "full")
        wait_until(lambda: log.exists() and log.stat().st_size > 0, what="first log lines")
        filler = disk / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:  # take every byte that is left
            while True:
                os.write(fd, b"x" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        # Conditions, not a fixed sleep: the monitor has hit the full disk (its one report), and
        # what the log keeps no longer grows (records may still fit the last page's tail at first).
        wait_until(lambda: diag.exists() and "dropping log output" in diag.read_text(), timeout=30,
                   what="the monitor to report the full disk")
        stuck = wait_until(_settled_size(log), timeout=30, interval=0.2, what="the log to stop growing")
        cpu0 = _cpu_seconds(pid)
        time.sleep(2)  # a window to measure spinning in, not a wait for something to happen
        assert _cpu_seconds(pid) - cpu0 < 0.5, "the monitor spins while the disk is full"
        assert env.inspect("full", "{{.State.Status}}") == "running"
        assert _kept_size(log) == stuck
        filler.unlink()  # space returns: logging resumes
        wait_until(lambda: log.stat().st_size > stuck + 200, timeout=10, what="logging to resume")
        lines = _log_lines(log)  # every record whole: no torn write left behind
        numbers = [int(x.removeprefix("n-")) for x in lines]
        assert numbers == sorted(numbers) and len(numbers) > 10
        assert any(b - a > 1 for a, b in itertools.pairwise(numbers)), "no gap: was it full at all?"
        text = diag.read_text()
        assert text.count("dropping log output") == 1, text  # once, not per line
        assert text.count("writing again") == 1, text
        shown = env.run("logs", "full").stdout.splitlines()
        assert shown[-1].startswith("n-")
    finally:
        podman.run("rm", "-f", "-t", "0", "full", check=False)
        unmount_under(disk)


def test_monitor_killed_while_container_runs(podman: PodmanEnv, image: str) -> None:
    podman.run("run", "-d", "--name", "orphan", image, "sleep", "1000")
    mon = assert_monitored(podman, "orphan")
    ctr = int(podman.inspect("orphan", "{{.State.Pid}}"))
    os.kill(mon, 9)
    wait_until(lambda: not pid_alive(mon), what="the monitor to die")
    # like conmon: podman still sees a running container, and rm -f cleans everything up
    assert podman.inspect("orphan", "{{.State.Status}}") == "running"
    podman.run("rm", "-f", "-t", "0", "orphan")
    wait_until(lambda: not pid_alive(ctr), what="the container process to go")
    bundle_mounts = [m for m in Path("/proc/self/mountinfo").read_text().splitlines()
                     if str(podman.root) in m and "orphan" in m]
    assert not bundle_mounts


def _bundle(podman: PodmanEnv, name: str) -> Path:
    return Path(podman.inspect(name, "{{.StaticDir}}"))


def test_attach_and_control_files(podman: PodmanEnv, image: str, tmp_path: Path) -> None:
    """Same permissions as conmon (socket 0700); planted symlinks are replaced, never followed."""
    podman.run("create", "--name", "files", image, "sleep", "1000")
    bundle = _bundle(podman, "files")
    victims = {}
    for name in ("attach", "ctl", "winsz"):
        victim = tmp_path / f"victim-{name}"
        victim.write_text("untouched")
        (bundle / name).symlink_to(victim)
        victims[name] = victim
    podman.run("start", "files")
    sock = (bundle / "attach").lstat()
    assert stat.S_ISSOCK(sock.st_mode) and stat.S_IMODE(sock.st_mode) == 0o700
    for name in ("ctl", "winsz"):
        st = (bundle / name).lstat()
        assert stat.S_ISFIFO(st.st_mode)
        assert stat.S_IMODE(st.st_mode) & 0o007 == 0  # no access for others
    for name, victim in victims.items():
        assert victim.read_text() == "untouched", name
        assert stat.S_ISREG(victim.lstat().st_mode)


def test_client_that_never_reads_cannot_block_the_container(
        podman: PodmanEnv, image: str, request: pytest.FixtureRequest) -> None:
    if podman.monitor == CONMON:
        request.applymarker(pytest.mark.xfail(strict=True, reason="conmon 2.1.6 writes to attach "
                                              "clients with blocking sends"))
    podman.run("create", "--name", "stuck", image, "sh", "-c",
               "sleep 1; head -c 30000000 /dev/zero | tr '\\0' 'z'; echo; echo done")
    bundle = _bundle(podman, "stuck")
    podman.run("start", "stuck")
    client = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    dirfd = os.open(bundle, os.O_PATH)  # as podman does: bundle paths exceed sun_path
    try:
        client.connect(f"/proc/self/fd/{dirfd}/attach")  # and never reads
    finally:
        os.close(dirfd)
    try:
        res = podman.run("wait", "stuck", check=False, timeout=60) if podman.monitor != CONMON \
            else _wait_bounded(podman, "stuck", 20)
        assert res.returncode == 0
        assert podman.inspect("stuck", "{{.State.ExitCode}}") == "0"
        assert podman.run("logs", "--tail", "1", "stuck").stdout == "done\n"
    finally:
        client.close()
        podman.run("rm", "-f", "-t", "0", "stuck", check=False)


def _wait_bounded(podman: PodmanEnv, name: str, seconds: float) -> subprocess.CompletedProcess:
    try:
        return podman.run("wait", name, check=False, timeout=seconds)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess([], 1)


LINE = b"podvisor-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ\n"
BIG = 100_000_000


@pytest.mark.slow
def test_100mb_complete_in_log_and_attached_client(podman: PodmanEnv, image: str) -> None:
    """Every byte of a fast 100 MB write, in order, in the k8s-file log and at the client."""
    text = LINE.decode().rstrip("\n")
    res = podman.run("run", "--name", "big", image, "sh", "-c", f"yes {text} | head -c {BIG}",
                     text=False, timeout=300)
    want = hashlib.sha256((LINE * (BIG // len(LINE) + 1))[:BIG]).hexdigest()
    assert len(res.stdout) == BIG
    assert hashlib.sha256(res.stdout).hexdigest() == want
    log = Path(podman.inspect("big", "{{.HostConfig.LogConfig.Path}}"))
    got = hashlib.sha256()
    size = 0
    with log.open("rb") as f:
        for raw in f:
            _, _, flag, content = raw[:-1].split(b" ", 3)
            piece = content + (b"\n" if flag == b"F" else b"")
            got.update(piece)
            size += len(piece)
    assert size == BIG
    assert got.hexdigest() == want


def _snapshot(podman: PodmanEnv, watched: int) -> dict[str, int]:
    def count_files(d: Path) -> int:
        return sum(len(files) for _, _, files in os.walk(d)) if d.exists() else 0

    zombies = 0
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                st = (p / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if st[0] == "Z" and int(st[1]) == watched:
                zombies += 1
    rss = 0
    for line in Path(f"/proc/{watched}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return {
        "monitor_fds": len(os.listdir(f"/proc/{watched}/fd")),
        "monitor_rss_kb": rss,
        "monitor_zombie_children": zombies,
        "mounts": sum(1 for m in Path("/proc/self/mountinfo").read_text().splitlines()
                      if str(podman.root) in m or str(podman.runroot) in m),
        "run_files": count_files(podman.runroot) + count_files(podman.tmpdir),
    }


@pytest.mark.slow
@pytest.mark.timeout(7200)  # ~1 s a cycle: the full 1000 take about 17 minutes
def test_many_cycles_leak_nothing(podman: PodmanEnv, image: str) -> None:
    """create/start/exec/stop/rm cycles next to a long-lived container: its monitor's fds,
    memory and children, the mounts and the run directories do not grow.
    PODVISOR_LEAK_CYCLES sets the count (1000 for the full run; 40 by default)."""
    if podman.monitor == CONMON:
        pytest.skip("measures podvisor-conmon")
    cycles = int(os.environ.get("PODVISOR_LEAK_CYCLES", "40"))
    podman.run("run", "-d", "--name", "longlived", image, "sleep", "100000")
    watched = assert_monitored(podman, "longlived")
    for _ in range(3):  # warm-up: first-use allocations are not leaks
        podman.run("exec", "longlived", "true")
    before = _snapshot(podman, watched)
    for _ in range(cycles):
        podman.run("create", "--name", "cyc", image, "sleep", "100")
        podman.run("start", "cyc")
        podman.run("exec", "cyc", "sh", "-c", "echo hi")
        podman.run("exec", "longlived", "true")
        podman.run("stop", "-t", "0", "cyc")
        podman.run("rm", "cyc")
    after = _snapshot(podman, watched)
    print(f"leak check over {cycles} cycles: before {before} after {after}")
    assert after["monitor_fds"] == before["monitor_fds"]
    assert after["monitor_zombie_children"] == 0
    assert after["mounts"] == before["mounts"]
    assert after["run_files"] <= before["run_files"]
    assert after["monitor_rss_kb"] - before["monitor_rss_kb"] < 512
