//! Backup server path against a real Bacula 9.6 (Debian's packages): a
//! director (sqlite catalog), a storage daemon (file volumes) and a file
//! daemon, all on 127.0.0.1 on free ports with configs in a temp dir;
//! nothing of /etc/bacula or its services is touched, and every daemon is
//! stopped when the test ends, also on failure.
//!
//! One test runs the scenarios in order on one set of daemons (starting
//! them is the slow part): a backup job run by `rescue mkbackuponly`, the
//! RPO check, restores by `rescue restoreonly` (newest into a loop ext4
//! filesystem, by job id, before a date) compared by checksum, and each
//! failure with its message. Run time: see docs/bareos.md.

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const CONSOLE_PASSWORD: &str = "c0nsole-Pw-7f3a";
const DIRECTOR_PASSWORD: &str = "d1rector-Pw-91bc";

/// Starts and stops the director and the storage daemon (shared with the VM scenario `bios-ext4-bacula`).
const DAEMONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bacula/daemons.sh");

/// The three daemons and their temp dir; stopped and removed on drop.
struct Bacula {
    dir: tempfile::TempDir,
    children: Vec<(String, Child)>,
    dir_port: u16,
}

impl Drop for Bacula {
    fn drop(&mut self) {
        let _ = Command::new(DAEMONS).arg("stop").arg(self.dir.path()).status();
        for (name, child) in &mut self.children {
            // SIGTERM first so the daemons close their files; then make sure.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if let Ok(None) = child.try_wait() {
                eprintln!("{name} did not stop on SIGTERM; killing it");
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port")).collect();
    listeners.iter().map(|l| l.local_addr().expect("addr").port()).collect()
}

fn wait_for_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not listen on 127.0.0.1:{port} within 20 s; its output:\n{}", std::fs::read_to_string(log).unwrap_or_default());
}

impl Bacula {
    fn start() -> Bacula {
        common::require_root();
        common::require_tools(&["bacula-dir", "bacula-sd", "bacula-fd", "bconsole", "sqlite3", "timeout"]);
        let dir = tempfile::Builder::new().prefix("rescue-bacula-").tempdir().expect("tempdir");
        let t = dir.path().to_path_buf();
        for d in ["fd", "run", "src"] {
            std::fs::create_dir_all(t.join(d)).expect("mkdir");
        }
        let ports = free_ports(3);
        let (dp, sp, fp) = (ports[0], ports[1], ports[2]);
        let t_ = t.display();
        // The director's own resources, the storage daemon and the catalog
        // come from tests/bacula/daemons.sh (shared with the VM scenario);
        // the clients, the fileset and the jobs are this test's.
        let job = |name: &str, kind: &str, extra: &str| {
            format!(
                "Job {{\n  Name = \"{name}\"\n  Type = {kind}\n  Level = Full\n  Client = rt-fd\n  FileSet = rt-set\n  Storage = File1\n  Pool = File\n  Messages = Standard\n  Where = \"{t_}/bacula-restores\"\n{extra}}}\n"
            )
        };
        let fail = "  RunScript {\n    RunsWhen = Before\n    RunsOnClient = no\n    FailJobOnError = yes\n    Command = \"/bin/false\"\n  }\n";
        let resources = format!(
            "FileSet {{\n  Name = \"rt-set\"\n  Include {{\n    Options {{\n      signature = MD5\n    }}\n    File = \"{t_}/src\"\n  }}\n}}\n\
             Client {{\n  Name = rt-fd\n  Address = 127.0.0.1\n  FDPort = {fp}\n  Catalog = MyCatalog\n  Password = \"fd-pw\"\n}}\n\
             Client {{\n  Name = rt-nobackup-fd\n  Address = 127.0.0.1\n  FDPort = {fp}\n  Catalog = MyCatalog\n  Password = \"fd-pw\"\n}}\n{}{}{}{}",
            job("rt-backup", "Backup", ""),
            job("rt-backup-fail", "Backup", fail),
            job("rt-restore", "Restore", ""),
            job("rt-restore-fail", "Restore", fail),
        );
        let fd_conf = format!(
            "FileDaemon {{\n  Name = rt-fd\n  FDport = {fp}\n  FDAddress = 127.0.0.1\n  WorkingDirectory = \"{t_}/fd\"\n  Pid Directory = \"{t_}/run\"\n  Maximum Concurrent Jobs = 5\n}}\n\
             Director {{\n  Name = rt-dir\n  Password = \"fd-pw\"\n}}\n\
             Messages {{\n  Name = Standard\n  director = rt-dir = all, !skipped, !restored\n}}\n"
        );
        for (name, text) in [("dir-resources.conf", &resources), ("fd.conf", &fd_conf)] {
            std::fs::write(t.join(name), text).expect("write daemon config");
        }

        // From here on, dropping `b` stops whatever started.
        let mut b = Bacula { dir, children: Vec::new(), dir_port: dp };
        let out = Command::new(DAEMONS)
            .arg("start")
            .arg(&t)
            .envs([
                ("BACULA_DIR_PORT", dp.to_string()),
                ("BACULA_SD_PORT", sp.to_string()),
                ("BACULA_DIRECTOR", "rt-dir".to_string()),
                ("BACULA_CONSOLE", "rt-console".to_string()),
                ("BACULA_CONSOLE_PASSWORD", CONSOLE_PASSWORD.to_string()),
                ("BACULA_DIRECTOR_PASSWORD", DIRECTOR_PASSWORD.to_string()),
            ])
            .output()
            .expect("run tests/bacula/daemons.sh");
        assert!(out.status.success(), "starting the director and storage daemon failed:\n{}", text(&out));
        let log = t.join("bacula-fd.out");
        let check = Command::new("bacula-fd").args(["-t", "-c"]).arg(t.join("fd.conf")).output().expect("config test");
        assert!(check.status.success(), "bacula-fd -t rejects the test config: {}", text(&check));
        let f = std::fs::File::create(&log).expect("log");
        let child = Command::new("bacula-fd")
            .args(["-f", "-c"])
            .arg(t.join("fd.conf"))
            .stdout(f.try_clone().expect("dup"))
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("starting bacula-fd: {e}"));
        b.children.push(("bacula-fd".to_string(), child));
        wait_for_port(fp, "bacula-fd", &log);
        b
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A rescue config for this director; `extra` lines go into [backup.server].
    fn config(&self, name: &str, password: &str, extra: &str) -> PathBuf {
        let t = self.path();
        let pw = t.join(format!("{name}.pw"));
        std::fs::write(&pw, format!("{password}\n")).expect("write password");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).expect("chmod password");
        let cfg = t.join(format!("{name}.toml"));
        let base = format!(
            "log-dir = \"{0}/log-{name}\"\nstate-dir = \"{0}/state\"\n[backup]\nmethod = \"bacula\"\n[backup.server]\naddress = \"127.0.0.1\"\nport = {1}\ndirector-name = \"rt-dir\"\nconsole-name = \"rt-console\"\npassword-file = \"{2}\"\nclient = \"rt-fd\"\nfileset = \"rt-set\"\nbackup-job = \"rt-backup\"\nrestore-job = \"rt-restore\"\npoll-interval = 1\njob-timeout = 300\nconnect-timeout = 5\n",
            t.display(),
            self.dir_port,
            pw.display()
        );
        // Later keys of the same name win: drop the base line when overridden.
        let overridden: Vec<&str> = extra.lines().filter_map(|l| l.split('=').next()).map(str::trim).collect();
        let text: String =
            base.lines().filter(|l| !overridden.contains(&l.split('=').next().unwrap_or("").trim()) || l.starts_with('[')).map(|l| format!("{l}\n")).collect();
        std::fs::write(&cfg, format!("{text}{extra}")).expect("write rescue config");
        cfg
    }
}

