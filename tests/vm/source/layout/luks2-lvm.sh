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
# Fixed, so the crypttab in the initramfs built on the host names the LUKS
# volume the guest formats.
LUKS_UUID=6a1f3c52-9d7e-4b08-8e21-3f5c7a9d0b14
# On the host, in the kind's copy of the tree (cryptsetup-initramfs already
# installed from PACKAGES): the key, crypttab, the hook's settings, and the
# initramfs holding the key (natively: under TCG this step ran over 50 min).
host_tree() {
  install -d -m 0700 "$T/etc/cryptsetup-keys.d"
  printf '%s' "$LUKS_KEY" >"$T/etc/cryptsetup-keys.d/cryptroot.key"
  chmod 0400 "$T/etc/cryptsetup-keys.d/cryptroot.key"
  # `initramfs`: unlock it in the initramfs although the hook cannot see the
  # root device here (it runs on the build host).
  echo "cryptroot UUID=$LUKS_UUID /etc/cryptsetup-keys.d/cryptroot.key luks,discard,initramfs" >"$T/etc/crypttab"
  mkdir -p "$T/etc/cryptsetup-initramfs" "$T/etc/initramfs-tools/conf.d"
  echo 'KEYFILE_PATTERN="/etc/cryptsetup-keys.d/*.key"' >>"$T/etc/cryptsetup-initramfs/conf-hook"
  echo 'CRYPTSETUP=y' >>"$T/etc/cryptsetup-initramfs/conf-hook"
  # The initramfs holds the key: readable by root only.
  echo 'UMASK=0077' >"$T/etc/initramfs-tools/conf.d/umask"
  echo 'RESUME=none' >"$T/etc/initramfs-tools/conf.d/resume"
  chroot "$T" update-initramfs -u -k all
  chroot "$T" sh -c 'lsinitramfs /boot/initrd.img-*' >"$T/tmp/initrd.list"
  grep -E 'cryptroot/keyfiles/cryptroot.key$' "$T/tmp/initrd.list"
  grep -E 'cryptroot/crypttab$' "$T/tmp/initrd.list"
  grep -E 'sbin/cryptsetup$' "$T/tmp/initrd.list"
  grep -E '/dm-crypt\.ko$' "$T/tmp/initrd.list"
  grep -E '/xts\.ko$' "$T/tmp/initrd.list"
  chroot "$T" sh -c 'unmkinitramfs /boot/initrd.img-* /tmp/initrd-check'
  find "$T/tmp/initrd-check" -path '*/cryptroot/crypttab' -exec grep -H "UUID=$LUKS_UUID" {} + | grep -q .
  rm -rf "$T/tmp/initrd-check" "$T/tmp/initrd.list"
}
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
  cryptsetup luksFormat --batch-mode --type luks2 --uuid "$LUKS_UUID" --key-file /run/cryptroot.key "$(part "$DISK1" 3)"
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
  # The key, crypttab and the initramfs holding the key come with the tree (host_tree).
  [ "$(uuid "$(part "$DISK1" 3)")" = "$LUKS_UUID" ]
  chroot "$mnt" grub-install --target=i386-pc "$DISK1"
}
teardown() {
  vgchange -an luksvg
  cryptsetup close cryptroot
}
