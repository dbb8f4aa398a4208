#!/bin/bash
# Record probe fixtures inside the test guest: for each scenario, boot the
# guest with blank disks, build the storage stack (tests/vm/record/NAME.sh),
# mount it under /mnt/target and run
#   rescue savelayout --record-fixture NAME.json --disk DEV... --root /mnt/target -o NAME.toml
# plus the raw outputs of every tool (raw/NAME/). Results are copied to
# tests/fixtures/probe/. Usage: record-fixtures.sh [--rescue BIN] [NAME...]
# (default: all scenarios). Exit status 1 if any scenario failed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dest=$root/tests/fixtures/probe
declare -A disks=(
  [md-raid1]="--disk 1G --disk 1G"
  [luks2-lvm]="--disk 3G"
  [luks1]="--disk 512M"
  [lvm-span]="--disk 1G --disk 1G"
  [uefi]="--uefi --disk 1G"
  [btrfs]="--disk 1G"
  [nvme-sata]="--disk 1G:nvme --disk 1G:sata"
)
order=(md-raid1 luks2-lvm luks1 lvm-span uefi btrfs nvme-sata)
rescue=""
if [ "${1:-}" = --rescue ]; then rescue=$2; shift 2; fi
if [ -z "$rescue" ]; then
  (cd "$root" && cargo build --quiet --bin rescue)
  rescue=$root/target/debug/rescue
fi
names=("$@"); ((${#names[@]})) || names=("${order[@]}")
mkdir -p "$dest/raw"
failed=()
for name in "${names[@]}"; do
  [ -n "${disks[$name]:-}" ] || { echo "record-fixtures: unknown scenario $name (known: ${order[*]})" >&2; exit 2; }
  job=$(mktemp -d "${TMPDIR:-/var/tmp}/rescue-record.XXXXXX")
  cat "$here/record/common.sh" "$here/record/$name.sh" >"$job/run.sh"
  echo "record-fixtures: $name" >&2
  rc=0
  # shellcheck disable=SC2086
  "$here/run-guest.sh" ${disks[$name]} --rescue "$rescue" "$job" || rc=$?
  out=$job/out
  for f in json toml; do
    if [ -s "$out/$name.$f" ]; then cp "$out/$name.$f" "$dest/$name.$f"; fi
  done
  if [ -d "$out/raw/$name" ]; then
    rm -rf "$dest/raw/$name"; cp -r "$out/raw/$name" "$dest/raw/$name"
    cp "$out/$name.savelayout.log" "$dest/raw/$name/savelayout.log" 2>/dev/null || true
  fi
  if [ "$rc" != 0 ]; then
    failed+=("$name")
    echo "record-fixtures: $name FAILED (status $rc); job kept in $job (run.log, serial.log)" >&2
  else
    echo "record-fixtures: $name done in $(cat "$out/total-seconds") s (boot $(cat "$out/boot-seconds") s)" >&2
    rm -rf "$job"
  fi
done
if ((${#failed[@]})); then echo "record-fixtures: failed: ${failed[*]}" >&2; exit 1; fi
