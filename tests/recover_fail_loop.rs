//! `rescue recover` failing, as root on loop disks. Each test backs up a
//! small source system (GPT: a BIOS boot partition, an ext4 root, swap;
//! the descriptor edited to record GRUB for BIOS on that disk, as on a real
//! server) and recovers it onto a loop disk that holds an "old system": GRUB
//! boot code in its MBR and a core image in the BIOS boot partition's place.
//! Each failure must exit non-zero with a message naming the problem and
//! what to do next, and leave:
//! - backup location or archive missing, a tool missing: stopped in verify,
//!   the target disk byte for byte unchanged;
//! - target disk too small: stopped in plan, the disk unchanged, the message
//!   says how much is missing and the disk size needed (and a disk of that
//!   size then takes the whole restore);
//! - a backup without the bootloader's programs found in verify (read to its end)
//!   or in finalize (unread), before any bootloader step;
//! - corrupt archive found while restoring (`recover.verify-archive = false`;
//!   zstd and gzip): stopped in restore, no boot code in the MBR or the BIOS
//!   boot partition (the old one wiped, no new one written), no GRUB files in
//!   the restored tree, nothing mounted, the report saying restore failed;
//!   with the default verification a truncated archive stops in check (the
//!   target disk holds data: the backup is read in full before writing) instead;
//! - on a blank target disk the backup is read once: a member damaged late in
//!   the archive stops the restore before the bootloader, and the report
//!   names it and says the disks were blank.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use common::recovery::*;
use common::*;
use rescue::layout::{BootloaderKind, Layout};

const TOOLS: &[&str] = &["sfdisk", "blkid", "partx", "wipefs", "blockdev", "mkfs.ext4", "mkswap", "mount", "umount", "zstd", "gzip"];

const TABLE: &str = "label: gpt\n\
     size=1M, type=21686148-6449-6E6F-744E-656564454649, name=bios\n\
     size=90M, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root\n\
     size=16M, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, name=swap";

/// What the MBR of the target's old system starts with (a jump, then "GRUB").
const OLD_BOOT_CODE: &[u8] = b"\xebc\x90GRUB old boot code";

