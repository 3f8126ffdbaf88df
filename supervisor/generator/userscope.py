"""`--user`: a pod's units for the calling user's service manager (systemd --user).

Units go to `$XDG_CONFIG_HOME/systemd/user` (default `~/.config/systemd/user`), the containers.conf
naming podvisor-conmon to `$XDG_CONFIG_HOME/podvisor/containers.conf` (merged with the user's own
`containers/containers.conf` there). The units themselves differ from root's only where the user
manager differs: `WantedBy=default.target` for multi-user.target, no `RequiresMountsFor=` on root's
storage, and `%t` is then `$XDG_RUNTIME_DIR`. A user manager runs only while the user is logged in,
unless linger is on (`loginctl enable-linger USER`): `install --user` warns when it is off.
"""
from __future__ import annotations

import dataclasses
import os
import pwd
from pathlib import Path

from .settings import DEFAULT_CONTAINERS_CONF, Settings

LINGER_DIR = Path("/var/lib/systemd/linger")  # logind's record of `loginctl enable-linger`


def config_home() -> Path:
    """$XDG_CONFIG_HOME if absolute (the XDG rule), else ~/.config of the calling user."""
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    if xdg.startswith("/"):
        return Path(xdg)
    home = os.environ.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir
    return Path(home) / ".config"


def unit_dir() -> Path:
    return config_home() / "systemd" / "user"


def containers_conf() -> Path:
    return config_home() / "podvisor" / "containers.conf"


def own_containers_conf() -> Path:
    """The user's containers.conf, which podman reads after the system's (CONTAINERS_CONF replaces
    all of them, so the file we write merges it too)."""
    return config_home() / "containers" / "containers.conf"


def user_settings(settings: Settings) -> Settings:
    """`settings` for the user scope: the user's containers.conf unless one was chosen."""
    conf = settings.containers_conf
    if conf == DEFAULT_CONTAINERS_CONF:
        conf = str(containers_conf())
    return dataclasses.replace(settings, user=True, containers_conf=conf)


def user_name() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def linger_enabled(name: str | None = None) -> bool:
    return (LINGER_DIR / (name or user_name())).exists()


def linger_warning(name: str | None = None) -> str | None:
    """Why the pods would not outlive the session, or None when linger is on."""
    name = name or user_name()
    if linger_enabled(name):
        return None
    return (f"linger is off for user {name}: its pods stop when the last session ends and do not start at "
            f"boot; keep them running with `loginctl enable-linger {name}`")
