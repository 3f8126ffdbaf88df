"""What is particular to rootless, asserted the same for both monitors.

The monitor runs as the user, inside podman's rootless user namespace (podman joins it, then
starts the monitor), like the container it watches. On cgroup v1 an unprivileged user has no
cgroup of its own: podman ignores resource limits (and says so), so nothing is OOM-killed for
exceeding --memory and the monitor cannot register for OOM events; both monitors agree.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from supervisor.lab import testuser
from supervisor.lab.testenv import BUSYBOX_IMAGE, PodmanEnv, ensure_busybox_image
from supervisor.lab.testuser import RootlessPodmanEnv, make_rootless_env
from tests.integration.helpers import assert_monitored, pids_with_cmdline, wait_until

from ..conftest import podvisor_conmon
from .conftest import user_can_run

V1_LIMITS_IGNORED = "Resource limits are not supported and ignored on cgroups V1 rootless systems"


def status_ids(pid: int, key: str) -> list[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return [int(x) for x in line.split()[1:]]
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def cgroup_v2() -> bool:
    """The unified layout (the hybrid one mounts cgroup2 at /sys/fs/cgroup/unified instead)."""
    return Path("/sys/fs/cgroup/cgroup.controllers").exists()


def test_monitor_runs_as_the_user_in_its_user_namespace(podman: RootlessPodmanEnv, image: str) -> None:
    assert podman.user is not None
    podman.run("run", "-d", "--name", "rl", image, "sleep", "1000")
    monitor = assert_monitored(podman, "rl")
    ctr = int(podman.inspect("rl", "{{.State.Pid}}"))
    for pid in (monitor, ctr):  # real, effective, saved, fs ids: all the user's, seen from the host
        assert status_ids(pid, "Uid") == [podman.user.uid] * 4
        assert status_ids(pid, "Gid") == [podman.user.gid] * 4
    userns = os.readlink(f"/proc/{monitor}/ns/user")
    assert userns != os.readlink("/proc/self/ns/user")  # podman's rootless namespace...
    assert os.readlink(f"/proc/{ctr}/ns/user") == userns  # ...shared with the container
    # inside, the user is root: uid 0 maps to the user's uid, the rest to its subuid range
    uid_map = Path(f"/proc/{monitor}/uid_map").read_text().split()
    start = int(podman.user.subid_range.split("-")[0])
    assert uid_map == ["0", str(podman.user.uid), "1", "1", str(start), "65536"]
    assert podman.run("exec", "rl", "id", "-u").stdout == "0\n"
    podman.run("rm", "--force", "--time", "0", "rl")
    wait_until(lambda: not Path(f"/proc/{monitor}").exists(), what="monitor to exit")


def test_memory_limit_on_cgroup_v1(podman: RootlessPodmanEnv, image: str) -> None:
    if cgroup_v2():
        pytest.skip("cgroup v2 host: limits apply rootless with a delegated user slice (the VM check)")
    # dd's 32 MiB buffer, under an 8 MiB limit: OOM-killed as root, ignored rootless on v1
    p = podman.run("run", "--name", "mem", "--memory", "8m", image,
                   "dd", "if=/dev/zero", "of=/dev/null", "bs=32M", "count=1", check=False)
    assert p.returncode == 0, p.stderr
    assert V1_LIMITS_IGNORED in p.stderr
    assert podman.inspect("mem", "{{.State.ExitCode}} {{.State.OOMKilled}}") == "0 false"
    assert podman.inspect("mem", "{{.HostConfig.Memory}}") == "0"  # not recorded either


def test_a_rootless_launcher_runs_its_monitor_itself(
        test_user: testuser.TestUser, rootless_envs: dict[str, RootlessPodmanEnv], reachable_fork_server: Path,
        podman_for: Callable[..., PodmanEnv]) -> None:
    """Root's fork server, on a socket anyone may reach, serves root's launchers; a rootless
    launcher never hands it a container (`only` fails, `on` runs the monitor directly): in the
    user's namespace the socket's directory is not root's, and the server would refuse the uid."""
    podvisor, why = podvisor_conmon()
    assert podvisor, why
    sock = str(reachable_fork_server)
    root_only = podman_for("rootless-contrast-only", podvisor, conmon_env={
        "PODVISOR_CONMON_SERVER": "only", "PODVISOR_CONMON_SOCKET": sock})
    try:
        r = root_only.run("run", "--rm", BUSYBOX_IMAGE, "sh", "-c", "echo served", check=False)
        assert (r.returncode, r.stdout) == (0, "served\n"), r.stderr
    finally:
        root_only.remove_all()
    if "only" not in rootless_envs:
        user_can_run(test_user, podvisor)
        rootless_envs["only"] = make_rootless_env(test_user, "only", podvisor, {
            "PODVISOR_CONMON_SERVER": "only", "PODVISOR_CONMON_SOCKET": sock})
        ensure_busybox_image(rootless_envs["only"])
    r = rootless_envs["only"].run("run", "--rm", BUSYBOX_IMAGE, "true", check=False)
    assert r.returncode != 0 and "no fork server answers at " + sock in r.stderr, r.stderr
    rootless_envs["only"].remove_all()
    if "on" not in rootless_envs:
        rootless_envs["on"] = make_rootless_env(test_user, "on", podvisor, {
            "PODVISOR_CONMON_SERVER": "on", "PODVISOR_CONMON_SOCKET": sock})
        ensure_busybox_image(rootless_envs["on"])
    r = rootless_envs["on"].run("run", "--rm", BUSYBOX_IMAGE, "sh", "-c", "echo direct; exit 5", check=False)
    assert (r.returncode, r.stdout) == (5, "direct\n"), r.stderr
    # and it started no server of its own for the next ones (it could not own /run/podvisor)
    servers = pids_with_cmdline(lambda cmd: b"--fork-server" in cmd)
    assert [p for p in servers if Path(f"/proc/{p}").stat().st_uid == test_user.uid] == []
