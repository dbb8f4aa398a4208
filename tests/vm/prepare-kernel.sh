#!/bin/bash
# Unpack Debian 12's current kernel package (vmlinuz + all modules) into the
# test cache, once. Prints the directory: DIR/boot/vmlinuz-VER, DIR/lib/modules/VER.
# The host has no kernel file of its own (monolithic VM kernel), so image and
# VM tests use this one. Safe to run concurrently (flock).
set -euo pipefail
CACHE=${RESCUE_TEST_CACHE:-/var/cache/rescue-test}
mkdir -p "$CACHE"
exec 9>"$CACHE/kernel.lock"
flock 9
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
if [ -z "$pkg" ]; then
  apt-get update -qq
  pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
fi
dir="$CACHE/kernel/$pkg"
if [ ! -e "$dir/.done" ]; then
  rm -rf "$dir"; mkdir -p "$dir"
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download -qq "$pkg")
  dpkg -x "$tmp"/"$pkg"_*.deb "$dir"
  ver=${pkg#linux-image-}
  depmod -b "$dir" "$ver" 2>/dev/null || true
  touch "$dir/.done"
fi
echo "$dir"
