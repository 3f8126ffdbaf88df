"""The typed accessors of the Kubernetes YAML reader (pods/kube.py): each returns what a field
must be, or raises DefinitionError naming the field. Strings are required where Kubernetes
requires them, so YAML's implicit typing (``no`` -> false, ``0755`` -> 493) can't change what
reaches the container."""
from __future__ import annotations

from . import validate
from .model import DefinitionError, Diagnostic, Loc
from .yamlnodes import Node

ANNOTATION_PREFIX = "podvisor.io/"


class Fields:
    """Reads one file; collects warnings; raises DefinitionError at the first error."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.warnings: list[Diagnostic] = []

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

    def seconds(self, value: str, loc: Loc) -> float:
        try:
            s = float(value)
        except ValueError:
            s = -1.0
        if not 0 < s < 10 ** 9:
            raise DefinitionError(loc, f"{value!r}: expected a positive number of seconds")
        return s
