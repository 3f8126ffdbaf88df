"""`systemd-analyze verify` over a set of generated units, warnings included.

It works without systemd running as PID 1 (it loads the units offline; root needed for some
checks). All units of a pod are verified together so BindsTo=/Wants= between them resolve.
Exit status 0 is not enough: unknown keys and bad escapes are only warnings, so any message
about our files counts as a failure.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from supervisor.errors import UserError

from .render import RenderedUnit


class VerifyUnavailable(UserError):
    """systemd-analyze is missing, or failed to run (OSError, time-out)."""


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    problems: tuple[str, ...]  # messages about our units
    noise: tuple[str, ...]     # messages about other units of the host (not ours to fix)

    def __str__(self) -> str:
        return "\n".join(self.problems) if self.problems else "ok"


def available() -> bool:
    return shutil.which("systemd-analyze") is not None


# systemd-analyze loads every unit of the machine: seconds here, minutes under emulation
def verify(units: Iterable[RenderedUnit], timeout: float = 300, *, user: bool = False) -> VerifyResult:
    units = list(units)
    tool = shutil.which("systemd-analyze")
    if tool is None:
        raise VerifyUnavailable("systemd-analyze not found (package systemd)")
    with tempfile.TemporaryDirectory(prefix="podvisor-verify-") as d:
        paths = []
        for u in units:
            p = Path(d) / u.name
            p.write_text(u.text, encoding="utf-8")
            paths.append(str(p))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYSTEMD_")}
        env["SYSTEMD_LOG_COLOR"] = "0"
        if user:  # the user scope needs a runtime dir (%t) even to verify; root has none set
            env.setdefault("XDG_RUNTIME_DIR", d)
        try:
            scope = ["--user"] if user else []  # a user manager's unit search path and specifiers
            res = subprocess.run([tool, "verify", "--man=no", *scope, *paths], capture_output=True, text=True,
                                 timeout=timeout, env=env, cwd=d)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise VerifyUnavailable(f"systemd-analyze verify: {e}") from None
        names = tuple(u.name for u in units)
        ours: list[str] = []
        other: list[str] = []
        for line in (res.stdout + res.stderr).splitlines():
            if not line.strip():
                continue
            (ours if d in line or any(n in line for n in names) else other).append(line.replace(d + "/", ""))
        if res.returncode != 0 and not ours:
            ours = [f"systemd-analyze verify exited {res.returncode}", *other]
        return VerifyResult(not ours, tuple(ours), tuple(other))
