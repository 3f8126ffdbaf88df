"""units/blog/generated/ is exactly what `podvisor generate` makes of units/blog/blog.yaml
(with units/blog/generator.toml's fixed paths): edit the definition, regenerate, commit both.
(--no-verify: the pinned /usr/local/bin paths need not exist here; installs verify with
their own paths, and tests/systemd/test_blog_pod.py runs the real thing.)"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BLOG = REPO / "units" / "blog"
ARGS = ["generate", "units/blog/blog.yaml", "--settings", "units/blog/generator.toml",
        "--no-host-checks", "--no-verify", "-o"]
REGENERATE = "podvisor " + " ".join(ARGS) + " units/blog/generated"


def test_committed_blog_units_are_current(tmp_path: Path) -> None:
    podvisor = Path(sys.executable).with_name("podvisor")
    subprocess.run([str(podvisor), *ARGS, str(tmp_path)], cwd=REPO, check=True,
                   capture_output=True, text=True)
    committed = {p.name: p.read_bytes() for p in (BLOG / "generated").iterdir()}
    fresh = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert set(fresh) == {"pod-blog.service", "pod-blog@infra.service", "pod-blog@web.service",
                          "pod-blog@proxy.service"}
    assert sorted(fresh) == sorted(committed), f"regenerate: {REGENERATE}"
    for name, data in fresh.items():
        assert committed[name] == data, f"{name} is stale; regenerate: {REGENERATE}"


SOCKETS = REPO / "units" / "blog-sockets"
SOCKETS_ARGS = ["generate", "units/blog-sockets/blog.yaml", "--settings", "units/blog-sockets/generator.toml",
                "--no-host-checks", "--no-verify", "-o"]


def test_committed_socket_activated_blog_units_are_current(tmp_path: Path) -> None:
    """units/blog-sockets/generated/ likewise (the blog, socket-activated)."""
    regenerate = "podvisor " + " ".join(SOCKETS_ARGS) + " units/blog-sockets/generated"
    podvisor = Path(sys.executable).with_name("podvisor")
    subprocess.run([str(podvisor), *SOCKETS_ARGS, str(tmp_path)], cwd=REPO, check=True,
                   capture_output=True, text=True)
    committed = {p.name: p.read_bytes() for p in (SOCKETS / "generated").iterdir()}
    fresh = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert set(fresh) == {"pod-blog.service", "pod-blog@infra.service", "pod-blog@web.service",
                          "pod-blog@proxy.service", "pod-blog@proxy.socket", "pod-blog-sockets.target"}
    assert sorted(fresh) == sorted(committed), f"regenerate: {regenerate}"
    for name, data in fresh.items():
        assert committed[name] == data, f"{name} is stale; regenerate: {regenerate}"
