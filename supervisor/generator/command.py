"""The generator's `podvisor` subcommands: generate, install, uninstall, install-generator.
`register(subparsers)` is what supervisor/cli.py calls; the work modules are imported inside the
handlers so other subcommands never pay for jinja2/yaml."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from supervisor.errors import UserError, run

GENERATOR_SCRIPT = Path("/etc/systemd/system-generators/podvisor-generator")
# systemd reads user generators from system directories only: one script serves every user
USER_GENERATOR_SCRIPT = Path("/etc/systemd/user-generators/podvisor-user-generator")


def _warn(warnings: list[Any]) -> None:
    for w in warnings:
        print(f"podvisor: warning: {w}", file=sys.stderr)


def _settings_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("settings (default: /etc/podvisor/generator.toml, then built-in)")
    g.add_argument("--settings", type=Path, metavar="FILE", help="settings file (TOML) instead of the default")
    g.add_argument("--podman", metavar="PATH", help="podman executable in the units")
    g.add_argument("--podvisor", metavar="PATH", help="podvisor executable the units run for ready-probe")
    g.add_argument("--containers-conf", metavar="PATH", help="containers.conf the units name in CONTAINERS_CONF")
    g.add_argument("--monitor", metavar="PATH", help="podvisor-conmon, for the containers.conf install writes")
    g.add_argument("--podman-arg", action="append", metavar="--FLAG=VALUE",
                   help="podman global flag for every podman call, e.g. --podman-arg=--root=/srv/containers")


def _user_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--user", action="store_true",
                   help="units for your own service manager (systemd --user): ~/.config/systemd/user "
                        "(or $XDG_CONFIG_HOME), WantedBy=default.target, your containers.conf")


def _unit_dir(args: argparse.Namespace) -> Path:
    from .install import UNIT_DIR

    if args.unit_dir:
        return Path(args.unit_dir)
    if getattr(args, "user", False):
        from . import userscope

        return userscope.unit_dir()
    return UNIT_DIR


def _settings(args: argparse.Namespace) -> Any:
    settings = _load_settings(args)
    if getattr(args, "user", False):
        from . import userscope

        return userscope.user_settings(settings)
    return settings


def _load_settings(args: argparse.Namespace) -> Any:
    from .settings import load

    return load(args.settings, podman=args.podman, podvisor=args.podvisor, containers_conf=args.containers_conf,
                monitor=args.monitor, podman_global_args=tuple(args.podman_arg) if args.podman_arg else None)


def _add_install_generator(subparsers: Any) -> None:
    ig = subparsers.add_parser("install-generator",
                               help="install the systemd generator for /etc/containers/systemd/",
                               description="Write a systemd generator script that turns pod definitions in "
                                           "/etc/containers/systemd/ into units at every daemon-reload. With "
                                           "--user (as root), the user generator: every user's "
                                           "~/.config/containers/systemd/ and /etc/containers/systemd/users/ "
                                           "become that user's units, as with Quadlet.")
    ig.add_argument("--path", type=Path, default=None,
                    help=f"default: {GENERATOR_SCRIPT}; with --user {USER_GENERATOR_SCRIPT}")
    ig.add_argument("--user", action="store_true",
                    help="the user generator (systemd --user runs it as each user); needs root, like any "
                         "file in /etc/systemd/user-generators/")
    _settings_options(ig)
    ig.set_defaults(handler=_install_generator)


def register(subparsers: Any) -> None:
    gen = subparsers.add_parser(
        "generate", help="write the systemd units of a pod definition to a directory",
        description="Turn a pod definition (Kubernetes Pod/Deployment YAML, or a Quadlet-style .pod or "
                    ".container file) into pod-NAME.service, pod-NAME@infra.service and one "
                    "pod-NAME@CONTAINER.service per container. Nothing is written unless every check passes.")
    gen.add_argument("file", type=Path, metavar="FILE")
    gen.add_argument("--output", "-o", type=Path, required=True, metavar="DIR")
    gen.add_argument("--no-verify", action="store_true", help="skip systemd-analyze verify")
    gen.add_argument("--no-host-checks", action="store_true",
                     help="skip the checks against this host (ports in use, images present)")
    _user_option(gen)
    _settings_options(gen)
    gen.set_defaults(handler=_generate)

    inst = subparsers.add_parser(
        "install", help="install a pod's units in /etc/systemd/system and reload systemd",
        description="Generate, check and verify the units, write them to the unit directory (replacing an "
                    "earlier version of the same pods), write the containers.conf if missing, daemon-reload.")
    inst.add_argument("file", type=Path, metavar="FILE")
    inst.add_argument("--enable", action="store_true", help="also enable pod-NAME.service (start at boot)")
    inst.add_argument("--unit-dir", type=Path, default=None,
                      help="default: /etc/systemd/system; with --user ~/.config/systemd/user")
    inst.add_argument("--no-reload", action="store_true", help="do not talk to systemd")
    inst.add_argument("--no-verify", action="store_true", help="skip systemd-analyze verify")
    inst.add_argument("--no-host-checks", action="store_true", help="skip the ports-in-use and image checks")
    _user_option(inst)
    _settings_options(inst)
    inst.set_defaults(handler=_install)

    un = subparsers.add_parser("uninstall", help="stop, disable and remove a pod's units",
                               description="Stop pod-NAME.service and its members, disable it, remove the "
                                           "unit files podvisor wrote for it, reload systemd.")
    un.add_argument("name", metavar="NAME")
    un.add_argument("--keep-running", action="store_true", help="remove the files without stopping the units")
    un.add_argument("--unit-dir", type=Path, default=None,
                    help="default: /etc/systemd/system; with --user ~/.config/systemd/user")
    un.add_argument("--no-reload", action="store_true", help="do not talk to systemd")
    _user_option(un)
    un.set_defaults(handler=_uninstall)

    _add_install_generator(subparsers)


def _generate(args: argparse.Namespace) -> int:
    from . import pipeline, writer
    from .install import installed_units

    settings = _settings(args)
    try:
        gen = pipeline.generate(args.file, settings, verify=not args.no_verify, host_checks=not args.no_host_checks)
        files = gen.files()
        stale = [n for p in gen.pods for n in installed_units(p.name, args.output) if n not in files]
        writer.commit(args.output, files, remove=stale)
    except OSError as e:
        raise UserError(f"{args.output}: {e.strerror or e}; nothing written") from None
    _warn(gen.warnings)
    for name in files:
        print(args.output / name)
    return 0


def _install(args: argparse.Namespace) -> int:
    from supervisor.pods import naming

    from .install import install

    settings = _settings(args)
    try:
        report = install(args.file, settings, unit_dir=_unit_dir(args), reload=not args.no_reload,
                         enable=args.enable, host_checks=not args.no_host_checks, verify=not args.no_verify)
    except OSError as e:
        raise UserError(f"{e}; nothing written") from None
    _warn(report.warnings)
    if args.user:
        from . import userscope

        _warn([w for w in [userscope.linger_warning()] if w])
    if report.conf_written:
        print(f"wrote {settings.containers_conf}")
    for name in report.written:
        print(f"wrote {name}")
    for name in report.removed:
        print(f"removed {name}")
    for pod in report.pods:
        if naming.sockets_target(pod) in report.armed:
            print(f"listening: {naming.sockets_target(pod)} is enabled and started; the first connection "
                  f"starts {naming.pod_unit(pod)}")
        else:
            print(f"start it with: systemctl{' --user' if args.user else ''} start {naming.pod_unit(pod)}")
    return 0


def _uninstall(args: argparse.Namespace) -> int:
    from .install import uninstall

    removed = uninstall(args.name, unit_dir=_unit_dir(args), reload=not args.no_reload,
                        stop=not args.keep_running, user=args.user)
    for name in removed:
        print(f"removed {name}")
    return 0


def generator_script(python: str = sys.executable) -> str:
    """sh that runs sdgen with this Python and this copy of the package (a venv's site-packages,
    or a source tree): the generator then makes the same units as the command that installed it."""
    import json
    import shlex

    root = str(Path(__file__).resolve().parents[2])
    code = (f"import sys; sys.path.insert(0, {json.dumps(root)}); "
            "from supervisor.generator.sdgen import main; sys.exit(main())")
    return ("#!/bin/sh\n"
            "# podvisor's systemd generator, written by `podvisor install-generator` (supervisor/generator/sdgen.py)\n"
            f"exec {shlex.quote(python)} -I -c {shlex.quote(code)} \"$@\"\n")


def _install_generator(args: argparse.Namespace) -> int:
    from . import writer
    from .install import ensure_containers_conf
    from .settings import MARKER, SETTINGS_FILE, dumps

    settings = _load_settings(args)  # the user generator makes them user settings, per user
    path = args.path or (USER_GENERATOR_SCRIPT if args.user else GENERATOR_SCRIPT)
    try:
        # the generator may not write /etc itself, and its units name this file (a user generator
        # writes each user's beside its units)
        if not args.user and ensure_containers_conf(settings):
            print(f"wrote {settings.containers_conf}")
        # the generator has no command line: it reads these settings (ours are kept up to date)
        conf = SETTINGS_FILE
        ours = not conf.exists() or conf.read_text().startswith(MARKER)
        if ours and writer.commit(conf.parent, {conf.name: dumps(settings)}):
            print(f"wrote {conf}")
        writer.commit(path.parent, {path.name: generator_script()}, mode=0o755)
    except PermissionError as e:
        hint = "; run it as root (systemd has no per-user generator directory)" if args.user else ""
        raise UserError(f"{e.filename or path}: {e.strerror or e}{hint}") from None
    except OSError as e:
        raise UserError(f"{path}: {e.strerror or e}") from None
    if args.user:
        print(f"wrote {path}; every user manager runs it at `systemctl --user daemon-reload` and at its start: "
              "pod definitions in ~/.config/containers/systemd/ become that user's units")
    else:
        print(f"wrote {path}; it runs at every `systemctl daemon-reload` and at boot")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m supervisor.generator.command SUBCOMMAND ...`: these subcommands without the rest
    of the podvisor command (for units and tests that must not depend on supervisor/cli.py)."""
    parser = argparse.ArgumentParser(prog="podvisor")
    register(parser.add_subparsers(dest="command_name", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    return run(args.handler, args)


if __name__ == "__main__":
    sys.exit(main())
