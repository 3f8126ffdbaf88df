"""ready-probe's probe loop: the startup and readiness gates, then liveness, and what systemd
(STATUS=, WATCHDOG=) and the state file are told."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from .. import notifysocket
from . import checks
from .options import Options, Spec

KEEP_RESULTS = 10  # in the state file


def log(message: str) -> None:
    print(f"podvisor ready-probe: {message}", file=sys.stderr, flush=True)


class Notifier:
    """sd_notify datagrams to systemd's NOTIFY_SOCKET (supervisor.notifysocket); the socket is
    made before this process joins the container's network namespace."""

    def __init__(self) -> None:
        self.address = os.environ.get("NOTIFY_SOCKET", "")
        self.sock = notifysocket.open_socket(blocking=True) if self.address else None

    def __call__(self, message: str) -> None:
        if self.sock is not None:
            try:
                notifysocket.send(self.sock, message.encode(), self.address)
            except OSError as e:
                log(f"cannot notify systemd: {e}")


def _systemctl() -> list[str]:
    """systemctl for the manager running this unit: a user manager sets MANAGERPID (systemd.exec(5))."""
    return ["systemctl", "--user"] if "MANAGERPID" in os.environ else ["systemctl"]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class Supervisor:
    """The probe loop's state: what systemd and the state file are told."""

    def __init__(self, opts: Options, notify: Notifier, prefix: list[str], cid: str = "", monitor: int = 0) -> None:
        self.opts = opts
        self.notify = notify
        self.prefix = prefix
        self.cid = cid
        self.monitor = monitor
        self.results: list[dict[str, object]] = []
        self.health = "starting"
        self.status = ""
        self.failures = 0

    def attempt(self, spec: Spec) -> str | None:
        started, wall = time.monotonic(), time.time()
        if spec.exec_command:
            why = checks.exec_check(self.prefix, self.cid, spec.exec_command, spec.timeout)
        elif spec.http_get:
            why = checks.http_check(spec.http_get, spec.http_headers, spec.timeout)
        elif spec.grpc:
            why = checks.grpc_check(spec.grpc, spec.grpc_service, spec.timeout)
        else:
            why = checks.tcp_check(spec.tcp_socket or "", spec.timeout)
        self.results.append({"probe": spec.role, "time": round(wall, 3), "ok": why is None,
                             "took": round(time.monotonic() - started, 3), "detail": why or ""})
        del self.results[:-KEEP_RESULTS]
        return why

    def set_status(self, health: str, status: str, extra: str = "") -> None:
        """STATUS= only when it changed (each change is a D-Bus signal); the state file always."""
        self.health = health
        if status != self.status or extra:
            self.status = status
            self.notify(f"{extra}STATUS={status}"[:1000])
        self.save()

    def save(self) -> None:
        if not self.opts.state_file:
            return
        import json

        tmp = f"{self.opts.state_file}.tmp"
        try:
            with open(tmp, "w") as f:
                json.dump({"health": self.health, "status": self.status, "failures": self.failures,
                           "threshold": self.opts.liveness.failure_threshold if self.opts.liveness else 0,
                           "results": self.results, "pid": os.getpid()}, f)
            os.replace(tmp, self.opts.state_file)
        except OSError as e:
            log(f"cannot write {self.opts.state_file}: {e}")

    def gate(self, spec: Spec, since: float) -> bool:
        """Run `spec` until it passed success_threshold times in a row. False: the monitor died,
        or (startup) failure_threshold failures in a row."""
        passed = failed = attempt = 0
        while True:
            if not _alive(self.monitor):
                log(f"the container stopped before its {spec.role} probe passed")
                return False
            attempt += 1
            started = time.monotonic()
            why = self.attempt(spec)
            if why is None:
                passed += 1
                if passed >= spec.success_threshold:
                    return True
            else:
                passed = 0
                failed += 1
                log(f"{spec.role} probe, attempt {attempt}: {why}")
                if spec.role == "startup" and spec.failure_threshold and failed >= spec.failure_threshold:
                    took = time.monotonic() - since
                    message = (f"startup probe failed {failed} times in a row (every {spec.period:g}s, "
                               f"failureThreshold {spec.failure_threshold}; {took:.0f}s since the start): {why}")
                    log(message + "; the start fails")
                    self.set_status("unhealthy", f"start failed: {message}")
                    return False
                if spec.role == "startup":
                    self.set_status("starting", f"starting ({failed}/{spec.failure_threshold or '-'} startup "
                                                f"probe failures: {why})")
                else:
                    self.set_status("starting", f"not ready, attempt {attempt}: {why}")
            if why is None:
                failed = 0
            time.sleep(max(0.0, spec.period - (time.monotonic() - started)))

    def _unit_state(self) -> str:
        unit = os.environ.get("PODMAN_SYSTEMD_UNIT", "")
        if not unit:
            return ""
        return subprocess.run([*_systemctl(), "show", "--property=ActiveState", "--value", unit],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL).stdout.strip()

    def live(self, spec: Spec, started_at: float) -> int:
        """The liveness loop; returns once it acted (or the container is gone)."""
        watchdog = self.opts.on_failure == "watchdog"
        usec = os.environ.get("WATCHDOG_USEC", "")
        ping_every = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 else None
        next_at = started_at + spec.initial_delay
        while True:
            # wait for the next attempt; keep pinging while healthy (a long initialDelaySeconds)
            while (left := next_at - time.monotonic()) > 0:
                if ping_every and self.failures == 0:
                    self.notify("WATCHDOG=1")
                time.sleep(min(left, ping_every or left))
            if not _alive(self.monitor):
                return 0
            begun = time.monotonic()
            why = self.attempt(spec)
            threshold = spec.failure_threshold
            if why is None:
                self.failures = 0
                self.set_status("healthy", "healthy", "WATCHDOG=1\n" if watchdog else "")
            elif begun - started_at < self.opts.start_period:
                log(f"liveness probe failed within the start period: {why}")
                self.set_status("starting", f"starting: {why}", "WATCHDOG=1\n" if watchdog else "")
            else:
                self.failures += 1
                log(f"liveness probe failed ({self.failures}/{threshold}): {why}")
                if self.failures < threshold:
                    self.set_status("healthy", f"healthy ({self.failures}/{threshold} failed: {why})")
                elif self.failures > threshold:  # HealthOnFailure=none: acted once, keep reporting
                    self.set_status("unhealthy", f"unhealthy ({self.failures}/{threshold} failed: {why})")
                elif (rc := self.act(spec, why)) >= 0:
                    return rc
            next_at = begun + spec.period

    def act(self, spec: Spec, why: str) -> int:
        threshold = spec.failure_threshold
        status = f"unhealthy ({self.failures}/{threshold} failed: {why})"
        if self.opts.on_failure != "none" and self._unit_state() in ("deactivating", "inactive", "failed"):
            return 0  # the unit is being stopped: the probe failing is expected, not a reason to act
        what = {"watchdog": "systemd stops the unit and restarts it per Restart= (WATCHDOG=trigger)",
                "stop": "stopping the unit", "none": "HealthOnFailure=none: no action"}[self.opts.on_failure]
        log(f"{spec.describe()} failed {self.failures} times in a row (every {spec.period:g}s, timeout "
            f"{spec.timeout:g}s): {why}; {what}")
        if self.opts.on_failure == "watchdog":
            self.set_status("unhealthy", status, "WATCHDOG=trigger\n")
            return 0
        self.set_status("unhealthy", status)
        if self.opts.on_failure == "stop":
            unit = os.environ.get("PODMAN_SYSTEMD_UNIT", "")
            subprocess.run([*_systemctl(), "stop", "--no-block", unit], stdin=subprocess.DEVNULL)
            return 0
        return -1  # none: keep probing and reporting
