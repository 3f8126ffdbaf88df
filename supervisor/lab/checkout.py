"""Where the lab finds the repository's files (units/blog, the git tree): the checkout named by
$PODVISOR_CHECKOUT. The scripts (scripts/*.sh), tests/conftest.py and bench/ set it to their own
checkout; an installed podvisor has no checkout, and the lab never guesses one from its own path."""
from __future__ import annotations

import os
from pathlib import Path

from supervisor.errors import UserError

ENV = "PODVISOR_CHECKOUT"


class CheckoutError(UserError):
    pass


def root() -> Path:
    value = os.environ.get(ENV)
    if not value:
        raise CheckoutError(f"${ENV} is not set: the lab needs the podvisor checkout it works on "
                            "(scripts/*.sh and the tests set it; or `export PODVISOR_CHECKOUT=/path/to/podvisor`)")
    path = Path(value).resolve()
    if not (path / "setup.cfg").is_file() or not (path / "units").is_dir():
        raise CheckoutError(f"${ENV}={value}: not a podvisor checkout (no setup.cfg and units/ there)")
    return path


def path(*parts: str) -> Path:
    return root().joinpath(*parts)
