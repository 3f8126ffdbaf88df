"""The whole monitor (main.Monitor and its parts) without podman: the real entry point driven
as podman drives it (argv, the sync pipe, exit dir), with a stand-in OCI runtime that starts a
real container process the way runc does (forks it into a session of its own, writes its pid,
hands over a pty master on --console-socket, exits). What podman relies on is checked: the
sync messages, the exit file, the log, signals, --timeout, the exit command, no idle wake-ups."""
from __future__ import annotations

import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

CID = "f" * 64
REPO = Path(__file__).resolve().parents[2]

RUNTIME = """import os, socket, sys
a = sys.argv[1:]
bundle, pidfile = a[a.index("--bundle") + 1], a[a.index("--pid-file") + 1]
assert a[0] == "create" and a[-1] == {cid!r}, a
def marker(name):
    return os.path.exists(os.path.join(bundle, name))
if marker("fail"):
    sys.stderr.write(open(os.path.join(bundle, "fail")).read())
    sys.exit(1)
tty = None
if "--console-socket" in a and not marker("no-console"):
    master, tty = os.openpty()
    with socket.socket(socket.AF_UNIX) as c:
        c.connect(a[a.index("--console-socket") + 1])
        socket.send_fds(c, [b"x"], [master])
    os.close(master)
pid = os.fork()
if pid == 0:
    os.setsid()  # as in a pid namespace of its own: not in the monitor's process group
    if tty is not None:
        for fd in (0, 1, 2):
            os.dup2(tty, fd)
    os.execv("/bin/sh", ["sh", "-c", open(os.path.join(bundle, "cmd")).read()])
if not marker("no-pidfile"):
    with open(pidfile, "w") as f:
        f.write(str(pid))
"""


def _line(fd: int, timeout: float = 20) -> bytes:
    """One sync message (podman reads them line by line)."""
    out = b""
    deadline = time.monotonic() + timeout
    while not out.endswith(b"\n"):
        left = deadline - time.monotonic()
        assert left > 0 and select.select([fd], [], [], left)[0], f"no sync message: {out!r}"
        chunk = os.read(fd, 1)
        if not chunk:
            return out
        out += chunk
    return out


class Run:
    def __init__(self, tmp: Path, cmd: str, *extra: str, markers: dict[str, str] | None = None,
                 sync: bool = True) -> None:
        self.bundle = tmp / "bundle"
        self.exits = tmp / "exits"
        self.log = tmp / "ctr.log"
        for d in (self.bundle, self.exits):
            d.mkdir(exist_ok=True)
        (self.bundle / "cmd").write_text(cmd)
        for name, text in (markers or {}).items():
            (self.bundle / name).write_text(text)
        # a sh wrapper rather than a #! line naming the interpreter: the checkout's path may
        # hold blanks, which a #! line cannot
        (tmp / "runtime.py").write_text(RUNTIME.format(cid=CID))
        runtime = tmp / "runtime"
        runtime.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(tmp / "runtime.py"))} "$@"\n')
        runtime.chmod(0o755)
        r, w = os.pipe()
        self.sync_r = r
        argv = [sys.executable, "-m", "supervisor.monitor", "--api-version", "1", "-c", CID,
                "-u", CID, "-r", str(runtime), "-b", str(self.bundle),
                "-p", str(self.bundle / "pidfile"), "-n", "ctr", "--exit-dir", str(self.exits),
                "-l", f"k8s-file:{self.log}", "--log-level", "error",
                *(["--sync"] if sync else []), *extra]
        # where the console socket's directory is made: short, as a socket's path is at most 107
        self.tmpdir = Path(tempfile.mkdtemp(prefix="pvt."))
        env = {**os.environ, "_OCI_SYNCPIPE": str(w), "PODVISOR_CONMON_LOG": str(tmp / "diag"),
               "TMPDIR": str(self.tmpdir)}
        self.proc = subprocess.Popen(argv, env=env, pass_fds=(w,), cwd=REPO,
                                     stdin=subprocess.DEVNULL)
        os.close(w)

    def pid(self) -> int:
        m = re.fullmatch(rb'\{"data": (\d+)\}\n', _line(self.sync_r))
        assert m, "expected the container's pid"
        return int(m.group(1))

    def wait(self) -> int:
        try:
            return self.proc.wait(30)
        finally:
            os.close(self.sync_r)

    def exit_file(self) -> str:
        return (self.exits / CID).read_text()


