#!/usr/bin/env bash
# Run pytest inside the cached Debian root of scripts/vm/rootfs.sh (chroot, no boot): that
# release's podman, conmon, runc and python, on this host's kernel and cgroups. No systemd there,
# so only tests that need none (tests/integration, tests/unit).
#   bash scripts/vm/test-in-root.sh trixie tests/integration/test_run.py -k detached
set -euo pipefail
SUITE=${1:?usage: test-in-root.sh SUITE [PYTEST ARGS...]}; shift
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
[[ $(id -u) == 0 ]] || { echo "test-in-root: must run as root" >&2; exit 2; }
ROOT=$(bash "$REPO/scripts/vm/rootfs.sh" "$SUITE")
# a mount point of its own (container storage remounts /), and private mounts (an unmount of an
# rbind must not propagate to the host's /sys/fs/cgroup)
mount --bind "$ROOT" "$ROOT"
mount --make-private "$ROOT"
cleanup() { umount -R "$ROOT" 2>/dev/null || umount -lR "$ROOT"; }
trap cleanup EXIT
for d in proc sys dev; do mount --rbind "/$d" "$ROOT/$d"; mount --make-rslave "$ROOT/$d"; done
mount -t tmpfs -o mode=755 tmpfs "$ROOT/run"
# this host has no systemd (cgroupfs) and cgroup v1 (runc): tests' private containers.conf says so
chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    PODMAN_IGNORE_CGROUPSV1_WARNING=1 TERM="${TERM:-dumb}" \
    bash -c 'cd /podvisor-src && exec catatonit -- .venv/bin/python -m pytest -p no:cacheprovider "$@"' pytest "$@"
