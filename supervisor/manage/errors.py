"""The one error type of the management commands: its message is for humans."""
from __future__ import annotations


class ManageError(Exception):
    """An expected failure (systemd not running, unknown pod, no rights, a failed job)."""
