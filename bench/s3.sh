#!/bin/bash
# S3 throughput: rescue against s3cmd (Debian's reference client) moving the
# same archive to and from the same Ceph RADOS Gateway, in one run. Prints a
# markdown table for docs/benchmarks.md: median wall seconds of RUNS runs,
# MB/s of the archive's bytes, and each rescue command as a ratio to what a
# copy-then-transfer would take with s3cmd.
#
#   upload   rescue mkbackuponly        tree -> archive -> multipart upload, streamed
#            rescue archive create      tree -> local archive file (the staging step)
#            s3cmd put                  that same archive (downloaded from the bucket) -> S3
#   restore  rescue restoreonly         S3 -> extract, streamed
#            s3cmd get                  the same archive -> local file
#            rescue archive extract     local file -> tree (the second step)
# Both clients use 16 MiB parts (rescue's default part-size-mib, s3cmd
# --multipart-chunk-size-mb=16) over plain http on 127.0.0.1.
#
# Usage: bench/s3.sh TREE [RUNS]
#   TREE  a directory tree to back up, e.g. a debootstrap tree (bench/archive.sh)
#   RUNS  default 3; commands run round-robin, so load changes hit all alike
# Environment: RESCUE (default target/release/rescue); S3_ENV, the s3.env of a
# running gateway (tests/s3/ceph-rgw.sh start DIR [PORT]); without it one is
# set up in the work directory on RGW_PORT (default 17480, beside the S3 tests'
# and the VM scenario's 7480) and stopped at exit. WORK (default
# /var/tmp/rescue-bench-s3). Needs root, s3cmd and the packages of
# tests/s3/ceph-rgw.sh (scripts/install-deps.sh).
set -euo pipefail

