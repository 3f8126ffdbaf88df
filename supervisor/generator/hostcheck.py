"""Checks against the host a definition will run on: published ports already in use, images
missing from podman's store. Not done by the systemd generator (it runs before the network and
podman's storage may be up, and must be fast)."""
from __future__ import annotations

import errno
import os
import socket
import subprocess

from supervisor.pods.model import DefinitionError, Diagnostic, Pod

from .settings import Settings


def check_ports(pod: Pod) -> None:
    """DefinitionError naming the port's field when a published host port cannot be bound."""
    for p in pod.ports:
        if p.host_port is None or p.protocol == "sctp":
            continue
        ip = p.host_ip or "0.0.0.0"
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        kind = socket.SOCK_STREAM if p.protocol == "tcp" else socket.SOCK_DGRAM
        try:
            with socket.socket(family, kind) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "in use"
                s.bind((ip, p.host_port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise DefinitionError(p.loc.child("hostPort"), f"host port {p.host_port}/{p.protocol} is already "
                                                               "in use on this host") from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise DefinitionError(p.loc.child("hostIP"), f"{ip} is not an address of this host") from None
            # EACCES etc.: podman runs as root in the unit; not ours to judge here


def check_images(pod: Pod, settings: Settings) -> list[Diagnostic]:
    """Missing images are an error, unless the definition asks podman to pull (imagePullPolicy
    Always/IfNotPresent, Quadlet Pull=): then a warning, as the pull counts against the start timeout."""
    warnings = []
    env = dict(os.environ)
    if os.path.exists(settings.containers_conf):
        env["CONTAINERS_CONF"] = settings.containers_conf
    for c in pod.containers:
        if "%" in c.image or "$" in c.image:
            continue  # Quadlet text for systemd to expand: only known at start
        try:
            res = subprocess.run(settings.podman_argv("image", "exists", c.image), capture_output=True,
                                 text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise DefinitionError(c.loc.child("image"), f"cannot ask podman whether the image exists: {e}") from None
        if res.returncode == 0:
            continue
        if res.returncode != 1:
            raise DefinitionError(c.loc.child("image"), f"podman image exists failed: {res.stderr.strip()}")
        pulls = c.pull in ("always", "missing") or any(a.startswith(("--pull=always", "--pull=missing", "--pull=newer"))
                                                       for a in c.podman_args)
        if not pulls:
            raise DefinitionError(c.loc.child("image"), f"image {c.image!r} is not in podman's store; pull it "
                                                        f"first (podman pull {c.image}) or set imagePullPolicy: "
                                                        "IfNotPresent to pull when the unit starts")
        warnings.append(Diagnostic(c.loc.child("image"), f"image {c.image!r} is not in podman's store; it will "
                                                         "be pulled when the unit starts (within its start timeout)"))
    return warnings
