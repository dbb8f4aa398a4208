//! Restoring into several filesystems at once, as root on loop devices:
//! the target holds one ext4 with a second ext4 mounted below it, as a
//! recovery's target root does, and each gets its own writer thread.
//! Run as root: `cargo test --test restore_parallel_loop`.
#![allow(clippy::unwrap_used)]

mod archive_common;

use std::io::Read;
use std::path::Path;

use archive_common::*;
use rescue::archive::format;

const TOOLS: &[(&str, &str)] = &[("setfacl", "acl"), ("mknod", "coreutils"), ("mkfifo", "coreutils"), ("mkfs.ext4", "e2fsprogs")];

/// The socket is not archived; each ext4 brings its own lost+found.
const SKIP: &[&str] = &["tmp/sock", "data/alice/tmp/sock", "lost+found", "data/lost+found", format::MANIFEST_NAME];

fn create(src: &Path, out: &Path) {
    let mut c = rescue();
    c.args(["archive", "create", "-C"]).arg(src).arg(".").arg("-o").arg(out);
    assert!(run(c).status.success(), "archive create failed");
}

fn extract(archive: &Path, target: &Path) -> std::process::Output {
    let mut c = rescue();
    c.args(["archive", "extract"]).arg(archive).arg("--target").arg(target);
    run(c)
}

/// An ext4 with a second ext4 of `mib` MiB mounted at `at` in it.
fn two_filesystems(at: &str, mib: u64) -> (LoopFs, LoopFs) {
    let root = LoopFs::new(64);
    std::fs::create_dir(root.mnt.join(at)).unwrap();
    let second = LoopFs::new(mib);
    sh(&format!("mount --move {} {}", second.mnt.display(), root.mnt.join(at).display()));
    (root, second)
}

/// Unmount the second filesystem from where `two_filesystems` moved it (its
/// Drop unmounts its own, now empty, mount point).
fn unmount_second(root: &LoopFs, at: &str) {
    sh(&format!("umount {}", root.mnt.join(at).display()));
}

#[test]
fn two_filesystems_are_restored_each_by_its_writer_and_match_the_source() {
    require(TOOLS);
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    build_tree(&src);
    // The tree's own hard links stay within each filesystem, as they must.
    build_tree(&src.join("data/alice"));
    let archive = t.path().join("a.tar.zst");
    create(&src, &archive);

    let (root, _data) = two_filesystems("data", 64);
    let out = extract(&archive, &root.mnt);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let same = std::panic::catch_unwind(|| assert_same_tree(&src, &root.mnt, SKIP));
    let dev = |p: &Path| std::fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::dev(&m)).unwrap();
    let (on_data, data_dev, root_dev) = (dev(&root.mnt.join("data/alice/etc/hostname")), dev(&root.mnt.join("data")), dev(&root.mnt));
    unmount_second(&root, "data");
    assert!(out.status.success(), "the restore failed: {err}");
    assert!(err.contains("2 filesystems written in parallel"), "each filesystem should get its own writer: {err}");
    assert!(same.is_ok(), "the restored tree differs from the source (see above)");
    assert_eq!(on_data, data_dev, "data/alice was written into the filesystem mounted at data");
    assert_ne!(data_dev, root_dev);
}

#[test]
fn a_full_filesystem_stops_the_whole_restore_naming_the_member() {
    require(TOOLS);
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    // home/big does not fit the 16 MiB home filesystem; members after it
    // (srv/ sorts after home/) belong to the other filesystem.
    std::fs::create_dir_all(src.join("home")).unwrap();
    std::fs::create_dir_all(src.join("srv")).unwrap();
    std::fs::write(src.join("etc"), b"before\n").unwrap();
    let mut big = vec![0u8; 64 << 20];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut big).unwrap();
    std::fs::write(src.join("home/big"), &big).unwrap();
    for i in 0..2000 {
        std::fs::write(src.join(format!("srv/late{i}")), b"after\n").unwrap();
    }
    let archive = t.path().join("a.tar.zst");
    create(&src, &archive);

    let (root, _home) = two_filesystems("home", 16);
    let out = extract(&archive, &root.mnt);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let late = std::fs::read_dir(root.mnt.join("srv")).map(|d| d.count()).unwrap_or(0);
    let first = root.mnt.join("etc").is_file();
    unmount_second(&root, "home");
    assert!(!out.status.success(), "a full filesystem must fail the restore: {err}");
    assert!(err.contains(&format!("restoring {}", root.mnt.join("home/big").display())), "the error names the member: {err}");
    assert!(err.contains("No space left on device"), "the error says why: {err}");
    assert!(first, "what came before the failure stays");
    assert_eq!(late, 0, "no member after the failure is written to the other filesystem either");
}
