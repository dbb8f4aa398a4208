//! `backup.snapshot = "auto"` with LVM, inside a guest VM (the host kernel
//! has no device-mapper): a VG with an ext4 and an XFS logical volume, a
//! writer appending to a file on each during `rescue mkbackuponly`:
//! - the archive's copy of each file equals the snapshot's (copied from the
//!   snapshot's mount while the backup ran), is a strict prefix of the file
//!   afterwards, nothing "changed while read", exit 0, and no snapshot LV
//!   or mount is left;
//! - a backup stopped by SIGTERM mid-archive (a file on the snapshot open)
//!   leaves no snapshot, no mount and no partial file; one killed by SIGKILL
//!   leaves its snapshot, which the next backup removes;
//! - a VG without free extents is refused, naming it and the ways out.
//!
//! Needs the VM harness `tests/vm/run-guest.sh` (or `RESCUE_VM_HARNESS=PATH`)
//! and takes minutes, so it is ignored by default (the full set runs it):
//!   cargo test --test snapshot_vm -- --ignored --nocapture

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn harness() -> PathBuf {
    let p = std::env::var_os("RESCUE_VM_HARNESS").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/run-guest.sh"));
    assert!(p.exists(), "the VM harness {} is missing (or set RESCUE_VM_HARNESS)", p.display());
    p
}

/// Runs in the guest: DISK1 holds vgsnap (root: ext4, xfs: XFS, free
/// extents), DISK2 vgfull (one ext4 LV over all of it). Results go to $OUT.
const RUN_SH: &str = r#"
set -u
fail() { echo "FAIL: $*"; exit 1; }
snapmnt=/run/rescue/snapshots/vgsnap
lvm_disk() { # DISK VG: one LVM partition, a PV and a VG on it
  printf 'label: gpt\ntype=E6D6D379-F507-44C2-A23C-238F2A3DF928\n' | sfdisk -q "$1" || fail "sfdisk $1"
  udevadm settle
  local p; p=$(lsblk -lnpo NAME "$1" | sed -n 2p)
  pvcreate -qy "$p" && vgcreate -q "$2" "$p" || fail "vgcreate $2"
}
lvm_disk "$DISK1" vgsnap
lvcreate -qy -L 256M -n root vgsnap && lvcreate -qy -L 320M -n xfs vgsnap || fail lvcreate
mkfs.ext4 -q /dev/vgsnap/root && mkfs.xfs -q /dev/vgsnap/xfs || fail mkfs
mkdir -p /mnt/src && mount /dev/vgsnap/root /mnt/src || fail "mount root"
mkdir -p /mnt/src/xfs /mnt/src/etc /mnt/src/var/log && mount /dev/vgsnap/xfs /mnt/src/xfs || fail "mount xfs"
printf '/dev/vgsnap/root / ext4 defaults 0 1\n/dev/vgsnap/xfs /xfs xfs defaults 0 2\n' >/mnt/src/etc/fstab
head -c 4M /dev/zero | tr '\0' a >/mnt/src/var/log/app.log
head -c 4M /dev/zero | tr '\0' b >/mnt/src/xfs/app.log
# Incompressible data at zstd's slowest level: backups last long enough to be watched and stopped.
head -c 4M /dev/urandom >/mnt/src/var/big
rescue savelayout --disk "$DISK1" --root /mnt/src -o "$OUT/src.toml" >"$OUT/save.log" 2>&1 || { cat "$OUT/save.log"; fail savelayout; }

