#!/bin/bash
# PID 1 of the check VM until it execs systemd: the root is the host's (or a rootfs) over 9p,
# read-only, so give systemd and podman writable places first. Run by scripts/check-vm.sh.
set -u
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run   # systemd keeps a /run that is already mounted
here=$(dirname "$0")
# The check target and service, and masks for the root's own services (runtime units: /run)
mkdir -p /run/systemd/system
cp "$here"/units/* /run/systemd/system/
for u in $(cat "$here/masked-units"); do ln -sf /dev/null "/run/systemd/system/$u"; done
# emulation is ~25x slower (more when the host is busy): systemd's default 90 s start time-out
# would fail units that start in seconds on real hardware
mkdir -p /run/systemd/system.conf.d
printf '[Manager]\nDefaultTimeoutStartSec=600\n' >/run/systemd/system.conf.d/podvisor-vm.conf
modprobe overlay 2>/dev/null
# Overlays keep the root's contents visible; podman's storage and the test stores get plain
# tmpfs, because overlayfs cannot use an overlayfs as its upper layer.
for d in /etc /var /root /home /srv /opt /usr/local; do
    [[ -d $d ]] || continue
    mkdir -p "/run/vm-overlay$d/upper" "/run/vm-overlay$d/work"
    mount -t overlay overlay -o "lowerdir=$d,upperdir=/run/vm-overlay$d/upper,workdir=/run/vm-overlay$d/work" "$d" \
        || mount -t tmpfs tmpfs "$d"
done
for d in /tmp /var/tmp /var/lib/containers; do
    mkdir -p "$d"; mount -t tmpfs -o mode=1777 tmpfs "$d"
done
chmod 0700 /var/lib/containers
# the results directory (check-vm.sh's --rwdir) at a fixed place
mkdir -p /run/vm-out
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,access=any virtme.initmount0 /run/vm-out
echo "init.sh: starting systemd" >/dev/kmsg
# as arguments, not only on the kernel command line: where systemd believes it is in a container
# (this root has /.dockerenv), it reads its own argv instead
exec /lib/systemd/systemd systemd.unit=podvisor-vm.target systemd.show_status=error
