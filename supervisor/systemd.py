"""The one place podvisor talks to systemd: its manager over D-Bus, with pystemd's low-level
bus API (install/uninstall reload and stop units through it; ps/status/start/... read it).

pystemd's high-level Unit objects introspect every object first (an extra round trip and an
XML parse per unit); ``ps`` reads a handful of units, so we call Properties.GetAll directly:
about 1 ms a call. Values come back decoded (bytes -> str, recursively).
"""
from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from .errors import UserError

SYSTEMD = b"org.freedesktop.systemd1"
MANAGER_PATH = b"/org/freedesktop/systemd1"
MANAGER = b"org.freedesktop.systemd1.Manager"
UNIT = b"org.freedesktop.systemd1.Unit"
SERVICE = b"org.freedesktop.systemd1.Service"
SOCKET = b"org.freedesktop.systemd1.Socket"
JOB = b"org.freedesktop.systemd1.Job"
PROPERTIES = b"org.freedesktop.DBus.Properties"
PRIVATE_SOCKET = b"unix:path=/run/systemd/private"  # root only; works without dbus-daemon
BOOTED_MARKER = "/run/systemd/system"  # what sd_booted(3) checks
RELOAD_TIMEOUT = 180.0  # seconds: systemctl daemon-reload's limit (twice the default 90 s time-out)

JobCallback = Callable[[int, str, str, str], None]  # id, job path, unit, result


class SystemdError(UserError):
    """systemd is unreachable or refused: the message is for humans."""


class SystemdTimeout(SystemdError):
    """systemd did not answer a call within the bus time-out."""


def booted() -> bool:
    return os.path.isdir(BOOTED_MARKER)


def decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return type(value)(decode(v) for v in value)
    if isinstance(value, dict):
        return {decode(k): decode(v) for k, v in value.items()}
    return value


def _denied(e: Exception) -> bool:
    name = type(e).__name__
    return (getattr(e, "errno", 0) in (-errno.EACCES, -errno.EPERM)
            or "AccessDenied" in name or "InteractiveAuthorization" in name)


def _timed_out(e: Exception) -> bool:
    return getattr(e, "errno", 0) == -errno.ETIMEDOUT or "NoReply" in type(e).__name__


def _message(e: Exception) -> str:
    msg = getattr(e, "err_message", None)
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    return str(msg or e).strip()


