//! Backups to S3 object storage, against a real server: a single-node Ceph
//! with its RADOS Gateway on 127.0.0.1 (tests/s3/ceph-rgw.sh), started once
//! for this test binary and stopped when it exits. As root, on loop disks:
//! - a round trip of a filesystem tree through mkbackuponly -> S3 ->
//!   restoreonly, the archive over 100 MiB (a multipart upload of 16 MiB
//!   parts), every file's checksum equal, restored with the read-only key;
//! - wrong credentials, a missing bucket, an unreachable endpoint and an
//!   object whose start is damaged (blank disks: the one-pass path): each a
//!   clear error in recover's verify phase, the target disk byte for byte
//!   unchanged; a read-only key cannot back up;
//! - a backup killed mid-upload leaves no object and nothing `restoreonly`
//!   would use; the next backup aborts the stale upload;
//! - Object Lock: the server refuses to delete a locked backup, and
//!   `backup.keep` reports it and goes on.
//! - an encrypted backup (age) round trip through S3; without the identity
//!   restoreonly refuses before restoring anything;
//! - no read key configured: `restoreonly` at a terminal (a pty) asks for
//!   one, the secret not echoed and in no log; with nobody to ask, the
//!   error says what to configure.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::console::Console;
use common::recovery::*;
use common::*;

const TOOLS: &[&str] = &["sfdisk", "blkid", "partx", "mkfs.ext4", "mount", "umount", "ceph-mon", "ceph-osd", "ceph-mgr", "radosgw", "curl"];
const AWS: &str = "/usr/bin/aws";

/// The running server: its directory and what `ceph-rgw.sh` wrote to `s3.env`.
struct Server {
    dir: PathBuf,
    env: BTreeMap<String, String>,
}

static SERVER: OnceLock<Server> = OnceLock::new();

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3/ceph-rgw.sh")
}

extern "C" fn stop_server() {
    if let Some(s) = SERVER.get() {
        let _ = Command::new("bash").arg(script()).arg("stop").arg(&s.dir).output();
        let _ = std::fs::remove_dir_all(&s.dir);
    }
}

/// Start the server on first use (once per test binary); stopped at exit.
fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        require_root();
        require_tools(TOOLS);
        assert!(Path::new(AWS).exists(), "{AWS} is missing: run scripts/install-deps.sh (Debian package awscli)");
        let dir = std::env::temp_dir().join(format!("rescue-s3-{}", std::process::id()));
        let started = Instant::now();
        // RESCUE_S3_TEST_PORT: another gateway port (and monitor ports), to
        // run beside the bios-ext4-s3 VM scenario, which takes the defaults.
        let port = std::env::var("RESCUE_S3_TEST_PORT").unwrap_or_else(|_| "7480".into());
        let o = Command::new("bash").arg(script()).arg("start").arg(&dir).arg(&port).output().unwrap();
        assert!(o.status.success(), "starting Ceph RGW failed:\n{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        eprintln!("Ceph RGW set up in {:.0} s", started.elapsed().as_secs_f64());
        // SAFETY: registers a plain extern "C" function without arguments.
        #[allow(unsafe_code)]
        unsafe {
            libc::atexit(stop_server);
        }
        let env = std::fs::read_to_string(dir.join("s3.env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Server { dir, env }
    })
}

impl Server {
    fn var(&self, k: &str) -> &str {
        &self.env[k]
    }

    /// The `[backup]` part of a config for `s3://BUCKET/PREFIX`, `extra` appended to `[backup.s3]`.
    fn backup_toml(&self, bucket: &str, prefix: &str, extra: &str) -> String {
        format!(
            "[backup]\nurl = \"s3://{bucket}/{prefix}\"\n[backup.s3]\nendpoint = \"{}\"\npath-style = true\n\
             credentials-file = \"{}\"\nrecover-key-from = \"{}\"\npart-size-mib = 16\n{extra}",
            self.var("S3_ENDPOINT"),
            self.dir.join("write.cred").display(),
            self.dir.join("read.cred").display()
        )
    }

