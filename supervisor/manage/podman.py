"""podman's view of a pod's containers, asked the way the pod's units ask.

The units carry the host's podman choices (executable, global flags such as ``--root=``, the
CONTAINERS_CONF naming podvisor-conmon): we take the podman argv prefix from the unit's own
ExecStop= (generator settings guarantee ``--flag=value`` globals, so the first bare word is the
subcommand) and CONTAINERS_CONF from its Environment=, both read over D-Bus.
"""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from typing import Any

from ..errors import UserError
from .model import PodmanContainer, PortMapping

TIMEOUT = 30.0
# variables that would send podman elsewhere than the system's own containers
_UNSET = ("CONTAINER_HOST", "CONTAINER_CONNECTION", "NOTIFY_SOCKET")


class PodmanError(UserError):
    pass


@dataclass(frozen=True)
class PodmanCommand:
    argv: tuple[str, ...] = ("podman",)  # executable and global flags
    containers_conf: str | None = None

    @classmethod
    def from_unit(cls, props: dict[str, Any]) -> PodmanCommand:
        argv: tuple[str, ...] = ("podman",)
        for key in ("ExecStop", "ExecStopPost", "ExecStartPre", "ExecStart"):
            found = _podman_prefix(props.get(key) or [])
            if found:
                argv = found
                break
        conf = None
        for assignment in props.get("Environment") or []:
            k, _, v = str(assignment).partition("=")
            if k == "CONTAINERS_CONF":
                conf = v
        return cls(argv, conf)

    def run(self, *args: str, timeout: float = TIMEOUT) -> str:
        env = {k: v for k, v in os.environ.items() if k not in _UNSET}
        if self.containers_conf:
            env["CONTAINERS_CONF"] = self.containers_conf
        try:
            res = subprocess.run([*self.argv, *args], env=env, capture_output=True, text=True,
                                 stdin=subprocess.DEVNULL, timeout=timeout, check=False)
        except FileNotFoundError:
            raise PodmanError(f"{self.argv[0]} not found") from None
        except subprocess.TimeoutExpired:
            raise PodmanError(f"podman {args[0]} did not answer within {timeout:g}s") from None
        if res.returncode != 0:
            raise PodmanError(f"podman {' '.join(args[:2])}: {res.stderr.strip() or f'exit {res.returncode}'}")
        return res.stdout


def _podman_prefix(commands: list[Any]) -> tuple[str, ...] | None:
    for command in commands:
        # D-Bus ExecXXX entries: (path, argv, ignore_errors, timestamps..., pid, code, status)
        path, argv = command[0], list(command[1])
        if os.path.basename(path) != "podman" or not argv:
            continue
        prefix = [path]
        for word in argv[1:]:
            if not word.startswith("--"):
                return tuple(prefix)
            prefix.append(word)
    return None


def _time(value: Any) -> float | None:
    # podman ps reports epoch seconds; a never-set time is Go's zero time (year 1, negative)
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def parse_ps(text: str) -> dict[str, PodmanContainer]:
    """`podman ps --all --format json` -> containers by name."""
    out: dict[str, PodmanContainer] = {}
    for c in json.loads(text or "[]") or []:
        names = c.get("Names") or []
        if not names:
            continue
        ports = [PortMapping(str(p.get("host_ip") or ""), int(p.get("host_port") or 0) + i,
                             int(p.get("container_port") or 0) + i, str(p.get("protocol") or "tcp"))
                 for p in c.get("Ports") or [] for i in range(max(1, int(p.get("range") or 1)))]
        exited = bool(c.get("Exited"))
        out[names[0]] = PodmanContainer(
            id=str(c.get("Id", "")), name=names[0], state=str(c.get("State", "")), pid=int(c.get("Pid") or 0),
            image=str(c.get("Image", "")), started_at=_time(c.get("StartedAt")),
            exit_code=int(c.get("ExitCode", 0)) if exited else None, ports=ports)
    return out


def containers(cmd: PodmanCommand) -> dict[str, PodmanContainer]:
    """Every container of that podman (running or not), by name. Raises PodmanError."""
    try:
        return parse_ps(cmd.run("ps", "--all", "--format=json"))
    except json.JSONDecodeError as e:
        raise PodmanError(f"podman ps: unreadable output ({e})") from None


def inspect(cmd: PodmanCommand, names: list[str]) -> list[dict[str, Any]]:
    """`podman container inspect` of the containers that exist among `names`."""
    if not names:
        return []
    try:
        return list(json.loads(cmd.run("container", "inspect", *names) or "[]"))
    except json.JSONDecodeError as e:
        raise PodmanError(f"podman inspect: unreadable output ({e})") from None
