#!/bin/bash
# Job run in the test guest (tests/vm/run-guest.sh) by build-source.sh: install
# the prepared source tree (/job/tree.tar.zst) onto the blank disks $DISK1...
# the way an installer would: /job/layout.sh (a copy of layout/KIND.sh)
# partitions, builds the storage stack, makes and mounts the filesystems under
# $mnt and writes fstab (by UUID); then grub-install and update-grub run in a
# chroot (udev runs here, so GRUB and the kernel command line name devices
# properly; under UEFI the boot entry lands in the OVMF variables that
# build-source.sh keeps with the disks).
# layout.sh defines: storage (partition, format, mount), fstab, bootloader
# (grub-install in the chroot), teardown (after unmounting).
set -euxo pipefail
mnt=/mnt/src
mkdir -p "$mnt"
# Partition N of disk D (vdb1, nvme0n1p1).
part() { if [[ $1 == *[0-9] ]]; then echo "${1}p$2"; else echo "$1$2"; fi; }
uuid() { blkid -p -s UUID -o value "$1"; }
# GPT with a BIOS boot partition, a 256 MiB swap partition (made) and a root partition (3).
bios_swap_root_partitions() {
  sfdisk -q "$1" <<SFDISK
label: gpt
size=1MiB, type=21686148-6449-6E6F-744E-656564454649, name=biosboot
size=256MiB, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, name=swap
type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root
SFDISK
  udevadm settle
  mkswap -L swap "$(part "$1" 2)"
}
# shellcheck source=/dev/null
. /job/layout.sh
[ "$FIRMWARE" = "$FIRMWARE_WANTED" ] || { echo "this layout needs $FIRMWARE_WANTED firmware, the guest runs $FIRMWARE"; exit 2; }
storage
zstd -q -dc /job/tree.tar.zst | tar --numeric-owner --xattrs --xattrs-include='*' --acls -C "$mnt" -xf -
fstab >"$mnt/etc/fstab"
cat "$mnt/etc/fstab"
# Plain bind mounts (not --rbind: cgroup mounts below /sys would stay busy).
for m in dev dev/pts proc sys run; do mount --bind "/$m" "$mnt/$m"; done
if [ "$FIRMWARE" = uefi ]; then mount --bind /sys/firmware/efi/efivars "$mnt/sys/firmware/efi/efivars"; fi
bootloader
chroot "$mnt" update-grub
grep -E '^\s*(linux|search)' "$mnt/boot/grub/grub.cfg" | head -n 4
if [ "$FIRMWARE" = uefi ]; then chroot "$mnt" efibootmgr -v; fi
sync
umount -R "$mnt"
teardown
echo install-ok >"$OUT/done"
