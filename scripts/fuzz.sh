#!/bin/bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of what reads untrusted
# input: the archive reader (list, verify, extract into a temporary
# directory), the layout descriptor parser and the config parser.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#   SECONDS  how long each target runs (default 60)
#   TARGET   archive, layout, config (default: all three)
#
# Installs cargo-fuzz from crates.io when missing. Works on the stable
# toolchain: libFuzzer's coverage instrumentation (sancov) is a stable codegen
# option; only the sanitizers need nightly, so the targets build with
# `--sanitizer none` (Rust's own checks -- bounds, overflow, debug assertions
# -- stay on). Seeds: tests/fixtures/fuzz/TARGET/; what a run learns stays in
# fuzz/corpus/TARGET/ for the next run. Exits non-zero when a target crashes
# (panic, abort, a run over 10 s, over 2 GiB of memory); the input is then in
# fuzz/artifacts/TARGET/, and `cargo fuzz run --sanitizer none --fuzz-dir fuzz
# TARGET FILE` replays it.
set -euo pipefail

SECS=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(archive layout config)
cd "$(dirname "$0")/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz (cargo install cargo-fuzz)" >&2
  cargo install --locked cargo-fuzz --version '^0.13'
fi
command -v c++ >/dev/null || { echo "fuzz: libFuzzer needs a C++ compiler: apt-get install g++" >&2; exit 2; }

FUZZ=(cargo fuzz)
"${FUZZ[@]}" build --fuzz-dir fuzz --sanitizer none
failed=()
for t in "${TARGETS[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  echo "fuzz: $t for ${SECS} s" >&2
  if ! "${FUZZ[@]}" run --fuzz-dir fuzz --sanitizer none "$t" "fuzz/corpus/$t" "tests/fixtures/fuzz/$t" -- \
      -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2> "fuzz/$t.log"; then
    failed+=("$t")
    tail -n 40 "fuzz/$t.log" >&2
  fi
  grep -E "^stat::(number_of_executed_units|new_units_added|peak_rss_mb)" "fuzz/$t.log" | sed "s/^/fuzz: $t: /" >&2 || true
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: CRASH in ${failed[*]}: the inputs are in fuzz/artifacts/" >&2
  exit 1
fi
echo "fuzz: no crash in ${TARGETS[*]} (${SECS} s each)" >&2
