#!/bin/bash
# Quick start, step 1: install the system tools rescue uses, build it, install
# it to /usr/local/sbin, and record this machine's storage layout.
# Run as root on Debian 12. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install a Rust toolchain (rustup, Rust >= 1.85), then run this again" >&2
  exit 2
fi
# cargo's own progress shows (a release build takes a few minutes on 2 cores).
echo "building rescue (cargo build --release --locked)"
cargo build --release --locked
install -m 0755 target/release/rescue /usr/local/sbin/rescue
rescue manpages /usr/local/share/man/man8 >/dev/null
rescue completions bash > /etc/bash_completion.d/rescue 2>/dev/null || true
echo "installed $(rescue --version) to /usr/local/sbin/rescue"
# Record the layout; on a machine with no fixed disk (e.g. a container) say so and stop.
if rescue savelayout; then
  rescue layout show /var/lib/rescue/layout.toml
else
  echo "savelayout failed (see above); rescue is installed, try: rescue dump" >&2
  exit 3
fi
