"""The shape of supervisor/, checked from its source: the import graph has no cycle and no upward
or sideways edge between the declared layers, the lab stays out of the product, and modules and
functions stay small. Every import counts, lazy ones inside functions included.

Layers, bottom to top (a package may import its own modules and anything below it, nothing else):

    0  supervisor (the version), supervisor.errors, supervisor.notifysocket   stdlib only
    1  supervisor.pods | supervisor.systemd                                    the model, the bus
    2  supervisor.generator | supervisor.manage | supervisor.probes            peers: none imports another
    3  supervisor.cli                                                          the `podvisor` command

    supervisor.monitor  an island: its own modules, plus supervisor (the version) and notifysocket
    supervisor.lab      may import anything; nothing of the product imports it, except the one
                        lazy hand-over of `podvisor sandbox` in supervisor/cli.py
"""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "supervisor"
LAYERS = {
    "supervisor": 0, "supervisor.errors": 0, "supervisor.notifysocket": 0, "supervisor.forksocket": 0,
    "supervisor.pods": 1, "supervisor.systemd": 1,
    "supervisor.generator": 2, "supervisor.manage": 2, "supervisor.probes": 2,
    "supervisor.cli": 3,
}
MONITOR, LAB = "supervisor.monitor", "supervisor.lab"
MONITOR_MAY_IMPORT = {"supervisor", "supervisor.notifysocket", "supervisor.forksocket"}
LAB_HANDOVER = ("supervisor.cli", "supervisor.lab.command")  # inside a function only
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# the lab is tooling, not product: exempt from the size rules
SIZE_EXEMPT = (LAB,)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _module_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements run at import time: the module's own, and those of its top-level if/try blocks."""
    for node in body:
        yield node
        if isinstance(node, ast.If):
            yield from _module_level([*node.body, *node.orelse])
        elif isinstance(node, ast.Try):
            yield from _module_level([*node.body, *node.orelse, *node.finalbody,
                                      *(s for h in node.handlers for s in h.body)])


def _imports(name: str) -> Iterator[tuple[str, bool]]:
    """(imported supervisor module, at module level?) for every import statement of `name`."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top_level = {id(n) for n in _module_level(tree.body)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from pkg import mod` imports pkg.mod when that is a module of ours
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for t in targets:
            if t == "supervisor" or t.startswith("supervisor."):
                yield t, id(node) in top_level


def _group(module: str) -> str:
    """The layer entry (or island) a module belongs to: its longest declared prefix."""
    for g in sorted([*LAYERS, MONITOR, LAB], key=len, reverse=True):
        if module == g or module.startswith(g + "."):
            return g
    raise AssertionError(f"{module} is in no declared layer: add it to LAYERS in {__file__}")


EDGES = sorted({(m, t, top) for m in MODULES for t, top in _imports(m) if t in MODULES or t == "supervisor"})


def test_every_module_has_a_layer() -> None:
    for m in MODULES:
        _group(m)


def test_no_upward_or_sideways_edges() -> None:
    bad = []
    for src, dst, _ in EDGES:
        a, b = _group(src), _group(dst)
        if a in (b, LAB):
            continue
        if a == MONITOR:
            ok = dst in MONITOR_MAY_IMPORT
        elif b == LAB:
            ok = (src, dst) == LAB_HANDOVER
        elif b == MONITOR:
            ok = False
        else:
            ok = LAYERS[b] < LAYERS[a]
        if not ok:
            bad.append(f"{src} -> {dst}")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_the_lab_is_not_imported_at_import_time() -> None:
    eager = [f"{src} -> {dst}" for src, dst, top in EDGES if _group(dst) == LAB and _group(src) != LAB and top]
    assert not eager, eager


def test_the_lab_commands_are_the_ones_cli_hands_over() -> None:
    from supervisor import cli
    from supervisor.lab import command

    assert cli.LAB_COMMANDS == command.COMMANDS


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for src, dst, _ in EDGES:
        if dst != src and not src.startswith(dst + "."):  # a module's own package __init__ is not a cycle
            graph[src].add(dst)
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append([*stack[stack.index(n):], n])
            elif n not in state:
                visit(n, [*stack, n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _sized() -> list[str]:
    return [m for m in MODULES if not any(m == e or m.startswith(e + ".") for e in SIZE_EXEMPT)]


@pytest.mark.parametrize("module", _sized())
def test_module_size(module: str) -> None:
    lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{MODULES[module]}: {lines} lines; split it by concern"


@pytest.mark.parametrize("module", _sized())
def test_function_size(module: str) -> None:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    long = [f"{n.name} ({n.end_lineno - n.lineno + 1} lines, line {n.lineno})" for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.end_lineno
            and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{MODULES[module]}: functions over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"


def test_the_checks_can_fail() -> None:
    """The graph is read for real: known edges are there (a parser that saw nothing would pass)."""
    assert ("supervisor.cli", "supervisor.lab.command", False) in EDGES
    assert ("supervisor.manage.discover", "supervisor.pods.naming", True) in EDGES
    assert ("supervisor.monitor.notify", "supervisor.notifysocket", True) in EDGES
    assert ("supervisor.pods.kube", "supervisor.pods.kubecontainer", True) in EDGES
