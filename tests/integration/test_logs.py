"""The k8s-file log: format, partial records, size limit, and what `podman logs` reads back."""
from __future__ import annotations

import hashlib
import re
import threading
import time
from datetime import datetime, timedelta

from supervisor.lab.testenv import PodmanEnv
from tests.integration.helpers import assert_monitored, k8s_records, log_path

# `podman logs -t`: Go's RFC3339Nano (trailing zeros dropped, Z for UTC) then the line
LOGS_T_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)) (.*)$")


def parse_go_time(text: str) -> datetime:
    """RFC3339 with up to 9 fraction digits -> aware datetime (microsecond precision)."""
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text)
    assert m, text
    frac = (m[2] or "0")[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{m[1]}.{frac}{'+00:00' if m[3] == 'Z' else m[3]}")


def test_logs_follow_until_exit(podman: PodmanEnv, image: str) -> None:
    podman.run("run", "-d", "--name", "lf", image,
               "sh", "-c", "for i in 1 2 3 4 5; do echo line$i; sleep 0.3; done")
    assert_monitored(podman, "lf")
    follow = podman.run("logs", "-f", "lf", timeout=30)  # must end when the container exits
    assert follow.stdout == "".join(f"line{i}\n" for i in range(1, 6))
    assert podman.inspect("lf", "{{.State.Status}}") == "exited"


def test_logs_timestamps_and_since(podman: PodmanEnv, image: str) -> None:
    podman.run("run", "--name", "lt", image,
               "sh", "-c", "echo before; echo err >&2; sleep 2; echo after")
    p = podman.run("logs", "-t", "lt")
    out = [m for m in map(LOGS_T_LINE.match, p.stdout.splitlines()) if m]
    assert [m[4] for m in out] == ["before", "after"], p.stdout
    err = [m for m in map(LOGS_T_LINE.match, p.stderr.splitlines()) if m]
    assert [m[4] for m in err] == ["err"], p.stderr
    before, after = (parse_go_time(m[1]) for m in out)
    assert timedelta(seconds=1.9) < after - before < timedelta(seconds=10)

    # the same instants as in the file (which carries 9 digits and a numeric offset)
    stamps = [parse_go_time(r[0]) for r in k8s_records(log_path(podman, "lt")) if r[1] == "stdout"]
    assert stamps == [before, after]

    since = (after - timedelta(seconds=1)).isoformat()
    assert podman.run("logs", "--since", since, "lt").stdout == "after\n"


def test_k8s_file_format_and_partial_records(podman: PodmanEnv, image: str) -> None:
    script = ("echo out; echo err >&2; sleep 0.2; "
              # one write() of a 20000-byte line plus its newline
              "head -c 20000 /dev/zero | tr '\\0' a > /tmp/l; echo >> /tmp/l; "
              "dd if=/tmp/l bs=30000 2>/dev/null; sleep 0.2; printf noeol")
    podman.run("run", "--name", "kf", image, "sh", "-c", script)
    records = k8s_records(log_path(podman, "kf"))  # asserts the record regex on every line
    summary = [(stream, flag, len(content) if content.startswith(b"aaa") else content)
               for _ts, stream, flag, content in records]
    # reads are <= 8192 bytes, one record per read; P = no newline at the end of that read;
    # a final line without newline stays P (no closing F record)
    assert sorted(summary[:2]) == [("stderr", "F", b"err"), ("stdout", "F", b"out")]
    assert summary[2:] == [("stdout", "P", 8192), ("stdout", "P", 8192), ("stdout", "F", 3616),
                           ("stdout", "P", b"noeol")]
    # podman joins the partial records again
    assert podman.run("logs", "kf").stdout == "out\n" + "a" * 20000 + "\nnoeol"


def test_big_output_byte_for_byte(podman: PodmanEnv, image: str) -> None:
    # ~10 MB of base64 lines; the digest is computed inside the container and sent on stderr
    script = ("head -c 7500000 /dev/urandom | base64 > /tmp/data; "
              "sha256sum /tmp/data >&2; cat /tmp/data")
    p = podman.run("run", "--name", "big", image, "sh", "-c", script, text=False)
    digest = p.stderr.split()[0].decode()
    assert len(p.stdout) > 10_000_000
    assert hashlib.sha256(p.stdout).hexdigest() == digest  # attached output
    logs = podman.run("logs", "big", text=False)
    assert hashlib.sha256(logs.stdout).hexdigest() == digest  # reassembled from the log


def test_log_size_max(podman: PodmanEnv, image: str) -> None:
    limit = 1000  # podman passes --log-size-max 1000 for max-size=1k (decimal units)
    script = ("for burst in 1 2 3 4 5; do for i in $(seq 1 20); do "
              "echo line-$burst-$i-xxxxxxxxxxxxxxxxxxxx; done; sleep 0.2; done")
    podman.run("run", "-d", "--name", "ms", "--log-opt", "max-size=1k", image, "sh", "-c", script)
    path = log_path(podman, "ms")
    sizes: list[int] = []
    done = threading.Event()

    def sample() -> None:  # the live file, while the container writes
        while not done.is_set():
            try:
                sizes.append(path.stat().st_size)
            except FileNotFoundError:
                pass  # between a rename and the next create
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        podman.run("wait", "ms", timeout=30)
    finally:
        done.set()
        sampler.join()
    sizes.append(path.stat().st_size)
    assert sizes and max(sizes) <= limit, f"log file reached {max(sizes)} bytes"
    # the newest lines are still readable; what happened to older ones is not asserted
    # (conmon discards them, podvisor keeps one rotated file)
    assert podman.run("logs", "--tail", "2", "ms").stdout.splitlines() == [
        "line-5-19-xxxxxxxxxxxxxxxxxxxx", "line-5-20-xxxxxxxxxxxxxxxxxxxx"]
