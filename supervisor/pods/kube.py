"""Kubernetes YAML (Pod, Deployment with one replica) -> the pod model.

Every field is either honoured, warned about (named, with the reason), or an error. Unknown
fields are errors: a typo must not silently turn into a dropped setting. Strings are required
where Kubernetes requires them (``args: ["80"]``, not ``[80]``) so YAML's implicit typing
(``no`` -> false, ``0755`` -> 493) can't change what reaches the container.

podvisor options are annotations: ``podvisor.io/OPTION`` for the pod (or every container) and
``podvisor.io/OPTION.CONTAINER`` for one container; see OPTIONS.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from . import health, sockets, validate
from .kubecontainer import ContainerReader
from .kubefields import ANNOTATION_PREFIX
from .model import (
    Container,
    DefinitionError,
    Diagnostic,
    Loc,
    Pod,
    Port,
    Restart,
)
from .yamlnodes import Node, load_documents

# option -> (scope, help); scope "container" may also be given pod-wide as a default
OPTIONS = {
    "readiness": ("container", "conmon | container | healthy: when the container's unit is ready"),
    "start-timeout": ("container", "seconds (or 'infinity') the container may take to become ready"),
    "restart-sec": ("pod", "seconds systemd waits before restarting a container (default 5)"),
    "network": ("pod", "podman network(s) for the pod, comma-separated (`pod create --network`)"),
    **health.KUBE_OPTIONS,
    "wanted-by": ("pod", "space-separated targets whose start pulls the pod in (default multi-user.target)"),
    "socket-activation": ("container", "ports systemd listens on and passes to the container (pods/sockets.py)"),
}
DEFAULT_WANTED_BY = ("multi-user.target",)
DEFAULT_GRACE = 30  # Kubernetes' terminationGracePeriodSeconds default

_OUTPUT_ONLY = "output-only field, ignored"
_SCHEDULING = "scheduling field with no meaning on a single host, ignored"
_METADATA_IGNORED = {
    "namespace": "podvisor has no namespaces, ignored", "uid": _OUTPUT_ONLY,
    "creationTimestamp": _OUTPUT_ONLY, "resourceVersion": _OUTPUT_ONLY, "generation": _OUTPUT_ONLY,
    "managedFields": _OUTPUT_ONLY, "selfLink": _OUTPUT_ONLY, "ownerReferences": "ignored",
    "finalizers": "ignored", "generateName": "ignored: metadata.name is required",
}
_PODSPEC_IGNORED = {
    "automountServiceAccountToken": "no service accounts here, ignored",
    "enableServiceLinks": "no Kubernetes services here, ignored",
    "serviceAccountName": "no service accounts here, ignored",
    "serviceAccount": "no service accounts here, ignored",
    "dnsPolicy": "ignored: podman's DNS setup applies",
    "nodeName": _SCHEDULING, "nodeSelector": _SCHEDULING, "affinity": _SCHEDULING,
    "tolerations": _SCHEDULING, "schedulerName": _SCHEDULING, "priority": _SCHEDULING,
    "priorityClassName": _SCHEDULING, "preemptionPolicy": _SCHEDULING,
    "topologySpreadConstraints": _SCHEDULING, "runtimeClassName": "ignored: the runtime is podman's",
}
_DEPLOYMENT_IGNORED = {
    "strategy": "ignored: one replica, replaced in place",
    "minReadySeconds": "ignored", "revisionHistoryLimit": "ignored",
    "progressDeadlineSeconds": "ignored: the readiness timeout is podvisor.io/start-timeout",
    "paused": "ignored",
}


class _Reader(ContainerReader):
    """Reads one file: documents, metadata, the pod spec; containers in kubecontainer.py."""

    # ---- documents

    def document(self, doc: Node) -> Pod | None:
        top = doc.value
        if not isinstance(top, dict):
            raise DefinitionError(doc.loc, f"expected a Kubernetes object (a mapping), got {doc.kind()}")
        kind_node = top.get("kind")
        if kind_node is None:
            raise DefinitionError(doc.loc, "kind: missing (expected Pod or Deployment)")
        kind = self.string(kind_node)
        expected = {"Pod": "v1", "Deployment": "apps/v1"}
        if kind not in expected:
            raise DefinitionError(kind_node.loc, f"unknown kind {kind!r}: podvisor reads Pod and Deployment")
        fields = self.mapping(doc, {"apiVersion", "kind", "metadata", "spec", "status"})
        api = fields.get("apiVersion")
        if api is None or self.string(api) != expected[kind]:
            where = api.loc if api is not None else doc.loc.child("apiVersion")
            raise DefinitionError(where, f"a {kind} needs apiVersion: {expected[kind]}")
        if "status" in fields and fields["status"].value not in (None, {}):
            self.warn(fields["status"].loc, _OUTPUT_ONLY)
        if "metadata" not in fields:
            raise DefinitionError(doc.loc.child("metadata"), "missing (metadata.name names the pod)")
        meta = self.metadata(fields["metadata"])
        if "spec" not in fields:
            raise DefinitionError(doc.loc.child("spec"), "missing")
        if kind == "Deployment":
            return self.deployment(meta, fields["spec"])
        return self.pod(meta, fields["spec"], doc.loc)

    def metadata(self, node: Node) -> dict[str, Any]:
        fields = self.mapping(node, {"name", "labels", "annotations"}, _METADATA_IGNORED)
        if "name" not in fields:
            raise DefinitionError(node.loc.child("name"), "missing")
        name = self.string(fields["name"], allow_empty=False)
        validate.check_pod_name(name, fields["name"].loc)
        labels = self.string_map(fields["labels"]) if "labels" in fields else {}
        annotations = self.string_map(fields["annotations"]) if "annotations" in fields else {}
        ann_loc = fields["annotations"].loc if "annotations" in fields else node.loc.child("annotations")
        return {"name": name, "name_loc": fields["name"].loc, "labels": labels,
                "annotations": annotations, "annotations_loc": ann_loc}

    def deployment(self, meta: dict[str, Any], node: Node) -> Pod:
        fields = self.mapping(node, {"replicas", "selector", "template"}, _DEPLOYMENT_IGNORED)
        if "replicas" in fields and self.integer(fields["replicas"], 0, 2 ** 31) != 1:
            raise DefinitionError(fields["replicas"].loc, "podvisor runs exactly one replica (replicas: 1)")
        if "template" not in fields:
            raise DefinitionError(node.loc.child("template"), "missing")
        tmpl = self.mapping(fields["template"], {"metadata", "spec"})
        if "spec" not in tmpl:
            raise DefinitionError(fields["template"].loc.child("spec"), "missing")
        labels, annotations = dict(meta["labels"]), dict(meta["annotations"])
        ann_loc = meta["annotations_loc"]
        if "metadata" in tmpl:
            # the template's own name is meaningless: pods are named after the Deployment
            tm = self.mapping(tmpl["metadata"], {"labels", "annotations"},
                              {**_METADATA_IGNORED, "name": "ignored: the pod is named after the Deployment"})
            if "labels" in tm:
                labels.update(self.string_map(tm["labels"]))
            if "annotations" in tm:
                annotations.update(self.string_map(tm["annotations"]))
                ann_loc = tm["annotations"].loc
        if "selector" in fields:
            self.check_selector(fields["selector"], labels)
        meta = {**meta, "labels": labels, "annotations": annotations, "annotations_loc": ann_loc}
        return self.pod(meta, tmpl["spec"], fields["template"].loc)

    def check_selector(self, node: Node, labels: dict[str, str]) -> None:
        fields = self.mapping(node, {"matchLabels"}, {"matchExpressions": "ignored"})
        if "matchLabels" in fields:
            for k, v in self.string_map(fields["matchLabels"]).items():
                if labels.get(k) != v:
                    raise DefinitionError(fields["matchLabels"].value[k].loc,
                                          "selector does not match the template's labels")

    # ---- the pod

    def pod(self, meta: dict[str, Any], node: Node, loc: Loc) -> Pod:
        fields = self.mapping(node, {"containers", "restartPolicy", "volumes", "terminationGracePeriodSeconds",
                                     "hostname", "hostNetwork", "initContainers", "securityContext"},
                              _PODSPEC_IGNORED)
        name = meta["name"]
        options = self.annotations(meta["annotations"], meta["annotations_loc"])
        if "initContainers" in fields and self.items(fields["initContainers"]):
            raise DefinitionError(fields["initContainers"].loc, "init containers are not supported")
        if "securityContext" in fields and fields["securityContext"].value not in (None, {}):
            raise DefinitionError(fields["securityContext"].loc,
                                  "pod-level securityContext is not supported; set it per container")
        restart, grace = self.restart_policy(fields)
        host_network = "hostNetwork" in fields and self.boolean(fields["hostNetwork"])
        hostname = None
        if "hostname" in fields:
            hostname = self.string(fields["hostname"], allow_empty=False)
        volumes = tuple(self.volume(n) for n in self.items(fields["volumes"])) if "volumes" in fields else ()
        names = [v.name for v in volumes]
        for v in volumes:
            if names.count(v.name) > 1:
                raise DefinitionError(v.loc.child("name"), f"duplicate volume name {v.name!r}")
        if "containers" not in fields or not self.items(fields["containers"]):
            raise DefinitionError(node.loc.child("containers"), "a pod needs at least one container")
        container_nodes = self.items(fields["containers"])
        # names first, so per-container annotations can be checked against them
        ctr_names = [self.container_name(name, n) for n in container_nodes]
        for key, (_, aloc) in options.items():
            _, _, ctr = key.partition(".")
            if ctr and ctr not in ctr_names:
                raise DefinitionError(aloc, f"annotation names container {ctr!r}, which the pod does not have")
        containers, ports, by_container = self.containers(name, container_nodes, ctr_names, options, meta, grace)
        activated = sockets.from_kube(options, by_container)
        ports = sockets.published(ports, activated)
        network, ports = self.network(options, fields, host_network, ports)
        wanted_by: tuple[str, ...] = DEFAULT_WANTED_BY
        if "wanted-by" in options:
            wanted_by = tuple(options["wanted-by"][0].split())
        restart_sec = 5.0
        if "restart-sec" in options:
            restart_sec = self.seconds(*options["restart-sec"])
        pod = Pod(name=name, source=self.source, containers=tuple(containers), ports=tuple(ports),
                  volumes=volumes, restart=restart, restart_sec=restart_sec,
                  labels=tuple(sorted(meta["labels"].items())), hostname=hostname, network=network,
                  stop_timeout=grace, wanted_by=wanted_by, sockets=activated, loc=loc)
        validate.check(pod)
        return pod

    def restart_policy(self, fields: dict[str, Node]) -> tuple[Restart, int]:
        restart = Restart.ALWAYS
        if "restartPolicy" in fields:
            policies = {"Always": Restart.ALWAYS, "OnFailure": Restart.ON_FAILURE, "Never": Restart.NO}
            value = self.string(fields["restartPolicy"])
            if value not in policies:
                raise DefinitionError(fields["restartPolicy"].loc,
                                      f"{value!r}: expected Always, OnFailure or Never")
            restart = policies[value]
        grace = DEFAULT_GRACE
        if "terminationGracePeriodSeconds" in fields:
            grace = self.integer(fields["terminationGracePeriodSeconds"], 0, 86400)
        return restart, grace

    def containers(self, pod: str, nodes: list[Node], names: list[str], options: dict[str, tuple[str, Loc]],
                   meta: dict[str, Any], grace: int) -> tuple[list[Container], list[Port], dict[str, list[Port]]]:
        containers: list[Container] = []
        ports: list[Port] = []
        by_container: dict[str, list[Port]] = {}
        for n, cname in zip(nodes, names, strict=True):
            c, cports = self.container(pod, cname, n, options, meta, grace)
            containers.append(c)
            ports.extend(cports)
            by_container[cname] = cports
        return containers, ports, by_container

    def network(self, options: dict[str, tuple[str, Loc]], fields: dict[str, Node], host_network: bool,
                ports: list[Port]) -> tuple[tuple[str, ...], list[Port]]:
        network: tuple[str, ...] = ()
        if "network" in options:
            value, oloc = options["network"]
            network = tuple(w for w in value.split(",") if w)
            if not network or any(not w.strip() or w != w.strip() for w in network):
                raise DefinitionError(oloc, f"{value!r}: expected comma-separated network names")
        if host_network:
            if network:
                raise DefinitionError(fields["hostNetwork"].loc,
                                      f"conflicts with annotation {ANNOTATION_PREFIX}network")
            network = ("host",)
            for p in ports:
                if p.host_port is not None and p.host_port != p.container_port:
                    raise DefinitionError(p.loc.child("hostPort"),
                                          "with hostNetwork, hostPort must equal containerPort")
            # the container's ports are the host's: nothing to publish
            ports = [Port(p.container_port, None, p.protocol, p.host_ip, p.name, p.loc) for p in ports]
        return network, ports

    def annotations(self, annotations: dict[str, str], loc: Loc) -> dict[str, tuple[str, Loc]]:
        """podvisor.io/* annotations -> {"option" or "option.container": (value, loc)}."""
        out: dict[str, tuple[str, Loc]] = {}
        for key, value in sorted(annotations.items()):
            if not key.startswith(ANNOTATION_PREFIX):
                continue
            aloc = loc.child(key)
            rest = key[len(ANNOTATION_PREFIX):]
            opt, _, ctr = rest.partition(".")
            if opt not in OPTIONS:
                raise DefinitionError(aloc, f"unknown podvisor option {opt!r}; known: {', '.join(sorted(OPTIONS))}")
            if ctr and OPTIONS[opt][0] == "pod":
                raise DefinitionError(aloc, f"{opt} is a pod-wide option; drop '.{ctr}'")
            out[rest] = (value, aloc)
        return out


def load_text(text: str, source: str) -> tuple[list[Pod], list[Diagnostic]]:
    """Pods defined by the YAML `text` (file name `source` for messages)."""
    reader = _Reader(source)
    pods: list[Pod] = []
    for doc in load_documents(text, source):
        if doc.value is None:
            continue
        pod = reader.document(doc)
        if pod is None:
            continue
        if any(p.name == pod.name for p in pods):
            raise DefinitionError(doc.loc.child("metadata").child("name"),
                                  f"pod {pod.name!r} is defined twice in this file")
        pods.append(pod)
    if not pods:
        raise DefinitionError(Loc(source), "no Pod or Deployment in this file")
    return pods, reader.warnings


def load_file(path: Path) -> tuple[list[Pod], list[Diagnostic]]:
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DefinitionError(Loc(source), f"cannot read: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DefinitionError(Loc(source), f"not UTF-8 (byte {e.start})") from None
    return load_text(text, source)

