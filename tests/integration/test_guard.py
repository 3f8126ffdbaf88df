"""The suite's own guard: podman must really run the monitor we configured.

podman probes `<conmon_path> --version` and silently uses /usr/bin/conmon when the answer is not
`conmon version >= 2.0.1`. These tests show the fallback happens and that our checks catch it.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from supervisor.lab.testenv import BUSYBOX_IMAGE, PodmanEnv
from tests.conftest import CONMON
from tests.integration.helpers import assert_monitored, wait_until

WRAPPER = """#!/bin/sh
# a monitor that answers --version with {version!r} and otherwise hands over to conmon
if [ "$1" = --version ]; then printf '{version}\\n'; exit 0; fi
echo "$$" >> {calls}
exec {conmon} "$@"
"""


def wrapper(tmp_path: Path, version: str) -> tuple[Path, Path]:
    calls = tmp_path / "calls"
    script = tmp_path / "monitor"
    script.write_text(WRAPPER.format(version=version, calls=calls, conmon=CONMON))
    script.chmod(0o755)
    return script, calls


@pytest.mark.parametrize("version,used", [
    ("conmon version 2.1.6\\ncommit: test", True),   # accepted
    ("conmon version 2.0.0", False),                # too old -> fallback
    ("podvisor 2.1.6", False),                      # wrong format -> fallback
])
def test_version_probe_decides_which_monitor_runs(
        podman_for: Callable[[str, str], PodmanEnv], tmp_path: Path, version: str,
        used: bool) -> None:
    script, calls = wrapper(tmp_path, version)
    env = podman_for(f"wrapper-{tmp_path.name}", str(script))
    try:
        info = env.run("info", "--format", "{{.Host.Conmon.Path}}").stdout.strip()
        assert info == (str(script) if used else CONMON)
        env.run("run", "-d", "--name", "guard", BUSYBOX_IMAGE, "sleep", "1000")
        assert calls.exists() == used  # the wrapper ran (and exec'd conmon) only if accepted
        if not used:
            with pytest.raises(AssertionError, match="fell back"):
                assert_monitored(env, "guard")
    finally:
        env.remove_all()


def test_conmon_flag_is_not_used_for_restarts(
        podman_for: Callable[[str, str], PodmanEnv], tmp_path: Path) -> None:
    # Why conmon_path in containers.conf and not `podman --conmon`: the flag is not passed on to
    # the exit command, which performs restart-policy restarts with the configured monitor.
    script, calls = wrapper(tmp_path, "conmon version 2.1.6")
    env = podman_for("conmon", CONMON)
    try:
        run = ("n=$(cat /n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /n; "
               "[ $n -ge 3 ] && exec sleep 1000; exit 3")
        env.run("--conmon", str(script), "run", "-d", "--name", "flag", "--restart",
                "on-failure:2", BUSYBOX_IMAGE, "sh", "-c", run)
        wait_until(lambda: env.inspect("flag", "{{.RestartCount}} {{.State.Running}}") == "2 true",
                   timeout=30, what="two restarts")
        assert len(calls.read_text().split()) == 1  # only the first start used the wrapper
    finally:
        env.remove_all()
