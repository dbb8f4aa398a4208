//! Encrypted backups (age) end to end: mkbackuponly/restoreonly round trip,
//! the manual restore with the Debian `age` tool, a wrong key, a flipped
//! byte, no identity when nobody can be asked, iso:// staging, and the
//! identity never appearing in logs, output or any process's command line.
//! Run as root: `cargo test --test archive_age`.
#![allow(clippy::unwrap_used)]

mod archive_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use archive_common::*;

const TOOLS: &[(&str, &str)] =
    &[("tar", "tar"), ("zstd", "zstd"), ("setfacl", "acl"), ("mknod", "coreutils"), ("mkfifo", "coreutils"), ("age", "age"), ("age-keygen", "age")];

/// The socket is skipped on purpose; the manifest is checked, not written.
const SKIP: &[&str] = &["tmp/sock", rescue::archive::format::MANIFEST_NAME];

struct Setup {
    t: tempfile::TempDir,
    root: PathBuf,
    layout: PathBuf,
    cfg: PathBuf,
    key: PathBuf,
    /// The secret line of `key`, to look for where it must never be.
    secret: String,
}

/// A tree, an age key pair made by `age-keygen`, and a config encrypting to its recipient.
fn setup(url: impl Fn(&Path) -> String, extra: &str) -> Setup {
    require(TOOLS);
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    build_tree(&root);
    std::fs::create_dir_all(root.join("boot")).unwrap();
    std::fs::write(root.join("boot/vmlinuz"), b"kernel").unwrap();
    let key = t.path().join("key.txt");
    sh(&format!("age-keygen -o {} 2>/dev/null", key.display()));
    let text = std::fs::read_to_string(&key).unwrap();
    let secret = text.lines().find(|l| l.starts_with("AGE-SECRET-KEY-1")).unwrap().to_string();
    let public = String::from_utf8(Command::new("age-keygen").arg("-y").arg(&key).output().unwrap().stdout).unwrap();
    let cfg = t.path().join("rescue.toml");
    std::fs::write(
        &cfg,
        format!(
            "log-dir = \"{0}/logs\"\nstate-dir = \"{0}/state\"\n[backup]\nurl = \"{1}\"\n{extra}\n[backup.encrypt]\nrecipients = [\"{2}\"]\n",
            t.path().display(),
            url(t.path()),
            public.trim()
        ),
    )
    .unwrap();
    let layout = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/archive/layout.toml");
    Setup { t, root, layout, cfg, key, secret }
}

impl Setup {
    fn rescue(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rescue"));
        c.arg("--config").arg(&self.cfg).args(args).arg("--layout").arg(&self.layout).stdin(Stdio::null());
        c
    }

    fn backup(&self) -> PathBuf {
        let mut c = self.rescue(&["mkbackuponly"]);
        c.arg("--root").arg(&self.root);
        assert_eq!(run(c).status.code(), Some(0));
        let dir = self.t.path().join("backups/testhost");
        let files = rescue::backup::list_backups(&dir).unwrap();
        assert_eq!(files.len(), 1, "{files:?}");
        files[0].clone()
    }

    fn restore(&self, target: &Path, identity: Option<&Path>) -> std::process::Output {
        std::fs::create_dir_all(target).unwrap();
        let mut c = self.rescue(&["restoreonly"]);
        c.arg("--target").arg(target);
        if let Some(k) = identity {
            c.arg("--age-identity").arg(k);
        }
        c.output().unwrap()
    }

