//! Incremental chains in GNU tar's format (dumpdirs).
//! - Made by GNU tar, restored by `rescue archive extract --incremental` in
//!   order: deletions and renames apply, and the result equals the source and
//!   what `tar -x --listed-incremental=/dev/null` makes of the same chain.
//! - Made by `rescue mkbackuponly --level full|incremental` from an ext4 on a
//!   loop device, restored by `restoreonly` onto a blank ext4 and by GNU tar:
//!   both equal the source; the chain up to a chosen archive; an encrypted
//!   chain; a missing middle link refused before anything is written;
//!   `keep` counting chains.
//!
//! Run as root: `cargo test --test archive_incremental`.
#![allow(clippy::unwrap_used)]

mod archive_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use archive_common::*;

const TOOLS: &[(&str, &str)] = &[("tar", "tar"), ("setfacl", "acl"), ("mknod", "coreutils"), ("mkfifo", "coreutils"), ("touch", "coreutils")];

/// GNU tar does not archive sockets.
const SKIP: &[&str] = &["tmp/sock"];

fn level(src: &Path, snar: &Path, out: &Path) {
    sh(&format!(
        "tar --format=posix --sparse --xattrs --xattrs-include='*' --acls --numeric-owner --listed-incremental={} -C {} -cf {} . 2>/dev/null; test $? -le 1",
        snar.display(),
        src.display(),
        out.display()
    ));
}

