#!/usr/bin/env python3
"""podvisor-conmon vs /usr/bin/conmon 2.1.6, side by side in one run, through real podman.

Both monitors share one private podman store (the busybox image is imported once); each has its
own containers.conf (`conmon_path`) from supervisor.lab.testenv.make_env. Every measurement alternates
between the two monitors, so load from other work on the machine hits both alike; the order
within each pair flips every round (c,p, p,c, c,p …) so neither always profits from the other's
warm caches.

1. latency   `podman run --rm --network none IMAGE true`, and `podman exec CTR true` on one
             running container per monitor: median, p10, p90, ratio of medians.
2. logs      a container `cat`s a text file (short ~70-byte lines, and 100 KB lines) bind-mounted
             read-only, so the producer is never the bottleneck. The k8s-file log is parsed back
             and must reassemble to exactly the file's bytes (count and sha256). Two timings,
             each minus the median of the same for a `true` container of the same monitor:
             - MB/s (the target): podman's own StartedAt -> FinishedAt. StartedAt is taken when
               `runc start` has returned, FinishedAt is the ctime of the exit file, which the
               monitor writes after draining the pipes and fsyncing the log: the container's run
               plus the monitor's drain, without podman's start-up or polling.
             - start->wait: from `podman start` to `podman wait --interval 10ms` returning (the
               default 250 ms poll interval would swamp the differences). Biased: when `wait`
               starts after the container has exited (always so for `true`), it also waits for
               the exit command's `podman container cleanup` (~50-100 ms here); when the
               container still runs it does not, so the `true` baseline over-subtracts. Shown
               for reference.
             Monitor CPU time: the bench makes itself a child subreaper for this phase, so the
             monitor (orphaned when its first process exits) becomes our child. We wait for it
             with waitid(WEXITED|WNOWAIT), which leaves the zombie in place, and read its final
             on-CPU time: /proc/<pid>/schedstat (ns; the monitors are single-threaded), else
             utime+stime from /proc/<pid>/stat (10 ms ticks). That is the monitor's own time
             only: runtime and exit command are its children (cutime/cstime, kept in the JSON).
             Only if it is not our child do we fall back to sampling /proc/<pid>/stat until it
             is gone (which misses the CPU used after the last sample).
3. memory    N idle containers (`sleep 1000`) per monitor: VmRSS from /proc/<pid>/status, Rss, Pss
             and USS (Private_*) from /proc/<pid>/smaps_rollup, averaged.
4. idle      on the same containers: voluntary+nonvoluntary context switches of every thread of
             each monitor over --idle-seconds; an idle monitor should never wake up.

MB = 10^6 bytes. Run as root:  python3 bench/bench_monitor.py [--quick] [--json FILE]
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout: the interpreter need not have podvisor installed
os.environ.setdefault("PODVISOR_CHECKOUT", str(REPO))  # the lab's checkout (supervisor/lab/checkout.py)
from supervisor.lab.testenv import PodmanEnv, ensure_busybox_image, make_env  # noqa: E402

CONMON = "/usr/bin/conmon"
NAMES = ("conmon", "podvisor")
MB = 1_000_000
TICK = os.sysconf("SC_CLK_TCK")
PR_SET_CHILD_SUBREAPER = 36

TARGET_LATENCY = 1.10      # podvisor median <= 1.10 x conmon's
TARGET_THROUGHPUT = 1.5    # podvisor MB/s >= 1.5 x conmon's

FULL = dict(runs=30, reps=3, log_mb=200, containers=5, idle_seconds=10.0, warmup=2)
QUICK = dict(runs=5, reps=1, log_mb=60, containers=2, idle_seconds=3.0, warmup=1)
# the memory table's containers: idle from the start, or after a line on stdout and one on stderr
SILENT = ("sleep", "1000")
TALKING = ("sh", "-c", "echo started; echo warming up >&2; exec sleep 1000")

LOG_KINDS = {"short": "70-byte lines", "long": "100 KB lines"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def default_monitor() -> str:
    for cand in (Path(sys.executable).parent / "podvisor-conmon",  # the venv running us
                 REPO / ".venv/bin/podvisor-conmon",               # scripts/install.sh
                 Path("/tmp/pvd/bin/podvisor-conmon")):            # development install
        if cand.exists():
            return str(cand)
    sys.exit("podvisor-conmon not found: run `bash scripts/install.sh` or pass --monitor PATH")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def pairs(rounds: int) -> Iterator[tuple[int, str]]:
    """(round, monitor) interleaved, the pair order flipping each round."""
    for i in range(rounds):
        for name in (NAMES if i % 2 == 0 else NAMES[::-1]):
            yield i, name


def summary(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {"n": 0}
    q = statistics.quantiles(xs, n=10, method="inclusive") if len(xs) > 1 else [xs[0]] * 9
    return {"n": len(xs), "median": statistics.median(xs), "p10": q[0], "p90": q[8],
            "min": min(xs), "max": max(xs)}


# ---- /proc --------------------------------------------------------------------------------

def proc_stat(pid: int) -> dict[str, Any]:
    """state, ppid, minflt and CPU ticks from /proc/<pid>/stat; also works on zombies."""
    text = Path(f"/proc/{pid}/stat").read_text()
    f = text[text.rindex(")") + 2:].split()  # comm may contain spaces: cut after its ')'
    return {"state": f[0], "ppid": int(f[1]), "minflt": int(f[7]), "utime": int(f[11]),
            "stime": int(f[12]), "cutime": int(f[13]), "cstime": int(f[14])}


def status_fields(path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(path).read_text().splitlines():
        key, _, val = line.partition(":")
        parts = val.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0])
    return out


def ctx_switches(pid: int) -> int:
    """Context switches of every thread: each one is a wake-up (or a preemption)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        st = status_fields(f"/proc/{pid}/task/{task}/status")
        total += st["voluntary_ctxt_switches"] + st["nonvoluntary_ctxt_switches"]
    return total


