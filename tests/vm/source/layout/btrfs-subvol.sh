# Scenario 5 source: BIOS, GPT, swap, btrfs with subvolumes @ (root, the
# default subvolume), @home (/home) and @var-log (/var/log). 1 disk.
# shellcheck shell=bash disable=SC2034,SC2154
FIRMWARE_WANTED=bios
DISK_SIZES=(6G)
storage() {
  bios_swap_root_partitions "$DISK1"
  mkfs.btrfs -q -L root "$(part "$DISK1" 3)"
  mount "$(part "$DISK1" 3)" "$mnt"
  btrfs subvolume create "$mnt/@"
  btrfs subvolume create "$mnt/@home"
  btrfs subvolume create "$mnt/@var-log"
  btrfs subvolume set-default "$mnt/@"
  umount "$mnt"
  mount "$(part "$DISK1" 3)" "$mnt"
  mkdir -p "$mnt/home" "$mnt/var/log"
  mount -o subvol=@home "$(part "$DISK1" 3)" "$mnt/home"
  mount -o subvol=@var-log "$(part "$DISK1" 3)" "$mnt/var/log"
}
fstab() {
  local u; u=$(uuid "$(part "$DISK1" 3)")
  echo "UUID=$u / btrfs defaults 0 0"
  echo "UUID=$u /home btrfs subvol=@home 0 0"
  echo "UUID=$u /var/log btrfs subvol=@var-log 0 0"
  echo "UUID=$(uuid "$(part "$DISK1" 2)") none swap sw 0 0"
}
bootloader() { chroot "$mnt" grub-install --target=i386-pc "$DISK1"; }
teardown() { :; }
