#!/bin/bash
# Build the Debian package rescue_VERSION_amd64.deb into DIR (default target/deb).
# The executable is the normal (dynamically linked) release build: Debian links
# against the system's glibc, so its security updates reach rescue, and
# dpkg-shlibdeps states the libc6 version it needs. Every other file (man pages,
# completions, the systemd units of `rescue schedule`, copyright, changelog,
# control with Depends/Recommends/Suggests) comes from `rescue package-tree`,
# i.e. from the code itself (src/workflow/package.rs).
# Then lintian checks the result (warnings explained in docs/package.md).
# Usage: [RESCUE_PACKAGE_BIN=FILE] scripts/build-deb.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-target/deb}")
for t in dpkg-deb dpkg-shlibdeps fakeroot file; do
  command -v "$t" >/dev/null || { echo "build-deb: $t is missing: apt-get install dpkg-dev fakeroot file" >&2; exit 2; }
done
# RESCUE_PACKAGE_BIN packages an executable built already (e.g. the static one of
# scripts/build-static.sh) instead of building the normal one.
bin=${RESCUE_PACKAGE_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --locked
  bin=target/release/rescue
fi
version=$("$bin" --version | awk '{print $2}')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rescue
install -D -m 0755 "$bin" "$root/usr/sbin/rescue"
# Debian ships executables without debug sections (lintian: unstripped-binary-or-object).
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/sbin/rescue"
# dpkg-shlibdeps wants a source package around the file.
mkdir -p "$work/debian"
printf 'Source: rescue\n\nPackage: rescue\nArchitecture: any\n' >"$work/debian/control"
shlibs=""
if ! file -L "$bin" | grep -Eq 'statically linked|static-pie linked'; then
  shlibs=$(cd "$work" && dpkg-shlibdeps -O rescue/usr/sbin/rescue | sed -n 's/^shlibs:Depends=//p')
fi
"$bin" package-tree "$root" --shlibs "$shlibs" >/dev/null
# DEBIAN/md5sums: what `dpkg --verify` checks the installed files against.
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum >DEBIAN/md5sums)
mkdir -p "$out"
deb=$out/rescue_${version}_amd64.deb
fakeroot dpkg-deb -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
if command -v lintian >/dev/null; then
  lintian --info "$deb" >&2 || true
else
  echo "build-deb: lintian is not installed (apt-get install lintian): the package was not checked" >&2
fi
