"""The systemd generator entry point: definitions in a directory -> units in the normal dir."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor.generator import sdgen
from supervisor.pods.unitfile import read_unit

POD = "apiVersion: v1\nkind: Pod\nmetadata: {name: NAME}\nspec: {containers: [{name: c, image: i}]}\n"


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    etc, usr, out = tmp_path / "etc", tmp_path / "usr", tmp_path / "out"
    for d in (etc, usr, out):
        d.mkdir()
    monkeypatch.setenv("PODVISOR_GENERATOR_DIRS", f"{etc}:{usr}")
    monkeypatch.delenv("SYSTEMD_SCOPE", raising=False)
    monkeypatch.setattr("supervisor.generator.settings.SETTINGS_FILE", tmp_path / "none.toml")
    return etc, usr, out


def test_generates_every_definition(dirs: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    etc, usr, out = dirs
    (etc / "blog.yaml").write_text(POD.replace("NAME", "blog"))
    (usr / "blog.yaml").write_text(POD.replace("NAME", "shadowed"))  # /etc wins, file by file
    (usr / "shop.pod").write_text("[Pod]\n[Install]\nWantedBy=default.target\n")
    (usr / "cart.container").write_text("[Container]\nImage=i\nPod=shop.pod\n")
    (etc / "solo.container").write_text("[Container]\nImage=i\n")
    (etc / "broken.yaml").write_text(POD.replace("NAME", "a b"))
    (etc / "README").write_text("not a definition")
    assert sdgen.main([str(out), str(out), str(out)]) == 1  # one file failed
    err = capsys.readouterr().err
    assert "podvisor-generator: " in err and "broken.yaml:3: metadata.name: 'a b' is not a valid pod name" in err
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert names == ["default.target.wants", "default.target.wants/pod-shop.service",
                     "multi-user.target.wants", "multi-user.target.wants/pod-blog.service",
                     "pod-blog.service", "pod-blog@c.service", "pod-blog@infra.service",
                     "pod-shop.service", "pod-shop@cart.service", "pod-shop@infra.service",
                     "pod-solo.service", "pod-solo@infra.service", "pod-solo@solo.service"]
    assert os.readlink(out / "multi-user.target.wants/pod-blog.service") == "../pod-blog.service"
    [unit] = [s for s in read_unit((out / "pod-blog@c.service").read_text()) if s.name == "Unit"]
    assert ("SourcePath", str(etc / "blog.yaml")) in [(e.key, e.value) for e in unit.entries]


def test_duplicate_pod_names_across_files(dirs: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    etc, _, out = dirs
    (etc / "a.yaml").write_text(POD.replace("NAME", "same"))
    (etc / "b.yaml").write_text(POD.replace("NAME", "same"))
    assert sdgen.main([str(out)]) == 1
    assert "pod 'same' is already defined by" in capsys.readouterr().err
    first = (out / "pod-same.service").read_text().splitlines()[0]
    assert first.endswith("a.yaml; edit the definition, not this file.")


def test_usage(dirs: tuple[Path, Path, Path]) -> None:
    assert sdgen.main([]) == 2


def test_user_scope(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the user manager runs it: Quadlet's rootless directories (the runtime dir's first, by
    file name), user units, and a containers.conf of their own beside them that merges the user's."""
    monkeypatch.setenv("SYSTEMD_SCOPE", "user")
    monkeypatch.delenv("PODVISOR_GENERATOR_DIRS", raising=False)
    monkeypatch.setattr("supervisor.generator.settings.SETTINGS_FILE", tmp_path / "none.toml")
    config, run, out = tmp_path / "config", tmp_path / "run", tmp_path / "out"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    for d in (config / "containers" / "systemd", run / "containers" / "systemd", out):
        d.mkdir(parents=True)
    assert sdgen.user_search_dirs() == (run / "containers/systemd", config / "containers/systemd",
                                        Path(f"/etc/containers/systemd/users/{os.getuid()}"),
                                        Path("/etc/containers/systemd/users"))
    (config / "containers/systemd/blog.yaml").write_text(POD.replace("NAME", "blog"))
    (config / "containers/systemd/tmp.yaml").write_text(POD.replace("NAME", "shadowed"))
    (run / "containers/systemd/tmp.yaml").write_text(POD.replace("NAME", "tmp"))
    (config / "containers/containers.conf").write_text('[engine]\nevents_logger = "file"\n')
    assert sdgen.main([str(out), str(out), str(out)]) == 0
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert names == ["default.target.wants", "default.target.wants/pod-blog.service",
                     "default.target.wants/pod-tmp.service",
                     "pod-blog.service", "pod-blog@c.service", "pod-blog@infra.service",
                     "pod-tmp.service", "pod-tmp@c.service", "pod-tmp@infra.service",
                     "podvisor", "podvisor/containers.conf"]
    conf = (out / "podvisor/containers.conf").read_text()
    assert 'events_logger = "file"' in conf and "conmon_path" in conf
    text = (out / "pod-blog@c.service").read_text()
    assert f"Environment=CONTAINERS_CONF={out}/podvisor/containers.conf" in text
    assert "RequiresMountsFor=" not in text
    assert "--user start" in (out / "pod-blog.service").read_text()
    # nothing to generate: no containers.conf either
    empty = tmp_path / "empty"
    empty.mkdir()
    for f in (config / "containers/systemd").iterdir():
        f.unlink()
    for f in (run / "containers/systemd").iterdir():
        f.unlink()
    assert sdgen.main([str(empty)]) == 0 and not list(empty.iterdir())
