#!/bin/bash
# PID 1 of the check VM until it execs systemd: the root is the host's (or a rootfs) over 9p,
# read-only, so give systemd and podman writable places first. Run by scripts/check-vm.sh.
set -u
# virtme-ng mounts the root over 9p without a cache: every stat and read of every exec and
# Python import is a round trip through qemu's (emulated) 9p, which made the VM's main thread
# its busiest. check-vm.sh exports the same root a second time (tag podvisor-root); mounted with
# cache=loose (safe: it is read-only and nothing changes it during the run) it becomes the root.
if [[ ${1:-} != --cached-root ]]; then
    kmsg() { echo "init.sh: $*" >/dev/kmsg; }
    mount -t tmpfs tmpfs /mnt && mkdir /mnt/root
    if err=$(mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=524288,access=any,cache=loose \
            podvisor-root /mnt/root 2>&1); then
        cd /mnt/root || exit 1
        # as switch_root does (the new root moved onto /), else pivot_root (the old one at /mnt)
        if err=$(mount -n --move . / 2>&1); then   # -n: no mount table to update (read-only)
            exec chroot . "$0" --cached-root
        fi
        kmsg "mount --move: $err; trying pivot_root"
        if err=$(pivot_root . mnt 2>&1); then
            exec chroot . "$0" --cached-root
        fi
        kmsg "pivot_root: $err"
        cd / && umount /mnt/root
    fi
    kmsg "no cached root (tag podvisor-root: ${err:-}); staying on virtme-ng's uncached one"
    umount /mnt
fi
if [[ ${1:-} == --cached-root ]]; then
    umount -l /mnt 2>/dev/null   # pivot_root's old root, if that is how we got here
fi
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run   # systemd keeps a /run that is already mounted
here=$(dirname "$0")
# Overlays keep the root's contents visible; podman's storage and the test stores get plain
# tmpfs, because overlayfs cannot use an overlayfs as its upper layer. (Few processes: each
# costs about a second here. The initramfs loaded overlay.ko.)
overlaid=() dirs=(/run/systemd/system /run/systemd/system.conf.d /run/vm-out)
for d in /etc /var /root /home /srv /opt /usr/local; do
    [[ -d $d ]] || continue
    overlaid+=("$d") dirs+=("/run/vm-overlay$d/upper" "/run/vm-overlay$d/work")
done
mkdir -p "${dirs[@]}"
# The check target and service, and masks for the root's own services (runtime units: /run)
cp -a "$here"/units/. /run/systemd/system/
# emulation is ~25x slower (more when the host is busy): systemd's default 90 s start time-out
# would fail units that start in seconds on real hardware
printf '[Manager]\nDefaultTimeoutStartSec=600\n' >/run/systemd/system.conf.d/podvisor-vm.conf
for d in "${overlaid[@]}"; do
    mount -t overlay overlay -o "lowerdir=$d,upperdir=/run/vm-overlay$d/upper,workdir=/run/vm-overlay$d/work" "$d" \
        || mount -t tmpfs tmpfs "$d"
done
# The checkout may live under one of those (a clone in /tmp): hold it aside, then put it back at
# its own path, which its venv's scripts name
checkout=$(cat "$here/checkout" 2>/dev/null || true)
kept=
for d in /tmp /var/tmp; do
    if [[ -n $checkout && $checkout == "$d"/* ]]; then
        mkdir -p /run/vm-checkout && mount --bind "$checkout" /run/vm-checkout && kept=$checkout
    fi
done
for d in /tmp /var/tmp /var/lib/containers; do
    mount -t tmpfs -o mode=1777 tmpfs "$d"
done
if [[ -n $kept ]]; then
    mkdir -p "$kept" && mount --move /run/vm-checkout "$kept"
fi
chmod 0700 /var/lib/containers
# the results directory (check-vm.sh's --rwdir) at a fixed place
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,access=any virtme.initmount0 /run/vm-out
echo "init.sh: starting systemd" >/dev/kmsg
# as arguments, not only on the kernel command line: where systemd believes it is in a container
# (this root has /.dockerenv), it reads its own argv instead
exec /lib/systemd/systemd systemd.unit=podvisor-vm.target systemd.show_status=error