/// A backed-up source system (two files of `file_mib` MiB) with GRUB for
/// BIOS recorded, and a `target_mib` target disk holding an old system's
/// boot code.
struct Setup {
    src: BackedUp,
    dst: LoopDisk,
    target: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Setup {
    fn new(target_mib: u64, file_mib: usize) -> Setup {
        require_root();
        require_tools(TOOLS);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let volumes = [
            Volume { part: 1, fs: "none", label: "", mount: None },
            Volume { part: 2, fs: "ext4", label: "root", mount: Some("/") },
            Volume { part: 3, fs: "swap", label: "swp", mount: None },
        ];
        let src = BackedUp::new(&dir, 128, TABLE, &volumes, |root, disk| {
            std::fs::create_dir_all(root.join("etc")).unwrap();
            std::fs::write(root.join("etc/fstab"), format!("UUID={} / ext4 errors=remount-ro 0 1\n", blkid(&disk.part(2))["UUID"])).unwrap();
            std::fs::create_dir_all(root.join("boot")).unwrap();
            random_file(&root.join("srv/a.bin"), file_mib << 20, 3);
            random_file(&root.join("srv/b.bin"), file_mib << 20, 5);
            std::fs::write(root.join("srv/small.txt"), "small\n").unwrap();
        });
        let mut layout = Layout::load(&src.layout_file).unwrap();
        layout.bootloader.kind = BootloaderKind::Grub2Bios;
        layout.bootloader.boot_disks = vec![src.name.clone()];
        layout.save(&src.layout_file).unwrap();

        let dst = LoopDisk::new(&dir, "dst", target_mib);
        let mut f = std::fs::OpenOptions::new().write(true).open(&dst.dev).unwrap();
        f.write_all(OLD_BOOT_CODE).unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(&vec![0xa5u8; 1 << 20]).unwrap();
        f.sync_all().unwrap();
        let target = dir.join("target");
        Setup { src, dst, target, _tmp: tmp }
    }

    /// `rescue recover --yes` onto the target disk, with more arguments.
    fn recover(&self, cfg: &Path, extra: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let map = format!("{}={}", self.src.name, self.dst.dev);
        let mut args =
            vec!["recover", "--yes", "--layout", self.src.layout_file.to_str().unwrap(), "--map", &map, "--target-root", self.target.to_str().unwrap()];
        args.extend_from_slice(extra);
        let _u = Unmounter(vec![self.target.clone()]);
        let o = run(cfg, &args, env);
        assert!(mounted_under(&self.target).is_empty(), "left mounted: {:?}\n{}", mounted_under(&self.target), text(&o));
        o
    }

    fn url(&self, dir: &Path) -> String {
        format!("file://{}", dir.display())
    }
}

fn read_range(dev: &str, start: u64, len: usize) -> Vec<u8> {
    let mut f = std::fs::File::open(dev).unwrap();
    f.seek(SeekFrom::Start(start)).unwrap();
    let mut b = vec![0u8; len];
    f.read_exact(&mut b).unwrap();
    b
}

#[test]
fn backup_location_missing_stops_in_verify_before_any_disk_is_touched() {
    let s = Setup::new(128, 3);
    let before = device_sum(&s.dst.dev);

    // The URL's directory does not exist.
    let nowhere = s.src.backups.with_file_name("nowhere");
    let o = s.recover(&s.src.cfg, &["--url", &s.url(&nowhere)], &[]);
    assert_failed(&o, 2, &["recovery stopped in phase verify", &nowhere.display().to_string(), "--url", "nothing was written"]);
    assert_eq!(device_sum(&s.dst.dev), before, "the target disk changed");

    // The location is there, the archive named with --archive is not; the message lists what is.
    let o = s.recover(&s.src.cfg, &["--archive", "backup-20000101-000000.tar.zst"], &[]);
    let have = s.src.archive().file_name().unwrap().to_string_lossy().into_owned();
    assert_failed(&o, 2, &["recovery stopped in phase verify", "backup-20000101-000000.tar.zst", "does not exist", &have, "nothing was written"]);
    assert_eq!(device_sum(&s.dst.dev), before, "the target disk changed");
}

#[test]
fn target_disk_too_small_is_refused_at_plan_time() {
    // 30 MiB of data on the root; a 40 MiB target leaves it about 22 MiB.
    let s = Setup::new(40, 15);
    // The backup holds no GRUB: read to its end in verify, that stops the
    // recovery there (checked at the end); unread, the plan comes first.
    let unread = s.src.config_with("noverify.toml", "[recover]\nverify-archive = false\n");
    let before = device_sum(&s.dst.dev);
    let o = s.recover(&unread, &[], &[]);
    let err = assert_failed(&o, 2, &["recovery stopped in phase plan", "too small", "nothing was written", &format!("--map {}=/dev/DISK", s.src.name)]);
    // The filesystem that does not fit and how much it lacks, then the disk it needs.
    assert!(err.lines().any(|l| l.contains("ext4 filesystem") && l.contains("holds") && l.contains("MiB missing")), "{err}");
    assert!(err.lines().any(|l| l.contains(&format!("recorded disk {} needs a disk of at least", s.src.name)) && l.contains("MiB missing")), "{err}");
    assert_eq!(device_sum(&s.dst.dev), before, "the target disk changed");

    // 16 MiB does not even hold the fixed partitions (the 16 MiB swap).
    let tiny = LoopDisk::new(s.src.backups.parent().unwrap(), "tiny", 16);
    let before = device_sum(&tiny.dev);
    let map = format!("{}={}", s.src.name, tiny.dev);
    let o =
        run(&unread, &["recover", "--yes", "--layout", s.src.layout_file.to_str().unwrap(), "--map", &map, "--target-root", s.target.to_str().unwrap()], &[]);
    let err = assert_failed(&o, 2, &["recovery stopped in phase plan", "does not fit", "would get no room at all", "MiB missing", "nothing was written"]);
    assert!(!err.contains("would get -"), "a negative size in the message:\n{err}");
    assert_eq!(device_sum(&tiny.dev), before, "the tiny disk changed");

    // A disk of the size the message names is enough: the storage is rebuilt
    // and the data restored (finalize then stops: the source tree has no GRUB).
    let need: f64 = err.split("needs a disk of at least ").nth(1).and_then(|r| r.split(" MiB").next()).and_then(|n| n.parse().ok()).unwrap();
    let fits = LoopDisk::new(s.src.backups.parent().unwrap(), "fits", need.ceil() as u64);
    let map = format!("{}={}", s.src.name, fits.dev);
    let _u = Unmounter(vec![s.target.clone()]);
    let args = ["recover", "--yes", "--layout", s.src.layout_file.to_str().unwrap(), "--map", &map, "--target-root", s.target.to_str().unwrap()];
    // Read to its end (the disk is blank: `--verify full` asks for the full
    // read), the backup shows it holds no GRUB: found before any write.
    let before = device_sum(&fits.dev);
    let full: Vec<&str> = args.iter().copied().chain(["--verify", "full"]).collect();
    let o = run(&s.src.cfg, &full, &[]);
    assert_failed(&o, 2, &["recovery stopped in phase check", "grub-install", "grub-pc-bin", "Nothing was written"]);
    assert_eq!(device_sum(&fits.dev), before, "the target disk changed");
    // Unread (verify-archive = false, or the one pass on a blank disk), it is found in finalize, before any of its steps.
    let o = run(&unread, &args, &[]);
    assert_failed(&o, 3, &["recovery stopped in phase finalize", "grub-install", "No bootloader or initramfs step was run"]);
    let o = run(&s.src.cfg, &["recover", "--umount", "--target-root", s.target.to_str().unwrap()], &[]);
    assert!(o.status.success() && mounted_under(&s.target).is_empty(), "{}", text(&o));
    assert!(read_range(&fits.dev, 0, 440).iter().all(|&b| b == 0), "boot code in the MBR");
}

#[test]
fn corrupt_archive_stops_before_the_bootloader_and_leaves_nothing_mounted() {
    let mut s = Setup::new(128, 3);
    let dir = s.src.backups.parent().unwrap().to_path_buf();
    let archive = s.src.archive();
    let host = archive.parent().unwrap().file_name().unwrap().to_owned();
    let bytes = std::fs::read(&archive).unwrap();
    let put = |name: &str, data: &[u8]| -> String {
        let d = dir.join(name);
        std::fs::create_dir_all(d.join(&host)).unwrap();
        std::fs::write(d.join(&host).join(archive.file_name().unwrap()), data).unwrap();
        s.url(&d)
    };

    // Truncated, with the default verification: found before any disk is touched.
    let before = device_sum(&s.dst.dev);
    let truncated = put("truncated", &bytes[..bytes.len() * 2 / 3]);
    let o = s.recover(&s.src.cfg, &["--url", &truncated], &[]);
    assert_failed(&o, 3, &["recovery stopped in phase check", "is damaged", "truncated", "Nothing was written", "--archive"]);
    assert_eq!(device_sum(&s.dst.dev), before, "the target disk changed");

    // Bytes flipped in the middle, verification off: found while restoring.
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    for b in &mut flipped[mid..mid + 64] {
        *b ^= 0x5a;
    }
    let corrupt = put("corrupt", &flipped);
    let _ = std::fs::remove_dir_all(dir.join("log"));
    let cfg = s.src.config_with("noverify.toml", "[recover]\nverify-archive = false\n");
    let o = s.recover(&cfg, &["--json", "--url", &corrupt], &[]);
    let err = assert_failed(&o, 3, &["recovery stopped in phase restore", "no bootloader was installed", "rescue recover"]);
    assert!(err.contains("damaged") || err.contains("differ from the backup"), "{err}");
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("report is not JSON ({e}): {}", text(&o)));
    assert_eq!(rep["result"], "failed", "{rep:#}");
    assert_eq!(rep["failed-phase"], "restore", "{rep:#}");
    let phases: Vec<(&str, bool)> = rep["phases"].as_array().unwrap().iter().map(|p| (p["name"].as_str().unwrap(), p["ok"] == true)).collect();
    assert_eq!(phases, [("verify", true), ("plan", true), ("storage", true), ("restore", false)], "{rep:#}");
    assert!(rep["finalize"].as_array().is_none_or(|a| a.is_empty()), "{rep:#}");
    // The failure report is also in the rescue system's log directory.
    let logs: Vec<PathBuf> = std::fs::read_dir(dir.join("log")).unwrap().map(|e| e.unwrap().path()).collect();
    let json = logs.iter().find(|p| p.extension().is_some_and(|e| e == "json")).unwrap_or_else(|| panic!("no report in {logs:?}"));
    let logged: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    assert_eq!(logged["failed-phase"], "restore");

