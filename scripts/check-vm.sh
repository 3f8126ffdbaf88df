#!/usr/bin/env bash
# Boot a VM with the unified cgroup v2 hierarchy and systemd as PID 1, run the checks of
# scripts/vm/checks.py inside it against its real podman, print one line per check and
#   vm <release> cgroup v2: N/M checks pass
# Exit non-zero on any failure. Software emulation only (nested KVM hangs here): ~25x slower.
#   bookworm: this machine's own root (read-only over 9p, tmpfs overlays);
#   trixie:   a debootstrapped Debian 13 root cached under /var/tmp (scripts/vm/rootfs.sh).
# VM_CPUS (default 2), VM_MEMORY (default 2G), VM_TIMEOUT (seconds, default 1800), VM_KEEP=1 keeps
# the run directory (serial console log, checks.log, timings.txt, the guest's journal), VM_STEPS
# a subset of the steps (boot suite rootless-oom demo; and the opt-in ones, never run by default:
# memory pages), VM_MEMORY_COUNTS the memory step's container counts (default 5).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RELEASE=${1:-bookworm}
case $RELEASE in bookworm|trixie) ;; *) echo "usage: $0 [bookworm|trixie]" >&2; exit 2;; esac
[[ $(id -u) == 0 ]] || { echo "check-vm: must run as root" >&2; exit 2; }
t_start=$(date +%s)

