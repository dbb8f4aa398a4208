//! Helpers for integration tests: loop disks that clean up after themselves,
//! running the `rescue` binary, and probing with `blkid`/`sfdisk`.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod console;
pub mod recovery;

/// The `rescue` binary under test: the one cargo built for this run, or
/// `RESCUE_BIN` (e.g. the static build of scripts/build-static.sh, to run
/// the same tests against it).
pub fn rescue_bin() -> PathBuf {
    match std::env::var_os("RESCUE_BIN") {
        Some(p) => {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "RESCUE_BIN={} is not a file", p.display());
            p
        }
        None => PathBuf::from(env!("CARGO_BIN_EXE_rescue")),
    }
}

/// `dir/rescue.toml` keeping logs and state in `dir` (written once).
pub fn local_config(dir: &Path) -> PathBuf {
    let cfg = dir.join("rescue.toml");
    if !cfg.exists() {
        std::fs::write(&cfg, format!("log-dir = \"{0}/log\"\nstate-dir = \"{0}/state\"\n", dir.display())).expect("write config");
    }
    cfg
}

/// Run `rescue` with [`local_config`].
pub fn rescue(dir: &Path, args: &[&str]) -> Output {
    Command::new(rescue_bin()).arg("--config").arg(local_config(dir)).args(args).output().expect("run rescue")
}

/// `rescue recover --layout-only --yes` of `layout` with recorded disk `old` mapped onto `dev`.
pub fn recover_layout_only(dir: &Path, layout: &Path, old: &str, dev: &str, root: &Path) -> Output {
    rescue(
        dir,
        &["recover", "--layout", layout.to_str().unwrap(), "--layout-only", "--yes", "--map", &format!("{old}={dev}"), "--target-root", root.to_str().unwrap()],
    )
}

pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("run sh");
    assert!(out.status.success(), "`{cmd}` failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What `rescue recover --layout-only` runs to make partitions, ext4, XFS,
/// vfat and swap on loop disks, and what the tests read them back with.
pub const STORAGE_TOOLS: &[&str] =
    &["sfdisk", "blkid", "partx", "wipefs", "blockdev", "mkfs.ext4", "mkfs.xfs", "mkfs.vfat", "mkswap", "dumpe2fs", "xfs_info", "lsblk", "mount", "umount"];

/// Fail loudly (never skip) when a test's tool is missing.
pub fn require_tools(tools: &[&str]) {
    let missing: Vec<_> = tools.iter().filter(|t| rescue::cmd::find_program(t).is_none()).collect();
    assert!(missing.is_empty(), "missing tools {missing:?}: run scripts/install-deps.sh");
}

pub fn require_root() {
    assert!(rescue::util::is_root(), "this test needs root (loop devices, mounts); CI runs as root");
}

/// A sparse image file attached to a loop device; detached (after unmounting
/// anything mounted under `mount_root`) when dropped, also on panic.
pub struct LoopDisk {
    pub dev: String,
    pub image: PathBuf,
    pub mounts: Vec<PathBuf>,
}

impl LoopDisk {
    pub fn new(dir: &Path, name: &str, size_mib: u64) -> LoopDisk {
        Self::with_sector_size(dir, name, size_mib, 512)
    }

    /// A loop disk with `sector`-byte logical sectors (4096: a 4Kn disk).
    pub fn with_sector_size(dir: &Path, name: &str, size_mib: u64, sector: u64) -> LoopDisk {
        let image = dir.join(format!("{name}.img"));
        let f = std::fs::File::create(&image).expect("create image");
        f.set_len(size_mib << 20).expect("size image");
        let dev = sh(&format!("losetup -fP --show --sector-size {sector} {}", image.display())).trim().to_string();
        LoopDisk { dev, image, mounts: Vec::new() }
    }

    /// `/dev/loop3` + 2 → `/dev/loop3p2`
    pub fn part(&self, n: u32) -> String {
        format!("{}p{n}", self.dev)
    }

    /// Write a partition table with an sfdisk script and make the partition nodes appear.
    pub fn partition(&self, script: &str) {
        let out = Command::new("sh").arg("-c").arg(format!("sfdisk -q --no-reread {} <<'EOF'\n{script}\nEOF", self.dev)).output().expect("sfdisk");
        assert!(out.status.success(), "sfdisk: {}", String::from_utf8_lossy(&out.stderr));
        self.settle();
    }

    /// Without udev, partition nodes come from `partx`.
    pub fn settle(&self) {
        let _ = Command::new("partx").args(["-u", &self.dev]).output();
        let _ = Command::new("partx").args(["-a", &self.dev]).output();
        for _ in 0..50 {
            if Path::new(&self.part(1)).exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    pub fn mount(&mut self, dev: &str, at: &Path, opts: Option<&str>) {
        std::fs::create_dir_all(at).expect("mkdir mount point");
        let mut c = Command::new("mount");
        if let Some(o) = opts {
            c.args(["-o", o]);
        }
        let out = c.arg(dev).arg(at).output().expect("mount");
        assert!(out.status.success(), "mount {dev} {}: {}", at.display(), String::from_utf8_lossy(&out.stderr));
        self.mounts.push(at.to_path_buf());
    }

    pub fn umount_all(&mut self) {
        for m in self.mounts.drain(..).rev() {
            let _ = Command::new("umount").arg(&m).output();
        }
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        self.umount_all();
        let _ = Command::new("losetup").args(["-d", &self.dev]).output();
    }
}

/// `blkid -p` of a device, as KEY → value.
pub fn blkid(dev: &str) -> BTreeMap<String, String> {
    let out = Command::new("blkid").args(["-p", "--cache-file", "/dev/null", "-o", "export", dev]).output().expect("blkid");
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))).collect()
}

/// `sfdisk -J` of a disk.
pub fn sfdisk_json(dev: &str) -> serde_json::Value {
    let out = sh(&format!("sfdisk -J {dev}"));
    serde_json::from_str(&out).expect("sfdisk json")
}

/// An fstab for a descriptor's mounts and swaps (what a restore would bring),
/// so a capture of the recreated tree records the same mounts.
pub fn fstab_for(l: &rescue::layout::Layout) -> String {
    let mut s = String::new();
    for m in &l.mounts {
        let fs = l.filesystem_on(&m.device).unwrap();
        let mut o = m.options.clone();
        if let Some(sv) = &m.subvol {
            o = format!("{o},subvol={sv}");
        }
        s += &format!("{} {} {} {o} 0 0\n", m.source, m.path, fs.fstype);
    }
    for sw in &l.swaps {
        if let Some(u) = &sw.uuid {
            s += &format!("UUID={u} none swap sw 0 0\n");
        }
    }
    s
}
