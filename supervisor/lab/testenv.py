"""A private, throw-away podman environment for tests, benchmarks and demos.

Everything podman stores (images, containers, its database, exit files, locks, network configs,
events) lives under directories we own, and podman is pointed at a monitor (`conmon_path`) through a
private containers.conf passed in `CONTAINERS_CONF`. That variable is inherited by the monitor and
by the exit command (`podman container cleanup`), so restarts use the same monitor — unlike
`podman --conmon`, which is not propagated to the exit command.

No third-party imports: this module is loaded by pytest, by bench/ and by the demo.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .images import BUSYBOX_IMAGE as BUSYBOX_IMAGE  # re-exported: tests name it with the store

# podman's host-wide defaults: a private environment must never manage these.
_SHARED_PATHS = ("/var/lib/containers", "/run/libpod", "/run/containers", "/var/run/libpod")

_SYSTEM_DIRS = {"/", "/tmp", "/var", "/var/tmp", "/run", "/var/lib", "/home", "/root", "/usr", "/etc",
                "/srv", "/opt", "/work"}

# Variables that would send podman elsewhere (a remote service, other config files) or make it talk
# to a systemd of the caller's: the monitor under test must see exactly what we configure.
_UNSET_VARS = ("NOTIFY_SOCKET", "CONTAINER_HOST", "CONTAINER_CONNECTION", "CONTAINERS_STORAGE_CONF",
               "CONTAINERS_REGISTRIES_CONF")


@dataclass
class PodmanEnv:
    """podman with private storage and a private containers.conf naming the monitor."""

    base: Path      # holds this env's containers.conf
    root: Path      # --root: images, layers, container bundles (ctr.log), the libpod DB
    runroot: Path   # --runroot: mounts, pid files, conmon.pid
    tmpdir: Path    # --tmpdir: exit files, events, file locks; podman records it in its DB
    conf: Path      # the containers.conf given in CONTAINERS_CONF
    monitor: str    # conmon_path: /usr/bin/conmon or podvisor-conmon
    podman: str = "podman"

    def argv(self, *args: str) -> list[str]:
        """`podman --root … --runroot … --tmpdir … <args>` (always the same tmpdir: see module doc)."""
        return [self.podman, "--root", str(self.root), "--runroot", str(self.runroot),
                "--tmpdir", str(self.tmpdir), *args]

    def environ(self) -> dict[str, str]:
        """The caller's environment plus CONTAINERS_CONF, minus anything that redirects podman."""
        env = {k: v for k, v in os.environ.items() if k not in _UNSET_VARS}
        env["CONTAINERS_CONF"] = str(self.conf)
        return env

    def shell_command(self, *args: str) -> str:
        """A /bin/sh command line running podman in this env (for tmux panes, scripts)."""
        unset = [arg for var in _UNSET_VARS for arg in ("-u", var)]
        return shlex.join(["env", *unset, f"CONTAINERS_CONF={self.conf}", *self.argv(*args)])

    def run(self, *args: str, check: bool = True, input: str | bytes | None = None,
            timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[Any]:
        """Run podman, capturing stdout and stderr: text, or bytes when `input` is bytes or
        text=False. stdin is /dev/null unless `input` is given."""
        kw.setdefault("text", not isinstance(input, bytes))
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        if input is None:
            kw.setdefault("stdin", subprocess.DEVNULL)
        # PODVISOR_TEST_TIME_SCALE: the check VM's emulation is 25x slower or worse
        timeout *= float(os.environ.get("PODVISOR_TEST_TIME_SCALE") or 1)
        proc = subprocess.run(self.argv(*args), input=input, timeout=timeout, check=False,
                              env=kw.pop("env", None) or self.environ(), **kw)
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout, proc.stderr)
        return proc

    def inspect(self, name: str, fmt: str) -> str:
        """`podman inspect --format FMT NAME`, stripped."""
        return str(self.run("inspect", "--format", fmt, name).stdout).strip()

    def remove_all(self) -> None:
        """Force-remove every pod and container of this storage (time-out 0: kill at once)."""
        self.run("pod", "rm", "--all", "--force", "--time", "0", check=False)
        self.run("rm", "--all", "--force", "--time", "0", check=False)

    def cleanup(self, storage: bool = True) -> None:
        """Remove all pods and containers; with `storage`, also unmount and delete the store.

        Deliberately not `podman system reset`: it deletes whatever tmpdir the DB recorded, which
        for a store once used without --tmpdir is the shared /run/libpod.
        """
        _refuse_shared(self.root, self.runroot, self.tmpdir)
        self.remove_all()
        if storage:
            dirs = (self.root, self.runroot, self.tmpdir, _networks_dir(self.root))
            unmount_under(*dirs)  # e.g. the private bind mount on <root>/overlay
            for d in dirs:
                shutil.rmtree(d, ignore_errors=True)
            # base may be a directory shared with other things: remove only what make_env wrote
            self.conf.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.base.rmdir()


