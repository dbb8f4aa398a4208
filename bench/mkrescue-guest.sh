#!/bin/bash
# shellcheck disable=SC2016,SC2012
# Benchmark: `rear mkrescue` (Debian 12's rear 2.7, OUTPUT=ISO) against
# `rescue mkrescue --output iso` on the SAME Debian 12 guest with the same
# (the guest's own) kernel, side by side in one run, under qemu TCG.
#
#   bench/mkrescue-guest.sh [ROUNDS]     (as root; release build: cargo build --release)
#
# rear and the packages it needs that the test guest lacks are downloaded on
# the host (`apt-get download`, resolved against the guest's dpkg status) and
# installed in the guest with dpkg (the guest has no network). rear runs with
# its defaults (all modules, gzip initrd) except BACKUP=REQUESTRESTORE (only the
# rescue system is built) and BOOTLOADER=GRUB2 (the guest's root disk has no
# boot loader to detect). rescue builds from layouts/bios-gpt-ext4.toml with
# its defaults. Rounds alternate the two. Prints a markdown table.
set -euo pipefail
ROUNDS=${1:-1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${RESCUE:-$ROOT/target/release/rescue}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 2; }
"$ROOT/tests/vm/build-guest.sh" >/dev/null
JOB=$(mktemp -d /var/tmp/rescue-bench-guest.XXXXXX)
# rear and what `apt-get install rear` would add to the guest, downloaded on the host.
"$ROOT/tests/vm/fetch-debs.sh" "$JOB/debs" rear >/dev/null
cp "$ROOT/layouts/bios-gpt-ext4.toml" "$JOB/layout.toml"

cat > "$JOB/run.sh" <<EOF
set -euo pipefail
# A second pass installs what a pre-dependency held back in the first.
dpkg -i /job/debs/*.deb > \$OUT/dpkg.log 2>&1 || dpkg -i /job/debs/*.deb >> \$OUT/dpkg.log 2>&1
mkdir -p /etc/rear /var/tmp/rear-out /var/tmp/rescue-out /var/tmp/rescue-state
# rear insists on a real nameserver (qemu's user-mode DNS; the guest has no network, it is never used).
[ -s /etc/resolv.conf ] || echo 'nameserver 10.0.2.3' > /etc/resolv.conf
cat > /etc/rear/local.conf <<'CONF'
OUTPUT=ISO
OUTPUT_URL=file:///var/tmp/rear-out
BACKUP=REQUESTRESTORE
BOOTLOADER=GRUB2
CONF
printf 'log-dir = "/var/tmp/rescue-state"\nstate-dir = "/var/tmp/rescue-state"\n' > /var/tmp/rescue.toml
t() { local s e; s=\$(date +%s.%N); "\$@" > \$OUT/last.log 2>&1 || { echo "FAILED: \$*" >&2; tail -n 20 \$OUT/last.log >&2; exit 1; }; e=\$(date +%s.%N); echo "\$e - \$s" | bc; }
echo "guest kernel: \$(uname -r); nproc \$(nproc); mem \$(free -m | awk '/Mem/ {print \$2}') MiB" > \$OUT/results
for r in \$(seq $ROUNDS); do
  w=\$(t rear mkrescue); echo "rear \$w" >> \$OUT/results
  cp \$OUT/last.log \$OUT/rear.log
  w=\$(t /job/rescue -q --config /var/tmp/rescue.toml mkrescue --output iso --layout /job/layout.toml --output-dir /var/tmp/rescue-out); echo "rescue \$w" >> \$OUT/results
done
echo "rear-iso \$(stat -c %s /var/tmp/rear-out/*/*.iso)" >> \$OUT/results
echo "rear-initrd \$(grep -o 'initrd.cgz with gzip default compression ([0-9]* bytes' /var/log/rear/rear-*.log | tail -n1 | grep -o '[0-9]* bytes' | cut -d' ' -f1)" >> \$OUT/results
echo "rescue-iso \$(stat -c %s /var/tmp/rescue-out/*.iso)" >> \$OUT/results
echo "rescue-initrd \$(xorriso -indev /var/tmp/rescue-out/*.iso -find / -name 'initrd*' -exec lsdl -- 2>/dev/null | awk '/initrd/ {print \$5; exit}')" >> \$OUT/results
EOF

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$ROOT/tests/vm/run-guest.sh" --rescue "$BIN" --timeout $((3600 * ROUNDS)) --mem 2048 "$JOB" >/dev/null ||
  { echo "the guest job failed; kept $JOB:"; tail -n 20 "$JOB"/out/*.log "$JOB/out/results" 2>/dev/null; exit 3; }
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
R=$JOB/out/results
head -n1 "$R"
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
RW=$(awk '$1=="rear" {print $2}' "$R" | median)
SW=$(awk '$1=="rescue" {print $2}' "$R" | median)
mib() { awk -v k="$1" '$1==k {printf "%.1f", $2/1048576}' "$R"; }
echo
echo "| command (in the guest) | wall s (median of $ROUNDS) | initrd MiB | ISO MiB |"
echo "|---|---|---|---|"
printf '| `rear mkrescue` | %.1f | %s | %s |\n' "$RW" "$(mib rear-initrd)" "$(mib rear-iso)"
printf '| `rescue mkrescue --output iso` | %.1f | %s | %s |\n' "$SW" "$(mib rescue-initrd)" "$(mib rescue-iso)"
echo
echo "rear / rescue: wall $(echo "scale=1; $RW / $SW" | bc)x," \
  "ISO $(awk '$1=="rear-iso" {a=$2} $1=="rescue-iso" {b=$2} END {printf "%.1f", a/b}' "$R")x," \
  "initrd $(awk '$1=="rear-initrd" {a=$2} $1=="rescue-initrd" {b=$2} END {printf "%.1f", a/b}' "$R")x"
echo "raw: $(grep -E '^(rear|rescue) ' "$R" | tr '\n' ';')"
rm -rf "$JOB"
