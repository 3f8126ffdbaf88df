#!/usr/bin/env bash
# A Debian root for the check VM: debootstrapped once from Debian's package registry and cached
# under /var/tmp/podvisor-vm-rootfs/SUITE, then refreshed on every call: the VM kernel's modules,
# a copy of this checkout at /podvisor-src, and scripts/install.sh run inside (chroot) - which
# proves install.sh on that release. Prints the root's path. (Issue 9's supervisor/lab/rootfs.py
# caches debootstrapped tarballs for check-fresh.sh; the debootstrap step belongs there once
# both have landed.)
set -euo pipefail
SUITE=${1:?usage: rootfs.sh SUITE [KERNEL_VERSION]}
KVER=${2:-}   # the VM kernel's version; none for a chroot
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=/var/tmp/podvisor-vm-rootfs
ROOT=$CACHE/$SUITE
LOG=$CACHE/$SUITE.log
mkdir -p "$CACHE"
exec 9>"$CACHE/$SUITE.lock"
flock 9   # one build at a time; a concurrent caller waits, then reuses it

if [[ ! -f $ROOT/.podvisor-vm-root ]]; then
    echo "rootfs: debootstrap $SUITE into $ROOT (minutes; log $LOG)" >&2
    rm -rf "$ROOT" "$ROOT.part"
    debootstrap --variant=minbase --merged-usr --include=systemd-sysv,dbus,kmod \
        "$SUITE" "$ROOT.part" http://deb.debian.org/debian >"$LOG" 2>&1 \
        || { tail -20 "$LOG" >&2; echo "rootfs: debootstrap failed (log $LOG)" >&2; exit 1; }
    printf 'deb http://deb.debian.org/debian %s main\ndeb http://deb.debian.org/debian %s-updates main\n' \
        "$SUITE" "$SUITE" >"$ROOT.part/etc/apt/sources.list"
    echo "vm-$SUITE" >"$ROOT.part/etc/hostname"
    # not a first boot (that would run preset-all and wait for networkd)
    cat /proc/sys/kernel/random/uuid | tr -d - >"$ROOT.part/etc/machine-id"
    rm -f "$ROOT.part"/var/cache/apt/archives/*.deb
    mv "$ROOT.part" "$ROOT"
    touch "$ROOT/.podvisor-vm-root"
fi

# the VM kernel's modules (overlay, netfilter, 9p live there), as its /lib/modules
if [[ -n $KVER && ! -d $ROOT/usr/lib/modules/$KVER ]]; then
    mkdir -p "$ROOT/usr/lib/modules"
    cp -a "/lib/modules/$KVER" "$ROOT/usr/lib/modules/"
fi

# this checkout without its venvs and git data; install.sh makes the venv inside
mkdir -p "$ROOT/podvisor-src"
tar -C "$REPO" --exclude=./.venv --exclude=./.venv-vm --exclude=./.git --exclude=__pycache__ -cf - . \
    | tar -C "$ROOT/podvisor-src" -xf -
in_root() {
    mount --bind /proc "$ROOT/proc"; mount --bind /sys "$ROOT/sys"; mount --bind /dev "$ROOT/dev"
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
    # no service starts inside a chroot
    printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"; chmod +x "$ROOT/usr/sbin/policy-rc.d"
    # this machine's trust store (package registries may sit behind a TLS-inspecting proxy), for
    # the time of the chroot only
    mkdir -p "$ROOT/run/podvisor-host"
    cp /etc/ssl/certs/ca-certificates.crt "$ROOT/run/podvisor-host/ca.crt"
    local rc=0 pass=()
    for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY PIP_INDEX_URL PIP_DEFAULT_TIMEOUT; do
        [[ -n ${!v:-} ]] && pass+=("$v=${!v}")
    done
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        PIP_CERT=/run/podvisor-host/ca.crt SSL_CERT_FILE=/run/podvisor-host/ca.crt "${pass[@]}" "$@" || rc=$?
    rm -rf "$ROOT/usr/sbin/policy-rc.d" "$ROOT/run/podvisor-host"
    umount "$ROOT/dev" "$ROOT/sys" "$ROOT/proc"
    return $rc
}
echo "rootfs: scripts/install.sh inside the $SUITE root (log $LOG)" >&2
if ! in_root bash /podvisor-src/scripts/install.sh >>"$LOG" 2>&1; then
    tail -30 "$LOG" >&2
    echo "rootfs: scripts/install.sh failed in the $SUITE root (log $LOG)" >&2
    exit 1
fi
echo "$ROOT"