    /// Debian's awscli with the write key; its JSON answer, or Err(stderr).
    fn aws(&self, args: &[&str]) -> Result<serde_json::Value, String> {
        let o = Command::new(AWS)
            .env("AWS_ACCESS_KEY_ID", self.var("S3_WRITE_KEY"))
            .env("AWS_SECRET_ACCESS_KEY", self.var("S3_WRITE_SECRET"))
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .args(["--endpoint-url", self.var("S3_ENDPOINT"), "--output", "json"])
            .args(args)
            .output()
            .unwrap();
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).into_owned());
        }
        let out = String::from_utf8_lossy(&o.stdout);
        Ok(if out.trim().is_empty() { serde_json::Value::Null } else { serde_json::from_str(&out).unwrap() })
    }

    /// Keys under `prefix` in `bucket`, with their sizes.
    fn objects(&self, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
        let v = self.aws(&["s3api", "list-objects-v2", "--bucket", bucket, "--prefix", prefix]).unwrap();
        v["Contents"].as_array().into_iter().flatten().map(|o| (o["Key"].as_str().unwrap().to_string(), o["Size"].as_u64().unwrap())).collect()
    }

    fn uploads(&self, bucket: &str, prefix: &str) -> usize {
        let v = self.aws(&["s3api", "list-multipart-uploads", "--bucket", bucket, "--prefix", prefix]).unwrap();
        v["Uploads"].as_array().map_or(0, |a| a.len())
    }
}

/// A source system on a loop disk (GPT, one ext4 root) holding `files`
/// (name, bytes of random data), captured with savelayout.
struct Source {
    dir: PathBuf,
    _disk: LoopDisk,
    root: PathBuf,
    layout: PathBuf,
    /// The block id of the source disk (`loopN`).
    name: String,
    _tmp: tempfile::TempDir,
}

impl Source {
    fn new(size_mib: u64, files: &[(&str, usize)]) -> Source {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut disk = LoopDisk::new(&dir, "src", size_mib);
        disk.partition("label: gpt\nsize=+, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root");
        sh(&format!("mkfs.ext4 -q -L root {}", disk.part(1)));
        let root = dir.join("src-root");
        disk.mount(&disk.part(1), &root, None);
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/fstab"), format!("UUID={} / ext4 defaults 0 1\n", blkid(&disk.part(1))["UUID"])).unwrap();
        for (i, (name, bytes)) in files.iter().enumerate() {
            random_file(&root.join(name), *bytes, i as u64 + 7);
        }
        std::fs::write(root.join("etc/small.txt"), "small\n").unwrap();
        let layout = dir.join("layout.toml");
        let cfg = config(&dir, "plain.toml", "");
        let o = run(&cfg, &["savelayout", "--disk", &disk.dev, "--root", root.to_str().unwrap(), "-o", layout.to_str().unwrap()], &[]);
        assert!(o.status.success(), "savelayout: {}", text(&o));
        let name = disk.dev.trim_start_matches("/dev/").to_string();
        Source { dir, _disk: disk, root, layout, name, _tmp: tmp }
    }

    fn backup(&self, cfg: &Path) -> std::process::Output {
        run(cfg, &["mkbackuponly", "--layout", self.layout.to_str().unwrap(), "--root", self.root.to_str().unwrap()], &[])
    }
}

/// `DIR/NAME`: logs and state in DIR, then `backup` (TOML).
fn config(dir: &Path, name: &str, backup: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("log-dir = \"{0}/log\"\nstate-dir = \"{0}/state\"\n{backup}", dir.display())).unwrap();
    p
}

/// sha256 of every regular file under `root`, by relative path (lost+found left out).
fn tree_sums(root: &Path) -> BTreeMap<String, String> {
    let out = sh(&format!("cd {} && find . -path ./lost+found -prune -o -type f -print0 | sort -z | xargs -0 sha256sum", root.display()));
    out.lines().filter_map(|l| l.split_once("  ")).map(|(sum, path)| (path.to_string(), sum.to_string())).collect()
}

