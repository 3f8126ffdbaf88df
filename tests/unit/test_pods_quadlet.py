"""Quadlet-style .pod/.container files -> pod model."""
from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.pods import load, quadlet
from supervisor.pods.model import DefinitionError, Readiness, Verbatim


def write(d: Path, name: str, text: str) -> Path:
    p = d / name
    p.write_text(text)
    return p


@pytest.fixture
def blog(tmp_path: Path) -> Path:
    write(tmp_path, "blog.pod", """\
[Unit]
Description=The blog
After=db.service

[Pod]
PodName=blog
PublishPort=127.0.0.1:8080:80
Label=app=blog "tier=front end"
DNS=10.0.0.1

[Service]
Restart=on-failure

[Install]
WantedBy=multi-user.target
""")
    write(tmp_path, "web.container", """\
# the web server
[Container]
Image=localhost/web:1
Pod=blog.pod
Exec=httpd -f -p 80 "a b" \\; 100%%
Environment=A=1 "B=two words" HOMEDIR=%h
Volume=/srv/www:/srv:ro,z
Volume=cache:/cache
Volume=/anon
Notify=healthy
HealthCmd=wget -q -O /dev/null http://127.0.0.1/
HealthInterval=2s
AddCapability=NET_ADMIN SYS_TIME
ReadOnly=yes
User=1000
Group=100

[Service]
TimeoutStartSec=30
""")
    write(tmp_path, "worker.container", "[Container]\nImage=localhost/worker:1\nPod=blog.pod\nNotify=yes\n")
    write(tmp_path, "other.container", "[Container]\nImage=localhost/other\nPod=other.pod\n")
    return tmp_path


def test_pod_with_members(blog: Path) -> None:
    [pod], _ = load(str(blog / "blog.pod"))
    assert pod.name == "blog"
    assert [c.name for c in pod.containers] == ["web", "worker"]  # other.container is not a member
    assert [(p.host_ip, p.host_port, p.container_port) for p in pod.ports] == [("127.0.0.1", 8080, 80)]
    assert pod.labels == (("app", "blog"), ("tier", "front end"))
    assert pod.podman_args == ("--dns=10.0.0.1",)
    assert pod.unit_lines.unit == (("Description", "The blog"), ("After", "db.service"))
    assert pod.unit_lines.install == (("WantedBy", "multi-user.target"),)
    assert pod.infra_lines.service == (("Restart", "on-failure"),)
    web, worker = pod.containers
    assert web.args == ("httpd", "-f", "-p", "80", "a b", ";", "100%%")
    assert all(isinstance(a, Verbatim) for a in web.args)  # % and $ stay systemd's business
    assert web.env == (("A", "1"), ("B", "two words"), ("HOMEDIR", "%h"))
    assert web.readiness is Readiness.HEALTHY and web.probe is not None
    assert web.probe.command == ("/bin/sh", "-c", "wget -q -O /dev/null http://127.0.0.1/") and web.probe.period == 2.0
    assert "--cap-add=NET_ADMIN" in web.podman_args and "--cap-add=SYS_TIME" in web.podman_args
    assert web.podman_args[0] == "--user=1000:100" and "--read-only" in web.podman_args
    assert "--volume=/anon" in web.podman_args
    kinds = {pod.volume(m.volume).kind: (m.path, m.read_only, m.options) for m in web.mounts}  # type: ignore[union-attr]
    assert kinds == {"hostPath": ("/srv", True, ("z",)), "named": ("/cache", False, ())}
    assert web.unit_lines.service == (("TimeoutStartSec", "30"),)
    assert worker.readiness is Readiness.CONTAINER


def test_standalone_container_is_its_own_pod(tmp_path: Path) -> None:
    p = write(tmp_path, "solo.container", "[Container]\nImage=i\nPublishPort=9000:9000/udp\n"
                                          "[Install]\nWantedBy=default.target\n")
    [pod], _ = load(str(p))
    assert pod.name == "solo" and [c.name for c in pod.containers] == ["solo"]
    assert pod.ports[0].protocol == "udp" and pod.unit_lines.install == (("WantedBy", "default.target"),)


def test_member_file_points_to_its_pod(blog: Path) -> None:
    with pytest.raises(DefinitionError, match=r"belongs to blog\.pod"):
        load(str(blog / "web.container"))


@pytest.mark.parametrize("text, expected", [
    ("[Container]\nImage=i\nBogus=1\n", "x.container:3: Bogus: unknown or unsupported key in [Container]"),
    ("[Container]\nImage=i\nGlobalArgs=--root=/x\n", "GlobalArgs: not supported: podman's global flags"),
    ("[Container]\nExec=true\n", "Image: missing"),
    ("[Container]\nImage=i\n[Service]\nType=simple\n", "x.container:4: [Service] Type: set by podvisor"),
    ("[Container]\nImage=i\n[Service]\nEnvironment=CONTAINERS_CONF=/x\n", "CONTAINERS_CONF is set by podvisor"),
    ("[Container]\nImage=i\nNotify=healthy\n", "Notify=healthy needs HealthCmd="),
    ("[Container]\nImage=i\nPublishPort=1000-1010:1000-1010\n", "ranges and random host ports: use PodmanArgs="),
    ("[Container]\nImage=i\nExec=\"unterminated\n", "x.container:3: Exec: unbalanced quotes"),
    ("[Container]\nImage=i\nVolume=x.volume:/d\n", ".volume units are not supported"),
    ("[Container]\nImage=i\n[Weird]\nA=b\n", "x.container:3: unsupported section [Weird]"),
    ("Image=i\n", "assignment outside of any section"),
    ("[Unit]\nDescription=x\n", "no [Container] section"),
    ("[Container]\nImage=i\nContainerName=bad.name\n", "'bad.name' is not a valid container name"),
])
def test_errors(tmp_path: Path, text: str, expected: str) -> None:
    p = write(tmp_path, "x.container", text)
    with pytest.raises(DefinitionError) as e:
        load(str(p))
    assert expected in str(e.value)


def test_member_settings_that_belong_to_the_pod(blog: Path) -> None:
    write(blog, "extra.container", "[Container]\nImage=i\nPod=blog.pod\nPublishPort=1:1\n")
    with pytest.raises(DefinitionError, match=r"share its network: set PublishPort= in blog\.pod"):
        load(str(blog / "blog.pod"))


def test_load_directory_reports_per_file(blog: Path) -> None:
    write(blog, "broken.container", "[Container]\nBogus=1\n")
    results = {p.name: r for p, r, _ in quadlet.load_directory(blog)}
    assert isinstance(results["broken.container"], DefinitionError)
    assert isinstance(results["other.container"], DefinitionError)  # its pod does not exist
    assert [p.name for p in results["blog.pod"]] == ["blog"]  # type: ignore[union-attr]
    assert "web.container" not in results  # loaded with blog.pod


def test_health_exec_form(tmp_path: Path) -> None:
    p = write(tmp_path, "h.container", '[Container]\nImage=i\nNotify=healthy\nHealthCmd=["CMD", "test", "-e", "/ok"]\n'
                                       "HealthTimeout=1m30s\n")
    [pod], _ = load(str(p))
    probe = pod.containers[0].probe
    assert probe is not None and probe.command == ("test", "-e", "/ok") and probe.timeout == 90.0
