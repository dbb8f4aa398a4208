#!/bin/bash
# Build one portable `rescue`: a static glibc executable (no dynamic loader,
# no shared libraries), which runs unchanged on Debian 12 and 13 and inside
# their rescue images. A musl build would need the rust-std of the
# x86_64-unknown-linux-musl target, which Debian does not package for amd64.
#
# `--target` keeps the static flags away from build scripts and proc macros
# (which must stay dynamic) and puts the result in its own directory:
#   target/x86_64-unknown-linux-gnu/release/rescue
# Usage: scripts/build-static.sh [extra cargo build arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" cargo build --release --locked --target "$target" "$@"
bin=target/$target/release/rescue
# Refuse a result that still needs the dynamic loader.
if file -L "$bin" | grep -q 'dynamically linked'; then
  echo "build-static: $bin is dynamically linked: $(file -L "$bin")" >&2
  exit 1
fi
echo "$bin"