# The guest's mkbackuponly in the background; $! is rescue itself.
backup() { # CONFIG OUTNAME
  rescue --config "$1" --json mkbackuponly --layout "$OUT/src.toml" --root /mnt/src >"$OUT/$2.json" 2>"$OUT/$2.err" &
}
wait_mounted() { # DIR PID
  local i
  for i in $(seq 600); do
    mountpoint -q "$1" && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
leftovers() { # OUTNAME: snapshot LVs, snapshot mounts, files at the destination
  lvs --noheadings -o lv_name vgsnap | tr -d ' ' | grep -- -rescue-snap >"$OUT/$1.lvs"
  findmnt -rn -o TARGET | grep '^/run/rescue' >"$OUT/$1.mounts"
  ls -A /backups/* >"$OUT/$1.dest" 2>/dev/null
  true
}
writer() { # FILE: append numbered lines until /tmp/stop exists
  local i=0 line; line=$(printf 'w%.0s' $(seq 200))
  while [ ! -e /tmp/stop ]; do echo "$i $line" >>"$1"; i=$((i + 1)); done
}

# 1. Written during the backup, read from the snapshots.
writer /mnt/src/var/log/app.log & w1=$!
writer /mnt/src/xfs/app.log & w2=$!
sleep 1
backup /job/slow.toml b1; pid=$!
wait_mounted $snapmnt/xfs-rescue-snap $pid || fail "backup 1: no snapshot of vgsnap/xfs was mounted: $(cat "$OUT/b1.err")"
# A snapshot does not change: what is read from it now is what the archive must hold.
cp $snapmnt/root-rescue-snap/var/log/app.log /tmp/ext4.snap && cp $snapmnt/xfs-rescue-snap/app.log /tmp/xfs.snap || fail "copying from the snapshots"
stat -c '%a %U' /run/rescue/snapshots >"$OUT/b1.private"
wait $pid; echo $? >"$OUT/b1.rc"
touch /tmp/stop; wait $w1 $w2; rm -f /tmp/stop
leftovers b1
arch=$(jq -r .archive "$OUT/b1.json")
rescue --config /job/fast.toml archive extract "$arch" --target /tmp/x1 >"$OUT/x1.log" 2>&1 || fail "extract: $(cat "$OUT/x1.log")"
same() { # ARCHIVED SNAPSHOT LIVE
  local a n; a=$(stat -c %s "$1"); n=$(stat -c %s "$3")
  if ! cmp -s "$1" "$2"; then echo "differs from the snapshot ($a bytes, snapshot $(stat -c %s "$2"))"
  elif ! cmp -s -n "$a" "$1" "$3" || [ "$a" -ge "$n" ]; then echo "not a strict prefix of the file now ($a of $n bytes)"
  else echo "snapshot ($a of $n bytes)"; fi
}
same /tmp/x1/var/log/app.log /tmp/ext4.snap /mnt/src/var/log/app.log >"$OUT/b1.ext4"
same /tmp/x1/xfs/app.log /tmp/xfs.snap /mnt/src/xfs/app.log >"$OUT/b1.xfs"

# 2. SIGTERM mid-archive, with a file open: larger than the archiver's read-ahead,
# it stays open while the slow compressor catches up, keeping the snapshot's mount busy.
head -c 48M /dev/urandom >/mnt/src/var/big2
backup /job/slow.toml b2; pid=$!
wait_mounted $snapmnt/xfs-rescue-snap $pid || fail "backup 2: no snapshot was mounted: $(cat "$OUT/b2.err")"
sleep 2
ls -A /backups/* >"$OUT/b2.during"
kill -TERM $pid; wait $pid; echo $? >"$OUT/b2.rc"
leftovers b2

# 3. SIGKILL leaves the snapshots; the next backup removes them first.
backup /job/slow.toml b3; pid=$!
wait_mounted $snapmnt/xfs-rescue-snap $pid || fail "backup 3: no snapshot was mounted: $(cat "$OUT/b3.err")"
kill -KILL $pid; wait $pid
leftovers b3
rm -f /backups/*/.backup-*.partial-*
backup /job/fast.toml b4; pid=$!
wait $pid; echo $? >"$OUT/b4.rc"
leftovers b4

# 5. A VG without free extents.
lvm_disk "$DISK2" vgfull
lvcreate -qy -l 100%FREE -n data vgfull && mkfs.ext4 -q /dev/vgfull/data || fail "vgfull"
mkdir -p /mnt/full && mount /dev/vgfull/data /mnt/full && mkdir -p /mnt/full/etc || fail "mount vgfull"
echo '/dev/vgfull/data / ext4 defaults 0 1' >/mnt/full/etc/fstab
rescue savelayout --disk "$DISK2" --root /mnt/full -o "$OUT/full.toml" >"$OUT/save-full.log" 2>&1 || { cat "$OUT/save-full.log"; fail "savelayout vgfull"; }
rescue --config /job/fast.toml mkbackuponly --layout "$OUT/full.toml" --root /mnt/full >/dev/null 2>"$OUT/b5.err"; echo $? >"$OUT/b5.rc"
lvs --noheadings -o lv_name vgfull | tr -d ' ' >"$OUT/b5.lvs"
exit 0
"#;

fn config(extra: &str) -> String {
    format!("log-dir = \"/tmp/rescue-log\"\nstate-dir = \"/tmp/rescue-state\"\n[backup]\nurl = \"file:///backups\"\nsnapshot = \"auto\"\n{extra}")
}

fn read(out: &Path, name: &str) -> String {
    std::fs::read_to_string(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
#[ignore = "boots a VM for minutes: cargo test --test snapshot_vm -- --ignored"]
fn lvm_snapshots_in_a_guest() {
    assert!(rescue::util::is_root(), "this test needs root (qemu)");
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path();
    std::fs::write(job.join("run.sh"), RUN_SH).unwrap();
    std::fs::write(job.join("slow.toml"), config("level = 19\n")).unwrap();
    std::fs::write(job.join("fast.toml"), config("")).unwrap();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_rescue"));
    let started = std::time::Instant::now();
    let out = Command::new(harness())
        .args(["--rescue", bin.to_str().unwrap(), "--timeout", "1800"])
        .args(["--disk", "2G", "--disk", "1G"])
        .arg(job)
        .output()
        .unwrap();
    let o = job.join("out");
    let log = std::fs::read_to_string(o.join("run.log")).unwrap_or_default();
    println!("VM run: {:?}, exit {:?}\n{log}", started.elapsed(), out.status.code());
    assert!(out.status.success(), "the guest job failed:\n{}\n{}\n{log}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    // 1. From the snapshots, equal to them, nothing changed while read, nothing left.
    assert_eq!(read(&o, "b1.rc").trim(), "0", "backup 1: {}", read(&o, "b1.err"));
    let v: serde_json::Value = serde_json::from_str(&read(&o, "b1.json")).unwrap();
    assert_eq!(v["create"]["from-snapshots"], serde_json::json!(["/", "/xfs"]), "{v:#}");
    assert_eq!(v["create"]["changed"], serde_json::json!([]), "{v:#}");
    let notes = v["create"]["notes"].to_string();
    assert!(notes.contains("vgsnap/root-rescue-snap") && notes.contains("vgsnap/xfs-rescue-snap"), "the report names the snapshots: {notes}");
    for fs in ["ext4", "xfs"] {
        let r = read(&o, &format!("b1.{fs}"));
        assert!(r.starts_with("snapshot ("), "{fs}: the archived log {r}");
    }
    assert_eq!(read(&o, "b1.private").trim(), "700 root", "snapshots are mounted in a private directory");
    assert_eq!(read(&o, "b1.lvs"), "", "backup 1 removed its snapshots");
    assert_eq!(read(&o, "b1.mounts"), "", "backup 1 unmounted its snapshots");

    // 2. SIGTERM: exit 143, nothing left (snapshots, mounts, partial file).
    assert!(read(&o, "b2.during").contains(".partial-"), "stopped mid-archive: {}", read(&o, "b2.during"));
    assert_eq!(read(&o, "b2.rc").trim(), "143", "{}", read(&o, "b2.err"));
    assert_eq!(read(&o, "b2.lvs"), "", "SIGTERM removed the snapshots");
    assert_eq!(read(&o, "b2.mounts"), "", "SIGTERM unmounted the snapshots");
    assert_eq!(read(&o, "b2.dest"), read(&o, "b1.dest"), "SIGTERM left nothing at the destination");

    // 3. SIGKILL leaves them; the next run removes them and backs up.
    assert_eq!(read(&o, "b3.lvs"), "root-rescue-snap\nxfs-rescue-snap\n", "SIGKILL cannot clean up");
    assert_eq!(read(&o, "b4.rc").trim(), "0", "{}", read(&o, "b4.err"));
    assert!(read(&o, "b4.err").contains("removing the snapshot vgsnap/root-rescue-snap that an earlier backup left"), "{}", read(&o, "b4.err"));
    assert_eq!(read(&o, "b4.lvs"), "");
    assert_eq!(read(&o, "b4.mounts"), "");

    // 5. No room in the VG: refused before anything is made, saying what to do.
    let err = read(&o, "b5.err");
    assert_eq!(read(&o, "b5.rc").trim(), "2", "an input error: {err}");
    for want in ["volume group vgfull has 0 B free", "vgfull/data", "free extents in vgfull", "backup.snapshot = \"off\""] {
        assert!(err.contains(want), "{want:?} in: {err}");
    }
    assert_eq!(read(&o, "b5.lvs"), "data\n", "no snapshot was made");
}
