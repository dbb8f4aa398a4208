#!/bin/bash
# Quick start, step 2 (and what CI runs): install what the tests need, then
# run the checks and the test suite. Run as root on Debian 12: loop devices,
# mounts and the VM tests need it.
#
#   scripts/test.sh            the always-run set: fmt, clippy, unit, fixtures,
#                              loop-device integration, image builds and boots,
#                              Bacula, short fuzz runs, VM smoke, scenarios 1 and 2
#   scripts/test.sh --full     everything, including every VM scenario (long)
#   scripts/test.sh --fresh    as if on a new machine: every cache (the test cache
#                              with the guest, sources and kernel, cargo's registry
#                              and target directory) is replaced by an empty one
#                              for this run; the usual caches are left untouched.
#                              Combine with --full. --keep-fresh keeps the fresh
#                              caches afterwards (their path is printed).
#
# Every test binary runs even when one fails (--no-fail-fast); the run ends
# with a summary of each binary's result and every failed test, and exits
# non-zero when anything failed. The whole output is also in $LOG.
set -euo pipefail
cd "$(dirname "$0")/.."
FULL=0 FRESH=0 KEEP_FRESH=0
for a in "$@"; do
  case $a in
    --full) FULL=1 ;;
    --fresh) FRESH=1 ;;
    --keep-fresh) FRESH=1 KEEP_FRESH=1 ;;
    -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown option $a (see --help)" >&2; exit 2 ;;
  esac
done

t_start=$(date +%s)
stamp() { echo "[test.sh $(date -u +%H:%M:%S), +$(($(date +%s) - t_start)) s] $*"; }

if ((FRESH)); then
  fresh=$(mktemp -d /var/tmp/rescue-fresh.XXXXXX)
  export RESCUE_TEST_CACHE=$fresh/test-cache CARGO_TARGET_DIR=$fresh/target
  # cargo and rustc stay the installed toolchain (rustup's proxies in PATH);
  # only cargo's downloads (registry, git, installed tools) start empty.
  export CARGO_HOME=$fresh/cargo-home
  mkdir -p "$CARGO_HOME"
  if ((!KEEP_FRESH)); then trap 'rm -rf "$fresh"' EXIT; fi
  stamp "fresh run: every cache under $fresh"
fi
LOG=${LOG:-$(mktemp /var/tmp/rescue-test.XXXXXX.log)}

stamp "installing system packages (scripts/install-deps.sh)"
bash scripts/install-deps.sh
export RUST_BACKTRACE=1

failed_checks=()
stamp "cargo fmt --check"
cargo fmt --check || failed_checks+=("cargo fmt --check (run: cargo fmt)")
stamp "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings || failed_checks+=("cargo clippy --all-targets -- -D warnings")

stamp "building"
cargo build --all-targets

# Fuzz targets: a short run of each (scripts/fuzz.sh), when they exist.
if [ -x scripts/fuzz.sh ]; then
  stamp "fuzzing (scripts/fuzz.sh ${RESCUE_FUZZ_SECONDS:-60} s a target)"
  scripts/fuzz.sh "${RESCUE_FUZZ_SECONDS:-60}" || failed_checks+=("scripts/fuzz.sh (a fuzz target found a crash; see above)")
fi

# Loop-device tests mount and partition: they share the host's loop driver,
# so keep test binaries' own threads few.
args=(--all-targets --no-fail-fast)
targs=(--test-threads=2)
if ((FULL)); then
  # Every VM scenario and the tests ignored by default (long VM runs).
  export RESCUE_FULL_TESTS=1
  targs+=(--include-ignored)
fi
stamp "cargo test ${args[*]} -- ${targs[*]}  (output also in $LOG)"
set +e
cargo test "${args[@]}" -- "${targs[@]}" 2>&1 | tee "$LOG"
test_status=${PIPESTATUS[0]}
set -e

echo
echo "==================== summary ($(($(date +%s) - t_start)) s in all) ===================="
# One line per test binary: its name and cargo's result line.
awk '
  /^ *Running / { bin = ($2 == "unittests") ? $3 : $2; next }
  /^ *Doc-tests / { bin = "doc-tests " $2; next }
  /^test result:/ { sub(/^test result: /, ""); printf "  %-40s %s\n", bin, $0 }
' "$LOG"
failures=$(grep -E '^test .* \.\.\. FAILED$' "$LOG" | sed -E 's/^test (.*) \.\.\. FAILED$/\1/' || true)
if [ -n "$failures" ]; then
  echo "failed tests:"
  echo "$failures" | sed 's/^/  - /'
fi
if grep -q 'error: .*target.* failed' "$LOG"; then
  echo "failed test binaries (cargo):"
  sed -n '/^error: .*target.* failed/,/^$/p' "$LOG" | grep -E '^\s+`' | sed 's/^ */  - /'
fi
for c in "${failed_checks[@]}"; do echo "failed check: $c"; done
if ((test_status != 0)) || ((${#failed_checks[@]})); then
  echo "RESULT: FAILED (cargo test exit $test_status, ${#failed_checks[@]} failed check(s)); log: $LOG"
  exit 1
fi
echo "RESULT: PASSED; log: $LOG"
