"""Kubernetes YAML -> pod model: what is honoured, what is warned about, and errors that name
file, line and YAML path."""
from __future__ import annotations

import textwrap

import pytest

from supervisor.pods import kube, quantity
from supervisor.pods.model import DefinitionError, Readiness, Restart

BLOG = """\
apiVersion: v1
kind: Pod
metadata:
  name: blog
  labels: {app: blog}
  annotations:
    podvisor.io/readiness.worker: container
    podvisor.io/start-timeout: "120"
    note: kept
spec:
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 5
  containers:
  - name: web
    image: localhost/web:1
    command: [httpd, -f]
    args: ["-p", "80"]
    env:
    - {name: GREETING, value: hello world}
    - {name: EMPTY}
    ports:
    - {containerPort: 80, hostPort: 8080, name: http}
    - {containerPort: 53, hostPort: 5353, protocol: UDP, hostIP: 127.0.0.1}
    volumeMounts:
    - {name: data, mountPath: /data, readOnly: true}
    - {name: cache, mountPath: /cache}
    resources:
      limits: {memory: 64Mi, cpu: 500m}
      requests: {memory: 32Mi, cpu: "0.25"}
    readinessProbe:
      httpGet: {path: /healthz, port: http, httpHeaders: [{name: X-Probe, value: "1"}]}
      initialDelaySeconds: 2
      periodSeconds: 3
  - name: worker
    image: localhost/worker:1
    imagePullPolicy: IfNotPresent
  volumes:
  - {name: data, hostPath: {path: /srv/blog, type: DirectoryOrCreate}}
  - {name: cache, emptyDir: {medium: Memory, sizeLimit: 16Mi}}
"""


def load(text: str, source: str = "blog.yaml") -> tuple:
    return kube.load_text(textwrap.dedent(text), source)


def error(text: str) -> str:
    with pytest.raises(DefinitionError) as e:
        load(text)
    return str(e.value)


def test_blog_pod() -> None:
    [pod], warnings = load(BLOG)
    assert warnings == []
    assert pod.name == "blog" and pod.restart is Restart.ON_FAILURE and pod.stop_timeout == 5
    web, worker = pod.containers
    assert web.entrypoint == ("httpd", "-f") and web.args == ("-p", "80")
    assert web.env == (("GREETING", "hello world"), ("EMPTY", ""))
    assert web.readiness is Readiness.HEALTHY and web.probe is not None
    assert (web.probe.kind, web.probe.port, web.probe.path, web.probe.headers) == ("http", 80, "/healthz", (("X-Probe", "1"),))
    assert (web.probe.initial_delay, web.probe.period) == (2.0, 3.0)
    assert web.resources.memory_limit == 64 * 2 ** 20 and web.resources.cpu_limit == 500
    assert web.resources.memory_request == 32 * 2 ** 20 and web.resources.cpu_request == 250
    assert web.start_timeout == 120.0 and web.annotations == (("note", "kept"),)
    assert worker.readiness is Readiness.CONTAINER and worker.pull == "missing"
    assert [(p.host_port, p.container_port, p.protocol, p.host_ip) for p in pod.ports] == \
        [(8080, 80, "tcp", ""), (5353, 53, "udp", "127.0.0.1")]
    assert [(v.name, v.kind) for v in pod.volumes] == [("data", "hostPath"), ("cache", "emptyDir")]
    assert pod.volumes[1].size_limit == 16 * 2 ** 20
    assert pod.wanted_by == ("multi-user.target",)


def test_deployment_with_one_replica() -> None:
    [pod], _ = load("""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: app, annotations: {podvisor.io/readiness: container}}
        spec:
          replicas: 1
          selector: {matchLabels: {app: x}}
          strategy: {type: Recreate}
          template:
            metadata: {labels: {app: x}}
            spec:
              containers: [{name: c, image: img}]
        """)
    assert pod.name == "app" and pod.containers[0].readiness is Readiness.CONTAINER
    assert pod.labels == (("app", "x"),)


def test_multi_document_and_empty_documents() -> None:
    pods, _ = load("---\n" + BLOG + "---\n---\n" + BLOG.replace("name: blog", "name: blog2"))
    assert [p.name for p in pods] == ["blog", "blog2"]


