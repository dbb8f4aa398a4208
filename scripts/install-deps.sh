#!/bin/bash
# Installs every system tool that building `rescue`, running it and its tests need on Debian 12.
# Idempotent; run as root. Used by the README quick start and by .ci/run.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PKGS=(
  # probing and storage replay
  util-linux fdisk e2fsprogs xfsprogs btrfs-progs dosfstools mtools lvm2 mdadm cryptsetup-bin
  parted gdisk efibootmgr kmod
  # archive and transport, and the baselines we compare against
  tar gzip pigz zstd rsync acl attr nfs-common cifs-utils
  # the manual restore of encrypted archives (tests/archive_age.rs)
  age
  # rescue image
  cpio xorriso isolinux pxelinux syslinux-common grub-pc-bin grub-efi-amd64-bin grub-common busybox-static openssh-server openssh-client
  # Secure Boot: Debian's signed shim and GRUB, sbsign for own keys (tests/secure_boot.rs)
  shim-signed shim-unsigned grub-efi-amd64-signed sbsigntool openssl
  # VM tests
  qemu-system-x86 qemu-utils ovmf debootstrap wget
  # the Debian package (scripts/build-deb.sh, tests/package.rs)
  dpkg-dev fakeroot lintian
  # backup server tests (tests/bacula.rs): a real Bacula director, storage and file daemon
  bacula-director bacula-director-sqlite3 bacula-sd bacula-fd bacula-console sqlite3
  # S3 tests (tests/s3.rs, tests/s3/ceph-rgw.sh): a real single-node Ceph with its
  # RADOS Gateway; awscli creates the Object Lock bucket, s3cmd is the benchmark peer
  ceph-mon ceph-mgr ceph-osd radosgw awscli s3cmd curl uuid-runtime
  # transient mounts checklayout must ignore (tests/refresh_loop.rs)
  squashfs-tools fuse2fs
  # misc
  jq file procps hyperfine time binutils syslinux curl
  # fuzzing (scripts/fuzz.sh): libFuzzer is C++
  g++
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