#[test]
fn a_gnu_incremental_chain_restores_deletions_renames_and_type_changes() {
    require(TOOLS);
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    build_tree(&src);
    let w = |p: &str, s: &str| std::fs::write(src.join(p), s).unwrap();
    std::fs::create_dir_all(src.join("data/old-dir/sub")).unwrap();
    w("data/old-dir/sub/f", "in a directory that is renamed");
    w("data/mod", "version 1");
    w("data/same-mtime", "version 1");
    w("data/gone", "deleted later");
    w("data/rename-me", "renamed later");
    w("data/becomes-dir", "a file, then a directory");
    std::fs::create_dir_all(src.join("data/becomes-link/x")).unwrap();
    w("data/becomes-link/x/y", "a directory, then a symlink");
    let snar = t.path().join("snar");
    let chain: Vec<_> = (0..3).map(|i| t.path().join(format!("level{i}.tar"))).collect();
    level(&src, &snar, &chain[0]);

    // Changes 1: add, modify, delete, rename a file and a directory,
    // replace a file by a directory and a directory by a symlink,
    // modify keeping the mtime.
    w("data/new", "added");
    w("data/mod", "version 2");
    std::fs::remove_file(src.join("data/gone")).unwrap();
    std::fs::rename(src.join("data/rename-me"), src.join("data/renamed")).unwrap();
    std::fs::rename(src.join("data/old-dir"), src.join("data/new-dir")).unwrap();
    std::fs::remove_file(src.join("data/becomes-dir")).unwrap();
    std::fs::create_dir_all(src.join("data/becomes-dir")).unwrap();
    w("data/becomes-dir/inside", "now a directory");
    std::fs::remove_dir_all(src.join("data/becomes-link")).unwrap();
    std::os::unix::fs::symlink("new-dir", src.join("data/becomes-link")).unwrap();
    sh(&format!("f={}; t=$(stat -c %y $f); echo version-2 > $f; touch -d \"$t\" $f", src.join("data/same-mtime").display()));
    level(&src, &snar, &chain[1]);

    // Changes 2: delete a directory, add into a renamed one, rename back.
    std::fs::remove_dir_all(src.join("data/becomes-dir")).unwrap();
    w("data/new-dir/sub/g", "added to a renamed directory");
    std::fs::rename(src.join("data/renamed"), src.join("data/rename-me")).unwrap();
    level(&src, &snar, &chain[2]);

    let ours = t.path().join("ours");
    for a in &chain {
        let mut c = rescue();
        c.args(["archive", "extract", "--incremental"]).arg(a).arg("--target").arg(&ours);
        let out = run(c);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let gnu = t.path().join("gnu");
    std::fs::create_dir_all(&gnu).unwrap();
    for a in &chain {
        sh(&format!("tar --xattrs --xattrs-include='*' --acls --numeric-owner -p --listed-incremental=/dev/null -C {} -xf {}", gnu.display(), a.display()));
    }
    assert!(!ours.join("data/gone").exists() && !ours.join("data/old-dir").exists() && !ours.join("data/becomes-dir").exists());
    assert_eq!(std::fs::read_to_string(ours.join("data/same-mtime")).unwrap(), "version-2\n", "a change keeping the mtime is caught by ctime");
    assert_same_tree(&src, &ours, SKIP);
    assert_same_tree(&gnu, &ours, SKIP);

    // Without --incremental the chain only adds: what was deleted comes back.
    let plain = t.path().join("plain");
    for a in &chain {
        let mut c = rescue();
        c.args(["archive", "extract"]).arg(a).arg("--target").arg(&plain);
        run(c);
    }
    assert!(plain.join("data/gone").exists());
}

// ---------------------------------------------------------------- chains made by rescue

/// The manifest is checked, not written; GNU tar writes it (delete it, docs/archive.md).
const SKIP_OURS: &[&str] = &["tmp/sock", rescue::archive::format::MANIFEST_NAME];

/// A source ext4 on a loop device, a destination and a config.
struct Chain {
    t: tempfile::TempDir,
    src: LoopFs,
    layout: PathBuf,
    cfg: PathBuf,
    host_dir: PathBuf,
    key: Option<PathBuf>,
}

impl Chain {
    /// `extra`: more `[backup]` keys; `encrypt`: a key pair made by age-keygen.
    fn new(extra: &str, encrypt: bool) -> Chain {
        require(TOOLS);
        let t = tempfile::tempdir().unwrap();
        let src = LoopFs::new(64);
        build_tree(&src.mnt);
        std::fs::create_dir_all(src.mnt.join("boot")).unwrap();
        std::fs::write(src.mnt.join("boot/vmlinuz"), "kernel 1").unwrap();
        let mut enc = String::new();
        let mut key = None;
        if encrypt {
            require(&[("age-keygen", "age")]);
            let k = t.path().join("key.txt");
            sh(&format!("age-keygen -o {} 2>/dev/null", k.display()));
            let public = String::from_utf8(Command::new("age-keygen").arg("-y").arg(&k).output().unwrap().stdout).unwrap();
            enc = format!("[backup.encrypt]\nrecipients = [\"{}\"]\n", public.trim());
            key = Some(k);
        }
        let backups = t.path().join("backups");
        let cfg = t.path().join("rescue.toml");
        std::fs::write(
            &cfg,
            format!("log-dir = \"{0}/logs\"\nstate-dir = \"{0}/state\"\n[backup]\nurl = \"file://{1}\"\n{extra}\n{enc}", t.path().display(), backups.display()),
        )
        .unwrap();
        let layout = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/archive/layout.toml");
        Chain { host_dir: backups.join("testhost"), t, src, layout, cfg, key }
    }

    fn rescue(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rescue"));
        c.arg("--config").arg(&self.cfg).args(args).arg("--layout").arg(&self.layout).stdin(Stdio::null());
        if let (Some(k), true) = (&self.key, args[0] == "restoreonly") {
            c.arg("--age-identity").arg(k);
        }
        c
    }

    /// One backup (`level` or none: backup.full-every decides); the new archive's name.
    fn backup(&self, level: Option<&str>) -> String {
        let before = self.names();
        let mut c = self.rescue(&["mkbackuponly"]);
        c.arg("--root").arg(&self.src.mnt);
        if let Some(l) = level {
            c.args(["--level", l]);
        }
        assert_eq!(run(c).status.code(), Some(0));
        let new: Vec<String> = self.names().into_iter().filter(|n| !before.contains(n)).collect();
        assert_eq!(new.len(), 1, "{new:?}");
        new[0].clone()
    }

    /// The archives at the destination, oldest first.
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> =
            rescue::backup::list_backups(&self.host_dir).unwrap_or_default().iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        v.reverse();
        v
    }

    fn link(&self, name: &str) -> rescue::backup::chain::Link {
        rescue::backup::chain::read_link(&self.host_dir.join(name)).unwrap()
    }

    fn restore(&self, target: &Path, archive: Option<&str>) -> Output {
        let mut c = self.rescue(&["restoreonly"]);
        c.arg("--target").arg(target);
        if let Some(a) = archive {
            c.args(["--archive", a]);
        }
        run(c)
    }

    /// The member names of an archive of the chain.
    fn members(&self, name: &str) -> String {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rescue"));
        c.arg("--config").arg(&self.cfg).args(["archive", "list"]).arg(self.host_dir.join(name));
        if let Some(k) = &self.key {
            c.arg("--age-identity").arg(k);
        }
        let out = run(c);
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8(out.stdout).unwrap()
    }

    fn w(&self, p: &str, s: &str) {
        let p = self.src.mnt.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    }

    /// The first state, and the changes before the first and second incremental.
    fn first(&self) {
        self.w("data/old-dir/sub/f", "in a directory that is renamed");
        self.w("data/unchanged", "never touched");
        self.w("data/mod", "version 1");
        self.w("data/same-mtime", "version 1");
        self.w("data/gone", "deleted later");
        self.w("data/rename-me", "renamed later");
        self.w("data/becomes-dir", "a file, then a directory");
        self.w("data/becomes-link/x/y", "a directory, then a symlink");
    }

    fn changes_1(&self) {
        let src = &self.src.mnt;
        self.w("data/new", "added");
        self.w("data/mod", "version 2");
        std::fs::remove_file(src.join("data/gone")).unwrap();
        std::fs::rename(src.join("data/rename-me"), src.join("data/renamed")).unwrap();
        std::fs::rename(src.join("data/old-dir"), src.join("data/new-dir")).unwrap();
        std::fs::remove_file(src.join("data/becomes-dir")).unwrap();
        self.w("data/becomes-dir/inside", "now a directory");
        std::fs::remove_dir_all(src.join("data/becomes-link")).unwrap();
        std::os::unix::fs::symlink("new-dir", src.join("data/becomes-link")).unwrap();
        // Same size, the mtime put back: only the ctime tells.
        sh(&format!("f={}; t=$(stat -c %y $f); echo -n version 9 > $f; touch -d \"$t\" $f", src.join("data/same-mtime").display()));
        std::fs::write(src.join("boot/vmlinuz"), "kernel 2").unwrap();
    }

    fn changes_2(&self) {
        let src = &self.src.mnt;
        std::fs::remove_dir_all(src.join("data/becomes-dir")).unwrap();
        self.w("data/new-dir/sub/g", "added to a renamed directory");
        std::fs::rename(src.join("data/renamed"), src.join("data/rename-me")).unwrap();
        std::fs::hard_link(src.join("data/new"), src.join("data/new-link")).unwrap();
        sh(&format!("setfacl -m u:1234:r {}", src.join("data/mod").display()));
    }
}

