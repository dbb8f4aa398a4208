#!/bin/bash
# Benchmark: `rescue mkrescue` against rear's `rear mkrescue` (Debian's rear 2.7),
# side by side in one run, both building a bootable ISO with the same kernel
# (Debian's 6.1 kernel from the test cache: tests/vm/prepare-kernel.sh).
#
#   bench/mkrescue.sh [RUNS]        (as root; release build: cargo build --release)
#
# rear runs with its defaults (OUTPUT=ISO, all kernel modules, gzip initrd) except
# what this host forces: KERNEL_FILE/KERNEL_VERSION (the host runs a kernel without
# /boot and /lib/modules), BOOTLOADER=GRUB2 (the host disk cannot be read), and
# BACKUP=REQUESTRESTORE (no backup: only the rescue system is built). rescue runs
# once with its defaults (the modules this layout and dissimilar hardware need) and
# once with `modules = "all"` to compare like with like. Rounds alternate the
# commands so a change of the machine's load hits all alike. Reported: median wall
# time, median CPU (user+sys), initrd and ISO size.
#
# For the duration of the run /lib/modules/VERSION is a symlink to the cached
# kernel's modules (rear reads modules only from there); it is removed at the end.
set -euo pipefail
RUNS=${1:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${RESCUE:-$ROOT/target/release/rescue}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 2; }
command -v rear >/dev/null || { echo "install rear first: apt-get install --no-install-recommends rear" >&2; exit 2; }
KDIR=$(bash "$ROOT/tests/vm/prepare-kernel.sh")
KVER=$(ls "$KDIR/lib/modules")
KERNEL=$KDIR/boot/vmlinuz-$KVER
MODS=$KDIR/lib/modules/$KVER
W=$(mktemp -d)
MADE_LINK=
cleanup() {
  [ -n "$MADE_LINK" ] && rm -f "/lib/modules/$KVER"
  rmdir /lib/modules 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
if [ ! -e "/lib/modules/$KVER" ]; then mkdir -p /lib/modules; ln -s "$MODS" "/lib/modules/$KVER"; MADE_LINK=1; fi

mkdir -p "$W/rear" "$W/out-rear"
cat > "$W/rear/local.conf" <<EOF
OUTPUT=ISO
OUTPUT_URL=file://$W/out-rear
BACKUP=REQUESTRESTORE
BOOTLOADER=GRUB2
KERNEL_VERSION=$KVER
KERNEL_FILE=$KERNEL
EOF
LAYOUT=$ROOT/layouts/bios-gpt-ext4.toml
for v in default all; do
  mkdir -p "$W/$v/out"
  {
    printf 'log-dir = "%s/%s/log"\nstate-dir = "%s/%s/state"\n[image]\noutput = ["iso"]\n' "$W" "$v" "$W" "$v"
    [ "$v" = all ] && printf 'modules = "all"\n'
  } > "$W/$v/rescue.toml"
done

# name -> command
declare -A CMD=(
  [rear]="rear -c $W/rear mkrescue"
  [rescue]="$BIN -q --config $W/default/rescue.toml mkrescue --kernel $KERNEL --modules-dir $MODS --layout $LAYOUT --output-dir $W/default/out"
  [rescue-all]="$BIN -q --config $W/all/rescue.toml mkrescue --kernel $KERNEL --modules-dir $MODS --layout $LAYOUT --output-dir $W/all/out"
)
NAMES=(rear rescue rescue-all)
declare -A WALL CPU
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$RUNS"); do
  for n in "${NAMES[@]}"; do
    /usr/bin/time -f '%e %U %S' -o "$W/t" ${CMD[$n]} > "$W/$n.log" 2>&1 || { echo "$n failed:"; tail -20 "$W/$n.log"; exit 1; }
    read -r e u s < "$W/t"
    WALL[$n]+="$e "; CPU[$n]+="$(echo "$u + $s" | bc) "
    echo "round $r $n: wall $e s"
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
size_mib() { stat -c %s "$1" | awk '{printf "%.1f", $1/1048576}'; }
REAR_ISO=$(ls "$W"/out-rear/*/*.iso)
REAR_INITRD_BYTES=$(grep -o 'initrd.cgz with gzip default compression ([0-9]* bytes' "$W/rear.log" /var/log/rear/rear-*.log 2>/dev/null | tail -n1 | grep -o '[0-9]* bytes' | cut -d' ' -f1)
RW=$(echo "${WALL[rear]}" | median)
echo
echo "| command | wall s (median of $RUNS) | rear wall / this | CPU s (user+sys) | initrd MiB | ISO MiB |"
echo "|---|---|---|---|---|---|"
for n in "${NAMES[@]}"; do
  w=$(echo "${WALL[$n]}" | median); c=$(echo "${CPU[$n]}" | median)
  if [ "$n" = rear ]; then
    iso=$(size_mib "$REAR_ISO"); initrd=$(echo "$REAR_INITRD_BYTES" | awk '{printf "%.1f", $1/1048576}')
  else
    d=$W/default/out; [ "$n" = rescue-all ] && d=$W/all/out
    iso=$(size_mib "$(ls "$d"/*.iso)")
    initrd=$(xorriso -indev "$(ls "$d"/*.iso)" -find / -name 'initrd*' -exec lsdl -- 2>/dev/null | awk '/initrd/ {printf "%.1f", $5/1048576; exit}')
  fi
  echo "| $n | $w | $(echo "scale=1; $RW / $w" | bc)x | $c | $initrd | $iso |"
done
echo "raw wall times: rear ${WALL[rear]}; rescue ${WALL[rescue]}; rescue-all ${WALL[rescue-all]}"