def _networks_dir(root: Path) -> Path:
    return root.parent / (root.name + "-networks")


def _refuse_shared(*paths: Path) -> None:
    """Storage dirs get deleted by cleanup(): never podman's defaults or a system directory."""
    for p in paths:
        resolved = str(Path(p).resolve())
        if resolved in _SYSTEM_DIRS or any(resolved == s or resolved.startswith(s + "/")
                                           for s in _SHARED_PATHS):
            raise ValueError(f"refusing to use {resolved} as private podman storage")


def unmount_under(*dirs: Path) -> None:
    """Lazily unmount every mount point at or below `dirs`, deepest first."""
    prefixes = [str(Path(d).resolve()) for d in dirs]
    points = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            # field 5 is the mount point; spaces etc. are octal-escaped
            point = line.split()[4].encode().decode("unicode_escape")
            if any(point == p or point.startswith(p + "/") for p in prefixes):
                points.add(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], stderr=subprocess.DEVNULL, check=False)


def _toml_str(value: str | Path) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def make_env(base_dir: str | Path, monitor_path: str, *, root: str | Path | None = None,
             runroot: str | Path | None = None, tmpdir: str | Path | None = None,
             conmon_env: dict[str, str] | None = None, cgroup_manager: str = "cgroupfs") -> PodmanEnv:
    """Create `base_dir` with a containers.conf whose conmon is `monitor_path`.

    `conmon_env`: variables podman sets for the monitor (conmon_env_vars), e.g. podvisor-conmon's
    PODVISOR_CONMON_SERVER / PODVISOR_CONMON_SOCKET. `cgroup_manager`: "systemd" where a systemd
    manages the cgroups (the check VM: rootless through the user's manager and D-Bus).

    Storage defaults to base_dir/{root,runroot,tmp}; pass the same root/runroot/tmpdir to several
    envs (one per monitor) to share one store, so the image is imported once.
    """
    base = Path(base_dir).resolve()
    env = PodmanEnv(base=base,
                    root=Path(root or base / "root").resolve(),
                    runroot=Path(runroot or base / "runroot").resolve(),
                    tmpdir=Path(tmpdir or base / "tmp").resolve(),
                    conf=base / "containers.conf",
                    monitor=str(monitor_path))
    _refuse_shared(env.root, env.runroot, env.tmpdir)
    networks = _networks_dir(env.root)
    for d in (base, env.root, env.runroot, env.tmpdir, networks):
        d.mkdir(parents=True, exist_ok=True)
    # CONTAINERS_CONF replaces /usr/share and /etc containers.conf: only podman's built-in defaults
    # and these lines apply. Each line avoids a default that fails or leaks on this host.
    env.conf.write_text(f"""\
[containers]
# the built-in default raises nproc/nofile limits: not permitted here
default_ulimits = []
# nothing touches the host network unless asked for
netns = "none"
log_driver = "k8s-file"

[network]
# not /etc/containers/networks
network_config_dir = {_toml_str(networks)}

[engine]
conmon_path = [{_toml_str(monitor_path)}]
{_conmon_env_line(conmon_env)}# crun cannot create cgroups on this cgroup-v1 hybrid host
runtime = "runc"
cgroup_manager = {_toml_str(cgroup_manager)}
# no journald needed; the events log lands in our tmpdir
events_logger = "file"
# The default SHM lock segment /dev/shm/libpod_lock is host-wide, and a fresh store frees all of its
# locks on first use (podman's "refresh"), which would corrupt other stores. File locks live in tmpdir.
lock_type = "file"
""")
    return env


def _conmon_env_line(extra: dict[str, str] | None) -> str:
    if not extra:
        return ""
    # replaces podman's default, which is only this PATH
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", **extra}
    return "conmon_env_vars = [" + ", ".join(_toml_str(f"{k}={v}") for k, v in env.items()) + "]\n"


def ensure_busybox_image(env: PodmanEnv, name: str = BUSYBOX_IMAGE) -> str:
    """The busybox test image (built from the host's static busybox: no registry needed)."""
    from .images import ensure_image

    return ensure_image(env.run, name)
