#!/usr/bin/env python3
"""What a liveness probe costs: `podvisor ready-probe` next to podman's own healthcheck
(`podman healthcheck run`, what podman's transient systemd timer starts for every attempt),
in one run, through real podman 4.3.1 and one busybox container serving HTTP.

For each probe kind (httpGet, tcpSocket, exec) one `podvisor ready-probe` runs the container the
way a unit does (``-- podman run --detach ...``) with a liveness probe every --period seconds and
a notify socket of ours standing in for systemd (each WATCHDOG=1 is one passed attempt). After a
warm-up we read, over --seconds:

* memory of the probe process: VmRSS, and Pss / USS (Private_*) from /proc/PID/smaps_rollup;
* its threads (must be 1) and its own CPU per attempt (utime+stime / attempts);
* for exec probes also the CPU of the `podman exec` it starts per attempt (cutime+cstime: the
  children it waited for), since that is what an exec probe really costs.

`podman healthcheck run` is run --runs times against a container created with the same check
(--health-cmd, interval disabled so no timer is made): CPU per run (getrusage of children) and
the peak RSS of one run (ru_maxrss of the children).

Stdlib only; supervisor/lab/testenv.py makes the private store. Containers and the store (DIR/pvp-*)
are removed at the end. Run as root:  python3 bench/bench_probe.py [--quick] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("PODVISOR_CHECKOUT", str(REPO))  # the lab's checkout (supervisor/lab/checkout.py)
from supervisor.lab.testenv import PodmanEnv, ensure_busybox_image, make_env  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
HTTPD = ["sh", "-c", "mkdir -p /www; echo ok > /www/healthz; exec httpd -f -p 8080 -h /www"]


def podvisor() -> list[str]:
    """The `podvisor` units run: next to this Python, else the checkout's venv."""
    for candidate in (Path(sys.executable).parent / "podvisor", REPO / ".venv" / "bin" / "podvisor"):
        if candidate.exists():
            return [str(candidate)]
    return [sys.executable, "-m", "supervisor.cli"]


def global_args(env: PodmanEnv) -> list[str]:
    return [env.podman, f"--root={env.root}", f"--runroot={env.runroot}", f"--tmpdir={env.tmpdir}"]


