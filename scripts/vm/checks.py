"""The checks inside the check VM (systemd is PID 1, cgroup v2), run by its check unit.

Writes one `PASS name: detail` / `FAIL name: detail` line per check to /run/vm-out/results.txt
and everything else to stdout (the unit sends it to /run/vm-out/checks.log). The VM is
disposable: this configures its podman for the checkout's podvisor-conmon system-wide.
Usage: checks.py RELEASE   (run with the checkout's venv python)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

OUT = Path("/run/vm-out")
REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
OURS = str(VENV_BIN / "podvisor-conmon")

# The checks beyond boot and the demo: tests of the suite run against this machine's systemd
# (tests/systemd/conftest.py: PODVISOR_TEST_ON_THIS_SYSTEMD) and, for the integration smoke
# subset, against both /usr/bin/conmon and podvisor-conmon (the `monitor` parameter).
SYSTEMD_TESTS = [
    "tests/systemd/test_monitor_under_systemd.py::test_start_waits_for_container_readiness",
    "tests/systemd/test_monitor_under_systemd.py::test_watchdog_pings_keep_the_unit_and_silence_restarts_it",
    "tests/systemd/test_monitor_under_systemd.py::test_oom_under_systemd",
    "tests/systemd/test_monitor_under_systemd.py::test_no_false_oom_after_a_normal_exit",
]
INTEGRATION_SMOKE = [
    "tests/integration/test_run.py::test_run_detached",
    "tests/integration/test_run.py::test_exit_code_and_exit_file",
    "tests/integration/test_lifecycle.py::test_stop_graceful",
    "tests/integration/test_monitor_issue3.py::test_oom_kill_is_reported",
]

CONTAINERS_CONF = f"""\
# written by podvisor's check VM (scripts/vm/checks.py); lives in the VM's RAM only
[engine]
conmon_path = ["{OURS}"]
cgroup_manager = "systemd"
events_logger = "journald"
"""

results = open(OUT / "results.txt", "w", buffering=1)


def result(ok: bool, name: str, detail: str) -> None:
    line = f"{'PASS' if ok else 'FAIL'} {name}: {detail}"
    print(line, file=results)
    print(line, flush=True)


def sh(cmd: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=timeout)


def boot() -> None:
    up = float(Path("/proc/uptime").read_text().split()[0])
    (OUT / "booted-at").write_text(f"{up:.0f}")
    pid1 = Path("/proc/1/comm").read_text().strip()
    fs = sh("stat -fc %T /sys/fs/cgroup").stdout.strip()
    info = sh("podman info --format '{{.Host.CgroupsVersion}} {{.Host.CgroupManager}} "
              "{{.Version.Version}} {{.Host.OCIRuntime.Name}}'", timeout=300)
    conmon = sh(f"{OURS} --version | head -1").stdout.strip()
    print(sh("uname -r; cat /proc/cmdline; cat /sys/fs/cgroup/cgroup.controllers; "
             "systemctl --version | head -1; python3 --version").stdout, flush=True)
    ok = pid1 == "systemd" and fs == "cgroup2fs" and info.stdout.split()[:2] == ["v2", "systemd"]
    result(ok, "boot", f"PID 1 {pid1}, /sys/fs/cgroup {fs}, podman (version, cgroups, manager, runtime) "
                       f"{info.stdout.strip() or info.stderr.strip()}, {conmon}, up {up:.0f}s")


def demo() -> None:
    """The README's main job, on this machine's own systemd (the demo's host path)."""
    # the blog sets a 60 s start time-out (podvisor.io/start-timeout), seconds of work on real
    # hardware but not under emulation: raised here, for the VM only, by a drop-in
    dropin = Path("/run/systemd/system/pod-blog@.service.d/podvisor-vm.conf")
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text("[Service]\nTimeoutStartSec=600\n")
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "supervisor.lab.demo"], cwd=REPO, stdout=subprocess.PIPE,
                         env={**os.environ, "PODVISOR_CHECKOUT": str(REPO)},
                         stderr=sys.stdout, text=True, timeout=900)
    took = time.monotonic() - t0
    print(res.stdout, flush=True)
    host_path = "installing the blog pod on this host" in res.stdout
    started = next((line.split("demo: ")[1] for line in res.stdout.splitlines() if " started in " in line), "")
    result(res.returncode == 0 and host_path, "demo host path",
           f"systemctl start pod-blog.service: {started or 'failed'} (start time-out 600 s for emulation); "
           f"the blog was served ({took:.0f}s in all)"
           if res.returncode == 0 else f"exit {res.returncode} (see checks.log)")
    if res.returncode == 0:
        ps_status()
    # stopping the pod (grace periods, podman stop, a reload) takes minutes under emulation
    t0 = time.monotonic()
    gone = subprocess.run([str(VENV_BIN / "podvisor"), "uninstall", "blog"], capture_output=True, text=True,
                          timeout=1500)
    print(f"podvisor uninstall blog: exit {gone.returncode} in {time.monotonic() - t0:.0f}s\n{gone.stderr}",
          flush=True)


def _systemd_prop(unit: str, prop: str) -> str:
    return sh(f"systemctl show -P {prop} {unit}").stdout.strip()


