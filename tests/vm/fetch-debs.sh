#!/bin/bash
# Download (once, cached) the .deb files that `apt-get install PACKAGE...`
# would add to a debootstrapped guest tree, for installing them with dpkg inside
# a guest that has no network (test guest, scenario source systems).
#
# Usage: fetch-debs.sh [--suite SUITE] DEST PACKAGE...
#   Resolves the packages against the dpkg status of the cached rootfs of SUITE
#   (default bookworm; build-guest.sh --rootfs SUITE; the scenario sources are
#   built from it), with --no-install-recommends, downloads them and hard-links
#   (or copies) them into DEST/. Prints the number of files. bookworm comes
#   from the host's apt sources; another suite from an apt index of its own
#   (CACHE/apt-SUITE/, the host's mirror), refreshed when its rootfs changes.
# In the guest: dpkg -i DEST/*.deb, run twice (a second pass installs what a
#   pre-dependency held back in the first); tests/vm/source/install-debs does it.
# Cache: ${RESCUE_TEST_CACHE:-/var/cache/rescue-test}/debs/KEY/ (KEY = hash of
# the rootfs name and the package list). flock'ed.
set -euo pipefail
die() { echo "fetch-debs: ERROR: $*" >&2; exit 1; }
suite=bookworm
if [ "${1:-}" = --suite ]; then suite=$2; shift 2; fi
(($# >= 2)) || die "usage: fetch-debs.sh [--suite SUITE] DEST PACKAGE..."
dest=$1; shift
here=$(cd "$(dirname "$0")" && pwd)
CACHE=${RESCUE_TEST_CACHE:-/var/cache/rescue-test}
rootfs=$("$here/build-guest.sh" --rootfs "$suite") || die "building the $suite debootstrap tarball failed (see above)"
key=$( { basename "$rootfs"; printf '%s\n' "$@" | sort; } | sha256sum | cut -c1-16)
dir="$CACHE/debs/$key"
mkdir -p "$CACHE/debs"
exec 8>"$CACHE/debs/lock"
flock 8
if [ ! -e "$dir/.done" ]; then
  work=$(mktemp -d "$CACHE/debs/tmp.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  tar -I zstd -xf "$rootfs" -C "$work" ./var/lib/dpkg/status
  apt=()
  if [ "$suite" != bookworm ]; then
    # shellcheck source=suite-key.sh
    . "$here/suite-key.sh"
    a="$CACHE/apt-$suite"
    apt=(-o Dir::Etc::SourceList="$a/sources.list" -o Dir::Etc::SourceParts=/nonexistent
         -o Dir::State::Lists="$a/lists" -o Dir::Cache="$a/cache")
    if [ "$(cat "$a/rootfs" 2>/dev/null)" != "$(basename "$rootfs")" ]; then
      mkdir -p "$a/lists/partial" "$a/cache/archives/partial"
      echo "deb ${RESCUE_GUEST_MIRROR:-$(host_mirror)} $suite main" >"$a/sources.list"
      apt-get "${apt[@]}" -qq update || die "apt-get update of $suite ($a/sources.list) failed"
      basename "$rootfs" >"$a/rootfs"
    fi
  fi
  pkgs=$(apt-get "${apt[@]}" -s -o Dir::State::status="$work/var/lib/dpkg/status" --no-install-recommends install "$@" 2>"$work/apt.err" |
    awk '/^Inst / {print $2}') || true
  [ -n "$pkgs" ] || { cat "$work/apt.err" >&2; die "apt-get could not resolve '$*' against the guest (is the host's apt index current? apt-get update)"; }
  mkdir -p "$work/debs"
  # shellcheck disable=SC2086 # one word a package
  (cd "$work/debs" && apt-get "${apt[@]}" download $pkgs >/dev/null 2>"$work/dl.err") || { cat "$work/dl.err" >&2; die "apt-get download failed"; }
  rm -rf "$dir"
  mv "$work/debs" "$dir"
  touch "$dir/.done"
fi
mkdir -p "$dest"
for f in "$dir"/*.deb; do ln -f "$f" "$dest/" 2>/dev/null || cp "$f" "$dest/"; done
find "$dest" -maxdepth 1 -name '*.deb' | wc -l
