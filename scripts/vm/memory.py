"""The check VM's opt-in memory steps, run inside the VM with its own podman, conmon and Python:
- `memory`: bench/bench_monitor.py's conmon / direct / forked table (USS, PSS per idle container);
- `pages`: bench/monitor_pages.py on one forked idle monitor (perf: linux-perf, from install.sh),
  its report in pages.txt of the run directory.
Opt-in (VM_STEPS="boot memory"): minutes under emulation, and figures, not checks; a step fails
only when its bench fails (pages: or when perf recorded no faults). Their lines land in
results.txt (`PASS memory: ...`).
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

# idle containers per monitor (check-vm.sh passes VM_MEMORY_COUNTS): 5 are 15 `podman run -d` at
# ~8 s each under emulation
COUNTS = os.environ.get("VM_MEMORY_COUNTS") or "5"


Result = Callable[[bool, str, str], None]
Log = Callable[[str], None]
Step = tuple[str, Callable[[], None]]


def opt_in_steps(named: list[str], out: Path, repo: Path, result: Result, log: Log) -> list[Step]:
    """The steps of this module that VM_STEPS names (none by default)."""
    steps: list[Step] = [("memory", lambda: run(out, repo, result, log)),
                         ("pages", lambda: pages(out, repo, result, log))]
    return [(name, step) for name, step in steps if name in named]


def _stream(argv: list[str], repo: Path, log: Log) -> tuple[int, list[str]]:
    log(" ".join(argv))
    env = {**os.environ, "PODVISOR_TEST_TIME_SCALE": "10"}  # emulation: monitor_pages.py's waits x10
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=repo, env=env)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        log("  " + lines[-1])
    return proc.wait(timeout=60), lines


def pages(out: Path, repo: Path, result: Result, log: Log) -> None:
    rc, lines = _stream([sys.executable, str(repo / "bench/monitor_pages.py"), "--containers", "2",
                         "--json", str(out / "pages.json")], repo, log)
    (out / "pages.txt").write_text("\n".join(lines) + "\n")
    head = [ln.strip() for ln in lines if ln.startswith(("first forked monitor:", "  "))][:8]
    # a report without perf's faults names no object: say so rather than pass
    faults = any("no fault recorded" not in ln for ln in head[1:])
    result(rc == 0 and faults, "pages", f"exit {rc}{'' if faults else ', perf recorded no faults'}; "
           + " | ".join(head) + " (all in pages.txt)")


def run(out: Path, repo: Path, result: Result, log: Log) -> None:
    python = subprocess.run(["python3", "--version"], capture_output=True, text=True).stdout.strip()
    conmon = subprocess.run(["/usr/bin/conmon", "--version"], capture_output=True, text=True).stdout
    conmon = conmon.splitlines()[0] if conmon else "no /usr/bin/conmon"
    argv = [sys.executable, str(repo / "bench/bench_monitor.py"), "--memory-only", "--memory-counts", COUNTS,
            "--idle-seconds", "5", "--json", str(out / "memory.json")]
    rc, lines = _stream(argv, repo, log)
    # the table's rows: "<count>  RSS|PSS|USS ... conmon direct forked verdict"
    rows = [" ".join(ln.split()) for ln in lines if ln.split()[:1] and ln.split()[0] in COUNTS.split(",")
            and len(ln.split()) > 1 and ln.split()[1] in ("RSS", "PSS", "USS", "idle")]
    result(rc == 0 and bool(rows), "memory", f"{python}, {conmon}; per idle container, kB, "
           f"columns conmon direct forked: " + " | ".join(rows) if rows else f"bench exit {rc}, no table")