#[test]
fn a_chain_made_by_rescue_restores_the_source_with_rescue_and_with_gnu_tar() {
    let c = Chain::new("", false);
    c.first();
    let full = c.backup(Some("full"));
    c.changes_1();
    let i1 = c.backup(Some("incremental"));
    c.changes_2();
    let i2 = c.backup(Some("incremental"));
    assert_eq!(c.link(&full), rescue::backup::chain::Link { level: 0, chain: full.clone(), parent: None });
    assert_eq!(c.link(&i2), rescue::backup::chain::Link { level: 2, chain: full.clone(), parent: Some(i1.clone()) });

    // An incremental holds what changed (the change that kept the mtime too), not the rest.
    let m1 = c.members(&i1);
    assert!(m1.contains("data/new") && m1.contains("data/same-mtime") && m1.contains("boot/vmlinuz"), "{m1}");
    assert!(!m1.contains("data/unchanged") && !m1.contains("var/lib/big.bin"), "{m1}");

    // Onto a blank filesystem: the newest chain.
    let blank = LoopFs::new(64);
    let out = c.restore(&blank.mnt, None);
    assert_eq!(out.status.code(), Some(0));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("link 3 of 3 of the chain"), "{log}");
    assert_eq!(std::fs::read_to_string(blank.mnt.join("data/same-mtime")).unwrap(), "version 9");
    assert_same_tree(&c.src.mnt, &blank.mnt, SKIP_OURS);

    // GNU tar, the chain in order, gives the same tree.
    let gnu = c.t.path().join("gnu");
    std::fs::create_dir_all(&gnu).unwrap();
    for a in [&full, &i1, &i2] {
        sh(&format!(
            "tar --zstd --xattrs --xattrs-include='*' --acls --numeric-owner -p --listed-incremental=/dev/null -C {} -xf {}",
            gnu.display(),
            c.host_dir.join(a).display()
        ));
    }
    assert_same_tree(&c.src.mnt, &gnu, SKIP_OURS);

    // The chain up to the first incremental.
    let mid = c.t.path().join("mid");
    std::fs::create_dir_all(&mid).unwrap();
    assert_eq!(c.restore(&mid, Some(&i1)).status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(mid.join("data/becomes-dir/inside")).unwrap(), "now a directory");
    assert!(mid.join("data/renamed").exists() && !mid.join("data/rename-me").exists() && !mid.join("data/gone").exists());
    assert!(!mid.join("data/new-dir/sub/g").exists());
}