    // No bootloader: the old boot code is gone and nothing new was written.
    assert!(read_range(&s.dst.dev, 0, 440).iter().all(|&b| b == 0), "boot code in the MBR: {:02x?}", &read_range(&s.dst.dev, 0, 16));
    let bios_boot = std::fs::read(s.dst.part(1)).unwrap();
    assert!(!bios_boot.is_empty() && bios_boot.iter().all(|&b| b == 0), "the BIOS boot partition holds data (a stale or new GRUB core image)");
    assert_eq!(blkid(&s.dst.part(1)).get("PART_ENTRY_TYPE").map(String::as_str), Some("21686148-6449-6e6f-744e-656564454649"));
    let check = dir.join("check");
    let root_part = s.dst.part(2);
    s.dst.mount(&root_part, &check, Some("ro"));
    let grub_files: Vec<&str> =
        ["boot/grub/grub.cfg", "boot/grub/i386-pc", "boot/grub/x86_64-efi", "boot/efi/EFI"].into_iter().filter(|p| check.join(p).exists()).collect();
    s.dst.umount_all();
    assert!(grub_files.is_empty(), "GRUB files in the restored tree: {grub_files:?}");

    // The same archive gzip-compressed, bytes flipped in the middle of the deflate stream.
    let gz = dir.join("gz").join(&host);
    std::fs::create_dir_all(&gz).unwrap();
    let gz_file = gz.join(archive.file_name().unwrap().to_string_lossy().replace(".tar.zst", ".tar.gz"));
    sh(&format!("zstd -q -dc {} | gzip -1 > {}", archive.display(), gz_file.display()));
    let mut gz_bytes = std::fs::read(&gz_file).unwrap();
    let mid = gz_bytes.len() / 2;
    for b in &mut gz_bytes[mid..mid + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&gz_file, gz_bytes).unwrap();
    let o = s.recover(&cfg, &["--url", &s.url(&dir.join("gz"))], &[]);
    let err = assert_failed(&o, 3, &["recovery stopped in phase restore", ".tar.gz", "no bootloader was installed"]);
    assert!(err.contains("damaged") || err.contains("differ from the backup"), "{err}");
    assert!(read_range(&s.dst.dev, 0, 440).iter().all(|&b| b == 0), "boot code in the MBR");
    assert!(std::fs::read(s.dst.part(1)).unwrap().iter().all(|&b| b == 0), "data in the BIOS boot partition");
}

