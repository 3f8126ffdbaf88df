"""stop, kill, restart, rm -f: podman drives runc; the monitor reports what happened."""
from __future__ import annotations

import os
import signal

from supervisor.lab.testenv import PodmanEnv
from tests.integration.helpers import assert_monitored, pid_alive, wait_until

# A PID 1 that handles SIGTERM (PID 1 ignores signals it has no handler for).
TRAPPING = ("trap 'echo got-term; exit 7' TERM; echo started; "
            "while :; do sleep 0.1; done")


def test_stop_graceful(podman: PodmanEnv, image: str) -> None:
    podman.run("run", "-d", "--name", "st", image, "sh", "-c", TRAPPING)
    monitor = assert_monitored(podman, "st")
    wait_until(lambda: "started" in podman.run("logs", "st").stdout, what="start")
    podman.run("stop", "--time", "10", "st")
    assert podman.inspect("st", "{{.State.Status}} {{.State.ExitCode}}") == "exited 7"
    assert podman.run("logs", "st").stdout == "started\ngot-term\n"
    wait_until(lambda: not pid_alive(monitor), what="monitor to exit")


def test_sigterm_to_a_silent_monitor_is_forwarded(podman: PodmanEnv, image: str) -> None:
    # the container says nothing: a forked monitor is still waiting for its first event, with
    # nothing of its own set up yet (monitor/handoff.py), when the signal comes
    podman.run("run", "-d", "--name", "sm", image, "sh", "-c",
               "trap 'exit 7' TERM; while :; do sleep 0.1; done")
    monitor = assert_monitored(podman, "sm")
    os.kill(monitor, signal.SIGTERM)
    assert podman.run("wait", "sm").stdout.strip() == "7"
    wait_until(lambda: not pid_alive(monitor), what="monitor to exit")


def test_kill(podman: PodmanEnv, image: str) -> None:
    podman.run("run", "-d", "--name", "kl", image, "sh", "-c", TRAPPING)
    assert_monitored(podman, "kl")
    podman.run("kill", "--signal", "TERM", "kl")  # handled by the trap
    assert podman.run("wait", "kl").stdout.strip() == "7"

    podman.run("start", "kl")
    assert_monitored(podman, "kl")
    podman.run("kill", "kl")  # default SIGKILL
    assert podman.run("wait", "kl").stdout.strip() == "137"
    assert podman.inspect("kl", "{{.State.ExitCode}}") == "137"


def test_restart(podman: PodmanEnv, image: str) -> None:
    podman.run("run", "-d", "--name", "rs", image, "sh", "-c", TRAPPING)
    first = assert_monitored(podman, "rs")
    wait_until(lambda: "started" in podman.run("logs", "rs").stdout, what="start")
    podman.run("restart", "--time", "10", "rs")
    second = assert_monitored(podman, "rs")  # a new monitor for the new run
    assert second != first
    assert podman.inspect("rs", "{{.State.Running}}") == "true"
    # the log file is appended to across runs
    wait_until(lambda: podman.run("logs", "rs").stdout == "started\ngot-term\nstarted\n",
               what="second start in the log")


def test_rm_force(podman: PodmanEnv, image: str) -> None:
    podman.run("run", "-d", "--name", "rm", image, "sleep", "1000")
    monitor = assert_monitored(podman, "rm")
    ctr_pid = int(podman.inspect("rm", "{{.State.Pid}}"))
    podman.run("rm", "--force", "--time", "0", "rm")
    assert podman.run("ps", "--all", "--quiet").stdout == ""
    wait_until(lambda: not pid_alive(monitor) and not pid_alive(ctr_pid),
               what="monitor and container to be gone")


def test_restart_policy_uses_same_monitor(podman: PodmanEnv, image: str) -> None:
    # Restarts are done by the exit command (`podman container cleanup`), which finds the monitor
    # through CONTAINERS_CONF in its environment (`podman --conmon` would not be propagated).
    # Runs 1 and 2 fail, run 3 (the second restart) stays up so its monitor can be checked.
    script = ("n=$(cat /n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /n; echo run$n; "
              "[ $n -ge 3 ] && exec sleep 1000; exit 3")
    podman.run("run", "-d", "--name", "rp", "--restart", "on-failure:2", image, "sh", "-c", script)
    wait_until(lambda: podman.inspect("rp", "{{.RestartCount}} {{.State.Running}}") == "2 true",
               timeout=30, what="two restarts")
    assert_monitored(podman, "rp")
    wait_until(lambda: podman.run("logs", "rp").stdout == "run1\nrun2\nrun3\n", what="three runs")
