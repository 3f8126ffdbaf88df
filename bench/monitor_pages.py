#!/usr/bin/env python3
"""Which pages a forked idle podvisor-conmon owns alone, and which Python objects are on them.

    python3 bench/monitor_pages.py [--containers N] [--top N] [--json FILE]     (as root, ~15 s)

It starts a fork server of its own (with bench/pages_hook.py loaded: a snapshot child of the
server's memory right before serving, and a dump of every object the server can reach: address,
size, type, owning module, a short label), then N idle containers (`sleep 1000`) through real
podman forked by that server, and looks at the first monitor (the server's writes between forks
are then not mistaken for the monitor's):

- private pages: present in the monitor with a page frame no other process maps
  (/proc/PID/pagemap, /proc/kpagecount: what smaps counts as Private_*), per mapping;
- copied pages (the server had that page): the monitor's bytes are diffed word by word with the
  snapshot's, and each changed word is put on the object that covers it (its refcount, GC
  header, bytecode or another field), else on the interpreter's static symbol (nm -D) or the
  allocator's pool header. A page's cost is shared among the objects written on it;
- new pages (not in the server): object allocator pools by size class, with the objects found on
  them (a known type pointer after a plausible refcount), and malloc heap/stack pages.

The result is by owning module, by type, by kind of write, and the top objects.
"""
from __future__ import annotations

import argparse
import bisect
import collections
import json
import mmap
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PAGE = mmap.PAGESIZE
POOL_OVERHEAD = 48  # CPython 3.11 pymalloc pool header on 64-bit


# ---- memory of other processes (as root) ----------------------------------------------------