class Systemd:
    """One connection to the system manager. Use as a context manager."""

    def __init__(self, bus: Any, user: bool = False) -> None:
        self.bus = bus
        self.user = user  # a user's manager: its pods run that user's (rootless) podman
        self._job_callbacks: list[JobCallback] = []
        self._subscribed = False

    @classmethod
    def connect(cls, user: bool = False) -> Systemd:
        if user:
            return cls._connect_user()
        if not booted():
            raise SystemdError(f"systemd is not running as PID 1 here (no {BOOTED_MARKER}): podvisor's pods "
                               "are systemd units")
        try:
            from pystemd.dbuslib import DBus, DBusAddress
        except ImportError as e:
            raise SystemdError(f"pystemd is not installed ({e}); reinstall podvisor") from None
        errors = []
        attempts: list[tuple[str, Callable[[], Any]]] = [("system bus", DBus)]
        if os.geteuid() == 0:
            attempts.append(("/run/systemd/private", lambda: DBusAddress(PRIVATE_SOCKET, peer_to_peer=True)))
        for what, make in attempts:
            bus = make()
            try:
                bus.open()
                return cls(bus)
            except Exception as e:  # pystemd raises DBusError subclasses of many kinds
                errors.append(f"{what}: {_message(e)}")
        raise SystemdError(f"cannot reach systemd over D-Bus ({'; '.join(errors)})")

    @classmethod
    def _connect_user(cls) -> Systemd:
        """The calling user's manager, over its session bus ($XDG_RUNTIME_DIR/bus)."""
        try:
            from pystemd.dbuslib import DBus
        except ImportError as e:
            raise SystemdError(f"pystemd is not installed ({e}); reinstall podvisor") from None
        bus = DBus(user_mode=True)
        try:
            bus.open()
        except Exception as e:  # pystemd raises DBusError subclasses of many kinds
            raise SystemdError(f"cannot reach the user's systemd over its D-Bus ({_message(e)}; is "
                               "XDG_RUNTIME_DIR set and the user manager running? "
                               "`loginctl enable-linger` starts it at boot)") from None
        return cls(bus, user=True)

    def close(self) -> None:
        self.bus.close()

    def __enter__(self) -> Systemd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ calls

    def call(self, path: bytes, interface: bytes, method: bytes, signature: bytes = b"",
             args: Sequence[Any] = (), what: str = "") -> Any:
        from pystemd.dbuslib import apply_signature

        try:
            call_args = apply_signature(signature, list(args)) if signature else []
            return self.bus.call_method(SYSTEMD, path, interface, method, call_args).body
        except Exception as e:
            what = what or method.decode()
            if _denied(e):
                raise SystemdError(f"permission denied: systemd refused to {what} ({_message(e)}); "
                                  "run podvisor as root") from None
            if _timed_out(e):
                raise SystemdTimeout(f"systemd: cannot {what}: no answer in time ({_message(e)})") from None
            raise SystemdError(f"systemd: cannot {what}: {_message(e)}") from None

    def manager(self, method: bytes, signature: bytes = b"", *args: Any, what: str = "") -> Any:
        return self.call(MANAGER_PATH, MANAGER, method, signature, args, what)

    def unit_files(self, patterns: Sequence[str]) -> list[tuple[str, str]]:
        """(path, enablement state) of unit files whose names match `patterns` (fnmatch)."""
        files = self.manager(b"ListUnitFilesByPatterns", b"asas", [], [p.encode() for p in patterns],
                             what="list unit files")
        return [(decode(path), decode(state)) for path, state in files]

    def loaded_units(self, patterns: Sequence[str]) -> list[str]:
        """Names of the units systemd has loaded (any state) that match `patterns`."""
        units = self.manager(b"ListUnitsByPatterns", b"asas", [], [p.encode() for p in patterns],
                             what="list units")
        return [decode(u[0]) for u in units]

    def load_unit(self, name: str) -> bytes:
        """The unit's object path; loads it if needed (a missing unit gets LoadState=not-found)."""
        path: bytes = self.manager(b"LoadUnit", b"s", name.encode(), what=f"load {name}")
        return path

    def properties(self, path: bytes, interface: bytes) -> dict[str, Any]:
        props: dict[str, Any] = decode(self.call(path, PROPERTIES, b"GetAll", b"s", [interface],
                                                  what="read properties"))
        return props

    def unit(self, name: str) -> dict[str, Any]:
        """Every Unit property, plus the Service (Socket) ones for a loaded service (socket)."""
        path = self.load_unit(name)
        props = self.properties(path, UNIT)
        if name.endswith(".service") and props.get("LoadState") == "loaded":
            props.update(self.properties(path, SERVICE))
        elif name.endswith(".socket") and props.get("LoadState") == "loaded":
            props.update(self.properties(path, SOCKET))
        return props

    def job_type(self, job_path: str) -> str:
        try:
            return str(self.properties(job_path.encode(), JOB).get("JobType", ""))
        except SystemdError:
            return ""  # the job finished in between

    def enqueue(self, verb: str, unit: str) -> str:
        """StartUnit/StopUnit/RestartUnit/ReloadUnit in "replace" mode; returns the job's object path."""
        method = {"start": b"StartUnit", "stop": b"StopUnit", "restart": b"RestartUnit",
                  "reload": b"ReloadUnit"}[verb]
        return str(decode(self.manager(method, b"ss", unit.encode(), b"replace", what=f"{verb} {unit}")))

    def active_state(self, unit: str) -> str:
        """"active", "inactive", "failed", ... ("inactive" for a unit systemd doesn't know)."""
        return str(self.properties(self.load_unit(unit), UNIT).get("ActiveState", "inactive"))

    def reload(self) -> None:
        """`systemctl daemon-reload`: returns once systemd has re-read the unit files.

        systemd answers only after the reload, which on a slow machine (seen under emulation)
        takes longer than the bus's 25 s call time-out; it answers nothing else meanwhile. So a
        time-out is followed by waiting for its next answer, up to systemctl's own limit for a
        reload (3 min in all)."""
        deadline = time.monotonic() + RELOAD_TIMEOUT
        try:
            self.manager(b"Reload", what="reload its units")
            return
        except SystemdTimeout:
            pass
        while True:
            try:
                self.properties(MANAGER_PATH, MANAGER)
                return
            except SystemdTimeout:
                if time.monotonic() > deadline:
                    raise SystemdTimeout(f"systemd: cannot reload its units: still busy after "
                                         f"{RELOAD_TIMEOUT:g}s") from None

    def enable(self, units: Sequence[str]) -> None:
        self.manager(b"EnableUnitFiles", b"asbb", [u.encode() for u in units], False, True,
                     what="enable " + " ".join(units))
        self.reload()

    def disable(self, units: Sequence[str]) -> None:
        self.manager(b"DisableUnitFiles", b"asb", [u.encode() for u in units], False,
                     what="disable " + " ".join(units))

    def stop_and_wait(self, units: Sequence[str], timeout: float = 300) -> None:
        """Stop `units` and wait until none is active or deactivating."""
        for u in units:
            self.enqueue("stop", u)
        deadline = time.monotonic() + timeout
        while busy := [u for u in units if self.active_state(u) not in ("inactive", "failed")]:
            if time.monotonic() > deadline:
                raise SystemdError(f"still running after {timeout:g}s: {' '.join(busy)}")
            time.sleep(0.2)

    def reset_failed(self, unit: str) -> None:
        try:
            self.manager(b"ResetFailedUnit", b"s", unit.encode(), what=f"reset {unit}")
        except SystemdError:
            pass  # not loaded, not failed, or not allowed: the job call that follows says so

    # ------------------------------------------------------------------ job signals

    def on_job_removed(self, callback: JobCallback) -> None:
        """Call `callback` for every JobRemoved signal seen by pump(). Subscribe before enqueueing:
        a fast job can finish before the call that created it returns."""
        if not self._subscribed:
            self.manager(b"Subscribe", what="subscribe to job signals")

            def handler(msg: Any, error: Any = None, userdata: Any = None) -> None:
                try:
                    msg.process_reply(False)
                    job_id, path, unit, result = decode(msg.body)
                except Exception:  # never raise into libsystemd's callback
                    return
                for cb in list(self._job_callbacks):
                    cb(int(job_id), path, unit, result)

            self.bus.match_signal(SYSTEMD, MANAGER_PATH, MANAGER, b"JobRemoved", handler)
            self._handler = handler  # pystemd keeps only a borrowed reference
            self._subscribed = True
        self._job_callbacks.append(callback)

    def pump(self, timeout: float) -> None:
        """Dispatch pending signals, then wait up to `timeout` seconds for more."""
        while not self.bus.process().is_empty():
            pass
        self.bus.wait(int(timeout * 1_000_000))
        while not self.bus.process().is_empty():
            pass
