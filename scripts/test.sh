#!/usr/bin/env bash
# Install everything (scripts/install.sh), then run the test suite. Extra arguments go to pytest;
# tests marked slow are excluded unless you pass your own -m.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$REPO/scripts/install.sh"
cd "$REPO"

# catatonit makes itself a child subreaper, so the monitors podman double-forks are reaped when they
# exit (PID 1 on these machines reaps orphans only lazily, seconds later); it passes pytest's exit
# status through.
exec catatonit -- "$REPO/.venv/bin/python" -m pytest -v -m "not slow" tests/ "$@"
