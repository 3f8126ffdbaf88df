"""Container images built locally from what Debian installed on this host (no registry is
reachable): a rootfs tar assembled from host files, then `podman import`.

- busybox: Debian's static busybox, one symlink per applet.
- blog: busybox plus Debian's nginx-light with the shared libraries ldd names, and the blog's
  files from units/blog/image/ (nginx configs for the site and for its reverse proxy).
"""
from __future__ import annotations

import io
import re
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

from . import checkout

BUSYBOX_IMAGE = "localhost/podvisor-busybox:latest"
BLOG_IMAGE = "localhost/podvisor-blog:latest"
BUSYBOX_BINARY = "/bin/busybox"  # Debian's busybox-static: no shared libraries
NGINX_BINARY = "/usr/sbin/nginx"  # Debian's nginx-light
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# podman <args...> with bytes on stdin -> CompletedProcess (PodmanEnv.run, or a sandbox's)
PodmanRun = Callable[..., subprocess.CompletedProcess[bytes]]


class Rootfs:
    """An image's files, written as a tar in memory (fixed mtime: same input, same bytes)."""

    MTIME = 1_700_000_000

    def __init__(self) -> None:
        self._buf = io.BytesIO()
        self._tar = tarfile.open(fileobj=self._buf, mode="w")
        self._seen: set[str] = set()

    def _add(self, path: str, kind: bytes, mode: int, data: bytes = b"", target: str = "") -> None:
        path = path.lstrip("/")
        if path in self._seen:
            return
        parent = path.rpartition("/")[0]
        if parent and parent not in self._seen:
            self.dir(parent)
        self._seen.add(path)
        info = tarfile.TarInfo(path)
        info.type, info.mode, info.mtime, info.linkname, info.size = kind, mode, self.MTIME, target, len(data)
        self._tar.addfile(info, io.BytesIO(data) if data else None)

    def dir(self, path: str, mode: int = 0o755) -> None:
        self._add(path, tarfile.DIRTYPE, mode)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._add(path, tarfile.REGTYPE, mode, data)

    def symlink(self, path: str, target: str) -> None:
        self._add(path, tarfile.SYMTYPE, 0o777, target=target)

    def host_file(self, host: str | Path, path: str | None = None, mode: int | None = None) -> None:
        """A host file's content at `path` (default: the same path); symlinks are followed."""
        src = Path(host)
        self.file(path or str(src), src.read_bytes(), mode if mode is not None else src.stat().st_mode & 0o7777)

    def host_tree(self, root: Path, prefix: str = "") -> None:
        for src in sorted(root.rglob("*")):
            rel = f"{prefix}/{src.relative_to(root)}"
            if src.is_dir():
                self.dir(rel)
            else:
                self.host_file(src, rel, 0o644)

    def binary_with_libraries(self, binary: str) -> None:
        """A dynamically linked host binary and every library ldd resolves for it."""
        self.host_file(binary)
        out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
        for lib in re.findall(r"(/\S+\.so[.\d]*)", out):
            real = Path(lib).resolve()
            self.host_file(real, str(real), 0o755)
            if str(real) != lib:
                self.symlink(lib, str(real))

    def tar(self) -> bytes:
        self._tar.close()
        return self._buf.getvalue()


def busybox_rootfs() -> Rootfs:
    fs = Rootfs()
    for d in ("bin", "etc", "proc", "sys", "dev", "root", "var", "run", "home", "usr/bin", "usr/sbin"):
        fs.dir(d)
    fs.dir("tmp", 0o1777)
    fs.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    fs.file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    fs.host_file(BUSYBOX_BINARY, "bin/busybox", 0o755)
    applets = subprocess.run([BUSYBOX_BINARY, "--list"], check=True, capture_output=True,
                             text=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            fs.symlink(f"bin/{applet}", "busybox")
    return fs


def blog_rootfs() -> Rootfs:
    fs = busybox_rootfs()
    fs.binary_with_libraries(NGINX_BINARY)
    fs.host_tree(checkout.path("units", "blog", "image"))
    return fs


RECIPES: dict[str, Callable[[], Rootfs]] = {BUSYBOX_IMAGE: busybox_rootfs, BLOG_IMAGE: blog_rootfs}
# nginx stops gracefully on SIGQUIT (finishes the requests it accepted; SIGTERM drops them), as
# the official nginx image says: no request is lost when a socket-activated blog restarts
EXTRA_CHANGES: dict[str, tuple[str, ...]] = {BLOG_IMAGE: ("STOPSIGNAL=SIGQUIT",)}


def ensure_image(podman: PodmanRun, name: str, *, rebuild: bool = False) -> str:
    """Import image `name` through `podman(...)` unless it already exists."""
    if not rebuild and podman("image", "exists", name, check=False).returncode == 0:
        return name
    tar = RECIPES[name]().tar()
    # PATH too: `podman run` supplies a default one, `kube play` only uses the image's
    changes = [a for c in EXTRA_CHANGES.get(name, ()) for a in ("--change", c)]
    podman("import", "--change", "CMD=/bin/sh", "--change", f"ENV=PATH={IMAGE_PATH}", *changes, "-", name,
           input=tar)
    return name
