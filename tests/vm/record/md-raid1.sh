# md-raid1: two disks, GPT, BIOS boot partition 1 on each, RAID1 (metadata 1.2)
# of partition 2 on each, ext4 on the array mounted at /, GRUB on both disks.
for d in "$DISK1" "$DISK2"; do
  table "$d" <<T
label: gpt
size=1MiB, type=21686148-6449-6E6F-744E-656564454649, name=bios
type=A19D880F-05FC-4D3B-A006-743F0F84911E, name=raid
T
done
mdadm --create /dev/md0 --run --assume-clean --level=1 --raid-devices=2 --metadata=1.2 --name=root \
  "$(part "$DISK1" 2)" "$(part "$DISK2" 2)"
settle
mkfs.ext4 -q -L root /dev/md0
mount /dev/md0 /mnt/target
mkdir -p /mnt/target/etc /mnt/target/boot
echo "UUID=$(uuid /dev/md0) / ext4 errors=remount-ro 0 1" >/mnt/target/etc/fstab
mkdir -p /mnt/target/etc/mdadm
mdadm --detail --scan >/mnt/target/etc/mdadm/mdadm.conf
grub-install --target=i386-pc --boot-directory=/mnt/target/boot "$DISK1"
grub-install --target=i386-pc --boot-directory=/mnt/target/boot "$DISK2"
record md-raid1 "Debian 12 VM (BIOS): two virtio disks, GPT with BIOS boot partition 1 and RAID partition 2 on each, MD RAID1 (metadata 1.2, name root) of the partitions 2, ext4 on /dev/md0 mounted at /mnt/target, GRUB i386-pc on both disks" "$DISK1" "$DISK2"
