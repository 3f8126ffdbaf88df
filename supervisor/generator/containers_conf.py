"""The containers.conf that podvisor's units name in CONTAINERS_CONF.

CONTAINERS_CONF replaces podman's system files (/usr/share/containers/containers.conf,
/etc/containers/containers.conf) instead of adding to them, and podman 4.3.1 has no override
variable. So the file we install is the host's own configuration, merged the way podman merges
it (later files win key by key), with ``engine.conmon_path`` pointing at podvisor-conmon. That
variable is inherited by the monitor and by the exit command (``podman container cleanup``), so
every podman process of the container uses the same monitor.
"""
from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

SYSTEM_FILES = (Path("/usr/share/containers/containers.conf"), Path("/etc/containers/containers.conf"))


class ConfError(ValueError):
    pass


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


def _key(k: str) -> str:
    return k if k and all(c.isalnum() or c in "_-" for c in k) else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise ConfError(f"cannot write {type(v).__name__} values")


def dumps(data: dict[str, Any]) -> str:
    """TOML for containers.conf-shaped data (tables of scalars, arrays, nested tables)."""
    lines: list[str] = []

    def table(path: list[str], d: dict[str, Any]) -> None:
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in d.items() if isinstance(v, dict)}
        if path and (scalars or not tables):
            lines.append(f"\n[{'.'.join(_key(p) for p in path)}]")
        for k, v in scalars.items():
            lines.append(f"{_key(k)} = {_value(v)}")
        for k, v in tables.items():
            table(path + [k], v)

    table([], data)
    return "\n".join(lines).lstrip("\n") + "\n"


def render(monitor: str, files: tuple[Path, ...] = SYSTEM_FILES) -> str:
    head = ("# Written by `podvisor install`: podman's configuration for podvisor's units (named by their\n"
            "# CONTAINERS_CONF). It replaces the system containers.conf files, so it repeats them:\n"
            f"# {', '.join(str(f) for f in files)}, merged, with conmon_path set to podvisor-conmon.\n")
    return head + dumps(merged(monitor, files))
