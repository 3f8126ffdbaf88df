"""All-or-nothing writes: staged, renamed into place, rolled back on failure."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor.generator import writer


def listing(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): (f"-> {os.readlink(p)}" if p.is_symlink() else p.read_text())
            for p in sorted(d.rglob("*")) if p.is_file() or p.is_symlink()}


def test_commit_writes_replaces_removes(tmp_path: Path) -> None:
    (tmp_path / "old.service").write_text("old")
    (tmp_path / "gone.service").write_text("gone")
    changed = writer.commit(tmp_path, {"old.service": "new", "a.service": "a"},
                            symlinks={"multi-user.target.wants/a.service": "../a.service"}, remove=["gone.service"])
    assert listing(tmp_path) == {"a.service": "a", "old.service": "new",
                                 "multi-user.target.wants/a.service": "-> ../a.service"}
    assert sorted(changed) == ["a.service", "gone.service", "multi-user.target.wants/a.service", "old.service"]
    assert oct((tmp_path / "a.service").stat().st_mode & 0o777) == "0o644"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_unchanged_files_are_not_rewritten(tmp_path: Path) -> None:
    writer.commit(tmp_path, {"a.service": "a"})
    inode = (tmp_path / "a.service").stat().st_ino
    assert writer.commit(tmp_path, {"a.service": "a"}) == []
    assert (tmp_path / "a.service").stat().st_ino == inode


def test_failure_midway_restores_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.service").write_text("old a")
    (tmp_path / "gone.service").write_text("gone")
    before = listing(tmp_path)
    real = writer._install
    calls = []

    def failing(target: Path, *args: object) -> None:
        calls.append(target.name)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(target, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(writer, "_install", failing)
    with pytest.raises(OSError):
        writer.commit(tmp_path, {"a.service": "new a", "b.service": "b", "c.service": "c"}, remove=["gone.service"])
    assert listing(tmp_path) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("name", ["../x", "/etc/x", ".hidden", "a/../../x"])
def test_refuses_odd_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(writer.WriteError):
        writer.commit(tmp_path, {name: "x"})
