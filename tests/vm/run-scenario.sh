#!/bin/bash
# One end-to-end recovery scenario under qemu TCG:
#   1. the cached source system (build-source.sh) boots from its disk (GRUB,
#      BIOS or OVMF) with this repo's `rescue` on a 9p share; the job writes
#      test data, records its state (source/rescue-scenario-state) and runs
#      `rescue mkbackup`, which writes the rescue ISO to the share;
#   2. blank target disk(s) boot that ISO, which must show its banner, the
#      descriptor and every blank disk under /dev/disk/by-id (RESCUE-* marker
#      lines); its default entry is `unattended`
#      (the scenario's rescue.toml), so `rescue recover --unattended` runs and
#      RESCUE-RECOVER-OK must appear before the rescue system powers off;
#   3. the recovered disk(s) boot alone (GRUB from the disk); the scenario unit
#      compares the test data and prints RESCUE-SCENARIO-VERIFY PASS|FAIL.
#
# Usage: run-scenario.sh [--rescue BIN] SCENARIO WORKDIR
#   SCENARIO: bios-ext4 (1) | uefi-lvm-xfs (2) | bios-md-raid1 (3) | luks2-lvm (4) |
#             btrfs-subvol (5) | bios-ext4-to-sata-larger, bios-ext4-to-nvme-smaller (6) |
#             bios-mbr-logical (MBR, logical partitions, ext2 /boot, xfs /var by LABEL) |
#             bios-ext4-bacula (restore from a Bacula director on the host) |
#             bios-ext4-s3 (backup to and restore from Ceph RGW on the host; the
#             image holds only a read-only key) |
#             uefi-lvm-xfs-to-4kn (scenario 2's system onto a disk with 4096-byte sectors) |
#             bios-ext4-bond-vlan-nfs (issue 19: a bond and a VLAN with a static address,
#             backup on NFS, recovered onto other NICs; in a network namespace) |
#             bios-ext4-incr-age (issue 18: an encrypted incremental chain on a USB
#             stick, the age identity read from a second stick at recovery) |
#             bios-ext4-bacula-server (issue 23: a Bacula director, storage and
#             file daemon with their catalog and volumes, backed up to a USB disk
#             and recovered; its director lists and restores the old jobs)
#             Each may carry a Debian suite as prefix: trixie-bios-ext4 is
#             scenario 1 with a Debian 13 source (its own kernel, GRUB and
#             tools build the rescue image); without one the source is bookworm.
#             Secure Boot (uefi-lvm-xfs) is only checked on bookworm.
#   WORKDIR: created; holds the disks, serial logs (*.serial.log), the job
#   share and `times` (seconds per phase). Remove it afterwards (sparse disks,
#   the ISO: a few hundred MB).
# Exit status 0 when the recovered system verified; otherwise 1 with the reason
# and the tail of the serial log of the phase that failed on stderr.
# Environment: RESCUE_TEST_CACHE, RESCUE_SCENARIO_TIMEOUT_SCALE (multiplies the
# per-phase limits; default 1), RESCUE_SCENARIO_MKBACKUP (the backup command run
# in the source; default the scenario's backup_cmd; for debugging the harness),
# RESCUE_SCENARIO_TOOL=rear (the same scenario with Debian's rear 2.7 instead of
# rescue: `rear -v mkbackup` to an ISO holding the backup, unattended `rear
# recover` from it; ISO-backup scenarios only; bench/recover-rear.sh).
set -euo pipefail
# The whole script is one compound command: bash parses it before running, so
# editing this file while a scenario runs cannot break that run.
{
here=$(cd "$(dirname "$0")" && pwd)
die() { echo "run-scenario: ERROR: $*" >&2; exit 2; }
log() { echo "run-scenario: $*" >&2; }

rescue=""
while (($#)); do
  case "$1" in
    --rescue) rescue=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) break ;;
  esac
done
(($# == 2)) || die "usage: run-scenario.sh [--rescue BIN] SCENARIO WORKDIR"
scenario=$1 W=$2
[ "$(id -u)" = 0 ] || die "must run as root"
for t in qemu-system-x86_64 qemu-img mkfs.ext4 timeout; do
  command -v "$t" >/dev/null || die "$t is missing: run scripts/install-deps.sh"
done
scale=${RESCUE_SCENARIO_TIMEOUT_SCALE:-1}

# --- the scenarios -----------------------------------------------------------
# kind: the source system (source/layout/KIND.sh); data_dirs: where the test
# data goes; targets: the blank disks of the recovery (SIZE:virtio|virtio4k|sata|nvme,
# virtio4k: 4096-byte logical and physical sectors, a 4Kn disk;
# default: the source's sizes, virtio); usb_label: a USB stick holding the backup;
# packages: Debian packages installed in the source before the backup
# (fetch-debs.sh; the source has no network). Optional: net: the rescue image's
# [image] network; nic: qemu network arguments for the source and recovery VMs
# (default none); source_setup: shell lines the source job runs before the test
# data; scenario_host_start/scenario_host_stop: functions run on the host before
# the source phase and at exit (daemons the guests talk to); recover_stick: the
# label of a small USB stick attached at recovery only, holding what the
# function recover_stick_files DIR writes; recover_conf: more [recover] keys;
# target_nic: qemu network arguments for the recovery and the recovered
# system's boot (default: nic at recovery, none after); qemu_ns: a command
# prefix qemu runs under (ip netns exec NS); recover_expect: lines the
# recovery's console must show; image_check: a function run on the host once
# the source phase made the ISO ($iso), which prints what it found and returns
# non-zero to fail the scenario; verify_probe: a function run in the background
# while the recovered system boots, which writes PASS or why it failed to
# W/probe-result; backup_cmd: the backup command the source job runs after
# the test data and its state (default "rescue -v mkbackup"; it may record
# the state again, /var/lib/rescue-test/state, before its last backup).
usb_label="" targets=() check="" packages="" net=none nic=() source_setup="" recover_stick="" recover_conf="" secure_boot=0
target_nic=() qemu_ns=() recover_expect=() backup_cmd="rescue -v mkbackup"
backup_iso='[backup]
url = "iso:///backup"
'
# shellcheck disable=SC2016 # the checks run in the recovered system, not here
suite=bookworm base=$scenario
case "$scenario" in
  trixie-*) suite=trixie base=${scenario#trixie-} ;;
esac
case "$base" in
  bios-ext4)
    kind=bios-ext4 data_dirs="/srv/rescue-data" config=$backup_iso ;;
  uefi-lvm-xfs|uefi-lvm-xfs-to-4kn)
    kind=uefi-lvm-xfs data_dirs="/srv/rescue-data /home/alice" usb_label=RESCUEBAK
    sb_check=""
    if [ "$scenario" = uefi-lvm-xfs ]; then
      # Recovery and the recovered system's boot run under firmware that
      # enforces Secure Boot with Microsoft's keys (the source installs as usual).
      secure_boot=1
      sb_check='sb=$(od -An -t u1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c | awk "{print \$5}")
[ "$sb" = 1 ] || { echo "Secure Boot is not on in the recovered system (SecureBoot=$sb)"; exit 1; }
'
    fi
    check=$sb_check'lvs --noheadings -o lv_name srcvg | grep -qw root || { echo "no LV srcvg/root"; exit 1; }
[ "$(findmnt -n -o FSTYPE /)" = xfs ] || { echo "/ is not xfs"; exit 1; }
[ "$(findmnt -n -o FSTYPE /home)" = xfs ] || { echo "/home is not xfs"; exit 1; }
findmnt -n /boot/efi >/dev/null || { echo "/boot/efi is not mounted"; exit 1; }
efibootmgr -v
# Booted as the source was: the firmware entry rescue wrote starts the signed shim.
cur=$(efibootmgr | sed -n "s/^BootCurrent: //p")
efibootmgr -v | grep "^Boot$cur" | grep -qi "EFI.debian.shimx64.efi" || { echo "booted entry $cur does not start \\EFI\\debian\\shimx64.efi"; exit 1; }
[ -f /boot/efi/EFI/debian/shimx64.efi ] && [ -f /boot/efi/EFI/debian/grubx64.efi ] || { echo "shim or GRUB missing from the ESP"; exit 1; }
[ "$(efibootmgr | grep -Ec "^Boot[0-9A-F]{4}\\*? debian")" = 1 ] || { echo "not exactly one debian boot entry"; exit 1; }'
    if [ "$base" = uefi-lvm-xfs-to-4kn ]; then
      # The source's 256 MiB FAT32 ESP has too few 4 KiB clusters for FAT32 on
      # 4Kn: the plan grows it to 260 MiB, and the firmware reads a FAT32.
      targets=(6G:virtio4k)
      check+='
esp=$(findmnt -n -o SOURCE /boot/efi)
disk=/dev/$(lsblk -n -o PKNAME "$esp" | head -n1)
[ "$(blockdev --getss "$disk")" = 4096 ] || { echo "$disk does not have 4096-byte sectors"; exit 1; }
# Read-only; it exits 1 on the mounted ESP (the dirty bit the kernel sets while mounted).
fsck=$(fsck.fat -n -v "$esp" 2>&1 || true)
clusters=$(echo "$fsck" | sed -n "s/^ *\([0-9]*\) data clusters.*/\1/p")
[ "${clusters:-0}" -ge 65525 ] && ! echo "$fsck" | grep -qi "less than the required minimum" || { echo "$fsck"; echo "the ESP $esp is no valid FAT32 ($clusters clusters)"; exit 1; }
echo "ESP $esp on $disk (4096-byte sectors): FAT32 with $clusters clusters, $(blockdev --getsize64 "$esp") bytes"'
    fi
    # The USB stick is attached while mkbackup runs; mkbackup leaves the disk
    # behind usb:// out of the layout (see docs/testing.md, findings).
    config='[backup]
url = "usb://RESCUEBAK"
' ;;
  bios-md-raid1)
    kind=bios-md-raid1 data_dirs="/srv/rescue-data" config=$backup_iso
    check='grep -A1 "^md" /proc/mdstat | grep -q "\[UU\]" || { cat /proc/mdstat; echo "no healthy RAID1"; exit 1; }
