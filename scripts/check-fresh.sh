#!/usr/bin/env bash
# The fresh-machine check: the README's first command (`bash scripts/demo.sh`) as root on a freshly
# debootstrapped Debian 12 with systemd as PID 1, from the committed tree (git archive HEAD).
#   1. a fresh bookworm rootfs: debootstrap minbase + systemd-sysv, cached as a tarball under
#      /var/tmp/podvisor-rootfs and rebuilt when older than a week (--cold: rebuild now);
#   2. HEAD copied in at '/root/my checkout/podvisor' (0700 parent, a blank in the path);
#   3. scripts/install.sh run inside by a non-booted systemd-nspawn on the host's network: apt and
#      pip need Debian's registry and PyPI, and without a running systemd no package starts its
#      service on the host's network;
#   4. the rootfs booted by `podvisor sandbox`'s code: systemd-nspawn --boot, writable cgroups, a
#      private network (netavark's bridges and iptables rules stay inside);
#   5. `bash scripts/demo.sh` there: PID 1 is systemd, so it takes its host path
#      (`systemctl start pod-blog.service` on that machine); its install.sh changes nothing.
# Prints `fresh bookworm: demo ok in N s`, or the failing step with the last 30 lines of its log;
# exit status 0 or 1. Options: --cold, --keep, --suite, --location, --log (see --help).
# This host needs debootstrap, git and systemd-nspawn: scripts/install.sh installs them here first.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$REPO/scripts/install.sh"
cd "$REPO"
export PODVISOR_CHECKOUT=$REPO  # the tree the check copies (supervisor/lab/checkout.py)
exec "$REPO/.venv/bin/python" -m supervisor.lab.freshcheck "$@"
