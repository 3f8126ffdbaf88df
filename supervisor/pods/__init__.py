"""Pod definitions: the typed model (``model``) and the readers that build it from Kubernetes YAML
(``kube``) and Quadlet-style ``.pod``/``.container`` files (``quadlet``). No I/O in the model;
readers only read the files they are given. ``load`` picks the reader by file name."""
from __future__ import annotations

from .model import DefinitionError, Diagnostic, Loc, Pod

__all__ = ["DefinitionError", "Diagnostic", "Loc", "Pod", "load"]


def load(path: str) -> tuple[list[Pod], list[Diagnostic]]:
    """Every pod defined by the file at `path` and the warnings met on the way.

    ``*.yaml``/``*.yml``: Kubernetes Pod or Deployment documents. ``*.pod``: a Quadlet pod plus the
    ``*.container`` files next to it that name it in ``Pod=``. ``*.container``: a container of its
    own pod (named after the file), unless it names a ``Pod=``. Raises DefinitionError.
    """
    from pathlib import Path

    p = Path(path)
    if p.suffix in (".yaml", ".yml"):
        from . import kube

        return kube.load_file(p)
    if p.suffix in (".pod", ".container"):
        from . import quadlet

        return quadlet.load_file(p)
    raise DefinitionError(Loc(str(path)), "unknown kind of file: expected *.yaml, *.yml, *.pod or *.container")
