# luks2-lvm: GPT, BIOS boot, /boot ext4, LUKS2 (key file) holding a PV, VG vg0
# with LVs root (xfs), home (ext4), swap; GRUB i386-pc on the disk.
table "$DISK1" <<T
label: gpt
size=1MiB, type=21686148-6449-6E6F-744E-656564454649, name=bios
size=512MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=boot
type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=crypt
T
p2=$(part "$DISK1" 2) p3=$(part "$DISK1" 3)
cname=$(basename "$p3")_crypt
mkfs.ext4 -q -L boot "$p2"
cryptsetup luksFormat -q --type luks2 --label cryptroot "${LUKS2_FAST[@]}" --key-file /tmp/key "$p3"
cryptsetup open --key-file /tmp/key "$p3" "$cname"
settle
pvcreate -y "/dev/mapper/$cname"
vgcreate vg0 "/dev/mapper/$cname"
lvcreate -y -L 1G -n root vg0
lvcreate -y -L 512M -n home vg0
lvcreate -y -L 256M -n swap vg0
settle
mkfs.xfs -q -L root /dev/vg0/root
mkfs.ext4 -q -L home /dev/vg0/home
mkswap -L swap /dev/vg0/swap
swapon /dev/vg0/swap
mount /dev/vg0/root /mnt/target
mkdir -p /mnt/target/boot /mnt/target/home /mnt/target/etc
mount "$p2" /mnt/target/boot
mount /dev/vg0/home /mnt/target/home
cat >/mnt/target/etc/fstab <<F
/dev/mapper/vg0-root / xfs defaults 0 0
UUID=$(uuid "$p2") /boot ext4 defaults 0 2
/dev/mapper/vg0-home /home ext4 defaults 0 2
/dev/mapper/vg0-swap none swap sw 0 0
F
echo "$cname UUID=$(uuid "$p3") none luks,discard" >/mnt/target/etc/crypttab
grub-install --target=i386-pc --boot-directory=/mnt/target/boot "$DISK1"
record luks2-lvm "Debian 12 VM (BIOS): one virtio disk, GPT: 1 BIOS boot, 2 /boot ext4, 3 LUKS2 (argon2id, label cryptroot, opened as ${cname}) holding an LVM PV; VG vg0 with LVs root (xfs, /), home (ext4, /home), swap (active); mounted under /mnt/target; GRUB i386-pc" "$DISK1"
swapoff /dev/vg0/swap