#[test]
fn round_trip_through_s3_with_a_multipart_upload_over_100_mib() {
    let s3 = server();
    let src = Source::new(300, &[("srv/big.bin", 110 << 20), ("srv/b.bin", 3 << 20)]);
    let cfg = config(&src.dir, "s3.toml", &s3.backup_toml("rescue-plain", "roundtrip", ""));
    let started = Instant::now();
    let o = src.backup(&cfg);
    assert!(o.status.success(), "mkbackuponly to S3: {}", text(&o));
    let upload_s = started.elapsed().as_secs_f64();
    let objects = s3.objects("rescue-plain", "roundtrip/");
    let archive = objects.iter().find(|(k, _)| k.ends_with(".tar.zst")).unwrap_or_else(|| panic!("no archive in {objects:?}"));
    assert!(archive.1 > 100 << 20, "the archive is {} bytes, not over 100 MiB", archive.1);
    assert!(objects.iter().any(|(k, _)| k == &format!("{}.done", archive.0)), "no record next to the archive: {objects:?}");
    // Several parts: the ETag of a multipart object ends in -N.
    let head = s3.aws(&["s3api", "head-object", "--bucket", "rescue-plain", "--key", &archive.0]).unwrap();
    let etag = head["ETag"].as_str().unwrap();
    assert!(etag.trim_matches('"').rsplit_once('-').is_some_and(|(_, n)| n.parse::<u32>().unwrap() >= 7), "not a multipart upload of 16 MiB parts: {etag}");

    // Restore onto another loop disk, with the read-only key only.
    let mut dst = LoopDisk::new(&src.dir, "dst", 300);
    dst.partition("label: gpt\nsize=+, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4");
    sh(&format!("mkfs.ext4 -q {}", dst.part(1)));
    let into = src.dir.join("restored");
    dst.mount(&dst.part(1), &into, None);
    let read_only = config(&src.dir, "read.toml", &s3.backup_toml("rescue-plain", "roundtrip", "").replace("write.cred", "missing.cred"));
    let started = Instant::now();
    let o = run(&read_only, &["restoreonly", "--layout", src.layout.to_str().unwrap(), "--target", into.to_str().unwrap()], &[]);
    assert!(o.status.success(), "restoreonly from S3: {}", text(&o));
    eprintln!("{} MiB archive: upload (with archiving) {upload_s:.1} s, restore {:.1} s", archive.1 >> 20, started.elapsed().as_secs_f64());
    let (want, got) = (tree_sums(&src.root), tree_sums(&into));
    assert!(want.contains_key("./srv/big.bin"), "{want:?}");
    assert_eq!(got, want, "the restored tree differs from the source");
}