fn rescue(cfg: &Path, args: &[&str]) -> Output {
    let out = Command::new(common::rescue_bin()).arg("--config").arg(cfg).args(args).output().expect("run rescue");
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains(CONSOLE_PASSWORD) && !all.contains(DIRECTOR_PASSWORD), "a password was printed:\n{all}");
    out
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[track_caller]
fn expect_ok(o: &Output, what: &str) {
    assert!(o.status.success(), "{what} failed (exit {:?}):\n{}", o.status.code(), text(o));
}

#[track_caller]
fn expect_fail(o: &Output, what: &str, needles: &[&str]) -> String {
    let t = text(o);
    assert!(!o.status.success(), "{what} should have failed:\n{t}");
    for n in needles {
        assert!(t.contains(n), "{what}: the message should contain {n:?}:\n{t}");
    }
    eprintln!("{what}: {}", t.lines().filter(|l| l.contains("error")).collect::<Vec<_>>().join(" | "));
    t
}

/// Relative path -> sha256 (files) or `-> target` (symlinks), for everything under `root`.
fn checksums(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            let rel = p.strip_prefix(root).expect("prefix").display().to_string();
            let m = std::fs::symlink_metadata(&p).expect("stat");
            if m.file_type().is_symlink() {
                out.insert(rel, format!("-> {}", std::fs::read_link(&p).expect("readlink").display()));
            } else if m.is_dir() {
                out.insert(rel, "dir".into());
                stack.push(p);
            } else {
                out.insert(rel, hex::encode(Sha256::digest(std::fs::read(&p).expect("read"))));
            }
        }
    }
    out
}

