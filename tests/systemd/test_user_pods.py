"""Rootless pods as user units, under real systemd (the sandbox): a user with linger on installs
the blog pod with `podvisor install --user`, `systemctl --user start` returns once both
readiness probes pass (they join the container's network namespace through podman's rootless
user namespace), the blog answers on its published port (rootless network), `podvisor ps --user`
shows podvisor-conmon running as that user as the main PIDs, and `uninstall --user` leaves nothing.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor.lab.images import BLOG_IMAGE, BUSYBOX_IMAGE, ensure_image
from supervisor.lab.sandbox import Sandbox

from .conftest import sh, unit_props

pytestmark = pytest.mark.systemd

REPO = Path(__file__).resolve().parents[2]
PODVISOR = str(Path(sys.executable).parent / "podvisor")
USER = "pvtalice"


class User:
    """Commands as USER inside the sandbox, as its login session would run them."""

    def __init__(self, sb: Sandbox, uid: int) -> None:
        self.sb, self.uid = sb, uid
        self.prefix = ["runuser", "-u", USER, "--", "env", f"XDG_RUNTIME_DIR=/run/user/{uid}",
                       f"DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/{uid}/bus", f"HOME=/home/{USER}"]

    def argv(self, *cmd: str) -> list[str]:
        argv, _ = self.sb.command(["sh", "-c", f'cd /home/{USER} && exec "$@"', "-", *self.prefix, *cmd])
        return argv

    def run(self, *cmd: str, timeout: float = 120, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        _, env = self.sb.command(["true"])
        return subprocess.run(self.argv(*cmd), env=env, input=input, capture_output=True, timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def podman(self, *args: str, check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """The user's podman, as ensure_image calls it."""
        r = self.run("podman", *args, input=input, timeout=300)
        if check and r.returncode:
            raise AssertionError(f"podman {args[:2]} as {USER}: {r.stderr.decode(errors='replace')}")
        return r

    def text(self, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        r = self.run(*cmd, timeout=timeout)
        return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(errors="replace"),
                                           r.stderr.decode(errors="replace"))


@pytest.fixture
def user(sandbox: Sandbox) -> Iterator[User]:
    # the checkout may sit below a 0700 directory: in the sandbox's RAM layer only, open the way
    for parent in reversed(REPO.parents):
        if not parent.stat().st_mode & 0o001:
            sh(sandbox, f"chmod o+x {shlex.quote(str(parent))}")
    # systemd-journal: the sandbox's journal is volatile, so there are no per-user journal files a
    # user could read (only persistent storage splits them by uid); the group reads the system's
    sh(sandbox, f"useradd --create-home --shell /bin/sh --groups systemd-journal {USER} && "
                f"loginctl enable-linger {USER}")
    uid = int(sh(sandbox, f"id -u {USER}").stdout)
    try:
        sh(sandbox, f"for i in $(seq 100); do systemctl is-active -q user@{uid}.service && "
                    f"test -S /run/user/{uid}/bus && exit 0; sleep 0.1; done; exit 1")
        u = User(sandbox, uid)
        res = u.text(PODVISOR, "--help")
        if res.returncode:
            pytest.skip(f"user {USER} cannot run {PODVISOR} (the checkout is not readable by others: "
                        f"{res.stderr.strip().splitlines()[-1:]})")
        yield u
    finally:
        sh(sandbox, f"loginctl disable-linger {USER}; systemctl stop user@{uid}.service; "
                    f"userdel --remove {USER} 2>/dev/null; true", timeout=120)
        assert sh(sandbox, f"pgrep -u {uid} || true").stdout == ""


