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
# Needs: a release build (cargo build --release), tar, gzip, pigz, zstd, /usr/bin/time. Run as root.
set -euo pipefail

TREE=${1:-/var/cache/rescue-test/bench-root}
RUNS=${2:-3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
RESCUE=${RESCUE:-$HERE/target/release/rescue}
WORK=${WORK:-/var/tmp/rescue-bench}

for t in tar gzip pigz zstd /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install tar gzip pigz zstd time" >&2; exit 2; }
done
[ -x "$RESCUE" ] || { echo "no release build at $RESCUE: run cargo build --release" >&2; exit 2; }
[ -d "$TREE/usr" ] || { echo "no tree at $TREE (see the header of this script)" >&2; exit 2; }

rm -rf "$WORK"; mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT
CFG=$WORK/empty.toml
echo "log-dir = \"$WORK/logs\"" > "$CFG"
R="$RESCUE --config $CFG -q"

size_mb=$(du -sm --apparent-size "$TREE" | cut -f1)
files=$(find "$TREE" -xdev | wc -l)
echo "tree: $TREE, $size_mb MB apparent, $files entries, $(nproc) CPUs, runs: $RUNS" >&2
# Warm the page cache so every command reads from memory alike.
tar -C "$TREE" -cf - . > /dev/null

# run NAME OUTPUT-FILE-OR-EMPTY PREP-CMD CMD: median wall seconds, max RSS, output size
declare -A WALL RSS SIZE
run() {
  local name=$1 out=$2 prep=$3 cmd=$4 times=() rss=0
  for _ in $(seq "$RUNS"); do
    eval "$prep"
    sync
    /usr/bin/time -f "%e %M" -o "$WORK/time" bash -c "$cmd" 2>"$WORK/err" || { cat "$WORK/err" >&2; echo "FAILED: $cmd" >&2; exit 1; }
    read -r wall kb < "$WORK/time"
    times+=("$wall"); (( kb > rss )) && rss=$kb
  done
  WALL[$name]=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p")
  RSS[$name]=$((rss / 1024))
  if [ -n "$out" ]; then SIZE[$name]=$(( $(stat -c %s "$out") / 1000000 )); else SIZE[$name]=""; fi
  echo "  $name: ${WALL[$name]} s, ${RSS[$name]} MiB peak RSS ${SIZE[$name]:+, ${SIZE[$name]} MB}" >&2
}

C="create"; X="extract"
echo "create:" >&2
run "tar -cf - > /dev/null (read limit)" "" ":" "tar -C '$TREE' -cf - . > /dev/null"
run "tar -czf" "$WORK/gnu.tar.gz" "rm -f $WORK/gnu.tar.gz" "tar -C '$TREE' -czf $WORK/gnu.tar.gz ."
run "tar -cf - | zstd -T0 -3" "$WORK/gnu.tar.zst" "rm -f $WORK/gnu.tar.zst" "tar -C '$TREE' -cf - . | zstd -q -T0 -3 > $WORK/gnu.tar.zst"
run "tar -cf - | pigz" "$WORK/pigz.tar.gz" "rm -f $WORK/pigz.tar.gz" "tar -C '$TREE' -cf - . | pigz > $WORK/pigz.tar.gz"
run "rescue archive create --compress zstd" "$WORK/r.tar.zst" "rm -f $WORK/r.tar.zst" "$R archive create -C '$TREE' . -o $WORK/r.tar.zst --compress zstd"
run "rescue archive create --compress gzip" "$WORK/r.tar.gz" "rm -f $WORK/r.tar.gz" "$R archive create -C '$TREE' . -o $WORK/r.tar.gz --compress gzip"

echo "extract:" >&2
T=$WORK/target
run "tar -xzf" "" "rm -rf $T; mkdir $T" "tar -C $T -xzf $WORK/gnu.tar.gz"
run "zstd -dc | tar -xf -" "" "rm -rf $T; mkdir $T" "zstd -dc -T0 $WORK/gnu.tar.zst | tar -C $T -xf -"
run "rescue archive extract (zstd)" "" "rm -rf $T; mkdir $T" "$R archive extract $WORK/r.tar.zst --target $T"
run "rescue archive extract (gzip)" "" "rm -rf $T; mkdir $T" "$R archive extract $WORK/r.tar.gz --target $T"
rm -rf "$T"

base=${WALL["tar -czf"]}
ratio() { awk -v b="$base" -v w="$1" 'BEGIN { printf "%.1fx", b / w }'; }
echo
echo "| command | wall s (median of $RUNS) | vs tar -czf | peak RSS MiB | output MB |"
echo "|---|---|---|---|---|"
for n in "tar -cf - > /dev/null (read limit)" "tar -czf" "tar -cf - | zstd -T0 -3" "tar -cf - | pigz" \
         "rescue archive create --compress zstd" "rescue archive create --compress gzip" \
         "tar -xzf" "zstd -dc | tar -xf -" "rescue archive extract (zstd)" "rescue archive extract (gzip)"; do
  echo "| \`$n\` | ${WALL[$n]} | $(ratio "${WALL[$n]}") | ${RSS[$n]} | ${SIZE[$n]} |"
done
echo
echo "tree: $size_mb MB apparent, $files entries; $(nproc) CPUs; $(date -u +%Y-%m-%d)"
