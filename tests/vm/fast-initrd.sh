#!/bin/bash
# Make the small initrd of tests/vm/guest/fast-init for a tree: busybox and the
# modules that reach the root disk (virtio_pci, virtio_blk, ext4, with what they
# depend on), read from TREE/lib/modules/KVER. fast-init mounts /dev/vda and
# runs the tree's /sbin/init. The same initrd guest-setup.sh makes for the test
# guest; this one serves other trees (tests/package.rs boots a minimal Debian).
# Usage: fast-initrd.sh TREE KVER OUT.img   (TREE must hold /usr/bin/busybox)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
(($# == 3)) || { echo "usage: fast-initrd.sh TREE KVER OUT.img" >&2; exit 2; }
T=$1 kver=$2 out=$3
[ -x "$T/usr/bin/busybox" ] || { echo "fast-initrd: $T has no /usr/bin/busybox: install busybox-static in it" >&2; exit 2; }
[ -d "$T/lib/modules/$kver" ] || { echo "fast-initrd: $T has no /lib/modules/$kver" >&2; exit 2; }
f=$(mktemp -d)
trap 'rm -rf "$f"' EXIT
mkdir -p "$f/bin" "$f/modules"
cp "$T/usr/bin/busybox" "$f/bin/busybox"
install -m 0755 "$here/guest/fast-init" "$f/init"
for m in virtio_pci virtio_blk ext4; do
  modprobe -d "$T" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
done | awk '!seen[$0]++' | while read -r ko; do
  cp "$ko" "$f/modules/"; basename "$ko" >>"$f/modules.order"
done
grep -q '^ext4.ko' "$f/modules.order" || { echo "fast-initrd: ext4 not found among the modules of $kver in $T" >&2; exit 1; }
(cd "$f" && find . | cpio -o -H newc --quiet | gzip -1) >"$out"
