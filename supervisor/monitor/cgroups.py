"""Join another process's cgroups: a monitor forked by the server belongs where podman put the
launcher (cgroup v1: every hierarchy, v2: the one), never in the server's."""
from __future__ import annotations

import os


def _membership(pid: int | str) -> dict[frozenset[str], str]:
    """hierarchy (its controllers, or name=…; empty for v2) -> path, from /proc/PID/cgroup."""
    out: dict[frozenset[str], str] = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            out[frozenset(c for c in controllers.split(",") if c)] = path
    return out


def _mounts() -> dict[frozenset[str], str]:
    """hierarchy -> a mount point of its root, from /proc/self/mountinfo."""
    known = set()
    with open("/proc/cgroups") as f:
        for line in f:
            if not line.startswith("#"):
                known.add(line.split()[0])
    out: dict[frozenset[str], str] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, sb = left.split(), right.split()
            if len(sb) < 3 or sb[0] not in ("cgroup", "cgroup2") or fields[3] != "/":
                continue
            if sb[0] == "cgroup2":
                key: frozenset[str] = frozenset()
            else:
                key = frozenset(o for o in sb[2].split(",") if o in known or o.startswith("name="))
            out.setdefault(key, fields[4].replace("\\040", " "))
    return out


def join_cgroups_of(pid: int, target: int | str = "self") -> None:
    """Move `target` (default: this process) into every cgroup `pid` is in; OSError if one
    cannot be joined."""
    theirs = _membership(pid)
    mine = _membership(target)
    missing = [k for k, path in theirs.items() if mine.get(k) != path]
    if not missing:
        return
    mounts = _mounts()
    for key in missing:
        mount = mounts.get(key)
        if mount is None:
            raise OSError(f"cgroup hierarchy {','.join(sorted(key)) or 'v2'} is not mounted")
        procs = os.path.join(mount, theirs[key].lstrip("/"), "cgroup.procs")
        fd = os.open(procs, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"0" if target == "self" else str(target).encode())  # 0: the writer
        finally:
            os.close(fd)