def smaps(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "Threads:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0]) * (1024 if k == "VmRSS" else 1)
    return out


def cpu(pid: int) -> tuple[float, float]:
    """(own, waited-for children) CPU seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK, (int(fields[13]) + int(fields[14])) / TICK


def bench_probe(env: PodmanEnv, work: Path, image: str, kind: str, period: float, warmup: float,
                seconds: float) -> dict[str, Any]:
    name = f"pvp-{kind}"
    sock_path = work / f"{kind}.notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    probe = {"http": ["--liveness-http-get=http://127.0.0.1:8080/healthz"],
             "tcp": ["--liveness-tcp-socket=127.0.0.1:8080"],
             "exec": ["--liveness-exec=test", "--liveness-exec=-e", "--liveness-exec=/www/healthz"]}[kind]
    pidfile, cidfile = work / f"{kind}.pid", work / f"{kind}.cid"
    argv = [*podvisor(), "ready-probe", f"--pidfile={pidfile}", f"--cidfile={cidfile}",
            f"--liveness-period={period}", "--liveness-timeout=2", "--liveness-failure-threshold=1000000",
            f"--state-file={work / (kind + '.health')}", *probe, "--",
            *global_args(env), "run", f"--name={name}", "--replace", "--rm", f"--cidfile={cidfile}",
            f"--conmon-pidfile={pidfile}", "--sdnotify=ignore", "--detach", image, *HTTPD]
    proc = subprocess.Popen(argv, env={**env.environ(), "NOTIFY_SOCKET": str(sock_path)},
                            stdout=subprocess.DEVNULL, stderr=open(work / f"{kind}.log", "w"))
    pings: list[float] = []

    def drain(until: float) -> None:
        while time.monotonic() < until:
            try:
                msg = sock.recv(4096).decode()
            except TimeoutError:
                continue
            if "WATCHDOG=1" in msg:
                pings.append(time.monotonic())
    try:
        deadline = time.monotonic() + 60
        while not pings and time.monotonic() < deadline and proc.poll() is None:
            drain(time.monotonic() + 0.5)
        if not pings:
            raise RuntimeError(f"{kind}: no passing attempt within 60s: " + (work / f"{kind}.log").read_text()[-2000:])
        drain(time.monotonic() + warmup)
        n0, (own0, kids0) = len(pings), cpu(proc.pid)
        drain(time.monotonic() + seconds)
        n1, (own1, kids1) = len(pings), cpu(proc.pid)
        mem = smaps(proc.pid)
    finally:
        proc.terminate()
        proc.wait()
        sock.close()
        env.run("rm", "--force", "--time=0", name, check=False)
    attempts = n1 - n0
    return {"kind": kind, "attempts": attempts, "threads": mem.get("Threads"),
            "rss": mem.get("VmRSS"), "pss": mem.get("Pss"),
            "uss": mem.get("Private_Clean", 0) + mem.get("Private_Dirty", 0),
            "cpu_ms_per_attempt": 1000 * (own1 - own0) / attempts if attempts else None,
            "children_cpu_ms_per_attempt": 1000 * (kids1 - kids0) / attempts if attempts else None}


def bench_podman_healthcheck(env: PodmanEnv, image: str, runs: int) -> dict[str, Any]:
    name = "pvp-podman-hc"
    env.run("run", "--detach", f"--name={name}", "--health-cmd=test -e /www/healthz", "--health-interval=disable",
            image, *HTTPD)
    try:
        time.sleep(0.5)
        env.run("healthcheck", "run", name, check=False)  # warm caches
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        ok = 0
        for _ in range(runs):
            ok += env.run("healthcheck", "run", name, check=False).returncode == 0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        env.run("rm", "--force", "--time=0", name, check=False)
    used = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"runs": runs, "passed": ok, "cpu_ms_per_run": 1000 * used / runs, "peak_rss": after.ru_maxrss * 1024}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short windows (smoke test)")
    ap.add_argument("--period", type=float, default=0.2, help="probe period in seconds (default 0.2)")
    ap.add_argument("--seconds", type=float, default=20.0, help="measuring window per kind (default 20)")
    ap.add_argument("--runs", type=int, default=20, help="podman healthcheck runs (default 20)")
    ap.add_argument("--base", default="/var/tmp")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds, args.runs = 4.0, 5
    work = Path(tempfile.mkdtemp(prefix="pvp-", dir=args.base))
    env = make_env(work / "env", shutil.which("conmon") or "/usr/bin/conmon")
    results: dict[str, Any] = {"load": os.getloadavg(), "period": args.period}
    try:
        image = ensure_busybox_image(env)
        results["probes"] = [bench_probe(env, work, image, k, args.period, 3.0, args.seconds)
                             for k in ("http", "tcp", "exec")]
        results["podman_healthcheck"] = bench_podman_healthcheck(env, image, args.runs)
    finally:
        try:
            env.remove_all()
        finally:
            env.cleanup(storage=True)
            shutil.rmtree(work, ignore_errors=True)
    kib = 1024
    print(f"podvisor ready-probe, liveness every {args.period:g}s; load {results['load'][0]:.2f}")
    print(f"{'kind':6} {'attempts':>8} {'threads':>7} {'RSS KiB':>8} {'PSS KiB':>8} {'USS KiB':>8} "
          f"{'CPU ms/attempt':>15} {'+podman exec ms':>16}")
    for r in results["probes"]:
        kids = f"{r['children_cpu_ms_per_attempt']:.1f}" if r["kind"] == "exec" else "-"
        print(f"{r['kind']:6} {r['attempts']:>8} {r['threads']:>7} {r['rss'] // kib:>8} {r['pss'] // kib:>8} "
              f"{r['uss'] // kib:>8} {r['cpu_ms_per_attempt']:>15.2f} {kids:>16}")
    hc = results["podman_healthcheck"]
    print(f"podman healthcheck run (per attempt, for comparison): {hc['cpu_ms_per_run']:.1f} ms CPU, "
          f"peak RSS {hc['peak_rss'] // kib} KiB, {hc['passed']}/{hc['runs']} passed")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
