"""Host-specific choices baked into generated units: programs, podman's global flags, the
containers.conf that names podvisor-conmon. One Settings value per run keeps output a pure
function of (definition, settings).

Read from ``/etc/podvisor/generator.toml`` when present (the systemd generator has no command
line), overridden by command-line options::

    podman = "/usr/bin/podman"
    podvisor = "/usr/local/bin/podvisor"          # runs `podvisor ready-probe` for healthy readiness
    containers_conf = "/etc/podvisor/containers.conf"
    monitor = "/usr/local/bin/podvisor-conmon"    # its conmon_path, when `podvisor install` writes it
    podman_global_args = ["--root=/var/lib/containers/storage", "--runroot=/run/containers/storage"]
"""
from __future__ import annotations

import os
import sys
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from supervisor.errors import UserError

SETTINGS_FILE = Path("/etc/podvisor/generator.toml")
DEFAULT_CONTAINERS_CONF = "/etc/podvisor/containers.conf"
# podman's defaults for root; what RequiresMountsFor= protects when no --root/--runroot is given
DEFAULT_STORAGE = ("/var/lib/containers/storage", "/run/containers/storage")


class SettingsError(UserError, ValueError):
    pass


def default_monitor() -> str:
    """podvisor-conmon of the running installation."""
    beside = Path(sys.executable).parent / "podvisor-conmon"
    return str(beside) if os.access(beside, os.X_OK) else "/usr/local/bin/podvisor-conmon"


def default_podvisor() -> str:
    """The `podvisor` command of the running installation (the venv's, for a venv install)."""
    beside = Path(sys.executable).parent / "podvisor"  # no resolve(): venv bin/ is a symlink farm
    return str(beside) if os.access(beside, os.X_OK) else "/usr/local/bin/podvisor"


@dataclass(frozen=True)
class Settings:
    podman: str = "/usr/bin/podman"
    podvisor: str = field(default_factory=default_podvisor)
    systemctl: str = "/usr/bin/systemctl"
    coreutils: str = "/usr/bin"  # rm, mkdir, touch, test
    containers_conf: str = DEFAULT_CONTAINERS_CONF
    monitor: str = field(default_factory=default_monitor)  # conmon_path in the containers.conf we install
    # before the podman subcommand in every call; `--flag=value` form only, so the first bare
    # word after them is always the subcommand (`podvisor ready-probe` relies on it)
    podman_global_args: tuple[str, ...] = ()
    # units for a user's service manager (`--user`, see userscope.py); not a settings-file key
    user: bool = False

    def __post_init__(self) -> None:
        for name in ("podman", "podvisor", "systemctl", "coreutils", "containers_conf", "monitor"):
            value = getattr(self, name)
            # blanks, quotes, '%' are escaped in the units like any argv; '$' cannot be (escape.command)
            if (not value.startswith("/") or value != value.strip() or "$" in value
                    or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)):
                raise SettingsError(f"{name} = {value!r}: expected an absolute path without '$', control "
                                    "characters or blanks at its ends")
        for arg in self.podman_global_args:
            if not arg.startswith("--") or "=" not in arg:
                raise SettingsError(f"podman global argument {arg!r}: write it as --flag=value")

    def storage_paths(self) -> tuple[str, ...]:
        """Directories podman needs mounted before it runs (RequiresMountsFor=)."""
        given = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in self.podman_global_args}
        if self.user:  # root's defaults are none of a user's business; its own live in its home
            return tuple(given[k] for k in ("--root", "--runroot", "--tmpdir") if given.get(k))
        return tuple(p for p in (given.get("--root", DEFAULT_STORAGE[0]), given.get("--runroot", DEFAULT_STORAGE[1]),
                                 given.get("--tmpdir", "")) if p)

    def podman_argv(self, *args: str) -> list[str]:
        return [self.podman, *self.podman_global_args, *args]


MARKER = "# Written by `podvisor install-generator`"


def dumps(settings: Settings) -> str:
    """TOML that `load` reads back as `settings` (every field, so the generator needs no defaults)."""
    import json

    lines = [f"{MARKER}, which rewrites it while this line is here: the settings of the units\n"
             "# generated at boot (supervisor/generator/settings.py). Delete this line to keep your edits."]
    for name in Settings.__dataclass_fields__:
        if name == "user":
            continue
        value = getattr(settings, name)
        lines.append(f"{name} = {json.dumps(list(value) if isinstance(value, tuple) else value)}")
    return "\n".join(lines) + "\n"


def load(path: Path | None = None, **overrides: object) -> Settings:
    """Settings from `path` (default SETTINGS_FILE, if it exists), then non-None `overrides`."""
    values: dict[str, object] = {}
    file = path if path is not None else SETTINGS_FILE
    if path is not None or file.exists():
        try:
            with open(file, "rb") as f:
                data = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise SettingsError(f"{file}: {e}") from None
        known = {f for f in Settings.__dataclass_fields__}
        for key, value in data.items():
            if key not in known or key == "user":
                raise SettingsError(f"{file}: unknown setting {key!r}; known: {', '.join(sorted(known))}")
            if key == "podman_global_args":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise SettingsError(f"{file}: {key} must be a list of strings")
                value = tuple(value)
            elif not isinstance(value, str):
                raise SettingsError(f"{file}: {key} must be a string")
            values[key] = value
    values.update({k: v for k, v in overrides.items() if v is not None})
    return replace(Settings(), **values)  # type: ignore[arg-type]
