"""Fresh Debian root file systems for the lab's machine checks, built with debootstrap from
Debian's package registry and cached as tarballs (building one takes minutes, unpacking seconds).

A cached tarball is rebuilt when it is older than `max_age` (a week by default), so a check
never tests against a month-old "fresh" machine; concurrent callers wait for one build (flock).

    python -m supervisor.lab.rootfs bookworm                 # prints the tarball's path
    python -m supervisor.lab.rootfs trixie --include systemd-sysv,udev --rebuild

    from supervisor.lab import rootfs
    tar = rootfs.tarball("trixie", include=("systemd-sysv",))
    rootfs.unpack(tar, Path("/var/tmp/x/root"))

No third-party imports: it runs before the project's dependencies are installed anywhere.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

CACHE_DIR = Path("/var/tmp/podvisor-rootfs")  # a real disk: a rootfs is a few hundred MB
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
WEEK = 7 * 24 * 3600.0
# What every Debian machine has beyond minbase: an init. Everything else (python3, ca-certificates,
# podman, ...) is scripts/install.sh's job, and the checks prove it does it.
BASE_INCLUDE = ("systemd-sysv",)


class RootfsError(RuntimeError):
    """Building or unpacking a root file system failed; the message is for humans."""


FORMAT = 2  # what _finish does; a change makes every cached tarball stale


def _key(suite: str, variant: str, include: Sequence[str], mirror: str) -> str:
    spec = json.dumps([FORMAT, suite, variant, sorted(set(include)), mirror])
    return hashlib.sha256(spec.encode()).hexdigest()[:10]


def tarball_path(suite: str, *, variant: str = "minbase", include: Sequence[str] = BASE_INCLUDE,
                 mirror: str = MIRROR, cache_dir: Path = CACHE_DIR) -> Path:
    """Where the tarball for these parameters lives (one file per distinct set of parameters)."""
    return cache_dir / f"debian-{suite}-{variant}-{_key(suite, variant, include, mirror)}.tar"


def is_fresh(path: Path, max_age: float = WEEK) -> bool:
    try:
        return time.time() - path.stat().st_mtime < max_age
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # blocks: a concurrent build of the same tarball finishes first
        yield


def tarball(suite: str, *, variant: str = "minbase", include: Sequence[str] = BASE_INCLUDE,
            mirror: str = MIRROR, cache_dir: Path = CACHE_DIR, max_age: float = WEEK,
            rebuild: bool = False, log: Path | None = None) -> Path:
    """The cached tarball of a fresh `suite` rootfs, built first if missing, stale or `rebuild`.

    debootstrap's output goes to `log` (default: stderr). The tar is written beside its final
    name and renamed, so an interrupted build never leaves a half tarball in the cache."""
    out = tarball_path(suite, variant=variant, include=include, mirror=mirror, cache_dir=cache_dir)
    with _locked(out.with_suffix(".lock")):
        if not rebuild and is_fresh(out, max_age):
            return out
        debootstrap = shutil.which("debootstrap", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
        if debootstrap is None:
            raise RootfsError("debootstrap not found: install it (apt-get install debootstrap; "
                              "scripts/install.sh does)")
        work = Path(tempfile.mkdtemp(prefix=f".build-{suite}-", dir=out.parent))
        try:
            root = work / "root"
            argv = [debootstrap, f"--variant={variant}", "--merged-usr"]
            if include:
                argv.append("--include=" + ",".join(include))
            argv += [suite, str(root), mirror]
            with open(log, "ab") if log else contextlib.nullcontext(sys.stderr.buffer) as sink:
                res = subprocess.run(argv, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
            if res.returncode:
                raise RootfsError(f"debootstrap {suite} failed (exit {res.returncode}); see "
                                  f"{log or 'its output above'} and {root}/debootstrap/debootstrap.log")
            _finish(root, suite, mirror)
            part = out.with_name(out.name + ".part")
            subprocess.run(["tar", "--numeric-owner", "--xattrs", "--acls", "-C", str(root), "-cpf", str(part), "."],
                           check=True)
            part.replace(out)
        except subprocess.CalledProcessError as e:
            raise RootfsError(f"packing the {suite} rootfs failed: {e}") from e
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return out


def _finish(root: Path, suite: str, mirror: str) -> None:
    """What the installer of a real Debian machine adds: the updates and security suites, a
    hostname, a machine-id (as the installer writes one); no apt caches in the tarball. Without
    a machine-id the boot is a first boot, whose `systemctl preset-all` enables systemd-networkd
    and its wait-online - which a machine with only loopback waits 2 minutes for."""
    (root / "etc/apt/sources.list").write_text(
        f"deb {mirror} {suite} main\n"
        f"deb {mirror} {suite}-updates main\n"
        f"deb {SECURITY_MIRROR} {suite}-security main\n")
    (root / "etc/hostname").write_text(f"fresh-{suite}\n")
    machine_id = root / "etc/machine-id"
    if not re.fullmatch(r"[0-9a-f]{32}\n?", machine_id.read_text() if machine_id.exists() else ""):
        machine_id.write_text(uuid.uuid4().hex + "\n")
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (root / cache).glob("*"):
            if entry.is_file():
                entry.unlink()


def unpack(tar: Path, dest: Path) -> None:
    """Unpack a tarball into `dest`, which must not exist yet (its parent must)."""
    dest.mkdir(mode=0o755)
    try:
        subprocess.run(["tar", "--numeric-owner", "--xattrs", "--acls", "-C", str(dest), "-xpf", str(tar)],
                       check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as e:
        raise RootfsError(f"unpacking {tar} into {dest} failed: {e.stderr.strip()}") from e


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m supervisor.lab.rootfs", description=__doc__.splitlines()[0])
    ap.add_argument("suite", help="Debian suite: bookworm, trixie, ...")
    ap.add_argument("--variant", default="minbase", help="debootstrap variant (default: minbase)")
    ap.add_argument("--include", default=",".join(BASE_INCLUDE),
                    help=f"comma-separated extra packages (default: {','.join(BASE_INCLUDE)})")
    ap.add_argument("--mirror", default=MIRROR)
    ap.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    ap.add_argument("--max-age-days", type=float, default=7.0, help="rebuild when older (default: 7)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild even when the cached one is fresh")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("rootfs: debootstrap needs root", file=sys.stderr)
        return 1
    try:
        path = tarball(args.suite, variant=args.variant, include=tuple(filter(None, args.include.split(","))),
                       mirror=args.mirror, cache_dir=args.cache_dir, max_age=args.max_age_days * 86400,
                       rebuild=args.rebuild)
    except RootfsError as e:
        print(f"rootfs: error: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
