#!/bin/bash
# Encryption cost and incremental chains (rescue's mkbackuponly --level and
# GNU tar --listed-incremental, both in GNU tar's format), in one run:
#   bench/crypt.sh TREE [RESCUE]
# TREE is copied once (the incremental part changes files in the copy).
# RESCUE defaults to target/release/rescue. Prints one line per command:
# name, wall seconds, output bytes. Needs age, zstd, GNU tar; run as root.
set -euo pipefail
tree=$1
rescue=${2:-$(dirname "$0")/../target/release/rescue}
work=$(mktemp -d /var/tmp/rescue-bench-crypt.XXXXXX)
trap 'rm -rf "$work"' EXIT
cfg=$work/rescue.toml
printf 'log-dir = "%s/log"\nstate-dir = "%s/state"\n' "$work" "$work" > "$cfg"
R() { "$rescue" --config "$cfg" -q "$@"; }
age-keygen -o "$work/key.txt" 2>/dev/null
recipient=$(age-keygen -y "$work/key.txt")
cp -a "$tree" "$work/src"
# mkbackuponly backs up the mounts of a descriptor: the test fixture's / and /boot.
mkdir -p "$work/src/boot"
layout=$(dirname "$0")/../tests/fixtures/archive/layout.toml
B() { "$rescue" --config "$cfg" -q mkbackuponly --layout "$layout" --root "$work/src" --url "file://$work/dest" "$@"; }
newest() { ls -t "$work"/dest/testhost/backup-*.tar.zst | head -1; }
cat -- $(find "$work/src" -type f) > /dev/null 2>&1 || true   # warm the page cache

t() { # name output command...
  local name=$1 out=$2; shift 2
  local s e
  s=$(date +%s.%N); "$@"; sync; e=$(date +%s.%N)
  printf '%-44s %8.2f s %14s bytes\n' "$name" "$(echo "$e - $s" | bc)" "$( [ -e "$out" ] && stat -c %s "$out" || echo -)"
}
fresh() { rm -rf "$1"; mkdir -p "$1"; }

echo "== encryption"
t "rescue create zstd" "$work/plain.tar.zst" R archive create -C "$work/src" . -o "$work/plain.tar.zst"
t "rescue create zstd + age" "$work/enc.tar.zst.age" R archive create -C "$work/src" . -o "$work/enc.tar.zst.age" --age-recipient "$recipient"
t "age -r (CLI) of the zstd archive" "$work/cli.age" sh -c "age -r $recipient -o $work/cli.age $work/plain.tar.zst"
fresh "$work/x1"; t "rescue extract zstd" - R archive extract "$work/plain.tar.zst" --target "$work/x1"
fresh "$work/x2"; t "rescue extract zstd + age" - R archive extract "$work/enc.tar.zst.age" --target "$work/x2" --age-identity "$work/key.txt"
fresh "$work/x3"; t "age -d | zstd -d | tar -x" - sh -c "age -d -i $work/key.txt $work/enc.tar.zst.age | zstd -dq | tar -C $work/x3 -xf -"
rm -rf "$work"/x1 "$work"/x2 "$work"/x3

echo "== incremental (GNU tar format), 1 % of the files changed"
T="tar --format=posix --sparse --xattrs --xattrs-include=* --acls --numeric-owner"
t "tar --listed-incremental level 0 | zstd" "$work/l0.tar.zst" sh -c "$T --listed-incremental=$work/snar -C $work/src -cf - . | zstd -q -T0 -3 > $work/l0.tar.zst"
t "rescue mkbackuponly --level full" - B --level full
echo "  -> $(stat -c %s "$(newest)") bytes"
sleep 1
# 1 % of the regular files by count: every 100th gets 4 KiB appended.
find "$work/src" -type f | awk 'NR % 100 == 0' | while read -r f; do head -c 4096 /dev/urandom >> "$f"; done
changed=$(find "$work/src" -type f | awk 'NR % 100 == 0' | wc -l)
echo "changed files: $changed of $(find "$work/src" -type f | wc -l)"
t "tar --listed-incremental level 1 | zstd" "$work/l1.tar.zst" sh -c "$T --listed-incremental=$work/snar -C $work/src -cf - . | zstd -q -T0 -3 > $work/l1.tar.zst"
t "rescue mkbackuponly --level incremental" - B --level incremental
echo "  -> $(stat -c %s "$(newest)") bytes"
t "rescue create zstd (full, after the change)" "$work/full2.tar.zst" R archive create -C "$work/src" . -o "$work/full2.tar.zst"
fresh "$work/y"
t "rescue extract --incremental level 0" - R archive extract --incremental "$work/l0.tar.zst" --target "$work/y"
t "rescue extract --incremental level 1" - R archive extract --incremental "$work/l1.tar.zst" --target "$work/y"
fresh "$work/z"
t "tar -x --listed-incremental=/dev/null level 0" - sh -c "zstd -dcq $work/l0.tar.zst | tar --listed-incremental=/dev/null -C $work/z -xf -"
t "tar -x --listed-incremental=/dev/null level 1" - sh -c "zstd -dcq $work/l1.tar.zst | tar --listed-incremental=/dev/null -C $work/z -xf -"
