"""Definition file -> checked, rendered, verified units, all in memory. Nothing is written here:
callers (generate, install, the systemd generator) write the result in one commit, or nothing."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from supervisor import pods
from supervisor.errors import UserError
from supervisor.pods import naming
from supervisor.pods.model import DefinitionError, Diagnostic, Pod

from .render import RenderedUnit, RenderError, render_pod
from .settings import Settings
from .units import wanted_by


class GenerateError(UserError):
    """One clear message for humans; nothing has been written."""


@dataclass
class Generated:
    pods: list[Pod]
    units: list[RenderedUnit]
    warnings: list[Diagnostic] = field(default_factory=list)
    user: bool = False  # units for a user manager (settings.user)

    def files(self) -> dict[str, str]:
        return {u.name: u.text for u in self.units}

    def wants_symlinks(self) -> dict[str, str]:
        """[Install] WantedBy= as symlinks, for a generator's output dir (its units cannot be enabled)."""
        links = {}
        for p in self.pods:
            unit = naming.pod_unit(p.name)
            for kind, target in [("wants", t) for t in wanted_by(p, self.user)] + _installed_by(p):
                links[f"{target}.{kind}/{unit}"] = f"../{unit}"
            if p.sockets:  # socket activation: armed at boot, like an enabled sockets target
                target = naming.sockets_target(p.name)
                links[f"sockets.target.wants/{target}"] = f"../{target}"
        return links


def _installed_by(pod: Pod) -> list[tuple[str, str]]:
    kinds = {"WantedBy": "wants", "RequiredBy": "requires"}
    return [(kinds[k], w) for k, v in pod.unit_lines.install if k in kinds for w in v.split()]


def build(pod_list: list[Pod], warnings: list[Diagnostic], settings: Settings, *, verify: bool = True,
          source_path: str | None = None) -> Generated:
    units: list[RenderedUnit] = []
    for pod in pod_list:
        try:
            units += render_pod(pod, settings, source_path=source_path)
        except RenderError as e:
            raise GenerateError(str(e)) from None
    if verify:
        from . import verify as v

        if v.available():
            try:
                result = v.verify(units, user=settings.user)
            except v.VerifyUnavailable as e:
                raise GenerateError(f"{pod_list[0].source}: cannot check the generated units ({e}); "
                                    "--no-verify skips the check") from None
            if not result.ok:
                raise GenerateError(f"{pod_list[0].source}: the generated units fail systemd-analyze verify:\n"
                                    + "\n".join(f"  {p}" for p in result.problems))
    return Generated(pod_list, units, warnings, settings.user)


def generate(path: Path, settings: Settings, *, verify: bool = True, host_checks: bool = False,
             source_path: bool = False) -> Generated:
    """Read `path`, check, render and (if systemd-analyze exists) verify its units.
    `host_checks`: also fail on host ports in use and missing images (see hostcheck)."""
    try:
        pod_list, warnings = pods.load(str(path))
        if host_checks:
            from . import hostcheck

            for pod in pod_list:
                hostcheck.check_ports(pod)
                warnings += hostcheck.check_images(pod, settings)
    except DefinitionError as e:
        raise GenerateError(str(e)) from None
    sp = str(path.resolve()) if source_path else None
    return build(pod_list, warnings, settings, verify=verify, source_path=sp)

