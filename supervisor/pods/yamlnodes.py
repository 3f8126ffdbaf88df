"""YAML documents as trees of `Node`s that remember where they are (file, path, line).

PyYAML's own constructors lose positions and silently keep the last of duplicate keys; we
compose the node graph ourselves so every error can name ``file:line: spec.containers[1].name``
and a duplicate key is an error, not a dropped value.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from .model import DefinitionError, Loc

MAX_NODES = 200_000  # alias expansion ("billion laughs") stops here
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Node:
    value: Any  # dict[str, Node] | list[Node] | str | int | float | bool | None
    loc: Loc

    def kind(self) -> str:
        v = self.value
        if isinstance(v, dict):
            return "a mapping"
        if isinstance(v, list):
            return "a list"
        if v is None:
            return "null"
        if isinstance(v, bool):
            return "a boolean"
        if isinstance(v, (int, float)):
            return "a number"
        if isinstance(v, str):
            return "a string"
        return type(v).__name__


def load_documents(text: str, source: str) -> list[Node]:
    """Every non-empty document of `text`; DefinitionError for malformed YAML."""
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        context = getattr(e, "context", None)
        what = f"{context}: {problem}" if context else problem
        raise DefinitionError(Loc(source, "", mark.line + 1 if mark else None), f"malformed YAML: {what}") from None
    converter = _Converter(source)
    return [converter.convert(n, Loc(source, f"document[{i}]" if len(nodes) > 1 else "", n.start_mark.line + 1))
            for i, n in enumerate(nodes) if n is not None]


class _Converter:
    def __init__(self, source: str) -> None:
        self.source = source
        self.count = 0
        self.constructor = yaml.SafeLoader("")  # only its scalar constructors are used

    def convert(self, node: yaml.Node, loc: Loc, active: frozenset[int] = frozenset()) -> Node:
        self.count += 1
        if self.count > MAX_NODES:
            raise DefinitionError(loc, f"document too large (more than {MAX_NODES} values after expanding aliases)")
        if id(node) in active:
            raise DefinitionError(loc, "recursive YAML alias")
        if isinstance(node, yaml.MappingNode):
            if node.tag != "tag:yaml.org,2002:map":
                raise DefinitionError(loc, f"unsupported YAML tag {node.tag}")
            inner = active | {id(node)}
            out: dict[str, Node] = {}
            for key_node, value_node in node.value:
                line = key_node.start_mark.line + 1
                key = self._scalar(key_node, loc)
                if key == "<<" and key_node.tag == "tag:yaml.org,2002:merge":
                    raise DefinitionError(Loc(loc.source, loc.path, line), "YAML merge keys (<<) are not supported")
                if not isinstance(key, str):
                    raise DefinitionError(Loc(loc.source, loc.path, line), f"mapping key {key!r} must be a string")
                child = loc.child(key, line)
                if key in out:
                    raise DefinitionError(child, f"duplicate key (also on line {out[key].loc.line})")
                out[key] = self.convert(value_node, child, inner)
            return Node(out, loc)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != "tag:yaml.org,2002:seq":
                raise DefinitionError(loc, f"unsupported YAML tag {node.tag}")
            inner = active | {id(node)}
            return Node([self.convert(n, loc.child(i, n.start_mark.line + 1), inner)
                         for i, n in enumerate(node.value)], loc)
        return Node(self._scalar(node, loc), loc)

    def _scalar(self, node: yaml.Node, loc: Loc) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise DefinitionError(Loc(loc.source, loc.path, node.start_mark.line + 1), "mapping keys must be scalars")
        try:
            value = self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as e:
            raise DefinitionError(Loc(loc.source, loc.path, node.start_mark.line + 1),
                                  f"malformed YAML value: {getattr(e, 'problem', e)}") from None
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise DefinitionError(loc, f"unsupported YAML value of type {type(value).__name__} (quote it)")
        return value
