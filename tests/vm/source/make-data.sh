#!/bin/bash
# Write the scenario test data (the job in the source system runs this before
# the backup): files of every kind the archive must keep, under the
# directories given as arguments; records them in /var/lib/rescue-test/dirs.
# Usage: make-data.sh DIR...
set -euo pipefail
mkdir -p /var/lib/rescue-test
: >/var/lib/rescue-test/dirs
for d in "$@"; do
  echo "$d" >>/var/lib/rescue-test/dirs
  mkdir -p "$d/tree" "$d/special"
  head -c 16M /dev/urandom >"$d/random-16M.bin"
  for i in $(seq 1 40); do
    mkdir -p "$d/tree/dir$((i % 7))/sub$((i % 3))"
    seq 1 "$((i * 50))" >"$d/tree/dir$((i % 7))/sub$((i % 3))/file$i.txt"
  done
  : >"$d/special/empty"
  echo "spaces and ünïcödé" >"$d/special/name with spaces ünïcödé"
  long=$d/special/$(printf 'd%.0s' $(seq 1 60))/$(printf 'e%.0s' $(seq 1 60))
  mkdir -p "$long" && echo long >"$long/$(printf 'f%.0s' $(seq 1 120))"
  echo target >"$d/special/link-target"
  ln -s link-target "$d/special/symlink-relative"
  ln -s /etc/hostname "$d/special/symlink-absolute"
  ln "$d/special/link-target" "$d/special/hardlink"
  truncate -s 64M "$d/special/sparse"
  echo middle | dd of="$d/special/sparse" bs=1 seek=$((32 << 20)) conv=notrunc status=none
  echo owned >"$d/special/owned" && chown 1234:5678 "$d/special/owned"
  echo setuid >"$d/special/setuid" && chmod 4755 "$d/special/setuid"
  echo xattr >"$d/special/xattr" && setfattr -n user.rescue -v scenario "$d/special/xattr"
  echo acl >"$d/special/acl" && setfacl -m u:1234:rw,g:5678:r "$d/special/acl"
  mkfifo "$d/special/fifo"
  chmod 0700 "$d/special"
  touch -h -d '2001-02-03 04:05:06.789' "$d/special/owned" "$d/tree/dir1"
done
sync
