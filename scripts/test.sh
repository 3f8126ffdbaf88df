#!/usr/bin/env bash
# Install everything (scripts/install.sh), then run the whole test suite, the reliability tests
# marked slow included (with CI-sized counts: PODVISOR_LEAK_CYCLES defaults to 40). Extra arguments
# go to pytest: `-m "not slow"` for a quicker run, `-m slow` for those alone.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$REPO/scripts/install.sh"
cd "$REPO"
export PODVISOR_CHECKOUT=$REPO  # the lab's checkout (supervisor/lab/checkout.py); tests/conftest.py sets it too

# catatonit makes itself a child subreaper, so the monitors podman double-forks are reaped when they
# exit (PID 1 on these machines reaps orphans only lazily, seconds later); it passes pytest's exit
# status through.
exec catatonit -- "$REPO/.venv/bin/python" -m pytest -v tests/ "$@"
