"""A container's processes and usage, on real processes of this machine: a stand-in monitor
with a child and a grandchild (psutil needs no systemd)."""
from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from supervisor.manage import procs

# a "monitor" whose child is the "container init", which has a busy child of its own
TREE = """
import subprocess, sys, time
init = subprocess.Popen([sys.executable, "-c",
    "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'while True: pass']); time.sleep(60)"])
print(init.pid, flush=True)
time.sleep(60)
"""


@pytest.fixture
def monitor() -> Iterator[tuple[int, int]]:
    proc = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    init = int(proc.stdout.readline())
    deadline = time.monotonic() + 10
    while len(psutil.Process(init).children()) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield proc.pid, init
    finally:
        for p in psutil.Process(proc.pid).children(recursive=True):
            p.kill()
        proc.kill()
        proc.wait()


def test_container_processes_are_the_monitors_descendants(monitor: tuple[int, int]) -> None:
    mon, init = monitor
    got = [p.pid for p in procs.container_processes(mon)]
    busy = psutil.Process(init).children()[0].pid
    assert got == sorted([init, busy])
    assert mon not in got
    assert procs.container_processes(0) == []
    assert procs.container_processes(2 ** 22 + 1) == []  # no such process


def test_usage_and_cpu_sampling(monitor: tuple[int, int]) -> None:
    mon, init = monitor
    ps = procs.container_processes(mon)
    sampler = procs.CpuSampler()
    sampler.sample(ps)
    assert procs.usage(ps, sampler).cpu_percent is None  # one look: no rate yet
    busy = psutil.Process(init).children()[0]
    start_cpu = sum(busy.cpu_times()[:2])
    # a condition, not a sleep: however loaded the machine, wait for the busy loop to have run 0.3 s
    deadline = time.monotonic() + 60
    while sum(busy.cpu_times()[:2]) - start_cpu < 0.3 and time.monotonic() < deadline:
        time.sleep(0.05)
    sampler.sample(ps)
    used = sum(busy.cpu_times()[:2]) - start_cpu
    u = procs.usage(ps, sampler)
    assert u.pids == sorted([init, busy.pid])
    assert u.memory_bytes > 1 << 20
    assert used >= 0.3
    # the rate is the CPU the tree used between the two looks over the wall time between them
    assert u.cpu_percent is not None and 0 < u.cpu_percent <= 100 * (psutil.cpu_count() or 1) + 5
    assert u.cpu_percent == pytest.approx(100 * used / (sampler.now - sampler.last_time), rel=0.5, abs=5)
    assert u.cpu_seconds > 0.3


def test_tree_roots_at_the_monitor(monitor: tuple[int, int]) -> None:
    mon, init = monitor
    sampler = procs.CpuSampler()
    tops = procs.tree(procs.monitor_process(mon), procs.container_processes(mon), sampler)
    assert [t.pid for t in tops] == [mon]
    (child,) = tops[0].children
    assert child.pid == init and child.ppid == mon
    assert len(child.children) == 1 and "while True" in child.children[0].cmdline
    assert tops[0].user and tops[0].rss > 0


def test_cgroup_dir_of_this_process() -> None:
    d = procs.cgroup_dir(psutil.Process().pid)
    # in the root cgroup (or outside our cgroup namespace) there is no container cgroup to read
    if d is not None:
        assert (d / "cgroup.procs").exists()
        assert psutil.Process().pid in procs.cgroup_pids(d)
    assert procs.cgroup_dir(2 ** 22 + 1) is None
    assert procs.cgroup_pids(None) == set()
