"""`podman exec` of a command that leaves background children behind.

conmon 2.1.6 ends an exec session when the exec'd process exits: it drains what is readable and
reports the process's own exit code; children that still hold the output pipes (`&`, nohup, a
double-forked daemon) neither delay `podman exec` nor keep the session's monitor alive.
"""
from __future__ import annotations

import subprocess

import pytest

from supervisor.lab.testenv import PodmanEnv
from tests.integration.helpers import assert_monitored, pids_with_cmdline, wait_until

# the background children outlive any sane test timeout: a monitor waiting for them shows up as
# a podman exec that does not return (subprocess timeout) rather than as a slow pass
BACKGROUND = "sleep 600"
RETURN_TIMEOUT = 30

CASES = {
    "ampersand": f"{BACKGROUND} & echo started; exit 2",
    # the image's busybox has no nohup applet: the same thing by hand (SIGHUP ignored, and
    # stdout not a terminal, so nohup would keep the pipes too)
    "nohup": f"(trap '' HUP; exec {BACKGROUND}) & echo started; exit 3",
    "double-fork": f"(sh -c '{BACKGROUND}' &); echo started; exit 4",
    "setsid-daemon": f"setsid sh -c '{BACKGROUND} & exit 0'; echo started; exit 5",
    "start-stop-daemon": "start-stop-daemon -S -b -x /bin/sleep -- 600; echo started; exit 7",
    "late-writer": "(sleep 2; echo late) & echo started; exit 6",
}
CODES = {"ampersand": 2, "nohup": 3, "double-fork": 4, "setsid-daemon": 5, "late-writer": 6,
         "start-stop-daemon": 7}


@pytest.fixture
def ctr(podman: PodmanEnv, image: str) -> str:
    podman.run("run", "-d", "--name", "bg", image, "sleep", "1000")
    assert_monitored(podman, "bg")
    return "bg"


def _exec(podman: PodmanEnv, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(podman.argv("exec", *args), env=podman.environ(), text=True,
                              capture_output=True, timeout=RETURN_TIMEOUT,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"podman exec did not return within {RETURN_TIMEOUT}s: "
                             f"it waits for the background children") from e


def _monitors_of_session(session: str) -> list[int]:
    """Live processes whose command line names the exec session (its monitor's `-u`)."""
    def names_it(cmd: bytes) -> bool:
        # argv words, or podvisor-conmon's title (one word: `podvisor-conmon … -u ID …`)
        words = cmd.replace(b"\0", b" ").split()
        return any(words[i:i + 2] == [b"-u", session.encode()] for i in range(len(words)))
    return pids_with_cmdline(names_it)


@pytest.mark.parametrize("case", sorted(CASES))
def test_exec_returns_when_its_process_exits(podman: PodmanEnv, ctr: str, case: str) -> None:
    p = _exec(podman, ctr, "sh", "-c", CASES[case])
    assert (p.returncode, p.stdout, p.stderr) == (CODES[case], "started\n", "")
    # the background child really is still there: the exec did not just wait it out
    ps = podman.run("exec", ctr, "ps", "-o", "args").stdout
    if case != "late-writer":
        assert BACKGROUND in ps, ps


@pytest.mark.parametrize("code", [0, 1, 77])
def test_exec_exit_code_is_the_process_own(podman: PodmanEnv, ctr: str, code: int) -> None:
    p = _exec(podman, ctr, "sh", "-c", f"{BACKGROUND} & exit {code}")
    assert p.returncode == code


def test_exec_tty_with_background_child(podman: PodmanEnv, ctr: str) -> None:
    p = _exec(podman, "-t", ctr, "sh", "-c", f"{BACKGROUND} & echo started; exit 9")
    assert (p.returncode, p.stdout.replace("\r", "")) == (9, "started\n")


def test_exec_drains_all_output_left_behind(podman: PodmanEnv, ctr: str) -> None:
    # more than one pipe buffer's worth, written just before exiting with a child still holding
    # the pipes: all of it arrives, and nothing from after the exit is waited for
    p = _exec(podman, ctr, "sh", "-c",
              f"{BACKGROUND} & i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done; exit 1")
    assert p.returncode == 1
    assert p.stdout == "".join(f"line {i}\n" for i in range(3000))


def test_exec_detached_monitor_ends_with_its_process(podman: PodmanEnv, ctr: str) -> None:
    p = podman.run("exec", "-d", ctr, "sh", "-c", f"{BACKGROUND} & exit 0")
    session = p.stdout.strip()
    assert len(session) == 64
    # the session's monitor exits (after podman's exec cleanup) although the child lives on
    wait_until(lambda: not _monitors_of_session(session), timeout=15,
               what=f"the monitor of exec session {session[:12]} to exit")
    assert BACKGROUND in podman.run("exec", ctr, "ps", "-o", "args").stdout
    assert podman.inspect(ctr, "{{.State.Running}}") == "true"
