"""A throwaway real-systemd sandbox for tests: systemd as PID 1 of a systemd-nspawn container.

The container's root is a copy-on-write view of the host's ``/`` (overlayfs with a tmpfs upper
layer), so the host's binaries are visible at the same paths and every write stays in RAM. The
running checkout (or venv) is bound in read-only at its own path, wherever it lives: below /tmp,
which is a fresh tmpfs inside, or in a 0700 home. Alternatively (``SandboxConfig.rootfs``) it
boots a whole OS tree of its own, e.g. a freshly debootstrapped Debian, as it is. The machine
runs a cgroup v1 hybrid layout without a host systemd, which forces a few unusual choices, all
verified by hand first (see the shared sandbox notes):

* nspawn mounts every v1 controller read-only unless a user namespace is used, and podman then
  cannot create cgroups. We hand nspawn a tmpfs ``/sys/fs/cgroup`` and bind one per-sandbox
  cgroup per controller onto it; nspawn leaves controllers that are already mount points alone.
* The launcher joins those cgroups before it becomes nspawn, so the container's cgroup
  namespace root is exactly the bound directory.
* nspawn's seccomp allow-list makes runc fail from units (``@keyring`` gets EPERM), so it runs
  with ``SYSTEMD_SECCOMP=0``.
* ``--register=no --keep-unit``: there is no host systemd/machined to talk to.
* ``--private-network``: netavark inside would otherwise create bridges and iptables rules in
  the host's network namespace.

State lives in a directory (``state.json``) so ``exec``/``stop`` work from another process, and
a later ``start`` can clean up after a crash.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from supervisor.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_NAME = "podvisor-sandbox"
STATE_BASE = Path("/run/podvisor-sandbox")
STORAGE_BASE = Path("/var/tmp/podvisor-sandbox")  # must be a real (ext4) fs: see _prepare_storage
NSPAWN_RUN = Path("/run/systemd/nspawn")
PROPAGATE_BASE = NSPAWN_RUN / "propagate"
CGROUP_ROOT = Path("/sys/fs/cgroup")
STATE_FILE = "state.json"
STORAGE_MARKER = ".podvisor-sandbox-storage"  # podman ignores unknown files in its graph root
INNER_STORAGE = "/var/lib/containers/storage"
FALLBACK_CONMON = "/usr/bin/conmon"
EXEC_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Host services that only slow the boot down or fail in a container; host-enabled units
# (see _host_enabled_units) are masked too, so new host services don't creep in.
NOISY_UNITS = (
    "postgresql.service", "postgresql@15-main.service", "nginx.service", "docker.service",
    "docker.socket", "containerd.service", "ssh.service", "cron.service", "e2scrub_reap.service",
    "sysstat.service", "podman.service", "podman.socket", "podman-restart.service",
    "podman-auto-update.service", "podman-auto-update.timer", "apt-daily.timer",
    "apt-daily-upgrade.timer", "man-db.timer", "e2scrub_all.timer", "fstrim.timer",
    "dpkg-db-backup.timer", "logrotate.timer",
)
# Enabled host units that belong to a working systemd and must stay.
_KEEP_UNIT = re.compile(r"^(systemd-|dbus|getty@|console-getty)")

# Paths that must never be used as (and so rm -rf'ed as) a state or storage directory.
_SYSTEM_DIRS = frozenset({
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32",
    "/media", "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr",
    "/var", "/var/tmp", "/var/lib", "/var/log", "/var/cache", "/run/systemd",
})
_SYSTEM_TREES = ("/usr/", "/etc/", "/proc/", "/sys/", "/dev/", "/boot/", "/var/lib/containers")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")  # also used as machine/host name
_STATE_ENTRIES = {STATE_FILE, f".{STATE_FILE}.tmp", "nspawn.log", "upper", "root", ".#root.lck"}


class SandboxError(UserError):
    """A sandbox operation failed; the message is meant for humans."""


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class Bind:
    """An extra bind mount from the host into the sandbox (nspawn --bind / --bind-ro)."""

    source: Path
    target: Path
    readonly: bool = False

    @classmethod
    def parse(cls, spec: str, readonly: bool = False) -> Bind:
        """``SRC`` or ``SRC:DST`` (absolute paths; nspawn uses ':' as separator)."""
        src, _, dst = spec.partition(":")
        bind = cls(Path(src), Path(dst or src), readonly)
        if not (bind.source.is_absolute() and bind.target.is_absolute()) or ":" in dst:
            raise SandboxError(f"bad bind {spec!r}: expected SRC[:DST] with absolute paths")
        return bind

    def nspawn_option(self) -> str:
        # nspawn splits at ':' and reads backslash escapes: "\\:" is a colon inside a path
        src, dst = (str(p).replace("\\", "\\\\").replace(":", "\\:") for p in (self.source, self.target))
        return f"--bind{'-ro' if self.readonly else ''}={src}:{dst}"


@dataclass(frozen=True)
class SandboxConfig:
    name: str = DEFAULT_NAME
    state_dir: Path | None = None  # default: STATE_BASE/<name>
    storage_dir: Path | None = None  # default: STORAGE_BASE/<name>/storage
    boot_timeout: float = 120.0
    stop_timeout: float = 30.0
    binds: tuple[Bind, ...] = ()
    keep_storage: bool = False  # keep podman's image store for the next boot
    conmon_path: str | None = None  # default: default_conmon_path()
    mask: tuple[str, ...] | None = None  # units masked inside; default: default_mask() (rootfs: none)
    # Boot this OS tree instead of the overlay of /: used in place (writes land in it) and left as
    # it is - no containers.conf, masks (unless `mask`), checkout or venv binds are added, so it
    # behaves as a machine of its own would. The caller owns (and removes) the directory.
    rootfs: Path | None = None


@dataclass
class CgroupDir:
    """One per-sandbox cgroup on the host, and where nspawn binds it (None: not bound)."""

    path: str
    target: str | None


@dataclass
class SandboxState:
    """What a later process needs to find, use and tear down the sandbox (state.json)."""

    name: str
    storage_dir: str
    keep_storage: bool
    stop_timeout: float
    phase: str = "starting"  # -> "running"
    cgroups: list[CgroupDir] = field(default_factory=list)
    nspawn_pid: int = 0
    nspawn_start: int = 0  # /proc/<pid>/stat starttime: tells a reused PID apart
    systemd_pid: int = 0
    boot_seconds: float = 0.0
    image_lock: str = ""  # nspawn's global lock file for our root; left behind if nspawn is killed

    @classmethod
    def from_json(cls, text: str) -> SandboxState:
        raw = json.loads(text)
        raw["cgroups"] = [CgroupDir(**c) for c in raw.get("cgroups", [])]
        return cls(**raw)


@dataclass(frozen=True)
class BootReport:
    system_state: str  # "running" or "degraded"
    seconds_to_systemd: float  # until systemd was exec'd as the container's PID 1
    seconds_to_ready: float  # until is-system-running said running/degraded
    failed_units: tuple[str, ...] = ()


@dataclass(frozen=True)
class Status:
    state: str  # "running" | "starting" | "stopping" | "broken" | "stopped"
    nspawn_pid: int = 0
    systemd_pid: int = 0
    detail: str = ""


# --------------------------------------------------------------------------- defaults


def default_conmon_path() -> str:
    """Our monitor from the running venv (checkout_binds() shows it inside at the same path)."""
    ours = Path(sys.executable).parent / "podvisor-conmon"  # no resolve(): venv bin/ is a symlink farm
    if not os.access(ours, os.X_OK):
        log.warning("%s not found; the sandbox uses %s", ours, FALLBACK_CONMON)
        return FALLBACK_CONMON
    return str(ours)


def running_checkout() -> Path | None:
    """The checkout whose venv runs this Python (scripts/install.sh puts it at CHECKOUT/.venv)."""
    parent = Path(sys.prefix).parent
    return parent if (parent / "setup.cfg").is_file() and (parent / "supervisor").is_dir() else None


def checkout_binds() -> tuple[Bind, ...]:
    """Read-only binds of the running checkout and venv at their own paths.

    Always bound, not left to the overlay: inside, /tmp and /run are fresh tmpfs that would hide
    a checkout there, and host files changed after the boot would show only until copied up."""
    prefix, checkout = Path(sys.prefix), running_checkout()
    binds = [Bind(checkout, checkout, readonly=True)] if checkout else []
    if checkout is None or not prefix.is_relative_to(checkout):
        binds.append(Bind(prefix, prefix, readonly=True))
    return tuple(binds)


def default_mask() -> tuple[str, ...]:
    return tuple(sorted(set(NOISY_UNITS) | set(_host_enabled_units())))


def _host_enabled_units() -> Iterator[str]:
    for link in Path("/etc/systemd/system").glob("*.wants/*"):
        if link.suffix in (".service", ".socket", ".timer") and not _KEEP_UNIT.match(link.name):
            yield link.name


# --------------------------------------------------------------------------- small helpers


def _run(argv: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a helper command, capturing its output; raise SandboxError with its stderr."""
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SandboxError(f"{argv[0]}: {e}") from e
    if res.returncode != 0:
        raise SandboxError(f"{' '.join(argv)}: exit {res.returncode}: {res.stderr.strip()}")
    return res


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, starttime) of a process, None if it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    rest = raw[raw.rindex(")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[19])


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _alive(pid: int, starttime: int | None = None) -> bool:
    """Exists, is no zombie (a killed nspawn may linger as one) and, if given, is the same process."""
    st = _proc_stat(pid) if pid > 0 else None
    return st is not None and st[0] not in ("Z", "X") and (starttime is None or st[2] == starttime)


def _children(pid: int, comm: str) -> list[int]:
    """PIDs of the live children of `pid` named `comm` (no /proc/.../children on this kernel)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _proc_stat(int(entry.name))
            if st and st[1] == pid and st[0] != "Z" and _comm(int(entry.name)) == comm:
                found.append(int(entry.name))
    return found


def _mount_points() -> list[str]:
    """Mount points of this mount namespace (octal escapes decoded)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        raw = line.split()[4]
        points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), raw))
    return points


