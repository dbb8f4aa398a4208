# Guest-side helpers for record-fixtures.sh (prepended to each scenario's run.sh).
set -euxo pipefail
PS4='+ [$(cut -d" " -f1 /proc/uptime)] '
export NO_COLOR=1
mkdir -p /mnt/target
printf 'fixture-key' >/tmp/key
settle() { udevadm settle --timeout=60; }
# Partition N of disk DEV: sda -> sda1, nvme0n1 -> nvme0n1p1.
part() { case "$1" in *[0-9]) echo "${1}p$2" ;; *) echo "$1$2" ;; esac; }
uuid() { blkid -p -s UUID -o value "$1"; }
# GPT/MBR from an sfdisk script on stdin, then wait for the partition nodes.
table() { sfdisk -q --wipe always "$1"; settle; partx -u "$1" || true; settle; }
LUKS2_FAST=(--pbkdf argon2id --pbkdf-memory 65536 --pbkdf-force-iterations 4 --pbkdf-parallel 1)

# cap DIR CMD...: run CMD, stdout to DIR/<command with spaces as _ and / as %>,
# stderr and a non-zero status next to it; listed in DIR/commands.tsv.
cap() {
  local dir=$1; shift
  local f; f=$(printf '%s' "$*" | tr ' /' '_%')
  local rc=0
  "$@" >"$dir/$f" 2>"$dir/$f.stderr" || rc=$?
  [ -s "$dir/$f.stderr" ] || rm -f "$dir/$f.stderr"
  [ "$rc" = 0 ] || echo "$rc" >"$dir/$f.status"
  printf '%s\t%s\t%s\n' "$f" "$rc" "$*" >>"$dir/commands.tsv"
}

# The raw outputs of every tool the probe reads, for DISKS and what sits on them.
raw() {
  local name=$1; shift
  local d=$OUT/raw/$name
  rm -rf "$d"; mkdir -p "$d"
  set +x
  local devs; devs=$(lsblk -nrpo NAME "$@" | awk '!seen[$0]++')
  cap "$d" lsblk -J -b -O
  cap "$d" cat /proc/self/mountinfo
  cap "$d" cat /proc/mdstat
  cap "$d" cat /proc/partitions
  cap "$d" cat /proc/swaps
  for disk in "$@"; do cap "$d" sfdisk -J "$disk"; done
  for dev in $devs; do
    cap "$d" blkid -p -o export "$dev"
    case "$(blkid -p -s TYPE -o value "$dev" 2>/dev/null)" in
      crypto_LUKS) cap "$d" cryptsetup luksDump "$dev"; cap "$d" cryptsetup luksDump --dump-json-metadata "$dev" ;;
      btrfs) cap "$d" btrfs inspect-internal dump-super "$dev" ;;
      ext2|ext3|ext4) cap "$d" dumpe2fs -h "$dev" ;;
      xfs) cap "$d" xfs_info "$dev" ;;
    esac
    case "$dev" in /dev/md*) cap "$d" mdadm --detail --export "$dev"; cap "$d" mdadm --detail "$dev" ;; esac
  done
  cap "$d" lvm pvs --reportformat json --units b --nosuffix -o pv_all,vg_name
  cap "$d" lvm vgs --reportformat json --units b --nosuffix -o vg_all
  cap "$d" lvm lvs --reportformat json --units b --nosuffix -o lv_all,vg_name
  cap "$d" lvm lvs --segments --reportformat json --units b --nosuffix -o lv_name,vg_name,seg_all
  cap "$d" dmsetup info -c --noheadings -o name,uuid,blkdevname
  cap "$d" dmsetup table
  while read -r mnt fstype; do
    case "$fstype" in
      btrfs)
        cap "$d" btrfs subvolume list -p -u -q "$mnt"
        cap "$d" btrfs subvolume list -a -p -u -q "$mnt"
        cap "$d" btrfs subvolume list -a -r "$mnt"
        cap "$d" btrfs subvolume get-default "$mnt"
        cap "$d" btrfs filesystem df -b "$mnt" ;;
      xfs) cap "$d" xfs_info "$mnt" ;;
    esac
  done < <(findmnt -rn -o TARGET,FSTYPE | awk '$1 ~ "^/mnt/target"')
  cap "$d" efibootmgr -v
  cap "$d" ls -l /dev/disk/by-id /dev/disk/by-uuid /dev/disk/by-label /dev/disk/by-partuuid /dev/disk/by-partlabel /dev/disk/by-path
  cap "$d" cat /mnt/target/etc/fstab
  # sysfs: per block device the files the probe reads.
  local b f
  for dev in $devs; do
    b=$(basename "$(readlink -f "$dev")")
    [ -d "/sys/class/block/$b" ] || continue
    for f in size removable ro queue/logical_block_size queue/physical_block_size device/serial \
             device/model device/wwid wwid serial dm/name dm/uuid partition start; do
      [ -r "/sys/class/block/$b/$f" ] || continue
      mkdir -p "$d/sys/block/$b/$(dirname "$f")"
      cat "/sys/class/block/$b/$f" >"$d/sys/block/$b/$f" 2>/dev/null || true
    done
    if [ -d "/sys/block/$b/md" ]; then
      find "/sys/block/$b/md/" -maxdepth 2 -type f -perm -u=r | while read -r f; do
        mkdir -p "$d/$(dirname "$f")"
        timeout 5 cat "$f" >"$d/$f" 2>/dev/null || rm -f "$d/$f"
      done
    fi
  done
  set -x
}

# record NAME DESCRIPTION DISK...: the probe fixture + descriptor, then the raw outputs.
record() {
  local name=$1 desc=$2; shift 2
  settle; sync
  # The mounted system looks like an installed Debian (the probe reads its os-release).
  if [ -d /mnt/target/etc ] && [ ! -e /mnt/target/etc/os-release ]; then cp /usr/lib/os-release /mnt/target/etc/os-release; fi
  local args=() disk
  for disk in "$@"; do args+=(--disk "$disk"); done
  local rc=0
  ./rescue savelayout -v --record-fixture "$OUT/$name.json" "${args[@]}" --root /mnt/target -o "$OUT/$name.toml" \
    >"$OUT/$name.savelayout.log" 2>&1 || rc=$?
  cat "$OUT/$name.savelayout.log"
  echo "$rc" >"$OUT/$name.savelayout-status"
  if [ -s "$OUT/$name.json" ]; then
    jq --arg d "$desc" '.description = $d' "$OUT/$name.json" >"$OUT/$name.json.tmp" && mv "$OUT/$name.json.tmp" "$OUT/$name.json"
  fi
  raw "$name" "$@"
  [ "$rc" = 0 ] || { echo "savelayout failed with status $rc for $name"; return 1; }
}
