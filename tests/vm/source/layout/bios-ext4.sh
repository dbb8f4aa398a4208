# Scenario 1 source: BIOS, GPT (BIOS boot partition), swap, ext4 root. 1 disk.
# shellcheck shell=bash disable=SC2034,SC2154
FIRMWARE_WANTED=bios
DISK_SIZES=(6G)
storage() {
  bios_swap_root_partitions "$DISK1"
  mkfs.ext4 -q -L root "$(part "$DISK1" 3)"
  mount "$(part "$DISK1" 3)" "$mnt"
}
fstab() {
  echo "UUID=$(uuid "$(part "$DISK1" 3)") / ext4 errors=remount-ro 0 1"
  echo "UUID=$(uuid "$(part "$DISK1" 2)") none swap sw 0 0"
}
bootloader() { chroot "$mnt" grub-install --target=i386-pc "$DISK1"; }
teardown() { :; }