def test_blog_as_user_units(user: User) -> None:
    """The issue's "done when", as one unprivileged user with linger on, under real systemd."""
    sb = user.sb
    ensure_image(user.podman, BLOG_IMAGE)
    res = user.text(PODVISOR, "install", "--user", str(REPO / "units" / "blog" / "blog.yaml"), timeout=300)
    assert res.returncode == 0, res.stderr
    assert "linger is off" not in res.stderr  # it is on (test_install_warns_when_linger_is_off)
    assert f"wrote /home/{USER}/.config/systemd/user" not in res.stdout  # names are listed bare
    assert "start it with: systemctl --user start pod-blog.service" in res.stdout
    assert _user_show(user, "pod-blog.service", "FragmentPath", "UnitFileState") == {
        "FragmentPath": f"/home/{USER}/.config/systemd/user/pod-blog.service", "UnitFileState": "disabled"}

    # start returns once both readiness probes passed: the blog is served through the proxy now
    res = user.text("systemctl", "--user", "start", "pod-blog.service", timeout=300)
    assert res.returncode == 0, res.stderr + user.text("systemctl", "--user", "status", "pod-blog@*",
                                                       "--no-pager").stdout
    page = user.text("curl", "-sS", "-i", "--max-time", "10", "http://127.0.0.1:8080/")
    assert page.returncode == 0, page.stderr
    assert "X-Served-By: podvisor-blog-proxy" in page.stdout and "Hello from the podvisor blog" in page.stdout
    for c in ("web", "proxy"):
        props = _user_show(user, f"pod-blog@{c}.service", "ActiveState", "StatusText")
        assert props["ActiveState"] == "active" and props["StatusText"].startswith("ready"), props
    # the published port goes through podman's rootless network (slirp4netns, rootlessport)
    assert "slirp4netns" in _forwarders(sb, user.uid) or "rootlessport" in _forwarders(sb, user.uid)

    res = user.text(PODVISOR, "ps", "--user", "--json", "--cpu-interval=0")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["warnings"] == []  # the user's own podman answers for the user's pods
    (pod,) = data["pods"]
    assert pod["pod"] == "blog" and pod["ready"] and pod["containers_ready"] == 2
    assert {c["name"]: c["podman"]["state"] for c in pod["containers"]} == {"proxy": "running", "web": "running"}
    assert [p["host_port"] for p in pod["ports"]] == [8080]
    for c in pod["containers"]:
        pid = int(c["main_pid"])
        assert pid == int(_user_show(user, c["unit"], "MainPID")["MainPID"])
        info = sh(sb, f"cat /proc/{pid}/status; tr '\\0' ' ' < /proc/{pid}/cmdline").stdout
        assert "\nName:\tpodvisor-conmon\n" in "\n" + info and "podvisor-conmon --api-version 1 " in info, info
        uids = next(line for line in info.splitlines() if line.startswith("Uid:")).split()[1:]
        assert uids == [str(user.uid)] * 4
    table = user.text(PODVISOR, "ps", "--user", "--cpu-interval=0").stdout
    assert all(str(c["main_pid"]) in table for c in pod["containers"]), table

    res = user.text(PODVISOR, "status", "--user", "blog")
    assert res.returncode == 0 and "pod-blog@web.service" in res.stdout, res.stdout + res.stderr
    res = user.text(PODVISOR, "logs", "--user", "blog", "proxy")
    assert res.returncode == 0 and '"GET / HTTP/1.0" 200' in res.stdout, res.stdout + res.stderr
    res = user.text(PODVISOR, "stop", "--user", "-q", "blog", timeout=300)
    assert res.returncode == 0, res.stderr
    assert user.text("systemctl", "--user", "is-active", "pod-blog@web.service").stdout == "inactive\n"
    res = user.text(PODVISOR, "start", "--user", "-q", "blog", timeout=300)
    assert res.returncode == 0, res.stderr
    assert user.text("curl", "-sS", "--max-time", "10", "http://127.0.0.1:8080/").returncode == 0

    # uninstall: no unit, file, container, pod, monitor, run-time file or listener left
    res = user.text(PODVISOR, "uninstall", "--user", "blog", timeout=300)
    assert res.returncode == 0, res.stderr
    assert user.text("sh", "-c", "ls -A ~/.config/systemd/user").stdout == ""
    assert user.text("systemctl", "--user", "list-units", "--all", "--plain", "--no-legend", "pod-blog*").stdout == ""
    assert user.text("podman", "ps", "--all", "--quiet").stdout == ""
    assert user.text("podman", "pod", "ps", "--quiet").stdout == ""
    assert sh(sb, f"pgrep -u {user.uid} -f podvisor-conmon || true").stdout == ""
    assert user.text("sh", "-c", f"ls -A /run/user/{user.uid} | grep pod-blog || true").stdout == ""
    assert sh(sb, "ss -ltnH 'sport = :8080'").stdout.strip() == ""


