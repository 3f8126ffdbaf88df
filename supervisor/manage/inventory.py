"""Pods as one snapshot: systemd's unit states, podman's containers, the processes' usage."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from supervisor.pods import naming

from ..systemd import Systemd
from . import discover, procs, sockets
from .model import ContainerStatus, PodmanContainer, PodStatus, UnitStatus
from .podman import PodmanCommand, PodmanError, containers

NOT_ROOT_PODMAN = ("not running as root: podman details (container ids, images, ports) need root, "
                   "and a non-root podman would show that user's own containers")


@dataclass
class Inventory:
    pods: list[PodStatus]
    warnings: list[str] = field(default_factory=list)
    taken_at: float = field(default_factory=time.time)


def unit_status(sd: Systemd, name: str, props: dict[str, Any] | None = None) -> tuple[UnitStatus, dict[str, Any]]:
    props = sd.unit(name) if props is None else props
    job_id, job_path = props.get("Job") or (0, "/")
    job = sd.job_type(job_path) if job_id else ""
    return UnitStatus.from_properties(name, props, job), props


def collect(sd: Systemd, names: list[str] | None = None, *, use_podman: bool = True,
            cpu_interval: float = 0.0, sampler: procs.CpuSampler | None = None) -> Inventory:
    """`names`: those pods (ManageError for an unknown one), default every pod podvisor installed.
    `cpu_interval`: seconds between the two CPU looks (0: no percentages unless `sampler` has
    an earlier sample, as in top)."""
    inv = Inventory([])
    member_props: dict[str, dict[str, Any]] = {}
    for pu in discover.load_pods(sd, names):
        pod_unit, _ = unit_status(sd, pu.unit, pu.properties)
        infra, members = None, []
        for member in pu.members:
            status, props = unit_status(sd, member)
            member_props[member] = props
            ctr = discover.PodUnits.container_of(member)
            podman_name = naming.podman_infra(pu.name) if ctr == naming.INFRA else naming.podman_container(pu.name, ctr)
            c = ContainerStatus(ctr, podman_name, status, user=sd.user)
            if ctr == naming.INFRA:
                infra = c
            else:
                members.append(c)
        inv.pods.append(PodStatus(pu.name, pod_unit, infra, members, sockets=sockets.collect(sd, pu.name)))
        for m in pu.members:
            if member_props.get(m, {}).get("NeedDaemonReload"):
                inv.warnings.append(f"{m} changed on disk: run `systemctl daemon-reload`")
                break

    if use_podman:
        _add_podman(inv, member_props, user=sd.user)
    _add_usage(inv, cpu_interval, sampler)
    return inv


def _add_podman(inv: Inventory, member_props: dict[str, dict[str, Any]], user: bool = False) -> None:
    if not inv.pods:
        return
    if os.geteuid() != 0 and not user:  # a user's own pods: its own podman is the right one
        inv.warnings.append(NOT_ROOT_PODMAN)
        return
    by_command: dict[PodmanCommand, list[PodStatus]] = {}
    for pod in inv.pods:
        props = next((member_props[c.unit.name] for c in pod.members if c.unit.name in member_props), {})
        by_command.setdefault(PodmanCommand.from_unit(props), []).append(pod)
    for cmd, pods in by_command.items():
        try:
            found: dict[str, PodmanContainer] = containers(cmd)
        except PodmanError as e:
            inv.warnings.append(str(e))
            continue
        for pod in pods:
            for c in pod.members:
                c.podman = found.get(c.podman_name)
            source = pod.infra.podman if pod.infra and pod.infra.podman else next(
                (c.podman for c in pod.containers if c.podman and c.podman.ports), None)
            pod.ports = list(source.ports) if source else []


def _add_usage(inv: Inventory, cpu_interval: float, sampler: procs.CpuSampler | None) -> None:
    sampler = sampler or procs.CpuSampler()
    per_member: list[tuple[ContainerStatus, list[psutil.Process], Path | None]] = []
    monitors = []
    for pod in inv.pods:
        for c in pod.members:
            if c.unit.main_pid > 0:
                pid = c.podman.pid if c.podman and c.podman.state == "running" else 0
                ps = procs.container_processes(c.unit.main_pid, pid)
                init = pid or (ps[0].pid if ps else 0)
                per_member.append((c, ps, procs.container_cgroup(c.unit.main_pid, init)))
                monitors.append(procs.monitor_process(c.unit.main_pid))
    # the monitors too: top shows them (they are not part of a container's usage)
    everything = [p for _, ps, _ in per_member for p in ps] + [m for m in monitors if m is not None]
    sampler.sample(everything)
    if cpu_interval > 0 and everything:
        time.sleep(cpu_interval)
        sampler.sample(everything)
    for c, ps, cgroup in per_member:
        c.usage = procs.usage(ps, sampler, cgroup)
