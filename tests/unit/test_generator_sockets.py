"""Socket activation units: their shape, the activated container's dependencies, what the
infra no longer publishes, systemd-analyze verify, install/uninstall of the extra files."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from supervisor.generator.pipeline import generate
from supervisor.generator.render import RenderedUnit
from supervisor.generator.verify import verify
from tests.unit.test_generator_render import SETTINGS, argvs, keys

REPO = Path(__file__).resolve().parents[2]
BLOG = REPO / "units" / "blog-sockets" / "blog.yaml"
needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")


@pytest.fixture(scope="module")
def blog() -> dict[str, str]:
    return generate(BLOG, SETTINGS, verify=False).files()


def test_socket_and_target(blog: dict[str, str]) -> None:
    sock = keys(blog["pod-blog@proxy.socket"])
    assert sock["Socket"] == {"ListenStream": ["0.0.0.0:8080"], "Service": ["pod-blog@proxy.service"]}
    assert sock["Unit"]["PartOf"] == ["pod-blog-sockets.target"]
    target = keys(blog["pod-blog-sockets.target"])
    assert target["Unit"]["Wants"] == ["pod-blog@proxy.socket"]
    assert target["Install"]["WantedBy"] == ["sockets.target"]


def test_activated_container_pulls_in_the_pod_after_the_others(blog: dict[str, str]) -> None:
    proxy = keys(blog["pod-blog@proxy.service"])
    assert proxy["Unit"]["Wants"] == ["pod-blog.service pod-blog@web.service"]
    assert proxy["Unit"]["After"] == ["pod-blog@infra.service", "pod-blog@web.service"]
    assert proxy["Service"]["Sockets"] == ["pod-blog@proxy.socket"]
    web = keys(blog["pod-blog@web.service"])
    assert "Sockets" not in web["Service"] and web["Unit"]["After"] == ["pod-blog@infra.service"]
    # the app learns its socket from LISTEN_FDS; nginx from NGINX (set in the definition)
    (run,) = argvs(blog["pod-blog@proxy.service"], "ExecStart", "pod-blog@proxy.service")
    assert "--env=NGINX=3;" in run


def test_infra_publishes_nothing_and_has_no_network(blog: dict[str, str]) -> None:
    create = [a for argv in argvs(blog["pod-blog@infra.service"], "ExecStartPre", "pod-blog@infra.service")
              for a in argv if "pod" in argv and "create" in argv]
    assert "--network=none" in create and not [a for a in create if a.startswith("--publish")]


def test_generator_links_the_target_into_sockets_target() -> None:
    gen = generate(BLOG, SETTINGS, verify=False)
    assert gen.wants_symlinks()["sockets.target.wants/pod-blog-sockets.target"] == "../pod-blog-sockets.target"


def test_quadlet_socket_lines_pass_through(tmp_path: Path) -> None:
    (tmp_path / "web.container").write_text("[Container]\nImage=i\nNetwork=none\n")
    (tmp_path / "web.socket").write_text("[Unit]\nDescription=my socket\n[Socket]\nListenStream=%t/web.sock\n"
                                         "ListenDatagram=127.0.0.1:5353\nSocketMode=0600\n"
                                         "[Install]\nWantedBy=sockets.target\n")
    units = generate(tmp_path / "web.container", SETTINGS, verify=False).files()
    k = keys(units["pod-web@web.socket"])
    assert k["Socket"]["ListenStream"] == ["%t/web.sock"]  # a specifier for systemd, unescaped
    assert k["Socket"]["ListenDatagram"] == ["127.0.0.1:5353"] and k["Socket"]["SocketMode"] == ["0600"]
    assert k["Unit"]["Description"][-1] == "my socket" and k["Install"]["WantedBy"] == ["sockets.target"]
    assert keys(units["pod-web@web.service"])["Unit"]["Wants"] == ["pod-web.service"]


@needs_analyze
def test_verify_clean(blog: dict[str, str]) -> None:
    result = verify([RenderedUnit(n, t) for n, t in blog.items()])
    assert result.ok, str(result)


def test_install_and_uninstall_the_socket_files(tmp_path: Path) -> None:
    from supervisor.generator.install import install, uninstall

    conf = tmp_path / "containers.conf"
    conf.write_text("[engine]\n")
    settings = SETTINGS.__class__(**{**SETTINGS.__dict__, "containers_conf": str(conf)})
    units = tmp_path / "units"
    report = install(BLOG, settings, unit_dir=units, reload=False, host_checks=False, verify=False)
    assert {"pod-blog@proxy.socket", "pod-blog-sockets.target"} <= set(report.written)
    assert report.armed == []  # nothing started without systemd
    removed = uninstall("blog", unit_dir=units, reload=False)
    assert "pod-blog@proxy.socket" in removed and "pod-blog-sockets.target" in removed
    assert list(units.iterdir()) == []


def test_systemd_generator_arms_the_sockets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At boot (generator mode) the sockets target is linked into sockets.target.wants/."""
    import os

    from supervisor.generator import sdgen

    etc, out = tmp_path / "etc", tmp_path / "out"
    etc.mkdir()
    out.mkdir()
    monkeypatch.setenv("PODVISOR_GENERATOR_DIRS", str(etc))
    monkeypatch.delenv("SYSTEMD_SCOPE", raising=False)
    monkeypatch.setattr("supervisor.generator.settings.SETTINGS_FILE", tmp_path / "none.toml")
    (etc / "web.container").write_text("[Container]\nImage=i\n")
    (etc / "web.socket").write_text("[Socket]\nListenStream=127.0.0.1:8080\n")
    assert sdgen.main([str(out), str(out), str(out)]) == 0
    assert (out / "pod-web@web.socket").exists() and (out / "pod-web-sockets.target").exists()
    assert os.readlink(out / "sockets.target.wants/pod-web-sockets.target") == "../pod-web-sockets.target"
    assert f"SourcePath={etc / 'web.container'}" in (out / "pod-web@web.socket").read_text()