#[test]
fn a_missing_middle_link_is_refused_before_anything_is_written() {
    let c = Chain::new("", false);
    c.first();
    c.backup(Some("full"));
    c.changes_1();
    let i1 = c.backup(Some("incremental"));
    c.changes_2();
    c.backup(Some("incremental"));
    std::fs::remove_file(c.host_dir.join(&i1)).unwrap();
    let target = c.t.path().join("target");
    std::fs::create_dir_all(&target).unwrap();
    for check in [true, false] {
        let mut cmd = c.rescue(&["restoreonly"]);
        cmd.arg("--target").arg(&target);
        if check {
            cmd.arg("--check");
        }
        let out = run(cmd);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("its link {i1} (level 1) is missing")) && err.contains("nothing was written"), "{err}");
        assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0, "nothing may be written");
    }
    // A new full backup starts a chain that restores again.
    let full = c.backup(Some("full"));
    assert_eq!(c.restore(&target, None).status.code(), Some(0));
    assert_eq!(c.link(&full).level, 0);
}

#[test]
fn an_encrypted_chain_round_trips() {
    let c = Chain::new("", true);
    c.first();
    let full = c.backup(Some("full"));
    assert!(full.ends_with(".tar.zst.age"), "{full}");
    c.changes_1();
    let i1 = c.backup(Some("incremental"));
    assert!(i1.ends_with(".tar.zst.age") && c.link(&i1).level == 1, "{i1}");
    let target = c.t.path().join("target");
    std::fs::create_dir_all(&target).unwrap();
    assert_eq!(c.restore(&target, None).status.code(), Some(0));
    assert_same_tree(&c.src.mnt, &target, SKIP_OURS);
    // The check phase opens every link with the identity.
    let mut cmd = c.rescue(&["restoreonly"]);
    cmd.arg("--check");
    assert_eq!(run(cmd).status.code(), Some(0));
}

