#!/bin/bash
# A single-node Ceph cluster with a RADOS Gateway (S3) on 127.0.0.1, for the
# S3 tests: one mon, one mgr, one OSD (BlueStore on a sparse file: the host has
# no device-mapper, so no ceph-volume), one radosgw. Everything lives under DIR.
#
#   tests/s3/ceph-rgw.sh start DIR [PORT]   start (set up on first use); prints the env file
#     PORT: the gateway's (default 7480, its monitor on 3300 and 6789); any
#     other PORT puts the monitor on PORT+1 and PORT+2, so that two clusters
#     (the S3 tests and the S3 VM scenario) can run at once.
#   tests/s3/ceph-rgw.sh stop DIR           stop every daemon started from DIR
#
# After `start`, DIR/s3.env holds (shell syntax):
#   S3_ENDPOINT  http://127.0.0.1:PORT
#   S3_BUCKET    a bucket with Object Lock enabled
#   S3_PLAIN_BUCKET  a bucket without Object Lock
#   S3_WRITE_KEY / S3_WRITE_SECRET   the backup user (read and write)
#   S3_READ_KEY / S3_READ_SECRET     a read-only subuser of it
# and DIR/write.cred, DIR/read.cred are credential files in the format
# rescue reads (access-key-id = ..., secret-access-key = ...).
#
# Needs: ceph-mon ceph-mgr ceph-osd radosgw awscli (scripts/install-deps.sh).
set -euo pipefail

cmd=${1:?usage: ceph-rgw.sh start|stop DIR [PORT]}
DIR=$(realpath -m "${2:?usage: ceph-rgw.sh start|stop DIR [PORT]}")
PORT=${3:-7480}
if [ "$PORT" = 7480 ]; then MON_V2=3300 MON_V1=6789; else MON_V2=$((PORT + 1)) MON_V1=$((PORT + 2)); fi
CONF=$DIR/ceph.conf
# Debian's awscli, not one a Python version manager put first in PATH.
AWS=/usr/bin/aws

ceph_() { timeout 60 ceph -c "$CONF" "$@"; }