# What the VM needs on the host, by name (qemu, a kernel; debootstrap for trixie), and
# virtme-ng (PyPI) in a venv of its own: it only builds the qemu command line and initramfs.
PACKAGES=(qemu-system-x86 linux-image-amd64 busybox-static)
[[ $RELEASE == trixie ]] && PACKAGES+=(debootstrap)
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$pkg")
done
if ((${#missing[@]})); then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y "${missing[@]}"
fi
VNG_VENV="$REPO/.venv-vm"
if ! "$VNG_VENV/bin/vng" --version 2>/dev/null | grep -q '^virtme-ng 1\.42'; then
    rm -rf "$VNG_VENV"
    /usr/bin/python3 -m venv "$VNG_VENV"
    "$VNG_VENV/bin/pip" install --quiet 'virtme-ng==1.42'
fi
export PATH="$VNG_VENV/bin:$PATH"   # vng runs virtme-run from PATH
# The checkout's own venv, read by the VM through the shared root (bookworm only: trixie's root
# has its own, made by rootfs.sh; a reinstall here would pull files from under a running VM).
[[ $RELEASE == bookworm ]] && bash "$REPO/scripts/install.sh" >/dev/null

KERNEL=$(ls /boot/vmlinuz-*-amd64 | sort -V | tail -1)
ROOT=/
GUEST_REPO=$REPO
if [[ $RELEASE == trixie ]]; then
    ROOT=$(bash "$REPO/scripts/vm/rootfs.sh" trixie "$(basename "$KERNEL" | sed "s/^vmlinuz-//")")
    GUEST_REPO=/podvisor-src   # that root's own copy of the checkout, with the venv install.sh built there
fi
# the run directory: the VM's --rwdir, and where its init and units come from (inside the root)
RUN=$(mktemp -d "${ROOT%/}/var/tmp/podvisor-vm.XXXXXX")
GUEST_RUN=/${RUN#"${ROOT%/}"/}
cleanup() {
    # a qemu that outlived vng (killed by the time-out): ours are the ones naming our run dir
    for pid in $(pgrep -f -- "path=$RUN," || true); do kill "$pid" 2>/dev/null || true; done
    if [[ -n ${VM_KEEP:-} ]]; then echo "check-vm: kept $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
cp "$REPO/scripts/vm/init.sh" "$RUN/"
# where the checkout is inside the VM: init.sh keeps it visible if it lies under a directory the
# VM mounts a tmpfs on (/tmp, /var/tmp)
printf '%s\n' "$GUEST_REPO" >"$RUN/checkout"
# the VM's runtime units, the masks (-> /dev/null) made here: under emulation each process the
# VM's init starts costs about a second, so it copies this directory in one go
mkdir "$RUN/units"
cp "$REPO"/scripts/vm/units/* "$RUN/units/"
for u in $(cat "$REPO/scripts/vm/masked-units"); do ln -s /dev/null "$RUN/units/$u"; done
chmod 0755 "$RUN/init.sh"   # the kernel execs it
INIT=$GUEST_RUN/init.sh
# tests/tools/sd-notify.c, static, built here (gcc under emulation is slow)
gcc -static -O2 -o "$RUN/sd-notify" "$REPO/tests/tools/sd-notify.c"
# VM_STEPS (e.g. "boot"): only those steps of checks.py, for trying the VM's plumbing quickly
# shellcheck disable=SC2086
# VM_MEMORY_COUNTS (e.g. "5,20"): the opt-in memory step's container counts
printf '#!/bin/bash\nVM_MEMORY_COUNTS=%q exec %q %q %q %s\n' "${VM_MEMORY_COUNTS:-5}" "$GUEST_REPO/.venv/bin/python" \
    "$GUEST_REPO/scripts/vm/checks.py" "$RELEASE" "${VM_STEPS:-}" >"$RUN/run-checks.sh"

# Our own kernel command line (qemu takes the last -append): vng's would start virtme-ng-init
# as PID 1; we want systemd, booted into the check target only.
CMDLINE="console=ttyS0 panic=-1 loglevel=4 init=$INIT systemd.unit=podvisor-vm.target \
systemd.unified_cgroup_hierarchy=1 systemd.show_status=error"

# the root once more, for init.sh to mount with the guest's page cache (see there)
CACHED_ROOT="-fsdev local,id=podvisorroot,path=$ROOT,security_model=none,readonly=on,multidevs=remap \
-device virtio-9p-pci,fsdev=podvisorroot,mount_tag=podvisor-root"
vng_args=(--run "$KERNEL" --disable-kvm --memory "${VM_MEMORY:-2G}" --cpus "${VM_CPUS:-2}"
          --rwdir "$RUN" --verbose)
[[ $RELEASE == trixie ]] && vng_args+=(--root "$ROOT")
echo "check-vm: booting $RELEASE ($KERNEL, TCG, ${VM_CPUS:-2} CPUs) with systemd as PID 1; log in $RUN/console.log"
t_boot=$(date +%s)
rc=0
timeout -k 10 "${VM_TIMEOUT:-1800}" vng "${vng_args[@]}" --exec true \
    --qemu-opts="-append '$CMDLINE' $CACHED_ROOT" </dev/null >"$RUN/console.log" 2>&1 || rc=$?
t_end=$(date +%s)
if [[ ! -s $RUN/results.txt ]]; then
    echo "check-vm: no results from the VM (vng exit $rc); last console lines:" >&2
    tail -40 "$RUN/console.log" >&2
    tail -20 "$RUN/checks.log" >&2 2>/dev/null || true
    VM_KEEP=1
    exit 1
fi
cat "$RUN/results.txt"
booted=$(cat "$RUN/booted-at" 2>/dev/null || echo "?")
echo "check-vm: times: boot ${booted}s (guest uptime at check start), VM total $((t_end - t_boot))s, whole run $((t_end - t_start))s"
if [[ ! -f $RUN/done ]]; then
    echo "FAIL vm: the checks did not finish (vng exit $rc after $((t_end - t_boot))s; VM_TIMEOUT ${VM_TIMEOUT:-1800}s)" \
        | tee -a "$RUN/results.txt"
fi
total=$(grep -c '^\(PASS\|FAIL\) ' "$RUN/results.txt" || true)
passed=$(grep -c '^PASS ' "$RUN/results.txt" || true)
echo "vm $RELEASE cgroup v2: $passed/$total checks pass"
if [[ $total == 0 || $passed != "$total" ]]; then
    VM_KEEP=${VM_KEEP:-1}
    exit 1
fi
