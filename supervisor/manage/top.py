"""`podvisor top POD`: each container's process tree with CPU and memory, refreshed.

The tree's root is the container's monitor (the unit's MainPID); below it the container's init
and its descendants; ``podman exec`` sessions in the container's cgroup follow as extra roots.
CPU% is measured between two frames (100% = one CPU busy), as top(1) does.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from typing import Any, TextIO

from ..systemd import Systemd
from . import fmt, procs
from .inventory import collect
from .model import ContainerStatus, PodStatus

CLEAR = "\x1b[H\x1b[2J"
FIRST_SAMPLE = 0.5  # seconds before the first frame, so it has CPU percentages


def container_tree(c: ContainerStatus, sampler: procs.CpuSampler) -> list[procs.Proc]:
    if c.unit.main_pid <= 0:
        return []
    monitor = procs.monitor_process(c.unit.main_pid)
    return procs.tree(monitor, procs.container_processes(c.unit.main_pid), sampler)


def _proc_json(p: procs.Proc) -> dict[str, Any]:
    return {"pid": p.pid, "ppid": p.ppid, "user": p.user, "cpu_percent": None if p.cpu_percent is None
            else round(p.cpu_percent, 1), "cpu_seconds": round(p.cpu_seconds, 2), "rss_bytes": p.rss,
            "command": p.cmdline, "children": [_proc_json(c) for c in p.children]}


def frame_json(pod: PodStatus, trees: dict[str, list[procs.Proc]], now: float) -> str:
    return json.dumps({"time": fmt.iso(now), "pod": pod.name, "ready": pod.ready, "containers": [
        {"name": c.name, "unit": c.unit.name, "active_state": c.unit.active_state, "sub_state": c.unit.sub_state,
         "main_pid": c.unit.main_pid or None, "processes": [_proc_json(p) for p in trees.get(c.name, [])]}
        for c in pod.members]})


def _label(p: procs.Proc, c: ContainerStatus) -> str:
    # the monitor's command line is a long python -c ...; say what it is instead
    return f"podvisor-conmon {c.podman_name}" if p.pid == c.unit.main_pid else p.cmdline


def _walk(rows: list[list[str]], c: ContainerStatus, p: procs.Proc, prefix: str, last: bool, depth: int) -> None:
    """One row per process, children below their parent as a tree."""
    branch = "" if depth == 0 else prefix + ("└─ " if last else "├─ ")
    cpu_time = fmt.duration(p.cpu_seconds) if p.cpu_seconds >= 1 else f"{p.cpu_seconds:.2f}s"
    rows.append([str(p.pid), str(p.ppid), p.user[:8], fmt.percent(p.cpu_percent).rstrip("%"),
                 fmt.size(p.rss), cpu_time, branch + _label(p, c)])
    child_prefix = "" if depth == 0 else prefix + ("   " if last else "│  ")
    for i, ch in enumerate(p.children):
        _walk(rows, c, ch, child_prefix, i == len(p.children) - 1, depth + 1)


def frame_text(pod: PodStatus, trees: dict[str, list[procs.Proc]], now: float, delay: float,
               pal: fmt.Palette, width: int) -> str:
    ready = f"{pod.ready_count}/{len(pod.containers)} ready"
    out = [f"{pal('podvisor top ' + pod.name, 'bold')} - {fmt.timestamp(now)[11:19]} - "
           f"{pal.state(pod.unit.state, pod.unit.active_state)} - {ready} - every {delay:g}s"]
    headers = ("PID", "PPID", "USER", "CPU%", "RSS", "TIME", "COMMAND")
    for c in pod.members:
        out.append("")
        u = c.unit
        total = ""
        if c.usage:
            total = (f"  {fmt.plural(len(c.usage.pids), 'process')}, {fmt.size(c.usage.memory_bytes)}, "
                     f"{fmt.percent(c.usage.cpu_percent)}")
        out.append(f"{pal(c.name, 'bold')}  {u.name}  {pal.state(u.state, u.active_state)}{total}")
        rows: list[list[str]] = []
        for root in trees.get(c.name, []):
            _walk(rows, c, root, "", True, 0)
        if not rows:
            out.append("  (no processes)")
            continue
        for line in fmt.table(headers, rows, right={0, 1, 3, 4, 5}):
            out.append(("  " + line)[:width] if width else "  " + line)
    return "\n".join(out)


def run(sd: Systemd, pod: str, *, delay: float, iterations: int | None, as_json: bool,
        out: TextIO = sys.stdout) -> int:
    sampler = procs.CpuSampler()
    collect(sd, [pod], use_podman=False, sampler=sampler)  # the first CPU look
    time.sleep(min(delay, FIRST_SAMPLE))
    interactive = out.isatty() and not as_json
    pal = fmt.Palette.for_stream(out)
    n = 0
    while True:
        inv = collect(sd, [pod], use_podman=False, sampler=sampler)
        p = inv.pods[0]
        trees = {c.name: container_tree(c, sampler) for c in p.members}
        if as_json:
            out.write(frame_json(p, trees, inv.taken_at) + "\n")
        else:
            width = shutil.get_terminal_size().columns if interactive else 0
            text = frame_text(p, trees, inv.taken_at, delay, pal, width)
            out.write((CLEAR + text if interactive else text + "\n") + "\n")
        out.flush()
        n += 1
        if iterations is not None and n >= iterations:
            return 0
        time.sleep(delay)
