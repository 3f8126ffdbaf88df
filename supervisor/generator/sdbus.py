"""The few systemd manager calls install/uninstall need, over D-Bus with pystemd.

(Belongs in a shared supervisor/systemd.py once one exists.) The system bus is tried first; as
root, systemd's private socket works too, even before dbus-daemon runs.
"""
from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

PRIVATE_SOCKET = b"unix:path=/run/systemd/private"


class SystemdError(RuntimeError):
    pass


def _bus() -> Any:
    try:
        from pystemd.dbuslib import DBus, DBusAddress
    except ImportError as e:
        raise SystemdError(f"pystemd is not installed: {e}") from None
    errors = []
    for make in (lambda: DBus(), lambda: DBusAddress(PRIVATE_SOCKET, peer_to_peer=True)):
        bus = make()
        try:
            bus.open()
            return bus
        except Exception as e:  # pystemd raises DBusError subclasses of several kinds
            errors.append(str(e))
    raise SystemdError(f"cannot reach systemd over D-Bus: {'; '.join(errors)}")


@contextmanager
def manager() -> Iterator[Any]:
    from pystemd.systemd1 import Manager

    bus = _bus()
    try:
        m = Manager(bus=bus)
        m.load()
        yield m
    except SystemdError:
        raise
    except Exception as e:
        raise SystemdError(f"systemd: {e}") from e
    finally:
        bus.close()


def reload() -> None:
    """`systemctl daemon-reload`: returns once systemd has re-read the unit files."""
    with manager() as m:
        m.Manager.Reload()


def enable(units: Sequence[str]) -> None:
    with manager() as m:
        m.Manager.EnableUnitFiles([u.encode() for u in units], False, True)
        m.Manager.Reload()


def disable(units: Sequence[str]) -> None:
    with manager() as m:
        m.Manager.DisableUnitFiles([u.encode() for u in units], False)


def active_state(unit: str) -> str:
    """"active", "inactive", "failed", ... ("inactive" for units systemd does not know)."""
    from pystemd.systemd1 import Unit

    bus = _bus()
    try:
        u = Unit(unit.encode(), bus=bus)
        u.load()
        state = u.Unit.ActiveState
        return state.decode() if isinstance(state, bytes) else str(state)
    except Exception as e:
        raise SystemdError(f"systemd: {unit}: {e}") from e
    finally:
        bus.close()


def stop(units: Sequence[str], timeout: float = 300) -> None:
    """Stop `units` and wait until none is active or deactivating."""
    with manager() as m:
        for u in units:
            m.Manager.StopUnit(u.encode(), b"replace")
    deadline = time.monotonic() + timeout
    while True:
        busy = [u for u in units if active_state(u) not in ("inactive", "failed")]
        if not busy:
            return
        if time.monotonic() > deadline:
            raise SystemdError(f"still running after {timeout:g}s: {' '.join(busy)}")
        time.sleep(0.2)


def reset_failed(units: Sequence[str]) -> None:
    with manager() as m:
        for u in units:
            try:
                m.Manager.ResetFailedUnit(u.encode())
            except Exception:
                pass  # not loaded or not failed: nothing to reset