class Mem:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.mem = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
        self.pagemap = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
        self.maps = []
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
            f = line.split(None, 5)
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            name = f[5] if len(f) > 5 else "[anon]"
            self.maps.append((lo, hi, f[1], os.path.basename(name) if name.startswith("/") else name))
        self.cache: dict[int, bytes | None] = {}

    def pfns(self, lo: int, hi: int) -> list[int]:
        """Page frame per page of [lo, hi), 0 if not present."""
        n = (hi - lo) // PAGE
        raw = os.pread(self.pagemap, n * 8, lo // PAGE * 8)
        out = []
        for (e,) in struct.iter_unpack("<Q", raw):
            out.append(e & ((1 << 55) - 1) if e >> 63 else 0)
        return out

    def page(self, addr: int) -> bytes | None:
        base = addr - addr % PAGE
        if base not in self.cache:
            try:
                self.cache[base] = os.pread(self.mem, PAGE, base)
            except OSError:
                self.cache[base] = None
        return self.cache[base]

    def word(self, addr: int) -> int | None:
        p = self.page(addr)
        if p is None or addr % PAGE > PAGE - 8:
            return None
        return int(struct.unpack_from("<Q", p, addr % PAGE)[0])

    def close(self) -> None:
        os.close(self.mem)
        os.close(self.pagemap)


def mapcounts(pfns: list[int]) -> dict[int, int]:
    fd = os.open("/proc/kpagecount", os.O_RDONLY)
    try:
        return {p: struct.unpack("<Q", os.pread(fd, 8, p * 8))[0] for p in set(pfns) if p}
    finally:
        os.close(fd)


def static_symbols(binary: str) -> tuple[list[int], list[tuple[int, str]]]:
    out = subprocess.run(["nm", "-D", "-S", "--defined-only", binary], capture_output=True,
                         text=True).stdout
    syms = []
    for line in out.splitlines():
        f = line.split()
        if len(f) == 4 and f[2] in "BDdbRr":
            syms.append((int(f[0], 16), int(f[0], 16) + int(f[1], 16), f[3]))
    syms.sort()
    return [s[0] for s in syms], [(s[1], s[2]) for s in syms]


# ---- the analysis ---------------------------------------------------------------------------

class Objects:
    def __init__(self, path: str, snapshot: Mem) -> None:
        lines = Path(path).read_text().splitlines()
        self.head = json.loads(lines[0])
        recs = [json.loads(x) for x in lines[1:]]
        self.types = {r[4]: r[3] for r in recs if r[4]}
        self.type_ids = set(self.types)
        kept = []
        dropped = 0
        for r in recs:
            addr, _, _, _, tid = r[:5]
            # the dumper's own objects (made after the fork) are not the server's: its type
            # pointer must already be in the snapshot
            if tid and snapshot.word(addr + 8) != tid:
                dropped += 1
                continue
            start = addr - 16 if r[2] else addr
            kept.append((start, start + max(r[1], 16), r))
        kept.sort()
        self.dropped = dropped
        self.starts = [k[0] for k in kept]
        self.spans = kept
        self.by_id = {r[0]: r for _, _, r in kept}

    def at(self, addr: int) -> tuple[int, list[Any]] | None:
        i = bisect.bisect_right(self.starts, addr) - 1
        while i >= 0:
            start, end, r = self.spans[i]
            if start <= addr < end:
                return start, r
            if addr - start > 1 << 16:
                return None
            i -= 1
        return None


def _write_kind(rec: list[Any], offset: int) -> str:
    """What a write at `offset` from the object's address is."""
    if offset < 0:
        return "gc header"
    if offset == 0:
        return "refcount"
    if rec[3] == "code" and offset >= CODE_HEAD:
        return "bytecode"
    if not rec[4]:
        return rec[3]  # a buffer: dict keys, list items
    return "field"


CODE_HEAD = 200  # PyCodeObject's fixed part in 3.11; its (specialised) bytecode follows
FAULT = re.compile(r"\s*(\d+)/\d+\s+([\d.]+):\s+([0-9a-f]+)\s+(.*?)\s+([0-9a-f]+)\s+(\S+)\s*$")
FORK = re.compile(r"PERF_RECORD_FORK\((\d+):\d+\):\((\d+):\d+\)")


Fault = tuple[str, int, str, str]  # who, address, symbol at the address, function that faulted


def read_faults(data: str, monitor: int) -> tuple[dict[int, Fault], dict[int, Fault], int]:
    """The first page fault on each page by the monitor and, before it forked the monitor, by its
    first process (whose copies the monitor inherits): page -> Fault, for each of the two."""
    out = subprocess.run(["perf", "script", "-i", data, "--show-task-events",
                          "-F", "pid,tid,time,addr,ip,sym"], capture_output=True, text=True).stdout
    first_process = 0
    forked_at = 0.0
    events = []
    for line in out.splitlines():
        m = FORK.search(line)
        if m and int(m.group(1)) == monitor:
            first_process = int(m.group(2))
            forked_at = float(line.split(":", 1)[0].split()[-1])
            continue
        m = FAULT.match(line)
        if m:
            events.append((float(m.group(2)), int(m.group(1)), int(m.group(3), 16), m.group(4),
                           m.group(6)))
    by_monitor: dict[int, Fault] = {}
    by_first: dict[int, Fault] = {}
    for t, pid, addr, asym, fn in sorted(events):
        page = addr - addr % PAGE
        if pid == monitor:
            by_monitor.setdefault(page, ("monitor", addr, asym, fn))
        elif pid == first_process and t <= forked_at:
            by_first.setdefault(page, ("first process", addr, asym, fn))
    return by_monitor, by_first, first_process


def _cause(addr: int, asym: str, name: str, objs: Objects,
           syms: tuple[list[int], list[tuple[int, str]]]) -> tuple[Any, str]:
    """The object (its dump record's id) or the static symbol a faulting write hit, and how."""
    found = objs.at(addr)
    if found is not None:
        return found[1][0], _write_kind(found[1], addr - found[1][0])
    addr_list, sym_list = syms
    i = bisect.bisect_right(addr_list, addr) - 1
    if i >= 0 and addr < sym_list[i][0]:
        return "static " + sym_list[i][1], "static data"
    if asym not in ("[unknown]", ""):
        return "static " + asym.split("+")[0], "static data"
    if name == "[anon]" and addr % PAGE < POOL_OVERHEAD:
        return "pool header (first block of a pool)", "allocator"
    return f"no known object ({name})", "other"


def private_pages(mon: Mem, snap: Mem) -> list[dict[str, Any]]:
    """The monitor's pages no other process maps, each marked copied (the snapshot of the server
    has a page there) or new."""
    pages: list[dict[str, Any]] = []
    for lo, hi, _, name in mon.maps:
        pf = mon.pfns(lo, hi)
        counts = mapcounts(pf)
        spf = snap.pfns(lo, hi) if any(s[0] <= lo < s[1] for s in snap.maps) else [0] * len(pf)
        for k, p in enumerate(pf):
            if p and counts.get(p) == 1:
                pages.append({"addr": lo + k * PAGE, "map": name, "copied": bool(spf[k])})
    return pages


WHO = ("first process", "monitor", "monitor (the first process wrote it too)")


class Tally:
    def __init__(self) -> None:
        self.kb: dict[str, dict[Any, int]] = collections.defaultdict(
            lambda: collections.defaultdict(int))
        self.by_map: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
        self.kinds_of: dict[Any, set[str]] = collections.defaultdict(set)
        self.new_pools: dict[int, int] = collections.defaultdict(int)
        self.new_types: dict[str, int] = collections.defaultdict(int)
        self.new_strs: list[str] = []
        self.unchanged = 0

    def page(self, pg: dict[str, Any], fault: Fault | None, also_first: bool, objs: Objects,
             syms: tuple[list[int], list[tuple[int, str]]]) -> None:
        """Put one private page on the object (or symbol) its first write fault hit."""
        kb = PAGE // 1024
        if fault is None:
            key, kind, who, fn, addr = f"no fault recorded ({pg['map']})", "other", "?", "?", 0
        else:
            who, addr, asym, fn = fault
            key, kind = _cause(addr, asym, pg["map"], objs, syms)
            if who == "monitor" and also_first:
                who = WHO[2]
        if not pg["copied"]:
            kind = "new page: " + kind
        label = objs.by_id[key][3] if isinstance(key, int) else key
        for table, k in (("kind", kind), ("map " + pg["map"], f"{label}: {kind}"), ("who", who),
                         ("function", fn)):
            self.kb[table][k] += kb
        if isinstance(key, int):
            rec = objs.by_id[key]
            for table, k in (("object", key), ("object " + who, key), ("owner", rec[5]),
                             ("type", rec[3])):
                self.kb[table][k] += kb
            self.kinds_of[key].add(f"{kind} +{addr - key} in {fn}" if fault else kind)
        else:
            self.kb["other"][key] += kb
            self.kb["owner"]["(not a dumped object)"] += kb


def analyse(mon: Mem, snap: Mem, objs: Objects, syms: tuple[list[int], list[tuple[int, str]]],
            faults: tuple[dict[int, Fault], dict[int, Fault]], top: int) -> dict[str, Any]:
    """Each private page is put on the monitor's first write to it, else (a page only the first
    process wrote, before forking the monitor) on the first process's."""
    by_monitor, by_first = faults
    t = Tally()
    for pg in private_pages(mon, snap):
        a = pg["addr"]
        t.by_map[pg["map"]][0 if pg["copied"] else 1] += PAGE // 1024
        mine = mon.page(a)
        if mine is not None and not pg["copied"]:
            _scan_new(pg, mine, objs, t.new_pools, t.new_types, t.new_strs)
        elif mine is not None and mine == snap.page(a):
            t.unchanged += 1  # written and restored: a refcount up and down again
        t.page(pg, by_monitor.get(a) or by_first.get(a), a in by_first, objs, syms)
    return _summary(t, objs, _freed(mon, objs), top)


def _summary(t: Tally, objs: Objects, freed: list[list[Any]], top: int) -> dict[str, Any]:
    def topn(d: dict[Any, int]) -> list[tuple[Any, int]]:
        return sorted(d.items(), key=lambda kv: -kv[1])[:top]
    return {
        "private_kb": sum(v[0] + v[1] for v in t.by_map.values()),
        "by_mapping_kb": {k: {"copied": v[0], "new": v[1], "causes": topn(t.kb["map " + k])[:8]}
                          for k, v in sorted(t.by_map.items(), key=lambda kv: -sum(kv[1]))},
        "copied_unchanged_pages": t.unchanged,
        "by_who_kb": topn(t.kb["who"]),
        "by_owner_kb": topn(t.kb["owner"]),
        "by_type_kb": topn(t.kb["type"]),
        "by_write_kb": topn(t.kb["kind"]),
        "by_faulting_function_kb": topn(t.kb["function"]),
        "not_objects_kb": topn(t.kb["other"]),
        "top_objects_kb": {who: [(v, objs.by_id[k][3], objs.by_id[k][5], objs.by_id[k][6],
                                  sorted(t.kinds_of[k])) for k, v in topn(t.kb["object " + who])]
                           for who in WHO},
        "new_pools_by_block_size": dict(sorted(t.new_pools.items())),
        "new_objects_by_type": dict(sorted(t.new_types.items(), key=lambda kv: -kv[1])[:top]),
        "new_strings_sample": t.new_strs[:top],
        "dump_dropped": objs.dropped,
        "server_objects_freed": len(freed),
        "freed_by_type": collections.Counter(r[3] for r in freed).most_common(top),
        "freed_sample": [f"{r[3]} {r[5]} {r[6]}"[:90] for r in freed[:top]],
    }


def _freed(mon: Mem, objs: Objects) -> list[list[Any]]:
    """The server's objects that the monitor or its first process freed: their type pointer is
    gone (the block is on a free list, or holds a new object). Each free writes the object's
    page, and the allocator then serves the next objects of that size from the freed blocks."""
    out = []
    for _, _, rec in objs.spans:
        if rec[4] and mon.word(rec[0] + 8) not in (rec[4], None):
            out.append(rec)
    return out


def _scan_new(pg: dict[str, Any], data: bytes, objs: Objects, pools: dict[int, int],
              types: dict[str, int], strs: list[str]) -> None:
    """A page the server did not have: which pool (arenas) and which objects are on it."""
    if pg["map"] == "[anon]":
        count, = struct.unpack_from("<I", data, 0)
        szidx, = struct.unpack_from("<I", data, 36)
        if szidx < 32 and 0 < count <= (PAGE - POOL_OVERHEAD) // ((szidx + 1) * 16):
            pools[(szidx + 1) * 16] += 1
    for off in range(0, PAGE - 16, 16):
        refcnt, tp = struct.unpack_from("<QQ", data, off)
        if tp in objs.type_ids and 0 < refcnt < 1 << 32:
            name = objs.types[tp]
            types[name] += 1
            if name == "str" and off + 48 < PAGE:
                length, = struct.unpack_from("<q", data, off + 16)
                state, = struct.unpack_from("<I", data, off + 32)
                if state & 0x60 == 0x60 and 0 <= length < 200:  # compact ascii
                    strs.append(data[off + 48:off + 48 + min(length, 60)].decode("ascii", "replace"))


# waits x this under emulation (the check VM's `pages` step sets 10, as for the tests there)
SCALE = float(os.environ.get("PODVISOR_TEST_TIME_SCALE") or 1)


# ---- the run -----------------------------------------------------------------------------------

def start_server(python: str, sock: Path, dump: Path) -> subprocess.Popen[bytes]:
    code = (f"import sys; sys.path.insert(0, {str(BENCH)!r}); import pages_hook; sys.path.pop(0); "
            f"pages_hook.install({str(BENCH)!r}, {str(dump)!r}); "
            f"from supervisor.monitor.server import main; sys.exit(main([{str(sock)!r}]))")
    sock.parent.mkdir(mode=0o700)
    proc = subprocess.Popen([python, "-I", "-c", code], cwd="/", stdin=subprocess.DEVNULL)
    for _ in range(int(500 * SCALE)):
        if dump.exists() or proc.poll() is not None:
            break
        time.sleep(0.02)
    if not dump.exists():
        proc.kill()  # not the caller's to stop yet: it would outlive us (and hold our stdout)
        proc.wait()
        raise RuntimeError(f"fork server or its object dump did not start (exit {proc.poll()})")
    return proc


def uss_kb(pid: int) -> int:
    f = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        k, v = line.split(":", 1)
        f[k] = int(v.split()[0])
    return f["Private_Clean"] + f["Private_Dirty"]


def report(res: dict[str, Any]) -> None:
    print(f"\nfirst forked monitor: {res['private_kb']} kB private (USS of all: {res['uss_kb']}); "
          f"{res['objects_dumped']} server objects dumped")
    print("by mapping (kB copied from the server / new):")
    for k, v in res["by_mapping_kb"].items():
        print(f"  {k:40} {v['copied']:6} {v['new']:6}   " + ", ".join(f"{c} {n}" for c, n in v["causes"]))
    print(f"copied pages whose bytes equal the server's again: {res['copied_unchanged_pages']}")
    print("each private page is put on the first write fault on it (perf), by:")
    for title, key in (("who wrote first", "by_who_kb"), ("owning module", "by_owner_kb"),
                       ("type", "by_type_kb"), ("kind of write", "by_write_kb"),
                       ("faulting C function", "by_faulting_function_kb"),
                       ("not on a dumped object", "not_objects_kb")):
        print(f" {title} (kB):")
        for k, v in res[key]:
            print(f"  {v:6}  {k}")
    for who, rows in res["top_objects_kb"].items():
        print(f" top objects, pages first written by the {who} (kB, type, owner, label, writes):")
        for share, t, owner, label, kinds in rows:
            print(f"  {share:6}  {t:12} {owner:30} {label[:64]:64} {','.join(kinds)}")
    print("new object-allocator pools by block size:", res["new_pools_by_block_size"])
    print("objects found on new pages by type:", res["new_objects_by_type"])
    print("strings on new pages (sample):", res["new_strings_sample"])
    print(f"server objects freed: {res['server_objects_freed']}, by type: {res['freed_by_type']}")
    print("freed (sample):", res["freed_sample"])


def measure(env: Any, image: str, python: str, base: Path, args: argparse.Namespace,
            procs: dict[str, Any]) -> dict[str, Any]:
    """Start the hooked server, N idle containers under perf, and analyse the first monitor.
    `procs` gets what the caller must stop: the server, its snapshot child, perf."""
    sock = base / "fork-server" / "conmon.sock"
    dump = base / "objects.jsonl"
    procs["server"] = server = start_server(python, sock, dump)
    procs["snapshot"] = json.loads(dump.read_text().split("\n", 1)[0])["snapshot"]
    data = str(base / "faults.data")
    procs["perf"] = perf = subprocess.Popen(
        ["perf", "record", "-q", "-e", "page-faults", "-c", "1", "-d", "-p", str(server.pid),
         "-o", data], stdout=subprocess.DEVNULL)
    time.sleep(1.0 * SCALE)  # perf attaches
    pids = []
    for _ in range(args.containers):
        cid = env.run("run", "-d", "--network", "none", image, "sleep", "1000").stdout.strip()
        pids.append(int(env.inspect(cid, "{{.State.ConmonPid}}")))
    time.sleep(1.0)
    perf.send_signal(signal.SIGINT)
    perf.wait(timeout=60)
    by_monitor, by_first, _ = read_faults(data, pids[0])
    mon, snap = Mem(pids[0]), Mem(procs["snapshot"])
    try:
        objs = Objects(str(dump), snap)
        res = analyse(mon, snap, objs, static_symbols(os.path.realpath(python)),
                      (by_monitor, by_first), args.top)
    finally:
        mon.close()
        snap.close()
    res["uss_kb"] = [uss_kb(p) for p in pids]
    res["objects_dumped"] = len(objs.spans)
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--containers", type=int, default=3)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--monitor", help="podvisor-conmon (default as bench_monitor.py)")
    p.add_argument("--base", default="/var/tmp")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("PODVISOR_CHECKOUT", str(REPO))
    from bench_monitor import default_monitor

    from supervisor.lab.testenv import ensure_busybox_image, make_env

    monitor = str(Path(args.monitor or default_monitor()).absolute())
    base = Path(tempfile.mkdtemp(prefix="pvp-", dir=args.base))
    env = make_env(base / "forked", monitor, root=base / "root", runroot=base / "run",
                   tmpdir=base / "tmp", conmon_env={
                       "PODVISOR_CONMON_SERVER": "only",
                       "PODVISOR_CONMON_SOCKET": str(base / "fork-server" / "conmon.sock")})
    procs: dict[str, Any] = {}
    try:
        image = ensure_busybox_image(env)
        res = measure(env, image, str(Path(monitor).parent / "python3"), base, args, procs)
        report(res)
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    finally:
        _stop(procs)
        try:
            env.remove_all()
        finally:
            if procs.get("server") is not None:
                procs["server"].terminate()
                procs["server"].wait(timeout=30)
            env.cleanup(storage=True)
            subprocess.run(["rm", "-rf", str(base)])
    return 0


def _stop(procs: dict[str, Any]) -> None:
    if procs.get("perf") is not None and procs["perf"].poll() is None:
        procs["perf"].send_signal(signal.SIGINT)
        procs["perf"].wait(timeout=60)
    if procs.get("snapshot"):
        try:
            os.kill(procs["snapshot"], signal.SIGKILL)
        except ProcessLookupError:
            pass


if __name__ == "__main__":
    sys.exit(main())
