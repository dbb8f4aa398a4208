#!/bin/bash
# Build (once) and cache the Debian 12 guest that VM tests boot under qemu TCG,
# and the debootstrap trees of the scenario source systems (any Debian suite).
#
# Two cached stages under ${RESCUE_TEST_CACHE:-/var/cache/rescue-test}/guest/:
#   rootfs-KEY.tar.zst  debootstrap result; KEY = hash of the suite, the package
#                       list and the suite's package index as the mirror serves it
#                       today (suite-key.sh), so a cache made before Debian moved
#                       on (a new kernel ABI, a point release) is never reused
#   image-IKEY/         root.img (raw ext4, no partition table, root=/dev/vda),
#                       vmlinuz, initrd.img (Debian's), initrd-fast.img (busybox +
#                       virtio_blk + ext4, booted by default); IKEY = KEY + hash of the
#                       guest customisation (guest-setup.sh, fast-initrd.sh and guest/*)
# Prints the image directory on stdout. Safe to run concurrently (flock).
# With --rootfs [SUITE]: only make sure the debootstrap tarball of SUITE (default
# bookworm) exists and print its path (tests/vm/build-source.sh builds the
# scenario source systems from it). The test guest itself is always bookworm:
# it only runs jobs (installing a source system, tests' commands).
# Environment: RESCUE_TEST_CACHE, RESCUE_GUEST_MIRROR (default: the host's apt mirror),
#              RESCUE_GUEST_ROOT_SIZE (default 8G, sparse).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CACHE=${RESCUE_TEST_CACHE:-/var/cache/rescue-test}
SUITE=bookworm
ROOT_SIZE=${RESCUE_GUEST_ROOT_SIZE:-8G}
PKGS=(
  linux-image-amd64 initramfs-tools systemd-sysv udev kmod
  lvm2 thin-provisioning-tools mdadm cryptsetup cryptsetup-bin
  btrfs-progs xfsprogs dosfstools mtools e2fsprogs fdisk gdisk parted util-linux
  grub-pc-bin grub-efi-amd64-bin grub-common grub2-common efibootmgr
  rsync tar zstd gzip pigz cpio xorriso isolinux syslinux-common busybox-static
  procps iproute2 psmisc acl attr file jq less kbd
)

ROOTFS_ONLY=0
if [ "${1:-}" = --rootfs ]; then
  ROOTFS_ONLY=1
  SUITE=${2:-$SUITE}
fi
log() { echo "build-guest: $*" >&2; }
die() { echo "build-guest: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot, mkfs)"
for t in debootstrap zstd mkfs.ext4 flock sha256sum wget; do
  command -v "$t" >/dev/null || die "$t is missing: run scripts/install-deps.sh (apt-get install debootstrap zstd e2fsprogs util-linux coreutils wget)"
done

# shellcheck source=suite-key.sh
. "$here/suite-key.sh"
MIRROR=${RESCUE_GUEST_MIRROR:-$(host_mirror)}

mkdir -p "$CACHE/guest"
exec 9>"$CACHE/guest/build.lock"
flock 9

if index=$(suite_key "$SUITE" "$MIRROR"); then
  key=$(printf '%s\n' "$SUITE" "$index" "${PKGS[@]}" | sha256sum | cut -c1-16)
  tarball="$CACHE/guest/rootfs-$key.tar.zst"
else
  # Offline: the newest tarball made for this suite and package list, said loudly.
  list=$(printf '%s\n' "$SUITE" "${PKGS[@]}" | sha256sum | cut -c1-16)
  tarball=$( (ls -t "$CACHE"/guest/rootfs-*.tar.zst 2>/dev/null || true) | while read -r t; do
    if [ "$(cat "${t%.tar.zst}.list" 2>/dev/null)" = "$list" ]; then echo "$t"; break; fi; done)
  [ -n "$tarball" ] || die "cannot read $MIRROR/dists/$SUITE/InRelease (network?) and no cached guest exists"
  log "WARNING: $MIRROR unreachable: reusing $tarball, which may be older than what the mirror serves"
  key=$(basename "$tarball" .tar.zst); key=${key#rootfs-}
fi
ikey=$( { echo "$key" "$ROOT_SIZE"; cat "$here/guest-setup.sh" "$here/fast-initrd.sh"; find "$here/guest" -type f | sort | xargs cat; } | sha256sum | cut -c1-16)
imgdir="$CACHE/guest/image-$ikey"

if ((ROOTFS_ONLY)) && [ -e "$tarball" ]; then echo "$tarball"; exit 0; fi
if ((!ROOTFS_ONLY)) && [ -e "$imgdir/.done" ]; then echo "$imgdir"; exit 0; fi

work=$(mktemp -d "$CACHE/guest/tmp.XXXXXX")
cleanup() {
  for m in proc sys dev/pts dev; do mountpoint -q "$work/tree/$m" 2>/dev/null && umount -l "$work/tree/$m"; done
  rm -rf "$work"
}
trap cleanup EXIT

if [ ! -e "$tarball" ]; then
  log "debootstrap $SUITE from $MIRROR (once; takes a few minutes)"
  t0=$(date +%s)
  incl=$(IFS=,; echo "${PKGS[*]}")
  debootstrap --variant=minbase --include="$incl" "$SUITE" "$work/tree" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed (full log above); check the mirror $MIRROR"; }
  t1=$(date +%s)
  log "debootstrap took $((t1 - t0)) s"
  rm -rf "$work/tree/var/cache/apt/archives/"*.deb "$work/tree/var/lib/apt/lists/"*_Packages
  tar --numeric-owner --xattrs --acls -C "$work/tree" -cf - . | zstd -q -T0 -3 -o "$tarball.tmp"
  printf '%s\n' "$SUITE" "${PKGS[@]}" | sha256sum | cut -c1-16 >"${tarball%.tar.zst}.list"
  mv "$tarball.tmp" "$tarball"
  log "rootfs tarball $(du -h "$tarball" | cut -f1) in $(( $(date +%s) - t1 )) s"
  rm -rf "$work/tree"
fi
if ((ROOTFS_ONLY)); then echo "$tarball"; exit 0; fi

t0=$(date +%s)
log "customising the guest and building the root image"
mkdir -p "$work/tree"
zstd -q -dc "$tarball" | tar --numeric-owner --xattrs --acls -C "$work/tree" -xf -
"$here/guest-setup.sh" "$work/tree" "$here/guest" >"$work/setup.log" 2>&1 \
  || { tail -n 30 "$work/setup.log" >&2; die "guest customisation failed (log above)"; }
mkdir -p "$work/out"
kver=$(ls "$work/tree/lib/modules" | sort -V | tail -n1)
cp "$work/tree/boot/vmlinuz-$kver" "$work/out/vmlinuz"
cp "$work/tree/boot/initrd.img-$kver" "$work/out/initrd.img"
mv "$work/tree/tmp/initrd-fast.img" "$work/out/initrd-fast.img"
echo "$kver" >"$work/out/kernel-version"
printf '%s\n' "$SUITE" "${PKGS[@]}" >"$work/out/packages"
truncate -s "$ROOT_SIZE" "$work/out/root.img"
mkfs.ext4 -q -F -L rescue-guest -E root_owner=0:0 -d "$work/tree" "$work/out/root.img" \
  || die "mkfs.ext4 -d failed building $work/out/root.img"
rm -rf "$imgdir"
mv "$work/out" "$imgdir"
touch "$imgdir/.done"
log "image built in $(( $(date +%s) - t0 )) s: $imgdir"
echo "$imgdir"
