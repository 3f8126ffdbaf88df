"""`podvisor ps|status|logs|top|start|stop|restart` under a real systemd (the sandbox), on pods
installed by `podvisor install`: the blog pod, a pod whose container fails before it is ready,
one that crash-loops, one OOM-killed, and one using the k8s-file log driver. The JSON output is
checked against what systemd (`systemctl show`) and podman (`podman inspect`) report."""
from __future__ import annotations

import json
import shlex
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from supervisor.lab.images import BLOG_IMAGE, BUSYBOX_IMAGE, ensure_image
from supervisor.lab.sandbox import Sandbox

from .conftest import as_nobody, install_unit, sh, unit_props

pytestmark = pytest.mark.systemd

REPO = Path(__file__).resolve().parents[2]
PODVISOR = str(Path(sys.executable).parent / "podvisor")  # the venv's, visible inside the sandbox
PODS = "/srv/pvt-pods"

CRASH = f"""\
apiVersion: v1
kind: Pod
metadata:
  name: crash
  annotations:
    podvisor.io/readiness.broken: container   # never sends READY=1: exits first
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 2
  containers:
    - name: ok
      image: {BUSYBOX_IMAGE}
      command: ["sh", "-c", "echo serving; trap 'exit 0' TERM; sleep 1000 & wait"]
    - name: broken
      image: {BUSYBOX_IMAGE}
      command: ["sh", "-c", "echo starting up; echo 'fatal: no config at /etc/app.conf' >&2; exit 3"]
"""

LOOP = f"""\
apiVersion: v1
kind: Pod
metadata:
  name: loop
  annotations:
    podvisor.io/restart-sec: "0.3"
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 2
  containers:
    - name: flaky
      image: {BUSYBOX_IMAGE}
      command: ["sh", "-c", "echo up; sleep 0.5; echo 'giving up' >&2; exit 2"]
"""

HOG = f"""\
apiVersion: v1
kind: Pod
metadata:
  name: hog
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  containers:
    - name: eater
      image: {BUSYBOX_IMAGE}
      command: ["sh", "-c", "echo eating; x=a; while true; do x=\\"$x$x\\"; done"]
      resources:
        limits:
          memory: 32Mi
"""

# a Quadlet-style container, the one way a definition picks the k8s-file log driver
KF = f"""\
[Container]
Image={BUSYBOX_IMAGE}
Exec=sh -c 'i=0; trap "exit 0" TERM; while true; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); sleep 0.3; done'
LogDriver=k8s-file
"""


def pv(sb: Sandbox, *args: str, user: list[str] | None = None, timeout: float = 120) -> Any:
    return sb.run([*(user or []), PODVISOR, *args], timeout=timeout)


