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

from . import health, quantity, sockets, validate
from .model import (
    Container,
    DefinitionError,
    Diagnostic,
    Loc,
    Mount,
    Pod,
    Port,
    Probe,
    Readiness,
    Resources,
    Restart,
    Volume,
)
from .yamlnodes import Node, load_documents

ANNOTATION_PREFIX = "podvisor.io/"
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
_CONTAINER_IGNORED = {
    "terminationMessagePath": "ignored", "terminationMessagePolicy": "ignored",
    "stdin": "ignored: units run without a terminal", "stdinOnce": "ignored: units run without a terminal",
    "tty": "ignored: units run without a terminal",
}
_DEPLOYMENT_IGNORED = {
    "strategy": "ignored: one replica, replaced in place",
    "minReadySeconds": "ignored", "revisionHistoryLimit": "ignored",
    "progressDeadlineSeconds": "ignored: the readiness timeout is podvisor.io/start-timeout",
    "paused": "ignored",
}


class _Reader:
    """Reads one file; collects warnings; raises DefinitionError at the first error."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.warnings: list[Diagnostic] = []

    # ---- small typed accessors

    def warn(self, loc: Loc, message: str) -> None:
        self.warnings.append(Diagnostic(loc, message))

    def mapping(self, node: Node, known: set[str], ignored: dict[str, str] | None = None,
                what: str = "") -> dict[str, Node]:
        if not isinstance(node.value, dict):
            raise DefinitionError(node.loc, f"expected a mapping{' (' + what + ')' if what else ''}, got {node.kind()}")
        for key, child in node.value.items():
            if key in known:
                continue
            if ignored and key in ignored:
                if child.value not in (None, {}, [], ""):
                    self.warn(child.loc, ignored[key])
                continue
            raise DefinitionError(child.loc, "unknown or unsupported field")
        return {k: v for k, v in node.value.items() if k in known}

    @staticmethod
    def string(node: Node, allow_empty: bool = True) -> str:
        if not isinstance(node.value, str):
            hint = f" (quote it: \"{node.value}\")" if isinstance(node.value, (int, float, bool)) else ""
            raise DefinitionError(node.loc, f"expected a string, got {node.kind()}{hint}")
        if not allow_empty and not node.value:
            raise DefinitionError(node.loc, "must not be empty")
        validate.check_text(node.value, node.loc)
        return node.value

    @staticmethod
    def integer(node: Node, low: int, high: int) -> int:
        v = node.value
        if isinstance(v, bool) or not isinstance(v, int):
            raise DefinitionError(node.loc, f"expected an integer, got {node.kind()}")
        if not low <= v <= high:
            raise DefinitionError(node.loc, f"{v} is out of range ({low}-{high})")
        return v

    @staticmethod
    def boolean(node: Node) -> bool:
        if not isinstance(node.value, bool):
            raise DefinitionError(node.loc, f"expected true or false, got {node.kind()}")
        return node.value

    @staticmethod
    def items(node: Node) -> list[Node]:
        if node.value is None:
            return []
        if not isinstance(node.value, list):
            raise DefinitionError(node.loc, f"expected a list, got {node.kind()}")
        return node.value

    def strings(self, node: Node) -> tuple[str, ...]:
        return tuple(self.string(n) for n in self.items(node))

    def string_map(self, node: Node) -> dict[str, str]:
        if node.value is None:
            return {}
        if not isinstance(node.value, dict):
            raise DefinitionError(node.loc, f"expected a mapping of strings, got {node.kind()}")
        return {k: self.string(v) for k, v in node.value.items()}

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
            tm = self.mapping(tmpl["metadata"], {"labels", "annotations"}, {**_METADATA_IGNORED, "name": "ignored: the pod is named after the Deployment"})
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
        restart = Restart.ALWAYS
        if "restartPolicy" in fields:
            policies = {"Always": Restart.ALWAYS, "OnFailure": Restart.ON_FAILURE, "Never": Restart.NO}
            value = self.string(fields["restartPolicy"])
            if value not in policies:
                raise DefinitionError(fields["restartPolicy"].loc, f"{value!r}: expected Always, OnFailure or Never")
            restart = policies[value]
        grace = DEFAULT_GRACE
        if "terminationGracePeriodSeconds" in fields:
            grace = self.integer(fields["terminationGracePeriodSeconds"], 0, 86400)
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
        containers: list[Container] = []
        ports: list[Port] = []
        by_container: dict[str, list[Port]] = {}
        for n, cname in zip(container_nodes, ctr_names):
            c, cports = self.container(name, cname, n, options, meta, grace)
            containers.append(c)
            ports.extend(cports)
            by_container[cname] = cports
        activated = sockets.from_kube(options, by_container)
        ports = sockets.published(ports, activated)
        network: tuple[str, ...] = ()
        if "network" in options:
            value, oloc = options["network"]
            network = tuple(w for w in value.split(",") if w)
            if not network or any(not w.strip() or w != w.strip() for w in network):
                raise DefinitionError(oloc, f"{value!r}: expected comma-separated network names")
        if host_network:
            if network:
                raise DefinitionError(fields["hostNetwork"].loc, f"conflicts with annotation {ANNOTATION_PREFIX}network")
            network = ("host",)
            for p in ports:
                if p.host_port is not None and p.host_port != p.container_port:
                    raise DefinitionError(p.loc.child("hostPort"), "with hostNetwork, hostPort must equal containerPort")
            # the container's ports are the host's: nothing to publish
            ports = [Port(p.container_port, None, p.protocol, p.host_ip, p.name, p.loc) for p in ports]
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

    def seconds(self, value: str, loc: Loc) -> float:
        try:
            s = float(value)
        except ValueError:
            s = -1.0
        if not 0 < s < 10 ** 9:
            raise DefinitionError(loc, f"{value!r}: expected a positive number of seconds")
        return s

    def container_name(self, pod: str, node: Node) -> str:
        if not isinstance(node.value, dict) or "name" not in node.value:
            raise DefinitionError(node.loc.child("name"), "missing")
        name = self.string(node.value["name"], allow_empty=False)
        validate.check_container_name(pod, name, node.value["name"].loc)
        return name

    def container(self, pod: str, name: str, node: Node, options: dict[str, tuple[str, Loc]],
                  meta: dict[str, Any], grace: int) -> tuple[Container, list[Port]]:
        fields = self.mapping(node, {"name", "image", "command", "args", "env", "ports", "volumeMounts",
                                     "resources", "readinessProbe", "workingDir", "imagePullPolicy",
                                     "securityContext", "envFrom", "lifecycle", *health.CONTAINER_FIELDS},
                              _CONTAINER_IGNORED)
        if "image" not in fields:
            raise DefinitionError(node.loc.child("image"), "missing")
        for unsupported, why in (("envFrom", "needs ConfigMaps/Secrets, which podvisor does not have; use env"),
                                 ("lifecycle", "lifecycle hooks are not supported")):
            if unsupported in fields and fields[unsupported].value not in (None, {}, []):
                raise DefinitionError(fields[unsupported].loc, why)
        image = self.string(fields["image"], allow_empty=False)
        entrypoint = None
        if "command" in fields and self.items(fields["command"]):
            entrypoint = self.strings(fields["command"])
        args = self.strings(fields["args"]) if "args" in fields else ()
        env = tuple(self.env(n) for n in self.items(fields["env"])) if "env" in fields else ()
        ports = [self.port(n) for n in self.items(fields["ports"])] if "ports" in fields else []
        mounts = tuple(self.mount(n) for n in self.items(fields["volumeMounts"])) if "volumeMounts" in fields else ()
        resources = self.resources(fields["resources"]) if "resources" in fields else Resources()
        workdir = self.string(fields["workingDir"], allow_empty=False) if "workingDir" in fields else None
        pull = None
        if "imagePullPolicy" in fields:
            policies = {"Always": "always", "IfNotPresent": "missing", "Never": "never"}
            value = self.string(fields["imagePullPolicy"])
            if value not in policies:
                raise DefinitionError(fields["imagePullPolicy"].loc, f"{value!r}: expected Always, IfNotPresent or Never")
            pull = policies[value]
        security = self.security(fields["securityContext"]) if "securityContext" in fields else ()
        probe = self.probe(fields["readinessProbe"], ports) if "readinessProbe" in fields else None

        def option(opt: str) -> tuple[str, Loc] | None:
            return options.get(f"{opt}.{name}") or options.get(opt)

        readiness = Readiness.HEALTHY if probe else Readiness.CONMON
        if (chosen := option("readiness")) is not None:
            value, oloc = chosen
            try:
                readiness = Readiness(value)
            except ValueError:
                raise DefinitionError(oloc, f"{value!r}: expected conmon, container or healthy") from None
            if readiness is Readiness.HEALTHY and probe is None:
                raise DefinitionError(oloc, f"readiness 'healthy' needs a readinessProbe on container {name!r}")
            if probe is not None and readiness is not Readiness.HEALTHY:
                self.warn(probe.loc, f"ignored: the container's readiness is {readiness.value!r} ({oloc.path})")
                probe = None
        start_timeout = None
        if (chosen := option("start-timeout")) is not None:
            value, oloc = chosen
            start_timeout = float("inf") if value == "infinity" else self.seconds(value, oloc)
        annotations = tuple(sorted((k, v) for k, v in meta["annotations"].items()
                                   if not k.startswith(ANNOTATION_PREFIX)))
        probes = health.from_kube(self, fields, ports, option, readiness, start_timeout)
        c = Container(health=probes, name=name, image=image, entrypoint=entrypoint, args=args, env=env, workdir=workdir,
                      mounts=mounts, resources=resources, probe=probe, readiness=readiness, pull=pull,
                      stop_timeout=grace, start_timeout=start_timeout,
                      labels=tuple(sorted(meta["labels"].items())), annotations=annotations,
                      podman_args=security, loc=node.loc)
        return c, ports

    def env(self, node: Node) -> tuple[str, str]:
        fields = self.mapping(node, {"name", "value", "valueFrom"})
        if "valueFrom" in fields:
            raise DefinitionError(fields["valueFrom"].loc, "valueFrom is not supported (no ConfigMaps, Secrets "
                                                           "or field references); use value")
        if "name" not in fields:
            raise DefinitionError(node.loc.child("name"), "missing")
        value = self.string(fields["value"]) if "value" in fields and fields["value"].value is not None else ""
        return self.string(fields["name"], allow_empty=False), value

    def port(self, node: Node) -> Port:
        fields = self.mapping(node, {"containerPort", "hostPort", "hostIP", "protocol", "name"})
        if "containerPort" not in fields:
            raise DefinitionError(node.loc.child("containerPort"), "missing")
        protocol = self.string(fields["protocol"]) if "protocol" in fields else "TCP"
        if protocol not in ("TCP", "UDP", "SCTP"):
            raise DefinitionError(fields["protocol"].loc, f"{protocol!r}: expected TCP, UDP or SCTP")
        return Port(container_port=self.integer(fields["containerPort"], 1, 65535),
                    host_port=self.integer(fields["hostPort"], 1, 65535) if "hostPort" in fields else None,
                    protocol=protocol.lower(),
                    host_ip=self.string(fields["hostIP"]) if "hostIP" in fields else "",
                    name=self.string(fields["name"]) if "name" in fields else "", loc=node.loc)

    def mount(self, node: Node) -> Mount:
        fields = self.mapping(node, {"name", "mountPath", "readOnly", "subPath", "subPathExpr", "mountPropagation"})
        for unsupported in ("subPath", "subPathExpr", "mountPropagation"):
            if unsupported in fields:
                raise DefinitionError(fields[unsupported].loc, "not supported")
        for required in ("name", "mountPath"):
            if required not in fields:
                raise DefinitionError(node.loc.child(required), "missing")
        return Mount(volume=self.string(fields["name"], allow_empty=False),
                     path=self.string(fields["mountPath"], allow_empty=False),
                     read_only="readOnly" in fields and self.boolean(fields["readOnly"]), loc=node.loc)

    def volume(self, node: Node) -> Volume:
        kinds = ("hostPath", "emptyDir", "persistentVolumeClaim")
        if isinstance(node.value, dict):
            for key, child in node.value.items():
                if key not in kinds and key != "name":
                    raise DefinitionError(child.loc, f"volume type {key!r} is not supported; podvisor mounts "
                                                     "hostPath, emptyDir and persistentVolumeClaim volumes")
        fields = self.mapping(node, {"name", *kinds})
        if "name" not in fields:
            raise DefinitionError(node.loc.child("name"), "missing")
        name = self.string(fields["name"], allow_empty=False)
        given = [k for k in kinds if k in fields]
        if len(given) != 1:
            raise DefinitionError(node.loc, "expected exactly one of hostPath, emptyDir, persistentVolumeClaim "
                                            "(other volume types are not supported)")
        kind = given[0]
        sub = fields[kind]
        if kind == "hostPath":
            hp = self.mapping(sub, {"path", "type"})
            if "path" not in hp:
                raise DefinitionError(sub.loc.child("path"), "missing")
            htype = self.string(hp["type"]) if "type" in hp else ""
            if htype not in ("", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"):
                raise DefinitionError(hp["type"].loc, f"{htype!r} is not supported; use Directory, "
                                                      "DirectoryOrCreate, File, FileOrCreate or Socket")
            return Volume(name, "hostPath", path=self.string(hp["path"], allow_empty=False), host_type=htype, loc=node.loc)
        if kind == "emptyDir":
            ed = self.mapping(sub, {"medium", "sizeLimit"}) if sub.value is not None else {}
            medium = self.string(ed["medium"]) if "medium" in ed else ""
            if medium not in ("", "Memory"):
                raise DefinitionError(ed["medium"].loc, f"{medium!r}: expected \"\" or Memory")
            size = None
            if "sizeLimit" in ed:
                if medium != "Memory":
                    raise DefinitionError(ed["sizeLimit"].loc, "a size limit needs medium: Memory (a tmpfs)")
                try:
                    size = quantity.memory_bytes(ed["sizeLimit"].value)
                except ValueError as e:
                    raise DefinitionError(ed["sizeLimit"].loc, str(e)) from None
            return Volume(name, "emptyDir", medium=medium, size_limit=size, loc=node.loc)
        pvc = self.mapping(sub, {"claimName", "readOnly"})
        if "claimName" not in pvc:
            raise DefinitionError(sub.loc.child("claimName"), "missing")
        claim = self.string(pvc["claimName"], allow_empty=False)
        if not validate.POD_NAME.match(claim):
            raise DefinitionError(pvc["claimName"].loc, f"{claim!r} is not a valid podman volume name")
        if "readOnly" in pvc and self.boolean(pvc["readOnly"]):
            raise DefinitionError(pvc["readOnly"].loc, "not supported; set readOnly on the volumeMount")
        return Volume(name, "named", path=claim, loc=node.loc)

    def resources(self, node: Node) -> Resources:
        fields = self.mapping(node, {"limits", "requests"}, {"claims": "ignored"})
        values: dict[str, int] = {}
        for part in ("limits", "requests"):
            if part not in fields or fields[part].value is None:
                continue
            for res, n in self.mapping(fields[part], {"memory", "cpu"}).items():
                try:
                    values[f"{res}_{part}"] = (quantity.memory_bytes(n.value) if res == "memory"
                                               else quantity.millicores(n.value))
                except ValueError as e:
                    raise DefinitionError(n.loc, str(e)) from None
        return Resources(memory_limit=values.get("memory_limits"), memory_request=values.get("memory_requests"),
                         cpu_limit=values.get("cpu_limits"), cpu_request=values.get("cpu_requests"))

    def security(self, node: Node) -> tuple[str, ...]:
        """The container securityContext fields podman can honour, as `podman run` options."""
        fields = self.mapping(node, {"capabilities", "privileged", "runAsUser", "runAsGroup",
                                     "readOnlyRootFilesystem", "allowPrivilegeEscalation"})
        out: list[str] = []
        if "capabilities" in fields:
            caps = self.mapping(fields["capabilities"], {"add", "drop"})
            for op in ("add", "drop"):
                for cap in self.strings(caps[op]) if op in caps else ():
                    if not cap.replace("_", "").isalnum():
                        raise DefinitionError(caps[op].loc, f"{cap!r} is not a capability name")
                    out.append(f"--cap-{op}={cap}")
        if "privileged" in fields and self.boolean(fields["privileged"]):
            out.append("--privileged")
        if "runAsUser" in fields:
            user = str(self.integer(fields["runAsUser"], 0, 2 ** 32 - 2))
            if "runAsGroup" in fields:
                user += f":{self.integer(fields['runAsGroup'], 0, 2 ** 32 - 2)}"
            out.append(f"--user={user}")
        elif "runAsGroup" in fields:
            raise DefinitionError(fields["runAsGroup"].loc, "needs runAsUser as well (podman's --user UID:GID)")
        if "readOnlyRootFilesystem" in fields and self.boolean(fields["readOnlyRootFilesystem"]):
            out.append("--read-only")
        if "allowPrivilegeEscalation" in fields and not self.boolean(fields["allowPrivilegeEscalation"]):
            out.append("--security-opt=no-new-privileges")
        return tuple(out)

    def probe(self, node: Node, ports: list[Port], role: str = "readiness") -> Probe:
        """A readinessProbe, or (role liveness/startup, see pods/health.py) one whose failures count."""
        handlers = ("exec", "httpGet", "tcpSocket", "grpc")
        fields = self.mapping(node, {*handlers, "initialDelaySeconds", "periodSeconds", "timeoutSeconds",
                                     "successThreshold", "failureThreshold", "terminationGracePeriodSeconds"})
        failure_threshold = 3
        if role != "readiness":
            from . import health

            failure_threshold = health.check_thresholds(self, fields)
        elif "failureThreshold" in fields:
            self.integer(fields["failureThreshold"], 1, 2 ** 31)
            self.warn(fields["failureThreshold"].loc, "ignored: the probe only decides when the container is "
                                                      "first ready (its unit's start); it is not run afterwards")
        if "terminationGracePeriodSeconds" in fields and role == "readiness":
            raise DefinitionError(fields["terminationGracePeriodSeconds"].loc, "not supported for readiness probes")
        given = [h for h in handlers if h in fields]
        if len(given) != 1:
            raise DefinitionError(node.loc, "expected exactly one of exec, httpGet, tcpSocket, grpc")
        timing = {"initial_delay": ("initialDelaySeconds", 0, 0), "period": ("periodSeconds", 10, 1),
                  "timeout": ("timeoutSeconds", 1, 1), "success_threshold": ("successThreshold", 1, 1)}
        common: dict[str, Any] = {attr: float(self.integer(fields[key], low, 86400)) if key in fields else float(default)
                                  for attr, (key, default, low) in timing.items()}
        common["success_threshold"] = int(common["success_threshold"])
        common["failure_threshold"] = failure_threshold
        sub = fields[given[0]]
        if given[0] == "exec":
            ex = self.mapping(sub, {"command"})
            if "command" not in ex or not self.items(ex["command"]):
                raise DefinitionError(sub.loc.child("command"), "missing")
            return Probe("exec", command=self.strings(ex["command"]), loc=node.loc, **common)
        if given[0] == "httpGet":
            hg = self.mapping(sub, {"path", "port", "host", "scheme", "httpHeaders"})
            path = self.string(hg["path"]) if "path" in hg else "/"
            if not path.startswith("/") or any(c.isspace() or ord(c) < 0x20 for c in path):
                raise DefinitionError(hg["path"].loc, f"{path!r}: expected an absolute URL path without spaces")
            scheme = self.string(hg["scheme"]) if "scheme" in hg else "HTTP"
            if scheme not in ("HTTP", "HTTPS"):
                raise DefinitionError(hg["scheme"].loc, f"{scheme!r}: expected HTTP or HTTPS")
            headers = []
            for h in self.items(hg["httpHeaders"]) if "httpHeaders" in hg else ():
                hf = self.mapping(h, {"name", "value"})
                if "name" not in hf:
                    raise DefinitionError(h.loc.child("name"), "missing")
                hname = self.string(hf["name"], allow_empty=False)
                hvalue = self.string(hf["value"]) if "value" in hf else ""
                if any(c in hname for c in ":\r\n") or any(c in hvalue for c in "\r\n"):
                    raise DefinitionError(h.loc, "header names may not contain ':' and values no line breaks")
                headers.append((hname, hvalue))
            return Probe("http", port=self.probe_port(hg, sub, ports), host=self.probe_host(hg), path=path,
                         scheme=scheme.lower(), headers=tuple(headers), loc=node.loc, **common)
        if given[0] == "grpc":  # grpc.health.v1.Health/Check; Kubernetes allows no named port here
            gr = self.mapping(sub, {"port", "service"})
            if "port" not in gr:
                raise DefinitionError(sub.loc.child("port"), "missing")
            service = self.string(gr["service"]) if "service" in gr else ""
            return Probe("grpc", port=self.integer(gr["port"], 1, 65535), service=service, loc=node.loc, **common)
        ts = self.mapping(sub, {"port", "host"})
        return Probe("tcp", port=self.probe_port(ts, sub, ports), host=self.probe_host(ts), loc=node.loc, **common)

    def probe_port(self, fields: dict[str, Node], parent: Node, ports: list[Port]) -> int:
        if "port" not in fields:
            raise DefinitionError(parent.loc.child("port"), "missing")
        n = fields["port"]
        if isinstance(n.value, str):  # a named container port
            match = [p for p in ports if p.name == n.value]
            if not match:
                raise DefinitionError(n.loc, f"no container port named {n.value!r}")
            return match[0].container_port
        return self.integer(n, 1, 65535)

    def probe_host(self, fields: dict[str, Node]) -> str:
        if "host" not in fields:
            return ""
        host = self.string(fields["host"])
        if any(c.isspace() or c in "/?#@" for c in host):
            raise DefinitionError(fields["host"].loc, f"{host!r} is not a host name or address")
        return host


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
            raise DefinitionError(doc.loc.child("metadata").child("name"), f"pod {pod.name!r} is defined twice in this file")
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

