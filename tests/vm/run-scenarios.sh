#!/bin/bash
# Run several recovery scenarios by run-scenario.sh, PAR at a time (the full
# set without cargo, e.g. with a release executable), and log each result.
#
#   tests/vm/run-scenarios.sh [--rescue BIN] WORKDIR SCENARIO...    (as root)
#
# Environment: PAR (default 1: TCG guests share the cores), and what
# run-scenario.sh reads (RESCUE_SCENARIO_TIMEOUT_SCALE, default 3 here).
# WORKDIR gets SCENARIO/ (run-scenario.sh's work directory), SCENARIO.out and
# .stderr, and sweep.log: one line per start and result, with the load
# average. Exits non-zero when any scenario failed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
rescue=()
if [ "${1:-}" = --rescue ]; then rescue=(--rescue "$2"); shift 2; fi
[ $# -ge 2 ] || { sed -n '2,11p' "$0" >&2; exit 2; }
W=$1; shift
PAR=${PAR:-1}
export RESCUE_SCENARIO_TIMEOUT_SCALE=${RESCUE_SCENARIO_TIMEOUT_SCALE:-3}
mkdir -p "$W"
log() { echo "$(date -u +%T) $* load $(cut -d' ' -f1 /proc/loadavg)" >> "$W/sweep.log"; }
one() {
  local s=$1 t0 r
  t0=$(date +%s)
  log "start $s"
  if "$HERE/run-scenario.sh" "${rescue[@]}" "$s" "$W/$s" > "$W/$s.out" 2> "$W/$s.stderr"; then r=PASS; else r=FAIL; fi
  log "$r $s $(($(date +%s) - t0)) s"
}
for s in "$@"; do
  while [ "$(jobs -rp | wc -l)" -ge "$PAR" ]; do sleep 5; done
  one "$s" &
  sleep 20
done
wait
log "all done"
cat "$W/sweep.log"
! grep -q ' FAIL ' "$W/sweep.log"
