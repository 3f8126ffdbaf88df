"""`--log-level` sets the monitor's own verbosity, as conmon's: podman passes its own level
(`podman --log-level debug` also adds `--syslog`), and podvisor-conmon's debug lines then reach
its diagnostics (PODVISOR_CONMON_LOG), while at the default level they do not. podvisor only:
conmon has no diagnostics file; on both podvisor paths (direct and forked)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from supervisor.lab.testenv import BUSYBOX_IMAGE, PodmanEnv
from tests.conftest import podvisor_conmon
from tests.integration.helpers import assert_monitored


@pytest.mark.parametrize("level", ["debug", "warning"])
@pytest.mark.parametrize("kind", ["podvisor", "podvisor-forked"])
def test_log_level_sets_the_monitors_diagnostics(kind: str, level: str, store: Path,
                                                 podman_for: Callable[..., PodmanEnv],
                                                 fork_server: Callable[[], Path]) -> None:
    path, why = podvisor_conmon()
    assert path, why
    diag = store / f"log-level-{kind}.log"
    env_vars = {"PODVISOR_CONMON_LOG": str(diag), "PODVISOR_CONMON_SERVER": "off"}
    if kind == "podvisor-forked":
        env_vars.update(PODVISOR_CONMON_SERVER="only", PODVISOR_CONMON_SOCKET=str(fork_server()))
    env = podman_for(f"log-level-{kind}", path, conmon_env=env_vars)
    diag.unlink(missing_ok=True)
    name = f"log-level-{kind}-{level}"
    env.run("--log-level", level, "run", "-d", "--name", name, "--network", "none",
            BUSYBOX_IMAGE, "sleep", "1000")
    try:
        assert_monitored(env, name)
        env.run("stop", "-t", "0", name)
        env.run("wait", name, check=False)
    finally:
        env.run("rm", "-f", "-t", "0", name, check=False)
    text = diag.read_text() if diag.exists() else ""
    debug = level == "debug"
    assert ("[conmon:d]: runtime started as pid " in text) == debug, text
    assert ("[conmon:d]: container exited with " in text) == debug, text
    assert "[conmon:e]" not in text, text
