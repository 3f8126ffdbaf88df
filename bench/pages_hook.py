"""Loaded only into the fork server that bench/monitor_pages.py starts (never by the product).

Right before the server starts serving it forks two children off its memory as it is then:
a snapshot, which only sleeps (its pages are the server's pages at that moment, to diff a
monitor's copies against), and a dumper, which writes every object it can reach with its
address and size (pages_dump.py) and exits. The server itself allocates nothing
for them, so its monitors' layout stays as in a normal run.
"""
from __future__ import annotations

import os
import sys


def install(bench_dir: str, out: str) -> None:
    from supervisor.monitor import server

    serve = server.Server.serve

    def serve_with_snapshot(self: server.Server) -> None:
        snapshot = os.fork()
        if snapshot == 0:
            import select

            while True:  # until monitor_pages.py kills it
                select.select([], [], [])
        dumper = os.fork()
        if dumper == 0:
            code = 1
            try:
                import gc

                gc.unfreeze()
                roots = gc.get_objects()  # before anything new is made here
                modules = dict(sys.modules)
                sys.path.insert(0, bench_dir)
                import pages_dump

                pages_dump.dump_objects(out, snapshot, roots, modules)
                code = 0
            finally:
                os._exit(code)
        os.waitpid(dumper, 0)
        serve(self)

    server.Server.serve = serve_with_snapshot  # type: ignore[method-assign]
