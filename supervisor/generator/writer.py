"""All-or-nothing installation of a set of files into one directory.

Everything is first written and fsync'ed in a hidden staging directory inside the target (same
file system, and a name systemd never loads as a unit), then renamed into place one by one:
each file is replaced atomically, so no reader ever sees a half-written unit. If anything fails
midway, the files already replaced are restored from hard-link backups and new ones removed, so
the directory ends as it was. (A crash between two renames can still leave a mix of old and new
complete files; the next successful run converges.)
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path


class WriteError(OSError):
    pass


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_name(name: str) -> None:
    parts = Path(name).parts
    if not parts or Path(name).is_absolute() or any(p in (".", "..") or p.startswith(".") for p in parts):
        raise WriteError(f"refusing to write {name!r}: not a plain relative name")


def commit(directory: Path, files: Mapping[str, str], symlinks: Mapping[str, str] | None = None,
           remove: Iterable[str] = (), mode: int = 0o644) -> list[str]:
    """Make `directory` contain `files` (name -> text) and `symlinks` (name -> target), and not
    `remove` (names; missing ones are fine). Names may have one level of subdirectory
    (``multi-user.target.wants/x.service``). Returns the names changed."""
    symlinks = symlinks or {}
    remove = [r for r in remove if r not in files and r not in symlinks]
    for name in (*files, *symlinks, *remove):
        _check_name(name)
    directory.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".podvisor-stage-", dir=directory))
    backups = stage / ".backup"
    backups.mkdir()
    replaced: list[tuple[Path, Path | None]] = []  # (target, backup or None if it did not exist)
    try:
        for i, (name, text) in enumerate(sorted(files.items())):
            if _same_file(directory / name, text):
                continue
            staged = stage / f"f{i}"
            with open(staged, "w", encoding="utf-8", newline="") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(staged, mode)
            _install(directory / name, staged, backups, replaced)
        for i, (name, target) in enumerate(sorted(symlinks.items())):
            if (directory / name).is_symlink() and os.readlink(directory / name) == target:
                continue
            staged = stage / f"l{i}"
            os.symlink(target, staged)
            _install(directory / name, staged, backups, replaced)
        for name in sorted(remove):
            path = directory / name
            if os.path.lexists(path):
                moved = backups / f"r{len(replaced)}"
                os.replace(path, moved)
                replaced.append((path, moved))
        for sub in {(directory / n).parent for n in (*files, *symlinks, *remove)}:
            _fsync_dir(sub)
    except BaseException:
        for done, old in reversed(replaced):
            try:
                if old is not None:
                    os.replace(old, done)
                else:
                    os.unlink(done)
            except OSError:
                pass
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return [str(t.relative_to(directory)) for t, _ in replaced]


def _same_file(path: Path, text: str) -> bool:
    try:
        return not path.is_symlink() and path.read_bytes() == text.encode("utf-8")
    except OSError:
        return False


def _install(target: Path, staged: Path, backups: Path, replaced: list[tuple[Path, Path | None]]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    backup: Path | None = None
    if os.path.lexists(target):
        if target.is_dir() and not target.is_symlink():
            raise WriteError(f"{target} is a directory")
        backup = backups / f"b{len(replaced)}"
        # a hard link (or a copy of a symlink) keeps the old version without a moment of absence
        if target.is_symlink():
            os.symlink(os.readlink(target), backup)
        else:
            os.link(target, backup)
    os.replace(staged, target)
    replaced.append((target, backup))
