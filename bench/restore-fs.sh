#!/bin/bash
# Restore into one filesystem and into several, with one or more rescue
# executables in one run (before and after the writer thread per filesystem):
# `rescue archive extract` of the same archive onto fresh ext4 loop
# filesystems, timed to the end of their umount (written back).
#
#   bench/restore-fs.sh TREE [RUNS]     (as root)
#
#   TREE  a directory, or a .tar.zst of one (unpacked into the work directory),
#         e.g. a debootstrap tree (bench/archive.sh)
#   RUNS  default 3; the commands run round-robin, so load changes hit all alike
# Layouts: one (a single ext4 at the target), two (/usr on its own ext4),
# three (/usr and /var each on their own). Each filesystem is a 3 GiB sparse
# loop file in the work directory, made anew (mkfs not timed) before each run.
# Environment: RESCUE_BINS, space-separated NAME=BINARY pairs (default
# "current=target/release/rescue"); the archive is made by the first.
# WORK (default /var/tmp/rescue-bench-restore-fs). Prints a markdown table.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TREE=${1:?usage: bench/restore-fs.sh TREE [RUNS]}
RUNS=${2:-3}
BINS=${RESCUE_BINS:-current=$ROOT/target/release/rescue}
WORK=${WORK:-/var/tmp/rescue-bench-restore-fs}
[ "$(id -u)" = 0 ] || { echo "must run as root" >&2; exit 2; }
mkdir -p "$WORK"
if [ -f "$TREE" ]; then
  rm -rf "$WORK/tree"; mkdir -p "$WORK/tree"
  zstd -dc "$TREE" | tar -C "$WORK/tree" -x --numeric-owner --xattrs '--xattrs-include=*' --acls -p
  TREE=$WORK/tree
fi
first=${BINS%% *}
"${first#*=}" archive create -C "$TREE" . -o "$WORK/a.tar.zst" >/dev/null 2>&1
echo "archive: $(stat -c %s "$WORK/a.tar.zst") bytes, made by ${first%%=*}" >&2

loops=()
# mount_layout LAYOUT: fresh filesystems mounted at WORK/t.
mount_layout() {
  local subs=()
  case "$1" in
    one) ;;
    two) subs=(usr) ;;
    three) subs=(usr var) ;;
  esac
  mkdir -p "$WORK/t"
  local i=0
  for m in "" "${subs[@]}"; do
    rm -f "$WORK/fs$i.img"; truncate -s 3G "$WORK/fs$i.img"
    mkfs.ext4 -q -F "$WORK/fs$i.img"
    local dev
    dev=$(losetup -f --show "$WORK/fs$i.img")
    loops+=("$dev")
    mkdir -p "$WORK/t/$m"
    mount "$dev" "$WORK/t/$m"
    i=$((i + 1))
  done
}
umount_layout() {
  umount -R "$WORK/t"
  for d in "${loops[@]}"; do losetup -d "$d"; done
  loops=()
  rm -f "$WORK"/fs*.img
}
trap 'umount -R "$WORK/t" 2>/dev/null || true; for d in "${loops[@]}"; do losetup -d "$d" 2>/dev/null || true; done' EXIT

declare -A times
echo "load-before $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for r in $(seq "$RUNS"); do
  for layout in one two three; do
    for pair in $BINS; do
      name=${pair%%=*} bin=${pair#*=}
      mount_layout "$layout"
      sync
      t0=$(date +%s.%N)
      "$bin" archive extract "$WORK/a.tar.zst" --target "$WORK/t" >/dev/null 2>"$WORK/extract.log" || { cat "$WORK/extract.log" >&2; exit 1; }
      umount_layout
      s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
      times[$layout.$name]+="$s "
      echo "round $r $layout $name: $s s" >&2
    done
  done
done
echo "load-after $(cut -d' ' -f1-3 /proc/loadavg)" >&2
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
names=()
for pair in $BINS; do names+=("${pair%%=*}"); done
printf '| layout |'; for n in "${names[@]}"; do printf ' %s s (median; runs) |' "$n"; done; echo
printf '|---|'; for _ in "${names[@]}"; do printf -- '---|'; done; echo
for layout in one two three; do
  printf '| %s |' "$layout"
  for n in "${names[@]}"; do printf ' %s (%s) |' "$(echo "${times[$layout.$n]}" | median)" "${times[$layout.$n]% }"; done
  echo
done
