//! Shared by the `rescue recover` tests on loop disks (recover_loop,
//! recover_fail_loop): a source system backed up to a file:// location,
//! running `rescue` with a config and an environment, and checks of what is
//! on disk and mounted afterwards.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{sh, LoopDisk};

/// Unmounts everything under its roots when dropped (declare it after the
/// loop disks, so it runs before they are detached).
pub struct Unmounter(pub Vec<PathBuf>);
impl Drop for Unmounter {
    fn drop(&mut self) {
        for r in &self.0 {
            let _ = Command::new("umount").arg("-R").arg(r).output();
        }
    }
}

/// Run rescue with a given config file and extra environment.
pub fn run(cfg: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(super::rescue_bin());
    c.arg("--config").arg(cfg).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run rescue")
}

/// Exit code, stdout and stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Assert that a run failed with `code` and that its stderr holds every
/// needle (the cause and what to do next); returns stderr.
pub fn assert_failed(o: &Output, code: i32, needles: &[&str]) -> String {
    assert_eq!(o.status.code(), Some(code), "{}", text(o));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    for n in needles {
        assert!(err.contains(n), "{n:?} not in the error:\n{err}");
    }
    // What a person reads last (`--nocapture` shows it).
    eprintln!("{}", err.rfind("rescue: error:").map(|i| &err[i..]).unwrap_or(&err));
    err
}

/// A checksum of a whole device, to prove a failed run wrote nothing.
pub fn device_sum(dev: &str) -> u128 {
    let mut f = std::fs::File::open(dev).unwrap();
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 4 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.digest128()
}

pub fn random_file(path: &Path, bytes: usize, seed: u64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // xorshift: incompressible enough, reproducible, no /dev/urandom needed.
    let mut x = seed | 1;
    let mut data = Vec::with_capacity(bytes);
    while data.len() < bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(bytes);
    std::fs::write(path, data).unwrap();
}

/// Mount points at or under `root`.
pub fn mounted_under(root: &Path) -> Vec<String> {
    let root = root.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| m == &root || m.starts_with(&format!("{root}/")))
        .collect()
}

/// A directory of links to every program in the usual `PATH` but `missing`:
/// a rescue system that lacks them, for `PATH=`.
pub fn path_without(bin: &Path, missing: &[&str]) -> PathBuf {
    std::fs::create_dir_all(bin).unwrap();
    for d in ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let n = e.file_name();
            if !missing.iter().any(|m| n == *m) && !bin.join(&n).exists() {
                let _ = std::os::unix::fs::symlink(e.path(), bin.join(&n));
            }
        }
    }
    bin.to_path_buf()
}

/// A partition of the source disk and what it holds.
pub struct Volume {
    pub part: u32,
    /// `ext4`, `xfs`, `vfat`, `swap`, or `none` (e.g. a BIOS boot partition).
    pub fs: &'static str,
    pub label: &'static str,
    /// Where it is mounted in the source system.
    pub mount: Option<&'static str>,
}

/// A source system on a loop disk, captured with `savelayout` and backed up
/// with `mkbackuponly` to `file://DIR/backups`, then unmounted: what
/// `rescue recover` brings back.
pub struct BackedUp {
    /// The config: logs and state in the test's directory, `backup.url` the backups.
    pub cfg: PathBuf,
    pub cfg_text: String,
    pub backups: PathBuf,
    pub layout_file: PathBuf,
    pub disk: LoopDisk,
    /// The block id of the source disk (`loopN`): the `OLD` of `--map OLD=NEW`.
    pub name: String,
}

impl BackedUp {
    /// Partition a `size_mib` loop disk with the sfdisk `table`, make the
    /// volumes, mount them under `DIR/src-root`, let `fill` write the files
    /// and /etc/fstab, then savelayout and mkbackuponly.
    pub fn new(dir: &Path, size_mib: u64, table: &str, volumes: &[Volume], fill: impl FnOnce(&Path, &LoopDisk)) -> BackedUp {
        let backups = dir.join("backups");
        let cfg = dir.join("rescue.toml");
        let cfg_text = format!("log-dir = \"{0}/log\"\nstate-dir = \"{0}/state\"\n[backup]\nurl = \"file://{1}\"\n", dir.display(), backups.display());
        std::fs::write(&cfg, &cfg_text).unwrap();
        let mut disk = LoopDisk::new(dir, "src", size_mib);
        disk.partition(table);
        for v in volumes {
            let dev = disk.part(v.part);
            match v.fs {
                "vfat" => sh(&format!("mkfs.vfat -F 32 -n {} {dev} >/dev/null 2>&1", v.label)),
                "ext4" => sh(&format!("mkfs.ext4 -q -L {} {dev}", v.label)),
                "xfs" => sh(&format!("mkfs.xfs -q -f -L {} {dev}", v.label)),
                "swap" => sh(&format!("mkswap -L {} {dev} >/dev/null", v.label)),
                "none" => String::new(),
                other => panic!("no mkfs for {other}"),
            };
        }
        let root = dir.join("src-root");
        let mut mounted: Vec<&Volume> = volumes.iter().filter(|v| v.mount.is_some()).collect();
        mounted.sort_by_key(|v| v.mount.map(str::len));
        for v in mounted {
            let at = root.join(v.mount.unwrap_or("/").trim_start_matches('/'));
            let dev = disk.part(v.part);
            disk.mount(&dev, &at, None);
        }
        fill(&root, &disk);
        let layout_file = dir.join("layout.toml");
        let o = run(&cfg, &["savelayout", "--disk", &disk.dev, "--root", root.to_str().unwrap(), "-o", layout_file.to_str().unwrap()], &[]);
        assert!(o.status.success(), "savelayout: {}", text(&o));
        let o = run(&cfg, &["mkbackuponly", "--layout", layout_file.to_str().unwrap(), "--root", root.to_str().unwrap()], &[]);
        assert!(o.status.success(), "mkbackuponly: {}", text(&o));
        disk.umount_all();
        let name = disk.dev.trim_start_matches("/dev/").to_string();
        BackedUp { cfg, cfg_text, backups, layout_file, disk, name }
    }

    /// The archive `mkbackuponly` wrote (the only one).
    pub fn archive(&self) -> PathBuf {
        let host_dir = std::fs::read_dir(&self.backups).unwrap().next().unwrap().unwrap().path();
        // The archive (rescue's own test of a name), not the records beside it.
        std::fs::read_dir(&host_dir).unwrap().map(|e| e.unwrap().path()).find(|p| rescue::backup::archives::is_archive_name(&p.to_string_lossy())).unwrap()
    }

    /// A config like the source's, with more TOML appended (e.g. a `[recover]` table).
    pub fn config_with(&self, name: &str, extra: &str) -> PathBuf {
        let p = self.cfg.with_file_name(name);
        std::fs::write(&p, format!("{}{extra}", self.cfg_text)).unwrap();
        p
    }
}