[ "$(findmnt -n -o SOURCE / | cut -c1-7)" = /dev/md ] || { echo "/ is not on MD"; exit 1; }
# GRUB on both members: each member disk boots alone.
n=0
for m in $(sed -n "s/^md[0-9]* : active raid1 //p" /proc/mdstat); do
  disk=$(basename "$(readlink -f "/sys/class/block/${m%%\[*}/..")")
  head -c 512 "/dev/$disk" | grep -aq GRUB || { echo "no GRUB in the boot sector of $disk"; exit 1; }
  n=$((n + 1))
done
[ "$n" = 2 ] || { cat /proc/mdstat; echo "expected 2 RAID1 members, found $n"; exit 1; }
echo "GRUB in the boot sector of both RAID1 members"' ;;
  btrfs-subvol)
    # /srv/nested: a subvolume inside @ that is not mounted (as /var/lib/machines
    # or docker's are), holding test data; /srv/nested-snap: a read-only snapshot
    # of it, which the backup leaves out (an empty directory comes back).
    kind=btrfs-subvol data_dirs="/srv/rescue-data /home/alice /srv/nested/data" config=$backup_iso
    source_setup='btrfs subvolume create /srv/nested && echo snap >/srv/nested/in-snapshot
btrfs subvolume snapshot -r /srv/nested /srv/nested-snap'
    check='btrfs subvolume get-default / | grep -q "path @$" || { btrfs subvolume get-default /; echo "default subvolume is not @"; exit 1; }
findmnt -n -o OPTIONS /home | grep -q "subvol=/@home" || { echo "/home is not subvolume @home"; exit 1; }
btrfs subvolume show /srv/nested | grep -q "^@/srv/nested$" || { btrfs subvolume show /srv/nested; echo "/srv/nested is not the subvolume @/srv/nested"; exit 1; }
[ "$(cat /srv/nested/in-snapshot)" = snap ] || { echo "/srv/nested/in-snapshot did not come back"; exit 1; }
[ -d /srv/nested-snap ] && [ -z "$(ls -A /srv/nested-snap)" ] || { ls -la /srv/nested-snap; echo "/srv/nested-snap should be an empty directory"; exit 1; }' ;;
  luks2-lvm)
    kind=luks2-lvm data_dirs="/srv/rescue-data" config=$backup_iso
    # The key is not in the rescue image: the recovery reads it from a USB
    # stick labelled LUKSKEY, attached then only (the layout's test key).
    recover_stick=LUKSKEY
    # shellcheck source=/dev/null
    recover_stick_files() { (. "$here/source/layout/luks2-lvm.sh" && printf '%s' "$LUKS_KEY") >"$1/cryptroot.key"; }
    recover_conf='luks-keys = { cryptroot = "usb://LUKSKEY/cryptroot.key" }
'
    check='src=$(findmnt -n -o SOURCE /)
[ "$(lvs --noheadings -o vg_name,lv_name "$src" | xargs)" = "luksvg root" ] || { echo "/ ($src) is not the LV luksvg/root"; exit 1; }
[ "$(lsblk -n -r -s -o NAME,TYPE "$src" | grep " crypt$" | cut -d" " -f1)" = cryptroot ] || { lsblk -s "$src"; echo "/ is not on the dm-crypt device cryptroot"; exit 1; }
cryptsetup status cryptroot | grep -Eq "^ *type: *LUKS2$" || { cryptsetup status cryptroot; echo "cryptroot is not LUKS2"; exit 1; }
dev=$(cryptsetup status cryptroot | sed -n "s/^ *device: *//p")
want=$(sed -n "s/^cryptroot UUID=\([^ ]*\) .*/\1/p" /etc/crypttab)
got=$(cryptsetup luksUUID "$dev")
[ -n "$want" ] && [ "$got" = "$want" ] || { echo "the LUKS UUID of $dev is $got, the recorded one (crypttab) $want"; exit 1; }
echo "/ on luksvg/root on LUKS2 $dev uuid $got"' ;;
  bios-mbr-logical)
    # Issue 15: a primary ext2 /boot needs mkfs.ext2, which the image once lacked.
    kind=bios-mbr-logical data_dirs="/srv/rescue-data /var/rescue-data" config=$backup_iso
    check='[ "$(findmnt -n -o FSTYPE /boot)" = ext2 ] || { echo "/boot is not ext2"; exit 1; }
[ "$(findmnt -n -o FSTYPE /var)" = xfs ] || { echo "/var is not xfs"; exit 1; }
[ "$(blkid -s LABEL -o value "$(findmnt -n -o SOURCE /var)")" = var ] || { echo "/var is not labelled var"; exit 1; }
disk=$(basename "$(readlink -f "/sys/class/block/$(basename "$(findmnt -n -o SOURCE /)")/..")")
sfdisk -d "/dev/$disk" | grep -q "^label: dos" || { sfdisk -d "/dev/$disk"; echo "not an MBR disk"; exit 1; }
[ "$(sfdisk -d "/dev/$disk" | grep -c "^/dev/")" = 5 ] || { sfdisk -d "/dev/$disk"; echo "expected 5 partitions (1 primary, extended, 3 logical)"; exit 1; }
swapon --show=NAME --noheadings | grep -q . || { echo "no swap active"; exit 1; }
echo "MBR with logical partitions, ext2 /boot, xfs /var by LABEL, swap"' ;;
  bios-ext4-to-sata-larger)
    kind=bios-ext4 data_dirs="/srv/rescue-data" config=$backup_iso targets=(8G:sata) ;;
  bios-ext4-to-nvme-smaller)
    kind=bios-ext4 data_dirs="/srv/rescue-data" config=$backup_iso targets=(5G:nvme) ;;
  bios-ext4-bacula)
    # Issue 7: the rescue system restores from a Bacula 9.6 director on the
    # host's 127.0.0.1 (tests/bacula/daemons.sh: director, storage daemon, sqlite
    # catalog in WORKDIR/bacula) through qemu's user-mode network, which stays
    # inside qemu: the guest reaches the director and the storage daemon at
    # 10.0.2.2 (slirp's name for the host's 127.0.0.1; the director's Storage
    # has FD Storage Address = 10.0.2.2), the director reaches the guest's file
    # daemon (port 9102) through a port forwarded on 127.0.0.1. Free ports, so
    # tests/bacula.rs and other runs can go at the same time. Bacula restores
    # modification times in whole seconds: the state compares seconds.
    kind=bios-ext4 data_dirs="/srv/rescue-data" packages="bacula-fd bacula-console" net=dhcp
    mapfile -t bports < <("$here/../bacula/daemons.sh" free-ports 3)
    nic=(-nic "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:${bports[2]}-:9102")
    config="[backup]
