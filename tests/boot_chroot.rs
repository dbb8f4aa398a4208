//! The finalize step's chroot bind mounts (sys-mount): /dev, /proc, /sys and
//! /run of the rescue system appear in the target and are all gone, with
//! their submounts, when the guard is dropped.

#![allow(clippy::unwrap_used)]

use rescue::boot::ChrootMounts;

fn mounts_under(root: &std::path::Path) -> Vec<String> {
    let root = root.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&root))
        .collect()
}

#[test]
fn chroot_bind_mounts_come_and_go() {
    assert!(nix::unistd::geteuid().is_root(), "needs root (mount)");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    {
        let _m = ChrootMounts::new(root).unwrap();
        let m = mounts_under(root);
        for d in ["dev", "proc", "sys", "run"] {
            assert!(m.contains(&root.join(d).to_string_lossy().to_string()), "{d} not mounted: {m:?}");
        }
        assert!(root.join("proc/self/mountinfo").exists());
        assert!(root.join("dev/null").exists());
    }
    assert!(mounts_under(root).is_empty(), "left mounted: {:?}", mounts_under(root));
    // The rescue system's own /proc is untouched.
    assert!(std::path::Path::new("/proc/self/mountinfo").exists());
}
