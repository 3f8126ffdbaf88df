#!/usr/bin/env bash
# The main job: install everything (scripts/install.sh), then run the example blog pod under
# systemd - on this host if systemd is PID 1, otherwise inside a throwaway real systemd - and
# fetch the blog through its reverse-proxy sidecar. `--keep` leaves it running.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$REPO/scripts/install.sh"
cd "$REPO"
export PODVISOR_CHECKOUT=$REPO  # the lab's units/blog and image files (supervisor/lab/checkout.py)
exec "$REPO/.venv/bin/python" -m supervisor.lab.demo "$@"
