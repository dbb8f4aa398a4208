# Scenario 4 source: BIOS, GPT (BIOS boot partition), a plain ext4 /boot, and a
# LUKS2 partition (mapper name cryptroot) holding LVM: VG luksvg with an ext4
# root and swap. 1 disk. It boots without anyone typing a passphrase: the key
# file /etc/cryptsetup-keys.d/cryptroot.key is copied into the initramfs
# (cryptsetup-initramfs, KEYFILE_PATTERN, UMASK=0077), as Debian documents for
# an unattended root unlock.
# LUKS_KEY is a test key: run-scenario.sh puts the same bytes on the USB stick
# that the recovery reads it from (recover.luks-keys = usb://LUKSKEY/...).
# shellcheck shell=bash disable=SC2034,SC2154
FIRMWARE_WANTED=bios
DISK_SIZES=(6G)
PACKAGES=(cryptsetup-initramfs)
LUKS_KEY=rescue-scenario-4-test-key-d41c9a0f57e3b2a8c6e1f094
storage() {
  sfdisk -q "$DISK1" <<SFDISK
label: gpt
size=1MiB, type=21686148-6449-6E6F-744E-656564454649, name=biosboot
size=512MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=boot
type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=crypt
SFDISK
  udevadm settle
  mkfs.ext4 -q -L boot "$(part "$DISK1" 2)"
  printf '%s' "$LUKS_KEY" >/run/cryptroot.key
  cryptsetup luksFormat --batch-mode --type luks2 --key-file /run/cryptroot.key "$(part "$DISK1" 3)"
  cryptsetup open --key-file /run/cryptroot.key "$(part "$DISK1" 3)" cryptroot
  pvcreate -y /dev/mapper/cryptroot
  vgcreate luksvg /dev/mapper/cryptroot
  lvcreate -y -L 4G -n root luksvg
  lvcreate -y -L 256M -n swap luksvg
  udevadm settle
  mkfs.ext4 -q -L root /dev/luksvg/root
  mkswap -L swap /dev/luksvg/swap
  mount /dev/luksvg/root "$mnt"
  mkdir -p "$mnt/boot"
  mount "$(part "$DISK1" 2)" "$mnt/boot"
}
fstab() {
  echo "UUID=$(uuid /dev/luksvg/root) / ext4 errors=remount-ro 0 1"
  echo "UUID=$(uuid "$(part "$DISK1" 2)") /boot ext4 defaults 0 2"
  echo "UUID=$(uuid /dev/luksvg/swap) none swap sw 0 0"
}
bootloader() {
  install -d -m 0700 "$mnt/etc/cryptsetup-keys.d"
  install -m 0400 /run/cryptroot.key "$mnt/etc/cryptsetup-keys.d/cryptroot.key"
  # `initramfs`: unlock it in the initramfs even if the hook's own detection misses it.
  echo "cryptroot UUID=$(uuid "$(part "$DISK1" 3)") /etc/cryptsetup-keys.d/cryptroot.key luks,discard,initramfs" >"$mnt/etc/crypttab"
  mkdir -p "$mnt/etc/cryptsetup-initramfs" "$mnt/etc/initramfs-tools/conf.d"
  echo 'KEYFILE_PATTERN="/etc/cryptsetup-keys.d/*.key"' >>"$mnt/etc/cryptsetup-initramfs/conf-hook"
  # The initramfs holds the key: readable by root only.
  echo 'UMASK=0077' >"$mnt/etc/initramfs-tools/conf.d/umask"
  echo 'RESUME=none' >"$mnt/etc/initramfs-tools/conf.d/resume"
  cp -r /job/debs /job/install-debs "$mnt/tmp/"
  # This step ran for over 50 min under TCG at load 10-12 (docs/testing.md):
  # show what runs every 2 min. sleep's output goes nowhere, so killing the
  # loop leaves nothing holding the job's output open.
  ( while sleep 120 >/dev/null 2>&1; do
      echo "--- $(date +%T) install-debs still running:"
      pgrep -a -f 'dpkg|mkinitramfs|cpio|zstd|hooks/' | cut -c1-160 | head -n 8 || true
    done ) &
  local mon=$! rc=0
  chroot "$mnt" /tmp/install-debs /tmp/debs || rc=$?
  kill "$mon"
  [ "$rc" = 0 ] || { tail -n 40 "$mnt/tmp/install-debs.log"; exit "$rc"; }
  rm -rf "$mnt/tmp/debs" "$mnt/tmp/install-debs" "$mnt/tmp/install-debs.log"
  # Installing cryptsetup-initramfs rebuilt the initramfs (a dpkg trigger),
  # with crypttab and the key written before: check, rebuild only if needed.
  has_key() { chroot "$mnt" sh -c 'lsinitramfs /boot/initrd.img-*' | grep -E 'cryptroot/(crypttab|keyfiles/cryptroot.key)$' | grep 'keyfiles/cryptroot.key$'; }
  has_key || chroot "$mnt" update-initramfs -u -k all
  has_key || { echo "the initramfs does not hold the LUKS key file"; exit 1; }
  chroot "$mnt" grub-install --target=i386-pc "$DISK1"
}
teardown() {
  vgchange -an luksvg
  cryptsetup close cryptroot
}
