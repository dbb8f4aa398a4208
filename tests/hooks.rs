//! The `[hooks]` around a backup and a recovery, through the binary: their
//! order, their environment and what their failure does.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// A system root the archive fixture's descriptor (`/` and `/boot`) describes.
fn system_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("boot")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), b"testhost\n").unwrap();
    std::fs::write(root.join("boot/vmlinuz"), b"kernel").unwrap();
    root
}

fn fixture_layout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/archive/layout.toml")
}

/// `rescue.toml` in `dir` backing up to `dir/backups` with `hooks` (TOML lines of `[hooks]`).
fn config_with_hooks(dir: &Path, hooks: &str) -> PathBuf {
    let p = dir.join("rescue.toml");
    let text = format!("log-dir = \"{0}/log\"\nstate-dir = \"{0}/state\"\n[backup]\nurl = \"file://{0}/backups\"\n[hooks]\n{hooks}", dir.display());
    std::fs::write(&p, text).unwrap();
    p
}

fn mkbackuponly(cfg: &Path, layout: &Path, root: &Path) -> std::process::Output {
    recovery::run(cfg, &["mkbackuponly", "--layout", layout.to_str().unwrap(), "--root", root.to_str().unwrap()], &[])
}

/// A hook line appending its phase and environment to `log`.
fn recording(log: &Path) -> String {
    format!("echo \"$RESCUE_PHASE root=$RESCUE_TARGET_ROOT archive=$RESCUE_ARCHIVE result=$RESCUE_RESULT\" >> {}", log.display())
}

fn archives(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir.join("backups/testhost")) {
        // The archives (rescue's own test of a name), not the records beside them.
        Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| rescue::backup::archives::is_archive_name(n)).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn backup_hooks_run_in_order_with_their_environment() {
    let t = tempfile::tempdir().unwrap();
    let root = system_root(t.path());
    let log = t.path().join("hooks.log");
    // The pre-backup hook writes a file the backup then holds: it ran before the read.
    let pre = format!("{}; echo dumped > {}/etc/catalog.dump", recording(&log), root.display());
    let cfg = config_with_hooks(t.path(), &format!("pre-backup = '{pre}'\npost-backup = '{}'\n", recording(&log)));
    let out = mkbackuponly(&cfg, &fixture_layout(), &root);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<String> = std::fs::read_to_string(&log).unwrap().lines().map(str::to_string).collect();
    let backups = format!("file://{}/backups", t.path().display());
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0], format!("pre-backup root={} archive={backups} result=", root.display()));
    let archive = archives(t.path()).pop().unwrap();
    assert!(lines[1].starts_with(&format!("post-backup root={} archive=", root.display())), "{lines:?}");
    assert!(lines[1].ends_with(&format!("{archive} result=ok")), "the post-backup hook is told the archive: {lines:?}");
    // What the pre-backup hook wrote is in the archive.
    let listing = recovery::run(&cfg, &["archive", "list", t.path().join("backups/testhost").join(&archive).to_str().unwrap()], &[]);
    assert!(String::from_utf8_lossy(&listing.stdout).contains("etc/catalog.dump"), "{}", String::from_utf8_lossy(&listing.stdout));
}

#[test]
fn a_failing_pre_backup_hook_stops_before_anything_is_written() {
    let t = tempfile::tempdir().unwrap();
    let root = system_root(t.path());
    let log = t.path().join("hooks.log");
    let cfg = config_with_hooks(t.path(), &format!("pre-backup = 'echo catalog locked >&2; exit 4'\npost-backup = '{}'\n", recording(&log)));
    let out = mkbackuponly(&cfg, &fixture_layout(), &root);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("pre-backup hook") && err.contains("exit code 4") && err.contains("catalog locked") && err.contains("no backup was made"), "{err}");
    assert!(archives(t.path()).is_empty(), "nothing may be written: {:?}", archives(t.path()));
    assert!(!t.path().join("backups").exists(), "the destination is not even created");
    assert!(!log.exists(), "post-backup does not run when the backup never started");
}

#[test]
fn post_backup_runs_after_a_failed_backup_and_is_told_so() {
    let t = tempfile::tempdir().unwrap();
    let root = system_root(t.path());
    let log = t.path().join("hooks.log");
    let cfg = config_with_hooks(t.path(), &format!("post-backup = '{}'\n", recording(&log)));
    // No descriptor: the archive method cannot back up anything.
    let out = mkbackuponly(&cfg, &t.path().join("missing-layout.toml"), &root);
    assert_ne!(out.status.code(), Some(0));
    let lines = std::fs::read_to_string(&log).unwrap();
    assert!(lines.starts_with("post-backup ") && lines.trim_end().ends_with("result=failed"), "{lines}");
}

#[test]
fn a_failing_post_backup_hook_is_a_warning_in_the_report() {
    let t = tempfile::tempdir().unwrap();
    let root = system_root(t.path());
    let cfg = config_with_hooks(t.path(), "post-backup = 'echo cleanup failed; exit 2'\n");
    let out = recovery::run(&cfg, &["--json", "mkbackuponly", "--layout", fixture_layout().to_str().unwrap(), "--root", root.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1), "the backup is there, with a warning: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(archives(t.path()).len(), 1);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["hooks"][0]["phase"], "post-backup");
    assert_eq!(v["hooks"][0]["exit-code"], 2);
    assert_eq!(v["hooks"][0]["output"], "cleanup failed\n");
    assert!(v["archive"].is_string(), "the backup's own report is still there: {v}");
}

#[test]
fn a_failing_pre_recover_hook_stops_before_the_backup_or_a_disk_is_touched() {
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("hooks.log");
    let cfg = config_with_hooks(t.path(), &format!("pre-recover = '{}; exit 5'\n", recording(&log)));
    let target = t.path().join("target");
    let out = recovery::run(&cfg, &["recover", "--yes", "--layout", fixture_layout().to_str().unwrap(), "--target-root", target.to_str().unwrap()], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("stopped in phase verify") && err.contains("pre-recover hook") && err.contains("exit code 5"), "{err}");
    assert!(err.contains("nothing was written to any disk"), "{err}");
    let backups = format!("file://{}/backups", t.path().display());
    assert_eq!(std::fs::read_to_string(&log).unwrap().trim(), format!("pre-recover root={} archive={backups} result=", target.display()));
}