method = \"bacula\"
[backup.server]
address = \"10.0.2.2\"
port = ${bports[0]}
director-name = \"sc-dir\"
console-name = \"sc-console\"
client = \"rescue-src-fd\"
fileset = \"sc-system\"
backup-job = \"sc-backup\"
restore-job = \"sc-restore\"
"
    # In the source: the network as slirp's DHCP would give it, the console
    # password, and a file daemon config for this director (listening on every
    # address: the forwarded port arrives on eth0). mkrescue copies both.
    source_setup="ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
mkdir -p /etc/rescue /var/lib/rescue-test
touch /var/lib/rescue-test/mtime-seconds
install -m 0600 /dev/null /etc/rescue/director.password
echo sc-console-pw >/etc/rescue/director.password
cat >/etc/bacula/bacula-fd.conf <<'FD'
Director {
  Name = sc-dir
  Password = \"sc-fd-pw\"
}
FileDaemon {
  Name = rescue-src-fd
  FDport = 9102
  WorkingDirectory = /var/lib/bacula
  Pid Directory = /run/bacula
  Maximum Concurrent Jobs = 5
}
Messages {
  Name = Standard
  director = sc-dir = all, !skipped, !restored
}
FD
systemctl restart bacula-fd
systemctl is-active bacula-fd"
    scenario_host_start() {
      rm -rf "$W/bacula"; mkdir -p "$W/bacula"
      local job
      for job in "sc-backup Backup" "sc-restore Restore"; do
        # shellcheck disable=SC2086 # name and type
        printf 'Job {\n  Name = %s\n  Type = %s\n  Level = Full\n  Client = rescue-src-fd\n  FileSet = sc-system\n  Storage = File1\n  Pool = File\n  Messages = Standard\n  Where = /mnt/local\n}\n' $job
      done >"$W/bacula/dir-resources.conf"
      cat >>"$W/bacula/dir-resources.conf" <<RES
Client {
  Name = rescue-src-fd
  Address = 127.0.0.1
  FDPort = ${bports[2]}
  Catalog = MyCatalog
  Password = "sc-fd-pw"
}
FileSet {
  Name = sc-system
  Include {
    Options {
      aclsupport = yes
      xattrsupport = yes
      sparse = yes
    }
    File = /
  }
}
RES
      BACULA_DIR_PORT=${bports[0]} BACULA_SD_PORT=${bports[1]} BACULA_DIRECTOR=sc-dir BACULA_CONSOLE=sc-console \
        BACULA_CONSOLE_PASSWORD=sc-console-pw BACULA_DIRECTOR_PASSWORD=sc-director-pw BACULA_FD_STORAGE_ADDRESS=10.0.2.2 \
        "$here/../bacula/daemons.sh" start "$W/bacula" || fail bacula "starting the Bacula director and storage daemon failed (see above)" /dev/null
      log "Bacula director on 127.0.0.1:${bports[0]}, storage daemon :${bports[1]}, the guest's file daemon forwarded from :${bports[2]}"
    }
    # shellcheck disable=SC2317 # called by the EXIT trap
    scenario_host_stop() { "$here/../bacula/daemons.sh" stop "$W/bacula"; } ;;
  bios-ext4-s3)
    # Issue 17: the backup goes to S3 object storage, a single-node Ceph RADOS
    # Gateway on the host's 127.0.0.1:7480 (tests/s3/ceph-rgw.sh, state in
    # WORKDIR/rgw, stopped at exit), which the guests reach through qemu's
    # user-mode network at 10.0.2.2:7480. The source writes with the backup
    # user's key; the rescue image carries only the read-only subuser's key
    # (image-credentials-file). Once the ISO is made, the host checks it: the
    # write key is nowhere in it, and the key it holds lists the backups but
    # is refused writing and deleting one.
    kind=bios-ext4 data_dirs="/srv/rescue-data" net=dhcp
    nic=(-nic "user,model=virtio-net-pci")
    s3_prefix=vm-$$
    config="[backup]
