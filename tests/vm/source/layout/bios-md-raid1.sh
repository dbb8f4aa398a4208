# Scenario 3 source: BIOS, two disks, each GPT with a BIOS boot partition and a
# RAID partition; MD RAID1 (metadata 1.2) holding an ext4 root; GRUB on both.
# shellcheck shell=bash disable=SC2034,SC2154
FIRMWARE_WANTED=bios
DISK_SIZES=(5G 5G)
# Fixed, so the initramfs (built on the host by host_tree) names the array the
# guest creates.
MD_UUID=5e3c1d2a:7b9f4e60:a1c2d3e4:f5061728
# On the host, in the kind's copy of the tree: mdadm.conf with the array, and
# the initramfs that assembles it from there (natively: under TCG this step
# took over 30 min).
host_tree() {
  printf 'HOMEHOST <system>\nARRAY /dev/md/root metadata=1.2 UUID=%s name=rescue-src:root\n' "$MD_UUID" >"$T/etc/mdadm/mdadm.conf"
  chroot "$T" update-initramfs -u -k all
  chroot "$T" sh -c 'unmkinitramfs /boot/initrd.img-* /tmp/initrd-check'
  find "$T/tmp/initrd-check" -path '*/etc/mdadm/mdadm.conf' -exec grep -H "UUID=$MD_UUID" {} + | grep -q .
  rm -rf "$T/tmp/initrd-check"
}
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
    --name=root --uuid="$MD_UUID" --assume-clean "$(part "$DISK1" 2)" "$(part "$DISK2" 2)"
  udevadm settle
  mdadm --detail --scan | grep -F "UUID=$MD_UUID"
  mkfs.ext4 -q -L root /dev/md/root
  mount /dev/md/root "$mnt"
}
fstab() { echo "UUID=$(uuid /dev/md/root) / ext4 errors=remount-ro 0 1"; }
bootloader() {
  # mdadm.conf and the initramfs come with the tree (host_tree).
  chroot "$mnt" grub-install --target=i386-pc "$DISK1"
  chroot "$mnt" grub-install --target=i386-pc "$DISK2"
}
teardown() { mdadm --stop /dev/md/root; }
