"""The lab's rootfs cache (supervisor.lab.rootfs): a fresh tarball is reused, a week-old one is
rebuilt, each set of parameters has its own. debootstrap itself runs in scripts/check-fresh.sh."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from supervisor.lab import rootfs


def test_cached_tarball_is_reused_until_a_week_old(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tar = rootfs.tarball_path("bookworm", cache_dir=tmp_path)
    tar.write_bytes(b"cached")
    monkeypatch.setattr("shutil.which", lambda *a, **k: None)  # a rebuild would need debootstrap
    assert rootfs.tarball("bookworm", cache_dir=tmp_path) == tar
    assert tar.read_bytes() == b"cached"

    week_old = time.time() - rootfs.WEEK - 60
    os.utime(tar, (week_old, week_old))
    assert not rootfs.is_fresh(tar)
    with pytest.raises(rootfs.RootfsError, match="debootstrap not found"):  # stale: it tries to rebuild
        rootfs.tarball("bookworm", cache_dir=tmp_path)
    os.utime(tar, None)
    with pytest.raises(rootfs.RootfsError, match="debootstrap not found"):
        rootfs.tarball("bookworm", cache_dir=tmp_path, rebuild=True)
    assert tar.read_bytes() == b"cached"  # a failed build leaves the old tarball alone


def test_each_set_of_parameters_has_its_own_tarball(tmp_path: Path) -> None:
    paths = {rootfs.tarball_path("bookworm", cache_dir=tmp_path),
             rootfs.tarball_path("trixie", cache_dir=tmp_path),
             rootfs.tarball_path("trixie", include=("systemd-sysv", "udev"), cache_dir=tmp_path),
             rootfs.tarball_path("trixie", variant="buildd", cache_dir=tmp_path)}
    assert len(paths) == 4 and all(p.parent == tmp_path for p in paths)
    assert rootfs.tarball_path("trixie", include=("udev", "systemd-sysv", "udev"), cache_dir=tmp_path) in paths
