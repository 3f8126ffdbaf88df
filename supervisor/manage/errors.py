"""The error type of the management commands: a pod that is not there, a bad --since, a failed
start. Its message is for humans. systemd's own failures stay SystemdError; both are UserErrors."""
from __future__ import annotations

from ..errors import UserError


class ManageError(UserError):
    pass
