#!/usr/bin/env python3
"""Socket activation: first-request latency of a cold pod vs a warm one, podvisor-conmon and
/usr/bin/conmon side by side in one run, under a real systemd (`podvisor sandbox`).

The pod is the socket-activated blog (units/blog-sockets/blog.yaml: web + proxy, --network
none, the proxy served by the socket systemd owns). Each round, alternating the monitor (the
order flips every round):

1. `podvisor install --monitor M` (containers.conf names M), the pod stopped, only the socket
   listening;
2. cold: one HTTP GET through 127.0.0.1:8080, timed from connect() to the last byte of the page.
   That is the whole on-demand start: systemd starts infra, web (readiness probe: HTTP every
   second), then the proxy, which accepts the connection waiting in the kernel queue;
3. warm: --warm more GETs, one at a time, on new connections (median, p90);
4. `systemctl stop pod-blog.service`.

Run as root from the repository:  python3 bench/bench_sockets.py [--rounds N] [--warm N] [--json FILE]
The web container's readiness probe period (1 s) dominates the cold time: the probe helper
waits `periodSeconds` between attempts, and nginx is rarely up at the first one.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("PODVISOR_CHECKOUT", str(REPO))  # the lab's checkout (supervisor/lab/checkout.py)

from supervisor.lab.images import BLOG_IMAGE, ensure_image  # noqa: E402
from supervisor.lab.sandbox import Sandbox, SandboxConfig  # noqa: E402

CONMON = "/usr/bin/conmon"
CLIENT = r"""
import json, socket, sys, time
def get():
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", 8080), timeout=120)
    s.sendall(b"GET / HTTP/1.0\r\nHost: blog\r\n\r\n")
    first, data = None, b""
    while chunk := s.recv(65536):
        first = first or time.monotonic()
        data += chunk
    s.close()
    assert data.startswith(b"HTTP/1.1 200") and b"Hello from the podvisor blog" in data, data[:200]
    return time.monotonic() - t0, first - t0
cold = get()
warm = [get() for _ in range(int(sys.argv[1]))]
print(json.dumps({"cold": cold, "warm": warm}))
"""


def sh(sb: Sandbox, script: str, timeout: float = 300) -> str:
    res = sb.run(["sh", "-c", script], timeout=timeout)
    if res.returncode:
        raise SystemExit(f"in sandbox: {script!r} -> {res.returncode}\n{res.stdout}\n{res.stderr}")
    return res.stdout


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="cold starts per monitor (default 5)")
    ap.add_argument("--warm", type=int, default=50, help="warm requests per round (default 50)")
    ap.add_argument("--monitor", default=str(Path(sys.executable).parent / "podvisor-conmon"),
                    help="podvisor-conmon to test (default: next to this Python)")
    ap.add_argument("--json", type=Path, help="also write the raw samples here")
    opts = ap.parse_args()
    podvisor = Path(sys.executable).parent / "podvisor"
    if os.geteuid() != 0 or not podvisor.exists() or not Path(opts.monitor).exists():
        raise SystemExit("run as root with the venv's python (scripts/install.sh), e.g. sudo .venv/bin/python "
                         "bench/bench_sockets.py")
    work = Path("/var/tmp") / f"pvb-sock-{uuid.uuid4().hex[:8]}"  # visible inside the sandbox
    work.mkdir()
    (work / "client.py").write_text(CLIENT)
    (work / "blog.yaml").write_text((REPO / "units" / "blog-sockets" / "blog.yaml").read_text())
    monitors = {"conmon": CONMON, "podvisor": opts.monitor}
    samples: dict[str, list[dict[str, Any]]] = {k: [] for k in monitors}
    sb = Sandbox(SandboxConfig(name=f"pvb-sock-{uuid.uuid4().hex[:6]}", conmon_path=opts.monitor))
    sb.start()
    try:
        ensure_image(sb.podman, BLOG_IMAGE)
        for r in range(opts.rounds):
            order = list(monitors) if r % 2 == 0 else list(reversed(monitors))
            for key in order:
                sh(sb, f"{podvisor} install --monitor {monitors[key]} {work}/blog.yaml >/dev/null")
                if sh(sb, "podman ps -q").strip():
                    raise SystemExit("containers run before the cold request")
                out = sh(sb, f"{sys.executable} {work}/client.py {opts.warm}")
                sample = json.loads(out.strip().splitlines()[-1])
                # the proxy's unit's main process is the monitor under test
                used = sh(sb, "tr '\\0' ' ' < /proc/$(systemctl show -p MainPID --value "
                              "pod-blog@proxy.service)/cmdline")
                if ("supervisor.monitor" in used) != (key == "podvisor"):
                    raise SystemExit(f"{key}: the proxy's monitor is {used[:120]!r}")
                # where the cold time went, by systemd's clock: from the start of the pod's start
                # (the infra unit leaving "inactive", right after the trigger) to infra up, web
                # ready (its probe passed) and the proxy running (it accepts the waiting connection)
                stamps = {}
                for unit, prop in (("pod-blog@infra.service", "InactiveExitTimestampMonotonic"),
                                   ("pod-blog@infra.service", "ActiveEnterTimestampMonotonic"),
                                   ("pod-blog@web.service", "ActiveEnterTimestampMonotonic"),
                                   ("pod-blog@proxy.service", "ActiveEnterTimestampMonotonic")):
                    stamps[f"{unit.split('@')[1].split('.')[0]} {prop[:6]}"] = int(
                        sh(sb, f"systemctl show -p {prop} --value {unit}").strip()) / 1e6
                t0 = stamps["infra Inacti"]
                sample["infra_up"] = stamps["infra Active"] - t0
                sample["web_ready"] = stamps["web Active"] - t0
                sample["proxy_up"] = stamps["proxy Active"] - t0
                samples[key].append(sample)
                sh(sb, "systemctl stop pod-blog.service")
                print(f"round {r + 1} {key:8} cold {sample['cold'][0]:.3f}s (infra up {sample['infra_up']:.2f}s, "
                      f"web ready {sample['web_ready']:.2f}s, proxy up {sample['proxy_up']:.2f}s)  warm median "
                      f"{statistics.median(w[0] for w in sample['warm']) * 1000:.2f} ms", flush=True)
        sh(sb, f"{podvisor} uninstall blog >/dev/null")
    finally:
        sb.stop()
        for p in work.iterdir():
            p.unlink()
        work.rmdir()
    print()
    print(f"{'monitor':10} {'cold median':>12} {'cold min':>9} {'cold max':>9} {'warm median':>12} {'warm p90':>9}"
          f" {'cold/warm':>10} {'infra up':>9} {'web ready':>10} {'proxy up':>9}  (medians, from the pod's start)")
    for key, rounds in samples.items():
        cold = [s["cold"][0] for s in rounds]  # type: ignore[index]
        warm = [w[0] for s in rounds for w in s["warm"]]  # type: ignore[union-attr]
        print(f"{key:10} {statistics.median(cold):11.3f}s {min(cold):8.3f}s {max(cold):8.3f}s "
              f"{statistics.median(warm) * 1000:10.2f}ms {pct(warm, 0.9) * 1000:7.2f}ms "
              f"{statistics.median(cold) / statistics.median(warm):9.0f}x "
              + " ".join(f"{statistics.median(s[k] for s in rounds):{w}.2f}s"  # type: ignore[misc]
                         for k, w in (("infra_up", 8), ("web_ready", 9), ("proxy_up", 8))))
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (2 cores, shared)")
    if opts.json:
        opts.json.write_text(json.dumps(samples, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
