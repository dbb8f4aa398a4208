# lvm-span: a VG spanning two disks: a striped LV (2 stripes) and a linear LV
# larger than one PV.
for d in "$DISK1" "$DISK2"; do
  table "$d" <<T
label: gpt
type=E6D6D379-F507-44C2-A23C-238F2A3DF928, name=pv
T
done
pv1=$(part "$DISK1" 1) pv2=$(part "$DISK2" 1)
pvcreate -y "$pv1" "$pv2"
vgcreate -s 8M vgdata "$pv1" "$pv2"
lvcreate -y -i 2 -I 64k -L 512M -n striped vgdata
lvcreate -y -l 100%FREE -n linear vgdata
settle
mkfs.xfs -q -L linear /dev/vgdata/linear
mkfs.ext4 -q -L striped /dev/vgdata/striped
mount /dev/vgdata/linear /mnt/target
mkdir -p /mnt/target/srv /mnt/target/etc
mount /dev/vgdata/striped /mnt/target/srv
cat >/mnt/target/etc/fstab <<F
/dev/mapper/vgdata-linear / xfs defaults 0 0
/dev/mapper/vgdata-striped /srv ext4 defaults 0 2
F
record lvm-span "Debian 12 VM (BIOS): two virtio disks, GPT with one Linux LVM partition each, VG vgdata (8 MiB extents) on both PVs: LV striped (2 stripes, 64 KiB, 512 MiB, ext4, /srv) and LV linear (rest, spans both PVs, xfs, /), mounted under /mnt/target" "$DISK1" "$DISK2"
