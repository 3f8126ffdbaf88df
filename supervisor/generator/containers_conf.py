"""The containers.conf that podvisor's units name in CONTAINERS_CONF.

CONTAINERS_CONF replaces podman's system files (/usr/share/containers/containers.conf,
/etc/containers/containers.conf) instead of adding to them, and podman 4.3.1 has no override
variable. So the file we install is the host's own configuration, merged the way podman merges
it (later files win key by key), with ``engine.conmon_path`` pointing at podvisor-conmon. That
variable is inherited by the monitor and by the exit command (``podman container cleanup``), so
every podman process of the container uses the same monitor.
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from supervisor.errors import UserError

SYSTEM_FILES = (Path("/usr/share/containers/containers.conf"), Path("/etc/containers/containers.conf"))


class ConfError(UserError, ValueError):
    """A system containers.conf that cannot be read (or written back)."""


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def merged(monitor: str, files: tuple[Path, ...] = SYSTEM_FILES) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for f in files:
        if not f.exists():
            continue
        try:
            with open(f, "rb") as fh:
                data = _merge(data, tomllib.load(fh))
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfError(f"{f}: {e}") from None
    return _merge(data, {"engine": {"conmon_path": [monitor]}})


def dumps(data: dict[str, Any]) -> str:
    """TOML for containers.conf-shaped data (tables of scalars, arrays, nested tables)."""
    try:
        return tomli_w.dumps(data)
    except TypeError as e:  # a value TOML has no type for (tomllib never reads one)
        raise ConfError(f"cannot write containers.conf: {e}") from None


def render(monitor: str, files: tuple[Path, ...] = SYSTEM_FILES) -> str:
    head = ("# Written by `podvisor install`: podman's configuration for podvisor's units (named by their\n"
            "# CONTAINERS_CONF). It replaces the system containers.conf files, so it repeats them:\n"
            f"# {', '.join(str(f) for f in files)}, merged, with conmon_path set to podvisor-conmon.\n")
    return head + dumps(merged(monitor, files))
