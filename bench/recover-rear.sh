#!/bin/bash
# Benchmark: recovery scenario 1 (bios-ext4: BIOS, GPT, swap, ext4 root, the
# backup inside the ISO) with rescue and with Debian's rear 2.7, back to back on
# the same cached source image with the same test data, under qemu TCG
# (tests/vm/run-scenario.sh, RESCUE_SCENARIO_TOOL=rear for rear).
#
#   bench/recover-rear.sh [WORKDIR]     (as root; release build: cargo build --release)
#
# WORKDIR (default /var/tmp/rescue-recover-rear) gets rescue/ and rear/, the
# scenario work directories (serial logs, `times`, run.log). Prints a markdown
# table: mkbackup wall time, ISO size, recovery times, and rear / rescue.
# Environment: RESCUE (the binary; default target/release/rescue),
# TOOLS (default "rescue rear": which to run; the table reads both directories,
# so one can be rerun alone), RESCUE_SCENARIO_TIMEOUT_SCALE (default 3: rear's
# mkbackup and recovery take 10-15 min each under TCG on a loaded machine).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=${1:-/var/tmp/rescue-recover-rear}
BIN=${RESCUE:-$ROOT/target/release/rescue}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 2; }
export RESCUE_SCENARIO_TIMEOUT_SCALE=${RESCUE_SCENARIO_TIMEOUT_SCALE:-3}
mkdir -p "$W"
for tool in ${TOOLS-rescue rear}; do
  rm -rf "${W:?}/$tool"
  echo "load-before $(cut -d' ' -f1-3 /proc/loadavg)" >"$W/$tool.load"
  echo "$(date -u +%T) $tool: tests/vm/run-scenario.sh bios-ext4 $W/$tool" >&2
  RESCUE_SCENARIO_TOOL=$tool "$ROOT/tests/vm/run-scenario.sh" --rescue "$BIN" bios-ext4 "$W/$tool" 2>"$W/$tool.stderr" ||
    { echo "$tool FAILED:" >&2; tail -n 30 "$W/$tool.stderr" >&2; }
  echo "load-after $(cut -d' ' -f1-3 /proc/loadavg)" >>"$W/$tool.load"
done

# get TOOL KEY: a value from TOOL's `times` (empty when the phase did not get there).
get() { awk -v k="$2" '$1==k {v=$2} END {print v}' "$W/$1/times" 2>/dev/null || true; }
sum() { [ -n "$1" ] && [ -n "$2" ] && echo $(($1 + $2)); }
ratio() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1fx", a / b }'; }
mib() { [ -n "$1" ] && awk -v a="$1" 'BEGIN { printf "%.0f", a / 1048576 }'; }
row() {
  local name=$1 a=$2 b=$3
  printf '| %s | %s | %s | %s |\n' "$name" "${a:--}" "${b:--}" "$(ratio "$b" "$a" || echo -)"
}
declare -A v
for tool in rescue rear; do
  v[$tool.mkbackup]=$(get "$tool" mkbackup)
  v[$tool.iso]=$(mib "$(get "$tool" iso-bytes)" || true)
  v[$tool.ok]=$(get "$tool" recover-ok)
  v[$tool.off]=$(get "$tool" recover-boot-and-restore)
  v[$tool.pass]=$(get "$tool" verify-pass)
  v[$tool.rto]=$(sum "${v[$tool.off]}" "${v[$tool.pass]}" || true)
  v[$tool.result]=$(cat "$W/$tool/result" 2>/dev/null || echo "no result")
done
echo
echo "| scenario 1 (bios-ext4) | rescue | rear | rear / rescue |"
echo "|---|---|---|---|"
row 'mkbackup wall s (in the source VM)' "${v[rescue.mkbackup]}" "${v[rear.mkbackup]}"
row 'ISO MiB (rescue system + backup)' "${v[rescue.iso]}" "${v[rear.iso]}"
row 'recovery: ISO boot to "recovered" on the console, s' "${v[rescue.ok]}" "${v[rear.ok]}"
row 'recovery: ISO boot to power-off/reboot, s' "${v[rescue.off]}" "${v[rear.off]}"
row 'recovered disk: boot to RESCUE-SCENARIO-VERIFY PASS, s' "${v[rescue.pass]}" "${v[rear.pass]}"
row 'ISO boot to a verified recovered system, s' "${v[rescue.rto]}" "${v[rear.rto]}"
echo "| result | ${v[rescue.result]} | ${v[rear.result]} | |"
echo
for tool in rescue rear; do
  echo "$tool: load average $(sed -n 's/^load-before //p' "$W/$tool.load" 2>/dev/null) -> $(sed -n 's/^load-after //p' "$W/$tool.load" 2>/dev/null);" \
    "times: $(tr '\n' ' ' 2>/dev/null <"$W/$tool/times")"
done
if [ -f "$W/rescue/recover-report.txt" ]; then
  echo "rescue's recover report:"
  sed 's/^/    /' "$W/rescue/recover-report.txt"
fi
