"""A pod -> the values its unit templates need: every command line as an argv, escaped once here.

The shape (see supervisor/pods/naming.py for names):

* ``pod-NAME.service`` (oneshot, RemainAfterExit): ``Wants=`` and ``PropagatesStopTo=`` the
  infra and every container unit; ExecStart= is ``systemctl start <members>``, ExecStop=
  ``systemctl stop <members>``. So ``systemctl start pod-NAME`` returns when every member's start
  job is done (for ``Type=notify``: READY=1) and fails if one failed (the others are then
  stopped, by PropagatesStopTo=); ``stop`` returns when all are stopped; ``restart`` restarts all.
  Checked under systemd 252, with the alternatives that fail: ``After=`` the members makes the
  start wait but a stop return at once (stop order is reversed); ``Requires=``/``PartOf=`` turn
  one container's restart (even an automatic Restart=) into a restart of every container.
* ``pod-NAME@infra.service`` (forking, PIDFile = infra monitor): ``pod create`` + ``pod start``;
  emptyDir volumes and hostPath preparation live here.
* ``pod-NAME@CTR.service`` (notify, NotifyAccess=all): ``BindsTo=`` + ``After=`` the infra unit;
  ``podman run --cgroups=no-conmon`` keeps the monitor in the unit's cgroup so it can be MAINPID.
"""
from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field

from supervisor.pods import naming, quantity
from supervisor.pods.model import Container, Pod, Port, Probe, Readiness, Restart, Verbatim

from . import escape, health, sockets
from .settings import Settings

START_LIMIT_INTERVAL = 300  # seconds; with StartLimitBurst: a crash-looping unit gives up
START_LIMIT_BURST = 5
STOP_SLACK = 60  # TimeoutStopSec = podman's stop timeout + this, so systemd never kills podman stop itself


@dataclass
class UnitContext:
    """What one template renders: already escaped strings and lists of them."""

    name: str
    template: str
    values: dict[str, object] = field(default_factory=dict)


def _v(text: str) -> Verbatim:
    """Our own text containing specifiers (%t, %n) that systemd must expand."""
    return Verbatim(text)


def _cat(*parts: str) -> str:
    """Concatenate into one word; Verbatim if any part is (the others then get their % and $
    escaped here, since the escaper will leave the whole word alone)."""
    if not any(isinstance(p, Verbatim) for p in parts):
        return "".join(parts)
    return Verbatim("".join(p if isinstance(p, Verbatim) else p.replace("%", "%%").replace("$", "$$")
                            for p in parts))


def _seconds(value: float) -> str:
    if value == float("inf"):
        return "infinity"
    return f"{value:g}" if value != int(value) else str(int(value))


def _extra(lines: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in lines]


def header(unit: str, pod: Pod, what: str) -> str:
    source = "".join(c if c.isprintable() else "?" for c in pod.source)
    return f"{naming.MARKER} from {source}; edit the definition, not this file.\n# {unit}: {what}"


def _common(pod: Pod, settings: Settings, mounts: list[str]) -> dict[str, object]:
    paths = list(settings.storage_paths())
    # RequiresMountsFor only takes paths we can write without quoting doubts; it is an ordering aid
    paths += [p for p in mounts if escape.word(p, command=False) == p and p not in paths]
    return {
        "pod": pod.name,
        "pod_unit": naming.pod_unit(pod.name),
        "infra_unit": naming.infra_unit(pod.name),
        "requires_mounts_for": escape.path_list(paths),
        "containers_conf": escape.path(settings.containers_conf),
        "environment": escape.environment([("CONTAINERS_CONF", settings.containers_conf),
                                           ("PODMAN_SYSTEMD_UNIT", Verbatim("%n"))]),
        "start_limit_interval": START_LIMIT_INTERVAL,
        "start_limit_burst": START_LIMIT_BURST,
        "restart_sec": _seconds(pod.restart_sec),
        "user": settings.user,
    }


def _systemctl(settings: Settings) -> list[str]:
    """systemctl talking to the manager that runs the unit (a user's has its own bus)."""
    return [settings.systemctl, "--user"] if settings.user else [settings.systemctl]


def wanted_by(pod: Pod, user: bool) -> tuple[str, ...]:
    """A user manager has default.target where the system has multi-user.target."""
    if user:
        return tuple("default.target" if t == "multi-user.target" else t for t in pod.wanted_by)
    return pod.wanted_by


def _host_paths(pod: Pod) -> list[str]:
    return [v.path for v in pod.volumes if v.kind == "hostPath"]


def plan(pod: Pod, settings: Settings) -> list[UnitContext]:
    """The pod's units, umbrella first, then infra, then containers in definition order."""
    members = [naming.infra_unit(pod.name)] + [naming.container_unit(pod.name, c.name) for c in pod.containers]
    umbrella = UnitContext(naming.pod_unit(pod.name), "pod.service.j2", {
        "header": header(naming.pod_unit(pod.name), pod, "the pod; its start completes when every container is ready"),
        "pod": pod.name,
        "members": " ".join(members),
        "start": escape.command([*_systemctl(settings), "start", *members]),
        "stop": escape.command([*_systemctl(settings), "stop", *members]),
        "wanted_by": " ".join(escape.word(t, command=False) for t in wanted_by(pod, settings.user)),
        "extra_unit": _extra(pod.unit_lines.unit),
        "extra_install": _extra(pod.unit_lines.install),
    })
    return ([umbrella, _infra(pod, settings)] + [_container(pod, c, settings) for c in pod.containers]
            + [UnitContext(n, t, v) for n, t, v in sockets.units(pod, header)])