#[test]
fn a_member_damaged_late_in_a_one_pass_restore_stops_before_the_bootloader() {
    let s = Setup::new(128, 3);
    let dir = s.src.backups.parent().unwrap().to_path_buf();
    let archive = s.src.archive();
    let host = archive.parent().unwrap().file_name().unwrap().to_owned();
    // Bytes flipped near the end: in the last file's data (srv/b.bin is
    // random, stored as it is), after everything else was restored.
    let mut bytes = std::fs::read(&archive).unwrap();
    let late = bytes.len() * 9 / 10;
    for b in &mut bytes[late..late + 16] {
        *b ^= 0x5a;
    }
    let corrupt = dir.join("late").join(&host);
    std::fs::create_dir_all(&corrupt).unwrap();
    std::fs::write(corrupt.join(archive.file_name().unwrap()), bytes).unwrap();

    // A blank disk (the setup's target holds an old system).
    let blank = LoopDisk::new(&dir, "blank", 128);
    let map = format!("{}={}", s.src.name, blank.dev);
    let root = s.target.to_str().unwrap();
    let o = run(&s.src.cfg, &["recover", "--plan", "--layout", s.src.layout_file.to_str().unwrap(), "--map", &map, "--target-root", root], &[]);
    assert!(o.status.success() && text(&o).contains("verify: one pass, content checked while restoring (all target disks are blank)"), "{}", text(&o));
    let _u = Unmounter(vec![s.target.clone()]);
    let url = s.url(&dir.join("late"));
    let args = ["--json", "recover", "--yes", "--layout", s.src.layout_file.to_str().unwrap(), "--map", &map, "--target-root", root, "--url", &url];
    let o = run(&s.src.cfg, &args, &[]);
    let err = assert_failed(
        &o,
        3,
        &["recovery stopped in phase restore", "checked in the restore's one pass: all target disks are blank", "no bootloader was installed"],
    );
    assert!(err.contains("srv/b.bin"), "the damaged member is not named: {err}");
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("report is not JSON ({e}): {}", text(&o)));
    assert_eq!(rep["verify-mode"]["mode"], "one-pass", "{rep:#}");
    let phases: Vec<(&str, bool)> = rep["phases"].as_array().unwrap().iter().map(|p| (p["name"].as_str().unwrap(), p["ok"] == true)).collect();
    assert_eq!(phases, [("verify", true), ("plan", true), ("storage", true), ("restore", false)], "{rep:#}");
    assert!(rep["error"].as_str().unwrap().contains("srv/b.bin") && rep["error"].as_str().unwrap().contains("all target disks are blank"), "{rep:#}");
    assert!(rep["finalize"].as_array().is_none_or(|a| a.is_empty()), "{rep:#}");
    assert!(mounted_under(&s.target).is_empty(), "left mounted: {:?}", mounted_under(&s.target));
    assert!(read_range(&blank.dev, 0, 440).iter().all(|&b| b == 0), "boot code in the MBR");
    assert!(std::fs::read(blank.part(1)).unwrap().iter().all(|&b| b == 0), "data in the BIOS boot partition");

    // The same disk now holds data: the next attempt reads the backup in full first and writes nothing.
    let before = device_sum(&blank.dev);
    let o = run(&s.src.cfg, &args, &[]);
    assert_failed(&o, 3, &["recovery stopped in phase check", "is damaged", "Nothing was written"]);
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rep["verify-mode"]["mode"], "full", "{rep:#}");
    assert!(rep["verify-mode"]["why"].as_str().unwrap().starts_with(&format!("{} holds", blank.dev)), "{rep:#}");
    assert_eq!(device_sum(&blank.dev), before, "the target disk changed");
}

