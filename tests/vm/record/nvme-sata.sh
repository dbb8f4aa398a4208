# nvme-sata: an NVMe disk (GPT) and a SATA/AHCI disk (MBR with an extended and a
# logical partition), so nvme0n1p1 / sda5 style names are in the fixture.
table "$DISK1" <<T
label: gpt
size=600MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root
type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, name=swap
T
table "$DISK2" <<T
label: dos
size=400MiB, type=83, bootable
type=5
size=300MiB, type=83
T
n1=$(part "$DISK1" 1) n2=$(part "$DISK1" 2) s1=$(part "$DISK2" 1) s5=$(part "$DISK2" 5)
mkfs.ext4 -q -L root "$n1"
mkswap -L swap "$n2"
mkfs.xfs -q -L data "$s1"
mkfs.ext4 -q -L var "$s5"
mount "$n1" /mnt/target
mkdir -p /mnt/target/data /mnt/target/var /mnt/target/etc
mount "$s1" /mnt/target/data
mount "$s5" /mnt/target/var
cat >/mnt/target/etc/fstab <<F
UUID=$(uuid "$n1") / ext4 errors=remount-ro 0 1
LABEL=data /data xfs defaults 0 2
$s5 /var ext4 defaults 0 2
UUID=$(uuid "$n2") none swap sw 0 0
F
record nvme-sata "Debian 12 VM (BIOS): disk 1 NVMe ($DISK1, GPT: 1 ext4 root, 2 swap), disk 2 SATA/AHCI ($DISK2, MBR: 1 primary bootable xfs at /data, 2 extended, 5 logical ext4 at /var); fstab uses UUID=, LABEL= and a device path" "$DISK1" "$DISK2"