def memory(pid: int) -> dict[str, int]:
    st = status_fields(f"/proc/{pid}/status")
    roll = status_fields(f"/proc/{pid}/smaps_rollup")
    return {"vmrss_kb": st["VmRSS"], "rss_anon_kb": st.get("RssAnon", 0),
            "pss_kb": roll["Pss"], "uss_kb": roll["Private_Clean"] + roll["Private_Dirty"],
            "threads": st["Threads"], "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def private_by_mapping(pid: int) -> dict[str, int]:
    """Private kB (clean + dirty) of `pid` per mapping name from /proc/<pid>/smaps, largest first:
    what a forked monitor copied (anonymous memory is "[anon]")."""
    out: dict[str, int] = {}
    name = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        first = line.split(None, 1)[0]
        if not first.endswith(":"):  # a mapping's header: range perms offset dev inode [path]
            f = line.split(None, 5)
            name = os.path.basename(f[5]) if len(f) > 5 and f[5].startswith("/") else (
                f[5] if len(f) > 5 else "[anon]")
        elif first in ("Private_Clean:", "Private_Dirty:"):
            out[name] = out.get(name, 0) + int(line.split()[1])
    return dict(sorted(((k, v) for k, v in out.items() if v), key=lambda kv: -kv[1]))


def check_monitor(name: str, pid: int) -> None:
    """Guard against podman's silent fallback to /usr/bin/conmon: is `pid` the right monitor?"""
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    if not cmdline:  # already a zombie: nothing left to look at
        return
    is_podvisor = cmdline.startswith(b"podvisor-conmon ")  # its title (supervisor/monitor/identity.py)
    if is_podvisor != (name == "podvisor"):
        raise RuntimeError(f"monitor pid {pid} for {name} runs {cmdline[:120]!r}")


# ---- child reaping (only while we are a subreaper) ------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def set_subreaper(on: bool) -> None:
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def reap_orphans() -> None:
    """Reap zombies reparented to us. Called only between subprocess calls, so none of them can
    be a child that subprocess itself is about to wait for."""
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            st = proc_stat(int(d))
        except (OSError, ValueError):
            continue
        if st["ppid"] == me and st["state"] == "Z":
            try:
                os.waitpid(int(d), os.WNOHANG)
            except ChildProcessError:
                pass


@contextmanager
def subreaper() -> Iterator[None]:
    set_subreaper(True)
    try:
        yield
    finally:
        set_subreaper(False)
        reap_orphans()


def run_ns(pid: int) -> int | None:
    """On-CPU nanoseconds of the main thread (/proc/<pid>/schedstat), None if unavailable."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def monitor_cpu(pid: int, timeout: float = 120) -> dict[str, Any]:
    """The monitor's own CPU seconds once it has exited (see the module doc)."""
    deadline = time.monotonic() + timeout
    try:
        while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"monitor {pid} still running after {timeout} s")
            time.sleep(0.005)
        st, ns = proc_stat(pid), run_ns(pid)
        os.waitpid(pid, 0)
        method = "zombie"
    except ChildProcessError:
        # fallback: not our child; misses the CPU used after the last sample
        st, ns, method = None, None, "sampled"
        while time.monotonic() < deadline:
            try:
                st = proc_stat(pid)
            except (OSError, ValueError):
                break
            if st["state"] == "Z":
                break
            time.sleep(0.002)
        if st is None:
            return {"cpu_s": None, "method": "gone"}
    if st is None:
        return {"cpu_s": None, "method": "gone"}
    ticks = (st["utime"] + st["stime"]) / TICK
    return {"cpu_s": ns / 1e9 if ns is not None else ticks, "method": method,
            "user_s": st["utime"] / TICK, "sys_s": st["stime"] / TICK,  # 10 ms ticks, split is
            "minflt": st["minflt"],                                      # approximate
            "children_cpu_s": (st["cutime"] + st["cstime"]) / TICK}


# ---- data files and k8s-file log check ------------------------------------------------------

