#!/bin/bash
# Quick start, step 2 (and what CI runs): install what the tests need, then
# run the test suite. Run as root on Debian 12: loop devices and mounts need it.
#
#   scripts/test.sh          the always-run set (unit, loop-device integration, VM smoke)
#   scripts/test.sh --full   everything, including every VM scenario (long)
set -euo pipefail
cd "$(dirname "$0")/.."
FULL=0
[ "${1:-}" = "--full" ] && FULL=1
bash scripts/install-deps.sh
export RUST_BACKTRACE=1
# Loop-device tests mount and partition: they share the host's loop driver,
# so keep test binaries' own threads few.
cargo build --all-targets
if [ "$FULL" = 1 ]; then
  # Every VM scenario and the tests ignored by default (long VM runs).
  export RESCUE_FULL_TESTS=1
  cargo test --all-targets -- --test-threads=2 --include-ignored
else
  cargo test --all-targets -- --test-threads=2
fi
