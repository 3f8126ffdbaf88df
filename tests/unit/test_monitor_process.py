"""The exit command's start: what the monitor still holds while podman's cleanup runs (issue 15)."""
from __future__ import annotations

import os
from pathlib import Path

from supervisor.monitor.cli import Options
from supervisor.monitor.reaper import run_exit_command

# the exit command records what the waiting monitor (its parent) and itself have open
RECORD = 'ls /proc/$PPID/fd > "$1/monitor"; ls /proc/self/fd > "$1/command"; echo err >&2'


def _run_in_child(tmp_path: Path, log_on_stderr: bool) -> int:
    """A forked stand-in for the monitor: bundle fd, log file and pipes open, then the exit
    command. Forked because run_exit_command closes the calling process's fds."""
    pid = os.fork()
    if pid == 0:
        try:
            bundle = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            os.open(tmp_path / "ctr.log", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC)
            os.pipe()  # an inherited-looking one, not close-on-exec
            assert bundle > 2
            if log_on_stderr:  # as with PODVISOR_CONMON_LOG: fd 2 is the log, close-on-exec
                log = os.open(tmp_path / "diag.log", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC)
                os.dup2(log, 2, inheritable=False)
            opts = Options(cid="c" * 64, cuuid="c", runtime="/bin/true", bundle=str(tmp_path),
                           container_pidfile="", conmon_pidfile=None, name=None, logs=(),
                           exit_command="/bin/sh",
                           exit_command_args=("-c", RECORD, "sh", str(tmp_path)))
            os._exit(run_exit_command(opts, 7))
        except BaseException:
            os._exit(99)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _fds(path: Path) -> set[int]:
    return {int(n) for n in path.read_text().split()}


def test_monitor_holds_nothing_but_stdio_while_the_exit_command_runs(tmp_path: Path) -> None:
    assert _run_in_child(tmp_path, log_on_stderr=False) == 7  # the container's status
    # conmon closes every fd >= 3 before forking the exit command: nothing in the bundle
    assert _fds(tmp_path / "monitor") == {0, 1, 2}
    assert _fds(tmp_path / "command") - {3} == {0, 1, 2}  # 3: ls's own directory fd


def test_exit_command_stderr_is_the_diagnostics_log(tmp_path: Path) -> None:
    assert _run_in_child(tmp_path, log_on_stderr=True) == 7
    assert 2 in _fds(tmp_path / "command")
    # podman cleanup's errors (e.g. an unmount that failed) land in the monitor's diagnostics
    assert (tmp_path / "diag.log").read_text() == "err\n"
