"""Running generated units under a real systemd: the sandbox (supervisor.lab.sandbox, systemd as PID 1
of an nspawn container over a copy-on-write view of /).

`GeneratorSandbox` knows where the generator's code and a work directory are, installs pods with
`podvisor install` inside, and can show what argv a unit's ExecStart= really delivered.
Usable from tests (see test_under_systemd.py) and by hand::

    from supervisor.lab.sandbox import Sandbox, SandboxConfig
    from tests.generator.harness import GeneratorSandbox
    with Sandbox(SandboxConfig(name="try")) as sb:
        g = GeneratorSandbox(sb, Path("/var/tmp/try"))
        print(g.argv_under_systemd([["a b", "%n", "$HOME", ";"]]))
"""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from supervisor.generator import escape
from supervisor.lab.sandbox import Sandbox

REPO = Path(__file__).resolve().parents[2]
# prints its argv (after argv[0..1]) as hex into the file named by argv[1]: bytes, not text
_DUMP = ("import os, sys, json; open(sys.argv[1], 'w').write(json.dumps("
         "[os.fsencode(a).hex() for a in sys.argv[2:]]))")


class GeneratorSandbox:
    def __init__(self, sb: Sandbox, workdir: Path, python: str = sys.executable) -> None:
        self.sb = sb
        self.workdir = workdir  # on the host under /var/tmp: new files there are visible inside
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.python = python
        # `podvisor` running this checkout's package (the venv's copy may be older)
        self.podvisor = workdir / "podvisor"
        code = (f"import sys; sys.path.insert(0, {json.dumps(str(REPO))}); "
                "from supervisor.cli import main; sys.exit(main())")
        self.podvisor.write_text(f"#!/bin/sh\nexec {shlex.quote(python)} -c {shlex.quote(code)} \"$@\"\n")
        self.podvisor.chmod(0o755)

    def sh(self, script: str, *, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        res = self.sb.run(["sh", "-c", script], timeout=timeout)
        if check and res.returncode:
            raise AssertionError(f"in sandbox: {script!r} -> {res.returncode}\n{res.stdout}\n{res.stderr}")
        return res

    def write(self, name: str, text: str) -> Path:
        path = self.workdir / name
        path.write_text(text)
        return path

    def install(self, definition: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.sh(shlex.join([str(self.podvisor), "install", str(definition),
                                   f"--podvisor={self.podvisor}", *extra]))

    def props(self, unit: str, *names: str) -> dict[str, str]:
        out = self.sh(shlex.join(["systemctl", "show", unit, *(f"-p{n}" for n in names)])).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def main_pids(self, units: Sequence[str]) -> dict[str, int]:
        return {u: int(self.props(u, "MainPID")["MainPID"]) for u in units}

    def cmdline(self, pid: int) -> str:
        return self.sh(f"tr '\\0' ' ' < /proc/{pid}/cmdline").stdout

    def argv_under_systemd(self, argvs: Sequence[Sequence[str]], name: str = "pvt-argv") -> list[list[bytes]]:
        """Start a oneshot unit whose ExecStart= lines are our escaping of `argvs`; return the
        argv each command really received."""
        lines = []
        for i, argv in enumerate(argvs):
            out = f"/run/{name}.{i}.json"
            lines.append("ExecStart=" + escape.command([self.python, "-c", _DUMP, out, *argv], width=80))
        unit = "[Service]\nType=oneshot\nEnvironment=HOME=/root X=expanded\n" + "\n".join(lines) + "\n"
        self.write(f"{name}.service", unit)
        self.sh(f"cp {self.workdir}/{name}.service /etc/systemd/system/ && systemctl daemon-reload && "
                f"systemctl start {name}.service")
        got = []
        for i in range(len(argvs)):
            data = json.loads(self.sh(f"cat /run/{name}.{i}.json").stdout)
            got.append([bytes.fromhex(h) for h in data])
        return got
