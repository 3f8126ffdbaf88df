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
    assert (out / "pod-same.service").read_text().splitlines()[0].endswith("a.yaml; edit the definition, not this file.")


def test_user_scope_and_usage(dirs: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, out = dirs
    assert sdgen.main([]) == 2
    monkeypatch.setenv("SYSTEMD_SCOPE", "user")
    assert sdgen.main([str(out)]) == 0 and not list(out.iterdir())