def _publish(p: Port) -> str:
    ip = p.host_ip
    if ip and ipaddress.ip_address(ip).version == 6:
        ip = f"[{ip}]"
    return f"--publish={ip + ':' if ip else ''}{p.host_port}:{p.container_port}/{p.protocol}"


def _infra(pod: Pod, settings: Settings) -> UnitContext:
    name = naming.infra_unit(pod.name)
    pod_id = naming.pod_id_file(pod.name)
    coreutils = settings.coreutils
    create = settings.podman_argv(
        "pod", "create", f"--name={naming.podman_pod(pod.name)}", f"--infra-name={naming.podman_infra(pod.name)}",
        _v(f"--infra-conmon-pidfile={naming.PIDFILE}"), _v(f"--pod-id-file={pod_id}"),
        "--exit-policy=continue", "--replace")
    create += [f"--network={n}" for n in pod.network]
    if pod.hostname:
        create.append(f"--hostname={pod.hostname}")
    create += [_publish(p) for p in pod.ports if p.host_port is not None]
    create += [_cat("--label=", k, "=", v) for k, v in pod.labels]
    create += list(pod.podman_args)
    prepare: list[str] = []
    stop_post: list[str] = [escape.command(settings.podman_argv(
        "pod", "rm", "--ignore", "--force", _v(f"--pod-id-file={pod_id}")), prefix="-")]
    for v in pod.volumes:
        if v.kind == "emptyDir":
            vol = naming.podman_volume(pod.name, v.name)
            opts = []
            if v.medium == "Memory":
                opts = ["--opt=type=tmpfs", "--opt=device=tmpfs"]
                if v.size_limit:
                    opts.append(f"--opt=o=size={v.size_limit}")
            # a crash may have left it behind; emptyDir content lives as long as the pod
            prepare.append(escape.command(settings.podman_argv("volume", "rm", "--force", vol), prefix="-"))
            prepare.append(escape.command(settings.podman_argv(
                "volume", "create", f"--label=io.podvisor.pod={pod.name}", *opts, vol)))
            stop_post.append(escape.command(settings.podman_argv("volume", "rm", "--force", vol), prefix="-"))
        elif v.kind == "hostPath":
            # what Kubernetes checks or creates before the pod starts
            if v.host_type == "DirectoryOrCreate":
                prepare.append(escape.command([f"{coreutils}/mkdir", "-p", "--", v.path]))
            elif v.host_type == "FileOrCreate":
                prepare.append(escape.command([f"{coreutils}/touch", "-a", "--", v.path]))
            test = {"Directory": "-d", "File": "-f", "Socket": "-S"}.get(v.host_type)
            if test:
                prepare.append(escape.command([f"{coreutils}/test", test, v.path]))
    values = _common(pod, settings, _host_paths(pod))
    values.update({
        "header": header(name, pod, "the infra container: the pod's namespaces, published ports and volumes"),
        "restart": "no" if pod.restart is Restart.NO else "on-failure",
        "timeout_stop": pod.stop_timeout + STOP_SLACK,
        "pidfile": naming.PIDFILE,
        "cleanup": escape.command([f"{coreutils}/rm", "-f", _v(naming.PIDFILE), _v(pod_id)]),
        "cleanup_post": escape.command([f"{coreutils}/rm", "-f", _v(naming.PIDFILE), _v(pod_id)], prefix="-"),
        "create": escape.command(create),
        "prepare": prepare,
        "start": escape.command(settings.podman_argv("pod", "start", _v(f"--pod-id-file={pod_id}"))),
        "stop": escape.command(settings.podman_argv("pod", "stop", "--ignore", _v(f"--pod-id-file={pod_id}"),
                                                    f"--time={pod.stop_timeout}")),
        "stop_post": stop_post,
        "extra_unit": _extra(pod.unit_lines.unit),
        "extra_service": _extra(pod.infra_lines.service),
    })
    return UnitContext(name, "infra.service.j2", values)