def write_data(path: Path, size: int, line_len: int) -> str:
    """`size` bytes of `line_len`-byte lines (the last one shorter); returns the sha256."""
    alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    body = line_len - 10  # "%08d " + body + "\n"
    lines = []
    for i in range(max(1, (1 << 20) // line_len)):  # a ~1 MiB block of distinct lines
        filler = (alphabet * (body // len(alphabet) + 2))[i % len(alphabet):][:body]
        lines.append(b"%08d %s\n" % (i, filler))
    block = b"".join(lines)
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left > 0:
            chunk = block if left >= len(block) else block[:left - 1] + b"\n"
            f.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def check_log(path: str, size: int, sha: str) -> dict[str, Any]:
    """Reassemble the container's stdout from `<ts> <stream> <P|F> <content>` records
    (F: content plus the newline; P: content only) and compare with the source file."""
    digest = hashlib.sha256()
    total = records = partial = bad = chunks = 0
    last_ts = b""
    batch: list[bytes] = []
    with open(path, "rb") as f:
        for rec in f:
            records += 1
            parts = rec.split(b" ", 3)
            if len(parts) != 4 or parts[1] != b"stdout" or parts[2] not in (b"P", b"F") \
                    or not rec.endswith(b"\n"):
                bad += 1
                continue
            if parts[0] != last_ts:  # one timestamp per read(): counts the monitor's reads
                chunks += 1
                last_ts = parts[0]
            content = parts[3] if parts[2] == b"F" else parts[3][:-1]
            partial += parts[2] == b"P"
            total += len(content)
            batch.append(content)
            if len(batch) >= 4096:  # one hash update per batch: per-record updates cost seconds
                digest.update(b"".join(batch))
                batch.clear()
    digest.update(b"".join(batch))
    ok = bad == 0 and total == size and digest.hexdigest() == sha
    return {"ok": ok, "bytes": total, "expected": size, "records": records, "partial": partial, "reads": chunks,
            "bad_records": bad, "sha_ok": digest.hexdigest() == sha,
            "file_bytes": os.path.getsize(path)}


# ---- the bench --------------------------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace, base: Path) -> None:
        self.args = args
        self.base = base
        self.monitors = {"conmon": CONMON, "podvisor": args.monitor}
        storage = base / "storage"
        # podvisor's two paths: forked by a fork server the bench starts (PODVISOR_CONMON_SERVER=only:
        # a monitor that did not come from it fails), or started directly (off)
        self.sock = base / "fork-server" / "conmon.sock"
        forked = {"PODVISOR_CONMON_SERVER": "only", "PODVISOR_CONMON_SOCKET": str(self.sock)}
        direct = {"PODVISOR_CONMON_SERVER": "off"}
        conmon_env = {"conmon": None, "podvisor": direct if args.direct else forked}
        self.envs: dict[str, PodmanEnv] = {
            name: make_env(base / name, path, root=storage / "root", runroot=storage / "run",
                           tmpdir=storage / "tmp", conmon_env=conmon_env[name])
            for name, path in self.monitors.items()}
        # the memory table's three columns
        self.mem_envs = {"conmon": self.envs["conmon"],
                         "direct": self.envs["podvisor"] if args.direct else make_env(
                             base / "direct", args.monitor, root=storage / "root",
                             runroot=storage / "run", tmpdir=storage / "tmp", conmon_env=direct),
                         "forked": make_env(base / "forked", args.monitor, root=storage / "root",
                                            runroot=storage / "run", tmpdir=storage / "tmp",
                                            conmon_env=forked) if args.direct else self.envs["podvisor"]}
        self.server: subprocess.Popen[bytes] | None = None
        self.image = ""
        self.data = base / "data"
        self.files: dict[str, tuple[int, str]] = {}  # kind -> (size, sha256)
        self.results: dict[str, Any] = {}

    def start_server(self) -> None:
        self.sock.parent.mkdir(mode=0o700)
        python = str(Path(self.args.monitor).parent / "python3")  # the launcher's interpreter
        self.server = subprocess.Popen([python, "-I", "-m", "supervisor.monitor.server",
                                        str(self.sock)], cwd="/", stdin=subprocess.DEVNULL)
        for _ in range(250):
            if self.sock.exists() or self.server.poll() is not None:
                break
            time.sleep(0.02)
        if not self.sock.exists():
            raise RuntimeError(f"fork server did not start (exit {self.server.poll()})")

    def setup(self) -> None:
        self.start_server()
        for name, env in self.envs.items():
            used = env.run("info", "--format", "{{.Host.Conmon.Path}}").stdout.strip()
            if used != self.monitors[name]:  # podman silently falls back to /usr/bin/conmon
                raise RuntimeError(f"podman uses {used!r}, not {self.monitors[name]!r}")
        self.image = ensure_busybox_image(self.envs["conmon"])
        if self.args.memory_only:  # no log phase: 2 x --log-mb of data would be written for nothing
            return
        self.data.mkdir()
        size = self.args.log_mb * MB
        for kind, line_len in (("short", 70), ("long", 100_000)):
            self.files[kind] = (size, write_data(self.data / f"{kind}.txt", size, line_len))
        log(f"image {self.image}; data {size // MB} MB x {len(self.files)} in {self.data}")

    # 1. latency -----------------------------------------------------------------------------

    def latency(self, label: str, argv_for: Callable[[str], list[str]]) -> dict[str, Any]:
        a = self.args
        samples: dict[str, list[float]] = {n: [] for n in NAMES}
        for i, name in pairs(a.warmup + a.runs):
            env = self.envs[name]
            t0 = time.perf_counter()
            env.run(*argv_for(name))
            dt = time.perf_counter() - t0
            if i >= a.warmup:  # the first rounds warm page cache, image mounts, bytecode
                samples[name].append(dt)
        out: dict[str, Any] = {"samples": samples, **{n: summary(samples[n]) for n in NAMES}}
        out["ratio"] = out["podvisor"]["median"] / out["conmon"]["median"]
        log(f"{label}: conmon {out['conmon']['median'] * 1e3:.0f} ms, "
            f"podvisor {out['podvisor']['median'] * 1e3:.0f} ms")
        return out

    def run_latency(self) -> None:
        self.results["run"] = self.latency(
            "run --rm true", lambda n: ["run", "--rm", "--network", "none", self.image, "true"])

    def exec_latency(self) -> None:
        ctrs = {n: self.envs[n].run("run", "-d", "--network", "none", self.image,
                                    "sleep", "1000").stdout.strip() for n in NAMES}
        try:
            self.results["exec"] = self.latency("exec true", lambda n: ["exec", ctrs[n], "true"])
        finally:
            for n in NAMES:
                self.envs[n].run("rm", "--force", "--time", "0", ctrs[n], check=False)

    # 2. log throughput ----------------------------------------------------------------------

    def log_once(self, name: str, kind: str) -> dict[str, Any]:
        env = self.envs[name]
        cmd = ["true"] if kind == "true" else ["cat", f"/data/{kind}.txt"]
        cid = env.run("create", "--network", "none", "--log-driver", "k8s-file",
                      "-v", f"{self.data}:/data:ro", self.image, *cmd).stdout.strip()
        try:
            pidfile = env.inspect(cid, "{{.ConmonPidFile}}")
            os.sync()  # the previous run's log must not be written back during this one
            t0 = time.perf_counter()
            env.run("start", cid)
            pid = int(Path(pidfile).read_text())  # written before `podman start` returns
            check_monitor(name, pid)
            # podman wait polls the container state every 250 ms by default: poll finely
            code = env.run("wait", "--interval", "10ms", cid).stdout.strip()
            elapsed = time.perf_counter() - t0
            if code != "0":
                raise RuntimeError(f"{name} {kind}: container exited {code}")
            started, finished = map(int, env.inspect(
                cid, "{{.State.StartedAt.UnixNano}} {{.State.FinishedAt.UnixNano}}").split())
            res: dict[str, Any] = {"seconds": elapsed, "run_s": (finished - started) / 1e9,
                                   "pid": pid, **monitor_cpu(pid)}
            if kind != "true":
                res["log"] = check_log(env.inspect(cid, "{{.HostConfig.LogConfig.Path}}"),
                                       *self.files[kind])
                if not res["log"]["ok"]:
                    raise RuntimeError(f"{name} {kind}: incomplete log {res['log']}")
            return res
        finally:
            env.run("rm", "--force", "--time", "0", cid, check=False)
            reap_orphans()

    def throughput(self) -> None:
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            n: {k: [] for k in ("true", *LOG_KINDS)} for n in NAMES}
        flip = 0
        with subreaper():
            for rep in range(self.args.reps):
                for kind in ("true", *LOG_KINDS):
                    flip += 1  # each kind's pair runs back to back, first one alternating
                    for name in (NAMES if flip % 2 else NAMES[::-1]):
                        r = self.log_once(name, kind)
                        runs[name][kind].append(r)
                        log(f"logs rep {rep + 1} {kind:5} {name:8} start->wait {r['seconds']:.3f} s,"
                            f" Started->FinishedAt {r['run_s']:.3f} s, monitor CPU "
                            f"{_fmt(r['cpu_s'], '{:.3f} s')} ({r['method']})")
        out: dict[str, Any] = {"runs": runs}
        for n in NAMES:
            true = runs[n]["true"]
            base = {m: statistics.median(r[m] for r in true) for m in ("seconds", "run_s")}
            out[n] = {"true_s": base["seconds"], "true_run_s": base["run_s"],
                      "true_cpu_s": _median(r["cpu_s"] for r in true)}
            for kind in LOG_KINDS:
                rs = runs[n][kind]
                size = self.files[kind][0] / MB
                out[n][kind] = {
                    "raw_s": statistics.median(r["seconds"] for r in rs),
                    "run_s": statistics.median(r["run_s"] for r in rs),
                    # each run net of the monitor's median `true` cost, then the median MB/s
                    "mb_s": statistics.median(size / max(r["run_s"] - base["run_s"], 1e-3) for r in rs),
                    "wall_mb_s": statistics.median(
                        size / max(r["seconds"] - base["seconds"], 1e-3) for r in rs),
                    "cpu_s": _median(r["cpu_s"] for r in rs),
                    "user_s": _median(r.get("user_s") for r in rs),
                    "sys_s": _median(r.get("sys_s") for r in rs),
                    "minflt": _median(r.get("minflt") for r in rs),
                    "bytes_per_read": statistics.median(r["log"]["bytes"] / r["log"]["reads"] for r in rs)}
        for kind in LOG_KINDS:
            out[f"ratio_{kind}"] = out["podvisor"][kind]["mb_s"] / out["conmon"][kind]["mb_s"]
            out[f"wall_ratio_{kind}"] = (out["podvisor"][kind]["wall_mb_s"]
                                         / out["conmon"][kind]["wall_mb_s"])
        self.results["logs"] = out

    # 3 + 4. memory and idle wake-ups --------------------------------------------------------

    def memory_and_idle(self) -> None:
        a = self.args
        pids: dict[str, list[int]] = {n: [] for n in NAMES}
        for _, name in pairs(a.containers):
            env = self.envs[name]
            cid = env.run("run", "-d", "--network", "none", self.image, "sleep", "1000").stdout.strip()
            pid = int(env.inspect(cid, "{{.State.ConmonPid}}"))
            check_monitor(name, pid)
            pids[name].append(pid)
        time.sleep(1.0)  # let the start-up settle (podman's attach/inspect traffic is over)
        mem = {n: [memory(p) for p in pids[n]] for n in NAMES}
        before = {n: [ctx_switches(p) for p in pids[n]] for n in NAMES}
        time.sleep(a.idle_seconds)  # both monitors' containers are idle in the same window
        after = {n: [ctx_switches(p) for p in pids[n]] for n in NAMES}
        out_mem: dict[str, Any] = {"samples": mem}
        for n in NAMES:
            out_mem[n] = {k: statistics.mean(m[k] for m in mem[n]) for k in mem[n][0]}
        out_mem["ratio_rss"] = out_mem["podvisor"]["vmrss_kb"] / out_mem["conmon"]["vmrss_kb"]
        out_mem["ratio_pss"] = out_mem["podvisor"]["pss_kb"] / out_mem["conmon"]["pss_kb"]
        self.results["memory"] = out_mem
        self.results["idle"] = {"seconds": a.idle_seconds, **{
            n: {"per_monitor": [y - x for x, y in zip(before[n], after[n], strict=True)],
                "total": sum(after[n]) - sum(before[n])} for n in NAMES}}
        log(f"memory RSS conmon {out_mem['conmon']['vmrss_kb']:.0f} kB, podvisor "
            f"{out_mem['podvisor']['vmrss_kb']:.0f} kB; idle wake-ups conmon "
            f"{self.results['idle']['conmon']['total']}, podvisor {self.results['idle']['podvisor']['total']}")
        for env in self.envs.values():
            env.remove_all()

    def memory_paths(self) -> None:
        """USS/PSS per idle container for conmon, podvisor direct and podvisor forked, started
        interleaved, for each count in --memory-counts; the server's own share is shown too.
        With --memory-after-output, again with containers that wrote two lines first: a forked
        monitor builds its objects on its first event (monitor/handoff.py), so they cost more."""
        out: dict[str, Any] = {}
        for count in self.args.memory_counts:
            out[str(count)] = self._memory_at(count, SILENT)
            if self.args.memory_after_output:
                out[f"{count}+out"] = self._memory_at(count, TALKING)
            if self.args.memory_exec:
                out[f"{count}+exec"] = self._memory_exec(count)
        self.results["memory_paths"] = out

    def _memory_exec(self, count: int) -> dict[str, Any]:
        """`count` idle detached exec sessions (`podman exec -d CTR sleep 1000`) in one container
        per monitor kind: each session has a monitor of its own."""
        pids: dict[str, list[int]] = {}
        for k, env in self.mem_envs.items():
            cid = env.run("run", "-d", "--network", "none", self.image, *SILENT).stdout.strip()
            for _ in range(count):
                env.run("exec", "-d", cid, *SILENT)
            # a forked one's set-up process bears the same command line until it has handed over
            deadline = time.monotonic() + 10
            pids[k] = _exec_monitors(cid)
            while len(pids[k]) != count:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{k}: {len(pids[k])} exec monitors for {count} sessions")
                time.sleep(0.05)
                pids[k] = _exec_monitors(cid)
            for pid in pids[k]:
                check_monitor("conmon" if k == "conmon" else "podvisor", pid)
        return self._measure(count, pids, "exec sessions")

    def _memory_at(self, count: int, command: tuple[str, ...]) -> dict[str, Any]:
        kinds = list(self.mem_envs)
        pids: dict[str, list[int]] = {k: [] for k in kinds}
        for i in range(count):
            for k in (kinds if i % 2 == 0 else kinds[::-1]):
                env = self.mem_envs[k]
                cid = env.run("run", "-d", "--network", "none", self.image,
                              *command).stdout.strip()
                pid = int(env.inspect(cid, "{{.State.ConmonPid}}"))
                check_monitor("conmon" if k == "conmon" else "podvisor", pid)
                pids[k].append(pid)
                if command is TALKING:  # measured once its monitor has logged both lines
                    _wait_logged(env, cid, "warming up")
        return self._measure(count, pids, "after output" if command is TALKING else "")

    def _measure(self, count: int, pids: dict[str, list[int]], what: str) -> dict[str, Any]:
        kinds = list(pids)
        time.sleep(1.0)
        mem = {k: [memory(p) for p in pids[k]] for k in kinds}
        server = memory(self.server.pid) if self.server else None
        before = {k: sum(ctx_switches(p) for p in pids[k]) for k in kinds}
        time.sleep(self.args.idle_seconds)
        after = {k: sum(ctx_switches(p) for p in pids[k]) for k in kinds}
        row: dict[str, Any] = {"server": server, "forked_mappings": private_by_mapping(pids["forked"][0])}
        for k in kinds:
            row[k] = {m: statistics.mean(x[m] for x in mem[k]) for m in ("vmrss_kb", "pss_kb", "uss_kb")}
            row[k]["wakeups"] = after[k] - before[k]
            row[k]["uss_in_start_order"] = [x["uss_kb"] for x in mem[k]]
        if server:  # all the forked monitors together, the server included, per container
            row["forked"]["pss_with_server_kb"] = row["forked"]["pss_kb"] + server["pss_kb"] / count
        log(f"memory at {count}{' ' + what if what else ''}: " + ", ".join(
            f"{k} USS {row[k]['uss_kb']:.0f} PSS {row[k]['pss_kb']:.0f} kB" for k in kinds))
        log("a forked monitor's private kB by mapping: " + ", ".join(
            f"{k} {v}" for k, v in list(row["forked_mappings"].items())[:8]))
        for env in {id(e): e for e in self.mem_envs.values()}.values():
            env.remove_all()
        return row

    def cleanup(self) -> None:
        if self.server is not None:
            self.server.terminate()
            self.server.wait(timeout=30)
        for env in {id(e): e for e in (*self.envs.values(), *self.mem_envs.values())}.values():
            try:
                env.remove_all()
            except Exception as e:
                log(f"cleanup: {e}")
        self.envs["conmon"].cleanup(storage=True)  # the store is shared


def _median(xs: Iterator[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


# ---- report -----------------------------------------------------------------------------------

TARGET_USS_KB = 1000   # forked, per idle container
TARGET_PSS_KB = 1500


def _exec_monitors(cid: str) -> list[int]:
    """The exec sessions' monitors of container `cid`: conmon and podvisor-conmon both show
    `-c <cid>` and `--exec-process-spec` on their command line (podvisor's as one title string)."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b" --exec-process-spec " in cmdline and b" -c %s " % cid.encode() in cmdline:
                found.append(int(d.name))
    return found


def _wait_logged(env: PodmanEnv, cid: str, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in env.run("logs", cid).stderr:
        if time.monotonic() > deadline:
            raise RuntimeError(f"container {cid[:12]} logged no {text!r} in {timeout:.0f} s")
        time.sleep(0.05)


def report_memory(res: dict[str, Any]) -> list[str]:
    missed = []
    print("\nper idle container, kB (MB = 1000 kB): conmon / podvisor direct / podvisor forked "
          f"(target forked USS <= {TARGET_USS_KB}, PSS <= {TARGET_PSS_KB})")
    print(f"{'containers':>10}  {'measure':<30} {'conmon':>8} {'direct':>8} {'forked':>8}  verdict")
    for count, row in res["memory_paths"].items():
        if count.endswith("+out"):
            print(f"{count:>10}  (each wrote 2 lines before idling: not the target's idle case)")
        if count.endswith("+exec"):
            print(f"{count:>10}  (idle detached exec sessions, one monitor each)")
        for key, label in (("vmrss_kb", "RSS"), ("pss_kb", "PSS"), ("uss_kb", "USS")):
            verdict = ""
            if key in ("pss_kb", "uss_kb") and count.isdigit():
                ok = row["forked"][key] <= (TARGET_USS_KB if key == "uss_kb" else TARGET_PSS_KB)
                verdict = "ok" if ok else "MISSED"
                if not ok:
                    missed.append(f"forked {label} at {count}")
            print(f"{count:>10}  {label:<30} {row['conmon'][key]:>8.0f} {row['direct'][key]:>8.0f} "
                  f"{row['forked'][key]:>8.0f}  {verdict}")
        if row.get("server"):
            print(f"{count:>10}  {'PSS incl. server share':<30} {'':>8} {'':>8} "
                  f"{row['forked']['pss_with_server_kb']:>8.0f}  (server PSS "
                  f"{row['server']['pss_kb']} kB, USS {row['server']['uss_kb']} kB)")
        print(f"{count:>10}  {'idle wake-ups, all monitors':<30} {row['conmon']['wakeups']:>8} "
              f"{row['direct']['wakeups']:>8} {row['forked']['wakeups']:>8}")
    return missed


def report(res: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """Print the table; return the list of targets missed."""
    if "run" not in res:
        return report_memory(res) if "memory_paths" in res else []
    rows: list[tuple[str, ...]] = []
    missed: list[str] = []

    def verdict(ok: bool, what: str) -> str:
        if not ok:
            missed.append(what)
        return "ok" if ok else "MISSED"

    for key, label in (("run", "run --rm true"), ("exec", "exec true")):
        r = res[key]
        cell = [f"{r[n]['median'] * 1e3:.0f} ms [{r[n]['p10'] * 1e3:.0f}-{r[n]['p90'] * 1e3:.0f}]"
                for n in NAMES]
        rows.append((f"{label} median [p10-p90]", *cell, f"{r['ratio']:.2f}x",
                     f"<= {TARGET_LATENCY:.2f}x", verdict(r["ratio"] <= TARGET_LATENCY, label)))
    lg = res["logs"]
    rows.append(("  `true` StartedAt->FinishedAt / start->wait",
                 *[f"{lg[n]['true_run_s'] * 1e3:.0f} / {lg[n]['true_s'] * 1e3:.0f} ms" for n in NAMES],
                 "", "", ""))
    rows.append(("  `true` monitor CPU",
                 *[_fmt(lg[n]["true_cpu_s"], "{:.1f} ms", 1e3) for n in NAMES],
                 _ratio(lg["podvisor"]["true_cpu_s"], lg["conmon"]["true_cpu_s"]), "", ""))
    for kind, desc in LOG_KINDS.items():
        ratio = lg[f"ratio_{kind}"]
        rows.append((f"k8s-file log, {desc}: MB/s",
                     *[f"{lg[n][kind]['mb_s']:.0f}" for n in NAMES], f"{ratio:.2f}x",
                     f">= {TARGET_THROUGHPUT:.1f}x", verdict(ratio >= TARGET_THROUGHPUT, f"logs {kind}")))
        rows.append(("  MB/s by start->wait minus `true`",
                     *[f"{lg[n][kind]['wall_mb_s']:.0f}" for n in NAMES],
                     f"{lg[f'wall_ratio_{kind}']:.2f}x", "", ""))
        rows.append(("  StartedAt->FinishedAt / start->wait",
                     *[f"{lg[n][kind]['run_s']:.2f} / {lg[n][kind]['raw_s']:.2f} s" for n in NAMES],
                     "", "", ""))
        rows.append(("  monitor CPU", *[_fmt_s(lg[n][kind]["cpu_s"]) for n in NAMES],
                     _ratio(lg["podvisor"][kind]["cpu_s"], lg["conmon"][kind]["cpu_s"]), "", ""))
        rows.append(("  monitor CPU user / sys (ticks)",
                     *[f"{_fmt_s(lg[n][kind]['user_s'])} / {_fmt_s(lg[n][kind]['sys_s'])}"
                       for n in NAMES], "", "", ""))
        rows.append(("  monitor minor page faults",
                     *[_fmt(lg[n][kind]["minflt"], "{:.0f}") for n in NAMES], "", "", ""))
        rows.append(("  bytes per read() (distinct log timestamps)",
                     *[f"{lg[n][kind]['bytes_per_read']:.0f}" for n in NAMES], "", "", ""))
    m = res["memory"]
    for key, label in (("vmrss_kb", "RSS"), ("pss_kb", "PSS"), ("uss_kb", "USS (private)")):
        rows.append((f"monitor {label} kB, avg of {args.containers}",
                     *[f"{m[n][key]:.0f}" for n in NAMES],
                     f"{m['podvisor'][key] / m['conmon'][key]:.2f}x", "", ""))
    rows.append(("  fds / threads", *[f"{m[n]['fds']:.0f} / {m[n]['threads']:.0f}" for n in NAMES],
                 "", "", ""))
    idle = res["idle"]
    rows.append((f"idle wake-ups in {idle['seconds']:g} s, {args.containers} monitors",
                 *[str(idle[n]["total"]) for n in NAMES], "", "podvisor 0",
                 verdict(idle["podvisor"]["total"] == 0, "idle wake-ups")))

    head = ("metric", "conmon", "podvisor", "ratio", "target", "")
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(6)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    path = "started directly" if args.direct else "forked by the fork server"
    print(f"\npodvisor-conmon ({args.monitor}, {path}) vs conmon 2.1.6 ({CONMON}); "
          "ratio = podvisor/conmon")
    print(f"runs {args.runs} (+{args.warmup} warm-up), log reps {args.reps} x {args.log_mb} MB, "
          f"{args.containers} idle containers; load avg {res['load_before']} -> {res['load_after']}")
    print(line(head))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))
    if "memory_paths" in res:
        missed += report_memory(res)
    return missed


def _fmt(x: float | None, spec: str, scale: float = 1.0) -> str:
    return "n/a" if x is None else spec.format(x * scale)


def _ratio(p: float | None, c: float | None) -> str:
    return f"{p / c:.2f}x" if p and c else ""


def _fmt_s(x: float | None) -> str:
    return _fmt(x, "{:.2f} s")


# ---- main ---------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--monitor", help="podvisor-conmon to test (default: next to this Python, "
                                     "else .venv/bin, else /tmp/pvd/bin)")
    p.add_argument("--runs", type=int, help=f"latency runs per monitor (default {FULL['runs']})")
    p.add_argument("--reps", type=int, help=f"log throughput repetitions (default {FULL['reps']})")
    p.add_argument("--log-mb", type=int, help=f"MB written per log run (default {FULL['log_mb']})")
    p.add_argument("--containers", type=int,
                   help=f"idle containers per monitor (default {FULL['containers']})")
    p.add_argument("--idle-seconds", type=float,
                   help=f"idle wake-up window (default {FULL['idle_seconds']:g})")
    p.add_argument("--warmup", type=int, help="unrecorded latency rounds first (default 2)")
    p.add_argument("--quick", action="store_true", help="small smoke-test sizes (< 2 minutes)")
    p.add_argument("--json", metavar="FILE", help="write the raw results here")
    p.add_argument("--base", default="/var/tmp", metavar="DIR",
                   help="a fresh pvb-* directory is made (and removed) under DIR")
    p.add_argument("--check", action="store_true", help="exit 2 if a target is missed")
    p.add_argument("--direct", action="store_true",
                   help="compare conmon with podvisor started directly (default: forked by the "
                        "fork server the bench starts)")
    p.add_argument("--memory-counts", default="", metavar="N,N",
                   help="idle containers per monitor for the conmon/direct/forked memory table, "
                        "e.g. 20,100 (default: none)")
    p.add_argument("--memory-only", action="store_true",
                   help="only the conmon/direct/forked memory table")
    p.add_argument("--memory-after-output", action="store_true",
                   help="also measure containers that wrote a line to stdout and one to stderr "
                        "before idling (rows `N+out`; the target is for idle ones)")
    p.add_argument("--memory-exec", action="store_true",
                   help="also measure N idle detached exec sessions' monitors (rows `N+exec`)")
    args = p.parse_args(argv)
    for key, val in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, val)
    args.monitor = str(Path(args.monitor or default_monitor()).absolute())
    args.memory_counts = [int(x) for x in args.memory_counts.split(",") if x]
    if args.memory_only and not args.memory_counts:
        p.error("--memory-only needs --memory-counts")
    if args.runs < 2 or args.reps < 1 or args.containers < 1 or args.log_mb < 1:
        p.error("need --runs >= 2, --reps >= 1, --containers >= 1, --log-mb >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("run as root (rootful podman with private storage)")
    if not os.access(args.monitor, os.X_OK):
        sys.exit(f"{args.monitor} is not executable")
    signal.signal(signal.SIGTERM, _interrupt)  # the same way out as Ctrl-C: the finally below
    base = Path(tempfile.mkdtemp(prefix="pvb-", dir=args.base))
    res: dict[str, Any] = {"load_before": loadavg()}
    t_start = time.monotonic()
    bench: Bench | None = None
    try:
        bench = Bench(args, base)
        bench.results = res
        bench.setup()
        phases = [bench.run_latency, bench.exec_latency, bench.throughput, bench.memory_and_idle]
        if args.memory_only:
            phases = []
        if args.memory_counts:
            phases.append(bench.memory_paths)
        for phase in phases:
            log(f"phase {phase.__name__} (load {loadavg()})")
            phase()
    finally:
        # a second Ctrl-C or SIGTERM must not cut the clean-up short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log("cleaning up")
        try:
            if bench is not None:
                bench.cleanup()
        finally:
            shutil.rmtree(base, ignore_errors=True)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, _interrupt)
    res["load_after"] = loadavg()
    res["wall_s"] = time.monotonic() - t_start
    res["config"] = {k: v for k, v in vars(args).items()}
    res["versions"] = {"podman": _first_line(["podman", "--version"]),
                       "conmon": _first_line([CONMON, "--version"]),
                       "runc": _first_line(["runc", "--version"]), "kernel": os.uname().release}
    missed = report(res, args)
    print(f"\n{'all targets met' if not missed else 'targets missed: ' + ', '.join(missed)}; "
          f"wall {res['wall_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str) + "\n")
        print(f"raw results: {args.json}")
    return 2 if missed and args.check else 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _first_line(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.split("\n")[0]
    except OSError as e:
        return str(e)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted (containers and storage were removed)")
        sys.exit(130)
