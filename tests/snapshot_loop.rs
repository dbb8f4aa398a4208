//! `backup.snapshot = "auto"` on a btrfs loop disk: a file appended to during
//! the backup is read from a read-only snapshot (no "changed while read"),
//! and the snapshot is gone afterwards, also when the backup is stopped by
//! SIGTERM, which leaves nothing at the destination either. (LVM snapshots
//! need device-mapper: tests/snapshot_vm.rs.)
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rescue::backup::snapshot::SNAPSHOT_DIR;

/// A btrfs filesystem on a loop disk, mounted at `dir/root`, holding what the
/// archive fixture's descriptor (`/` and `/boot`) backs up.
fn btrfs_root(dir: &Path) -> (LoopDisk, PathBuf) {
    require_root();
    require_tools(&["mkfs.btrfs", "btrfs", "mount", "umount"]);
    let mut disk = LoopDisk::new(dir, "btrfs", 512);
    sh(&format!("mkfs.btrfs -q -f {}", disk.dev));
    let root = dir.join("root");
    let dev = disk.dev.clone();
    disk.mount(&dev, &root, None);
    std::fs::create_dir_all(root.join("boot")).unwrap();
    std::fs::create_dir_all(root.join("var/log")).unwrap();
    std::fs::write(root.join("boot/vmlinuz"), b"kernel").unwrap();
    std::fs::write(root.join("var/log/app.log"), vec![b'a'; 4 << 20]).unwrap();
    (disk, root)
}

fn config(dir: &Path, extra: &str) -> PathBuf {
    let p = dir.join("rescue.toml");
    let text = format!("log-dir = \"{0}/log\"\nstate-dir = \"{0}/state\"\n[backup]\nurl = \"file://{0}/backups\"\nsnapshot = \"auto\"\n{extra}", dir.display());
    std::fs::write(&p, text).unwrap();
    p
}

fn layout() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/archive/layout.toml").display().to_string()
}

fn snapshots_left(root: &Path) -> String {
    let list = sh(&format!("btrfs subvolume list {}", root.display()));
    assert!(!root.join(SNAPSHOT_DIR).exists(), "{} is still there", root.join(SNAPSHOT_DIR).display());
    list
}

#[test]
fn a_file_written_during_the_backup_is_read_from_the_snapshot() {
    let t = tempfile::tempdir().unwrap();
    let (_disk, root) = btrfs_root(t.path());
    let log = root.join("var/log/app.log");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, log) = (stop.clone(), log.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            while !stop.load(Ordering::Relaxed) {
                f.write_all(&[b'w'; 4096]).unwrap();
                // As a database does: what is synced is in any later snapshot.
                f.sync_data().unwrap();
            }
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    let cfg = config(t.path(), "");
    let out = recovery::run(&cfg, &["--json", "mkbackuponly", "--layout", &layout(), "--root", root.to_str().unwrap()], &[]);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "nothing changed while read: {}", recovery::text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["create"]["from-snapshots"], serde_json::json!(["/"]), "{v:#}");
    assert_eq!(v["create"]["changed"], serde_json::json!([]), "{v:#}");
    let notes = v["create"]["notes"].to_string();
    assert!(notes.contains("read live: /boot"), "/boot is a directory of the subvolume, read live: {notes}");
    assert_eq!(snapshots_left(&root), "", "the snapshot is removed");

    // The archive holds the log as the snapshot has it: what a crash at that
    // moment would leave, i.e. a prefix of the file now, except that a write
    // in flight (not yet synced) may read as zeros in the last block.
    let archive = PathBuf::from(v["archive"].as_str().unwrap());
    let x = t.path().join("x");
    let out = recovery::run(&cfg, &["archive", "extract", archive.to_str().unwrap(), "--target", x.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", recovery::text(&out));
    let got = std::fs::read(x.join("var/log/app.log")).unwrap();
    let now = std::fs::read(&log).unwrap();
    assert!(got.len() >= 4 << 20 && got.len() < now.len(), "archived {} of {} bytes", got.len(), now.len());
    let in_flight = got.len() - 8192;
    let differs = got[..in_flight].iter().zip(&now).position(|(a, b)| a != b);
    assert_eq!(differs, None, "archived {} of {} bytes", got.len(), now.len());
    assert!(got[in_flight..].iter().zip(&now[in_flight..]).all(|(a, b)| a == b || *a == 0), "the last block is the file's or zeros");
    assert!(!x.join(SNAPSHOT_DIR).exists());
    assert_eq!(std::fs::read(x.join("boot/vmlinuz")).unwrap(), b"kernel");
}

#[test]
fn the_snapshot_is_removed_when_the_backup_is_stopped_by_sigterm() {
    let t = tempfile::tempdir().unwrap();
    let (_disk, root) = btrfs_root(t.path());
    // Enough incompressible data at zstd's slowest level to be stopped in the middle.
    let mut f = std::fs::File::create(root.join("var/big")).unwrap();
    let mut rnd = std::fs::File::open("/dev/urandom").unwrap();
    std::io::copy(&mut (&mut rnd).take(96 << 20), &mut f).unwrap();
    drop(f);
    let cfg = config(t.path(), "level = 19\n");
    let mut child = std::process::Command::new(rescue_bin())
        .arg("--config")
        .arg(&cfg)
        .args(["mkbackuponly", "--layout", &layout(), "--root", root.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !root.join(SNAPSHOT_DIR).exists() {
        assert!(started.elapsed() < Duration::from_secs(60), "no snapshot appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    sh(&format!("kill -TERM {}", child.id()));
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15), "exits as SIGTERM's default would");
    assert_eq!(snapshots_left(&root), "", "the snapshot is removed after SIGTERM");
    // Neither the hidden partial archive nor its chain record stays at the destination.
    let left: Vec<_> = std::fs::read_dir(t.path().join("backups/testhost")).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert_eq!(left, Vec::<std::ffi::OsString>::new(), "left at the destination after SIGTERM");
}
