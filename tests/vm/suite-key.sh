#!/bin/bash
# Print a short key for what a Debian suite on a mirror holds today: the hash of
# its InRelease entry for main/binary-amd64/Packages.xz. The entry changes when
# the suite's package set changes (a point release, a new kernel ABI), and only
# then, so a cache keyed by it is rebuilt exactly when a fresh build would
# differ. Sourced by build-guest.sh; usable alone: suite-key.sh SUITE MIRROR.
#
# When the mirror cannot be reached, prints nothing and returns 1: the caller
# decides whether an older cache is acceptable.
# host_mirror: the Debian mirror the host's apt uses (every suite comes from it).
suite_key() {
  local suite=$1 mirror=$2 release
  release=$(wget -q -T 20 -t 2 -O- "$mirror/dists/$suite/InRelease" 2>/dev/null) || return 1
  # The SHA256 section lists "HASH SIZE main/binary-amd64/Packages.xz". awk reads
  # to the end: leaving early would give printf SIGPIPE, a failure under pipefail.
  printf '%s\n' "$release" |
    awk '/^SHA256:/{s=1; next} /^[^ ]/{s=0} s && $3=="main/binary-amd64/Packages.xz" && !found {print $1; found=1} END{exit !found}' |
    cut -c1-16
}
host_mirror() {
  # The first Debian archive URI the host uses (deb822 .sources or one-line .list).
  local f u
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    u=$(awk '/^URIs:/{for(i=2;i<=NF;i++) if ($i !~ /security/) {print $i; exit}}' "$f")
    [ -n "$u" ] && { echo "$u"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -e "$f" ] || continue
    u=$(awk '$1=="deb" && $0 !~ /security/ {for(i=2;i<=NF;i++) if ($i ~ /^(http|https|file):/) {print $i; exit}}' "$f")
    [ -n "$u" ] && { echo "$u"; return; }
  done
  echo http://deb.debian.org/debian
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  (($# == 2)) || { echo "usage: suite-key.sh SUITE MIRROR" >&2; exit 2; }
  suite_key "$1" "$2"
fi