url = \"s3://rescue-plain/$s3_prefix\"
[backup.s3]
endpoint = \"http://10.0.2.2:7480\"
path-style = true
credentials-file = \"/etc/rescue/s3-write.toml\"
image-credentials-file = \"/etc/rescue/s3-read.toml\"
"
    scenario_host_start() {
      "$here/../s3/ceph-rgw.sh" start "$W/rgw" 7480 >/dev/null || fail rgw "starting Ceph RGW failed (see above; logs in $W/rgw/log)" /dev/null
      # shellcheck source=/dev/null
      . "$W/rgw/s3.env"
      # Both keys reach the source through the job script (heredocs: set -x
      # does not print them); mkrescue copies only the read-only one.
      source_setup="ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
mkdir -p /etc/rescue
install -m 0600 /dev/null /etc/rescue/s3-write.toml
install -m 0600 /dev/null /etc/rescue/s3-read.toml
cat >/etc/rescue/s3-write.toml <<'CRED'
$(cat "$W/rgw/write.cred")
CRED
cat >/etc/rescue/s3-read.toml <<'CRED'
$(cat "$W/rgw/read.cred")
CRED"
      log "Ceph RGW on 127.0.0.1:7480 (10.0.2.2:7480 from the guests), backups under s3://rescue-plain/$s3_prefix"
    }
    # shellcheck disable=SC2317 # called by the EXIT trap
    scenario_host_stop() { "$here/../s3/ceph-rgw.sh" stop "$W/rgw"; }
    # What the rescue ISO holds: no trace of the write secret, and a key that
    # reads the backups but is refused writing and deleting.
    # shellcheck disable=SC2317 # called after the source phase
    image_check() {
      local why x="$W/iso-check" aws key obj
      why=$(unpack_image "$x") || true
      if [ -z "$why" ] && grep -rqaF -- "$S3_WRITE_SECRET" "$x/root" "$x/initrd.cpio" "$iso"; then why="the write secret is in the rescue image"; fi
      if [ -z "$why" ] && grep -rqaF -- "$S3_WRITE_KEY" "$x/root" "$iso"; then why="the write key id $S3_WRITE_KEY is in the rescue image"; fi
      key=$x/root/etc/rescue/s3-read-credentials.toml
      if [ -z "$why" ] && ! grep -qF "$S3_READ_KEY" "$key" 2>/dev/null; then why="the image holds no read-only key at /etc/rescue/s3-read-credentials.toml"; fi
      if [ -z "$why" ]; then
        aws=(env AWS_ACCESS_KEY_ID="$(sed -n 's/^access-key-id = "\(.*\)"$/\1/p' "$key")"
             AWS_SECRET_ACCESS_KEY="$(sed -n 's/^secret-access-key = "\(.*\)"$/\1/p' "$key")"
             AWS_DEFAULT_REGION=us-east-1 /usr/bin/aws --endpoint-url "$S3_ENDPOINT")
        obj=$("${aws[@]}" s3api list-objects-v2 --bucket rescue-plain --prefix "$s3_prefix/" --query 'Contents[0].Key' --output text) || why="the image's key cannot list the backups"
        case "$obj" in "$s3_prefix"/*.tar.zst*) ;; *) [ -n "$why" ] || why="no backup under s3://rescue-plain/$s3_prefix/ (listed '$obj')" ;; esac
      fi
      if [ -z "$why" ]; then
        # Debian's awscli 1.x crashes parsing RGW's refusals of PUT and
        # DELETE ("argument of type 'NoneType' is not iterable"): what counts
        # is that no object appears and the backup is still there.
        echo probe >"$x/probe.txt"
        if "${aws[@]}" s3api put-object --bucket rescue-plain --key "$s3_prefix/written-by-the-image" --body "$x/probe.txt" 2>"$x/put.err"; then
          why="the image's key could write s3://rescue-plain/$s3_prefix/written-by-the-image"
        elif AWS_ACCESS_KEY_ID=$S3_WRITE_KEY AWS_SECRET_ACCESS_KEY=$S3_WRITE_SECRET AWS_DEFAULT_REGION=us-east-1 \
          /usr/bin/aws --endpoint-url "$S3_ENDPOINT" s3api head-object --bucket rescue-plain --key "$s3_prefix/written-by-the-image" >/dev/null 2>&1; then
          why="the image's key wrote s3://rescue-plain/$s3_prefix/written-by-the-image although the PUT reported a failure: $(cat "$x/put.err")"
        fi
      fi
      if [ -z "$why" ]; then
        if "${aws[@]}" s3api delete-object --bucket rescue-plain --key "$obj" 2>"$x/delete.err"; then
          why="the image's key could delete $obj"
        fi
      fi
      if [ -z "$why" ]; then
        AWS_ACCESS_KEY_ID=$S3_WRITE_KEY AWS_SECRET_ACCESS_KEY=$S3_WRITE_SECRET AWS_DEFAULT_REGION=us-east-1 \
          /usr/bin/aws --endpoint-url "$S3_ENDPOINT" s3api head-object --bucket rescue-plain --key "$obj" >/dev/null || why="$obj is gone after the refused delete"
      fi
      rm -rf "$x"
      [ -z "$why" ] || { echo "$why"; return 1; }
      echo "the image holds the read-only key $S3_READ_KEY only: it lists $obj, writing and deleting are refused (no object appears, the backup stays)"
    } ;;
  bios-ext4-bond-vlan-nfs)
    # Issue 19. Everything runs in a network namespace made here (removed at
    # exit): a bridge with tap devices, documentation addresses, no DHCP, no
    # route out. The host kernel has no VLAN or bond link types: the bridge
    # carries the tagged frames, the guests tag them. The source has a bond
    # (active-backup) of two virtio NICs, VLAN 42 on it and 198.51.100.10/24
    # (ifupdown), and a web service; its backup goes to an NFS server in a
    # small guest on VLAN 42 (198.51.100.2), which also routes between the
    # VLAN and the namespace's untagged 192.0.2.0/24 (the namespace cannot tag).
    # The target has e1000e NICs with other MACs: the rescue system must bring
    # the recorded bond, VLAN and address up on them (no DHCP exists) and
    # restore over NFS; the recovered system must come up on 198.51.100.10,
    # which the namespace pings and whose service it reaches.
    kind=bios-ext4 data_dirs="/srv/rescue-data" packages="nfs-common ifupdown ifenslave" net=recorded
    ns=rescue-sc-$$
    qemu_ns=(ip netns exec "$ns")
    tap() { echo -netdev "tap,id=$1,ifname=$1,script=no,downscript=no" -device "$2,netdev=$1,mac=$3"; }
    # shellcheck disable=SC2207 # words of qemu arguments
    nic=($(tap tsrc0 virtio-net-pci 52:54:00:19:01:01) $(tap tsrc1 virtio-net-pci 52:54:00:19:01:02))
    # shellcheck disable=SC2207
    target_nic=($(tap ttgt0 e1000e 52:54:00:19:02:01) $(tap ttgt1 e1000e 52:54:00:19:02:02))
    config='[backup]
url = "nfs://198.51.100.2/srv/backup"
'
    recover_expect=("RESCUE-NET bond bond0 up with" "RESCUE-NET vlan bond0.42 id 42 on bond0" "RESCUE-NET bond0.42 198.51.100.10/24 recorded")
    source_setup='cat >/etc/network/interfaces <<"NET"
auto lo
iface lo inet loopback

auto bond0
iface bond0 inet manual
    bond-slaves eth0 eth1
    bond-mode active-backup
    bond-miimon 100
    bond-primary eth0

auto bond0.42
iface bond0.42 inet static
    address 198.51.100.10/24
    gateway 198.51.100.2
NET
mkdir -p /srv/www
echo "hello from rescue-src" >/srv/www/hello.txt
cat >/etc/systemd/system/scenario-web.service <<"UNIT"
[Unit]
Description=The scenario web service (busybox httpd on port 80)
[Service]
ExecStart=/bin/busybox httpd -f -p 80 -h /srv/www
[Install]
WantedBy=multi-user.target
UNIT
systemctl enable --now scenario-web.service
systemctl restart networking
ip -d -br addr
# The NFS server guest boots at the same time (its network comes up last).
for i in $(seq 1800); do busybox ping -c 1 -W 1 198.51.100.2 >/dev/null && break; sleep 1; done
busybox ping -c 1 -W 2 198.51.100.2 || { echo "the NFS server 198.51.100.2 is not reachable over bond0.42"; exit 1; }'
    check='for i in $(seq 90); do ip -4 -o addr show dev bond0.42 2>/dev/null | grep -q " 198.51.100.10/24 " && break; sleep 1; done
ip -4 -o addr show dev bond0.42 | grep -q " 198.51.100.10/24 " || { ip -br addr; echo "bond0.42 did not come up with 198.51.100.10/24"; exit 1; }
for m in $(cat /sys/class/net/bond0/bonding/slaves); do
  drv=$(basename "$(readlink -f "/sys/class/net/$m/device/driver")")
  [ "$drv" = e1000e ] || { echo "bond0 member $m has driver $drv, not e1000e"; exit 1; }
done
[ "$(wc -w </sys/class/net/bond0/bonding/slaves)" = 2 ] || { cat /sys/class/net/bond0/bonding/slaves; echo "bond0 does not have two members"; exit 1; }
# The host pings this system and fetches from its service: wait until both arrived.
snmp() { awk -v p="$1:" -v f="$2" '"'"'$1 == p { if (!h) { for (i = 2; i <= NF; i++) if ($i == f) c = i; h = 1 } else print $c }'"'"' /proc/net/snmp; }
echos=$(snmp Icmp InEchos) opens=$(snmp Tcp PassiveOpens)
echo "RESCUE-NETCHECK ready bond0 $(cat /sys/class/net/bond0/bonding/slaves)" >/dev/ttyS0
for i in $(seq 300); do
  [ "$(snmp Icmp InEchos)" -gt "$echos" ] && [ "$(snmp Tcp PassiveOpens)" -gt "$opens" ] && break
  sleep 1
done
[ "$(snmp Icmp InEchos)" -gt "$echos" ] || { echo "no ping arrived from the namespace"; exit 1; }
[ "$(snmp Tcp PassiveOpens)" -gt "$opens" ] || { echo "no connection to the service arrived from the namespace"; exit 1; }
echo "198.51.100.10/24 on bond0.42 over $(cat /sys/class/net/bond0/bonding/slaves) (e1000e): pinged and served"'
    scenario_host_start() {
      command -v busybox >/dev/null || die "busybox is missing: apt-get install busybox-static"
      command -v curl >/dev/null || die "curl is missing: apt-get install curl"
      ip netns add "$ns" || fail network "cannot create the network namespace $ns" /dev/null
      ip -n "$ns" link set lo up
      ip -n "$ns" link add br0 type bridge
      local t
      for t in tsrv0 tsrc0 tsrc1 ttgt0 ttgt1; do
        ip -n "$ns" tuntap add dev "$t" mode tap
        ip -n "$ns" link set "$t" master br0 up
      done
      ip -n "$ns" link set br0 up
      ip -n "$ns" addr add 192.0.2.1/24 dev br0
      ip -n "$ns" route add 198.51.100.0/24 via 192.0.2.2
      # The NFS server guest: the cached test guest, nfs-kernel-server installed at boot.
      "$here/build-guest.sh" >/dev/null || fail nfs-server "building the test guest failed (see above)" /dev/null
      srv=$W/nfs-server
      rm -rf "$srv"; mkdir -p "$srv"
      "$here/fetch-debs.sh" "$srv/debs" nfs-kernel-server >/dev/null || fail nfs-server "fetching nfs-kernel-server failed (see above)" /dev/null
      cp "$here/source/install-debs" "$srv/"
      cat >"$srv/run.sh" <<'SRV'
set -euxo pipefail
/job/install-debs /job/debs
mkdir -p /srv/backup
echo "/srv/backup 198.51.100.0/24(rw,no_root_squash,no_subtree_check,insecure)" >/etc/exports
systemctl restart nfs-server
exportfs -rav
# The network last: who reaches 198.51.100.2 finds the export ready.
modprobe 8021q
ip link set eth0 up
ip addr add 192.0.2.2/24 dev eth0
ip link add link eth0 name eth0.42 type vlan id 42
ip link set eth0.42 up
ip addr add 198.51.100.2/24 dev eth0.42
sysctl -w net.ipv4.ip_forward=1
set +x
until [ -e /job/stop ]; do sleep 1; done
SRV
      ip netns exec "$ns" "$here/run-guest.sh" --no-rescue --mem 1024 --smp 1 --timeout "$(awk -v s="$scale" 'BEGIN { printf "%d", 7200 * s }')" \
        --qemu-arg -netdev --qemu-arg "tap,id=n0,ifname=tsrv0,script=no,downscript=no" \
        --qemu-arg -device --qemu-arg "virtio-net-pci,netdev=n0,mac=52:54:00:19:00:02" "$srv" >"$W/nfs-server.log" 2>&1 &
      srv_pid=$!
      # The source boots meanwhile and waits for the server (source_setup).
      log "network namespace $ns: bridge br0 192.0.2.1/24; NFS server guest 192.0.2.2 and 198.51.100.2 (VLAN 42) booting (log $W/nfs-server.log)"
    }
    # shellcheck disable=SC2317 # called by the EXIT trap
    scenario_host_stop() {
      if [ -n "${srv_pid:-}" ]; then
        touch "$srv/stop"
        local i
        for ((i = 0; i < 60; i++)); do kill -0 "$srv_pid" 2>/dev/null || break; sleep 1; done
        kill "$srv_pid" 2>/dev/null || true
        wait "$srv_pid" 2>/dev/null || true
      fi
      if ip netns list | grep -qw "$ns"; then
        local p
        for p in $(ip netns pids "$ns"); do kill "$p" 2>/dev/null || true; done
        ip netns del "$ns"
      fi
    }
    # shellcheck disable=SC2317 # run in the background during the verify phase
    verify_probe() {
      until grep -aq "RESCUE-NETCHECK ready" "$W/verify.serial.log" 2>/dev/null; do sleep 1; done
      local why=""
      ip netns exec "$ns" busybox ping -c 3 -W 5 198.51.100.10 >"$W/probe.log" 2>&1 || why="the namespace cannot ping 198.51.100.10"
      if [ -z "$why" ]; then
        got=$(ip netns exec "$ns" curl -sS --max-time 20 http://198.51.100.10/hello.txt 2>>"$W/probe.log") || true
        [ "$got" = "hello from rescue-src" ] || why="the service on 198.51.100.10:80 answered '$got', not 'hello from rescue-src'"
      fi
      echo "${why:-PASS}" >"$W/probe-result"
    } ;;
  bios-ext4-incr-age)
    # Issue 18: recovery from an encrypted incremental chain. The source backs
    # up to a USB stick, encrypted to an age recipient made here for this run:
    # a full backup, changes, an incremental, more changes, and the last
    # incremental with the rescue image (backup_cmd). The state recorded
    # before the last one is what the recovered system must show, so a
    # deletion or rename the restore does not apply fails the verify. The
    # identity is only on a second stick (AGEKEY), attached at recovery; the
    # host checks that the ISO and its initramfs do not hold it.
    command -v age-keygen >/dev/null || die "age-keygen is missing: apt-get install age"
    for t in xorriso zstd cpio; do command -v "$t" >/dev/null || die "$t is missing: run scripts/install-deps.sh"; done
    kind=bios-ext4 data_dirs="/srv/rescue-data" usb_label=RESCUEBAK
    age_identity=$(age-keygen 2>/dev/null)
    age_recipient=$(printf '%s\n' "$age_identity" | age-keygen -y)
    age_secret=$(printf '%s\n' "$age_identity" | grep '^AGE-SECRET-KEY-1')
    config="[backup]
url = \"usb://RESCUEBAK\"
[backup.encrypt]
recipients = [\"$age_recipient\"]
"
    recover_stick=AGEKEY
    # shellcheck disable=SC2317 # called when the stick is made
    recover_stick_files() { printf '%s\n' "$age_identity" >"$1/backup-key.txt"; }
    recover_conf='age-identity = "usb://AGEKEY/backup-key.txt"
'
    # Three archives restored in order, the last an encrypted incremental.
    recover_expect=(".tar.zst.age into /mnt/local (link 3 of 3 of the chain)")
    backup_cmd=scenario-chain-backup
    source_setup='cat >/usr/local/sbin/scenario-chain-backup <<"CHAIN"
#!/bin/bash
# The chain: full, incremental, incremental (the last with the rescue image).
set -euxo pipefail
d=/srv/rescue-data
# 1 = completed with warnings, 4 = a file changed while read (logs of the
# live system): the archive is complete either way.
backup() { local rc=0; "$@" || rc=$?; [ "$rc" -le 1 ] || [ "$rc" = 4 ] || { echo "$* exited with $rc"; exit 1; }; }
rescue -v savelayout --disk /dev/vda
backup rescue -v mkbackuponly --level full
# Round 1: add, modify, delete (a file, a directory), rename (a file, a
# directory), a file replaced by a directory, a change that keeps the mtime.
echo added >"$d/added-file"
mkdir -p "$d/added-dir/sub" && echo inside >"$d/added-dir/sub/file"
echo modified >>"$d/tree/dir1/sub1/file1.txt"
rm "$d/tree/dir2/sub2/file2.txt"
rm -r "$d/tree/dir6"
mv "$d/tree/dir3/sub0/file3.txt" "$d/tree/dir3/sub0/file3-renamed.txt"
mv "$d/tree/dir4" "$d/tree/dir4-renamed"
rm "$d/tree/dir5/sub2/file5.txt" && mkdir "$d/tree/dir5/sub2/file5.txt" && echo now-a-dir >"$d/tree/dir5/sub2/file5.txt/inside"
f=$d/random-16M.bin m=$(stat -c %y "$d/random-16M.bin")
printf "same size, same mtime" | dd of="$f" bs=1 seek=4096 conv=notrunc status=none
touch -d "$m" "$f"
backup rescue -v mkbackuponly --level incremental
# Round 2: delete what round 1 added, a directory replaced by a file, a
# rename inside the renamed directory, modify, delete, add.
rm "$d/added-file"
rm -r "$d/added-dir" && echo now-a-file >"$d/added-dir"
mv "$d/tree/dir4-renamed/sub1" "$d/tree/dir4-renamed/sub1-moved"
echo again >>"$d/tree/dir1/sub1/file1.txt"
rm "$d/tree/dir0/sub0/file21.txt"
echo round-2 >"$d/tree/dir0/added-in-round-2"
rescue-scenario-state >/var/lib/rescue-test/state
exec rescue -v mkbackup --level incremental
CHAIN
chmod 0755 /usr/local/sbin/scenario-chain-backup'
    # shellcheck disable=SC2317 # called after the source phase
    image_check() {
      local x="$W/iso-check" why
      why=$(unpack_image "$x") || true
      # This run's identity, and any age identity: AGE-SECRET-KEY-1 and 58
      # Bech32 characters (rescue's binary holds the bare prefix, to refuse keys).
      if [ -z "$why" ] && grep -rqaF -- "$age_secret" "$x/root" "$x/initrd.cpio" "$iso"; then why="the age identity of this run is in the rescue image"; fi
      if [ -z "$why" ] && grep -rqaE -- 'AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}' "$x/root" "$x/initrd.cpio" "$iso"; then
        why="an age identity (AGE-SECRET-KEY-1...) is in the rescue image"
      fi
      if [ -z "$why" ] && ! grep -qF "usb://AGEKEY/backup-key.txt" "$x/root/etc/rescue/rescue.toml"; then
        why="the image's /etc/rescue/rescue.toml does not read the identity from usb://AGEKEY/backup-key.txt"
      fi
      rm -rf "$x"
      [ -z "$why" ] || { echo "$why"; return 1; }
      echo "no age identity in the ISO or its initramfs; the image reads the identity from usb://AGEKEY/backup-key.txt"
    } ;;
  bios-ext4-bacula-server)
    # Issue 23: the backup server itself. The source runs a Bacula director
    # (sqlite catalog), storage daemon (file volumes in /srv/bacula/volumes on
    # its root filesystem) and file daemon (source/bacula-server setup: two
    # jobs of /srv/bacula-data, the job list and a file's checksum recorded,
    # then that file overwritten). rescue backs it up to a USB disk with the
    # catalog dump of docs/recover.md in [hooks]; the recovered system starts
    # the daemons, must list the same jobs and restore the file from the
    # pre-disaster volume with its recorded checksum (bacula-server check).
    kind=bios-ext4 data_dirs="/srv/rescue-data" usb_label=RESCUEBAK
    packages="bacula-director bacula-director-sqlite3 bacula-sd bacula-fd bacula-console sqlite3"
    config="[backup]
url = \"usb://RESCUEBAK\"
[hooks]
pre-backup = \"sqlite3 /var/lib/bacula/bacula.db '.backup /var/lib/bacula/bacula.db.dump'\"
post-backup = \"rm -f /var/lib/bacula/bacula.db.dump\"
post-recover = \"cp /var/lib/bacula/bacula.db.dump /var/lib/bacula/bacula.db && chown bacula:bacula /var/lib/bacula/bacula.db\"
"
    source_setup="cat >/usr/local/sbin/rescue-scenario-bacula <<'BACULA'
$(cat "$here/source/bacula-server")
BACULA
chmod 0755 /usr/local/sbin/rescue-scenario-bacula
rescue-scenario-bacula setup"
    check='/usr/local/sbin/rescue-scenario-bacula check' ;;
  *) die "unknown scenario '$scenario' (bios-ext4, uefi-lvm-xfs, bios-md-raid1, luks2-lvm, btrfs-subvol, bios-ext4-to-sata-larger, bios-ext4-to-nvme-smaller, bios-ext4-bacula, bios-ext4-s3, uefi-lvm-xfs-to-4kn, bios-ext4-bond-vlan-nfs, bios-ext4-incr-age, bios-ext4-bacula-server; each may be prefixed with trixie-)" ;;
esac
config+='[image]
output-url = "file:///job/out"
timeout = 1
default-entry = "unattended"
kernel-cmdline = "rescue.after=poweroff no_timer_check"
network = "'"$net"'"
[recover]
unattended-proceed = true
'"$recover_conf"

# --- the tool under test --------------------------------------------------------
# mkbackup_cmd runs in the source after the test data (prepare.sh first, when
# there is one); iso_name: the ISO it leaves in /job/out; mark_*: console lines of
# the recovery: started, succeeded, failed, about to power off (or reboot).
tool=${RESCUE_SCENARIO_TOOL:-rescue} prepare=""
mkbackup_cmd=${RESCUE_SCENARIO_MKBACKUP:-$backup_cmd} iso_name='rescue-*.iso'
mark_start=RESCUE-RECOVER-START mark_ok=RESCUE-RECOVER-OK mark_failed=RESCUE-RECOVER-FAILED mark_end=RESCUE-POWEROFF
case "$tool" in
  rescue) ;;
  rear)
    [[ $config == "$backup_iso"* ]] || die "RESCUE_SCENARIO_TOOL=rear needs a scenario with the backup in the ISO"
    # What rear needs that the minbase source lacks (ENVIRONMENT.md).
    packages+=" rear file procps less xorriso isolinux syslinux-common"
    # rear wants a nameserver even offline (never used). The tar options make rear
    # keep what the scenario verifies and rescue keeps by default: xattrs, ACLs and
    # sub-second mtimes (GNU tar's default format stores whole seconds). The
    # include is given twice because rear 2.7 writes BACKUP_PROG_OPTIONS unquoted
    # into its rescue system's rescue.conf (prep/NETFS/GNU/Linux/205_...sh) and
    # sources it with nullglob: there the bare *.* matches no file and vanishes,
    # and only the quoted copy survives as --xattrs-include=*.* for the restore.
    # On the backup side the quoted copy is a pattern no xattr has: harmless.
    # MODULES_LOAD: the test source blacklists ata_piix (modprobe.d, TCG boot
    # time) and rear copies /etc/modprobe.d into its rescue system, where udev
    # then never loads the driver of the IDE CD drive the ISO boots from; rear
    # modprobes these by name (its /etc/modules), which the blacklist allows.
    prepare='[ -s /etc/resolv.conf ] || echo "nameserver 10.0.2.3" >/etc/resolv.conf
mkdir -p /etc/rear
cat >/etc/rear/local.conf <<"CONF"
OUTPUT=ISO
OUTPUT_URL=null
BACKUP=NETFS
BACKUP_URL=iso:///backup
ISO_DEFAULT=automatic
ISO_RECOVER_MODE=unattended
USE_SERIAL_CONSOLE=yes
SERIAL_CONSOLE_DEVICES="/dev/ttyS0"
USER_INPUT_TIMEOUT=5
BACKUP_PROG_OPTIONS+=( --xattrs "--xattrs-include=*.*" "--xattrs-include=\"*.*\"" --acls --format=posix )
MODULES_LOAD=( ata_piix sr_mod cdrom isofs )
CONF'
    mkbackup_cmd=${RESCUE_SCENARIO_MKBACKUP:-rear -v mkbackup && cp /var/lib/rear/output/rear-*.iso /job/out/}
    iso_name='rear-*.iso'
    # rear's ISO boot menu (ISO_DEFAULT=automatic) starts `rear recover` with the
    # kernel option `unattended`; on success it sleeps 30 s and reboots (-no-reboot: qemu exits).
    mark_start="Launching 'rear recover' automatically in unattended mode"
    mark_ok="'rear recover' finished successfully" mark_failed="'rear recover' failed" mark_end="Rebooting in 30 seconds" ;;
  *) die "unknown RESCUE_SCENARIO_TOOL '$tool' (rescue, rear)" ;;
esac

[ -r /usr/share/OVMF/OVMF_CODE.fd ] || die "/usr/share/OVMF/OVMF_CODE.fd is missing: apt-get install ovmf"

if [ -z "$rescue" ]; then
  root=$(cd "$here/../.." && pwd)
  (cd "$root" && cargo build --quiet --bin rescue) || die "cargo build failed in $root"
  rescue=${CARGO_TARGET_DIR:-$root/target}/debug/rescue
fi
[ -x "$rescue" ] || die "rescue binary $rescue does not exist or is not executable"

mkdir -p "$W"
W=$(cd "$W" && pwd)
: >"$W/times"
qpid=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  if [ -n "$qpid" ]; then kill "$qpid" 2>/dev/null || true; fi
  if declare -F scenario_host_stop >/dev/null; then scenario_host_stop || true; fi
}
trap cleanup EXIT
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }'; }
record() { echo "$1 $2" >>"$W/times"; log "$1: $2 s"; }
# mark_time NAME START FILE LINE: in the background, record NAME as the seconds
# from START until LINE appears in FILE (a serial log); kill it when the phase ends
# (a line printed less than ~0.5 s before qemu exits may go unrecorded).
mark_time() {
  until grep -aqF -- "$4" "$3" 2>/dev/null; do sleep 0.5; done
  record "$1" "$(secs "$2")"
}
fail() {
  local phase=$1 msg=$2 serial=$3
  {
    echo "run-scenario: $scenario FAILED in phase '$phase': $msg"
    if [ -f "$serial" ]; then
      echo "--- last 60 lines of $serial (escape sequences removed):"
      tr '\r' '\n' <"$serial" | grep -av '^\s*$' | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1b[()][0-9A-B]//g' | tail -n 60
    fi
  } >&2
  echo "FAIL $phase: $msg" >"$W/result"
  exit 1
}

# unpack_image DIR: the initramfs of the rescue ISO ($iso) as DIR/initrd.cpio,
# unpacked into DIR/root, for an image_check; prints why when it cannot.
unpack_image() {
  rm -rf "$1"; mkdir -p "$1/root"
  xorriso -osirrox on -indev "$iso" -extract /boot/initrd.img "$1/initrd.img" >/dev/null 2>&1 || { echo "cannot extract boot/initrd.img from $iso"; return 1; }
  zstd -dc "$1/initrd.img" >"$1/initrd.cpio" && (cd "$1/root" && cpio -id --quiet <"$1/initrd.cpio") || { echo "cannot unpack the image's initramfs"; return 1; }
}

# qemu NAME TIMEOUT ARGS...: boot under TCG with the serial console in
# W/NAME.serial.log; returns qemu's exit status (124 = timeout).
qemu() {
  local name=$1 limit=$2; shift 2
  local serial="$W/$name.serial.log" rc=0
  rm -f "$serial"
  local base=(-accel tcg -machine "$machine" -nodefaults -m 2048 -smp 2 -display none -monitor none -nic none
              -no-reboot -serial "file:$serial")
  echo "qemu-system-x86_64 ${base[*]} $*" >"$W/$name.qemu-cmdline"
  timeout --kill-after=10 "$(awk -v a="$limit" -v s="$scale" 'BEGIN { printf "%d", a * s }')" \
    "${qemu_ns[@]}" qemu-system-x86_64 "${base[@]}" "$@" >"$W/$name.qemu.log" 2>&1 &
  qpid=$!
  wait "$qpid" || rc=$?
  qpid=""
  return "$rc"
}
ovmf() { echo -drive "if=pflash,format=raw,unit=0,readonly=on,file=$ovmf_code" -drive "if=pflash,format=raw,unit=1,file=$1"; }
# The source boots with OVMF as installed; recovery and verify with enforcing
# firmware when the scenario asks for Secure Boot (q35 with SMM and a secure flash).
machine=pc ovmf_code=/usr/share/OVMF/OVMF_CODE.fd ovmf_vars=/usr/share/OVMF/OVMF_VARS.fd
secure_boot_firmware() {
  machine=q35,smm=on ovmf_code=/usr/share/OVMF/OVMF_CODE_4M.ms.fd ovmf_vars=/usr/share/OVMF/OVMF_VARS_4M.ms.fd
  [ -r "$ovmf_code" ] || die "$ovmf_code is missing: apt-get install ovmf"
}

# --- 0. the source system ------------------------------------------------------
t=$(now)
src=$("$here/build-source.sh" --suite "$suite" "$kind") || fail build-source "building the $kind source system failed (see above)" /dev/null
record build-source "$(secs "$t")"
fw=$(cat "$src/firmware")
mapfile -t sizes <"$src/sizes"
if ((${#targets[@]} == 0)); then
  for z in "${sizes[@]}"; do targets+=("$z:virtio"); done
fi
# disk_args PREFIX N SIZE:TYPE FILE: qemu arguments for one disk (id PREFIXN, serial PREFIX-diskN).
ahci=0
disk_args() {
  local id=$1$2 type=${3##*:}
  out_args+=(-drive "file=$4,format=${5:-raw},if=none,id=$id,cache=unsafe")
  case "$type" in
    virtio) out_args+=(-device "virtio-blk-pci,drive=$id,serial=$1-disk$2") ;;
    virtio4k) out_args+=(-device "virtio-blk-pci,drive=$id,serial=$1-disk$2,logical_block_size=4096,physical_block_size=4096") ;;
    nvme) out_args+=(-device "nvme,drive=$id,serial=$1-disk$2") ;;
    sata)
      if ((ahci == 0)); then out_args+=(-device "ahci,id=ahci"); fi
      out_args+=(-device "ide-hd,drive=$id,bus=ahci.$ahci,serial=$1-disk$2"); ahci=$((ahci + 1)) ;;
    *) die "unknown disk type $type" ;;
  esac
}

if declare -F scenario_host_start >/dev/null; then scenario_host_start; fi

# --- 1. source: test data + rescue mkbackup --------------------------------------
job="$W/job"
rm -rf "$job"; mkdir -p "$job/out"
cp "$rescue" "$job/rescue"
cp "$here/source/make-data.sh" "$here/source/rescue-scenario-runner" "$here/source/rescue-scenario-state" "$here/source/install-debs" "$job/"
if [ -n "$packages" ]; then
  # shellcheck disable=SC2086 # one word a package
  "$here/fetch-debs.sh" --suite "$suite" "$job/debs" $packages >/dev/null || fail packages "fetching $packages failed (see above)" /dev/null
fi
printf '%s' "$config" >"$job/rescue.toml"
if [ -n "$prepare" ]; then printf '%s\n' "$prepare" >"$job/prepare.sh"; fi
printf '#!/bin/bash\nset -euo pipefail\n%s\n' "$check" >"$job/check.sh"
cat >"$job/run.sh" <<JOB
set -euxo pipefail
install -m 0755 /job/rescue /usr/local/sbin/rescue
if [ -d /job/debs ]; then /job/install-debs /job/debs; fi
$source_setup
# The current scenario scripts (the cached image may hold older ones).
install -m 0755 /job/rescue-scenario-runner /job/rescue-scenario-state /usr/local/sbin/
mkdir -p /etc/rescue
cp /job/rescue.toml /etc/rescue/rescue.toml
bash /job/make-data.sh $data_dirs
install -m 0755 /job/check.sh /var/lib/rescue-test/check.sh
rescue-scenario-state >/var/lib/rescue-test/state
wc -l /var/lib/rescue-test/state
lsblk -o NAME,TYPE,FSTYPE,LABEL,SIZE,MOUNTPOINTS
if [ -f /job/prepare.sh ]; then bash /job/prepare.sh; fi
sync
start=\$(date +%s)
# Exit code 1 = completed with warnings, 4 = completed but a file changed while
# being read (a live system's logs): the archive is complete either way;
# recorded in times as mkbackup-exit.
rc=0; $mkbackup_cmd || rc=\$?
echo "mkbackup-seconds \$(( \$(date +%s) - start ))" >/job/out/mkbackup-seconds
echo "mkbackup-exit \$rc" >>/job/out/mkbackup-seconds
[ "\$rc" -le 1 ] || [ "\$rc" = 4 ]
ls -l /job/out
JOB
out_args=()
for i in "${!sizes[@]}"; do
  n=$((i + 1))
  qemu-img create -q -f qcow2 -F raw -b "$src/disk$n.img" "$W/source$n.qcow2"
  disk_args src "$n" virtio "$W/source$n.qcow2" qcow2
done
src_args=("${out_args[@]}" -virtfs "local,path=$job,mount_tag=job,security_model=none")
usb_args=()
if [ -n "$usb_label" ]; then
  # The backup disk: a USB stick with one ext4 filesystem found by its label.
  truncate -s 3G "$W/usb.img"
  mkfs.ext4 -q -F -L "$usb_label" "$W/usb.img"
  usb_args=(-device "qemu-xhci,id=xhci" -drive "file=$W/usb.img,format=raw,if=none,id=usb,cache=unsafe"
            -device "usb-storage,bus=xhci.0,drive=usb,serial=rescue-usb")
fi
stick_args=()
if [ -n "$recover_stick" ]; then
  # Attached at recovery only: ext4 labelled $recover_stick, on its own controller.
  rm -rf "$W/stick" "$W/stick.img"; mkdir -p "$W/stick"
  recover_stick_files "$W/stick"
  truncate -s 32M "$W/stick.img"
  mkfs.ext4 -q -F -L "$recover_stick" -d "$W/stick" "$W/stick.img"
  stick_args=(-device "qemu-xhci,id=xhci2" -drive "file=$W/stick.img,format=raw,if=none,id=stick,cache=unsafe"
              -device "usb-storage,bus=xhci2.0,drive=stick,serial=rescue-stick")
fi
if [ "$fw" = uefi ]; then
  cp "$src/OVMF_VARS.fd" "$W/source-vars.fd"
  # shellcheck disable=SC2207
  src_args+=($(ovmf "$W/source-vars.fd"))
fi
t=$(now)
rc=0; qemu source 2400 "${src_args[@]}" "${usb_args[@]}" "${nic[@]}" || rc=$?
record source-boot-and-mkbackup "$(secs "$t")"
((rc != 124)) || fail source "timed out (boot, test data, mkbackup)" "$W/source.serial.log"
[ -f "$job/out/exit-status" ] || fail source "the source system never ran or finished the job (qemu status $rc); did it boot?" "$W/source.serial.log"
[ "$(cat "$job/out/exit-status")" = 0 ] || fail source "the job failed with status $(cat "$job/out/exit-status"): see $job/out/run.log" "$job/out/run.log"
if [ -f "$job/out/mkbackup-seconds" ]; then
  record mkbackup "$(sed -n 's/^mkbackup-seconds //p' "$job/out/mkbackup-seconds")"
  record mkbackup-exit "$(sed -n 's/^mkbackup-exit //p' "$job/out/mkbackup-seconds")"
fi
iso=$(find "$job/out" -maxdepth 1 -name "$iso_name" | head -n1)
[ -n "$iso" ] || fail source "$tool mkbackup wrote no $iso_name to the output directory /job/out" "$job/out/run.log"
log "ISO $(du -h "$iso" | cut -f1): $iso"
echo "iso-bytes $(stat -c %s "$iso")" >>"$W/times"
if declare -F image_check >/dev/null; then
  t=$(now)
  image_check >"$W/image-check.log" 2>&1 || fail image-check "$(tail -n1 "$W/image-check.log")" "$W/image-check.log"
  record image-check "$(secs "$t")"
  log "image check: $(tail -n1 "$W/image-check.log")"
fi

# --- 2. recovery: blank disk(s) boot the ISO, unattended ------------------------
rm -f "$W"/source*.qcow2
out_args=() ahci=0
for i in "${!targets[@]}"; do
  n=$((i + 1))
  rm -f "$W/target$n.img"; truncate -s "${targets[$i]%%:*}" "$W/target$n.img"
  disk_args target "$n" "${targets[$i]}" "$W/target$n.img"
done
tgt_disks=("${out_args[@]}")
tgt_args=("${tgt_disks[@]}")
if ((secure_boot)); then
  secure_boot_firmware
  tgt_args+=(-global driver=cfi.pflash01,property=secure,value=on)
fi
if [ "$fw" = uefi ]; then
  cp "$ovmf_vars" "$W/target-vars.fd"
  # shellcheck disable=SC2207
  tgt_args+=($(ovmf "$W/target-vars.fd"))
fi
t=$(now)
mark_time recover-ok "$t" "$W/recover.serial.log" "$mark_ok" & mpid=$!
# The rescue system's boot to its shell (bench/limit.sh): RESCUE-READY.
mark_time recover-ready "$t" "$W/recover.serial.log" RESCUE-READY & rpid=$!
if ((${#target_nic[@]} == 0)); then recover_nic=("${nic[@]}"); else recover_nic=("${target_nic[@]}"); fi
rc=0; qemu recover 1800 "${tgt_args[@]}" "${usb_args[@]}" "${stick_args[@]}" "${recover_nic[@]}" \
  -drive "file=$iso,format=raw,if=none,id=cd,media=cdrom,readonly=on" -device ide-cd,drive=cd,bus=ide.1 || rc=$?
record recover-boot-and-restore "$(secs "$t")"
kill "$mpid" "$rpid" 2>/dev/null || true
serial="$W/recover.serial.log"
tr '\r' '\n' <"$serial" | grep -av '^\s*$' >"$serial.txt" || true
# The recovery's own report: "Recovery of HOST finished in N s", then one line a phase.
rto=$(sed -n 's/^Recovery of .* finished in \([0-9.]*\) s$/\1/p' "$serial.txt" | tail -n1)
[ -z "$rto" ] || record rescue-recover-reported-total "$rto"
sed -n '/^Recovery of .* finished in/,/^  total/p' "$serial.txt" >"$W/recover-report.txt" || true
if [ "$tool" = rescue ]; then
  # The ISO built in the source booted to the banner, with the descriptor and
  # every blank target disk under /dev/disk/by-id (serial target-diskN).
  grep -q 'RESCUE-BANNER rescue .* rescue system for rescue-src' "$serial.txt" || fail recover "the rescue ISO did not boot to its banner (qemu status $rc)" "$serial.txt"
  grep -q 'RESCUE-LAYOUT present /etc/rescue/layout.toml' "$serial.txt" || fail recover "the rescue system has no descriptor /etc/rescue/layout.toml" "$serial.txt"
  if ((secure_boot)); then
    grep -q 'RESCUE-SECUREBOOT on' "$serial.txt" || fail recover "the rescue system did not report Secure Boot on (RESCUE-SECUREBOOT)" "$serial.txt"
  fi
  for i in "${!targets[@]}"; do
    grep -Eq "RESCUE-DISK by-id/[^ ]*target-disk$((i + 1)) -> /dev/" "$serial.txt" ||
      fail recover "blank target disk $((i + 1)) (serial target-disk$((i + 1))) is not under /dev/disk/by-id in the rescue system" "$serial.txt"
  done
fi
grep -qF "$mark_start" "$serial.txt" || fail recover "the $tool ISO did not start the unattended recovery (qemu status $rc)" "$serial.txt"
if ! grep -qF "$mark_ok" "$serial.txt"; then
  if grep -qF "$mark_failed" "$serial.txt"; then
    fail recover "$tool's unattended recovery failed: $(grep -m1 -F "$mark_failed" "$serial.txt")" "$serial.txt"
  fi
  ((rc != 124)) || fail recover "timed out during the unattended recovery" "$serial.txt"
  fail recover "no $mark_ok on the console (qemu status $rc)" "$serial.txt"
fi
grep -qF "$mark_end" "$serial.txt" || fail recover "the recovery finished but the rescue system did not power off" "$serial.txt"
for line in "${recover_expect[@]}"; do
  grep -qF "$line" "$serial.txt" || fail recover "the recovery's console does not show '$line'" "$serial.txt"
done

# --- 3. the recovered disk(s) boot alone --------------------------------------
ver_args=("${tgt_disks[@]}")
if ((secure_boot)); then ver_args+=(-global driver=cfi.pflash01,property=secure,value=on); fi
if [ "$fw" = uefi ]; then
  # shellcheck disable=SC2207
  ver_args+=($(ovmf "$W/target-vars.fd"))
fi
t=$(now)
mark_time verify-pass "$t" "$W/verify.serial.log" "RESCUE-SCENARIO-VERIFY PASS" & mpid=$!
ppid=""
rm -f "$W/probe-result"
if declare -F verify_probe >/dev/null; then verify_probe & ppid=$!; fi
rc=0; qemu verify 900 "${ver_args[@]}" "${target_nic[@]}" || rc=$?
record verify-boot "$(secs "$t")"
kill "$mpid" 2>/dev/null || true
if [ -n "$ppid" ]; then kill "$ppid" 2>/dev/null || true; fi
serial="$W/verify.serial.log"
tr '\r' '\n' <"$serial" | grep -av '^\s*$' >"$serial.txt" || true
if ! grep -q 'RESCUE-SCENARIO-VERIFY PASS' "$serial.txt"; then
  if grep -q 'RESCUE-SCENARIO-VERIFY FAIL' "$serial.txt"; then
    fail verify "$(grep -m1 'RESCUE-SCENARIO-VERIFY FAIL' "$serial.txt")" "$serial.txt"
  fi
  ((rc != 124)) || fail verify "timed out: the recovered system did not boot to the scenario unit" "$serial.txt"
  fail verify "the recovered system did not report (qemu status $rc): did GRUB or the kernel start?" "$serial.txt"
fi
if [ -n "$ppid" ]; then
  [ "$(cat "$W/probe-result" 2>/dev/null)" = PASS ] || fail verify "the host's probe of the recovered system: $(cat "$W/probe-result" 2>/dev/null || echo 'it never saw RESCUE-NETCHECK ready')" "$serial.txt"
fi
echo PASS >"$W/result"
log "$scenario PASSED; times (s):"
cat "$W/times" >&2
exit 0
}
