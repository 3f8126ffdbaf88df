#!/usr/bin/env bash
# Install what podvisor needs on a Debian 12 machine (as root), then a venv at $REPO/.venv with the
# project installed editable plus its test extras. Idempotent: reruns skip apt and pip when nothing
# changed.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$REPO/.venv"
# Debian's interpreter: built with PGO/LTO, it starts in ~8 ms where other builds here take
# far longer, and every container start pays that (podvisor-conmon is Python).
PYTHON=${PYTHON:-/usr/bin/python3}

PACKAGES=(
    podman runc crun conmon catatonit netavark uidmap  # the engine and the monitor we replace
    iptables                                          # netavark sets up published ports with it
    busybox-static                                    # the test image's only binary
    tmux                                              # terminal tests (run -it, attach, exec -it)
    systemd-container dbus                            # the systemd sandbox
    nginx-light                                       # the example pod's web server
    libsystemd-dev pkg-config gcc python3-dev         # pystemd is built from source (Cython)
    python3-venv
)

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$' \
        || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "install.sh: installing ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${PACKAGES[@]}"
fi

if ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi

# Dependencies: only when the package metadata changed.
stamp="$VENV/.podvisor-installed"
meta=()
for f in setup.cfg setup.py pyproject.toml; do
    if [[ -f $REPO/$f ]]; then meta+=("$REPO/$f"); fi
done
want=$(cat "${meta[@]}" | sha256sum | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip setuptools wheel
    "$VENV/bin/python" -m pip install --quiet "$REPO[test]"
    echo "$want" >"$stamp"
fi

# The package itself, every time, as a regular install: an editable one puts setuptools'
# import finder into site.py, ~8 ms more at every container start.
"$VENV/bin/python" -m pip install --quiet --no-deps --force-reinstall --no-build-isolation "$REPO"
rm -rf "$REPO/build"