TREE=${1:?usage: bench/s3.sh TREE [RUNS]}
RUNS=${2:-3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
RESCUE=${RESCUE:-$HERE/target/release/rescue}
WORK=${WORK:-/var/tmp/rescue-bench-s3}
[ -x "$RESCUE" ] || { echo "no rescue binary at $RESCUE: run cargo build --release" >&2; exit 2; }
[ -d "$TREE" ] || { echo "no tree at $TREE" >&2; exit 2; }
command -v s3cmd >/dev/null || { echo "s3cmd is missing: apt-get install s3cmd" >&2; exit 2; }

rm -rf "$WORK"; mkdir -p "$WORK"
own_rgw=""
cleanup() {
  if [ -n "$own_rgw" ]; then "$HERE/tests/s3/ceph-rgw.sh" stop "$own_rgw" || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
if [ -z "${S3_ENV:-}" ]; then
  own_rgw=$WORK/rgw
  S3_ENV=$("$HERE/tests/s3/ceph-rgw.sh" start "$own_rgw" "${RGW_PORT:-17480}")
fi
# shellcheck source=/dev/null
. "$S3_ENV"
cred_dir=$(dirname "$S3_ENV")
bucket=rescue-plain prefix=bench-$$

# rescue: the tree as the one recorded filesystem, mounted at /.
cat >"$WORK/layout.toml" <<'EOF'
version = 1

[host]
hostname = "bench"
kernel = "6.1.0-bench-amd64"
arch = "x86_64"
firmware = "bios"
captured-at = "2026-12-02T00:00:00Z"
rescue-version = "0.1.0"

[[disk]]
name = "vdz"
path = "/dev/vdz"
size = 10737418240
table = "gpt"
disk-guid = "0E1D2C3B-4A59-4867-9F8E-7D6C5B4A3929"

[[partition]]
name = "vdz1"
disk = "vdz"
number = 1
start = 2048
size = 20969439
type = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
uuid = "3B4C5D6E-7F8A-4B9C-8D0E-2F3A4B5C6D7F"

[[filesystem]]
device = "vdz1"
type = "ext4"
uuid = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6e"

[[mount]]
path = "/"
device = "vdz1"
source = "UUID=9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6e"
options = "defaults"

[bootloader]
kind = "none"
EOF
cat >"$WORK/rescue.toml" <<EOF
log-dir = "$WORK/log"
state-dir = "$WORK/state"
[backup]
url = "s3://$bucket/$prefix"
keep = 100
[backup.s3]
endpoint = "$S3_ENDPOINT"
path-style = true
credentials-file = "$cred_dir/write.cred"
recover-key-from = "$cred_dir/read.cred"
part-size-mib = 16
EOF
host=${S3_ENDPOINT#http://}
cat >"$WORK/s3cmd.cfg" <<EOF
[default]
access_key = $S3_WRITE_KEY
secret_key = $S3_WRITE_SECRET
host_base = $host
host_bucket = $host
use_https = False
signature_v2 = False
bucket_location = us-east-1
multipart_chunk_size_mb = 16
progress_meter = False
EOF
R() { "$RESCUE" --config "$WORK/rescue.toml" -q "$@"; }
S() { s3cmd -c "$WORK/s3cmd.cfg" --no-progress "$@" >/dev/null; }
newest() { # the key of the newest archive rescue uploaded
  s3cmd -c "$WORK/s3cmd.cfg" ls "s3://$bucket/$prefix/bench/" | awk '{print $4}' | grep '\.tar\.zst$' | sort | tail -n1
}

files=$(find "$TREE" -xdev | wc -l)
size_mb=$(du -sm --apparent-size "$TREE" | cut -f1)
tar -C "$TREE" -cf - . >/dev/null # warm the page cache
echo "tree: $TREE, $size_mb MB apparent, $files entries; $(nproc) CPUs; load at start: $(cut -d' ' -f1-3 /proc/loadavg); runs: $RUNS" >&2

declare -A T
t() { # name command...: run, record the wall seconds
  local name=$1 s e; shift
  sync; s=$(date +%s.%N); "$@"; sync; e=$(date +%s.%N)
  T[$name]+="$(echo "$e - $s" | bc) "
}
for r in $(seq "$RUNS"); do
  rm -rf "$WORK/x" "$WORK/y" "$WORK/local.tar.zst" "$WORK/got.tar.zst"; mkdir -p "$WORK/x" "$WORK/y"
  sleep 1 # a new backup name (the start time, in seconds)
  t up-rescue R mkbackuponly --layout "$WORK/layout.toml" --root "$TREE"
  key=$(newest)
  t archive-create R archive create -C "$TREE" . -o "$WORK/local.tar.zst"
  t get-s3cmd S get "$key" "$WORK/got.tar.zst"
  t up-s3cmd S put "$WORK/got.tar.zst" "s3://$bucket/$prefix/s3cmd/run$r.tar.zst"
  t restore-rescue R restoreonly --layout "$WORK/layout.toml" --target "$WORK/x"
  t archive-extract R archive extract "$WORK/got.tar.zst" --target "$WORK/y"
  bytes=$(stat -c %s "$WORK/got.tar.zst")
  echo "run $r: archive $bytes bytes; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

med() { tr ' ' '\n' <<<"${T[$1]}" | grep . | sort -g | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]}'; }
mbs() { awk -v b="$bytes" -v s="$1" 'BEGIN { printf "%.1f", b / 1e6 / s }'; }
up=$(med up-rescue) create=$(med archive-create) put=$(med up-s3cmd)
restore=$(med restore-rescue) get=$(med get-s3cmd) extract=$(med archive-extract)
staged_up=$(echo "$create + $put" | bc) staged_down=$(echo "$get + $extract" | bc)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "| command | median wall (s) | archive MB/s | ratio |"
echo "|---|---|---|---|"
echo "| \`rescue mkbackuponly\` (archive + upload, streamed) | $up | $(mbs "$up") | $(ratio "$up" "$staged_up") of create + put |"
echo "| \`rescue archive create\` (to a local file) | $create | $(mbs "$create") | |"
echo "| \`s3cmd put\` (the same archive) | $put | $(mbs "$put") | rescue's upload takes $(ratio "$up" "$put") of it |"
echo "| create + put (staged) | $staged_up | $(mbs "$staged_up") | 1 |"
echo "| \`rescue restoreonly\` (download + extract, streamed) | $restore | $(mbs "$restore") | $(ratio "$restore" "$staged_down") of get + extract |"
echo "| \`s3cmd get\` (the same archive) | $get | $(mbs "$get") | rescue's restore takes $(ratio "$restore" "$get") of it |"
echo "| \`rescue archive extract\` (from the local file) | $extract | $(mbs "$extract") | |"
echo "| get + extract (staged) | $staged_down | $(mbs "$staged_down") | 1 |"
echo "archive: $bytes bytes ($(awk -v b="$bytes" 'BEGIN { printf "%.0f", b / 1048576 }') MiB)"
