"""What is particular to rootless, asserted the same for both monitors.

The monitor runs as the user, inside podman's rootless user namespace (podman joins it, then
starts the monitor), like the container it watches. On cgroup v1 an unprivileged user has no
cgroup of its own: podman ignores resource limits (and says so), so nothing is OOM-killed for
exceeding --memory and the monitor cannot register for OOM events; both monitors agree.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor.lab.testuser import RootlessPodmanEnv
from tests.integration.helpers import assert_monitored, wait_until

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