    /// Nothing under the log directory holds the secret.
    fn assert_logs_clean(&self) {
        let logs = self.t.path().join("logs");
        for e in walk(&logs) {
            let text = std::fs::read(&e).unwrap();
            assert!(!contains(&text, self.secret.as_bytes()), "{} holds the age identity", e.display());
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Scan every process's command line until `stop`; the command lines that held `secret`.
fn watch_cmdlines(secret: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, Vec<String>)> {
    std::thread::spawn(move || {
        let (mut scans, mut seen) = (0, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            for e in std::fs::read_dir("/proc").unwrap().flatten() {
                if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
                    if contains(&c, secret.as_bytes()) {
                        seen.push(String::from_utf8_lossy(&c).replace('\0', " "));
                    }
                }
            }
            scans += 1;
        }
        (scans, seen)
    })
}

#[test]
fn encrypted_backup_round_trip_and_manual_restore_with_age() {
    let s = setup(|t| format!("file://{}/backups", t.display()), "");
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_cmdlines(s.secret.clone(), stop.clone());
    let file = s.backup();
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("backup-") && name.ends_with(".tar.zst.age"), "{name}");
    assert!(std::fs::read(&file).unwrap().starts_with(b"age-encryption.org/v1\n"));

    let target = s.t.path().join("target");
    let out = s.restore(&target, Some(&s.key));
    stop.store(true, Ordering::Relaxed);
    let (scans, seen) = watcher.join().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_same_tree(&s.root, &target, SKIP);
    assert!(scans > 0 && seen.is_empty(), "the age identity was on a command line: {seen:?}");
    for text in [&out.stdout, &out.stderr] {
        assert!(!contains(text, s.secret.as_bytes()), "the output holds the age identity");
    }
    s.assert_logs_clean();

    // Without rescue: age | zstd | tar.
    let by_hand = s.t.path().join("by-hand");
    std::fs::create_dir_all(&by_hand).unwrap();
    sh(&format!(
        "age -d -i {} {} | zstd -d | tar -x -C {} --xattrs --xattrs-include='*' --acls --numeric-owner -p",
        s.key.display(),
        file.display(),
        by_hand.display()
    ));
    assert_same_tree(&s.root, &by_hand, SKIP);

    // `rescue archive verify` reads it with the identity, and says what to pass without one.
    let mut c = Command::new(env!("CARGO_BIN_EXE_rescue"));
    c.arg("--config").arg(&s.cfg).args(["archive", "verify"]).arg(&file).arg("--age-identity").arg(&s.key);
    run(c);
    let mut c = Command::new(env!("CARGO_BIN_EXE_rescue"));
    let out = c.arg("--config").arg(&s.cfg).args(["archive", "verify"]).arg(&file).stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--age-identity"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn wrong_or_missing_identity_writes_nothing() {
    let s = setup(|t| format!("file://{}/backups", t.display()), "");
    s.backup();
    let other = s.t.path().join("other.txt");
    sh(&format!("age-keygen -o {} 2>/dev/null", other.display()));
    for (identity, says) in [(Some(other.as_path()), "does not open"), (None, "nobody to ask")] {
        let target = s.t.path().join("target");
        let out = s.restore(&target, identity);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(says), "{err}");
        assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0, "nothing is written with a wrong or missing key");
    }
    s.assert_logs_clean();
}

#[test]
fn a_flipped_byte_is_detected_and_named() {
    let s = setup(|t| format!("file://{}/backups", t.display()), "");
    let file = s.backup();
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() * 2 / 3;
    bytes[at] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_rescue"));
    let out = c.arg("--config").arg(&s.cfg).args(["archive", "verify"]).arg(&file).arg("--age-identity").arg(&s.key).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("fails age's authentication") && err.contains("altered"), "{err}");
    let out = s.restore(&s.t.path().join("target"), Some(&s.key));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("fails age's authentication"), "{err}");
}

#[test]
fn iso_destination_carries_the_encrypted_archive() {
    let s = setup(|_| "iso:///backup".into(), "");
    let iso_dir = s.t.path().join("iso");
    let text = std::fs::read_to_string(&s.cfg).unwrap().replace("[backup]\n", &format!("[backup]\niso-dir = \"{}\"\n", iso_dir.display()));
    std::fs::write(&s.cfg, text).unwrap();
    let mut c = s.rescue(&["mkbackuponly"]);
    c.arg("--root").arg(&s.root);
    run(c);
    let files = rescue::backup::list_backups(&iso_dir.join("backup/testhost")).unwrap();
    assert!(files.len() == 1 && files[0].to_string_lossy().ends_with(".tar.zst.age"), "{files:?}");
    let target = s.t.path().join("target");
    let out = s.restore(&target, Some(&s.key));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_same_tree(&s.root, &target, SKIP);
}