@pytest.fixture
def run(tmp_path: Path):
    started: list[Run] = []

    def start(cmd: str, *extra: str, **kw: object) -> Run:
        r = Run(tmp_path, cmd, *extra, **kw)  # type: ignore[arg-type]
        started.append(r)
        return r
    yield start
    for r in started:
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait(10)
        shutil.rmtree(r.tmpdir, ignore_errors=True)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_exit_status_output_and_files(run, tmp_path: Path) -> None:
    r = run("echo out; echo err >&2; exit 3", "--persist-dir", str(tmp_path))
    assert r.pid() > 0
    assert r.wait() == 3
    assert r.exit_file() == "3" and (tmp_path / "exit").read_text() == "3"
    log = r.log.read_text()
    assert re.search(r"^\S+ stdout F out$", log, re.M) and re.search(r"^\S+ stderr F err$", log, re.M)
    assert not (r.bundle / "attach").exists()  # cleaned up; ctl and winsz stay, as with conmon
    assert (r.bundle / "ctl").exists()


def test_runtime_failure_reaches_podman(run) -> None:
    r = run("true", markers={"fail": "bad config\n"})
    assert _line(r.sync_r) == b'{"data": -1, "message": "bad config\\n"}\n'
    assert r.wait() == 1
    assert not (r.exits / CID).exists()  # never started: podman reports the error instead


def test_missing_pid_file(run) -> None:
    r = run("true", markers={"no-pidfile": ""})
    msg = _line(r.sync_r)
    assert msg.startswith(b'{"data": -1, "message": "Failed to read the container pid from ')
    assert r.wait() == 1


def test_timeout_kills_the_container(run) -> None:
    r = run("sleep 100", "--timeout", "1")
    pid = r.pid()
    assert r.wait() == 255  # -1 & 0xff
    assert r.exit_file() == "-1"  # conmon's status for a timeout
    assert _gone(pid)


def test_sigterm_is_forwarded_to_the_container(run) -> None:
    r = run("sleep 100")
    pid = r.pid()
    r.proc.send_signal(signal.SIGTERM)
    assert r.wait() == 143
    assert r.exit_file() == "143" and _gone(pid)


def test_an_idle_monitor_does_not_wake_up(run) -> None:
    r = run("sleep 100")
    r.pid()

    def switches() -> int:
        text = Path(f"/proc/{r.proc.pid}/status").read_text()
        return sum(int(n) for n in re.findall(r"ctxt_switches:\s+(\d+)", text))
    time.sleep(0.3)  # done starting
    before = switches()
    time.sleep(1.5)
    assert switches() == before  # asleep in epoll_wait, no timer, no polling
    r.proc.send_signal(signal.SIGTERM)
    assert r.wait() == 143


def test_exit_command_runs_after_the_exit_file(run, tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    r = run("exit 4", "--exit-command", "/bin/sh", "--exit-command-arg", "-c",
            "--exit-command-arg", 'cat "$0" > "$1"; exit 0',
            "--exit-command-arg", str(tmp_path / "exits" / CID), "--exit-command-arg", str(seen))
    r.pid()
    assert r.wait() == 4
    assert seen.read_text() == "4"


def test_the_first_process_forks_the_monitor(run, tmp_path: Path) -> None:
    pidfile = tmp_path / "conmon.pid"
    r = run("sleep 0.5; exit 2", "--conmon-pidfile", str(pidfile), sync=False)
    assert r.proc.wait(20) == 0  # podman Wait()s for the first process only
    monitor = int(pidfile.read_text())
    assert monitor != r.proc.pid
    r.pid()
    assert _line(r.sync_r) == b""  # EOF: the monitor is gone
    assert r.exit_file() == "2"
    os.close(r.sync_r)


def test_terminal(run) -> None:
    r = run("echo hello; exit 5", "--terminal")
    r.pid()
    assert r.wait() == 5
    assert re.search(rb"^\S+ stdout F hello\r$", r.log.read_bytes(), re.M)  # the pty's ONLCR
    assert list(r.tmpdir.iterdir()) == []  # the console socket and its directory are gone


def test_terminal_that_never_comes(run) -> None:
    r = run("true", "--terminal", markers={"no-console": ""})
    assert _line(r.sync_r) == b'{"data": -1, "message": "Runtime did not set up terminal"}\n'
    assert r.wait() == 1
    assert list(r.tmpdir.iterdir()) == []  # not left behind when the runtime never connected
