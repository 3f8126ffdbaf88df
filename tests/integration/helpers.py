"""Helpers for the integration tests: monitor identity, waiting, exit-file capture, tmux."""
from __future__ import annotations

import ctypes
import os
import re
import select
import shlex
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from supervisor.lab.testenv import PodmanEnv

T = TypeVar("T")

# One k8s-file record: local time with a numeric offset and nanoseconds, stream, partial flag.
K8S_RECORD = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}[+-]\d\d:\d\d) (stdout|stderr) ([PF]) (.*)$", re.DOTALL)


def wait_until(predicate: Callable[[], T | None], timeout: float = 10, interval: float = 0.05,
               what: str = "condition") -> T:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def proc_state(pid: int) -> str | None:
    """The state letter of /proc/<pid>/stat (R, S, Z, …), or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def pid_alive(pid: int) -> bool:
    """True if the process exists and is not a zombie (PID 1 here reaps orphans only lazily)."""
    return proc_state(pid) not in (None, "Z", "X")


def ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def assert_monitored(env: PodmanEnv, name: str) -> int:
    """Assert the running container `name` is watched by env.monitor; return the monitor's pid.

    podman silently falls back to /usr/bin/conmon when a monitor's `--version` is not acceptable,
    so "the test passed" proves nothing unless the live process is the one we configured.
    """
    pid = int(env.inspect(name, "{{.State.ConmonPid}}"))
    assert pid > 0 and pid_alive(pid), f"{name}: monitor pid {pid} is not alive"
    exe = os.readlink(f"/proc/{pid}/exe")
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    if os.path.realpath(env.monitor) == "/usr/bin/conmon":
        assert exe == "/usr/bin/conmon", f"{name}: monitor is {exe}, expected /usr/bin/conmon"
    else:
        assert exe != "/usr/bin/conmon", f"{name}: podman fell back to /usr/bin/conmon"
        words = [w.decode(errors="replace") for w in cmdline]
        assert any(env.monitor in w or "podvisor" in w or "supervisor.monitor" in w
                   for w in words) or os.path.realpath(exe) == os.path.realpath(env.monitor), \
            f"{name}: monitor pid {pid} ({exe} {words[:3]}) is not {env.monitor}"
    return pid


def pids_with_cmdline(match: Callable[[bytes], bool]) -> list[int]:
    """Live processes whose /proc/PID/cmdline (raw, NUL-separated) satisfies `match`."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes()
            except OSError:
                continue
            if match(cmd) and pid_alive(int(d.name)):
                found.append(int(d.name))
    return found


def cid(env: PodmanEnv, name: str) -> str:
    return env.inspect(name, "{{.Id}}")


def log_path(env: PodmanEnv, name: str) -> Path:
    return Path(env.inspect(name, "{{.HostConfig.LogConfig.Path}}"))


def k8s_records(path: Path) -> list[tuple[str, str, str, bytes]]:
    """Parse a k8s-file log into (timestamp, stream, P|F, content) records; every line must match."""
    records = []
    for line in path.read_bytes().split(b"\n")[:-1]:
        m = K8S_RECORD.match(line.decode("utf-8", "surrogateescape"))
        assert m, f"not a k8s-file record: {line[:120]!r}"
        records.append((m[1], m[2], m[3], m[4].encode("utf-8", "surrogateescape")))
    return records


# --- exit files -------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_IN_CLOSE_WRITE, _IN_MOVED_TO = 0x08, 0x80


class ExitFileWatcher:
    """Capture exit files as they appear in a directory.

    podman's cleanup deletes `<tmpdir>/exits/<cid>` ~20 ms after the monitor writes it, so the
    tests can only see it through inotify. Records the content at each close-after-write and each
    rename into the directory (conmon writes a temp file and renames it).
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.contents: dict[str, list[bytes]] = {}
        self._fd = _libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
        if self._fd < 0 or _libc.inotify_add_watch(
                self._fd, str(directory).encode(), _IN_CLOSE_WRITE | _IN_MOVED_TO) < 0:
            raise OSError(ctypes.get_errno(), "inotify")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not select.select([self._fd], [], [], 0.1)[0]:
                continue
            buf, i = os.read(self._fd, 65536), 0
            while i < len(buf):
                _wd, _mask, _cookie, length = struct.unpack_from("iIII", buf, i)
                name = buf[i + 16:i + 16 + length].rstrip(b"\0").decode()
                i += 16 + length
                try:
                    data = (self.directory / name).read_bytes()
                except FileNotFoundError:
                    continue  # a temp file already renamed, or podman was faster
                self.contents.setdefault(name, []).append(data)

    def wait_for(self, name: str, timeout: float = 10) -> bytes:
        """The last content seen for exit file `name`."""
        return wait_until(lambda: self.contents.get(name), timeout, what=f"exit file {name}")[-1]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        os.close(self._fd)


# --- tmux -------------------------------------------------------------------------------------

class Tmux:
    """A private tmux server (own socket, no status line) to drive terminal programs."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.socket = workdir / "tmux.sock"
        conf = workdir / "tmux.conf"
        # no status line: the pane gets the whole window, so `stty size` equals the window size
        conf.write_text("set -g status off\nset -g remain-on-exit on\nset -g history-limit 10000\n")
        self.base = ["tmux", "-S", str(self.socket), "-f", str(conf)]

    def tmux(self, *args: str) -> str:
        return subprocess.run([*self.base, *args], env=self.env, check=True, capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL).stdout

    def start(self, session: str, command: str, width: int = 100, height: int = 40) -> None:
        """Run `command` (a shell command line) in a new detached session of the given size; its
        exit status is written to a file read by `exit_status`."""
        rc = shlex.quote(str(self.workdir / f"{session}.rc"))
        self.tmux("new-session", "-d", "-s", session, "-x", str(width), "-y", str(height),
                  f"{command}; echo $? > {rc}")

    def send(self, session: str, *keys: str) -> None:
        self.tmux("send-keys", "-t", session, *keys)

    def type(self, session: str, text: str) -> None:
        """Type `text` literally and press Enter."""
        self.tmux("send-keys", "-t", session, "-l", text)
        self.tmux("send-keys", "-t", session, "Enter")

    def screen(self, session: str) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-t", session, "-S", "-")

    def wait_for(self, session: str, pattern: str, timeout: float = 20) -> re.Match[str]:
        """Wait until the pane's text matches the regex `pattern` (multiline)."""
        regex = re.compile(pattern, re.MULTILINE)
        try:
            return wait_until(lambda: regex.search(self.screen(session)), timeout, 0.1,
                              what=f"{pattern!r} on screen")
        except AssertionError as e:
            raise AssertionError(f"{e}; screen:\n{self.screen(session)}") from None

    def resize(self, session: str, width: int, height: int) -> None:
        self.tmux("resize-window", "-t", session, "-x", str(width), "-y", str(height))

    def exit_status(self, session: str, timeout: float = 20) -> int:
        rc = self.workdir / f"{session}.rc"
        text = wait_until(lambda: rc.read_text().strip() if rc.exists() else None, timeout,
                          what=f"{session} to exit")
        return int(text)

    def kill(self) -> None:
        subprocess.run([*self.base, "kill-server"], env=self.env, capture_output=True,
                       stdin=subprocess.DEVNULL, check=False)
