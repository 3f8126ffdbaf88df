"""Rendering: the unit shape, exact command lines, determinism, and systemd-analyze verify.

Command lines are checked by reading the generated text back the way systemd does
(supervisor.pods.unitfile), never by string matching on the escaped form."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from supervisor.generator.pipeline import generate
from supervisor.generator.render import RenderedUnit, render_pod
from supervisor.generator.settings import Settings
from supervisor.generator.verify import verify
from supervisor.pods import kube, naming
from supervisor.pods.unitfile import expand_specifiers, read_unit, split_command, split_words, substitute_env

GOLDEN = Path(__file__).resolve().parents[1] / "generator" / "golden"
SETTINGS = Settings(podman="/usr/bin/podman", podvisor="/usr/bin/env", containers_conf="/etc/podvisor/containers.conf",
                    podman_global_args=("--root=/srv/containers", "--runroot=/run/pv", "--cgroup-manager=systemd"))
needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")


def units_of(path: Path, settings: Settings = SETTINGS) -> dict[str, str]:
    return generate(path, settings, verify=False).files()


def keys(text: str) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    for s in read_unit(text):
        for e in s.entries:
            out.setdefault(s.name, {}).setdefault(e.key, []).append(e.value)
    return out


def argvs(text: str, key: str, unit: str, env: dict[str, str] | None = None) -> list[list[str]]:
    """Every command of `key` (ExecStart, ...) as the process would receive it."""
    spec = {"t": "/run", "n": unit, "N": unit.removesuffix(".service"), "p": unit.split("@")[0], "i": ""}
    return [[a.decode() for a in substitute_env(cmd.argv, env or {})]
            for value in keys(text)["Service"].get(key, []) for cmd in split_command(value, spec)]


@pytest.fixture(scope="module")
def blog() -> dict[str, str]:
    return units_of(GOLDEN / "blog.yaml")


def test_unit_names(blog: dict[str, str]) -> None:
    assert sorted(blog) == ["pod-blog.service", "pod-blog@cron.service", "pod-blog@infra.service",
                            "pod-blog@web.service", "pod-blog@worker.service"]
    assert all(t.startswith(naming.MARKER) for t in blog.values())


def test_pod_unit_waits_for_every_member(blog: dict[str, str]) -> None:
    k = keys(blog["pod-blog.service"])
    members = "pod-blog@infra.service pod-blog@web.service pod-blog@worker.service pod-blog@cron.service"
    assert k["Unit"]["Wants"] == [members] and k["Unit"]["PropagatesStopTo"] == [members]
    assert "Requires" not in k["Unit"] and "After" not in k["Unit"]
    assert k["Service"]["Type"] == ["oneshot"] and k["Service"]["RemainAfterExit"] == ["yes"]
    assert argvs(blog["pod-blog.service"], "ExecStart", "pod-blog.service") == \
        [["/usr/bin/systemctl", "start", *members.split()]]
    assert argvs(blog["pod-blog.service"], "ExecStop", "pod-blog.service") == \
        [["/usr/bin/systemctl", "stop", *members.split()]]
    assert k["Install"]["WantedBy"] == ["multi-user.target"]


def test_container_units_are_bound_to_the_infra(blog: dict[str, str]) -> None:
    for c in ("web", "worker", "cron"):
        k = keys(blog[f"pod-blog@{c}.service"])
        assert k["Unit"]["BindsTo"] == k["Unit"]["After"] == ["pod-blog@infra.service"]
        assert "PartOf" not in k["Unit"]  # see units.py: it would restart the whole pod
        assert k["Service"]["Type"] == ["notify"] and k["Service"]["NotifyAccess"] == ["all"]
        assert k["Service"]["KillMode"] == ["mixed"] and k["Service"]["Restart"] == ["on-failure"]
        assert "CONTAINERS_CONF=/etc/podvisor/containers.conf" in k["Service"]["Environment"]
        assert k["Unit"]["AssertPathExists"] == ["/etc/podvisor/containers.conf"]
        assert "/srv/containers" in k["Unit"]["RequiresMountsFor"][0]
    infra = keys(blog["pod-blog@infra.service"])
    assert infra["Service"]["Type"] == ["forking"] and infra["Service"]["PIDFile"] == ["%t/%n.pid"]


def test_every_podman_call_carries_the_global_flags(blog: dict[str, str]) -> None:
    n = 0
    for name, text in blog.items():
        for key in ("ExecStartPre", "ExecStart", "ExecStop", "ExecStopPost"):
            for argv in argvs(text, key, name):
                if "/usr/bin/podman" in argv:
                    i = argv.index("/usr/bin/podman")
                    assert argv[i + 1:i + 4] == list(SETTINGS.podman_global_args), (name, argv)
                    n += 1
    assert n >= 12


def _run(text: str, unit: str) -> list[str]:
    [argv] = argvs(text, "ExecStart", unit)
    return argv[argv.index("/usr/bin/podman"):]


def test_readiness_modes(blog: dict[str, str]) -> None:
    web = argvs(blog["pod-blog@web.service"], "ExecStart", "pod-blog@web.service")[0]
    assert web[:2] == ["/usr/bin/env", "ready-probe"]  # settings.podvisor
    assert "--http-get=http://127.0.0.1:80/index.html" in web and web[web.index("--") + 1] == "/usr/bin/podman"
    run = web[web.index("--") + 1:]
    assert "--sdnotify=ignore" in run and "--conmon-pidfile=/run/pod-blog@web.service.pid" in run
    assert "--sdnotify=container" in _run(blog["pod-blog@worker.service"], "pod-blog@worker.service")
    assert "--sdnotify=conmon" in _run(blog["pod-blog@cron.service"], "pod-blog@cron.service")
    assert keys(blog["pod-blog@web.service"])["Service"]["TimeoutStartSec"] == ["60"]


def test_run_command_reaches_podman_exactly(blog: dict[str, str]) -> None:
    [pod], _ = kube.load_file(GOLDEN / "blog.yaml")
    web = pod.containers[0]
    run = _run(blog["pod-blog@web.service"], "pod-blog@web.service")
    assert run[run.index("run"):run.index("run") + 9] == [
        "run", "--name=blog.web", "--replace", "--rm", "--cidfile=/run/pod-blog@web.service.ctr-id",
        "--pod-id-file=/run/pod-blog.pod-id", "--cgroups=no-conmon", "--sdnotify=ignore", "--detach"]
    assert f"--env=GREETING={web.env[0][1]}" in run  # quotes, backslash, %n and $HOME untouched
    assert "--memory=67108864b" in run and "--cpus=0.5" in run and "--stop-timeout=10" in run
    assert "--volume=blog.www:/www" in run and "--volume=/srv/blog data:/data:ro" in run
    entry = next(a for a in run if a.startswith("--entrypoint="))
    assert json.loads(entry.split("=", 1)[1]) == list(web.entrypoint or ())
    assert run[-1] == "localhost/podvisor-busybox:latest"  # no args: the command is the entrypoint
    cron = _run(blog["pod-blog@cron.service"], "pod-blog@cron.service")
    assert cron[-3:] == ["localhost/podvisor-busybox:latest", "sleep", "infinity"]


def test_infra_creates_pod_and_volumes(blog: dict[str, str]) -> None:
    pre = argvs(blog["pod-blog@infra.service"], "ExecStartPre", "pod-blog@infra.service")
    create = next(a for a in pre if "create" in a and "pod" in a)
    assert create[create.index("pod"):] == [
        "pod", "create", "--name=blog", "--infra-name=blog.infra", "--infra-conmon-pidfile=/run/pod-blog@infra.service.pid",
        "--pod-id-file=/run/pod-blog.pod-id", "--exit-policy=continue", "--replace", "--publish=8080:80/tcp",
        "--label=app=blog"]
    assert ["/usr/bin/mkdir", "-p", "--", "/srv/blog data"] in pre
    assert any(a[-3:] == ["create", "--label=io.podvisor.pod=blog", "blog.www"] for a in pre)
    post = argvs(blog["pod-blog@infra.service"], "ExecStopPost", "pod-blog@infra.service")
    assert any(a[-3:] == ["rm", "--force", "blog.www"] for a in post)


def test_restart_policies(tmp_path: Path) -> None:
    for policy, expected, infra in (("Always", "always", "on-failure"), ("OnFailure", "on-failure", "on-failure"),
                                    ("Never", "no", "no")):
        p = tmp_path / f"{policy}.yaml"
        p.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: r}\n"
                     f"spec: {{restartPolicy: {policy}, containers: [{{name: c, image: i}}]}}\n")
        u = units_of(p)
        c = keys(u["pod-r@c.service"])["Service"]
        assert c["Restart"] == [expected]
        assert ("RestartForceExitStatus" in c) == (expected != "no")
        assert keys(u["pod-r@infra.service"])["Service"]["Restart"] == [infra]
        for text in u.values():  # podman never restarts containers itself
            assert "--restart" not in text


def test_deterministic(tmp_path: Path) -> None:
    first = units_of(GOLDEN / "blog.yaml")
    second = units_of(GOLDEN / "blog.yaml")
    assert first == second
    copy = tmp_path / "blog.yaml"
    copy.write_bytes((GOLDEN / "blog.yaml").read_bytes())
    moved = units_of(copy)
    # only the header's source path differs
    for name in first:
        assert first[name].split("\n", 1)[1] == moved[name].split("\n", 1)[1]


def test_golden(blog: dict[str, str]) -> None:
    """The rendered blog pod, byte for byte (PODVISOR_UPDATE_GOLDEN=1 rewrites it)."""
    expected_dir = GOLDEN / "blog"
    rendered = {n: t.replace(str(GOLDEN), "GOLDEN") for n, t in blog.items()}
    if os.environ.get("PODVISOR_UPDATE_GOLDEN"):
        expected_dir.mkdir(exist_ok=True)
        for n, t in rendered.items():
            (expected_dir / n).write_text(t)
    assert {p.name: p.read_text() for p in expected_dir.iterdir()} == rendered


@needs_analyze
def test_verify_clean(blog: dict[str, str]) -> None:
    result = verify([RenderedUnit(n, t) for n, t in blog.items()])
    assert result.ok, str(result)


@needs_analyze
def test_verify_catches_bad_pass_through(tmp_path: Path) -> None:
    p = tmp_path / "x.container"
    p.write_text("[Container]\nImage=i\n[Service]\nTimeoutStartSec=banana\n")
    from supervisor.pods import load

    pods, _ = load(str(p))
    result = verify(render_pod(pods[0], SETTINGS))
    assert not result.ok and "TimeoutStartSec" in str(result)


def test_quadlet_lines_appended_after_ours(tmp_path: Path) -> None:
    (tmp_path / "p.pod").write_text("[Pod]\n[Unit]\nDescription=mine\n[Install]\nWantedBy=default.target\n")
    (tmp_path / "c.container").write_text("[Container]\nImage=i\nPod=p.pod\nExec=echo %n $X\n"
                                          "[Service]\nEnvironment=X=1\nTimeoutStartSec=5\n")
    u = units_of(tmp_path / "p.pod")
    assert keys(u["pod-p.service"])["Unit"]["Description"][-1] == "mine"
    c = keys(u["pod-p@c.service"])["Service"]
    assert c["TimeoutStartSec"][-1] == "5" and "X=1" in c["Environment"]
    # Quadlet text keeps its systemd meaning: %n is the unit, $X the unit's variable
    [argv] = argvs(u["pod-p@c.service"], "ExecStart", "pod-p@c.service", env={"X": "1"})
    assert argv[-3:] == ["echo", "pod-p@c.service", "1"]


def test_installation_paths_with_blanks_and_quotes_are_escaped() -> None:
    """A checkout anywhere: its venv's podvisor and monitor, and the containers.conf, may hold
    blanks, quotes or '%' - they reach the processes exactly, like any other argv."""
    venv = "/root/my checkout/it's 100%/.venv/bin"
    settings = Settings(podman="/usr/bin/podman", podvisor=f"{venv}/podvisor", monitor=f"{venv}/podvisor-conmon",
                        containers_conf="/etc/pod visor/containers.conf")
    units = units_of(GOLDEN / "blog.yaml", settings)
    web = argvs(units["pod-blog@web.service"], "ExecStart", "pod-blog@web.service")[0]
    assert web[:2] == [f"{venv}/podvisor", "ready-probe"]
    spec = {"n": "pod-blog@web.service", "N": "pod-blog@web", "p": "pod-blog", "i": "web", "t": "/run"}
    env = [w for v in keys(units["pod-blog@web.service"])["Service"]["Environment"]
           for w in split_words(expand_specifiers(v, spec))]
    assert b"CONTAINERS_CONF=/etc/pod visor/containers.conf" in env


def test_installation_paths_that_cannot_be_written_are_refused() -> None:
    from supervisor.generator.settings import SettingsError

    for bad in ("relative/podvisor", "/opt/$HOME/podvisor", "/opt/pod\nvisor", "/opt/podvisor "):
        with pytest.raises(SettingsError, match="expected an absolute path"):
            Settings(podvisor=bad)