def _mounts_below(path: Path) -> list[str]:
    """Mount points at or below `path`, newest first: the unmount order (the overlay before its upper tmpfs)."""
    prefix = str(path).rstrip("/") + "/"
    return [m for m in reversed(_mount_points()) if m == str(path) or m.startswith(prefix)]


def _is_overlay_mount(path: Path) -> bool:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        if pre.split()[4] == str(path) and post.split()[0] == "overlay":
            return True
    return False


def _check_disposable_dir(path: Path, what: str) -> Path:
    """Guard rail: `path` will be removed recursively at stop, so it must not be a system dir."""
    if not path.is_absolute():
        raise SandboxError(f"{what} {path} must be an absolute path")
    norm = Path(os.path.normpath(path))
    real = Path(os.path.realpath(norm))
    for p in {str(norm), str(real)}:
        if len(Path(p).parts) < 3 or p in _SYSTEM_DIRS or p.startswith(_SYSTEM_TREES):
            raise SandboxError(f"refusing to use {p} as {what}: it is (or is inside) a system directory")
    return norm


def _remove_tree(path: Path, what: str) -> None:
    """rm -rf, but never across a mount point (the overlay of / lives in the state dir)."""
    if not path.exists():
        return
    _check_disposable_dir(path, what)
    if left := _mounts_below(path):
        raise SandboxError(f"not removing {what} {path}: still mounted: {', '.join(left)}")
    shutil.rmtree(path)


