#!/usr/bin/env bash
# Lint and type checks (configured in pyproject.toml): ruff over the whole tree, mypy strict over
# supervisor/ and with its default checks over tests/, bench/ and scripts/. Run by .ci/run before
# the tests; either failing fails CI. Uses the venv scripts/install.sh makes (ruff and mypy are in
# the test extras); run install.sh first on a fresh checkout.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
PY="$REPO/.venv/bin/python"

# TEMPORARY (issue 14): supervisor/monitor/ and its unit tests are being split on another branch;
# until that lands they are left out here (and in pyproject.toml's mypy override and
# tests/unit/test_architecture.py). After the merge, delete these two lines' exclusions.
RUFF_EXCLUDE=(--extend-exclude supervisor/monitor)
MYPY_EXCLUDE=(--exclude '^supervisor/monitor/' --exclude '^tests/unit/test_monitor_')

"$PY" -m ruff check "${RUFF_EXCLUDE[@]}" .
"$PY" -m mypy "${MYPY_EXCLUDE[@]}" supervisor tests bench scripts/vm/checks.py
