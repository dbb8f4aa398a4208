# luks1: GPT, one LUKS1 partition with ext4 inside, mounted as the root.
table "$DISK1" <<T
label: gpt
type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=data
T
p1=$(part "$DISK1" 1)
cryptsetup luksFormat -q --type luks1 --pbkdf-force-iterations 1000 --key-file /tmp/key "$p1"
cryptsetup open --key-file /tmp/key "$p1" data_crypt
settle
mkfs.ext4 -q -L data /dev/mapper/data_crypt
mount /dev/mapper/data_crypt /mnt/target
mkdir -p /mnt/target/etc
echo "/dev/mapper/data_crypt / ext4 defaults 0 1" >/mnt/target/etc/fstab
echo "data_crypt UUID=$(uuid "$p1") none luks" >/mnt/target/etc/crypttab
record luks1 "Debian 12 VM (BIOS): one virtio disk, GPT with one partition holding LUKS1 (pbkdf2, opened as data_crypt), ext4 (label data) inside mounted at /mnt/target" "$DISK1"
