#!/bin/bash
# Build (once) and cache a bootable Debian source system for the recovery
# scenarios (tests/vm_recover.rs, tests/vm/run-scenario.sh).
#
# Usage: build-source.sh [--suite SUITE] KIND
#   KIND: a file in source/layout/ (bios-ext4, uefi-lvm-xfs, ...) without .sh;
#   SUITE: the Debian release installed (default bookworm; trixie: Debian 13).
#   The install job runs in the (bookworm) test guest either way: it only
#   partitions and formats; grub-install and update-grub run in a chroot of
#   the installed tree, i.e. the suite's own GRUB.
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
# (fetch-debs.sh) and installed with dpkg into a copy of the tree in a chroot
# on the host; and define host_tree(): run on the host on that copy ($T, with
# /proc, /sys and /dev mounted) after the packages, e.g. to write mdadm.conf
# or crypttab for IDs the layout fixes and run update-initramfs natively (it
# takes ~1.5 min on the host and over 50 min in a TCG guest at load 10).
# Such a kind installs its own tree instead of the shared one.
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
suite=bookworm
if [ "${1:-}" = --suite ]; then suite=$2; shift 2; fi
(($# == 1)) || die "usage: build-source.sh [--suite SUITE] KIND (the name of a file in tests/vm/source/layout/)"
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

rootfs=$("$here/build-guest.sh" --rootfs "$suite") || die "building the debootstrap tarball failed (see above)"
# The install job runs in the test guest: build it first (outside our lock).
"$here/build-guest.sh" >/dev/null || die "building the test guest failed (see above)"

# The customised tree is shared by every kind; each kind's disks depend on it.
# The scenario scripts (rescue-scenario-runner, -state) are left out of the key:
# run-scenario.sh installs the current ones before each backup.
tkey=$( { basename "$rootfs"; cat "$here/source/setup.sh" "$here/source/rescue-scenario.service" "$here/guest/modprobe-blacklist.conf"; } | sha256sum | cut -c1-16)
tree="$CACHE/source/tree-$tkey.tar.zst"
# shellcheck source=/dev/null
has_host_tree=$(. "$layout"; if declare -F host_tree >/dev/null; then echo yes; fi)
host_step=$has_host_tree
if ((${#packages[@]})); then host_step=yes; fi
key_files=("$here/source/install.sh" "$layout")
if [ -n "$host_step" ]; then key_files+=("$here/source/install-debs"); fi
key=$( { echo "$tkey" "$fw" "${sizes[*]}"; cat "${key_files[@]}"; } | sha256sum | cut -c1-16)
dir="$CACHE/source/$kind-$key"
if [ -e "$dir/.done" ]; then echo "$dir"; exit 0; fi
mkdir -p "$CACHE/source"
exec 9>"$CACHE/source/build.lock"
flock 9
if [ -e "$dir/.done" ]; then echo "$dir"; exit 0; fi

t0=$(date +%s)
work=$(mktemp -d "$CACHE/source/tmp.XXXXXX")
umount_tree() {
  local m
  for m in dev sys proc; do
    if mountpoint -q "$work/tree/$m" 2>/dev/null; then umount -l "$work/tree/$m"; fi
  done
}
cleanup() {
  umount_tree
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
if [ -z "$host_step" ]; then
  ln "$tree" "$work/job/tree.tar.zst" 2>/dev/null || cp "$tree" "$work/job/tree.tar.zst"
else
  # This kind's own tree: the shared one plus PACKAGES and host_tree, on the host.
  log "preparing the $kind tree on the host (packages: ${packages[*]:-none})"
  mkdir -p "$work/tree"
  zstd -q -dc "$tree" | tar --numeric-owner --xattrs --xattrs-include='*' --acls -C "$work/tree" -xf -
  mount -t proc proc "$work/tree/proc"
  mount -t sysfs sysfs "$work/tree/sys"
  mount --bind /dev "$work/tree/dev"
  if ((${#packages[@]})); then
    "$here/fetch-debs.sh" --suite "$suite" "$work/tree/tmp/debs" "${packages[@]}" >/dev/null || die "fetching ${packages[*]} failed (see above)"
    cp "$here/source/install-debs" "$work/tree/tmp/"
    chroot "$work/tree" /tmp/install-debs /tmp/debs >"$work/host-tree.log" 2>&1 \
      || { tail -n 30 "$work/host-tree.log" "$work/tree/tmp/install-debs.log" >&2; die "installing ${packages[*]} into the $kind tree failed"; }
    rm -rf "$work/tree/tmp/debs" "$work/tree/tmp/install-debs" "$work/tree/tmp/install-debs.log"
  fi
  if [ -n "$has_host_tree" ]; then
    # A bash of its own: `set -e` holds inside it although `||` follows.
    T="$work/tree" bash -euxo pipefail -c '. "$1"; host_tree' host_tree "$layout" >>"$work/host-tree.log" 2>&1 \
      || { tail -n 40 "$work/host-tree.log" >&2; die "host_tree of $kind failed (log above)"; }
  fi
  umount_tree
  tar --numeric-owner --xattrs --acls -C "$work/tree" -cf - . | zstd -q -T0 -3 -o "$work/job/tree.tar.zst"
  rm -rf "$work/tree"
fi
t1=$(date +%s)
log "tree ready in $((t1 - t0)) s; installing $kind onto ${#sizes[@]} disk(s) (${sizes[*]}) in the test guest"
cp "$here/source/install.sh" "$work/job/run.sh"
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
# 1200 s is twice the slowest install seen at load 12 (no layout runs
# update-initramfs in the guest any more: host_tree does it natively);
# RESCUE_SCENARIO_TIMEOUT_SCALE stretches it like the scenario phases.
limit=$(awk -v s="${RESCUE_SCENARIO_TIMEOUT_SCALE:-1}" 'BEGIN { printf "%d", 1200 * s }')
"$here/run-guest.sh" --no-rescue "${uefi[@]}" "${vars[@]}" "${disk_args[@]}" --timeout "$limit" "$work/job" \
  || { tail -n 40 "$work/job/out/run.log" >&2 || true; die "installing the $kind source system in the test guest failed (run.log tail above)"; }
[ "$(cat "$work/job/out/done" 2>/dev/null)" = install-ok ] || die "the install job did not finish"
echo "$kind" >"$work/out/kind"
echo "$fw" >"$work/out/firmware"
cp "$work/job/out/run.log" "$work/out/install.log"
if [ -f "$work/host-tree.log" ]; then cp "$work/host-tree.log" "$work/out/host-tree.log"; fi
rm -rf "$dir"
mv "$work/out" "$dir"
touch "$dir/.done"
log "source system $kind built in $(( $(date +%s) - t0 )) s (install in the guest $(( $(date +%s) - t1 )) s): $dir"
echo "$dir"
