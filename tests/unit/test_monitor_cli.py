"""The monitor's command line against the reference conmon 2.1.6: the same bad input must
fail the same way (exit status and message), since podman shows these messages to users."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.monitor import VERSION_TEXT
from supervisor.monitor.cli import parse

REPO = Path(__file__).resolve().parents[2]
CONMON = "/usr/bin/conmon"


def _podvisor() -> str:
    path = os.environ.get("PODVISOR_CONMON") or shutil.which("podvisor-conmon")
    if not path:
        path = str(Path(sys.executable).with_name("podvisor-conmon"))
    if not os.access(path, os.X_OK):
        pytest.skip("podvisor-conmon is not installed")
    return path


CASES = [
    [],
    ["-c", "x"],
    ["-c", "x", "-u", "y"],
    ["-c", "x", "-u", "y", "-r", "/nonexistent"],
    ["-c", "x", "-u", "y", "-r", "/usr/bin/runc"],
    ["-c", "x", "-u", "y", "-r", "/usr/bin/runc", "-l", "bogus:x"],
    ["-c", "x", "-u", "y", "-r", "/usr/bin/runc", "-l", "k8s-file"],
    ["-c", "x", "-u", "y", "-r", "/usr/bin/runc", "-l", "k8s-file:"],
    ["-c", "x", "-u", "y", "-r", "/usr/bin/runc", "-l", "journald"],
    ["-c", "x", "-u", "y", "-r", "/usr/bin/runc", "-l", ""],
    ["--bogus"],
    ["-c", "x", "-u", "y", "-r", "/usr/bin/runc", "-l", "none", "--log-level", "foo"],
    ["-c", "x", "-u", "y", "-r", "/usr/bin/runc", "-l", "k8s-file:/nonexistent/dir/x.log"],
    ["-c", "x" * 20, "-u", "y", "-r", "/usr/bin/runc", "-l", "k8s-file:/dev/null", "--log-tag", "t"],
    ["-c", "x", "-u", "y", "-r", "/usr/bin/runc", "-l", "none", "-e"],
    ["-c", "x", "-u", "y", "-r", "/usr/bin/runc", "-l", "none", "--exec-attach"],
    # GLib's option rules: no attached short values, no `-c=`, values checked as C ints
    ["-cx"], ["-c"], ["--cid"], ["-c=x"], ["--bogus=2"], ["-c", "x", "-Z"], ["-c", "x", "-iZ"],
    ["-c", "x", "---x"], ["-c", "x", "-u", "y", "--log-level"],
    ["-c", "x", "-u", "y", "-r", "/usr/bin/runc", "-l", "none", "-T", "abc"],
    ["-c", "x", "-u", "y", "-r", "/usr/bin/runc", "-l", "none", "--timeout="],
    ["-c", "x", "-u", "y", "-r", "/usr/bin/runc", "-l", "none", "-T", "99999999999"],
    ["-c", "x", "-u", "y", "-r", "/usr/bin/runc", "-l", "none", "--exit-delay=-2147483649"],
    # accepted by the parser, then rejected by the same later check in both
    ["-c", "x", "-it", "-u", "y", "-r", "/nonexistent"],
    ["-c", "x", "-iu", "y", "-r", "/nonexistent"],
    ["-c", "x", "-u", "y", "-r", "/nonexistent", "-T", "0x10", "--exit-delay", " 5", "-", "--", "--x"],
    ["--cid=x", "--cid=z", "-u", "y", "--stdin=1", "--api-version=1", "-r", "/nonexistent"],
]


def _run(binary: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # no _OCI_* pipes: both must fail during validation, before waiting for a start byte
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=10,
                          stdin=subprocess.DEVNULL, cwd=cwd)


def _normalize(text: str) -> str:
    # GLib quotes with “ ”; the word after "Unknown option" is the only varying part
    return text.strip()


@pytest.mark.parametrize("args", CASES, ids=lambda a: " ".join(a) or "<none>")
def test_invalid_command_lines_fail_like_conmon(args: list[str], tmp_path: Path) -> None:
    ours = _run(_podvisor(), args, tmp_path)
    ref = _run(CONMON, args, tmp_path)
    assert ref.returncode == 1, ref  # the reference really rejects it
    assert ours.returncode == ref.returncode
    assert _normalize(ours.stdout) == _normalize(ref.stdout)
    assert _normalize(ours.stderr) == _normalize(ref.stderr)


def test_version_matches_what_podman_accepts() -> None:
    out = subprocess.run([_podvisor(), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout == VERSION_TEXT
    assert out.stdout.startswith("conmon version 2.1.6\n")
    # the sh launcher answers without Python: keep its copy of the text in step
    launcher = subprocess.run(["sh", str(REPO / "bin" / "podvisor-conmon"), "--version"],
                              capture_output=True, text=True, check=True)
    assert launcher.stdout == VERSION_TEXT


@pytest.mark.parametrize("option", ["--seccomp-notify-socket", "--seccomp-notify-plugins"])
def test_seccomp_notify_is_refused_not_ignored(option: str, tmp_path: Path) -> None:
    """conmon's seccomp-notify listener is not implemented: an error naming it, not a monitor
    that runs the container and leaves its notifications unanswered."""
    args = ["--api-version", "1", "-c", "c" * 64, "-u", "c" * 64, "-r", "/usr/bin/runc", "-b", str(tmp_path),
            "-l", f"k8s-file:{tmp_path / 'ctr.log'}", "--exit-dir", str(tmp_path), option, str(tmp_path / "x")]
    res = _run(_podvisor(), args, tmp_path)
    assert res.returncode == 1
    assert "--seccomp-notify-socket/--seccomp-notify-plugins are not supported" in res.stderr, res
    assert not (tmp_path / "ctr.log").exists()  # refused before anything was started


def test_podman_style_argv_parses(tmp_path: Path) -> None:
    """The exact argument shapes podman 4.3.1 sends: stray `1`, values starting with `-`,
    `=` forms, empty values, repeated options in order."""
    log = tmp_path / "ctr.log"
    opts = parse([
        "--api-version", "1", "-c", "c" * 64, "-u", "c" * 64, "-r", "/usr/bin/runc",
        "-b", str(tmp_path), "-p", str(tmp_path / "pidfile"), "-n", "web",
        "--exit-dir", str(tmp_path), "--full-attach", "-l", f"k8s-file:{log}",
        "--log-level", "warning", "--runtime-arg", "--log-format=json", "--runtime-arg", "--log",
        "--runtime-arg=/run/x/oci-log", "--sdnotify-socket=/run/notify", "-i", "--timeout=5",
        "--conmon-pidfile", str(tmp_path / "conmon.pid"), "--exit-command", "/usr/bin/podman",
        "--exit-command-arg", "--network-config-dir", "--exit-command-arg", "",
        "--exit-command-arg", "container", "--runtime-opt", "--preserve-fds",
        "--runtime-opt", "2",
    ])
    assert opts.api_version and opts.stdin and not opts.terminal
    assert opts.runtime_args == ("--log-format=json", "--log", "/run/x/oci-log")
    assert opts.runtime_opts == ("--preserve-fds", "2")
    assert opts.exit_command_args == ("--network-config-dir", "", "container")
    assert opts.timeout == 5 and opts.sdnotify_socket == "/run/notify"
    assert opts.k8s_file == str(log) and opts.name == "web"
    assert opts.extra == ("1",)
    with pytest.raises(AttributeError):
        opts.cid = "other"  # type: ignore[misc]


@pytest.mark.parametrize("spec,driver,path", [
    ("/p/ctr.log", "k8s-file", "/p/ctr.log"), (":/p/x", "k8s-file", "/p/x"),
    ("k8s-file:/p/y", "k8s-file", "/p/y"), ("none", "none", ""), ("off", "none", ""),
    ("null", "none", ""), ("journald", "journald", ""), ("journald:/ignored", "journald", ""),
    ("passthrough", "passthrough", ""),
])
def test_log_path_forms(spec: str, driver: str, path: str) -> None:
    from supervisor.monitor.cli import parse_log_target

    t = parse_log_target(spec)
    assert (t.driver, t.path) == (driver, path)


def test_rotate_count_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = ["-c", "c" * 20, "-u", "u", "-r", "/usr/bin/runc", "-l", "none"]
    assert parse(base).log_rotate_count == 1
    monkeypatch.setenv("PODVISOR_LOG_ROTATE_COUNT", "4")
    assert parse(base).log_rotate_count == 4
    assert parse([*base, "--log-rotate-count", "0"]).log_rotate_count == 0
    monkeypatch.setenv("PODVISOR_LOG_ROTATE_COUNT", "many")
    with pytest.raises(SystemExit) as e:
        parse(base)
    assert e.value.code == 1


def test_glib_value_forms(tmp_path: Path) -> None:
    """What the GLib parser accepts: grouped short flags, strtol(base 0) integers, `--` ending the
    options, the last of a repeated single value."""
    opts = parse(["-c", "a" * 20, "-c", "c" * 20, "-u", "u", "-r", "/usr/bin/runc", "-l", "none",
                  "-it", "-T", "0x10", "--exit-delay", " 010", "--log-size-max=-5", "-",
                  "--", "--not-an-option"])
    assert opts.cid == "c" * 20 and opts.stdin and opts.terminal
    assert (opts.timeout, opts.exit_delay, opts.log_size_max) == (16, 8, -5)
    assert opts.extra == ("-", "--not-an-option")


def test_help_exits_zero() -> None:
    out = subprocess.run([_podvisor(), "--help"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and "--log-level" in out.stdout and "--cid" in out.stdout


@pytest.mark.parametrize("level,shown", [
    ("error", ""), ("warning", "w"), ("WARN", "w"), ("info", "wi"), ("debug", "wid"), ("trace", "wid"),
])
def test_log_level_filters_diagnostics(level: str, shown: str, capfd: pytest.CaptureFixture[str]) -> None:
    from supervisor.monitor import errors

    parse(["-c", "c" * 20, "-u", "u", "-r", "/usr/bin/runc", "-l", "none", "--log-level", level])
    try:
        errors.warn("a warning")
        errors.info("some news")
        errors.debug("a detail")
        err = capfd.readouterr().err
    finally:
        errors.set_level("warning")
    assert ("[conmon:w]: a warning" in err) == ("w" in shown), err
    assert ("[conmon:i]: some news" in err) == ("i" in shown), err
    assert ("[conmon:d]: a detail" in err) == ("d" in shown), err
