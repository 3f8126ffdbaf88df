"""The checks inside the check VM (systemd is PID 1, cgroup v2), run by its check unit.

Writes one `PASS name: detail` / `FAIL name: detail` line per check to /run/vm-out/results.txt
and everything else to stdout (the unit sends it to /run/vm-out/checks.log). The VM is
disposable: this configures its podman for the checkout's podvisor-conmon system-wide.
Steps: boot (the facts: systemd PID 1, cgroup2, podman's manager), suite (one pytest run of the
systemd tests and an integration smoke subset on both monitors), rootless-oom (scripts/vm/rootless.py:
a test user's own manager with memory delegated; its rootless podman's OOM kills, reported by both
monitors against the kernel's count, and as a user unit), demo (the blog on this systemd; last);
opt-in, only when named: memory and pages (scripts/vm/memory.py: bench/'s memory table, page attribution).
Usage: checks.py RELEASE [STEP...]   (run with the checkout's venv python)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import memory  # scripts/vm/memory.py: the opt-in memory steps
import rootless  # scripts/vm/rootless.py, beside this script

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
# the two monitors the issue names (podvisor-forked, the fork server, runs the same code once
# forked), two tests each: a parameter costs one to two minutes under emulation; stopping is
# proven by the systemd tests (systemctl stop -> podman stop through the monitor)
INTEGRATION_SMOKE = [
    f"tests/integration/test_run.py::{test}" for monitor in ("conmon", "podvisor")
    for test in (f"test_run_detached[{monitor}]", f"test_exit_code_and_exit_file[{monitor}-3]")
]

CONTAINERS_CONF = f"""\
# written by podvisor's check VM (scripts/vm/checks.py); lives in the VM's RAM only
[engine]
conmon_path = ["{OURS}"]
cgroup_manager = "systemd"
events_logger = "journald"
"""

# open for the whole run, line-buffered: what was written survives a VM killed by the time-out
results = open(OUT / "results.txt", "w", buffering=1)
timings = open(OUT / "timings.txt", "w", buffering=1)


def uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def log(text: str) -> None:
    """A line of checks.log, stamped with the guest's uptime (where the time goes)."""
    print(f"[{uptime():7.1f}] {text}", flush=True)


def result(ok: bool, name: str, detail: str) -> None:
    line = f"{'PASS' if ok else 'FAIL'} {name}: {detail}"
    print(line, file=results)
    log(line)


def sh(cmd: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    t0 = time.monotonic()
    res = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=timeout)
    log(f"({time.monotonic() - t0:.1f}s, exit {res.returncode}) {cmd[:100]}")
    return res


def boot() -> None:
    up = float(Path("/proc/uptime").read_text().split()[0])
    (OUT / "booted-at").write_text(f"{up:.0f}")
    pid1 = Path("/proc/1/comm").read_text().strip()
    fs = sh("stat -fc %T /sys/fs/cgroup").stdout.strip()
    sh("podman --version")  # the first podman call: the binary's first read, no store yet
    info = sh("podman info --format '{{.Host.CgroupsVersion}} {{.Host.CgroupManager}} "
              "{{.Version.Version}} {{.Host.OCIRuntime.Name}}'", timeout=300)
    conmon = sh(f"{OURS} --version | head -1").stdout.strip()
    print(sh("uname -r; cat /proc/cmdline; cat /sys/fs/cgroup/cgroup.controllers; "
             "systemctl --version | head -1; python3 --version").stdout, flush=True)
    ok = pid1 == "systemd" and fs == "cgroup2fs" and info.stdout.split()[:2] == ["v2", "systemd"]
    result(ok, "boot", f"PID 1 {pid1}, /sys/fs/cgroup {fs}, podman (version, cgroups, manager, runtime) "
                       f"{info.stdout.strip() or info.stderr.strip()}, {conmon}, up {up:.0f}s")