@pytest.mark.parametrize("text, expected", [
    ("kind: Pod\napiVersion: v1\nmetadata: {name: a}\nspec: {containers: [{name: c, image: i}]}\n: x\n  - y",
     "blog.yaml:5: malformed YAML"),
    ("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n", "blog.yaml:2: kind: unknown kind 'Service'"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n  - {name: c, image: i}\n  - {name: c, image: j}\n",
     "blog.yaml:7: spec.containers[1].name: duplicate container name 'c'"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: 'a b'}\nspec: {containers: [{name: c, image: i}]}\n",
     "blog.yaml:3: metadata.name: 'a b' is not a valid pod name"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c@x, image: i}]}\n",
     "spec.containers[0].name: 'c@x' is not a valid container name"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: infra, image: i}]}\n",
     "'infra' is reserved"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n  - name: c\n    image: i\n"
     "    ports:\n    - {containerPort: 80, hostPort: 70000}\n",
     "blog.yaml:9: spec.containers[0].ports[0].hostPort: 70000 is out of range"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n  - name: c\n    image: i\n"
     "    ports: [{containerPort: 80, hostPort: 80}]\n  - name: d\n    image: i\n"
     "    ports: [{containerPort: 81, hostPort: 80}]\n",
     "spec.containers[1].ports[0].hostPort: host port 80/tcp is already published by this pod"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c, image: i, args: [-p, 80]}]}\n",
     "spec.containers[0].args[1]: expected a string, got a number (quote it: \"80\")"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c, image: i, imagePolicy: x}]}\n",
     "spec.containers[0].imagePolicy: unknown or unsupported field"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: a, name: b}\nspec: {containers: [{name: c, image: i}]}\n",
     "metadata.name: duplicate key"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers: [{name: c, image: i, volumeMounts: [{name: v, mountPath: /v}]}]\n",
     "spec.containers[0].volumeMounts[0].name: no volume named 'v'"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers: [{name: c, image: i}]\n"
     "  volumes: [{name: v, configMap: {name: x}}]\n", "spec.volumes[0].configMap: volume type 'configMap' is not supported"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers: [{name: c, image: i, env: [{name: X, valueFrom: {}}]}]\n",
     "spec.containers[0].env[0].valueFrom: valueFrom is not supported"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: a, annotations: {podvisor.io/readines: healthy}}\n"
     "spec: {containers: [{name: c, image: i}]}\n", "unknown podvisor option 'readines'"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: a, annotations: {podvisor.io/readiness: healthy}}\n"
     "spec: {containers: [{name: c, image: i}]}\n", "readiness 'healthy' needs a readinessProbe"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: a, annotations: {podvisor.io/readiness.d: container}}\n"
     "spec: {containers: [{name: c, image: i}]}\n", "names container 'd', which the pod does not have"),
    ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec:\n  replicas: 3\n"
     "  template: {spec: {containers: [{name: c, image: i}]}}\n", "spec.replicas: podvisor runs exactly one replica"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c, image: i, resources: {limits: {memory: lots}}}]}\n",
     "spec.containers[0].resources.limits.memory: 'lots' is not a quantity"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c, image: i, resources: {limits: {nvidia.com/gpu: 1}}}]}\n",
     "resources.limits.nvidia.com/gpu: unknown or unsupported field"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c, image: i, readinessProbe: {grpc: {port: 1, host: h}}}]}\n",
     "readinessProbe.grpc.host: unknown or unsupported field"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c, image: i, command: [\"a\\0b\"]}]}\n",
     "spec.containers[0].command[0]: value contains a NUL character"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c, image: i, env: [{name: Q, value: \"\\uFFFE\"}]}]}\n",
     "spec.containers[0].env[0].value: value contains U+FFFE, a Unicode non-character, which systemd refuses"),
    ("- just\n- a list\n", "expected a Kubernetes object"),
    ("", "no Pod or Deployment in this file"),
    ("a: &x [*x]\n", "recursive YAML alias"),
])
def test_errors_name_file_line_and_field(text: str, expected: str) -> None:
    assert expected in error(text)


def test_warnings_name_what_is_ignored() -> None:
    _, warnings = load("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: a, namespace: prod, creationTimestamp: "2026-01-01T00:00:00Z"}
        spec:
          nodeSelector: {disk: ssd}
          containers:
          - name: c
            image: i
            tty: true
            readinessProbe: {exec: {command: [ok]}, failureThreshold: 5}
        status: {phase: Running}
        """)
    text = "\n".join(str(w) for w in warnings)
    for fragment in ("metadata.namespace", "metadata.creationTimestamp", "spec.nodeSelector",
                     "spec.containers[0].tty", "readinessProbe.failureThreshold", "status"):
        assert fragment in text, text


def test_probe_ignored_when_readiness_chosen_otherwise() -> None:
    [pod], warnings = load("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: a, annotations: {podvisor.io/readiness.c: conmon}}
        spec: {containers: [{name: c, image: i, readinessProbe: {tcpSocket: {port: 5}}}]}
        """)
    assert pod.containers[0].probe is None and pod.containers[0].readiness is Readiness.CONMON
    assert "ignored" in str(warnings[0]) and "readinessProbe" in str(warnings[0])


def test_security_context_becomes_podman_options() -> None:
    [pod], _ = load("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: a}
        spec:
          containers:
          - name: c
            image: i
            securityContext:
              capabilities: {drop: [CAP_MKNOD, CAP_NET_RAW]}
              runAsUser: 1000
              runAsGroup: 100
              readOnlyRootFilesystem: true
              allowPrivilegeEscalation: false
        """)
    assert pod.containers[0].podman_args == ("--cap-drop=CAP_MKNOD", "--cap-drop=CAP_NET_RAW", "--user=1000:100",
                                             "--read-only", "--security-opt=no-new-privileges")


def test_host_network_publishes_nothing() -> None:
    [pod], _ = load("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: a}
        spec:
          hostNetwork: true
          containers: [{name: c, image: i, ports: [{containerPort: 80, hostPort: 80}]}]
        """)
    assert pod.network == ("host",) and pod.ports[0].host_port is None


@pytest.mark.parametrize("value, expected", [("64Mi", 64 * 2 ** 20), ("1G", 10 ** 9), ("129e6", 129 * 10 ** 6),
                                             (1024, 1024), ("1.5Ki", 1536), ("0.1", 1)])
def test_memory_quantities(value: object, expected: int) -> None:
    assert quantity.memory_bytes(value) == expected


@pytest.mark.parametrize("value, expected", [("500m", 500), ("0.5", 500), (2, 2000), ("1.25", 1250)])
def test_cpu_quantities(value: object, expected: int) -> None:
    assert quantity.millicores(value) == expected
    assert quantity.cpus(expected) == {500: "0.5", 2000: "2", 1250: "1.25"}[expected]


@pytest.mark.parametrize("bad", ["", "1.2.3", "5 Mi", "-1", "0", True, "0.0001"])
def test_bad_cpu(bad: object) -> None:
    with pytest.raises(ValueError):
        quantity.millicores(bad)
