# Scenario 3 source: BIOS, two disks, each GPT with a BIOS boot partition and a
# RAID partition; MD RAID1 (metadata 1.2) holding an ext4 root; GRUB on both.
# shellcheck shell=bash disable=SC2034,SC2154
FIRMWARE_WANTED=bios
DISK_SIZES=(5G 5G)
storage() {
  local d
  for d in "$DISK1" "$DISK2"; do
    sfdisk -q "$d" <<SFDISK
label: gpt
size=1MiB, type=21686148-6449-6E6F-744E-656564454649, name=biosboot
type=A19D880F-05FC-4D3B-A006-743F0F84911E, name=raid
SFDISK
  done
  udevadm settle
  mdadm --create /dev/md/root --run --level=1 --raid-devices=2 --metadata=1.2 --homehost=rescue-src \
    --name=root --assume-clean "$(part "$DISK1" 2)" "$(part "$DISK2" 2)"
  udevadm settle
  mkfs.ext4 -q -L root /dev/md/root
  mount /dev/md/root "$mnt"
}
fstab() { echo "UUID=$(uuid /dev/md/root) / ext4 errors=remount-ro 0 1"; }
bootloader() {
  # The initramfs assembles the array named in mdadm.conf (built on the host without it).
  { echo 'HOMEHOST <system>'; mdadm --detail --scan; } >"$mnt/etc/mdadm/mdadm.conf"
  chroot "$mnt" update-initramfs -u -k all
  chroot "$mnt" grub-install --target=i386-pc "$DISK1"
  chroot "$mnt" grub-install --target=i386-pc "$DISK2"
}
teardown() { mdadm --stop /dev/md/root; }
