"""The check VM's opt-in `memory` step: bench/bench_monitor.py's conmon / direct / forked memory
table (USS, PSS per idle container), run inside the VM with its own podman, conmon and Python.

Opt-in (VM_STEPS="boot memory"): minutes under emulation, and a figure, not a check; the step
fails only when the bench itself fails. Its lines land in results.txt as `PASS memory ...`.
"""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

COUNTS = "5"  # idle containers per monitor: 15 `podman run -d` at ~8 s each under emulation


def run(out: Path, repo: Path, result: Callable[[bool, str, str], None], log: Callable[[str], None]) -> None:
    python = subprocess.run(["python3", "--version"], capture_output=True, text=True).stdout.strip()
    conmon = subprocess.run(["/usr/bin/conmon", "--version"], capture_output=True, text=True).stdout
    conmon = conmon.splitlines()[0] if conmon else "no /usr/bin/conmon"
    argv = [sys.executable, str(repo / "bench/bench_monitor.py"), "--memory-only", "--memory-counts", COUNTS,
            "--idle-seconds", "5", "--json", str(out / "memory.json")]
    log("memory: " + " ".join(argv))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=repo)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        log("  " + lines[-1])
    rc = proc.wait(timeout=60)
    # the table's rows: "<count>  RSS|PSS|USS ... conmon direct forked verdict"
    rows = [" ".join(ln.split()) for ln in lines if ln.split()[:1] == [COUNTS]
            and len(ln.split()) > 1 and ln.split()[1] in ("RSS", "PSS", "USS", "idle")]
    result(rc == 0 and bool(rows), "memory", f"{python}, {conmon}; per idle container, kB, "
           f"columns conmon direct forked: " + " | ".join(rows) if rows else f"bench exit {rc}, no table")