def test_install_warns_when_linger_is_off(user: User) -> None:
    """Without linger the user manager lives only as long as the user's sessions: install says so
    (the units are written all the same)."""
    run = f"/run/user/{user.uid}"
    # linger off stops the user manager and removes its runtime dir; a login session would have one
    sh(user.sb, f"loginctl disable-linger {USER}; for i in $(seq 100); do test -e {run}/bus || break; sleep 0.1; done; "
                f"install -d -m 0700 -o {USER} {run}")
    try:
        res = user.text(PODVISOR, "install", "--user", "--no-reload", "--no-host-checks",
                        str(REPO / "units" / "blog" / "blog.yaml"), timeout=300)
        assert res.returncode == 0, res.stderr
        assert (f"podvisor: warning: linger is off for user {USER}: its pods stop when the last session ends and "
                f"do not start at boot; keep them running with `loginctl enable-linger {USER}`") in res.stderr
        assert user.text("test", "-e", f"/home/{USER}/.config/systemd/user/pod-blog.service").returncode == 0
    finally:
        sh(user.sb, f"rm -rf /home/{USER}/.config/systemd/user/pod-blog* {run}; loginctl enable-linger {USER}")


def _tree_pids(frame: dict[str, Any]) -> set[int]:
    """Every pid of a `podvisor top --json` frame."""
    out: set[int] = set()

    def walk(p: dict[str, Any]) -> None:
        out.add(int(p["pid"]))
        for child in p["children"]:
            walk(child)
    for c in frame["containers"]:
        for p in c["processes"]:
            walk(p)
    return out