#[test]
fn backups_back_to_back_in_one_second_keep_their_own_names_and_records() {
    let c = Chain::new("", false);
    c.first();
    // A full backup and two incrementals as fast as they run: archive names
    // once carried a one-second stamp, and the second of a second replaced the first.
    let started = std::time::Instant::now();
    let full = c.backup(Some("full"));
    let i1 = c.backup(Some("incremental"));
    c.w("data/new", "added between the incrementals");
    let i2 = c.backup(Some("incremental"));
    eprintln!("three backups in {:.2} s: {full} {i1} {i2}", started.elapsed().as_secs_f64());
    assert_eq!(c.names(), [full.clone(), i1.clone(), i2.clone()], "three archives, oldest first");
    for n in [&full, &i1, &i2] {
        assert!(c.host_dir.join(format!("{n}.chain")).is_file(), "{n} has its chain record");
    }
    assert_eq!(c.link(&i2), rescue::backup::chain::Link { level: 2, chain: full.clone(), parent: Some(i1.clone()) });
    for (archive, has_new) in [(&i1, false), (&i2, true)] {
        let target = c.t.path().join(format!("target-{archive}"));
        std::fs::create_dir_all(&target).unwrap();
        let out = c.restore(&target, Some(archive));
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(target.join("data/new").exists(), has_new, "{archive}");
    }
    assert_same_tree(&c.src.mnt, &c.t.path().join(format!("target-{i2}")), SKIP_OURS);
}

/// The hidden partial archives and chain records in the host directory.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".partial-") || n.ends_with(".chain"))
        .collect();
    v.sort();
    v
}

#[test]
fn a_killed_backup_holds_its_partial_locked_and_the_next_backup_removes_it() {
    let c = Chain::new("level = 19", false);
    c.first();
    let big = c.src.mnt.join("data/big");
    sh(&format!("head -c 40M /dev/urandom > {}", big.display()));
    let mut cmd = c.rescue(&["mkbackuponly"]);
    cmd.arg("--root").arg(&c.src.mnt).args(["--level", "full"]).stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let started = std::time::Instant::now();
    let partial = loop {
        let found = std::fs::read_dir(&c.host_dir)
            .ok()
            .and_then(|d| d.flatten().map(|e| e.path()).find(|p| p.to_string_lossy().contains(".partial-") && p.metadata().is_ok_and(|m| m.len() > 0)));
        if let Some(p) = found {
            break p;
        }
        assert!(started.elapsed().as_secs() < 120, "no partial archive appeared");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // While the backup runs, its partial file is locked: no other backup takes it for stale.
    let probe = Command::new("flock").args(["-n"]).arg(&partial).arg("true").status().unwrap();
    assert_eq!(probe.code(), Some(1), "{} is not locked by the running backup", partial.display());
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = leftovers(&c.host_dir);
    assert_eq!(killed.len(), 2, "SIGKILL leaves the partial archive and its chain record: {killed:?}");
    // A minute later (the partial's mtime put back), the next backup removes both.
    sh(&format!("touch -d '-2 minutes' {}", partial.display()));
    std::fs::remove_file(&big).unwrap();
    let mut cmd = c.rescue(&["mkbackuponly"]);
    cmd.arg("--root").arg(&c.src.mnt).args(["--level", "full"]);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("the partial archive of a backup that was killed"), "{log}");
    let names = c.names();
    assert_eq!(names.len(), 1, "{names:?}");
    assert_eq!(leftovers(&c.host_dir), [format!("{}.chain", names[0])], "only the new backup's record is left");
}

#[test]
fn keep_counts_chains_and_never_breaks_one() {
    let c = Chain::new("keep = 1\nfull-every = 2", false);
    let b0 = c.backup(None);
    c.w("data/a", "1");
    let b1 = c.backup(None);
    assert_eq!(c.link(&b1).level, 1, "full-every = 2: the second backup is an incremental");
    assert_eq!(c.names(), [b0.clone(), b1.clone()], "keep = 1 keeps the whole chain");
    let b2 = c.backup(None);
    assert_eq!(c.link(&b2).level, 0, "full-every = 2: the third starts a new chain");
    assert_eq!(c.names(), std::slice::from_ref(&b2), "the older chain goes whole");
    assert!(!c.host_dir.join(format!("{b0}.chain")).exists() && !c.host_dir.join(format!("{b1}.chain")).exists());
    c.w("data/a", "2");
    let b3 = c.backup(None);
    assert_eq!(c.names(), [b2, b3]);
}
