#!/bin/sh
# The recovery's physical limit, by hand, inside the rescue system
# (bench/limit.sh starts it from the shell of the rescue ISO's own kernel and
# initrd): on the disk a recovery just made (BIOS, GPT, swap + one ext4 root,
# scenario 1), make the same filesystems again with the same UUIDs and labels,
# `zstd -dc ARCHIVE | tar -x` of the same archive from the same CD onto them
# with GNU tar's xattr/ACL flags, grub-install from the restored system,
# unmount. Prints `LIMIT-PHASE NAME SECONDS` per step, then LIMIT-DONE or
# LIMIT-FAILED. POSIX sh: the rescue system's shell may be busybox's.
set -eu
disk=/dev/vda
up() { cut -d' ' -f1 /proc/uptime; }
phase() { echo "LIMIT-PHASE $1 $(awk -v a="$2" -v b="$(up)" 'BEGIN { printf "%.1f", b - a }')"; }
trap 'echo "LIMIT-FAILED (exit $?)"' EXIT

mkdir -p /mnt/cd /mnt/t
mount -o ro /dev/sr0 /mnt/cd
archive=$(find /mnt/cd/backup -name '*.tar.zst' | head -n1)
[ -n "$archive" ] || { echo "no *.tar.zst under /mnt/cd/backup"; exit 1; }
echo "LIMIT-ARCHIVE $archive $(wc -c <"$archive") bytes"
root="" swap=""
for p in "$disk"*[0-9]; do
  case "$(blkid -p -s TYPE -o value "$p" 2>/dev/null || true)" in
    ext4) root=$p ;;
    swap) swap=$p ;;
  esac
done
[ -n "$root" ] || { echo "no ext4 partition on $disk (was the disk recovered?)"; exit 1; }
field() { blkid -p -s "$1" -o value "$2" 2>/dev/null || true; }
ruuid=$(field UUID "$root") rlabel=$(field LABEL "$root")

t=$(up)
mkfs.ext4 -F -q -U "$ruuid" ${rlabel:+-L "$rlabel"} "$root"
# busybox's mkswap (the rescue system's) takes no UUID.
if [ -n "$swap" ]; then mkswap -U "$(field UUID "$swap")" "$swap" >/dev/null 2>&1 || mkswap "$swap" >/dev/null; fi
phase mkfs "$t"

t=$(up)
mount "$root" /mnt/t
gnu() { dir=$(dirname "$0")/gnu; prog=$1; shift; "$dir"/ld-linux-x86-64.so.2 --library-path "$dir" "$dir/$prog" "$@"; }
gnu zstd -dc -T0 "$archive" | gnu tar -C /mnt/t -x -p --numeric-owner --xattrs '--xattrs-include=*' --acls -f -
phase restore "$t"

t=$(up)
for d in dev proc sys; do mount --bind "/$d" "/mnt/t/$d"; done
chroot /mnt/t grub-install --target=i386-pc "$disk"
for d in dev proc sys; do umount "/mnt/t/$d"; done
phase grub-install "$t"

t=$(up)
umount /mnt/t
phase umount "$t"
trap - EXIT
echo LIMIT-DONE
