"""The containers of a Kubernetes pod spec (pods/kube.py): image, command, env, ports, mounts,
volumes, resources, securityContext, the readiness probe and the podvisor.io/ options that
apply per container."""
from __future__ import annotations

from typing import Any

from . import health, quantity, validate
from .kubefields import ANNOTATION_PREFIX, Fields
from .model import Container, DefinitionError, Loc, Mount, Port, Probe, Readiness, Resources, Volume
from .naming import POD_NAME
from .yamlnodes import Node

_CONTAINER_IGNORED = {
    "terminationMessagePath": "ignored", "terminationMessagePolicy": "ignored",
    "stdin": "ignored: units run without a terminal", "stdinOnce": "ignored: units run without a terminal",
    "tty": "ignored: units run without a terminal",
}


class ContainerReader(Fields):
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
        pull = self.pull_policy(fields["imagePullPolicy"]) if "imagePullPolicy" in fields else None
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
        c = Container(health=probes, name=name, image=image, entrypoint=entrypoint, args=args, env=env,
                      workdir=workdir, mounts=mounts, resources=resources, probe=probe, readiness=readiness, pull=pull,
                      stop_timeout=grace, start_timeout=start_timeout,
                      labels=tuple(sorted(meta["labels"].items())), annotations=annotations,
                      podman_args=security, loc=node.loc)
        return c, ports

    def pull_policy(self, node: Node) -> str:
        """imagePullPolicy -> podman's --pull value."""
        policies = {"Always": "always", "IfNotPresent": "missing", "Never": "never"}
        value = self.string(node)
        if value not in policies:
            raise DefinitionError(node.loc, f"{value!r}: expected Always, IfNotPresent or Never")
        return policies[value]

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
            return Volume(name, "hostPath", path=self.string(hp["path"], allow_empty=False), host_type=htype,
                          loc=node.loc)
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
        if not POD_NAME.match(claim):
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
        common: dict[str, Any] = {
            attr: float(self.integer(fields[key], low, 86400)) if key in fields else float(default)
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