stop() {
  # Only the daemons whose pid files are under DIR: never anything by name.
  for pidfile in "$DIR"/run/*.pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
}

wait_for() { # seconds what command...
  local secs=$1 what=$2; shift 2
  for _ in $(seq $((secs * 2))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "ceph-rgw.sh: $what did not come up within ${secs}s; see $DIR/log" >&2
  return 1
}

write_conf() {
  local fsid=$1
  cat >"$CONF" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$MON_V2,v1:127.0.0.1:$MON_V1
public network = 127.0.0.0/8
run dir = $DIR/run
pid file = $DIR/run/\$name.pid
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
keyring = $DIR/keyring
auth allow insecure global id reclaim = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 2
mon data avail crit = 1
mon max pg per osd = 1000
osd crush chooseleaf type = 0
mon data = $DIR/mon-\$id
mgr data = $DIR/mgr-\$id
osd data = $DIR/osd-\$id
osd objectstore = bluestore
bluestore block path = $DIR/osd-\$id.img
bluestore block create = true
bluestore block size = 8589934592
bluestore fsck on mkfs = false
osd memory target = 1073741824
bluestore cache autotune = false
bluestore cache size = 268435456
osd op num shards = 1
osd op num threads per shard = 2
mgr initial modules = 

[mgr]
keyring = $DIR/mgr-\$id/keyring

[osd]
keyring = $DIR/osd-\$id/keyring

[client.rgw.a]
keyring = $DIR/rgw-a.keyring
rgw frontends = beast endpoint=127.0.0.1:$PORT
rgw data = $DIR/rgw-a
rgw enable usage log = false
rgw thread pool size = 64
EOF
}

setup() {
  mkdir -p "$DIR"/{run,log}
  local fsid
  fsid=$(uuidgen)
  write_conf "$fsid"
  ceph-authtool --create-keyring "$DIR/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  ceph-authtool "$DIR/mon.keyring" --import-keyring "$DIR/keyring" >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$MON_V2,v1:127.0.0.1:$MON_V1]" "$DIR/monmap" >/dev/null
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/mon.keyring"
  ceph-mon -c "$CONF" -i a
  wait_for 60 "the monitor" ceph_ -s
  ceph_ config set mon auth_allow_insecure_global_id_reclaim false >/dev/null

  mkdir -p "$DIR/mgr-x"
  ceph_ auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' -o "$DIR/mgr-x/keyring"
  ceph-mgr -c "$CONF" -i x

  local osd_uuid id
  osd_uuid=$(uuidgen)
  id=$(ceph_ osd new "$osd_uuid")
  mkdir -p "$DIR/osd-$id"
  ceph_ auth get-or-create "osd.$id" mon 'allow profile osd' mgr 'allow profile osd' osd 'allow *' -o "$DIR/osd-$id/keyring"
  ceph-osd -c "$CONF" -i "$id" --mkfs --osd-uuid "$osd_uuid" 2>>"$DIR/log/mkfs.log"
  ceph-osd -c "$CONF" -i "$id"
  echo "$id" >"$DIR/osd-id"
  wait_for 120 "the OSD" sh -c "ceph -c '$CONF' osd stat | grep -q '1 up'"

  mkdir -p "$DIR/rgw-a"
  ceph_ auth get-or-create client.rgw.a mon 'allow rw' osd 'allow rwx' mgr 'allow rw' -o "$DIR/rgw-a.keyring"
  start_rgw

  local wkey wsecret rkey rsecret
  wkey=RESCUEWRITE$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F)
  wsecret=$(head -c 30 /dev/urandom | base64 | tr -d '/+=' | head -c 40)
  rkey=RESCUEREAD$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F)
  rsecret=$(head -c 30 /dev/urandom | base64 | tr -d '/+=' | head -c 40)
  radosgw-admin -c "$CONF" user create --uid=backup --display-name="rescue backups" \
    --access-key="$wkey" --secret="$wsecret" >/dev/null
  radosgw-admin -c "$CONF" subuser create --uid=backup --subuser=backup:reader --access=read \
    --key-type=s3 --access-key="$rkey" --secret="$rsecret" >/dev/null

  cat >"$DIR/s3.env" <<EOF
S3_ENDPOINT=http://127.0.0.1:$PORT
S3_BUCKET=rescue-locked
S3_PLAIN_BUCKET=rescue-plain
S3_WRITE_KEY=$wkey
S3_WRITE_SECRET=$wsecret
S3_READ_KEY=$rkey
S3_READ_SECRET=$rsecret
EOF
  printf 'access-key-id = "%s"\nsecret-access-key = "%s"\n' "$wkey" "$wsecret" >"$DIR/write.cred"
  printf 'access-key-id = "%s"\nsecret-access-key = "%s"\n' "$rkey" "$rsecret" >"$DIR/read.cred"
  chmod 600 "$DIR/write.cred" "$DIR/read.cred" "$DIR/s3.env"

  local aws=(env AWS_ACCESS_KEY_ID="$wkey" AWS_SECRET_ACCESS_KEY="$wsecret" AWS_DEFAULT_REGION=us-east-1
    "$AWS" --endpoint-url "http://127.0.0.1:$PORT")
  "${aws[@]}" s3api create-bucket --bucket rescue-locked --object-lock-enabled-for-bucket >/dev/null
  "${aws[@]}" s3api create-bucket --bucket rescue-plain >/dev/null
  touch "$DIR/ready"
}

start_rgw() {
  radosgw -c "$CONF" -n client.rgw.a
  wait_for 180 "radosgw on 127.0.0.1:$PORT" curl -sf -o /dev/null "http://127.0.0.1:$PORT/"
}

start() {
  for t in ceph-mon ceph-mgr ceph-osd radosgw radosgw-admin ceph-authtool monmaptool $AWS curl uuidgen; do
    command -v "$t" >/dev/null || { echo "ceph-rgw.sh: $t is missing: run scripts/install-deps.sh (ceph-mon ceph-mgr ceph-osd radosgw awscli curl)" >&2; exit 1; }
  done
  if [ -e "$DIR/ready" ]; then
    # Set up before: start the daemons again on the same state.
    stop
    ceph-mon -c "$CONF" -i a
    wait_for 60 "the monitor" ceph_ -s
    ceph-mgr -c "$CONF" -i x
    local id
    id=$(cat "$DIR/osd-id")
    ceph-osd -c "$CONF" -i "$id"
    wait_for 120 "the OSD" sh -c "ceph -c '$CONF' osd stat | grep -q '1 up'"
    start_rgw
  else
    stop
    rm -rf "$DIR"
    setup
  fi
  echo "$DIR/s3.env"
}

case $cmd in
  start) start ;;
  stop) stop ;;
  *) echo "usage: ceph-rgw.sh start|stop DIR [PORT]" >&2; exit 2 ;;
esac
