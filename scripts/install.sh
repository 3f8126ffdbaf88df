#!/usr/bin/env bash
# Install what podvisor needs on a Debian 12 machine (as root), then a venv at $REPO/.venv with the
# project's dependencies, its test extras and the project itself (a regular install). Idempotent:
# reruns skip apt and the dependencies when nothing changed. Works from any checkout location.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$REPO/.venv"
# Debian's interpreter: built with PGO/LTO, it starts in ~8 ms where other builds here take
# far longer, and every container start pays that (podvisor-conmon is Python).
PYTHON=${PYTHON:-/usr/bin/python3}

# Every program the code, the units, the tests and podman itself run, by name: a fresh machine
# has nothing else (scripts/check-fresh.sh proves it). "(R)"/"(S)": what Debian's dependencies
# only recommend or suggest, so an install without recommends, or a minimal machine, lacks it.
PACKAGES=(
    podman conmon runc crun              # the engine, the reference monitor, the OCI runtimes
    netavark aardvark-dns iptables       # podman's network stack: aardvark-dns (R by netavark);
                                         # netavark runs iptables (S by podman), or no pod starts
    catatonit uidmap                     # podman's --init (R) and subuid tools (R); catatonit
                                         # also reaps for the test suite (scripts/test.sh)
    systemd systemd-container dbus       # systemctl, journalctl, systemd-analyze, systemd-socket-activate; nspawn for
                                         # the sandbox; D-Bus for pystemd and cgroup_manager=systemd
    util-linux procps                    # nsenter, setpriv, mount (sandbox, tests); pgrep
    iproute2                             # tests: ss (who listens on a socket-activated port)
    linux-perf binutils                  # bench/monitor_pages.py: perf (page faults), nm (symbols)
    busybox-static                       # the test image's only binary
    nginx-light                          # the example pod's web server (copied into its image)
    tmux curl                            # tests: terminals (run -it, attach, exec -it); HTTP
    gcc libc6-dev                        # tests build tools/sd-notify.c -static: libc.a (R by gcc)
    python3 python3-venv python3-dev     # Debian's interpreter, the venv, pystemd's headers
    libsystemd-dev pkg-config            # pystemd is built from source (Cython)
    ca-certificates                      # pip fetches from PyPI over HTTPS
    git debootstrap debian-archive-keyring  # scripts/check-fresh.sh: git archive; a fresh rootfs
                                         # (debootstrap only recommends the keyring it verifies with)
    slirp4netns passt dbus-user-session fuse-overlayfs  # rootless podman (R by podman): its
                                         # network (slirp4netns; pasta from passt: podman 5's
                                         # default), systemctl --user's D-Bus, overlay in a userns
)

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$' \
        || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "install.sh: installing ${missing[*]}"
    apt-get -o DPkg::Lock::Timeout=300 update
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y "${PACKAGES[@]}"
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
