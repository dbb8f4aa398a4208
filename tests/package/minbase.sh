#!/bin/bash
# A minimal Debian 12 tree (debootstrap --variant=minbase bookworm), made once
# and cached as a tarball; prints the tarball's path. For tests/package.rs:
# the Debian package is installed into a fresh copy of it with apt.
set -euo pipefail
CACHE=${RESCUE_TEST_CACHE:-/var/cache/rescue-test}
here=$(cd "$(dirname "$0")" && pwd)
# The guest builder's mirror lookup (the host's own Debian archive).
# shellcheck source=../vm/suite-key.sh
. "$here/../vm/suite-key.sh"
MIRROR=${RESCUE_GUEST_MIRROR:-$(host_mirror)}
tarball=$CACHE/package/bookworm-minbase.tar.zst
mkdir -p "$CACHE/package"
exec 9>"$CACHE/package/build.lock"
flock 9
if [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null || { echo "minbase: debootstrap is missing: apt-get install debootstrap" >&2; exit 2; }
  work=$(mktemp -d "$CACHE/package/build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  debootstrap --variant=minbase bookworm "$work/tree" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
  tar -C "$work/tree" --numeric-owner -I 'zstd -T0 -3' -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi
echo "$tarball"
