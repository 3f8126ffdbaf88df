"""A throw-away unprivileged user running rootless podman, for tests (lab, not product).

`create_user` makes a user with its own home, subuid/subgid ranges and a private
XDG_RUNTIME_DIR (0700, its own: podman keeps its rootless pause process, locks and runroot
there); `remove_user` kills that user's processes by pid, removes the ranges, the user and
its directory. `RootlessPodmanEnv` is a `PodmanEnv` whose podman runs as that user, through
setpriv (the environment is built from scratch: root's HOME or XDG_* would send podman to
root's configuration).

No third-party imports: loaded by pytest and by bench/.
"""
from __future__ import annotations

import os
import pwd
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .testenv import PodmanEnv, make_env

SUBID_COUNT = 65536
# Used only when useradd does not allocate ranges itself (no SUB_UID_COUNT in login.defs): far
# above its SUB_UID_MIN..MAX (100000..600100000), one range per uid, so none overlap.
SUBID_BASE = 1_000_000_000


@dataclass
class TestUser:
    name: str
    uid: int
    gid: int
    home: Path
    runtime_dir: Path   # XDG_RUNTIME_DIR
    base: Path          # everything of this user lives below: removed with it
    subid_start: int = 0  # its subuid and subgid range: SUBID_COUNT ids from here

    @property
    def subid_range(self) -> str:
        return f"{self.subid_start}-{self.subid_start + SUBID_COUNT - 1}"

    def prefix(self) -> list[str]:
        """argv prefix running a program as this user, with its supplementary groups.

        In a mount namespace of its own whose mounts propagate as on a machine booted by
        systemd (here "/" is private: rootless podman warns about it on every call, and
        tests compare stderr)."""
        return ["unshare", "--mount", "--propagation", "shared",
                "setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups"]

    def environ(self) -> dict[str, str]:
        """A login-like environment of this user (nothing of the caller's but PATH and TERM)."""
        env = {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name,
               "XDG_RUNTIME_DIR": str(self.runtime_dir),
               "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
        if "TERM" in os.environ:
            env["TERM"] = os.environ["TERM"]
        return env

    def run(self, argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        """Run argv as this user from its home, capturing text output."""
        res: subprocess.CompletedProcess[str] = subprocess.run(  # type: ignore[call-overload]
            [*self.prefix(), *argv], env=self.environ(), cwd=self.home, capture_output=True, text=True,
            check=False, **kw)
        return res

    def pids(self) -> list[int]:
        """Processes running with this user's real uid (outside any user namespace)."""
        found = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    if d.stat().st_uid == self.uid:
                        found.append(int(d.name))
                except OSError:
                    continue
        return found


def create_user(base: Path, name: str) -> TestUser:
    """Create user `name` with home and runtime dir below `base` (made 0755; the directories
    above it must be searchable by others)."""
    base.mkdir(exist_ok=True)
    base.chmod(0o755)
    home = base / "home"
    subprocess.run(["useradd", "--home-dir", str(home), "--create-home", "--shell", "/bin/sh",
                    "--user-group", "--comment", "podvisor test user", name],
                   check=True, capture_output=True, text=True)
    pw = pwd.getpwnam(name)
    user = TestUser(name=name, uid=pw.pw_uid, gid=pw.pw_gid, home=home,
                    runtime_dir=base / "run", base=base)
    # useradd allocates ranges itself, under the lock on /etc/subuid and /etc/subgid, when
    # login.defs has SUB_UID_COUNT (Debian's has); otherwise usermod adds one (same lock)
    starts = [_subid_start(f, name) for f in ("/etc/subuid", "/etc/subgid")]
    if starts[0] is not None and starts[0] == starts[1]:
        user.subid_start = starts[0]
    else:
        user.subid_start = SUBID_BASE + user.uid * SUBID_COUNT
        subprocess.run(["usermod", "--add-subuids", user.subid_range, "--add-subgids",
                        user.subid_range, name], check=True, capture_output=True, text=True)
    user.runtime_dir.mkdir(mode=0o700)
    os.chown(user.runtime_dir, user.uid, user.gid)
    return user


def _subid_start(path: str, name: str) -> int | None:
    """Start of `name`'s first range of SUBID_COUNT ids in /etc/subuid or /etc/subgid."""
    with open(path) as f:
        for line in f:
            owner, _, rest = line.strip().partition(":")
            start, _, count = rest.partition(":")
            if owner == name and count == str(SUBID_COUNT):
                return int(start)
    return None


def remove_user(user: TestUser, timeout: float = 10) -> None:
    """Kill the user's processes (by pid: its pause process, monitors, containers), remove its
    subid ranges, the user and everything below its base directory."""
    deadline = time.monotonic() + timeout
    sig = signal.SIGTERM
    while (pids := user.pids()) and time.monotonic() < deadline + timeout:  # then give up: callers assert
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            sig = signal.SIGKILL
        time.sleep(0.1)
    subprocess.run(["usermod", "--del-subuids", user.subid_range, "--del-subgids", user.subid_range,
                    user.name], check=False, capture_output=True)
    subprocess.run(["userdel", user.name], check=False, capture_output=True)
    shutil.rmtree(user.base, ignore_errors=True)


@dataclass
class RootlessPodmanEnv(PodmanEnv):
    """podman run as `user`: rootless, in its user namespace, with private storage it owns."""

    user: TestUser | None = None

    def argv(self, *args: str) -> list[str]:
        assert self.user is not None
        return [*self.user.prefix(), *super().argv(*args)]

    def environ(self) -> dict[str, str]:
        assert self.user is not None
        return {**self.user.environ(), "CONTAINERS_CONF": str(self.conf)}

    # the user's own directory as the working directory: the caller's (a checkout in a 0700
    # home, say) may be one the user cannot enter, and podman then fails before doing anything
    def run(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[Any]:
        assert self.user is not None
        kw.setdefault("cwd", self.user.home)
        return super().run(*args, **kw)

    def shell_command(self, *args: str) -> str:
        assert self.user is not None
        env = [f"{k}={v}" for k, v in self.environ().items()]
        return f"cd {shlex.quote(str(self.user.home))} && " + \
            shlex.join([*self.user.prefix(), "env", "-i", *env, *super().argv(*args)])


def make_rootless_env(user: TestUser, key: str, monitor_path: str,
                      conmon_env: dict[str, str] | None = None, cgroup_manager: str = "cgroupfs") -> RootlessPodmanEnv:
    """A rootless env of `user` named `key`; all keys of one user share one image store.
    `conmon_env`, `cgroup_manager`: as for make_env (the monitor's PODVISOR_CONMON_* variables)."""
    storage = user.home / "storage"
    plain = make_env(user.home / key, monitor_path, root=storage / "root",
                     runroot=user.runtime_dir / "runroot", tmpdir=user.runtime_dir / "tmp",
                     conmon_env=conmon_env, cgroup_manager=cgroup_manager)
    for d in (user.home / key, storage, storage / "root", storage / "root-networks",
              user.runtime_dir / "runroot", user.runtime_dir / "tmp"):
        os.chown(d, user.uid, user.gid)
    os.chown(plain.conf, user.uid, user.gid)
    return RootlessPodmanEnv(base=plain.base, root=plain.root, runroot=plain.runroot,
                             tmpdir=plain.tmpdir, conf=plain.conf, monitor=plain.monitor,
                             user=user)