def _is_locked(path: Path) -> bool:
    try:
        with _dir_lock(path, ""):
            return False
    except SandboxError:
        return True
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def _dir_lock(path: Path, name: str) -> Iterator[None]:
    """Exclusive, non-blocking lock so two processes never start/stop the same sandbox at once."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SandboxError(f"sandbox {name!r} is busy: another process is starting or stopping it") from None
        yield
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- cgroups


def _self_cgroups() -> dict[frozenset[str], str]:
    """/proc/self/cgroup as {hierarchy's controllers (or {"name=x"}, or {} for v2): path}."""
    result = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        result[frozenset(filter(None, ctrls.split(",")))] = path.rstrip("/")
    return result


def plan_cgroups(name: str) -> list[CgroupDir]:
    """One cgroup per hierarchy, nested below the caller's own, so accounting still adds up.

    Controller hierarchies are bound into the sandbox; name=systemd and the cgroup2 tree are
    only joined (nspawn puts its payload/supervisor cgroups below them itself).
    """
    mine = _self_cgroups()
    plan = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, mnt, fstype, opts, *_ = line.split()
        if not mnt.startswith(f"{CGROUP_ROOT}/"):
            continue
        if fstype == "cgroup2":
            key: frozenset[str] = frozenset()
        elif fstype == "cgroup":
            key = next((k for k in mine if k and k <= set(opts.split(","))), frozenset({"?"}))
        else:
            continue
        if key not in mine:
            continue
        named = fstype == "cgroup2" or any(c.startswith("name=") for c in key)
        target = None if named else f"{CGROUP_ROOT}/{Path(mnt).name}"
        plan.append(CgroupDir(f"{mnt}{mine[key]}/{name}", target))
    if not any(c.target for c in plan):
        raise SandboxError("no cgroup v1 controller hierarchies found: only cgroup v1/hybrid hosts are supported")
    return plan


def _create_cgroup(cg: CgroupDir) -> None:
    path = Path(cg.path)
    path.mkdir()
    if (path / "cpuset.cpus").exists():  # v1 cpuset starts empty, and then no task may join
        for knob in ("cpuset.cpus", "cpuset.mems"):
            (path / knob).write_text((path.parent / knob).read_text())


def _cgroup_pids(cgroups: Sequence[CgroupDir]) -> set[int]:
    pids: set[int] = set()
    for cg in cgroups:
        for dirpath, _, files in os.walk(cg.path):
            if "cgroup.procs" in files:
                with contextlib.suppress(OSError):
                    pids.update(int(p) for p in Path(dirpath, "cgroup.procs").read_text().split())
    return pids


def _remove_cgroup(cg: CgroupDir, timeout: float = 3.0) -> bool:
    """rmdir depth-first everything systemd/podman created below our cgroup, then the cgroup.

    Retried for a moment: a cgroup stays busy until its last killed task is fully gone.
    """
    deadline = time.monotonic() + timeout
    while True:
        for dirpath, _, _ in os.walk(cg.path, topdown=False):
            with contextlib.suppress(OSError):  # busy for now, or already gone
                os.rmdir(dirpath)
        if not os.path.exists(cg.path) or time.monotonic() > deadline:
            return not os.path.exists(cg.path)
        time.sleep(0.05)


def _validate_cgroup(cg: CgroupDir, name: str) -> None:
    """state.json is re-read by later processes: only ever touch our own cgroup dirs."""
    p = Path(os.path.normpath(cg.path))
    if str(p) != cg.path or not p.is_relative_to(CGROUP_ROOT) or p.name != name or len(p.parts) < 6:
        raise SandboxError(f"state file lists a foreign cgroup {cg.path!r}; refusing to touch it")


# --------------------------------------------------------------------------- the sandbox


class Sandbox:
    """A named sandbox. start/stop/exec/run/status; several processes may use the same name."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        name = self.config.name
        if not _NAME_RE.match(name):
            raise SandboxError(f"bad sandbox name {name!r}: use letters, digits and '-', at most 63 chars")
        self.name = name
        self.state_dir = _check_disposable_dir(self.config.state_dir or STATE_BASE / name, "state dir")
        self.storage_dir = _check_disposable_dir(
            self.config.storage_dir or STORAGE_BASE / name / "storage", "storage dir")
        if self.state_dir.is_relative_to(self.storage_dir) or self.storage_dir.is_relative_to(self.state_dir):
            raise SandboxError("state dir and storage dir must not contain each other")
        self._nspawn: subprocess.Popen[bytes] | None = None  # set when this process started it
        self._storage_fd: int | None = None  # flock'ed storage dir, handed on to nspawn

    # ---- public API

    def start(self) -> BootReport:
        """Boot the sandbox; returns once systemd is running (or degraded). Cleans up on failure."""
        _require_root()
        nspawn = _require_tool("systemd-nspawn", "systemd-container")
        _require_tool("nsenter", "util-linux")
        t0 = time.monotonic()
        if self.state_dir.exists():
            self._clear_stale()
        self._check_storage_dir()
        try:
            self.state_dir.mkdir(parents=True, mode=0o700)
        except FileExistsError:
            raise SandboxError(f"sandbox {self.name!r} is busy: {self.state_dir} appeared meanwhile") from None
        with _dir_lock(self.state_dir, self.name):
            state = SandboxState(self.name, str(self.storage_dir), self.config.keep_storage,
                                 self.config.stop_timeout)
            try:
                return self._boot(state, nspawn, t0)
            except BaseException:
                log.warning("start of sandbox %r failed, cleaning up", self.name)
                self._release_storage()
                self._teardown(state)
                raise
            finally:
                self._release_storage()  # from now on only nspawn holds the storage lock

    def stop(self, keep_storage: bool | None = None) -> float:
        """Halt and remove everything; a no-op when there is nothing. Returns the seconds taken."""
        t0 = time.monotonic()
        if not self.state_dir.exists():
            return 0.0
        _require_root()
        with _dir_lock(self.state_dir, self.name):
            state = self._load_state()
            if keep_storage is not None:
                state.keep_storage = keep_storage
            self._teardown(state)
        return time.monotonic() - t0

    def status(self) -> Status:
        if not self.state_dir.exists():
            return Status("stopped")
        try:
            state = self._load_state()
        except SandboxError as e:
            return Status("broken", detail=str(e))
        np, sp = state.nspawn_pid, state.systemd_pid
        if _is_locked(self.state_dir):  # another process is in the middle of start or stop
            return Status("starting" if state.phase == "starting" else "stopping", np, sp)
        if state.phase == "running" and _alive(np, state.nspawn_start) and _alive(sp):
            return Status("running", np, sp)
        if not _alive(np, state.nspawn_start):
            why = "systemd-nspawn is gone"
        elif state.phase != "running":
            why = "the process starting it died during the boot"
        else:
            why = "systemd is gone"
        left = len(_cgroup_pids(state.cgroups))
        return Status("broken", np, sp, f"{why}, {left} processes left; run stop")

    def command(self, cmd: Sequence[str], term: str | None = None) -> tuple[list[str], dict[str, str]]:
        """argv and environment that run `cmd` inside (all namespaces, clean environment)."""
        st = self.status()
        if st.state != "running":
            detail = f": {st.detail}" if st.detail else ""
            raise SandboxError(f"sandbox {self.name!r} is not running ({st.state}{detail})")
        return self._nsenter_argv(st.systemd_pid, cmd), self._inner_env(term)

    def exec(self, cmd: Sequence[str], *, timeout: float | None = None) -> int:
        """Run `cmd` inside with our stdin/stdout/stderr; returns its exit status (128+N on signal N)."""
        argv, env = self.command(cmd, os.environ.get("TERM"))
        rc = subprocess.run(argv, env=env, timeout=timeout).returncode
        return 128 - rc if rc < 0 else rc

    def run(self, cmd: Sequence[str], *, input: str | None = None, check: bool = False,
            timeout: float | None = 60) -> subprocess.CompletedProcess[str]:
        """Run `cmd` inside and capture its output (text). `check` raises SandboxError on failure."""
        argv, env = self.command(cmd)
        res = subprocess.run(argv, env=env, input=input, capture_output=True, text=True,
                             timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)
        if check and res.returncode != 0:
            raise SandboxError(f"{' '.join(cmd)} (in sandbox): exit {res.returncode}: {res.stderr.strip()}")
        return res

    def podman(self, *args: str, check: bool = True, input: bytes | str | None = None,
               timeout: float | None = 300) -> subprocess.CompletedProcess[bytes]:
        """`podman ARGS` inside, bytes in and out (e.g. `podman import -` of an image tar)."""
        argv, env = self.command(["podman", *args])
        data = input.encode() if isinstance(input, str) else input
        res = subprocess.run(argv, env=env, input=data, capture_output=True, timeout=timeout,
                             stdin=None if data is not None else subprocess.DEVNULL)
        if check and res.returncode != 0:
            raise SandboxError(f"podman {' '.join(args[:3])} (in sandbox): exit {res.returncode}: "
                               f"{res.stderr.decode(errors='replace').strip()}")
        return res

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- start

    def _clear_stale(self) -> None:
        """Leftovers of a crashed run are removed; a live sandbox of the same name is an error."""
        with _dir_lock(self.state_dir, self.name):
            state = self._load_state()
            # phase "starting" with nobody holding the lock: the starting process died; that is stale too
            if state.phase == "running" and _alive(state.nspawn_pid, state.nspawn_start):
                raise SandboxError(f"sandbox {self.name!r} is already running (systemd-nspawn pid "
                                   f"{state.nspawn_pid}); stop it first: podvisor sandbox stop --name {self.name}")
            log.warning("sandbox %r: removing stale state left in %s", self.name, self.state_dir)
            self._teardown(state)

    def _boot(self, state: SandboxState, nspawn: str, t0: float) -> BootReport:
        self._save_state(state)
        self._prepare_storage()
        if self.config.rootfs is None:
            root = self._prepare_rootfs()
            self._configure_rootfs(root)
        else:
            root = self._own_rootfs(self.config.rootfs)
            self._mask_units(root, self.config.mask or ())
        st = root.stat()  # nspawn names its lock after the image's device and inode
        state.image_lock = str(NSPAWN_RUN / "locks" / f"inode-{st.st_dev}:{st.st_ino}")
        cgroups = plan_cgroups(self.name)
        if taken := [cg.path for cg in cgroups if os.path.exists(cg.path)]:  # never adopt (and later kill) those
            raise SandboxError(f"cgroup {taken[0]} already exists: is another sandbox named {self.name!r} "
                               "running with a different state dir?")
        state.cgroups = cgroups
        self._save_state(state)  # recorded before creation: a crash right after still cleans up
        for cg in state.cgroups:
            _create_cgroup(cg)
        self._launch(state, nspawn, root)
        state.systemd_pid = self._wait_for_systemd(state, t0)
        t_systemd = time.monotonic() - t0
        self._save_state(state)
        system_state = self._wait_until_booted(state, t0)
        state.boot_seconds = time.monotonic() - t0
        state.phase = "running"
        self._save_state(state)
        failed: tuple[str, ...] = ()
        if system_state == "degraded":
            # not self.run(): status() reads "stopping" while this start still holds the lock
            argv = self._nsenter_argv(state.systemd_pid, ["systemctl", "--failed", "--plain", "--no-legend"])
            out = subprocess.run(argv, env=self._inner_env(), capture_output=True, text=True,
                                 stdin=subprocess.DEVNULL, timeout=30).stdout
            failed = tuple(line.split()[0] for line in out.splitlines() if line.strip())
            log.warning("sandbox %r is degraded; failed units: %s", self.name, " ".join(failed))
        return BootReport(system_state, t_systemd, state.boot_seconds, failed)

    def _prepare_rootfs(self) -> Path:
        """Copy-on-write view of / with the upper layer in RAM (a tmpfs, which also keeps the
        overlay's upper/work dirs off the lower layer's filesystem)."""
        upper, root = self.state_dir / "upper", self.state_dir / "root"
        upper.mkdir()
        root.mkdir()
        _run(["mount", "-n", "-t", "tmpfs", "-o", "mode=0755", f"pvsbx-{self.name}", str(upper)])
        (upper / "u").mkdir()
        (upper / "w").mkdir()
        _run(["mount", "-n", "-t", "overlay", f"pvsbx-{self.name}", "-o",
              f"lowerdir=/,upperdir={upper}/u,workdir={upper}/w", str(root)])
        if not _is_overlay_mount(root):  # never write "inside" unless it really is the overlay
            raise SandboxError(f"{root} is not an overlay mount after mounting it")
        return root

    def _configure_rootfs(self, root: Path) -> None:
        """Configuration inside; every write lands in the tmpfs upper layer, deletes become whiteouts."""
        conf = root / "etc/containers"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "containers.conf").write_text(_containers_conf(self.config.conmon_path or default_conmon_path()))
        # the host's storage.conf points at host storage; host drop-ins would override our settings;
        # host network definitions must not leak in
        (conf / "storage.conf").unlink(missing_ok=True)
        for sub in ("containers.conf.d", "networks"):
            if (conf / sub).is_dir():
                shutil.rmtree(conf / sub)
        (conf / "networks").mkdir()
        journald = root / "etc/systemd/journald.conf.d"
        journald.mkdir(parents=True, exist_ok=True)
        # the journal in /run (a fresh tmpfs) only: no copy-up of the host's /var/log/journal
        (journald / "90-podvisor-sandbox.conf").write_text("[Journal]\nStorage=volatile\n")
        self._mask_units(root, self.config.mask if self.config.mask is not None else default_mask())
        (root / "etc/hostname").write_text(self.name + "\n")

    @staticmethod
    def _mask_units(root: Path, units: Sequence[str]) -> None:
        for unit in units:
            link = root / "etc/systemd/system" / unit
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to("/dev/null")

    @staticmethod
    def _own_rootfs(path: Path) -> Path:
        """A caller's OS tree: it must have a systemd to boot, and must not be the host's /."""
        root = Path(os.path.realpath(path))
        if not root.is_absolute() or root == Path("/") or not root.is_dir():
            raise SandboxError(f"rootfs {path}: expected a directory holding an OS tree (not /)")
        if not any((root / p).exists() for p in ("usr/lib/systemd/systemd", "lib/systemd/systemd")):
            raise SandboxError(f"rootfs {path} has no /usr/lib/systemd/systemd to boot: install systemd-sysv in it")
        return root

    def _check_storage_dir(self) -> None:
        if not _is_our_storage(self.storage_dir):
            raise SandboxError(f"storage dir {self.storage_dir} is not empty and was not made by a podvisor "
                               "sandbox; refusing to use it (it is deleted at stop)")

    def _prepare_storage(self) -> None:
        """Create and lock the storage dir. The locked fd is inherited by nspawn, so the lock
        lasts exactly as long as the sandbox and no other sandbox can use (or delete) it."""
        # podman's overlay driver cannot use overlayfs as its upper layer: a host ext4 dir it is
        self.storage_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.storage_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SandboxError(f"storage dir {self.storage_dir} is in use by another running sandbox") from None
        self._storage_fd = fd
        (self.storage_dir / STORAGE_MARKER).touch()

    def _release_storage(self) -> None:
        if self._storage_fd is not None:
            os.close(self._storage_fd)
            self._storage_fd = None

    def _nspawn_argv(self, nspawn: str, root: Path, cgroups: Sequence[CgroupDir]) -> list[str]:
        argv = [nspawn, "-D", str(root), "--boot", "--machine", self.name,
                "--register=no", "--keep-unit", "--link-journal=no", "--console=pipe",
                "--kill-signal=SIGRTMIN+3", "--capability=all", "--private-network",
                "--tmpfs=/sys/fs/cgroup:mode=755",
                f"--bind={self.storage_dir}:{INNER_STORAGE}"]
        argv += [f"--bind={cg.path}:{cg.target}" for cg in cgroups if cg.target]
        binds = self.config.binds if self.config.rootfs else (*checkout_binds(), *self.config.binds)
        argv += [b.nspawn_option() for b in dict.fromkeys(binds)]
        return argv

    def _launch(self, state: SandboxState, nspawn: str, root: Path) -> None:
        procs_files = [f"{cg.path}/cgroup.procs" for cg in state.cgroups]

        def join_cgroups() -> None:  # runs in the child between fork and exec: os calls only
            for f in procs_files:
                fd = os.open(f, os.O_WRONLY)
                try:
                    os.write(fd, b"0")  # "0" = the writing process itself
                finally:
                    os.close(fd)

        # a clean environment: no caller's SYSTEMD_* knobs change nspawn's behaviour by accident
        env = {"PATH": EXEC_PATH, "LANG": "C.UTF-8", "SYSTEMD_SECCOMP": "0"}
        with open(self.state_dir / "nspawn.log", "wb") as logfile:
            self._nspawn = subprocess.Popen(
                self._nspawn_argv(nspawn, root, state.cgroups), env=env, stdin=subprocess.DEVNULL,
                stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True,
                pass_fds=(self._storage_fd,) if self._storage_fd is not None else (),
                preexec_fn=join_cgroups)
        st = _proc_stat(self._nspawn.pid)
        state.nspawn_pid, state.nspawn_start = self._nspawn.pid, st[2] if st else 0
        self._save_state(state)

    def _wait_for_systemd(self, state: SandboxState, t0: float) -> int:
        """Host PID of the container's init: nspawn's child once it has exec'd systemd."""
        while True:
            self._check_nspawn(state)
            if kids := _children(state.nspawn_pid, "systemd"):
                return kids[0]
            self._check_deadline(t0, "systemd to start")
            time.sleep(0.02)

    def _wait_until_booted(self, state: SandboxState, t0: float) -> str:
        argv = self._nsenter_argv(state.systemd_pid, ["systemctl", "is-system-running"])
        current = "?"
        while True:
            self._check_nspawn(state)
            res = subprocess.run(argv, env=self._inner_env(), capture_output=True, text=True,
                                 stdin=subprocess.DEVNULL, timeout=30)
            current = res.stdout.strip() or current
            if current in ("running", "degraded"):
                return current
            self._check_deadline(t0, f"the boot to finish (system state: {current})")
            time.sleep(0.1)

    def _check_nspawn(self, state: SandboxState) -> None:
        if not _alive(state.nspawn_pid, state.nspawn_start):
            raise SandboxError(f"systemd-nspawn exited during startup:\n{self._log_tail()}")

    def _check_deadline(self, t0: float, what: str) -> None:
        if time.monotonic() - t0 > self.config.boot_timeout:
            timeout = self.config.boot_timeout
            raise SandboxError(f"timeout after {timeout:g}s waiting for {what}:\n{self._log_tail()}")

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = (self.state_dir / "nspawn.log").read_text(errors="replace")
        except FileNotFoundError:
            text = ""
        return "\n".join(text.splitlines()[-lines:]) or "(systemd-nspawn printed nothing)"

    # ---- exec

    @staticmethod
    def _nsenter_argv(systemd_pid: int, cmd: Sequence[str]) -> list[str]:
        if not cmd:
            raise SandboxError("no command given")
        nsenter = shutil.which("nsenter") or "/usr/bin/nsenter"
        # --root/--wd: the container's / as root and cwd, whatever the mount namespace's root is
        return [nsenter, "--target", str(systemd_pid), "--all", "--root", "--wd", "--", *cmd]

    @staticmethod
    def _inner_env(term: str | None = None) -> dict[str, str]:
        # nsenter passes its environment on; cmd is looked up in this PATH inside the container
        return {"PATH": EXEC_PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": term or "dumb"}

    # ---- stop

    def _teardown(self, state: SandboxState) -> None:
        """Orderly halt, then remove processes, cgroups, mounts and directories, in that order."""
        for cg in state.cgroups:
            _validate_cgroup(cg, self.name)
        errors: list[str] = []
        self._halt(state)
        self._kill_leftovers(state.cgroups)
        errors += [f"cgroup {cg.path} still exists" for cg in state.cgroups if not _remove_cgroup(cg)]
        errors += self._unmount_all()
        # nspawn leaves this directory behind when /run is not a tmpfs ("Attempted to remove disk file system")
        with contextlib.suppress(SandboxError, OSError):
            _remove_tree(PROPAGATE_BASE / self.name, "nspawn propagate dir")
        if state.image_lock.startswith(f"{NSPAWN_RUN}/locks/inode-"):  # only after a killed nspawn
            Path(state.image_lock).unlink(missing_ok=True)
        for shared in (NSPAWN_RUN / "propagate", NSPAWN_RUN / "locks", NSPAWN_RUN):
            with contextlib.suppress(OSError):  # nspawn creates these; other nspawns may still use them
                shared.rmdir()
        if not state.keep_storage:
            errors += _attempt(lambda: _remove_storage(Path(state.storage_dir)))
            self._rmdir_default_parents(Path(state.storage_dir), STORAGE_BASE)
        if not errors:
            errors += _attempt(lambda: _remove_tree(self.state_dir, "state dir"))
            self._rmdir_default_parents(self.state_dir, STATE_BASE)
        if errors:
            raise SandboxError(f"sandbox {self.name!r} was not removed completely:\n  " + "\n  ".join(errors))

    def _halt(self, state: SandboxState) -> None:
        """SIGTERM makes nspawn send SIGRTMIN+3 (halt) to systemd; a second one ends it at once.

        Only a fully booted systemd gets the orderly halt: before it has installed its handlers,
        the signal is dropped (a namespace's init ignores signals it has no handler for) and nspawn
        would wait for the whole stop timeout.
        """
        pid, start = state.nspawn_pid, state.nspawn_start
        if not (_alive(pid, start) and _comm(pid) == "systemd-nspawn"):
            pass
        elif state.phase != "running":
            self._signal_and_wait(pid, start, signal.SIGKILL, 5.0)  # the leftovers are killed next
        elif not self._signal_and_wait(pid, start, signal.SIGTERM, state.stop_timeout):
            log.warning("sandbox %r: halt took longer than %gs, terminating", self.name, state.stop_timeout)
            if not self._signal_and_wait(pid, start, signal.SIGTERM, 5.0):
                self._signal_and_wait(pid, start, signal.SIGKILL, 5.0)
        self._reap()

    def _signal_and_wait(self, pid: int, start: int, sig: int, timeout: float) -> bool:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        return self._wait_exit(pid, start, timeout)

    def _wait_exit(self, pid: int, start: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._nspawn is not None and self._nspawn.poll() is not None:
                return True
            if not _alive(pid, start):
                return True
            time.sleep(0.02)
        return False

    def _reap(self) -> None:
        """Collect nspawn's exit status if this process started it (elsewhere its parent does)."""
        if self._nspawn is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                # 0 = the container halted cleanly
                log.info("sandbox %r: systemd-nspawn exited with %s", self.name, self._nspawn.wait(timeout=5))
            self._nspawn = None

    def _kill_leftovers(self, cgroups: Sequence[CgroupDir]) -> None:
        """Only this sandbox's processes live in these cgroups (e.g. systemd after nspawn was killed)."""
        deadline = time.monotonic() + 10
        while (pids := _cgroup_pids(cgroups)) and time.monotonic() < deadline:
            log.info("sandbox %r: killing leftover processes %s", self.name, sorted(pids))
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)

    def _unmount_all(self) -> list[str]:
        errors = []
        for point in _mounts_below(self.state_dir):
            if subprocess.run(["umount", "-n", point], capture_output=True).returncode != 0:
                time.sleep(0.3)  # the overlay can stay busy for a moment after the last process exits
                if subprocess.run(["umount", "-n", point], capture_output=True).returncode != 0:
                    log.warning("sandbox %r: lazy unmount of %s", self.name, point)
                    subprocess.run(["umount", "-n", "-l", point], capture_output=True)
        errors += [f"still mounted: {m}" for m in _mounts_below(self.state_dir)]
        return errors

    def _rmdir_default_parents(self, path: Path, base: Path) -> None:
        """Remove now-empty parents up to our default base dir; never a caller's own dirs."""
        for parent in path.parents:
            if not parent.is_relative_to(base):
                break
            with contextlib.suppress(OSError):
                parent.rmdir()

    # ---- state file

    def _empty_state(self) -> SandboxState:
        return SandboxState(self.name, str(self.storage_dir), self.config.keep_storage, self.config.stop_timeout)

    def _load_state(self) -> SandboxState:
        """The recorded state; refuses a state dir with anything in it that we would not have made
        (everything in it is deleted at stop)."""
        if unknown := {p.name for p in self.state_dir.iterdir()} - _STATE_ENTRIES:
            raise SandboxError(f"{self.state_dir} is not a podvisor sandbox state dir (it holds "
                               f"{', '.join(sorted(unknown)[:5])}); refusing to touch it")
        path = self.state_dir / STATE_FILE
        if not path.exists():
            return self._empty_state()
        try:
            state = SandboxState.from_json(path.read_text())
        except (ValueError, TypeError, KeyError) as e:
            raise SandboxError(f"unreadable state file {path}: {e}") from e
        if state.name != self.name:
            raise SandboxError(f"state file {path} belongs to sandbox {state.name!r}, not {self.name!r}")
        _check_disposable_dir(Path(state.storage_dir), "storage dir")
        return state

    def _save_state(self, state: SandboxState) -> None:
        tmp = self.state_dir / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(dataclasses.asdict(state), indent=1))
        tmp.replace(self.state_dir / STATE_FILE)


def _is_our_storage(path: Path) -> bool:
    """Guard rail: the storage dir is deleted at stop, so only adopt an empty one or one we made."""
    return not path.is_dir() or (path / STORAGE_MARKER).exists() or not any(path.iterdir())


def _remove_storage(path: Path) -> None:
    if not _is_our_storage(path):
        raise SandboxError(f"not removing storage dir {path}: it has no {STORAGE_MARKER} marker")
    if path.exists() and _is_locked(path):
        log.warning("not removing storage dir %s: another running sandbox uses it", path)
        return
    _remove_tree(path, "storage dir")


def _attempt(action: Callable[[], None]) -> list[str]:
    try:
        action()
    except (SandboxError, OSError) as e:
        return [str(e)]
    return []


def _containers_conf(conmon_path: str) -> str:
    return f"""\
# written by podvisor's sandbox; exists only in the sandbox's RAM layer
[containers]
# no CAP_SYS_RESOURCE on these hosts: podman's default nofile/nproc ulimits would fail
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "systemd"
events_logger = "journald"
conmon_path = [{json.dumps(conmon_path)}]
"""


def _require_root() -> None:
    if os.geteuid() != 0:
        raise SandboxError("the sandbox needs root (mounts, cgroups, namespaces): run as root")


def _require_tool(tool: str, package: str) -> str:
    path = shutil.which(tool, path=os.environ.get("PATH", "") + ":" + EXEC_PATH)
    if path is None:
        raise SandboxError(f"{tool} not found: install the {package} package (apt-get install {package})")
    return path

