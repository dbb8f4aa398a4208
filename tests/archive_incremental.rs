//! Incremental chains in GNU tar's format (dumpdirs), restored by
//! `rescue archive extract --incremental` in order: deletions and renames
//! apply, and the result equals the source and what
//! `tar -x --listed-incremental=/dev/null` makes of the same chain.
//! Run as root: `cargo test --test archive_incremental`.
#![allow(clippy::unwrap_used)]

mod archive_common;

use std::path::Path;

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
