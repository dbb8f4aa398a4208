#!/bin/bash
# Archive benchmark: rescue's archive engine against GNU tar + gzip (rear's
# default), tar | zstd -T0 -3 and tar | pigz, create and extract, on a real
# Debian root tree. Prints a markdown table (median wall time of RUNS runs,
# peak RSS, output size, ratio to tar -czf) for docs/benchmarks.md.
#
# Usage: bench/archive.sh [TREE] [RUNS]
#   TREE  default /var/cache/rescue-test/bench-root, made once with
#         debootstrap --variant=minbase --include=linux-image-amd64,systemd-sysv,udev \
#             bookworm TREE http://deb.debian.org/debian
#   RUNS  default 3
# RESCUE_OTHER=FILE adds a second rescue executable to the same run (its zstd
# create and extract rows, round-robin with the others), e.g. the static build of
# scripts/build-static.sh against the normal release build.
# Needs: a release build (cargo build --release), tar, gzip, pigz, zstd, /usr/bin/time. Run as root.
set -euo pipefail

TREE=${1:-/var/cache/rescue-test/bench-root}
RUNS=${2:-3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
RESCUE=${RESCUE:-$HERE/target/release/rescue}
OTHER=${RESCUE_OTHER:-}
WORK=${WORK:-/var/tmp/rescue-bench}

for t in tar gzip pigz zstd /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install tar gzip pigz zstd time" >&2; exit 2; }
done
[ -x "$RESCUE" ] || { echo "no release build at $RESCUE: run cargo build --release" >&2; exit 2; }
[ -z "$OTHER" ] || [ -x "$OTHER" ] || { echo "RESCUE_OTHER=$OTHER is not an executable" >&2; exit 2; }
[ -d "$TREE/usr" ] || { echo "no tree at $TREE (see the header of this script)" >&2; exit 2; }

rm -rf "$WORK"; mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT
CFG=$WORK/empty.toml
echo "log-dir = \"$WORK/logs\"" > "$CFG"
R="$RESCUE --config $CFG -q"
RO="$OTHER --config $CFG -q"

size_mb=$(du -sm --apparent-size "$TREE" | cut -f1)
files=$(find "$TREE" -xdev | wc -l)
echo "tree: $TREE, $size_mb MB apparent, $files entries, $(nproc) CPUs, runs: $RUNS" >&2
# Warm the page cache so every command reads from memory alike.
tar -C "$TREE" -cf - . > /dev/null

# Every create ends with its archive on disk: rescue fsyncs the archive before
# renaming it into place, the baselines get `sync FILE` (what a backup needs).
# Commands run round-robin (run 1 of every command, then run 2...) so that a
# change in the machine's load hits all of them alike. Per command: median wall
# seconds, median CPU seconds (user+sys), max peak RSS, output size.
NAMES=(); OUTS=(); PREPS=(); CMDS=()
add() { NAMES+=("$1"); OUTS+=("$2"); PREPS+=("$3"); CMDS+=("$4"); }
declare -A WALLS CPUS RSS SIZE WALL CPU
phase() {
  local from=$1 to=$2
  for r in $(seq "$RUNS"); do
    for i in $(seq "$from" "$to"); do
      eval "${PREPS[$i]}"
      sync
      /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" bash -c "${CMDS[$i]}" 2>"$WORK/err" || { cat "$WORK/err" >&2; echo "FAILED: ${CMDS[$i]}" >&2; exit 1; }
      read -r wall user sys kb < "$WORK/time"
      local n=${NAMES[$i]}
      WALLS[$n]+="$wall "; CPUS[$n]+="$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }') "
      (( kb / 1024 > ${RSS[$n]:-0} )) && RSS[$n]=$((kb / 1024))
      [ -n "${OUTS[$i]}" ] && SIZE[$n]=$(( $(stat -c %s "${OUTS[$i]}") / 1000000 ))
      echo "  run $r: $n: $wall s wall, $user+$sys s CPU, $((kb / 1024)) MiB" >&2
    done
  done
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

add "tar -cf - | cat > /dev/null (read limit)" "" ":" "tar -C '$TREE' -cf - . | cat > /dev/null"
add "tar -czf" "$WORK/gnu.tar.gz" "rm -f $WORK/gnu.tar.gz" "tar -C '$TREE' -czf $WORK/gnu.tar.gz . && sync $WORK/gnu.tar.gz"
add "tar -cf - | zstd -T0 -3" "$WORK/gnu.tar.zst" "rm -f $WORK/gnu.tar.zst" "tar -C '$TREE' -cf - . | zstd -q -T0 -3 > $WORK/gnu.tar.zst && sync $WORK/gnu.tar.zst"
add "tar -cf - | pigz" "$WORK/pigz.tar.gz" "rm -f $WORK/pigz.tar.gz" "tar -C '$TREE' -cf - . | pigz > $WORK/pigz.tar.gz && sync $WORK/pigz.tar.gz"
add "rescue archive create --compress zstd" "$WORK/r.tar.zst" "rm -f $WORK/r.tar.zst" "$R archive create -C '$TREE' . -o $WORK/r.tar.zst --compress zstd"
add "rescue archive create --compress gzip" "$WORK/r.tar.gz" "rm -f $WORK/r.tar.gz" "$R archive create -C '$TREE' . -o $WORK/r.tar.gz --compress gzip"
if [ -n "$OTHER" ]; then
  add "rescue archive create --compress zstd (RESCUE_OTHER)" "$WORK/o.tar.zst" "rm -f $WORK/o.tar.zst" "$RO archive create -C '$TREE' . -o $WORK/o.tar.zst --compress zstd"
fi
ncreate=${#NAMES[@]}
T=$WORK/target
add "tar -xzf" "" "rm -rf $T; mkdir $T" "tar -C $T -xzf $WORK/gnu.tar.gz"
add "zstd -dc | tar -xf -" "" "rm -rf $T; mkdir $T" "zstd -dc -T0 $WORK/gnu.tar.zst | tar -C $T -xf -"
add "rescue archive extract (zstd)" "" "rm -rf $T; mkdir $T" "$R archive extract $WORK/r.tar.zst --target $T"
add "rescue archive extract (gzip)" "" "rm -rf $T; mkdir $T" "$R archive extract $WORK/r.tar.gz --target $T"
if [ -n "$OTHER" ]; then
  add "rescue archive extract (zstd, RESCUE_OTHER)" "" "rm -rf $T; mkdir $T" "$RO archive extract $WORK/o.tar.zst --target $T"
fi

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "create:" >&2; phase 0 $((ncreate - 1))
echo "extract:" >&2; phase "$ncreate" $((${#NAMES[@]} - 1))
rm -rf "$T"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

for n in "${NAMES[@]}"; do
  WALL[$n]=$(echo "${WALLS[$n]}" | median); CPU[$n]=$(echo "${CPUS[$n]}" | median)
done
base=${WALL["tar -czf"]}
ratio() { awk -v b="$base" -v w="$1" 'BEGIN { printf "%.1fx", b / w }'; }
echo
echo "| command | wall s (median of $RUNS) | tar -czf wall / this | CPU s (user+sys) | peak RSS MiB | output MB |"
echo "|---|---|---|---|---|---|"
for n in "${NAMES[@]}"; do
  echo "| \`${n//|/\\|}\` | ${WALL[$n]} | $(ratio "${WALL[$n]}") | ${CPU[$n]} | ${RSS[$n]} | ${SIZE[$n]:-} |"
done
echo
linking() { file -bL "$1" | grep -oE 'dynamically linked|static-pie linked|statically linked' | head -n1; }
[ -z "$OTHER" ] || echo "RESCUE: $RESCUE ($(linking "$RESCUE")); RESCUE_OTHER: $OTHER ($(linking "$OTHER"))."
echo "Tree: $size_mb MB apparent, $files entries; $(nproc) CPUs; load average before/after: $load_before / $load_after; $(date -u '+%Y-%m-%d %H:%M UTC')."
echo "Raw wall times (s):"
for n in "${NAMES[@]}"; do echo "- ${n}: ${WALLS[$n]}"; done
