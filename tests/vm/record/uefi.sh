# uefi (booted with OVMF): GPT with ESP (vfat) at /boot/efi + ext4 root, GRUB
# for x86_64-efi which adds an EFI boot entry.
[ "$FIRMWARE" = uefi ] || { echo "this scenario must boot with --uefi"; exit 1; }
table "$DISK1" <<T
label: gpt
size=256MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=EFI
type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root
T
p1=$(part "$DISK1" 1) p2=$(part "$DISK1" 2)
mkfs.vfat -F 32 -n ESP "$p1"
mkfs.ext4 -q -L root "$p2"
mount "$p2" /mnt/target
mkdir -p /mnt/target/boot/efi /mnt/target/etc
mount "$p1" /mnt/target/boot/efi
cat >/mnt/target/etc/fstab <<F
UUID=$(uuid "$p2") / ext4 errors=remount-ro 0 1
UUID=$(uuid "$p1") /boot/efi vfat umask=0077 0 1
F
grub-install --target=x86_64-efi --efi-directory=/mnt/target/boot/efi --boot-directory=/mnt/target/boot --bootloader-id=debian "$DISK1"
efibootmgr -v
record uefi "Debian 12 VM booted with OVMF (UEFI): one virtio disk, GPT: 1 ESP vfat (FAT32, label ESP) at /mnt/target/boot/efi, 2 ext4 root at /mnt/target; grub-install x86_64-efi added the EFI entry 'debian'" "$DISK1"
