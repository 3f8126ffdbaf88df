"""One real systemd (a throwaway nspawn sandbox) shared by the tests in this directory.

Its containers.conf points podman at the venv's podvisor-conmon; the busybox image and the
static sd-notify tool are put in once per session."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.lab.images import BUSYBOX_IMAGE, ensure_image
from supervisor.lab.sandbox import Sandbox, SandboxConfig

from ..conftest import TIME_SCALE

TOOLS = Path(__file__).resolve().parents[1] / "tools"
OURS = str(Path(sys.executable).parent / "podvisor-conmon")


@pytest.fixture(scope="session")
def sd_notify_tool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """tests/tools/sd-notify.c, built statically under /var/tmp (visible inside the sandbox);
    PODVISOR_SD_NOTIFY_TOOL names one built already (the check VM's, built on the host: gcc
    under emulation is slow)."""
    prebuilt = os.environ.get("PODVISOR_SD_NOTIFY_TOOL")
    if prebuilt:
        yield Path(prebuilt)
        return
    out = Path("/var/tmp") / f"pvt-tools-{uuid.uuid4().hex[:8]}"
    out.mkdir()
    binary = out / "sd-notify"
    subprocess.run(["gcc", "-static", "-O2", "-o", str(binary), str(TOOLS / "sd-notify.c")],
                   check=True)
    yield binary
    subprocess.run(["rm", "-rf", str(out)], check=False)


# Set by scripts/vm/checks.py inside the check VM: a disposable machine whose PID 1 is systemd
# (cgroup v2), whose own systemd and podman the tests use instead of a sandbox.
ON_THIS_SYSTEMD = "PODVISOR_TEST_ON_THIS_SYSTEMD"


class ThisSystem:
    """This machine's own systemd and podman, with the Sandbox methods the tests use."""

    name = "this-system"

    def run(self, cmd: list[str], *, input: str | None = None, check: bool = False,
            timeout: float | None = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                              check=check, stdin=None if input is not None else subprocess.DEVNULL)

    def podman(self, *args: str, check: bool = True, input: bytes | str | None = None,
               timeout: float | None = 300) -> subprocess.CompletedProcess[bytes]:
        data = input.encode() if isinstance(input, str) else input
        return subprocess.run(["podman", *args], input=data, capture_output=True, timeout=timeout,
                              check=check, stdin=None if data is not None else subprocess.DEVNULL)


def _this_system() -> ThisSystem:
    if Path("/proc/1/comm").read_text().strip() != "systemd":
        pytest.fail(f"{ON_THIS_SYSTEMD}=1 but PID 1 is not systemd here")
    conf = Path("/etc/containers/containers.conf")
    if OURS not in (conf.read_text() if conf.exists() else ""):
        pytest.fail(f"{ON_THIS_SYSTEMD}=1 but {conf} does not name {OURS} as conmon_path")
    return ThisSystem()


@pytest.fixture(scope="session")
def sandbox(sd_notify_tool: Path) -> Iterator[Sandbox]:
    if not Path(OURS).exists():
        pytest.skip(f"{OURS} is not installed (run scripts/install.sh)")
    if os.environ.get(ON_THIS_SYSTEMD) == "1":
        this = _this_system()
        ensure_image(this.podman, BUSYBOX_IMAGE)
        yield this  # type: ignore[misc]
        return
    sb = Sandbox(SandboxConfig(name=f"pvt-sd-{uuid.uuid4().hex[:6]}", conmon_path=OURS))
    sb.start()
    try:
        ensure_image(sb.podman, BUSYBOX_IMAGE)
        yield sb
    finally:
        sb.stop()


def sh(sb: Sandbox, script: str, *, check: bool = True, timeout: float = 60,
       input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a shell script inside the sandbox (`timeout` times PODVISOR_TEST_TIME_SCALE)."""
    res = sb.run(["sh", "-c", script], input=input, timeout=timeout * TIME_SCALE)
    if check and res.returncode:
        raise AssertionError(f"in sandbox: {script!r} -> {res.returncode}\n{res.stdout}\n{res.stderr}")
    return res


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def as_nobody(sb: Sandbox, program: str) -> list[str]:
    """The argv prefix that runs `program` (of the checkout's venv) as user nobody inside.

    The checkout may live in a 0700 home (/root/x), where nobody cannot reach it. Inside the
    sandbox - its RAM layer only, never the host - the directories above the checkout get o+x,
    as on a machine with a world-readable checkout. If the checkout itself is not readable by
    others, the test is skipped with the reason."""
    checkout = Path(__file__).resolve().parents[2]
    for parent in reversed(checkout.parents):
        if not parent.stat().st_mode & 0o001:
            sh(sb, f"chmod o+x {shlex.quote(str(parent))}")
    res = sb.run([*NOBODY, program, "--help"])
    if res.returncode:
        pytest.skip(f"user nobody cannot run {program} (the checkout {checkout} is not readable by others: "
                    f"{res.stderr.strip().splitlines()[-1:]})")
    return NOBODY


def install_unit(sb: Sandbox, name: str, text: str) -> None:
    sh(sb, f"cat > /etc/systemd/system/{name} && systemctl daemon-reload", input=text)


def unit_props(sb: Sandbox, unit: str, *props: str) -> dict[str, str]:
    out = sh(sb, f"systemctl show {unit} " + " ".join(f"-p {p}" for p in props)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


IMAGE = BUSYBOX_IMAGE
