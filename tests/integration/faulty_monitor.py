"""A podvisor-conmon with a fault injected into one loop handler, for tests only.

    faulty_monitor.py TARGET ARMED_FILE <conmon arguments...>

Once ARMED_FILE exists, every call of TARGET raises RuntimeError("injected fault in TARGET").
The product has no hook for this: the test's wrapper patches the class before the monitor
starts, so the real monitor code runs, with exactly one handler broken.
"""
from __future__ import annotations

import importlib
import os
import sys

TARGETS: dict[str, list[tuple[str, str, str]]] = {
    "signal": [("supervisor.monitor.main", "Monitor", "_on_signal")],
    "output": [("supervisor.monitor.stdio", "Output", "_on_event")],
    "ctl": [("supervisor.monitor.control", "Control", "_read")],
    "ctl-line": [("supervisor.monitor.control", "Control", "_ctl_line")],
    "attach-accept": [("supervisor.monitor.attach", "AttachServer", "_accept")],
    "attach-client": [("supervisor.monitor.attach", "Client", "on_event")],
    "notify": [("supervisor.monitor.notify", "NotifyProxy", "_on_event")],
    "oom": [("supervisor.monitor.oom", "OomWatcher", "_on_v1_event"),
            ("supervisor.monitor.oom", "OomWatcher", "_on_v2_event")],
    "console": [("supervisor.monitor.container_io", "ContainerIO", "take_console")],
    "timer": [("supervisor.monitor.main", "Monitor", "_on_timeout")],
    "log-sink": [("supervisor.monitor.logs", "LogSinks", "write")],
}


def arm(target: str, armed: str) -> None:
    for module, cls_name, attr in TARGETS[target]:
        cls = getattr(importlib.import_module(module), cls_name)
        original = getattr(cls, attr)

        def faulty(*args: object, _original=original, **kw: object) -> object:
            if os.path.exists(armed):
                raise RuntimeError(f"injected fault in {target}")
            return _original(*args, **kw)

        setattr(cls, attr, faulty)


def main() -> None:
    target, armed, *rest = sys.argv[1:]
    sys.argv = [sys.argv[0], *rest]
    from supervisor.monitor.__main__ import main as monitor_main

    if "--version" not in rest:
        arm(target, armed)
        # keep our own command line, so the tests can tell this monitor from the real one
        import supervisor.monitor.identity as identity
        identity.set_identity = lambda argv: None
    monitor_main()


if __name__ == "__main__":
    main()
