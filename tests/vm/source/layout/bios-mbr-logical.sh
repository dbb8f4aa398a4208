# Issue 15's server: BIOS, an MBR (msdos) table with a bootable primary ext2
# /boot and an extended partition holding logical partitions for swap, an
# ext4 root and an xfs /var mounted by LABEL. 1 disk.
# shellcheck shell=bash disable=SC2034,SC2154
FIRMWARE_WANTED=bios
DISK_SIZES=(6G)
storage() {
  sfdisk -q "$DISK1" <<SFDISK
label: dos
size=256MiB, type=83, bootable
type=05
size=256MiB, type=82
size=3GiB, type=83
type=83
SFDISK
  udevadm settle
  mkfs.ext2 -q -L boot "$(part "$DISK1" 1)"
  mkswap -L swap "$(part "$DISK1" 5)"
  mkfs.ext4 -q -L root "$(part "$DISK1" 6)"
  mkfs.xfs -q -L var "$(part "$DISK1" 7)"
  mount "$(part "$DISK1" 6)" "$mnt"
  mkdir -p "$mnt/boot" "$mnt/var"
  mount "$(part "$DISK1" 1)" "$mnt/boot"
  mount "$(part "$DISK1" 7)" "$mnt/var"
}
fstab() {
  echo "UUID=$(uuid "$(part "$DISK1" 6)") / ext4 errors=remount-ro 0 1"
  echo "UUID=$(uuid "$(part "$DISK1" 1)") /boot ext2 defaults 0 2"
  echo "LABEL=var /var xfs defaults 0 2"
  echo "UUID=$(uuid "$(part "$DISK1" 5)") none swap sw 0 0"
}
bootloader() { chroot "$mnt" grub-install --target=i386-pc "$DISK1"; }
teardown() { :; }
