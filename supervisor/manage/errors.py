"""The one error type of the management commands: its message is for humans. It is
systemd's own error type, so a failed D-Bus call and an unknown pod are reported alike."""
from __future__ import annotations

from ..systemd import SystemdError as ManageError

__all__ = ["ManageError"]
