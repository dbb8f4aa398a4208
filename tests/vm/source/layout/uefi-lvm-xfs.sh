# Scenario 2 source: UEFI, GPT, ESP, LVM (VG srcvg) with XFS root, XFS /home
# and swap. 1 disk. Booted as Debian's installer sets it up: the signed shim
# loads the signed GRUB (grub-install takes them when these packages are in).
# shellcheck shell=bash disable=SC2034,SC2154
FIRMWARE_WANTED=uefi
DISK_SIZES=(6G)
PACKAGES=(shim-signed grub-efi-amd64-signed)
storage() {
  sfdisk -q "$DISK1" <<SFDISK
label: gpt
size=256MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp
type=E6D6D379-F507-44C2-A23C-238F2A3DF928, name=lvm
SFDISK
  udevadm settle
  mkfs.vfat -F 32 -n ESP "$(part "$DISK1" 1)"
  pvcreate -y "$(part "$DISK1" 2)"
  vgcreate srcvg "$(part "$DISK1" 2)"
  lvcreate -y -L 3G -n root srcvg
  lvcreate -y -L 768M -n home srcvg
  lvcreate -y -L 256M -n swap srcvg
  udevadm settle
  mkfs.xfs -q -L root /dev/srcvg/root
  mkfs.xfs -q -L home /dev/srcvg/home
  mkswap -L swap /dev/srcvg/swap
  mount /dev/srcvg/root "$mnt"
  mkdir -p "$mnt/home" "$mnt/boot/efi"
  mount /dev/srcvg/home "$mnt/home"
  mount "$(part "$DISK1" 1)" "$mnt/boot/efi"
}
fstab() {
  echo "UUID=$(uuid /dev/srcvg/root) / xfs defaults 0 1"
  echo "UUID=$(uuid /dev/srcvg/home) /home xfs defaults 0 2"
  echo "UUID=$(uuid "$(part "$DISK1" 1)") /boot/efi vfat umask=0077 0 1"
  echo "UUID=$(uuid /dev/srcvg/swap) none swap sw 0 0"
}
# The initramfs (built by setup.sh on the host) already holds lvm and its udev
# rules: Debian's lvm2 hook copies them unconditionally.
bootloader() { chroot "$mnt" grub-install --target=x86_64-efi --efi-directory=/boot/efi --bootloader-id=debian; }
teardown() { vgchange -an srcvg; }