#[test]
fn wrong_credentials_missing_bucket_and_unreachable_endpoint_stop_before_any_write() {
    let s3 = server();
    let src = Source::new(64, &[("srv/a.bin", 1 << 20)]);
    let cfg = config(&src.dir, "s3.toml", &s3.backup_toml("rescue-plain", "errors", ""));
    let o = src.backup(&cfg);
    assert!(o.status.success(), "mkbackuponly to S3: {}", text(&o));
    let dst = LoopDisk::new(&src.dir, "dst", 64);
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(&dst.dev).unwrap();
        f.write_all(&[0x5au8; 1 << 20]).unwrap();
        f.sync_all().unwrap();
    }
    let before = device_sum(&dst.dev);
    let target = src.dir.join("target");
    let recover = |cfg: &Path| {
        let map = format!("{}={}", src.name, dst.dev);
        let _u = Unmounter(vec![target.clone()]);
        run(cfg, &["recover", "--yes", "--layout", src.layout.to_str().unwrap(), "--map", &map, "--target-root", target.to_str().unwrap()], &[])
    };

    // A secret that is not the key's.
    let bad = src.dir.join("bad.cred");
    std::fs::write(&bad, format!("access-key-id = \"{}\"\nsecret-access-key = \"not-the-secret\"\n", s3.var("S3_READ_KEY"))).unwrap();
    let c = config(
        &src.dir,
        "bad-cred.toml",
        &s3.backup_toml("rescue-plain", "errors", "").replace(&s3.dir.join("read.cred").display().to_string(), &bad.display().to_string()),
    );
    let o = recover(&c);
    let msg = assert_failed(&o, 2, &["recovery stopped in phase verify", "refused the access key", s3.var("S3_READ_KEY"), "nothing was written"]);
    assert!(!msg.contains("not-the-secret"), "the secret was printed: {msg}");
    assert_eq!(device_sum(&dst.dev), before, "the target disk changed (wrong credentials)");

    // A bucket that does not exist.
    let c = config(&src.dir, "no-bucket.toml", &s3.backup_toml("no-such-bucket", "errors", ""));
    let o = recover(&c);
    assert_failed(&o, 2, &["recovery stopped in phase verify", "the bucket no-such-bucket does not exist", "nothing was written"]);
    assert_eq!(device_sum(&dst.dev), before, "the target disk changed (missing bucket)");

    // Nothing listens on the endpoint.
    let c = config(&src.dir, "unreachable.toml", &s3.backup_toml("rescue-plain", "errors", "").replace(s3.var("S3_ENDPOINT"), "http://127.0.0.1:9"));
    let o = recover(&c);
    assert_failed(&o, 2, &["recovery stopped in phase verify", "cannot be reached", "backup.s3.endpoint", "nothing was written"]);
    assert_eq!(device_sum(&dst.dev), before, "the target disk changed (unreachable endpoint)");

    // Both modes check the object's start in the verify phase, before any
    // write; on blank disks (the one-pass path) that is all verify reads.
    let objects = s3.objects("rescue-plain", "errors/");
    let (key, _) = objects.iter().find(|(k, _)| k.ends_with(".tar.zst")).unwrap_or_else(|| panic!("no archive in {objects:?}"));
    let garbage = src.dir.join("garbage.bin");
    std::fs::write(&garbage, vec![0x42u8; 3 << 20]).unwrap();
    s3.aws(&["s3api", "put-object", "--bucket", "rescue-plain", "--key", key, "--body", garbage.to_str().unwrap()]).unwrap();
    let blank = LoopDisk::new(&src.dir, "blank", 64);
    let blank_before = device_sum(&blank.dev);
    for (dev, sum, what) in [(&blank.dev, blank_before, "blank"), (&dst.dev, before, "holding data")] {
        let map = format!("{}={dev}", src.name);
        let _u = Unmounter(vec![target.clone()]);
        let o = run(&cfg, &["recover", "--yes", "--layout", src.layout.to_str().unwrap(), "--map", &map, "--target-root", target.to_str().unwrap()], &[]);
        assert_failed(&o, 2, &["recovery stopped in phase verify", "does not start with a readable archive member", "nothing was written"]);
        assert_eq!(device_sum(dev), sum, "the target disk ({what}) changed (an object with a damaged start)");
    }

    // The read-only key cannot back up, and nothing is left behind.
    let c = config(&src.dir, "ro-backup.toml", &s3.backup_toml("rescue-plain", "errors-ro", "").replace("write.cred", "read.cred"));
    let o = src.backup(&c);
    assert!(!o.status.success(), "a backup with the read-only key succeeded: {}", text(&o));
    assert!(text(&o).contains("refused the access key"), "{}", text(&o));
    assert!(s3.objects("rescue-plain", "errors-ro/").is_empty());
    assert_eq!(s3.uploads("rescue-plain", "errors-ro/"), 0);
}