#[test]
fn a_tool_missing_from_the_image_stops_in_verify_naming_it_and_its_package() {
    let s = Setup::new(128, 3);
    let before = device_sum(&s.dst.dev);
    // A PATH with everything but sfdisk and mkswap.
    let bin = path_without(&s.src.backups.with_file_name("bin"), &["sfdisk", "mkswap"]);
    let o = s.recover(&s.src.cfg, &[], &[("PATH", bin.to_str().unwrap())]);
    assert_failed(
        &o,
        3,
        &[
            "recovery stopped in phase verify",
            "sfdisk",
            "apt-get install fdisk",
            "mkswap",
            "apt-get install util-linux",
            "Nothing was written",
            "rescue mkrescue",
        ],
    );
    assert_eq!(device_sum(&s.dst.dev), before, "the target disk changed");
}

/// Whether `at` is a mount point now.
fn is_mounted(at: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().any(|l| l.split(' ').nth(4) == Some(at.to_str().unwrap()))
}

#[test]
fn a_disk_mounted_below_the_target_root_by_someone_else_is_never_taken() {
    let mut s = Setup::new(128, 3);
    // The target disk holds someone's data, mounted at TARGET/src (not by rescue).
    sh(&format!("mkfs.ext4 -q -F -L precious {}", s.dst.dev));
    let foreign = s.target.join("src");
    let dev = s.dst.dev.clone();
    s.dst.mount(&dev, &foreign, None);
    std::fs::write(foreign.join("data.txt"), "keep me\n").unwrap();
    sh("sync");
    let _u = Unmounter(vec![s.target.clone()]);
    let (layout, root) = (s.src.layout_file.to_str().unwrap().to_string(), s.target.to_str().unwrap().to_string());
    let map = format!("{}={}", s.src.name, s.dst.dev);

    let o = run(&s.src.cfg, &["recover", "--layout-only", "--yes", "--layout", &layout, "--map", &map, "--target-root", &root], &[]);
    assert_failed(&o, 2, &["refusing to overwrite disks in use", &s.dst.dev, &format!("mounted at {}", foreign.display())]);
    assert!(is_mounted(&foreign), "the foreign mount was undone");
    assert_eq!(std::fs::read_to_string(foreign.join("data.txt")).unwrap(), "keep me\n");

    // --umount unmounts only what rescue mounted: nothing here.
    let o = run(&s.src.cfg, &["recover", "--umount", "--target-root", &root], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(is_mounted(&foreign), "--umount unmounted a filesystem rescue did not mount");

    // Unmounted, the disk is free: the storage is rebuilt, and a second
    // attempt takes over the mounts of the first (they are recorded as ours).
    s.dst.umount_all();
    for _ in 0..2 {
        let o = run(&s.src.cfg, &["recover", "--layout-only", "--yes", "--layout", &layout, "--map", &map, "--target-root", &root], &[]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(is_mounted(&s.target), "{}", text(&o));
    }
    // A foreign mount inside our tree is not ours either: --umount leaves it (and what it sits on).
    let other = LoopDisk::new(s.src.backups.parent().unwrap(), "other", 16);
    sh(&format!("mkfs.ext4 -q -F {}", other.dev));
    let inside = s.target.join("mnt/other");
    let mut other = other;
    let odev = other.dev.clone();
    other.mount(&odev, &inside, None);
    let o = run(&s.src.cfg, &["recover", "--umount", "--target-root", &root], &[]);
    assert!(!o.status.success(), "unmounting our root under a foreign mount must fail, not unmount it: {}", text(&o));
    assert!(is_mounted(&inside), "--umount unmounted a filesystem rescue did not mount");
    other.umount_all();
    let o = run(&s.src.cfg, &["recover", "--umount", "--target-root", &root], &[]);
    assert!(o.status.success() && mounted_under(&s.target).is_empty(), "{}", text(&o));
}

#[test]
fn a_target_root_that_is_slash_relative_or_not_normalized_is_refused() {
    let s = Setup::new(128, 3);
    let before = device_sum(&s.dst.dev);
    let layout = s.src.layout_file.to_str().unwrap();
    let map = format!("{}={}", s.src.name, s.dst.dev);
    for (root, why) in [("/", "cannot be /"), ("mnt/local", "not an absolute path"), ("/mnt/../local", ".. component"), ("/mnt//x", "//")] {
        for mode in [&["--plan"][..], &["--layout-only", "--yes"], &["--umount"]] {
            let mut args = vec!["recover", "--layout", layout, "--map", &map, "--target-root", root];
            args.extend_from_slice(mode);
            if mode == ["--umount"] {
                args = vec!["recover", "--umount", "--target-root", root];
            }
            let o = run(&s.src.cfg, &args, &[]);
            assert_failed(&o, 2, &["target root", why]);
        }
    }
    // The config's recover.target-root is checked the same way.
    let cfg = s.src.config_with("slash.toml", "[recover]\ntarget-root = \"/\"\n");
    let o = run(&cfg, &["recover", "--plan", "--layout", layout, "--map", &map], &[]);
    assert_failed(&o, 2, &["cannot be /"]);
    assert_eq!(device_sum(&s.dst.dev), before, "the target disk changed");
}

#[test]
fn the_backup_medium_is_mounted_read_only_and_stays_unchanged() {
    let s = Setup::new(128, 3);
    let dir = s.src.backups.parent().unwrap().to_path_buf();
    // A USB medium (ext4 on a loop disk) holding the backup.
    let mut medium = LoopDisk::new(&dir, "medium", 64);
    sh(&format!("mkfs.ext4 -q -F -L RESCUEUSB {}", medium.dev));
    let m = dir.join("medium-mnt");
    let mdev = medium.dev.clone();
    medium.mount(&mdev, &m, None);
    sh(&format!("cp -a {} {}/backups && sync", s.src.backups.display(), m.display()));
    medium.umount_all();
    let before = device_sum(&medium.dev);
    let url = format!("usb://{}/backups", medium.dev);

    // recover reads and checks the whole archive (the target holds an old
    // system), then stops: this test system's backup holds no GRUB for the
    // recorded BIOS bootloader, which the check finds in the archive's file
    // list at its end. The medium must be exactly as it was.
    let map = format!("{}={}", s.src.name, s.dst.dev);
    let o = run(
        &s.src.cfg,
        &["recover", "--yes", "--layout", s.src.layout_file.to_str().unwrap(), "--map", &map, "--target-root", s.target.to_str().unwrap(), "--url", &url],
        &[],
    );
    assert_failed(&o, 2, &["recovery stopped in phase check", "the backup does not hold what installing the bootloader needs", "Nothing was written"]);
    // The mount command of the medium, as logged: read-only.
    let log = std::fs::read_to_string(dir.join("log/rescue.log")).unwrap();
    let mounts: Vec<&str> = log.lines().filter(|l| l.contains("mount -o") && l.contains(&medium.dev)).collect();
    assert!(!mounts.is_empty() && mounts.iter().all(|l| l.contains("-o ro ")), "{mounts:?}");
    // `archive list` and `restoreonly` read it the same way.
    let archive = s.src.archive();
    let rel = archive.strip_prefix(&s.src.backups).unwrap();
    let o = run(&s.src.cfg, &["archive", "list", &format!("usb://{}/backups/{}", medium.dev, rel.display())], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let into = dir.join("restored");
    std::fs::create_dir_all(&into).unwrap();
    let o = run(&s.src.cfg, &["restoreonly", "--layout", s.src.layout_file.to_str().unwrap(), "--target", into.to_str().unwrap(), "--url", &url], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(device_sum(&medium.dev), before, "reading the backup changed its medium");
}
