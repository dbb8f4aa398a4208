# btrfs: subvolumes @, @home, @snapshots, a nested one (@/var/lib/machines), a
# read-only snapshot, default subvolume @, mounted with subvol= options.
table "$DISK1" <<T
label: gpt
type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root
T
p1=$(part "$DISK1" 1)
mkfs.btrfs -q -L broot "$p1"
mkdir -p /tmp/top
mount -o subvolid=5 "$p1" /tmp/top
btrfs subvolume create /tmp/top/@
btrfs subvolume create /tmp/top/@home
btrfs subvolume create /tmp/top/@snapshots
mkdir -p /tmp/top/@/var/lib /tmp/top/@/etc
btrfs subvolume create /tmp/top/@/var/lib/machines
echo hello >/tmp/top/@/etc/motd
btrfs subvolume snapshot -r /tmp/top/@ /tmp/top/@snapshots/1
btrfs subvolume set-default "$(btrfs subvolume show /tmp/top/@ | awk '/Subvolume ID:/{print $3}')" /tmp/top
umount /tmp/top
mount -o subvol=@,compress=zstd "$p1" /mnt/target
mkdir -p /mnt/target/home /mnt/target/.snapshots
mount -o subvol=@home "$p1" /mnt/target/home
mount -o subvol=@snapshots "$p1" /mnt/target/.snapshots
u=$(uuid "$p1")
cat >/mnt/target/etc/fstab <<F
UUID=$u / btrfs subvol=@,compress=zstd 0 0
UUID=$u /home btrfs subvol=@home 0 0
UUID=$u /.snapshots btrfs subvol=@snapshots 0 0
F
record btrfs "Debian 12 VM (BIOS): one virtio disk, GPT with one btrfs (label broot): subvolumes @ (default, mounted at /mnt/target with compress=zstd), @home (/home), @snapshots (/.snapshots) holding the read-only snapshot @snapshots/1 of @, and @/var/lib/machines nested in @" "$DISK1"