def run_argv(pod: Pod, c: Container, settings: Settings) -> list[str]:
    """`podman run` for container `c` of `pod`: the flags systemd supervision needs, then the
    definition's, then image and arguments."""
    sdnotify = {Readiness.CONMON: "conmon", Readiness.CONTAINER: "container",
                # podman 4.3.1 has no "healthy": `podvisor ready-probe` sends MAINPID and READY
                Readiness.HEALTHY: "ignore"}[c.readiness]
    if health.wrapped(c) and c.readiness is Readiness.CONMON:
        sdnotify = "ignore"  # the probe sends MAINPID and READY (after a startup probe)
    argv = settings.podman_argv(
        "run", f"--name={naming.podman_container(pod.name, c.name)}", "--replace", "--rm",
        _v(f"--cidfile={naming.CIDFILE}"), _v(f"--pod-id-file={naming.pod_id_file(pod.name)}"),
        "--cgroups=no-conmon", f"--sdnotify={sdnotify}", "--detach")
    if health.wrapped(c):
        argv.append(_v(f"--conmon-pidfile={naming.PIDFILE}"))
    argv.append(f"--stop-timeout={c.stop_timeout}")
    if (c.health.liveness or c.health.startup) and "--no-healthcheck" not in c.podman_args:
        argv.append("--no-healthcheck")  # podman reports no health of its own (an image HEALTHCHECK)
    if c.pull:
        argv.append(f"--pull={c.pull}")
    r = c.resources
    if r.memory_limit is not None:
        argv.append(f"--memory={r.memory_limit}b")
    if r.memory_request is not None:
        argv.append(f"--memory-reservation={r.memory_request}b")
    if r.cpu_limit is not None:
        argv.append(f"--cpus={quantity.cpus(r.cpu_limit)}")
    if r.cpu_request is not None:
        argv.append(f"--cpu-shares={max(2, r.cpu_request * 1024 // 1000)}")  # Kubernetes' own mapping
    argv += [_cat("--label=", k, "=", v) for k, v in c.labels]
    argv += [_cat("--annotation=", k, "=", v) for k, v in c.annotations]
    argv += [_cat("--env=", k, "=", v) for k, v in c.env]
    for m in c.mounts:
        vol = pod.volume(m.volume)
        assert vol is not None  # pods.validate checked
        source = {"hostPath": vol.path, "named": vol.path}.get(vol.kind) or naming.podman_volume(pod.name, vol.name)
        opts = (("ro",) if m.read_only else ()) + m.options
        argv.append(_cat("--volume=", source, ":", m.path, *((":", ",".join(opts)) if opts else ())))
    if c.workdir is not None:
        argv.append(_cat("--workdir=", c.workdir))
    argv += list(c.podman_args)
    if c.entrypoint is not None:
        # the JSON form: podman takes a JSON array verbatim as the entrypoint's argv
        words = list(c.entrypoint)
        if any(isinstance(w, Verbatim) for w in words):
            words = [w if isinstance(w, Verbatim) else w.replace("%", "%%").replace("$", "$$") for w in words]
            argv.append(Verbatim("--entrypoint=" + json.dumps(words, ensure_ascii=False)))
        else:
            argv.append("--entrypoint=" + json.dumps(words, ensure_ascii=False))
    argv.append(c.image)
    argv += list(c.args)
    return argv


def probe_argv(p: Probe | None, settings: Settings) -> list[str]:
    """`podvisor ready-probe` options for readiness probe `p` (everything before the `--`)."""
    argv = [settings.podvisor, "ready-probe", _v(f"--pidfile={naming.PIDFILE}"), _v(f"--cidfile={naming.CIDFILE}")]
    if p is None:
        return argv
    return argv + health.probe_options(p, "", success=True, failure=False)


def _container(pod: Pod, c: Container, settings: Settings) -> UnitContext:
    name = naming.container_unit(pod.name, c.name)
    run = run_argv(pod, c, settings)
    if health.wrapped(c):
        readiness = c.probe if c.readiness is Readiness.HEALTHY else None
        start = escape.command(probe_argv(readiness, settings) + health.probe_argv(c) + ["--"] + run)
    else:
        start = escape.command(run)
    mounts = [v.path for m in c.mounts if (v := pod.volume(m.volume)) is not None and v.kind == "hostPath"]
    values = _common(pod, settings, mounts)
    values.update({
        "header": header(name, pod, f"container {c.name} ({c.readiness.value} readiness)"),
        "container": c.name,
        "readiness": c.readiness.value,
        "restart": pod.restart.value,
        "timeout_start": _seconds(c.start_timeout) if c.start_timeout is not None else None,
        "timeout_stop": c.stop_timeout + STOP_SLACK,
        "cleanup": escape.command([f"{settings.coreutils}/rm", "-f", _v(naming.CIDFILE), _v(naming.PIDFILE)]),
        "cleanup_post": escape.command([f"{settings.coreutils}/rm", "-f", _v(naming.CIDFILE), _v(naming.PIDFILE)],
                                       prefix="-"),
        "start": start,
        "stop": escape.command(settings.podman_argv("stop", "--ignore", f"--time={c.stop_timeout}",
                                                    _v(f"--cidfile={naming.CIDFILE}"))),
        "stop_post": escape.command(settings.podman_argv("rm", "--force", "--ignore", "--time=0",
                                                         _v(f"--cidfile={naming.CIDFILE}")), prefix="-"),
        "extra_unit": _extra(c.unit_lines.unit),
        "health_service": health.service_lines(c, settings.podman_argv(), naming.podman_container(pod.name, c.name)),
        "extra_service": _extra(c.unit_lines.service),
    })
    values["socket_unit"], values["socket_service"] = sockets.container_lines(pod, c)
    return UnitContext(name, "container.service.j2", values)