#[test]
fn a_backup_killed_mid_upload_leaves_nothing_recover_would_use() {
    let s3 = server();
    let src = Source::new(400, &[("srv/big.bin", 300 << 20)]);
    let cfg = config(&src.dir, "s3.toml", &s3.backup_toml("rescue-plain", "killed", "").replace("part-size-mib = 16", "part-size-mib = 5"));
    let mut child = Command::new(rescue_bin())
        .arg("--config")
        .arg(&cfg)
        .args(["mkbackuponly", "--layout", src.layout.to_str().unwrap(), "--root", src.root.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it mid-upload: once it has read 60 MiB of the 300 MiB (with at
    // most three 5 MiB parts in memory, most of that has been sent). Read
    // from /proc, not by asking the server: awscli takes many seconds a call
    // on a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(child.try_wait().unwrap().is_none(), "the backup finished before it could be interrupted");
        let io = std::fs::read_to_string(format!("/proc/{}/io", child.id())).unwrap_or_default();
        let read: u64 = io.lines().find_map(|l| l.strip_prefix("rchar: ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0);
        if read > 60 << 20 {
            break;
        }
        assert!(Instant::now() < deadline, "the backup did not read 60 MiB within 300 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(s3.objects("rescue-plain", "killed/").is_empty(), "a killed backup left objects: {:?}", s3.objects("rescue-plain", "killed/"));
    assert_eq!(s3.uploads("rescue-plain", "killed/"), 1, "the backup was not killed mid-upload");

    let into = src.dir.join("restored");
    std::fs::create_dir_all(&into).unwrap();
    let o = run(&cfg, &["restoreonly", "--layout", src.layout.to_str().unwrap(), "--target", into.to_str().unwrap()], &[]);
    assert_failed(&o, 2, &["no complete backup of"]);
    assert_eq!(std::fs::read_dir(&into).unwrap().count(), 0, "restoreonly wrote into the target");

    // The next backup completes and aborts the stale upload.
    std::fs::remove_file(src.root.join("srv/big.bin")).unwrap();
    let o = src.backup(&cfg);
    assert!(o.status.success(), "mkbackuponly after the killed one: {}", text(&o));
    assert_eq!(s3.uploads("rescue-plain", "killed/"), 0, "the stale multipart upload is still there");
}

#[test]
fn object_lock_refuses_deleting_a_locked_backup_and_keep_reports_it() {
    let s3 = server();
    let src = Source::new(64, &[("srv/a.bin", 1 << 20)]);
    let cfg = config(&src.dir, "s3.toml", &s3.backup_toml("rescue-locked", "locked", "object-lock-days = 1\nobject-lock-mode = \"compliance\"\n"));
    let o = src.backup(&cfg);
    assert!(o.status.success(), "first backup: {}", text(&o));
    let first: Vec<(String, u64)> = s3.objects("rescue-locked", "locked/");
    let archive = first.iter().find(|(k, _)| k.ends_with(".tar.zst")).unwrap().0.clone();
    let head = s3.aws(&["s3api", "head-object", "--bucket", "rescue-locked", "--key", &archive]).unwrap();
    assert_eq!(head["ObjectLockMode"], "COMPLIANCE", "{head}");

    // The server refuses to delete the locked version.
    let versions = s3.aws(&["s3api", "list-object-versions", "--bucket", "rescue-locked", "--prefix", &archive]).unwrap();
    let version = versions["Versions"][0]["VersionId"].as_str().unwrap().to_string();
    let e = s3.aws(&["s3api", "delete-object", "--bucket", "rescue-locked", "--key", &archive, "--version-id", &version]).unwrap_err();
    assert!(e.contains("AccessDenied"), "deleting a locked backup: {e}");

    // A second backup with keep = 1: the first is past keep but locked, so it stays, and the run says so.
    let o = src.backup(&cfg);
    assert!(o.status.success(), "second backup with keep = 1: {}", text(&o));
    assert!(text(&o).contains("Object Lock retention until"), "keep did not report the locked backup: {}", text(&o));
    let after = s3.objects("rescue-locked", "locked/");
    assert_eq!(after.iter().filter(|(k, _)| k.ends_with(".tar.zst")).count(), 2, "{after:?}");
    assert!(after.iter().any(|(k, _)| k == &archive), "the locked backup is gone: {after:?}");
}

#[test]
fn a_read_key_is_asked_at_the_terminal_when_none_is_configured() {
    let s3 = server();
    let src = Source::new(64, &[("srv/a.bin", 1 << 20)]);
    let cfg = config(&src.dir, "s3.toml", &s3.backup_toml("rescue-plain", "typed", ""));
    // As on a minimal system without ca-certificates: an http endpoint needs none.
    let no_certs = src.dir.join("no-certs");
    std::fs::create_dir_all(&no_certs).unwrap();
    std::fs::write(no_certs.join("empty.pem"), "").unwrap();
    let env = [("SSL_CERT_FILE", no_certs.join("empty.pem")), ("SSL_CERT_DIR", no_certs.clone())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.to_str().unwrap())).collect();
    let o = run(&cfg, &["mkbackuponly", "--layout", src.layout.to_str().unwrap(), "--root", src.root.to_str().unwrap()], &env);
    assert!(o.status.success(), "mkbackuponly to S3 without CA certificates: {}", text(&o));
    // No key in an image, no recover-key-from, an unreadable credentials-file.
    let toml = s3.backup_toml("rescue-plain", "typed", "").replace("write.cred", "missing.cred");
    let toml: String = toml.lines().filter(|l| !l.starts_with("recover-key-from")).map(|l| format!("{l}\n")).collect();
    let cfg = config(&src.dir, "no-key.toml", &toml);
    let into = src.dir.join("restored");
    std::fs::create_dir_all(&into).unwrap();
    let args = ["restoreonly", "--layout", src.layout.to_str().unwrap(), "--target", into.to_str().unwrap()];

    // Nobody to ask (stdin is no terminal): the clear error, nothing restored.
    let o = run(&cfg, &args, &[]);
    assert_failed(&o, 2, &["no S3 key to restore with", "nobody to ask", "image-credentials-file", "recover-key-from"]);
    assert_eq!(std::fs::read_dir(&into).unwrap().count(), 0, "restoreonly wrote into the target");

    // At a terminal (a pty): the key id, then the secret typed.
    let typed = |secret: &str| {
        let mut cmd = Command::new(rescue_bin());
        cmd.arg("--config").arg(&cfg).args(args);
        let mut con = Console::spawn(&mut cmd);
        con.expect("Access key id: ");
        con.type_line(s3.var("S3_READ_KEY"));
        con.expect("Secret access key: ");
        con.type_line(secret);
        con.finish()
    };
    // Asked once (the check and the restore share it), the secret not echoed.
    let secret = s3.var("S3_READ_SECRET");
    let (status, rest) = typed(secret);
    assert!(status.success(), "restoreonly with the typed key failed:\n{rest}");
    assert!(!rest.contains("Access key id: "), "the key was asked twice:\n{rest}");
    assert!(!rest.contains(secret), "the secret was echoed or printed:\n{rest}");
    assert_eq!(tree_sums(&into), tree_sums(&src.root), "the restored tree differs from the source");
    let logs = sh(&format!("cat {}/log/* 2>/dev/null || true", src.dir.display()));
    assert!(logs.contains(s3.var("S3_READ_KEY")), "the log does not name the key used:\n{logs}");
    assert!(!logs.contains(secret), "the typed secret is in the log");

    // A wrong secret: refused by the server, named by its key id, the secret shown nowhere.
    let (status, rest) = typed("not-the-secret-at-all");
    assert_eq!(status.code(), Some(2), "{rest}");
    assert!(rest.contains("refused the access key") && rest.contains("typed on the terminal"), "{rest}");
    assert!(!rest.contains("not-the-secret-at-all"), "the typed secret was echoed or printed:\n{rest}");
}

#[test]
fn an_encrypted_backup_goes_to_s3_and_comes_back_only_with_its_identity() {
    let s3 = server();
    let src = Source::new(64, &[("srv/secret.bin", 2 << 20)]);
    let key = src.dir.join("backup-key.txt");
    let o = Command::new("age-keygen").arg("-o").arg(&key).output().expect("age-keygen (Debian package age)");
    assert!(o.status.success(), "age-keygen: {}", text(&o));
    let recipient = String::from_utf8_lossy(&Command::new("age-keygen").arg("-y").arg(&key).output().unwrap().stdout).trim().to_string();
    let backup = s3.backup_toml("rescue-plain", "encrypted", "") + &format!("[backup.encrypt]\nrecipients = [\"{recipient}\"]\n");
    let cfg = config(&src.dir, "s3.toml", &backup);
    let o = src.backup(&cfg);
    assert!(o.status.success(), "mkbackuponly to S3, encrypted: {}", text(&o));
    let objects = s3.objects("rescue-plain", "encrypted/");
    assert!(objects.iter().any(|(k, _)| k.ends_with(".tar.zst.age")), "no .tar.zst.age object: {objects:?}");

    // Without the identity (no terminal): refused before anything is restored.
    let into = src.dir.join("restored");
    std::fs::create_dir_all(&into).unwrap();
    let o = run(&cfg, &["restoreonly", "--layout", src.layout.to_str().unwrap(), "--target", into.to_str().unwrap()], &[]);
    assert_failed(&o, 2, &["is encrypted (age) and no identity is given"]);
    assert!(!into.join("srv").exists(), "something was restored without the identity");

    // With it: the tree comes back.
    let o =
        run(&cfg, &["restoreonly", "--layout", src.layout.to_str().unwrap(), "--target", into.to_str().unwrap(), "--age-identity", key.to_str().unwrap()], &[]);
    assert!(o.status.success(), "restoreonly from S3 with the identity: {}", text(&o));
    let restored = tree_sums(&into);
    assert_eq!(restored.get("./srv/secret.bin"), tree_sums(&src.root).get("./srv/secret.bin"), "the restored file differs");
    let log = std::fs::read_to_string(std::fs::read_dir(src.dir.join("log")).unwrap().next().unwrap().unwrap().path()).unwrap_or_default();
    let secret = std::fs::read_to_string(&key).unwrap();
    let secret = secret.lines().find(|l| l.starts_with("AGE-SECRET-KEY-")).unwrap();
    assert!(!log.contains(secret) && !text(&o).contains(secret), "the identity reached a log or the output");
}
