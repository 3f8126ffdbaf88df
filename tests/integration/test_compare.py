"""Side by side: the same scenario under /usr/bin/conmon and podvisor-conmon must give the same
normalized result (pids, ids and times removed). Skipped while podvisor-conmon cannot run."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from supervisor.lab.testenv import BUSYBOX_IMAGE, PodmanEnv
from tests.conftest import CONMON, podvisor_conmon
from tests.integration.helpers import assert_monitored, k8s_records, log_path, wait_until

# State fields that differ between any two runs
VOLATILE_STATE = {"Pid", "ConmonPid", "StartedAt", "FinishedAt", "CheckpointedAt", "RestoredAt",
                  "Health", "CgroupPath"}

# Output written in separate steps, so the monitors' read() boundaries fall the same way.
SCRIPT = ("echo one; sleep 0.3; echo two >&2; sleep 0.3; printf 'no newline'; sleep 0.3; "
          "printf ' then newline\\n'; exit 3")


def attached_run(env: PodmanEnv) -> Any:
    p = env.run("run", "--name", "cmp", BUSYBOX_IMAGE, "sh", "-c", SCRIPT, check=False)
    return {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr,
            "log": [r[1:] for r in k8s_records(log_path(env, "cmp"))],
            "logs": env.run("logs", "cmp").stdout}


def inspect_state(env: PodmanEnv) -> Any:
    def state() -> dict[str, Any]:
        s = json.loads(env.run("container", "inspect", "cmp").stdout)[0]["State"]
        return {k: v for k, v in s.items() if k not in VOLATILE_STATE}

    env.run("run", "-d", "--name", "cmp", BUSYBOX_IMAGE, "sleep", "1000")
    assert_monitored(env, "cmp")
    running = state()
    env.run("kill", "cmp")
    env.run("wait", "cmp")
    return {"running": running, "killed": state()}


def exec_codes(env: PodmanEnv) -> Any:
    env.run("run", "-d", "--name", "cmp", BUSYBOX_IMAGE, "sleep", "1000")
    assert_monitored(env, "cmp")
    results = []
    for cmd in ("exit 0", "exit 1", "exit 255", "kill -9 $$", "echo out; echo err >&2"):
        p = env.run("exec", "cmp", "sh", "-c", cmd, check=False)
        results.append((p.returncode, p.stdout, p.stderr))
    return results


def bundle_files(env: PodmanEnv) -> Any:
    """Which files the monitor leaves in the bundle, while running and after exit."""
    env.run("run", "-d", "--name", "cmp", BUSYBOX_IMAGE, "sleep", "1000")
    assert_monitored(env, "cmp")
    ident = env.inspect("cmp", "{{.Id}}")
    bundle = env.root / "overlay-containers" / ident / "userdata"
    running = sorted(p.name for p in bundle.iterdir())
    env.run("stop", "--time", "0", "cmp")
    wait_until(lambda: env.inspect("cmp", "{{.State.Status}}") == "exited", what="exit")
    return {"running": running, "exited": sorted(p.name for p in bundle.iterdir())}


SCENARIOS: dict[str, Callable[[PodmanEnv], Any]] = {
    "attached_run": attached_run, "inspect_state": inspect_state, "exec_codes": exec_codes,
    "bundle_files": bundle_files,
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_same_result_on_both_monitors(podman_for: Callable[..., PodmanEnv],
                                      scenario: str) -> None:
    path, why = podvisor_conmon()
    if path is None:
        pytest.skip(why)
    results = {}
    for key, monitor in (("conmon", CONMON), ("podvisor", path), ("podvisor-forked", path)):
        env = podman_for(key, monitor, key)
        try:
            results[key] = SCENARIOS[scenario](env)
        finally:
            env.remove_all()
    assert results["podvisor"] == results["conmon"]
    assert results["podvisor-forked"] == results["conmon"]
