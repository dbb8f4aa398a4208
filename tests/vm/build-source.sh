#!/bin/bash
# Build (once) and cache a bootable Debian 12 source system for the recovery
# scenarios (tests/vm_recover.rs, tests/vm/run-scenario.sh).
#
# Usage: build-source.sh KIND      KIND: a file in source/layout/ (bios-ext4,
#                                   uefi-lvm-xfs, ...) without .sh
# Prints the cached directory: disk1.img... (raw, sparse), sizes (one a line),
# kind, firmware, install.log, and for UEFI OVMF_VARS.fd holding the "debian"
# boot entry grub-install made.
#
# How: the debootstrap tarball of the test guest (build-guest.sh --rootfs) is
# customised on the host (source/setup.sh: scenario unit, GRUB defaults,
# initramfs) and packed; then the test guest boots with the blank disk and
# installs it like an installer would (source/install.sh): partitions, LVM,
# filesystems, fstab by UUID, grub-install + update-grub in a chroot. The host
# kernel has no device-mapper, and grub-mkconfig needs udev, hence the VM.
# A layout may set PACKAGES=(...): extra Debian packages, fetched on the host
# (fetch-debs.sh) into /job/debs for the layout to install into the tree.
# Cache: ${RESCUE_TEST_CACHE:-/var/cache/rescue-test}/source/: tree-TKEY.tar.zst
# (the customised tree, shared by all kinds; TKEY = hash of the rootfs tarball
# name, setup.sh and the files it installs) and KIND-KEY/ (KEY = TKEY + hash of
# install.sh and layout/KIND.sh). flock'ed.
# Environment: RESCUE_TEST_CACHE, RESCUE_SCENARIO_TIMEOUT_SCALE (multiplies the
# install's 1200 s limit, as run-scenario.sh does for its phases).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
die() { echo "build-source: ERROR: $*" >&2; exit 1; }
log() { echo "build-source: $*" >&2; }
(($# == 1)) || die "usage: build-source.sh KIND (the name of a file in tests/vm/source/layout/)"
kind=$1
layout="$here/source/layout/$kind.sh"
[ -f "$layout" ] || die "unknown source kind '$kind': no $layout"
# shellcheck source=/dev/null
fw=$(. "$layout"; echo "$FIRMWARE_WANTED")
# shellcheck source=/dev/null
read -r -a sizes <<<"$(. "$layout"; echo "${DISK_SIZES[*]}")"
# shellcheck source=/dev/null
read -r -a packages <<<"$(. "$layout"; echo "${PACKAGES[*]:-}")"
uefi=()
if [ "$fw" = uefi ]; then uefi=(--uefi); fi
[ "$(id -u)" = 0 ] || die "must run as root"
CACHE=${RESCUE_TEST_CACHE:-/var/cache/rescue-test}

rootfs=$("$here/build-guest.sh" --rootfs) || die "building the debootstrap tarball failed (see above)"
# The install job runs in the test guest: build it first (outside our lock).
"$here/build-guest.sh" >/dev/null || die "building the test guest failed (see above)"

# The customised tree is shared by every kind; each kind's disks depend on it.
# The scenario scripts (rescue-scenario-runner, -state) are left out of the key:
# run-scenario.sh installs the current ones before each backup.
tkey=$( { basename "$rootfs"; cat "$here/source/setup.sh" "$here/source/rescue-scenario.service" "$here/guest/modprobe-blacklist.conf"; } | sha256sum | cut -c1-16)
tree="$CACHE/source/tree-$tkey.tar.zst"
key=$( { echo "$tkey" "$fw" "${sizes[*]}"; cat "$here/source/install.sh" "$layout"; } | sha256sum | cut -c1-16)
dir="$CACHE/source/$kind-$key"
if [ -e "$dir/.done" ]; then echo "$dir"; exit 0; fi
mkdir -p "$CACHE/source"
exec 9>"$CACHE/source/build.lock"
flock 9
if [ -e "$dir/.done" ]; then echo "$dir"; exit 0; fi

t0=$(date +%s)
work=$(mktemp -d "$CACHE/source/tmp.XXXXXX")
cleanup() {
  if mountpoint -q "$work/tree/proc" 2>/dev/null; then umount -l "$work/tree/proc"; fi
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/job" "$work/out"
if [ ! -e "$tree" ]; then
  log "customising the source tree (once for all kinds)"
  mkdir -p "$work/tree"
  zstd -q -dc "$rootfs" | tar --numeric-owner --xattrs --acls -C "$work/tree" -xf -
  "$here/source/setup.sh" "$work/tree" "$here/source" "$here/guest" >"$work/setup.log" 2>&1 \
    || { tail -n 30 "$work/setup.log" >&2; die "source customisation failed (log above)"; }
  tar --numeric-owner --xattrs --acls -C "$work/tree" -cf - . | zstd -q -T0 -3 -o "$tree.tmp"
  mv "$tree.tmp" "$tree"
  rm -rf "$work/tree"
fi
ln "$tree" "$work/job/tree.tar.zst" 2>/dev/null || cp "$tree" "$work/job/tree.tar.zst"
t1=$(date +%s)
log "tree ready in $((t1 - t0)) s; installing $kind onto ${#sizes[@]} disk(s) (${sizes[*]}) in the test guest"
cp "$here/source/install.sh" "$work/job/run.sh"
if ((${#packages[@]})); then
  log "extra packages for $kind: ${packages[*]}"
  "$here/fetch-debs.sh" "$work/job/debs" "${packages[@]}" >/dev/null || die "fetching ${packages[*]} failed (see above)"
  # The layout installs them (PACKAGES is part of its hash): in its bootloader
  # step, `cp -r /job/debs /job/install-debs "$mnt/tmp/" && chroot "$mnt" /tmp/install-debs /tmp/debs`.
  cp "$here/source/install-debs" "$work/job/"
fi
cp "$layout" "$work/job/layout.sh"
disk_args=() n=0
for s in "${sizes[@]}"; do
  n=$((n + 1))
  truncate -s "$s" "$work/out/disk$n.img"
  disk_args+=(--disk-image "$work/out/disk$n.img")
  echo "$s" >>"$work/out/sizes"
done
vars=()
if ((${#uefi[@]})); then
  cp /usr/share/OVMF/OVMF_VARS.fd "$work/out/OVMF_VARS.fd"
  vars=(--ovmf-vars "$work/out/OVMF_VARS.fd")
fi
# 1200 s is twice the slowest install seen at load 12; an install that runs
# update-initramfs in the guest (bios-md-raid1: MODULES=most under TCG) takes
# longer, so the scenario's RESCUE_SCENARIO_TIMEOUT_SCALE stretches it too.
limit=$(awk -v s="${RESCUE_SCENARIO_TIMEOUT_SCALE:-1}" 'BEGIN { printf "%d", 1200 * s }')
"$here/run-guest.sh" --no-rescue "${uefi[@]}" "${vars[@]}" "${disk_args[@]}" --timeout "$limit" "$work/job" \
  || { tail -n 40 "$work/job/out/run.log" >&2 || true; die "installing the $kind source system in the test guest failed (run.log tail above)"; }
[ "$(cat "$work/job/out/done" 2>/dev/null)" = install-ok ] || die "the install job did not finish"
echo "$kind" >"$work/out/kind"
echo "$fw" >"$work/out/firmware"
cp "$work/job/out/run.log" "$work/out/install.log"
rm -rf "$dir"
mv "$work/out" "$dir"
touch "$dir/.done"
log "source system $kind built in $(( $(date +%s) - t0 )) s (install in the guest $(( $(date +%s) - t1 )) s): $dir"
echo "$dir"