def _user_show(user: User, unit: str, *props: str) -> dict[str, str]:
    out = user.text("systemctl", "--user", "show", unit, *(f"-p{p}" for p in props)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _pv_json(run: Callable[..., subprocess.CompletedProcess[str]], *args: str) -> Any:
    res = run(*args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _flaky(crashing: str) -> str:
    """Pod `flaky`: containers a and b; `crashing` exits 3 a few seconds after each start and is
    restarted (the unit never stays failed, so its failures are known from the journal only)."""
    def command(name: str) -> str:
        return "sleep 3; exit 3" if name == crashing else "trap 'exit 0' TERM; sleep 1000 & wait"
    containers = "".join(f"""
    - name: {n}
      image: {BUSYBOX_IMAGE}
      command: ["sh", "-c", "{command(n)}"]""" for n in ("a", "b"))
    return f"""apiVersion: v1
kind: Pod
metadata:
  name: flaky
  annotations:
    podvisor.io/restart-sec: "2"
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 2
  containers:{containers}
"""


def _wait_restarted(show: Callable[[], dict[str, str]]) -> None:
    deadline = time.monotonic() + 90
    while int((props := show())["NRestarts"]) < 1 or props["ActiveState"] == "failed":
        assert time.monotonic() < deadline, props
        time.sleep(0.5)


def _kill_container(sb: Sandbox, pid: str, restarts: Callable[[], str]) -> None:
    """SIGKILL a container's main process; wait until systemd restarted its unit (restartPolicy
    Always), so the failure is in the journal."""
    sh(sb, f"kill -9 {int(pid)}")
    deadline = time.monotonic() + 90
    while restarts() != "1":
        assert time.monotonic() < deadline, "the unit was not restarted"
        time.sleep(0.5)


def test_root_and_user_pods_of_one_name_never_meet(user: User) -> None:
    """Root's blog and the user's blog: same pod, unit and container names. Each side's
    ps/status/logs/start/stop shows and drives its own only; the user cannot drive root's."""
    sb = user.sb
    root_pv = shlex.quote(PODVISOR)

    def as_root(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return sh(sb, shlex.join([PODVISOR, *args]), check=False, timeout=timeout)

    def as_user(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return user.text(PODVISOR, *args, timeout=timeout)

    for image in (BLOG_IMAGE, BUSYBOX_IMAGE):
        ensure_image(sb.podman, image)
        ensure_image(user.podman, image)
    sh(sb, f"{root_pv} install {shlex.quote(str(REPO / 'units' / 'blog' / 'blog.yaml'))} && "
           "systemctl start pod-blog.service", timeout=300)
    # the user's copy publishes 8090 (root's has 8080): everything else is the same
    mine = f"/home/{USER}/blog.yaml"
    sh(sb, f"cat > {mine} && chown {USER} {mine}",
       input=(REPO / "units" / "blog" / "blog.yaml").read_text().replace("hostPort: 8080", "hostPort: 8090"))
    try:
        assert as_user("install", "--user", mine, timeout=300).returncode == 0
        res = user.text("systemctl", "--user", "start", "pod-blog.service", timeout=300)
        assert res.returncode == 0, res.stderr
        sh(sb, "curl -sS --max-time 10 -o /dev/null http://127.0.0.1:8080/root-was-here")
        assert user.text("curl", "-sS", "--max-time", "10", "-o", "/dev/null",
                         "http://127.0.0.1:8090/user-was-here").returncode == 0

        # ps: each sees one blog, with its own podman's containers and monitors
        root_ids = set(sh(sb, "podman ps --quiet --no-trunc").stdout.split())
        user_ids = set(user.text("podman", "ps", "--quiet", "--no-trunc").stdout.split())
        assert len(root_ids) == len(user_ids) == 3 and not root_ids & user_ids
        for data, ids, uid, port in ((_pv_json(as_root, "ps"), root_ids, 0, 8080),
                                     (_pv_json(as_user, "ps", "--user"), user_ids, user.uid, 8090)):
            (pod,) = data["pods"]
            assert pod["pod"] == "blog" and pod["ready"], pod
            assert {c["podman"]["id"] for c in pod["containers"]} <= ids
            assert [p["host_port"] for p in pod["ports"]] == [port], pod["ports"]
            for c in pod["containers"]:
                assert sh(sb, f"stat -c %u /proc/{int(c['main_pid'])}").stdout.strip() == str(uid)

        # top: each side's process trees are its own processes (the user's run as its uid, or as
        # ids of its subuid range inside the container)
        start, count = sh(sb, f"grep '^{USER}:' /etc/subuid").stdout.strip().split(":")[1:]
        mine_ok = {str(user.uid), *map(str, range(int(start), int(start) + int(count)))}
        seen: list[set[int]] = []
        for frame, users in ((_pv_json(as_user, "top", "--user", "blog"), True),
                             (_pv_json(as_root, "top", "blog"), False)):
            pids = _tree_pids(frame)
            assert len(pids) >= 6, frame  # three monitors, nginx masters and workers
            uids = set(sh(sb, "stat -c %u " + " ".join(f"/proc/{p}" for p in pids)).stdout.split())
            assert (uids <= mine_ok) if users else not (uids & mine_ok), (uids, frame)
            seen.append(pids)
        assert not seen[0] & seen[1]

        # a restarting container's failures (from the journal): root's a, the user's b, each its own
        sh(sb, "mkdir -p /srv/pvt-user && cat > /srv/pvt-user/flaky.yaml", input=_flaky("a"))
        sh(sb, f"{root_pv} install /srv/pvt-user/flaky.yaml && systemctl start --no-block pod-flaky.service",
           timeout=300)
        theirs = f"/home/{USER}/flaky.yaml"
        sh(sb, f"cat > {theirs} && chown {USER} {theirs}", input=_flaky("b"))
        assert as_user("install", "--user", theirs, timeout=300).returncode == 0
        assert user.text("systemctl", "--user", "start", "--no-block", "pod-flaky.service").returncode == 0
        _wait_restarted(lambda: unit_props(sb, "pod-flaky@a.service", "NRestarts", "ActiveState"))
        _wait_restarted(lambda: _user_show(user, "pod-flaky@b.service", "NRestarts", "ActiveState"))
        for data, failed, spared in ((_pv_json(as_user, "status", "--user", "flaky"), "b", "a"),
                                     (_pv_json(as_root, "status", "flaky"), "a", "b")):
            by_name = {c["name"]: c for c in data["containers"]}
            assert by_name[failed]["last_failure"] is not None, data
            assert (by_name[failed]["last_failure"]["what"], by_name[failed]["last_failure"]["detail"]) == \
                ("exit-code", "status=3"), by_name[failed]
            assert by_name[spared]["last_failure"] is None, by_name[spared]
            assert by_name[spared]["restarts"] == 0
            # the journal tail: systemd's messages about the pod's own units only
            failed_lines = [x for x in data["log"] if "Failed with result" in x["message"]]
            assert failed_lines and {x["container"] for x in failed_lines} == {failed}, data["log"]

        # logs: each side's own requests only
        mine_log, roots_log = as_user("logs", "--user", "blog", "proxy"), as_root("logs", "blog", "proxy")
        assert mine_log.returncode == 0 and roots_log.returncode == 0, mine_log.stderr + roots_log.stderr
        assert "/user-was-here" in mine_log.stdout and "/root-was-here" not in mine_log.stdout
        assert "/root-was-here" in roots_log.stdout and "/user-was-here" not in roots_log.stdout

        # driving: the user's stop stops its own; root's pod is not the user's to stop
        assert as_user("stop", "--user", "-q", "blog", timeout=300).returncode == 0
        assert _user_show(user, "pod-blog.service", "ActiveState")["ActiveState"] == "inactive"
        assert unit_props(sb, "pod-blog.service", "ActiveState")["ActiveState"] == "active"
        res = as_user("stop", "blog")
        assert res.returncode == 1 and "permission denied" in res.stderr, res.stderr
        assert unit_props(sb, "pod-blog.service", "ActiveState")["ActiveState"] == "active"
        assert as_user("start", "--user", "-q", "blog", timeout=300).returncode == 0
        sh(sb, f"{root_pv} stop -q blog", timeout=300)
        assert _user_show(user, "pod-blog.service", "ActiveState")["ActiveState"] == "active"
        assert user.text("curl", "-sS", "--max-time", "10", "http://127.0.0.1:8090/").returncode == 0
    finally:
        for pod in ("blog", "flaky"):
            as_user("uninstall", "--user", pod, timeout=300)
            as_root("uninstall", pod, timeout=300)
    assert sh(sb, "podman ps -aq").stdout == "" and user.text("podman", "ps", "-aq").stdout == ""


def test_user_generator(user: User) -> None:
    """`install-generator --user` (root's: systemd reads user generators from /etc only): each
    user's ~/.config/containers/systemd/ becomes its units at `systemctl --user daemon-reload`."""
    sb = user.sb
    res = user.text(PODVISOR, "install-generator", "--user")
    assert res.returncode == 1 and "run it as root" in res.stderr, res.stderr
    out = sh(sb, shlex.join([PODVISOR, "install-generator", "--user"])).stdout
    assert "wrote /etc/systemd/user-generators/podvisor-user-generator" in out, out
    generated = f"/run/user/{user.uid}/systemd/generator"
    try:
        ensure_image(user.podman, BLOG_IMAGE)
        definitions = f"/home/{USER}/.config/containers/systemd"
        assert user.text("mkdir", "-p", definitions).returncode == 0
        sh(sb, f"cat > {definitions}/blog.yaml && chown {USER} {definitions}/blog.yaml",
           input=(REPO / "units" / "blog" / "blog.yaml").read_text())
        assert user.text("systemctl", "--user", "daemon-reload").returncode == 0
        props = _user_show(user, "pod-blog.service", "FragmentPath", "SourcePath", "UnitFileState")
        assert props == {"FragmentPath": f"{generated}/pod-blog.service", "SourcePath": f"{definitions}/blog.yaml",
                         "UnitFileState": "generated"}, props
        assert user.text("test", "-L", f"{generated}/default.target.wants/pod-blog.service").returncode == 0
        conf = user.text("cat", f"{generated}/podvisor/containers.conf").stdout
        assert "podvisor-conmon" in conf, conf
        assert sh(sb, "test -e /run/systemd/generator/pod-blog.service", check=False).returncode != 0  # not root's

        res = user.text("systemctl", "--user", "start", "pod-blog.service", timeout=300)
        assert res.returncode == 0, res.stderr
        assert user.text("curl", "-sS", "--max-time", "10", "http://127.0.0.1:8080/").returncode == 0
        (pod,) = _pv_json(lambda *a: user.text(PODVISOR, *a), "ps", "--user")["pods"]
        assert pod["pod"] == "blog" and pod["ready"], pod
        for c in pod["containers"]:
            status = sh(sb, f"stat -c %u /proc/{int(c['main_pid'])}; cat /proc/{int(c['main_pid'])}/comm").stdout
            assert status.split() == [str(user.uid), "podvisor-conmon"], status

        # the definition gone: so are its units, at the next daemon-reload
        assert user.text("systemctl", "--user", "stop", "pod-blog.service", timeout=300).returncode == 0
        assert user.text("rm", f"{definitions}/blog.yaml").returncode == 0
        assert user.text("systemctl", "--user", "daemon-reload").returncode == 0
        assert _user_show(user, "pod-blog.service", "LoadState") == {"LoadState": "not-found"}
        assert user.text("podman", "ps", "-aq").stdout == ""
    finally:
        user.text("systemctl", "--user", "stop", "pod-blog.service", timeout=300)
        sh(sb, "rm -f /etc/systemd/user-generators/podvisor-user-generator")
        if "wrote /etc/podvisor/generator.toml" in out:
            sh(sb, "rm -f /etc/podvisor/generator.toml")


def _forwarders(sb: Sandbox, uid: int) -> list[str]:
    """The user's rootless network helpers: slirp4netns (the pod's network) and rootlessport
    (a published port's forwarder)."""
    out = sh(sb, f"pgrep -u {uid} -l -x 'slirp4netns|rootlessport|rootlessport-ch' || true").stdout
    return sorted(line.split()[1] for line in out.splitlines())


def test_socket_activated_user_pod_needs_no_port_forwarding(user: User) -> None:
    """units/blog-sockets as user units: the user manager listens on 8080 and passes the socket
    to the proxy, whose pod has no network: no slirp4netns, no rootlessport, yet it serves."""
    sb = user.sb
    ensure_image(user.podman, BLOG_IMAGE)
    res = user.text(PODVISOR, "install", "--user", str(REPO / "units" / "blog-sockets" / "blog.yaml"), timeout=300)
    assert res.returncode == 0, res.stderr
    try:
        assert "pod-blog-sockets.target is enabled and started" in res.stdout, res.stdout
        assert user.text("podman", "ps", "-aq").stdout == ""  # armed: nothing runs yet
        manager = int(sh(sb, f"systemctl show -p MainPID --value user@{user.uid}.service").stdout)
        listening = sh(sb, "ss -ltnpH 'sport = :8080'").stdout
        assert f"pid={manager}," in listening, (manager, listening)  # the user's systemd holds the port

        page = user.text("curl", "-sS", "--max-time", "30", "http://127.0.0.1:8080/", timeout=120)
        assert page.returncode == 0 and "Hello from the podvisor blog" in page.stdout, page.stderr
        for unit in ("pod-blog.service", "pod-blog@web.service", "pod-blog@proxy.service"):
            assert _user_show(user, unit, "ActiveState") == {"ActiveState": "active"}, unit
        infra = json.loads(user.text("podman", "pod", "inspect", "blog").stdout)["InfraConfig"]
        assert infra["PortBindings"] == {} and not infra["Networks"], infra
        assert _forwarders(sb, user.uid) == []
        # the proxy's fd 3 is the very socket the user manager listens on
        proxy = user.text("podman", "inspect", "-f", "{{.State.Pid}}", "blog.proxy").stdout.strip()
        inode = sh(sb, f"readlink /proc/{int(proxy)}/fd/3").stdout.strip()
        assert inode.startswith("socket:[") and inode[8:-1] in sh(sb, "ss -ltneH 'sport = :8080'").stdout, inode
    finally:
        res = user.text(PODVISOR, "uninstall", "--user", "blog", timeout=300)
    assert res.returncode == 0, res.stderr
    assert sh(sb, "ss -ltnH 'sport = :8080'").stdout.strip() == ""
    assert user.text("sh", "-c", "ls -A ~/.config/systemd/user").stdout == ""
    assert user.text("podman", "ps", "-aq").stdout == ""


def test_user_logs_from_a_k8s_file(user: User) -> None:
    """`logs --user` asks the user's own podman where a container logs: a k8s-file is read too."""
    ensure_image(user.podman, BUSYBOX_IMAGE)
    definition = f"/home/{USER}/kf.container"
    sh(user.sb, f"cat > {definition} && chown {USER} {definition}", input=(
        f"[Container]\nImage={BUSYBOX_IMAGE}\nLogDriver=k8s-file\n"
        "Exec=sh -c 'i=0; trap \"exit 0\" TERM; while true; do echo \"out $i\"; echo \"err $i\" >&2; "
        "i=$((i+1)); sleep 0.3; done'\n"))
    assert user.text(PODVISOR, "install", "--user", definition, timeout=300).returncode == 0
    try:
        assert user.text("systemctl", "--user", "start", "pod-kf.service", timeout=300).returncode == 0
        path = user.text("podman", "inspect", "-f", "{{.HostConfig.LogConfig.Path}}", "kf.kf").stdout.strip()
        assert path.startswith(f"/home/{USER}/"), path
        deadline = time.monotonic() + 30
        while len(lines := user.text(PODVISOR, "logs", "--user", "kf", "--json").stdout.splitlines()) < 2:
            assert time.monotonic() < deadline, lines
            time.sleep(0.3)
        first = [json.loads(x) for x in lines[:2]]
        assert [(x["stream"], x["message"]) for x in first] == [("stdout", "out 0"), ("stderr", "err 0")], first
        assert sh(user.sb, "journalctl CONTAINER_NAME=kf.kf -o cat --no-pager").stdout == ""  # not in the journal
    finally:
        user.text(PODVISOR, "uninstall", "--user", "kf", timeout=300)


def test_readiness_modes_as_user_units(user: User, sd_notify_tool: Path) -> None:
    """The three readiness modes, rootless: `conmon` (started), `container` (the app's READY=1,
    proxied by podvisor-conmon from inside podman's user namespace to the user manager) and
    `healthy` (an exec probe): `systemctl --user start` returns only after the latest of them."""
    ensure_image(user.podman, BUSYBOX_IMAGE)
    definition = f"/home/{USER}/modes.yaml"
    idle = 'trap "exit 0" TERM; sleep 1000 & wait'
    sh(user.sb, f"cat > {definition} && chown {USER} {definition}", input=f"""\
apiVersion: v1
kind: Pod
metadata:
  name: modes
  annotations:
    podvisor.io/readiness.started: conmon
    podvisor.io/readiness.app: container
spec:
  terminationGracePeriodSeconds: 2
  containers:
    - name: started
      image: {BUSYBOX_IMAGE}
      command: [sh, -c, '{idle}']
    - name: app
      image: {BUSYBOX_IMAGE}
      command: [sh, -c, 'sleep 3; /n READY=1 STATUS=warmed-up; {idle}']
      volumeMounts: [{{name: tool, mountPath: /n, readOnly: true}}]
    - name: probed
      image: {BUSYBOX_IMAGE}
      command: [sh, -c, 'sleep 2; touch /ready; {idle}']
      readinessProbe: {{exec: {{command: [test, -e, /ready]}}, periodSeconds: 1}}
  volumes:
    - {{name: tool, hostPath: {{path: {sd_notify_tool}, type: File}}}}
""")
    assert user.text(PODVISOR, "install", "--user", definition, timeout=300).returncode == 0
    try:
        t0 = time.monotonic()
        res = user.text("systemctl", "--user", "start", "pod-modes.service", timeout=300)
        took = time.monotonic() - t0
        assert res.returncode == 0, res.stderr
        assert took >= 3.0, f"the start returned after {took:.2f}s, before the app's READY=1"
        assert _user_show(user, "pod-modes@app.service", "StatusText")["StatusText"] == "warmed-up"
        assert _user_show(user, "pod-modes@probed.service", "StatusText")["StatusText"].startswith("ready")
        app = int(_user_show(user, "pod-modes@app.service", "MainPID")["MainPID"])
        assert sh(user.sb, f"cat /proc/{app}/comm; stat -c %u /proc/{app}").stdout.split() == \
            ["podvisor-conmon", str(user.uid)]
        (pod,) = _pv_json(lambda *a: user.text(PODVISOR, *a), "ps", "--user", "modes")["pods"]
        assert pod["ready"] and pod["containers_ready"] == 3, pod
    finally:
        user.text(PODVISOR, "uninstall", "--user", "modes", timeout=300)
