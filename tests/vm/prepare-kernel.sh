#!/bin/bash
# Unpack Debian 12's current kernel package (vmlinuz + all modules) into the
# test cache, once per package version. Prints the directory:
# DIR/boot/vmlinuz-VER, DIR/lib/modules/VER. Tests read VER from that
# directory, never from their own text: Debian's kernel moves on.
# The host has no kernel file of its own (monolithic VM kernel), so image and
# VM tests use this one. Safe to run concurrently (flock).
# Cache: ${RESCUE_TEST_CACHE:-/var/cache/rescue-test}/kernel/PACKAGE_VERSION/,
# keyed by the package and its Debian version as apt resolves them now.
set -euo pipefail
CACHE=${RESCUE_TEST_CACHE:-/var/cache/rescue-test}
mkdir -p "$CACHE"
exec 9>"$CACHE/kernel.lock"
flock 9
resolve() {
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [ -n "$pkg" ] || return 1
  version=$(apt-cache show --no-all-versions "$pkg" 2>/dev/null | awk '/^Version:/{print $2; exit}')
  [ -n "$version" ]
}
if ! resolve; then
  apt-get update -qq
  resolve || { echo "prepare-kernel: apt cannot resolve linux-image-amd64 (check /etc/apt/sources.list*)" >&2; exit 1; }
fi
dir="$CACHE/kernel/${pkg}_${version}"
if [ ! -e "$dir/.done" ]; then
  rm -rf "$dir"; mkdir -p "$dir"
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download -qq "$pkg=$version")
  dpkg -x "$tmp"/"$pkg"_*.deb "$dir"
  # The module directory's name is the kernel release, read from what was unpacked.
  ver=$(ls "$dir/lib/modules")
  [ "$(echo "$ver" | wc -l)" = 1 ] || { echo "prepare-kernel: expected one module tree in $pkg, found: $ver" >&2; exit 1; }
  depmod -b "$dir" "$ver" 2>/dev/null || true
  touch "$dir/.done"
fi
echo "$dir"
