#!/usr/bin/env bash
# Lint and type checks (configured in pyproject.toml): ruff over the whole tree, mypy strict over
# supervisor/ and with its default checks over tests/, bench/ and scripts/. Run by .ci/run before
# the tests; either failing fails CI. Uses the venv scripts/install.sh makes (ruff and mypy are in
# the test extras); run install.sh first on a fresh checkout.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
PY="$REPO/.venv/bin/python"

"$PY" -m ruff check .
"$PY" -m mypy supervisor tests bench scripts/vm/checks.py scripts/vm/rootless.py
