"""Units from jinja2 templates in the repository's templates/ directory.

Templates are unit files with holes; every value arrives escaped (units.py), so the templates
never quote or escape anything themselves and no filter can forget to. Output is a pure function
of (pod, settings, source_path): no timestamps, no host lookups, fixed order.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from supervisor.pods.model import Pod

from . import escape
from .settings import Settings
from .units import plan

TEMPLATES_ENV = "PODVISOR_TEMPLATES"


def templates_dir() -> Path:
    """$PODVISOR_TEMPLATES, else templates/ of the source tree next to the package (a checkout,
    tests), else the copy installed with the package as data (<prefix>/share/podvisor/templates,
    setup.cfg's data_files)."""
    import os
    import sys

    if os.environ.get(TEMPLATES_ENV):
        return Path(os.environ[TEMPLATES_ENV])
    here = Path(__file__).resolve().parents[2] / "templates"
    if here.is_dir():
        return here
    return Path(sys.prefix) / "share" / "podvisor" / "templates"


class RenderError(ValueError):
    pass


@dataclass(frozen=True)
class RenderedUnit:
    name: str
    text: str


@lru_cache(maxsize=4)
def _environment(directory: str) -> object:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory), undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)


def render_pod(pod: Pod, settings: Settings, source_path: str | None = None,
               templates: Path | None = None) -> list[RenderedUnit]:
    """Every unit file of `pod`. `source_path` sets SourcePath= (generator mode)."""
    import jinja2

    templates = templates or templates_dir()
    if not templates.is_dir():
        raise RenderError(f"templates directory {templates} is missing (is podvisor installed from its repository?)")
    env = _environment(str(templates))
    out = []
    try:
        contexts = plan(pod, settings)
        sp = escape.path(source_path) if source_path else None
    except escape.EscapeError as e:
        raise RenderError(f"{pod.source}: pod {pod.name}: {e}") from None
    for ctx in contexts:
        try:
            text = env.get_template(ctx.template).render(source_path=sp, **ctx.values)  # type: ignore[attr-defined]
        except jinja2.TemplateError as e:
            raise RenderError(f"template {ctx.template}: {e}") from None
        # one blank line at most, none at the end: the same bytes whatever the branches produced
        lines = [line.rstrip(" \t") for line in text.split("\n")]
        compact: list[str] = []
        for line in lines:
            if line or (compact and compact[-1]):
                compact.append(line)
        out.append(RenderedUnit(ctx.name, "\n".join(compact).rstrip("\n") + "\n"))
    return out
