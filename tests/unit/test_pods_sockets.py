"""Socket activation definitions -> the pod model: the annotation and the Quadlet .socket file,
and misconfigurations as errors naming file, line and path."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from supervisor.pods import kube, load
from supervisor.pods.model import DefinitionError, Verbatim

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: shop
  annotations:
{annotations}
spec:
  containers:
  - name: web
    image: localhost/web:1
    ports:
    - {{containerPort: 80, hostPort: 8080, name: http}}
    - {{containerPort: 443, hostPort: 8443, hostIP: "::1"}}
    - {{containerPort: 53, hostPort: 5353, protocol: UDP, hostIP: 127.0.0.1}}
    - {{containerPort: 9000}}
  - name: api
    image: localhost/api:1
    ports:
    - {{containerPort: 9090, hostPort: 9090}}
    - {{containerPort: 80, hostPort: 8081}}
"""


def load_kube(annotations: dict[str, str]) -> tuple:
    text = POD.format(annotations="\n".join(f"    {k}: {v!r}" for k, v in annotations.items()) or "    {}")
    return kube.load_text(text, "shop.yaml")


def error(annotations: dict[str, str]) -> str:
    with pytest.raises(DefinitionError) as e:
        load_kube(annotations)
    return str(e.value)


def test_annotation_per_container() -> None:
    pods, _ = load_kube({"podvisor.io/socket-activation.web": "http 443, 53/udp"})
    (pod,) = pods
    (s,) = pod.sockets
    assert s.container == "web"
    # definition order (= fd order), whatever order the annotation names them in
    assert [(lst.kind, lst.address) for lst in s.listens] == [
        ("ListenStream", "0.0.0.0:8080"), ("ListenStream", "[::1]:8443"), ("ListenDatagram", "127.0.0.1:5353")]
    # activated ports are systemd's: not published; the rest still is
    assert sorted(p.host_port for p in pod.ports if p.host_port) == [8081, 9090]


def test_annotation_pod_wide_finds_the_owner_and_all() -> None:
    (pod,), _ = load_kube({"podvisor.io/socket-activation": "9090"})
    assert [(s.container, [lst.address for lst in s.listens]) for s in pod.sockets] == [("api", ["0.0.0.0:9090"])]
    (pod,), _ = load_kube({"podvisor.io/socket-activation.api": "all"})
    assert [lst.address for lst in pod.sockets[0].listens] == ["0.0.0.0:9090", "0.0.0.0:8081"]
    assert all(p.host_port is None for p in pod.ports if p.container_port in (9090,))


@pytest.mark.parametrize("annotations, message", [
    ({"podvisor.io/socket-activation.web": "8080"}, "shop.yaml:5: metadata.annotations.podvisor.io/socket-activation.web: "
                                                     "port 8080 is not declared by container 'web'"),
    ({"podvisor.io/socket-activation.web": "53/tcp"}, "shop.yaml:5: metadata.annotations.podvisor.io/socket-activation.web: "
                                                       "'53/tcp': port 53 is declared as UDP, not TCP (a stream socket needs TCP)"),
    ({"podvisor.io/socket-activation": "80"}, "'80' is declared by containers api and web: one port, one socket"),
    ({"podvisor.io/socket-activation.web": "9000"}, "shop.yaml:15: spec.containers[0].ports[3].hostPort: port 9000 is "
                                                     "socket-activated"),
    ({"podvisor.io/socket-activation.web": "nope"}, "no port named 'nope' is declared"),
    ({"podvisor.io/socket-activation.web": ""}, "expected port numbers"),
    ({"podvisor.io/socket-activation.db": "80"}, "annotation names container 'db', which the pod does not have"),
    ({"podvisor.io/socket-activation.web": "80 http"}, "names port 80 twice"),
])
def test_annotation_errors(annotations: dict[str, str], message: str) -> None:
    assert message in error(annotations)


