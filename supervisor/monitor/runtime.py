"""The OCI runtime's command lines (create / restore / exec), and starting it."""
from __future__ import annotations

import os
import signal
import sys

from .cli import Options
from .errors import debug
from .linux import set_oom_score_adj, set_pdeathsig


def build_argv(opts: Options, console_socket: str | None) -> list[str]:
    argv = [opts.runtime]
    if opts.exec:
        argv += opts.runtime_args
        argv += ["exec", "--pid-file", opts.container_pidfile,
                 "--process", opts.exec_process_spec or "", "--detach"]
        if opts.terminal:
            argv.append("--tty")
    else:
        if opts.systemd_cgroup:
            argv.append("--systemd-cgroup")
        argv += opts.runtime_args
        argv += ["restore" if opts.restore else "create",
                 "--bundle", opts.bundle, "--pid-file", opts.container_pidfile]
        if opts.no_pivot:
            argv.append("--no-pivot")
        if opts.no_new_keyring:
            argv.append("--no-new-keyring")
        if opts.restore:
            argv += ["--detach", "--image-path", opts.restore, "--work-path", opts.bundle]
    argv += opts.runtime_opts
    if console_socket:
        argv += ["--console-socket", console_socket]
    argv.append(opts.cid)
    return argv


def spawn(opts: Options, argv: list[str], stdin: int, stdout: int, stderr: int,
          second_start_fd: int | None, reset_signals: list[int]) -> int:
    pid = os.fork()
    if pid:
        debug(f"runtime started as pid {pid}: {' '.join(argv)}")
        return pid
    try:
        # the runtime must not outlive the monitor while it sets the container up
        set_pdeathsig(signal.SIGKILL)
        signal.set_wakeup_fd(-1)
        for sig in reset_signals:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        os.dup2(stdin, 0)
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
        env = os.environ
        if "LISTEN_PID" in env and (opts.replace_listen_pid
                                    or env["LISTEN_PID"] == str(os.getppid())):
            env["LISTEN_PID"] = str(os.getpid())
        if second_start_fd is not None:
            # exec --exec-attach: podman says go once it is attached, so no output is lost
            os.read(second_start_fd, 8192)
        set_oom_score_adj(0)
        os.execv(argv[0], argv)
    except BaseException as e:
        try:
            os.write(2, f"podvisor-conmon: cannot run {argv[0]}: {e}\n".encode())
        finally:
            os._exit(127)
    sys.exit(127)  # not reached
