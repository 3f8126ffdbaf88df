#!/usr/bin/env python3
"""How long `podvisor sandbox` takes to boot a real systemd (start returns once it is running)
and to halt it, over N cycles: the figures tests/test_sandbox.py prints but does not assert.

Run as root from a checkout:  python3 bench/bench_sandbox.py [--cycles N] [--json FILE]
Each sandbox is stopped and removed before the next starts, also on failure.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("PODVISOR_CHECKOUT", str(REPO))  # the lab's checkout (supervisor/lab/checkout.py)

from supervisor.lab.sandbox import Sandbox, SandboxConfig  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=5)
    ap.add_argument("--json", type=Path, help="also write the samples here")
    args = ap.parse_args()
    samples: dict[str, list[float]] = {"start": [], "ready": [], "systemd": [], "stop": []}
    for _ in range(args.cycles):
        sb = Sandbox(SandboxConfig(name=f"pvb-{uuid.uuid4().hex[:8]}"))
        try:
            t0 = time.monotonic()
            report = sb.start()
            samples["start"].append(time.monotonic() - t0)
            samples["ready"].append(report.seconds_to_ready)
            samples["systemd"].append(report.seconds_to_systemd)
        finally:
            t1 = time.monotonic()
            sb.stop()
            samples["stop"].append(time.monotonic() - t1)
    load = os.getloadavg()[0]
    print(f"podvisor sandbox, {args.cycles} cycles (load average {load:.2f}):")
    for key, values in samples.items():
        print(f"  {key:8} median {statistics.median(values):6.2f}s  min {min(values):6.2f}s  max {max(values):6.2f}s")
    if args.json:
        args.json.write_text(json.dumps({"load": load, **samples}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