def test_two_containers_claiming_one_address() -> None:
    text = textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata:
          name: dup
          annotations: {podvisor.io/socket-activation: all}
        spec:
          containers:
          - name: a
            image: i
            ports: [{containerPort: 80, hostPort: 8080}]
          - name: b
            image: i
            ports: [{containerPort: 81, hostPort: 8080, hostIP: 127.0.0.1}]
        """)
    with pytest.raises(DefinitionError) as e:
        kube.load_text(text, "dup.yaml")
    assert "127.0.0.1:8080 is already claimed by container 'a'" in str(e.value)


def test_probe_on_an_activated_port_is_an_error() -> None:
    text = POD.format(annotations="    podvisor.io/socket-activation.api: '9090'").replace(
        "    image: localhost/api:1\n", "    image: localhost/api:1\n    readinessProbe: {tcpSocket: {port: 9090}}\n")
    with pytest.raises(DefinitionError) as e:
        kube.load_text(text, "shop.yaml")
    assert "spec.containers[1].readinessProbe: probes port 9090, which is socket-activated" in str(e.value)


def test_network_none_with_published_ports_is_an_error() -> None:
    msg = error({"podvisor.io/network": "none", "podvisor.io/socket-activation.web": "all"})
    assert "spec.containers[1].ports[0].hostPort: network none cannot publish ports" in msg
    (pod,), _ = load_kube({"podvisor.io/network": "none", "podvisor.io/socket-activation": "all"})
    assert not [p for p in pod.ports if p.host_port] and {s.container for s in pod.sockets} == {"web", "api"}


# --------------------------------------------------------------------------- Quadlet


def write(d: Path, name: str, text: str) -> Path:
    p = d / name
    p.write_text(text)
    return p


def test_quadlet_socket_beside_a_pod_member(tmp_path: Path) -> None:
    write(tmp_path, "shop.pod", "[Pod]\nPublishPort=9090:9090\n")
    write(tmp_path, "web.container", "[Container]\nImage=i\nPod=shop.pod\n")
    write(tmp_path, "web.socket", "[Unit]\nDescription=mine\n[Socket]\nListenStream=%t/web.sock\n"
                                  "ListenStream=[::]:8080\nListenDatagram=5353\nBacklog=16\n"
                                  "[Install]\nWantedBy=sockets.target\n")
    write(tmp_path, "db.container", "[Container]\nImage=i\nPod=shop.pod\n")
    (pod,), _ = load(str(tmp_path / "shop.pod"))
    (s,) = pod.sockets
    assert s.container == "web"
    assert [(lst.kind, lst.address) for lst in s.listens] == [
        ("ListenStream", "%t/web.sock"), ("ListenStream", "[::]:8080"), ("ListenDatagram", "5353")]
    assert all(isinstance(lst.address, Verbatim) for lst in s.listens)
    assert s.options == (("Backlog", "16"),)
    assert s.unit_lines.unit == (("Description", "mine"),) and s.unit_lines.install == (("WantedBy", "sockets.target"),)


@pytest.mark.parametrize("text, message", [
    ("[Socket]\nService=other.service\n", "web.socket:2: Service: not supported: a container's socket always"),
    ("[Socket]\nListenStream=80\nAccept=yes\n", "web.socket:3: Accept: not supported"),
    ("[Socket]\nBacklog=4\n", "web.socket: Socket: no ListenStream="),
    ("[Socket]\nListenStream=80\nBogus=1\n", "web.socket:3: Bogus: unknown or unsupported key in [Socket]"),
    ("[Service]\nType=simple\n", "web.socket:1: unsupported section [Service]"),
    ("[Socket]\nListenStream=\n", "web.socket:2: ListenStream: an empty value"),
    ("[Socket]\nListenStream=9090\n", "web.socket:2: ListenStream: 9090 is socket-activated and also published"),
])
def test_quadlet_socket_errors(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path, "web.container", "[Container]\nImage=i\nPublishPort=9090:90\n")
    write(tmp_path, "web.socket", text)
    with pytest.raises(DefinitionError) as e:
        load(str(tmp_path / "web.container"))
    assert message in str(e.value)


def test_quadlet_two_sockets_one_address(tmp_path: Path) -> None:
    write(tmp_path, "p.pod", "[Pod]\n")
    for name in ("a", "b"):
        write(tmp_path, f"{name}.container", "[Container]\nImage=i\nPod=p.pod\n")
        write(tmp_path, f"{name}.socket", "[Socket]\nListenStream=0.0.0.0:8080\n")
    with pytest.raises(DefinitionError) as e:
        load(str(tmp_path / "p.pod"))
    assert "b.socket:2: ListenStream: 0.0.0.0:8080 is already claimed by container 'a'" in str(e.value)
