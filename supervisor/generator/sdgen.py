"""The systemd generator (systemd.generator(7)), like Quadlet: at boot and at every
daemon-reload, pod definitions in /etc/containers/systemd/ (and /usr/share/containers/systemd/,
which /etc shadows file by file) become units in the generator's normal directory.

Definitions: ``*.yaml``/``*.yml`` (Kubernetes), ``*.pod`` with their ``*.container`` files, and
``*.container`` files without ``Pod=``. Each file is all-or-nothing: a broken one is reported
(to the kernel log, which the journal shows as ``podvisor-generator``) and skipped; the others
are still generated. Units get ``SourcePath=`` (so ``systemctl`` notices edited definitions) and
``[Install]`` is applied by symlinks, since generated units cannot be enabled. No host checks,
no systemd-analyze, no D-Bus: generators must be quick and run before most of the system.

Installed by ``podvisor install-generator`` as a small sh script in
/etc/systemd/system-generators/ that runs ``python -I -m supervisor.generator.sdgen``.

The user manager (``SYSTEMD_SCOPE=user``) runs the same script from /etc/systemd/user-generators/
(``install-generator --user``; systemd has no per-user generator directory) as each user, over the
directories Quadlet reads for rootless units: ``$XDG_RUNTIME_DIR/containers/systemd``,
``$XDG_CONFIG_HOME/containers/systemd`` (``~/.config/...``), ``/etc/containers/systemd/users/UID``
and ``/etc/containers/systemd/users``, first one winning by file name. Its units are user units
(settings.user), and the containers.conf they name is written beside them, in the generator's own
output directory: the system files and the user's own containers.conf merged at every
daemon-reload, without writing anywhere but where a generator may.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .settings import Settings

SEARCH_DIRS = (Path("/etc/containers/systemd"), Path("/usr/share/containers/systemd"))
SUFFIXES = (".yaml", ".yml", ".pod", ".container")
NAME = "podvisor-generator"
USER_CONF = Path("podvisor") / "containers.conf"  # in the normal dir; systemd ignores what is no unit


def user_search_dirs() -> tuple[Path, ...]:
    from .userscope import config_home

    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    first = (Path(runtime) / "containers" / "systemd",) if runtime.startswith("/") else ()
    users = Path("/etc/containers/systemd/users")
    return (*first, config_home() / "containers" / "systemd", users / str(os.getuid()), users)


def _log(level: int, message: str) -> None:
    line = f"{NAME}: {message}"
    if "SYSTEMD_SCOPE" in os.environ:  # run by systemd (252 sets it): no journal yet, kmsg reaches it later
        try:
            with open("/dev/kmsg", "w") as k:
                k.write(f"<{level}>{line}\n")
            return
        except OSError:
            pass
    print(line, file=sys.stderr)


def sources(dirs: tuple[Path, ...]) -> list[Path]:
    """Definition files by name, the first directory's winning; .container files that belong to
    a .pod are left to it."""
    chosen: dict[str, Path] = {}
    for d in dirs:
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            if p.suffix in SUFFIXES and p.name not in chosen and not p.name.startswith("."):
                chosen[p.name] = p
    from supervisor.pods.quadlet import pod_reference

    out = []
    for _, path in sorted(chosen.items()):
        pod_file = pod_reference(path) if path.suffix == ".container" else None
        if pod_file is None or pod_file not in chosen:
            out.append(path)  # a pod of its own, or loading it reports the missing .pod
    return out


def _user_settings(settings: Settings, normal_dir: Path) -> Settings:
    """User units naming a containers.conf in `normal_dir`, written now from the system's files and
    the user's own (unless the settings name another file than the default)."""
    import dataclasses

    from . import containers_conf, writer
    from .settings import DEFAULT_CONTAINERS_CONF
    from .userscope import own_containers_conf

    if settings.containers_conf != DEFAULT_CONTAINERS_CONF:
        return dataclasses.replace(settings, user=True)
    conf = normal_dir / USER_CONF
    text = containers_conf.render(settings.monitor, (*containers_conf.SYSTEM_FILES, own_containers_conf()))
    writer.commit(conf.parent, {conf.name: text})
    return dataclasses.replace(settings, user=True, containers_conf=str(conf))


def run(normal_dir: Path, dirs: tuple[Path, ...] = SEARCH_DIRS, user: bool = False) -> int:
    from supervisor import pods
    from supervisor.pods.model import DefinitionError

    from . import pipeline, writer
    from .containers_conf import ConfError
    from .settings import SettingsError, load

    found = sources(dirs)
    try:
        settings = load()
        if user and found:
            settings = _user_settings(settings, normal_dir)
    except (SettingsError, ConfError, OSError) as e:
        _log(3, f"settings: {e}; no pods generated")
        return 1
    failed = 0
    owner: dict[str, Path] = {}
    for path in found:
        try:
            pod_list, warnings = pods.load(str(path))
            for p in pod_list:
                if p.name in owner:
                    raise DefinitionError(pods.Loc(str(path)), f"pod {p.name!r} is already defined by {owner[p.name]}")
            gen = pipeline.build(pod_list, warnings, settings, verify=False, source_path=str(path))
            writer.commit(normal_dir, gen.files(), symlinks=gen.wants_symlinks())
        except (DefinitionError, pipeline.GenerateError, OSError) as e:
            failed += 1
            _log(3, f"{e}; skipped")
            continue
        for p in pod_list:
            owner[p.name] = path
        for w in warnings:
            _log(4, f"warning: {w}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 3):
        print(f"usage: {NAME} NORMAL-DIR [EARLY-DIR LATE-DIR]", file=sys.stderr)
        return 2
    user = os.environ.get("SYSTEMD_SCOPE", "system") == "user"
    extra = os.environ.get("PODVISOR_GENERATOR_DIRS")  # tests: other definition directories
    dirs = tuple(Path(d) for d in extra.split(":") if d) if extra else user_search_dirs() if user else SEARCH_DIRS
    return run(Path(args[0]), dirs, user)


if __name__ == "__main__":
    sys.exit(main())
