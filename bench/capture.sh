#!/bin/bash
# Benchmark: `rescue savelayout` and a no-change `rescue checklayout` (what
# the refresh timer runs) on a 4-disk system (loop disks: GPT, ext4, xfs,
# btrfs with subvolumes, swap, vfat ESP; all mounted under a temporary root,
# plus a tmpfs and an overlay that must not count), compared with the tools
# they call. Run as root. Prints a table.
set -euo pipefail
BIN=${RESCUE:-$(dirname "$0")/../target/release/rescue}
W=$(mktemp -d)
LOOPS=()
cleanup() { umount -R "$W/root" 2>/dev/null || true; for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT
mkdir -p "$W/root"
for i in 0 1 2 3; do
  truncate -s 800M "$W/d$i.img"
  L=$(losetup -fP --show "$W/d$i.img"); LOOPS+=("$L")
  sfdisk -q --no-reread "$L" <<SF
label: gpt
size=32M, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
size=320M, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4
size=32M, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F
size=200M, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4
type=0FC63DAF-8483-4772-8E79-3D69D8477DE4
SF
  partx -u "$L" 2>/dev/null || true; partx -a "$L" 2>/dev/null || true
  mkfs.vfat -F 32 "${L}p1" >/dev/null 2>&1
  mkfs.xfs -q -f "${L}p2"; mkswap "${L}p3" >/dev/null; mkfs.ext4 -q "${L}p4"; mkfs.btrfs -q -f "${L}p5" >/dev/null
  if [ $i = 0 ]; then mount "${L}p4" "$W/root"; else mkdir -p "$W/root/d$i"; mount "${L}p4" "$W/root/d$i"; fi
done
for i in 0 1 2 3; do
  L=${LOOPS[$i]}; mkdir -p "$W/root/x$i" "$W/root/b$i"
  mount "${L}p2" "$W/root/x$i"; mount "${L}p5" "$W/root/b$i"
  btrfs subvolume create "$W/root/b$i/@a" >/dev/null; btrfs subvolume create "$W/root/b$i/@b" >/dev/null
done
ARGS=(); for l in "${LOOPS[@]}"; do ARGS+=(--disk "$l"); done
printf 'log-dir = "%s/log"\nstate-dir = "%s/state"\n' "$W" "$W" > "$W/rescue.toml"
"$BIN" --config "$W/rescue.toml" -q savelayout ${ARGS[*]} --root "$W/root"
mkdir -p "$W/root/tmp/t" "$W/root/ov" "$W/ov/l" "$W/ov/u" "$W/ov/w"
mount -t tmpfs tmpfs "$W/root/tmp/t"
mount -t overlay overlay -o "lowerdir=$W/ov/l,upperdir=$W/ov/u,workdir=$W/ov/w" "$W/root/ov"
hyperfine -N --warmup 2 --runs 15 --export-markdown "$W/out.md" \
  "$BIN --config $W/rescue.toml savelayout ${ARGS[*]} --root $W/root -o $W/layout.toml" \
  "$BIN --config $W/rescue.toml checklayout ${ARGS[*]} --root $W/root" \
  "lsblk -J -b -O" \
  "sfdisk -J ${LOOPS[0]}" >/dev/null
cat "$W/out.md"
# CPU a no-change check costs (steadier than wall time on a shared machine).
for i in $(seq 10); do
  /usr/bin/time -f '%e %U %S' "$BIN" --config "$W/rescue.toml" -q checklayout ${ARGS[*]} --root "$W/root" 2>&1 >/dev/null | tail -1
done | sort -n -k2 | awk '{w[NR]=$1; u[NR]=$2; s[NR]=$3; c[NR]=$2+$3} END {printf "checklayout, 10 runs: CPU (user+sys) median %.2f s, min %.2f s; wall median %.2f s\n", c[5], c[1], w[5]}'
"$BIN" --config "$W/rescue.toml" layout show "$W/layout.toml" | head -5