def run_logged(argv: list[str], timeout: float, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run argv, its output streamed line by line into checks.log with guest-uptime stamps."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd, env=env)
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        log("  " + line.rstrip("\n"))
        if time.monotonic() > deadline:
            proc.kill()
    return proc.wait(), "".join(lines)


def demo() -> None:
    """The README's main job, on this machine's own systemd (the demo's host path); then
    ps/status on the running pod. No uninstall: the VM powers off next, and stopping the pod
    takes minutes under emulation."""
    # the blog sets a 60 s start time-out (podvisor.io/start-timeout), seconds of work on real
    # hardware but not under emulation: raised here, for the VM only, by a drop-in
    dropin = Path("/run/systemd/system/pod-blog@.service.d/podvisor-vm.conf")
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text("[Service]\nTimeoutStartSec=600\n")
    t0 = time.monotonic()
    rc, out = run_logged([sys.executable, "-m", "supervisor.lab.demo"], 900, cwd=REPO,
                         env={**os.environ, "PODVISOR_CHECKOUT": str(REPO)})
    took = time.monotonic() - t0
    host_path = "installing the blog pod on this host" in out
    started = next((line.split("demo: ")[1] for line in out.splitlines() if " started in " in line), "")
    result(rc == 0 and host_path, "demo host path",
           f"systemctl start pod-blog.service: {started or 'failed'} (start time-out 600 s for emulation); "
           f"the blog was served ({took:.0f}s in all)" if rc == 0 else f"exit {rc} (see checks.log)")
    if rc == 0:
        ps_status()


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
    """One pytest run (its start-up alone costs half a minute under emulation)."""
    xml = OUT / f"{name}.xml"
    # waits and time limits of the tests x10: emulation is ~25x slower (more on a busy host)
    env = {**os.environ, "PODVISOR_CHECKOUT": str(REPO), "PYTHONDONTWRITEBYTECODE": "1",
           "PODVISOR_TEST_TIME_SCALE": "10", **extra_env}
    t0 = time.monotonic()
    # catatonit: a child subreaper for the monitors podman double-forks (as scripts/test.sh);
    # hypothesis' plugin: none of these tests uses it, and importing it is slow here
    rc, _ = run_logged(["catatonit", "--", sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider",
                        "-p", "no:hypothesispytest", "--durations=0", f"--junitxml={xml}",
                        "-o", "junit_family=xunit1", *tests], 2400, cwd=REPO, env=env)
    log(f"{name}: pytest exit {rc} in {time.monotonic() - t0:.0f}s")
    try:
        cases = ET.parse(xml).getroot().iter("testcase")
    except (OSError, ET.ParseError) as e:
        result(False, name, f"no test report ({e}); pytest exit {rc}")
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
        result(False, name, f"no tests ran; pytest exit {rc}")


def main() -> int:
    release = sys.argv[1] if len(sys.argv) > 1 else "bookworm"
    log(f"check VM ({release}): checks start")
    conf = Path("/etc/containers/containers.conf")
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(CONTAINERS_CONF)
    # the tests first, the demo last: its pod stays up (nginx, probes) until the power-off
    steps = [("boot", boot),
             ("suite", lambda: suite("suite", SYSTEMD_TESTS + INTEGRATION_SMOKE, {
                 "PODVISOR_TEST_ON_THIS_SYSTEMD": "1", "PODVISOR_SD_NOTIFY_TOOL": str(OUT / "sd-notify")})),
             ("rootless-oom", lambda: rootless.rootless_oom(result, log, OURS, OUT / "sd-notify")),
             ("demo", demo)]
    steps += memory.opt_in_steps(sys.argv[2:], OUT, REPO, result, log)  # only when VM_STEPS names them
    only = sys.argv[2:]  # check-vm.sh's VM_STEPS
    for name, step in steps:
        if only and name not in only:
            continue
        t0, up0 = time.monotonic(), uptime()
        try:
            step()
        except Exception as e:  # one broken step must not hide the others
            result(False, name, f"{type(e).__name__}: {e}")
        took = time.monotonic() - t0
        print(f"{name} {up0:.0f} {took:.0f}", file=timings)
        log(f"step {name} took {took:.0f}s")
    # where the boot's time went, for the host side to keep
    sh(f"journalctl -b -o short-monotonic --no-pager > {OUT}/journal.txt", timeout=300)
    (OUT / "done").write_text("")
    return 0


if __name__ == "__main__":
    sys.exit(main())
