"""Socket activation units (see supervisor/pods/sockets.py for the definitions).

* ``pod-NAME@CTR.socket``: systemd's listening sockets for container CTR; ``Service=`` its unit.
* ``pod-NAME-sockets.target``: ``Wants=`` every socket of the pod; ``systemctl start`` (or the
  boot, through ``WantedBy=sockets.target``) arms the pod without starting it.
* the activated container's unit ``Wants=`` the pod unit and the other members and starts
  ``After=`` the other containers: the first connection starts the whole pod, and the container
  that owns the socket accepts only once the rest of the pod is ready, so the connection waits
  in the kernel's queue instead of reaching a proxy whose backend is not up. ``Sockets=`` makes
  an eager ``systemctl start pod-NAME`` start the sockets too, so the container always has them.

Checked under systemd 252 (tests/systemd/test_sockets.py): a stopped pod restarts on the next
connection; connections made while it stops and starts wait in the queue systemd keeps open.
"""
from __future__ import annotations

from collections.abc import Callable

from supervisor.pods import naming
from supervisor.pods.model import Container, Pod, Socket

from . import escape


def activated(pod: Pod, c: Container) -> Socket | None:
    return next((s for s in pod.sockets if s.container == c.name), None)


def container_lines(pod: Pod, c: Container) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Extra ([Unit], [Service]) lines of container `c`'s unit: none unless it is activated."""
    if activated(pod, c) is None:
        return [], []
    others = [naming.container_unit(pod.name, o.name) for o in pod.containers
              if o.name != c.name and activated(pod, o) is None]
    unit = [("Wants", " ".join([naming.pod_unit(pod.name), *others]))]
    if others:
        unit.append(("After", " ".join(others)))
    return unit, [("Sockets", naming.socket_unit(pod.name, c.name))]


def units(pod: Pod, header: Callable[[str, Pod, str], str]) -> list[tuple[str, str, dict[str, object]]]:
    """(unit name, template, values) of the pod's socket units and target; [] without sockets.
    `header(unit, pod, what)` is units.header (passed in: units.py imports this module)."""
    if not pod.sockets:
        return []
    target = naming.sockets_target(pod.name)
    out: list[tuple[str, str, dict[str, object]]] = []
    for s in pod.sockets:
        name = naming.socket_unit(pod.name, s.container)
        out.append((name, "socket.j2", {
            "header": header(name, pod, f"systemd's listening sockets for container {s.container}"),
            "pod": pod.name,
            "container": s.container,
            "target": target,
            "service": naming.container_unit(pod.name, s.container),
            "listens": [(lst.kind, escape.specifiers(lst.address)) for lst in s.listens],
            "options": list(s.options),
            "extra_unit": list(s.unit_lines.unit),
            "extra_install": list(s.unit_lines.install),
        }))
    names = [naming.socket_unit(pod.name, s.container) for s in pod.sockets]
    out.insert(0, (target, "sockets.target.j2", {
        "header": header(target, pod, "every socket of the pod; the first connection starts the pod"),
        "pod": pod.name,
        "sockets": " ".join(names),
    }))
    return out