def pv_json(sb: Sandbox, *args: str) -> Any:
    res = pv(sb, *args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def wait_for(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def pods(sandbox: Sandbox) -> Iterator[Sandbox]:
    ensure_image(sandbox.podman, BLOG_IMAGE)
    sh(sandbox, f"mkdir -p {PODS}")
    for name, text in (("crash.yaml", CRASH), ("loop.yaml", LOOP), ("hog.yaml", HOG), ("kf.container", KF)):
        sh(sandbox, f"cat > {PODS}/{name}", input=text)
    for f in (str(REPO / "units/blog/blog.yaml"), f"{PODS}/crash.yaml", f"{PODS}/loop.yaml", f"{PODS}/hog.yaml",
              f"{PODS}/kf.container"):
        res = pv(sandbox, "install", f)
        assert res.returncode == 0, res.stderr
    yield sandbox
    # the sandbox is shared with other modules: leave no pods (nor port 8080) behind
    for name in ("blog", "crash", "loop", "hog", "kf"):
        pv(sandbox, "uninstall", name)
    sh(sandbox, f"rm -rf {PODS} /etc/systemd/system/pod-handmade.service; systemctl daemon-reload", check=False)


def _pod(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in data["pods"] if p["pod"] == name)


def _members(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return ([pod["infra"]] if pod["infra"] else []) + pod["containers"]


# ------------------------------------------------------------------------------------ start, look


def test_start_returns_when_every_container_is_ready(pods: Sandbox) -> None:
    res = pv(pods, "start", "blog")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("pod blog started in ") and res.stdout.rstrip().endswith("2/2 containers ready")
    assert "starting pod blog" in res.stderr  # the progress line (a new line per change on a pipe)
    for unit in ("pod-blog.service", "pod-blog@infra.service", "pod-blog@web.service", "pod-blog@proxy.service"):
        assert unit_props(pods, unit, "ActiveState")["ActiveState"] == "active"
    assert "podvisor blog" in sh(pods, "curl -sf http://127.0.0.1:8080/").stdout


def test_ps_json_matches_systemd_and_podman(pods: Sandbox) -> None:
    data = pv_json(pods, "ps")
    assert [p["pod"] for p in data["pods"]] == ["blog", "crash", "hog", "kf", "loop"]  # no hand-made units
    blog = _pod(data, "blog")
    assert blog["unit"] == "pod-blog.service" and blog["ready"] is True
    assert (blog["containers_ready"], blog["containers_total"]) == (2, 2)
    assert [c["name"] for c in blog["containers"]] == ["proxy", "web"] and blog["infra"]["name"] == "infra"
    assert blog["ports"] == [{"host_ip": "", "host_port": 8080, "container_port": 8080, "protocol": "tcp"}]
    infra_ports = sh(pods, "podman port blog.infra").stdout.split()
    assert infra_ports == ["8080/tcp", "->", "0.0.0.0:8080"]

    for obj in [blog, *_members(blog)]:
        sd = unit_props(pods, obj["unit"], "ActiveState", "SubState", "MainPID", "NRestarts", "Result",
                        "StatusText", "FragmentPath")
        assert obj["active_state"] == sd["ActiveState"] and obj["sub_state"] == sd["SubState"]
        assert (obj["main_pid"] or 0) == int(sd["MainPID"])
        assert obj["restarts"] == int(sd.get("NRestarts") or 0)
        assert obj["result"] == sd["Result"] and (obj["status_text"] or "") == sd["StatusText"]
        assert obj["fragment_path"] == sd["FragmentPath"]
        since = sh(pods, f"systemctl show -P ActiveEnterTimestamp --timestamp=unix {obj['unit']}").stdout.strip()
        assert epoch(obj["active_since"]) == pytest.approx(float(since.lstrip("@")), abs=1.0)
        assert obj["uptime_seconds"] > 0

    for c in _members(blog):
        assert c["ready"] is True and c["failure"] is None
        inspect = json.loads(sh(pods, f"podman inspect {c['podman_name']}").stdout)[0]
        assert c["podman"]["id"] == inspect["Id"] and c["podman"]["state"] == "running"
        assert c["podman"]["pid"] == inspect["State"]["Pid"]
        assert c["podman"]["image"] == inspect["ImageName"]
        # the container's init is the monitor's child, and counted in the container's usage
        ppid = sh(pods, f"awk '/^PPid:/ {{print $2}}' /proc/{inspect['State']['Pid']}/status").stdout.strip()
        assert int(ppid) == c["main_pid"]
        assert inspect["State"]["Pid"] in c["pids"] and c["main_pid"] not in c["pids"]
        assert c["memory_bytes"] > 100_000 and c["cpu_percent"] is not None and c["cpu_seconds"] >= 0
        _check_memory_source(pods, c, inspect["State"]["Pid"])
    web = next(c for c in blog["containers"] if c["name"] == "web")
    assert len(web["pids"]) == 2  # nginx master and worker
    assert web["status_text"].startswith("ready")  # the readiness probe's STATUS=
    assert blog["memory_bytes"] == sum(c["memory_bytes"] for c in _members(blog))


def _check_memory_source(sb: Sandbox, c: dict[str, Any], init: int) -> None:
    """cgroup v2: memory is the container cgroup's memory.current; v1: the processes' RSS."""
    if sh(sb, "stat -fc %T /sys/fs/cgroup").stdout.strip() != "cgroup2fs":
        assert c["memory_source"] == "rss"
        return
    assert c["memory_source"] == "cgroup"
    path = sh(sb, f"sed -n 's/^0:://p' /proc/{init}/cgroup").stdout.strip()
    assert "libpod" in path, path  # the container's own cgroup, not the unit's
    current = int(sh(sb, f"cat /sys/fs/cgroup{path}/memory.current").stdout)
    assert c["memory_bytes"] == pytest.approx(current, rel=0.25)  # it moves between the two looks


def test_ps_table_for_people(pods: Sandbox) -> None:
    res = pv(pods, "list")  # the alias
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["POD/CONTAINER", "STATE", "READY", "HEALTH", "RESTARTS", "PID", "UPTIME", "MEMORY",
                                "CPU", "PORTS"]
    assert "\x1b[" not in res.stdout  # no colours on a pipe
    blog = next(i for i, line in enumerate(lines) if line.startswith("blog "))
    assert lines[blog].split()[1:4] == ["active", "(exited)", "2/2"] and "0.0.0.0:8080->8080/tcp" in lines[blog]
    web = next(line for line in lines[blog:] if line.startswith("  web "))
    pid = unit_props(pods, "pod-blog@web.service", "MainPID")["MainPID"]
    assert web.split()[1:7] == ["active", "(running)", "yes", "-", "0", pid]  # no liveness probe: no health
    # every column starts where its header does
    header = lines[0]
    for line in lines[1:]:
        assert line[header.index("READY") - 1] == " " and line[header.index("UPTIME") - 1] == " "


def test_status_in_detail(pods: Sandbox) -> None:
    sh(pods, "curl -sf http://127.0.0.1:8080/ >/dev/null")
    data = pv_json(pods, "status", "blog", "-n", "30")
    assert data["pod"] == "blog" and data["ready"] is True
    assert {c["name"] for c in data["containers"]} == {"web", "proxy"}
    for c in data["containers"]:
        assert c["last_oom"] is None and "podman" in c and c["podman"]["state"] == "running"
    assert any(x["container"] == "web" and "curl" in x["message"] for x in data["log"])
    assert any(x["identifier"] == "systemd" for x in data["log"])
    assert all(x["time"] for x in data["log"])

    text = pv(pods, "status", "blog").stdout
    assert text.startswith("● blog - active (exited) since ")
    assert "2/2 containers ready" in text and "0.0.0.0:8080->8080/tcp" in text
    assert "pod-blog@web.service  active (running)" in text and "Last 10 journal lines:" in text


def test_top_shows_each_container_tree(pods: Sandbox) -> None:
    res = pv(pods, "top", "blog", "--json", "-d", "0.5")
    assert res.returncode == 0, res.stderr
    frame = json.loads(res.stdout)
    web = next(c for c in frame["containers"] if c["name"] == "web")
    (monitor,) = web["processes"]
    assert monitor["pid"] == int(unit_props(pods, "pod-blog@web.service", "MainPID")["MainPID"])
    (init,) = monitor["children"]
    assert init["pid"] == int(sh(pods, "podman inspect -f '{{.State.Pid}}' blog.web").stdout)
    assert "nginx: master" in init["command"] and "nginx: worker" in init["children"][0]["command"]
    assert init["rss_bytes"] > 0 and init["cpu_percent"] is not None

    text = pv(pods, "top", "blog", "-n", "2", "-d", "0.3").stdout
    assert text.count("podvisor top blog") == 2  # two frames, one after the other on a pipe
    assert "podvisor-conmon blog.web" in text and "└─ nginx: master process" in text


# ------------------------------------------------------------------------------------ logs


def test_logs_interleaved_by_time_with_the_container_named(pods: Sandbox) -> None:
    sh(pods, "curl -sf http://127.0.0.1:8080/ >/dev/null; curl -s http://127.0.0.1:8080/missing >/dev/null")
    lines = [json.loads(x) for x in pv(pods, "logs", "blog", "--json").stdout.splitlines()]
    times = [epoch(x["time"]) for x in lines]
    assert times == sorted(times)
    assert {x["container"] for x in lines} == {"web", "proxy"}
    assert any(x["container"] == "web" and "GET /missing" in x["message"] for x in lines)
    assert any(x["stream"] == "stderr" and "open()" in x["message"] for x in lines)  # nginx error log -> stderr
    # the same lines journalctl holds for those containers of root's (a user's blog, rootless, has
    # containers of the same names: tests/systemd/test_user_pods.py may have run one in this sandbox)
    raw = sh(pods, "journalctl _UID=0 CONTAINER_NAME=blog.web CONTAINER_NAME=blog.proxy -o json --no-pager").stdout
    assert [x["message"] for x in lines] == [json.loads(e)["MESSAGE"].removesuffix("\n") for e in raw.splitlines()]

    only_web = pv(pods, "logs", "blog", "web", "-n", "3").stdout.splitlines()
    assert len(only_web) == 3 and all(" web | " in x or " web ! " in x for x in only_web)
    future = pv(pods, "logs", "blog", "--since", "@" + str(int(time.time()) + 3600))
    assert future.returncode == 0 and future.stdout == ""
    recent = [json.loads(x) for x in pv(pods, "logs", "blog", "--since", "1 min ago", "--json").stdout.splitlines()]
    assert recent and all(epoch(x["time"]) >= time.time() - 70 for x in recent)
    assert any("GET /missing" in x["message"] for x in recent)


def follow_logs(sb: Sandbox, args: str, watch: str, timeout: float = 30) -> tuple[int, list[str]]:
    """`podvisor logs ARGS` (following) until the shell code `watch` has run, then Ctrl-C (SIGINT).

    `watch` sees the output file as "$out" and has `w COND`, which waits for a shell condition
    (up to `timeout`): conditions, not a fixed time, since under load podvisor alone may take
    seconds to start. It runs beside the exec'd podvisor, whose PID is the shell's $$."""
    out = f"/run/pvt-follow-{uuid.uuid4().hex[:8]}.out"
    script = (f'out={out}; : > "$out"\n'
              f'w() {{ i=0; until eval "$1"; do [ $i -ge {int(timeout * 10)} ] && return 1; sleep 0.1; i=$((i+1)); done; }}\n'
              f'( {watch}; kill -INT $$ ) >/dev/null 2>&1 &\n'
              f'exec {shlex.quote(PODVISOR)} logs {args} >"$out"\n')
    res = sh(sb, script, check=False, timeout=2 * timeout + 30)
    text = sh(sb, f"cat {out}; rm -f {out}").stdout
    assert res.returncode == 130, res.stderr  # Ctrl-C ends it
    return res.returncode, text.splitlines()


def test_logs_follow(pods: Sandbox) -> None:
    _, lines = follow_logs(pods, "blog -f -n 1", """w '[ -s "$out" ]' && curl -s http://127.0.0.1:8080/followed >/dev/null \
        && w 'grep -q " web   | .*/followed" "$out" && grep -q " proxy | .*/followed" "$out"'""")
    assert len(lines) >= 3  # one old line, then the new request through proxy and web
    assert any(" web   | " in x and "/followed" in x for x in lines[1:])
    assert any(" proxy | " in x and "/followed" in x for x in lines[1:])
    wait_for("journalctl to go", lambda: sh(pods, "pgrep -x journalctl", check=False).returncode == 1, 10)


def test_logs_of_a_k8s_file_container(pods: Sandbox) -> None:
    assert pv(pods, "start", "kf").returncode == 0
    path = sh(pods, "podman inspect -f '{{.HostConfig.LogConfig.Path}}' kf.kf").stdout.strip()
    wait_for("k8s-file lines", lambda: "out 3" in sh(pods, f"cat {path}").stdout)
    lines = [json.loads(x) for x in pv(pods, "logs", "kf", "--json").stdout.splitlines()]
    assert [x["message"] for x in lines[:4]] == ["out 0", "err 0", "out 1", "err 1"]
    assert [x["stream"] for x in lines[:2]] == ["stdout", "stderr"] and {x["container"] for x in lines} == {"kf"}
    # read from the file: the journal has none of it
    assert sh(pods, "journalctl CONTAINER_NAME=kf.kf -o cat --no-pager").stdout == ""
    _, followed = follow_logs(pods, "kf -f -n 0", """w '[ "$(wc -l < "$out")" -ge 4 ]'""")
    assert len(followed) >= 4 and any(" kf | out " in x for x in followed)
    assert pv(pods, "stop", "kf").returncode == 0


# ------------------------------------------------------------------------------------ failures


def test_a_container_failing_before_ready_fails_the_start_with_systemds_reason(pods: Sandbox) -> None:
    res = pv(pods, "start", "crash")
    assert res.returncode == 1
    err = res.stderr
    assert "podvisor: error: start of pod crash failed" in err
    assert "pod-crash@broken.service: Result: exit-code, status=3" in err
    assert "fatal: no config at /etc/app.conf" in err  # what the container said last
    assert "Traceback" not in err

    data = pv_json(pods, "ps", "crash")
    crash = _pod(data, "crash")
    broken = next(c for c in crash["containers"] if c["name"] == "broken")
    sd = unit_props(pods, "pod-crash@broken.service", "Result", "ExecMainStatus", "ActiveState")
    assert broken["result"] == sd["Result"] == "exit-code"
    assert broken["last_exit"] == f"status={sd['ExecMainStatus']}" == "status=3"
    assert broken["active_state"] == sd["ActiveState"] and broken["ready"] is False
    assert crash["ready"] is False and crash["active_state"] == "failed"
    assert crash["failure"].startswith("Result: exit-code")

    status = pv_json(pods, "status", "crash")
    broken = next(c for c in status["containers"] if c["name"] == "broken")
    assert broken["last_failure"]["what"] == "exit-code" and broken["last_failure"]["detail"] == "status=3"
    assert "fatal: no config" in pv(pods, "logs", "crash", "broken").stdout


def test_restarts_of_a_crash_looping_container(pods: Sandbox) -> None:
    pv(pods, "start", "loop")  # may succeed or not: the container dies half a second after it starts
    wait_for("the start limit", lambda: unit_props(pods, "pod-loop@flaky.service", "ActiveState")["ActiveState"]
             == "failed", timeout=90)
    flaky = _pod(pv_json(pods, "ps", "loop"), "loop")["containers"][0]
    sd = unit_props(pods, "pod-loop@flaky.service", "NRestarts", "Result", "ExecMainStatus", "MainPID")
    assert flaky["restarts"] == int(sd["NRestarts"]) >= 3
    assert flaky["result"] == sd["Result"] and flaky["failure"].startswith(f"Result: {sd['Result']}")
    assert flaky["main_pid"] is None and sd["MainPID"] == "0" and flaky["pids"] == []
    # every run's output (the journal keeps it past the container's removal): one per start
    started = sh(pods, "journalctl _PID=1 UNIT=pod-loop@flaky.service MESSAGE_ID=39f53479d3a045ac8e11786248231fbf "
                       "-o cat --no-pager").stdout.count("Started")
    logs = pv(pods, "logs", "loop").stdout
    assert logs.count(" | giving up") == logs.count(" | up") == started >= int(sd["NRestarts"])


def test_oom_kill_is_reported(pods: Sandbox) -> None:
    pv(pods, "start", "hog")
    wait_for("the OOM kill", lambda: "OOM" in sh(
        pods, "journalctl SYSLOG_IDENTIFIER=podvisor-conmon CONTAINER_NAME=hog.eater -o cat --no-pager").stdout)
    status = pv_json(pods, "status", "hog")
    eater = status["containers"][0]
    assert eater["last_oom"]["what"] == "oom" and "killed by the OOM killer" in eater["last_oom"]["detail"]
    assert "Last OOM: " in pv(pods, "status", "hog").stdout
    lines = [json.loads(x) for x in pv(pods, "logs", "hog", "--json").stdout.splitlines()]
    assert lines[0]["message"] == "eating" and lines[-1]["stream"] == "monitor"


# ------------------------------------------------------------------------------------ control, errors


def test_restart_and_stop(pods: Sandbox) -> None:
    before = unit_props(pods, "pod-blog@web.service", "MainPID")["MainPID"]
    res = pv(pods, "restart", "blog")
    assert res.returncode == 0, res.stderr
    assert "pod blog restarted in" in res.stdout and "2/2 containers ready" in res.stdout
    after = unit_props(pods, "pod-blog@web.service", "MainPID")["MainPID"]
    assert after not in ("0", before)

    res = pv(pods, "stop", "blog")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("pod blog stopped in ")
    for unit in ("pod-blog.service", "pod-blog@infra.service", "pod-blog@web.service", "pod-blog@proxy.service"):
        assert unit_props(pods, unit, "ActiveState")["ActiveState"] == "inactive"
    blog = _pod(pv_json(pods, "ps", "blog"), "blog")
    assert blog["active_state"] == "inactive" and blog["ready"] is False and blog["ports"] == []
    assert all(c["podman"] is None and c["main_pid"] is None for c in _members(blog))
    assert pv(pods, "start", "blog").returncode == 0


def test_errors_are_clear(pods: Sandbox) -> None:
    install_unit(pods, "pod-handmade.service", "[Service]\nType=oneshot\nExecStart=/bin/true\n")
    res = pv(pods, "status", "nope")
    assert res.returncode == 1
    assert res.stderr.strip() == ("podvisor: error: unknown pod 'nope': systemd has no pod-nope.service; "
                                  "installed pods: blog, crash, hog, kf, loop")
    res = pv(pods, "status", "handmade")
    assert res.returncode == 1 and "was not generated by podvisor" in res.stderr
    assert "handmade" not in pv(pods, "ps").stdout
    res = pv(pods, "logs", "blog", "nosuch")
    assert res.returncode == 1 and "pod 'blog' has no container 'nosuch' (containers: proxy, web)" in res.stderr


def test_an_unprivileged_user_may_look_but_not_stop(pods: Sandbox) -> None:
    nobody = as_nobody(pods, PODVISOR)
    res = pv(pods, "stop", "blog", user=nobody)
    assert res.returncode == 1
    assert res.stderr.startswith("podvisor: error: permission denied: systemd refused to stop pod-blog.service")
    assert unit_props(pods, "pod-blog.service", "ActiveState")["ActiveState"] == "active"
    res = pv(pods, "ps", "--json", user=nobody)  # reading is allowed: systemd and /proc, no podman
    assert res.returncode == 0
    data = json.loads(res.stdout)
    assert any("not running as root" in w for w in data["warnings"])
    assert _pod(data, "blog")["ready"] is True and _pod(data, "blog")["containers"][0]["podman"] is None
