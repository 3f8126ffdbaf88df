"""`--user`: units for a user's service manager, where they go, and what differs from root's.

tests/generator/golden/blog-user/ is what `generate --user` makes of units/blog/blog.yaml with
units/blog/generator.toml and XDG_CONFIG_HOME=/home/alice/.config (regenerate it with that
command). Root's units are checked unchanged by test_blog_units.py and the other golden tests.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from supervisor.generator import userscope
from supervisor.generator.command import main

REPO = Path(__file__).resolve().parents[2]
BLOG = REPO / "units" / "blog"
GOLDEN = REPO / "tests" / "generator" / "golden" / "blog-user"
FIXED = ["--settings", str(BLOG / "generator.toml"), "--no-host-checks", "--no-verify"]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def read_dir(d: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(d.iterdir())}


def test_golden_user_units(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", "/home/alice/.config")
    monkeypatch.chdir(REPO)  # the header names the definition as given
    rc, _, err = run(capsys, "generate", "--user", "units/blog/blog.yaml", *FIXED, "-o", str(tmp_path))
    assert rc == 0, err
    fresh, golden = read_dir(tmp_path), read_dir(GOLDEN)
    assert sorted(fresh) == sorted(golden)
    for name in fresh:
        assert fresh[name] == golden[name], f"{name} differs from the golden copy"


def test_user_units_differ_from_roots_only_where_the_user_manager_does() -> None:
    changed: list[str] = []
    for name, root in read_dir(BLOG / "generated").items():
        user = (GOLDEN / name).read_text()
        changed += [line for line in difflib.ndiff(root.splitlines(), user.splitlines())
                    if line[:2] in ("- ", "+ ")]
    conf = "/home/alice/.config/podvisor/containers.conf"
    allowed = {"- WantedBy=multi-user.target", "+ WantedBy=default.target",
               "- RequiresMountsFor=/var/lib/containers/storage /run/containers/storage",
               "- AssertPathExists=/etc/podvisor/containers.conf", f"+ AssertPathExists={conf}",
               "- Environment=CONTAINERS_CONF=/etc/podvisor/containers.conf",
               f"+ Environment=CONTAINERS_CONF={conf}",
               "- ExecStart=/usr/bin/systemctl start pod-blog@infra.service pod-blog@web.service pod-blog@proxy.service",
               "+ ExecStart=/usr/bin/systemctl --user start pod-blog@infra.service pod-blog@web.service "
               "pod-blog@proxy.service",
               "- ExecStop=/usr/bin/systemctl stop pod-blog@infra.service pod-blog@web.service pod-blog@proxy.service",
               "+ ExecStop=/usr/bin/systemctl --user stop pod-blog@infra.service pod-blog@web.service "
               "pod-blog@proxy.service"}
    assert set(changed) == allowed
    assert "+ WantedBy=default.target" in changed  # the pod unit's [Install]
    assert sum(line.startswith("- RequiresMountsFor=") for line in changed) == 3  # infra + 2 containers


def test_user_units_pass_systemd_analyze_verify_user(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # this installation's own programs (they exist), user scope: `systemd-analyze verify --user`
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    rc, _, err = run(capsys, "generate", "--user", str(BLOG / "blog.yaml"), "--no-host-checks",
                       "-o", str(tmp_path / "out"))
    assert rc == 0, err
    assert "WantedBy=default.target" in (tmp_path / "out" / "pod-blog.service").read_text()


@pytest.mark.parametrize("linger", [False, True])
def test_install_and_uninstall_user(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch, linger: bool) -> None:
    config = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    linger_dir = tmp_path / "linger"
    linger_dir.mkdir()
    if linger:
        (linger_dir / userscope.user_name()).touch()
    monkeypatch.setattr(userscope, "LINGER_DIR", linger_dir)
    (config / "containers").mkdir(parents=True)
    (config / "containers" / "containers.conf").write_text('[containers]\ntz = "UTC"\n')

    rc, out, err = run(capsys, "install", "--user", "--no-reload", str(BLOG / "blog.yaml"), *FIXED)
    assert rc == 0, err
    units = config / "systemd" / "user"
    assert sorted(os.listdir(units)) == sorted(os.listdir(BLOG / "generated"))
    conf = (config / "podvisor" / "containers.conf").read_text()
    assert 'tz = "UTC"' in conf and "/usr/local/bin/podvisor-conmon" in conf  # the user's own, merged
    assert "start it with: systemctl --user start pod-blog.service" in out
    warned = f"linger is off for user {userscope.user_name()}" in err
    assert warned == (not linger), err
    assert not any(p.is_relative_to("/etc/systemd") for p in map(Path, out.split()) if p.is_absolute())

    rc, out, err = run(capsys, "uninstall", "--user", "--no-reload", "blog")
    assert rc == 0, err
    assert os.listdir(units) == []
    assert sorted(out.split("\n")[:-1]) == sorted(f"removed {n}" for n in os.listdir(BLOG / "generated"))


def test_uninstall_user_names_the_users_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    rc, _, err = run(capsys, "uninstall", "--user", "--no-reload", "blog")
    assert rc == 1 and err == f"podvisor: error: no podvisor pod 'blog' in {tmp_path}/systemd/user\n"


def test_config_home_follows_xdg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/bob")
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert userscope.unit_dir() == Path("/home/bob/.config/systemd/user")
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/is/ignored")  # the XDG spec: only absolute paths
    assert userscope.unit_dir() == Path("/home/bob/.config/systemd/user")
    monkeypatch.setenv("XDG_CONFIG_HOME", "/srv/cfg")
    assert userscope.containers_conf() == Path("/srv/cfg/podvisor/containers.conf")


def test_cli_without_a_user_manager_says_so(tmp_path: Path) -> None:
    # no user bus here (no systemd as PID 1, an empty runtime dir): a clear error, exit status 1
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    env["XDG_RUNTIME_DIR"] = str(tmp_path)
    podvisor = Path(sys.executable).with_name("podvisor")
    res = subprocess.run([str(podvisor), "ps", "--user"], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert res.stderr.startswith("podvisor: error: cannot reach the user's systemd over its D-Bus")
