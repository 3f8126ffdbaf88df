"""The object dump for bench/monitor_pages.py, run in the fork server's dumper child (forked by
pages_hook.py right before the server serves): every object reachable from the server's
gc.get_objects() and sys.modules, one JSON line each: address, size, GC header or not, type name,
type address, owning module, a short label; plus the out-of-object tables of dicts and lists."""
from __future__ import annotations

import collections
import json
import os
import struct
import sys
from collections.abc import Mapping
from typing import Any


def _label(o: object) -> str:
    t = type(o)
    try:
        if t in (str, bytes, int, float, bool, type(None), complex):
            return repr(o)[:60]
        if t is tuple:
            return f"tuple[{len(o)}] " + repr(o[:2])[:40]  # type: ignore[index, arg-type]
        if t.__name__ == "function":
            return f"function {o.__module__}.{o.__qualname__}"  # type: ignore[attr-defined]
        if t.__name__ == "code":
            c: Any = o
            return f"code {c.co_qualname} {os.path.basename(c.co_filename)}:{c.co_firstlineno}"
        if isinstance(o, type):
            return f"class {o.__module__}.{o.__qualname__}"
        if t.__name__ == "module":
            return f"module {o.__name__}"  # type: ignore[attr-defined]
        if t.__name__ in ("builtin_function_or_method", "method_descriptor", "wrapper_descriptor",
                          "getset_descriptor", "member_descriptor", "classmethod_descriptor",
                          "method-wrapper", "cell", "property", "staticmethod", "classmethod"):
            return repr(o)[:70]
    except Exception:
        pass
    return ""


def _buffers(o: object, ctypes: Any) -> list[tuple[int, int, str]]:
    """Out-of-object memory a dict or list owns: (address, size, what)."""
    t = type(o)
    word = ctypes.c_ssize_t
    try:
        if isinstance(o, dict):
            keys = word.from_address(id(o) + 32).value
            if keys:
                log2_size, log2_index, kind = struct.unpack("BBB", ctypes.string_at(keys + 8, 3))
                size = 32 + (1 << log2_index) + ((2 << log2_size) // 3) * (24 if kind == 0 else 16)
                return [(keys, size, "dict keys")]
        elif t is list:
            items = word.from_address(id(o) + 24).value
            allocated = word.from_address(id(o) + 32).value
            if items and allocated > 0:
                return [(items, allocated * 8, "list items")]
    except Exception:
        pass
    return []


def _children(o: object, gc: Any) -> list[object]:
    if type(o).__name__ == "code":
        c: Any = o
        return [c.co_consts, c.co_names, c.co_filename, c.co_name, c.co_qualname, c.co_linetable,
                c.co_exceptiontable, *c.co_varnames, *c.co_cellvars, *c.co_freevars]
    return list(gc.get_referents(o))


def _natural_owner(o: object) -> str | None:
    t = type(o).__name__
    try:
        if t == "module":
            return str(o.__name__)  # type: ignore[attr-defined]
        if t == "function" or isinstance(o, type):
            return str(o.__module__)
    except Exception:
        pass
    return None


def dump_objects(out: str, snapshot: int, roots: list[object], modules: Mapping[str, object]) -> None:
    """Every object reachable from `roots` (the server's gc.get_objects() and sys.modules, taken
    before this module was imported): one JSON line each, owners by breadth-first search from the
    modules, functions and classes (a referent belongs to the first owner that reaches it)."""
    import ctypes
    import gc

    ids: dict[int, object] = {}
    owner: dict[int, str] = {}
    parent: dict[int, int] = {}
    queue: collections.deque[object] = collections.deque()
    skip = {id(roots), id(modules), id(sys.modules)}
    for o in [*modules.values(), *roots]:
        if id(o) in skip or id(o) in ids:
            continue
        ids[id(o)] = o
        name = _natural_owner(o)
        if name is not None:
            owner[id(o)] = name
        queue.append(o)
    rest = [o for o in queue if id(o) not in owner]
    queue = collections.deque([o for o in queue if id(o) in owner] + rest)
    while queue:
        o = queue.popleft()
        for c in _children(o, gc):
            if id(c) in skip or type(c).__name__ == "frame":
                continue
            if id(c) not in ids:
                ids[id(c)] = c
                parent[id(c)] = id(o)
                queue.append(c)
            if id(c) not in owner and id(o) in owner:
                owner[id(c)] = owner[id(o)]
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps({"snapshot": snapshot, "server": os.getppid()}) + "\n")
        for i, o in ids.items():
            t = type(o)
            size = sys.getsizeof(o, 16)
            try:
                is_gc = size - t.__sizeof__(o) == 16  # getsizeof adds the GC header's 16 bytes
            except Exception:
                is_gc = False
            label = _label(o)
            if not label and i in parent:
                p = ids[parent[i]]
                label = f"in {_label(p) or type(p).__name__}"[:80]
            rec = [i, size, int(is_gc), t.__name__, id(t), owner.get(i, "?"), label]
            f.write(json.dumps(rec) + "\n")
            for addr, size, what in _buffers(o, ctypes):
                of = f"{what} of {label or t.__name__}"[:80]
                f.write(json.dumps([addr, size, 0, what, 0, owner.get(i, "?"), of]) + "\n")
    os.rename(tmp, out)