def ps_status() -> None:
    """`podvisor ps/status --json` on the demo's running blog pod against systemd, podman and
    the containers' v2 cgroups: memory is memory.current of each container's own scope."""
    podvisor = str(VENV_BIN / "podvisor")
    problems: list[str] = []
    figures: list[str] = []
    ps = subprocess.run([podvisor, "ps", "--json"], capture_output=True, text=True, timeout=300)
    status = subprocess.run([podvisor, "status", "blog", "--json"], capture_output=True, text=True, timeout=300)
    print(ps.stdout[-3000:] + ps.stderr + status.stderr, flush=True)
    if ps.returncode or status.returncode:
        result(False, "podvisor ps/status", f"exit {ps.returncode}/{status.returncode}: {ps.stderr.strip()[-200:]}")
        return
    blog = next((p for p in json.loads(ps.stdout)["pods"] if p["pod"] == "blog"), None)
    detail = json.loads(status.stdout)
    if blog is None or not blog["ready"] or (blog["containers_ready"], blog["containers_total"]) != (2, 2):
        result(False, "podvisor ps/status", f"blog not 2/2 ready in ps: {blog}")
        return
    for c in blog["containers"] + [blog["infra"]]:
        name = c["name"]
        if c["main_pid"] != int(_systemd_prop(c["unit"], "MainPID") or 0):
            problems.append(f"{name}: main_pid {c['main_pid']} is not systemd's")
        init = (c.get("podman") or {}).get("pid") or 0
        cg = sh(f"sed -n 's/^0:://p' /proc/{init}/cgroup").stdout.strip() if init else ""
        try:
            current = int(Path(f"/sys/fs/cgroup{cg}/memory.current").read_text())
        except (OSError, ValueError):
            current = -1
        if c["memory_source"] != "cgroup" or "libpod" not in cg:
            problems.append(f"{name}: memory from {c['memory_source']}, cgroup {cg!r}")
        elif not 0.75 * current <= c["memory_bytes"] <= 1.25 * current:
            problems.append(f"{name}: memory {c['memory_bytes']} vs memory.current {current}")
        figures.append(f"{name} {c['memory_bytes'] / 2**20:.1f} MiB ({cg.rsplit('/', 1)[-1][:20]}...)")
    if blog["memory_bytes"] != sum(c["memory_bytes"] for c in blog["containers"] + [blog["infra"]]):
        problems.append("pod memory is not the sum of its containers'")
    if {c["name"] for c in detail["containers"]} != {"web", "proxy"} or any(
            c["last_oom"] is not None or c["podman"]["state"] != "running" for c in detail["containers"]):
        problems.append(f"status: {[(c['name'], c['last_oom'], c['podman']) for c in detail['containers']]}")
    result(not problems, "podvisor ps/status", "; ".join(problems) if problems else
           "ready 2/2, MainPIDs as systemd's, memory = each container's memory.current: " + ", ".join(figures))


def suite(name: str, tests: list[str], extra_env: dict[str, str]) -> None:
    xml = OUT / f"{name}.xml"
    # waits and time limits of the tests x10: emulation is ~25x slower (more on a busy host)
    env = {**os.environ, "PODVISOR_CHECKOUT": str(REPO), "PYTHONDONTWRITEBYTECODE": "1",
           "PODVISOR_TEST_TIME_SCALE": "10", **extra_env}
    t0 = time.monotonic()
    # catatonit: a child subreaper for the monitors podman double-forks (as scripts/test.sh)
    res = subprocess.run(["catatonit", "--", sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider",
                          f"--junitxml={xml}", "-o", "junit_family=xunit1", *tests],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    print(res.stdout[-20000:] + res.stderr[-5000:], flush=True)
    print(f"{name}: pytest exit {res.returncode} in {time.monotonic() - t0:.0f}s", flush=True)
    try:
        cases = ET.parse(xml).getroot().iter("testcase")
    except (OSError, ET.ParseError) as e:
        result(False, name, f"no test report ({e}); pytest exit {res.returncode}")
        return
    seen = 0
    for case in cases:
        seen += 1
        test = f"{case.get('file') or case.get('classname')}::{case.get('name')}"
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        skipped = case.find("skipped")
        if bad is not None:
            result(False, test, (bad.get("message") or "failed").splitlines()[0][:200])
        elif skipped is not None and skipped.get("type") != "pytest.xfail":
            result(False, test, f"skipped: {(skipped.get('message') or '')[:200]}")  # a skip proves nothing
        else:
            result(True, test, f"{float(case.get('time') or 0):.1f}s"
                   + (" (expected failure of the reference)" if skipped is not None else ""))
    if not seen:
        result(False, name, f"no tests ran; pytest exit {res.returncode}")


def main() -> int:
    release = sys.argv[1] if len(sys.argv) > 1 else "bookworm"
    print(f"check VM ({release}): checks start", flush=True)
    conf = Path("/etc/containers/containers.conf")
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(CONTAINERS_CONF)
    steps = [boot, demo,
             lambda: suite("systemd", SYSTEMD_TESTS, {"PODVISOR_TEST_ON_THIS_SYSTEMD": "1",
                                                     "PODVISOR_SD_NOTIFY_TOOL": str(OUT / "sd-notify")}),
             lambda: suite("integration", INTEGRATION_SMOKE, {})]
    for step in steps:
        t0 = time.monotonic()
        try:
            step()
        except Exception as e:  # one broken step must not hide the others
            result(False, getattr(step, "__name__", "step"), f"{type(e).__name__}: {e}")
        print(f"step took {time.monotonic() - t0:.0f}s", flush=True)
    (OUT / "done").write_text("")
    return 0


if __name__ == "__main__":
    sys.exit(main())