fn write_tree(src: &Path) {
    std::fs::create_dir_all(src.join("etc/app")).expect("mkdir");
    std::fs::create_dir_all(src.join("var/data/deep/deeper")).expect("mkdir");
    std::fs::write(src.join("etc/app/app.conf"), "listen = 8080\n").expect("write");
    std::fs::write(src.join("etc/empty"), "").expect("write");
    std::fs::write(src.join("var/data/file with spaces.txt"), "spaces\n").expect("write");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let big: Vec<u8> = (0..3_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(src.join("var/data/deep/deeper/blob.bin"), big).expect("write");
    for i in 0..50 {
        std::fs::write(src.join(format!("var/data/f{i:03}")), format!("file {i}\n").repeat(i + 1)).expect("write");
    }
    std::os::unix::fs::symlink("app/app.conf", src.join("etc/link")).expect("symlink");
}

#[test]
fn bacula_backup_and_restore_through_rescue() {
    let started = Instant::now();
    let b = Bacula::start();
    eprintln!("daemons up in {:.1} s", started.elapsed().as_secs_f64());
    let src = b.path().join("src");
    write_tree(&src);
    let before = checksums(&src);
    let rel_src = src.strip_prefix("/").expect("absolute").to_path_buf();
    let good = b.config("good", CONSOLE_PASSWORD, "");

    // mkbackuponly, mode run: the director runs the job, rescue waits for it.
    let o = rescue(&good, &["mkbackuponly"]);
    expect_ok(&o, "mkbackuponly (run)");
    assert!(text(&o).contains("backup job of rt-fd"), "{}", text(&o));
    let first_done = String::from_utf8_lossy(&Command::new("date").arg("+%F %T").output().expect("date").stdout).trim().to_string();
    std::thread::sleep(Duration::from_millis(1100));

    // dump shows the settings, never the password.
    let o = rescue(&good, &["dump"]);
    expect_ok(&o, "dump");
    assert!(text(&o).contains("password ******** (from"), "{}", text(&o));

    // Change the tree and back it up again: the newest restore must give the new content.
    std::fs::write(src.join("etc/app/app.conf"), "listen = 9090\n").expect("write");
    std::fs::write(src.join("etc/new-file"), "new\n").expect("write");
    let after = checksums(&src);
    expect_ok(&rescue(&good, &["mkbackuponly"]), "second mkbackuponly (run)");

    // mkbackuponly, mode check: the last good backup is younger than the RPO.
    let check = b.config("check", CONSOLE_PASSWORD, "mkbackup-mode = \"check\"\nrpo-hours = 1\n");
    let o = rescue(&check, &["--json", "mkbackuponly"]);
    expect_ok(&o, "mkbackuponly (check)");
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json report");
    assert_eq!(r["job"]["status"], "T", "{r}");
    let stale = b.config("stale", CONSOLE_PASSWORD, "mkbackup-mode = \"check\"\nrpo-hours = 0\n");
    expect_fail(&rescue(&stale, &["mkbackuponly"]), "RPO exceeded", &["older than backup.server.rpo-hours = 0"]);

    // restoreonly --check: the director answers and has a backup; nothing restored.
    let o = rescue(&good, &["--json", "restoreonly", "--check"]);
    expect_ok(&o, "restoreonly --check");
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json report");
    assert!(r["greeting"].as_str().unwrap_or("").contains("rt-dir"), "{r}");
    assert_eq!(r["backup"]["status"], "T", "{r}");

    // restoreonly, newest backup, into a fresh ext4 loop filesystem.
    let mut disk = common::LoopDisk::new(b.path(), "target", 64);
    common::sh(&format!("mkfs.ext4 -q -F {}", disk.dev));
    let target = b.path().join("target");
    disk.mount(&disk.dev.clone(), &target, None);
    let t0 = Instant::now();
    let o = rescue(&good, &["--json", "restoreonly", "--target", target.to_str().expect("utf8")]);
    expect_ok(&o, "restoreonly (newest)");
    eprintln!("restore of {} entries took {:.1} s", after.len(), t0.elapsed().as_secs_f64());
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json report");
    assert_eq!(r["job"]["files"], r["expected_files"], "{r}");
    assert_eq!(checksums(&target.join(&rel_src)), after, "the restored tree differs from the backed-up one");
    disk.umount_all();

    // The full `rescue recover` with the director as the data source: a GPT
    // disk with one ext4 partition is recorded, then recreated on a blank disk
    // and filled by the director's restore job; the report counts its files.
    recover_through_the_director(&b, &good, &after, &rel_src);

    // restoreonly --restore-jobid (the first backup) and --restore-before (before the second).
    let jobs = String::from_utf8_lossy(&rescue(&check, &["--json", "mkbackuponly"]).stdout).to_string();
    let newest: serde_json::Value = serde_json::from_str(&jobs).expect("json");
    let newest_id = newest["job"]["jobid"].as_u64().expect("jobid");
    let by_id = b.path().join("by-id");
    std::fs::create_dir_all(&by_id).expect("mkdir");
    let first_id = (newest_id - 1).to_string();
    expect_ok(&rescue(&good, &["restoreonly", "--target", by_id.to_str().expect("utf8"), "--restore-jobid", &first_id]), "restoreonly --restore-jobid");
    assert_eq!(checksums(&by_id.join(&rel_src)), before, "--restore-jobid did not give the first backup");
    let by_date = b.path().join("by-date");
    std::fs::create_dir_all(&by_date).expect("mkdir");
    expect_ok(&rescue(&good, &["restoreonly", "--target", by_date.to_str().expect("utf8"), "--restore-before", &first_done]), "restoreonly --restore-before");
    assert_eq!(checksums(&by_date.join(&rel_src)), before, "--restore-before did not give the first backup");

    // Failures, each with its message.
    let scratch = b.path().join("scratch");
    std::fs::create_dir_all(&scratch).expect("mkdir");
    let scratch_s = scratch.to_str().expect("utf8");
    let dead_port = free_ports(1)[0];
    let unreachable = b.config("unreachable", CONSOLE_PASSWORD, &format!("port = {dead_port}\n"));
    let t0 = Instant::now();
    let o = rescue(&unreachable, &["restoreonly", "--target", scratch_s]);
    expect_fail(&o, "director unreachable", &["is unreachable", "Connection refused"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(t0.elapsed() < Duration::from_secs(10), "the unreachable director took {:?} to report", t0.elapsed());

    let wrong = b.config("wrong", "not-the-password", "");
    let o = rescue(&wrong, &["restoreonly", "--target", scratch_s]);
    expect_fail(&o, "wrong password", &["refused the console \"rt-console\"", "Director authorization problem"]);
    expect_fail(&rescue(&wrong, &["restoreonly", "--check"]), "wrong password (check)", &["Director authorization problem"]);
    expect_fail(&rescue(&good, &["restoreonly", "--check", "--restore-jobid", "999"]), "unknown job id (check)", &["has no job 999"]);

    let unknown = b.config("unknown", CONSOLE_PASSWORD, "client = \"nosuch-fd\"\n");
    expect_fail(
        &rescue(&unknown, &["restoreonly", "--target", scratch_s]),
        "unknown client",
        &["does not know the client nosuch-fd", "Could not find Client \"nosuch-fd\""],
    );
    let nobackup = b.config("nobackup", CONSOLE_PASSWORD, "client = \"rt-nobackup-fd\"\nmkbackup-mode = \"check\"\n");
    expect_fail(
        &rescue(&nobackup, &["restoreonly", "--target", scratch_s]),
        "no backup (restore)",
        &["no backup of the client rt-nobackup-fd", "No Full backup before"],
    );
    expect_fail(&rescue(&nobackup, &["mkbackuponly"]), "no backup (check)", &["has no successful backup of the client rt-nobackup-fd"]);

    let failing = b.config("failing", CONSOLE_PASSWORD, "restore-job = \"rt-restore-fail\"\nbackup-job = \"rt-backup-fail\"\n");
    expect_fail(
        &rescue(&failing, &["restoreonly", "--target", scratch_s]),
        "restore job in error",
        &["restore job", "terminated with errors", "BeforeJob returned non-zero status=1"],
    );
    expect_fail(&rescue(&failing, &["mkbackuponly"]), "backup job in error", &["backup job", "terminated with errors", "Backup Error"]);

    let fewer = b.config("fewer", CONSOLE_PASSWORD, "min-files = 100000\n");
    expect_fail(&rescue(&fewer, &["restoreonly", "--target", scratch_s]), "fewer files", &["fewer than expected", "backup.server.min-files = 100000"]);

    // The rescue image restores: build it for this director, unpack it, run
    // its own file daemon and its own `rescue restoreonly` chrooted in the
    // unpacked tree (the network is the host's 127.0.0.1, as qemu's user
    // networking would give a guest the host), and compare by checksum.
    rescue_image_restores(&b, &after, &rel_src);

    // The password went nowhere but the password file: not into the logs either.
    for log in std::fs::read_dir(b.path()).expect("read").filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with("log-")) {
        for f in std::fs::read_dir(log.path()).expect("read log dir").filter_map(|e| e.ok()) {
            let t = std::fs::read_to_string(f.path()).unwrap_or_default();
            assert!(!t.contains(CONSOLE_PASSWORD), "the password is in {}", f.path().display());
        }
    }
    eprintln!("bacula test took {:.1} s", started.elapsed().as_secs_f64());
}

#[path = "image_common/mod.rs"]
mod image_common;

fn recover_through_the_director(b: &Bacula, cfg: &Path, expected: &BTreeMap<String, String>, rel_src: &Path) {
    let mut src = common::LoopDisk::new(b.path(), "rec-src", 64);
    src.partition("label: gpt\ntype=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root\n");
    common::sh(&format!("mkfs.ext4 -q -F -L recroot {}", src.part(1)));
    let root = b.path().join("rec-root");
    src.mount(&src.part(1), &root, None);
    let layout = b.path().join("rec-layout.toml");
    let o = rescue(cfg, &["savelayout", "--disk", &src.dev, "--root", root.to_str().expect("utf8"), "-o", layout.to_str().expect("utf8")]);
    expect_ok(&o, "savelayout of the recover source");
    src.umount_all();
    let src_uuid = common::blkid(&src.part(1))["UUID"].clone();
    let dst = common::LoopDisk::new(b.path(), "rec-dst", 64);
    let target = b.path().join("rec-target");
    let map = format!("{}={}", src.dev.trim_start_matches("/dev/"), dst.dev);
    let o = rescue(
        cfg,
        &[
            "--json",
            "recover",
            "--yes",
            "--keep-mounted",
            "--layout",
            layout.to_str().expect("utf8"),
            "--map",
            &map,
            "--target-root",
            target.to_str().expect("utf8"),
        ],
    );
    let umount = || {
        let _ = Command::new("umount").arg("-R").arg(&target).status();
    };
    if !o.status.success() {
        umount();
        panic!("recover through the director failed:\n{}", text(&o));
    }
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).expect("recover report is JSON");
    let restored = checksums(&target.join(rel_src));
    let dst_uuid = common::blkid(&dst.part(1)).get("UUID").cloned();
    umount();
    assert_eq!(restored, *expected, "the tree the director restored differs");
    assert_eq!(dst_uuid.as_deref(), Some(src_uuid.as_str()), "the recreated filesystem keeps its UUID");
    let phases: Vec<&str> = rep["phases"].as_array().expect("phases").iter().filter_map(|p| p["name"].as_str()).collect();
    assert!(phases.contains(&"restore") && phases.contains(&"finalize"), "{rep}");
    assert!(rep["backup"]["url"].as_str().unwrap_or("").contains("Bacula director"), "{rep}");
    assert!(rep["restored"]["entries"].as_u64().unwrap_or(0) >= expected.len() as u64, "{rep}");
    // --url makes no sense with a backup server: refused before anything.
    let o = rescue(cfg, &["recover", "--yes", "--layout", layout.to_str().expect("utf8"), "--map", &map, "--url", "file:///nonexistent"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("the director restores the data"), "{}", text(&o));
}

fn rescue_image_restores(b: &Bacula, expected: &BTreeMap<String, String>, rel_src: &Path) {
    let t0 = Instant::now();
    let t = b.path();
    let cfg = b.config("image", CONSOLE_PASSWORD, &format!("fd-config = \"{}\"\n", t.join("fd.conf").display()));
    let k = image_common::kernel_dir();
    let out = image_common::mkrescue_cmd(&cfg, &k, &t.join("image-out"), "pxe").output().expect("mkrescue");
    assert!(out.status.success(), "mkrescue failed: {}", String::from_utf8_lossy(&out.stderr));
    let root = image_common::extract_initrd(&t.join("image-out/rescue-imgtest-pxe/initrd.img"));
    let r = root.path();
    common::sh(&format!("mknod -m 666 '{}' c 1 9", r.join("dev/urandom").display()));
    // The test's fd.conf keeps its state in the test's directories (a real
    // config's /var/lib/bacula is in the image, the init makes /run/bacula).
    for d in ["fd", "run"] {
        std::fs::create_dir_all(r.join(t.strip_prefix("/").expect("absolute")).join(d)).expect("mkdir in image");
    }
    std::fs::create_dir_all(r.join("mnt/local")).expect("mkdir target");
    // The host's file daemon makes way for the image's, on the same port.
    let host_fd = b.children.iter().find(|(n, _)| n == "bacula-fd").map(|(_, c)| c.id()).expect("the test's file daemon");
    let _ = Command::new("kill").arg(host_fd.to_string()).status();
    let port: u16 = std::fs::read_to_string(t.join("fd.conf"))
        .expect("fd.conf")
        .lines()
        .find_map(|l| l.trim().strip_prefix("FDport = ").map(|p| p.trim().parse().expect("port")))
        .expect("FDport");
    // The old daemon must have let go of the port first.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "the test's bacula-fd did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The init's own lines start the daemon (it forks; its pid file stops it).
    let init = std::fs::read_to_string(r.join("init")).expect("init");
    let start = init.find("# Backup server (backup.method").expect("the init's file daemon block");
    let end = start + init[start..].find("\n\n").expect("end of the block");
    let _fd = PidFileGuard(r.join(t.strip_prefix("/").expect("absolute")).join(format!("run/bacula-fd.{port}.pid")));
    let o = Command::new("chroot").arg(r).args(["/bin/sh", "-c", &format!(". /etc/rescue/image.env\n{}", &init[start..end])]).output().expect("chroot sh");
    assert!(text(&o).contains("RESCUE-FD started /usr/sbin/bacula-fd"), "the init did not start the image's file daemon:\n{}", text(&o));
    wait_for_port(port, "the image's bacula-fd", &t.join("fd/bacula-fd.out"));
    let o = Command::new("chroot")
        .arg(r)
        .args(["/usr/bin/rescue", "--config", "/etc/rescue/rescue.toml", "restoreonly", "--target", "/mnt/local"])
        .output()
        .expect("chroot rescue");
    assert!(o.status.success(), "rescue restoreonly inside the image failed:\n{}", text(&o));
    assert!(!text(&o).contains(CONSOLE_PASSWORD));
    assert_eq!(checksums(&r.join("mnt/local").join(rel_src)), *expected, "the tree restored inside the image differs");
    eprintln!("restore through the rescue image's fd and bconsole: {:.1} s (mkrescue included)", t0.elapsed().as_secs_f64());
}

/// Stops the daemon named by a pid file when dropped (the image's file
/// daemon, which forks away from the test), also on failure.
struct PidFileGuard(PathBuf);

impl Drop for PidFileGuard {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.0).ok().and_then(|p| p.trim().parse::<u32>().ok()) {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            for _ in 0..50 {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// mkrescue with backup.method = "bacula": the file daemon, bconsole, their
/// libraries, the daemon's config and the console password go in, the init
/// starts the daemon, and both programs run from the image's own tree.
#[test]
fn rescue_image_holds_the_bacula_file_daemon() {
    common::require_root();
    common::require_tools(&["bacula-fd", "bconsole", "chroot"]);
    assert!(Path::new("/etc/bacula/bacula-fd.conf").is_file(), "/etc/bacula/bacula-fd.conf is missing: apt-get install bacula-fd");
    let k = image_common::kernel_dir();
    let dir = tempfile::Builder::new().prefix("rescue-bacula-image-").tempdir().expect("tempdir");
    let pw = dir.path().join("console.pw");
    std::fs::write(&pw, format!("{CONSOLE_PASSWORD}\n")).expect("write");
    let cfg = dir.path().join("rescue.toml");
    std::fs::write(
        &cfg,
        format!(
            "log-dir = \"{0}/log\"\nstate-dir = \"{0}/state\"\n[backup]\nmethod = \"bacula\"\n[backup.server]\naddress = \"backup.example.com\"\npassword-file = \"{1}\"\nclient = \"imgtest-fd\"\n",
            dir.path().display(),
            pw.display()
        ),
    )
    .expect("write config");
    let started = Instant::now();
    let out = image_common::mkrescue_cmd(&cfg, &k, &dir.path().join("out"), "pxe").output().expect("mkrescue");
    assert!(out.status.success(), "mkrescue failed: {}", String::from_utf8_lossy(&out.stderr));
    eprintln!("mkrescue (pxe) took {:.1} s", started.elapsed().as_secs_f64());
    let root = image_common::extract_initrd(&dir.path().join("out/rescue-imgtest-pxe/initrd.img"));
    let r = root.path();
    for p in ["usr/sbin/bacula-fd", "usr/sbin/bconsole", "etc/bacula/bacula-fd.conf", "usr/lib/bacula/libbac-9.6.7.so", "usr/lib/bacula/libbacfind-9.6.7.so"] {
        assert!(r.join(p).exists(), "{p} missing from the initramfs");
    }
    use std::os::unix::fs::PermissionsExt;
    let pw_in = r.join("etc/rescue/director.password");
    assert_eq!(std::fs::read_to_string(&pw_in).expect("password in the image").trim(), CONSOLE_PASSWORD);
    assert_eq!(std::fs::metadata(&pw_in).expect("stat").permissions().mode() & 0o777, 0o600);
    // The image's config keeps the method and the director, not the password file's path.
    let img_cfg = std::fs::read_to_string(r.join("etc/rescue/rescue.toml")).expect("config");
    assert!(img_cfg.contains("method = \"bacula\"") && img_cfg.contains("backup.example.com") && !img_cfg.contains("password-file"), "{img_cfg}");
    let env = std::fs::read_to_string(r.join("etc/rescue/image.env")).expect("image.env");
    assert!(env.contains("RESCUE_FD=/usr/sbin/bacula-fd") && env.contains("RESCUE_FD_CONF=/etc/bacula/bacula-fd.conf"), "{env}");
    let init = std::fs::read_to_string(r.join("init")).expect("init");
    assert!(init.contains("\"$RESCUE_FD\" -c \"$RESCUE_FD_CONF\""), "the init does not start the file daemon");
    // The programs find every library inside the image. (At boot devtmpfs
    // gives /dev/urandom, which bacula-fd seeds OpenSSL from; here we make it.)
    common::sh(&format!("mknod -m 666 '{}' c 1 9", r.join("dev/urandom").display()));
    assert!(r.join("var/lib/bacula").is_dir(), "the file daemon's working directory is missing");
    let t = Command::new("chroot").arg(r).args(["/usr/sbin/bacula-fd", "-t", "-c", "/etc/bacula/bacula-fd.conf"]).output().expect("chroot");
    assert!(t.status.success(), "bacula-fd does not run inside the image: {}{}", String::from_utf8_lossy(&t.stdout), String::from_utf8_lossy(&t.stderr));
    let t = Command::new("chroot").arg(r).args(["/usr/sbin/bconsole", "-?"]).output().expect("chroot");
    assert!(
        String::from_utf8_lossy(&t.stderr).contains("Usage: bconsole") || String::from_utf8_lossy(&t.stdout).contains("Usage: bconsole"),
        "bconsole does not run inside the image"
    );
    // The manifest names the secrets that went in on purpose.
    let m = std::fs::read_to_string(dir.path().join("out/rescue-imgtest.manifest.json")).expect("manifest");
    assert!(m.contains("director.password") && m.contains("bacula-fd.conf"), "{m}");
}
