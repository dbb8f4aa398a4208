//! As root on loop disks this test creates: a small source system (GPT with
//! an ESP (vfat), an ext4 root, an xfs /srv and swap) holding files with
//! known checksums is captured with `savelayout` and backed up with
//! `mkbackuponly` to a file:// location; `rescue recover --yes --map` then
//! brings it back onto a blank loop disk (bootloader kind none: a GRUB
//! install needs a real system, the VM scenarios cover it). Checked: the
//! data by checksum, every UUID and label, the report JSON (phases, bytes),
//! the log copied into the recovered system, fstab rewritten for the new
//! device name, nothing left mounted. Then the failures, each before any
//! disk is touched (the target disk's checksum is compared before and
//! after): archive missing, archive corrupt, a tool missing (PATH without
//! mkfs.xfs), unattended without permission to proceed, and unattended with
//! an ambiguous disk mapping (a made-up inventory). Last, an unattended
//! recovery with `recover.unattended-proceed = true` over the recovered disk.

#![allow(clippy::unwrap_used)]

mod common;
mod image_common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::recovery::*;
use common::*;
use rescue::layout::{BootloaderKind, Layout};

/// Beyond `common::STORAGE_TOOLS`.
const EXTRA_TOOLS: &[&str] = &["busybox"];

/// Path → what it is: kind, mode, owner, size and content checksum (files), target (links).
fn tree_manifest(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if rel == "lost+found" || rel == "srv/lost+found" || rel.starts_with("var/log/rescue") {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            let desc = if m.file_type().is_symlink() {
                format!("l {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                walk(root, &p, out);
                format!("d {:o} {}:{}", m.mode(), m.uid(), m.gid())
            } else {
                let data = std::fs::read(&p).unwrap();
                format!("f {:o} {}:{} {} {:032x} nlink={}", m.mode(), m.uid(), m.gid(), m.len(), xxhash_rust::xxh3::xxh3_128(&data), m.nlink())
            };
            out.insert(rel, desc);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn populate(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), "recoverme\n").unwrap();
    std::fs::write(root.join("etc/motd"), "restored by rescue\n").unwrap();
    random_file(&root.join("home/user/data.bin"), 5 << 20, 7);
    std::fs::hard_link(root.join("home/user/data.bin"), root.join("home/user/data-link.bin")).unwrap();
    random_file(&root.join("usr/bin/tool"), 70_000, 11);
    std::fs::set_permissions(root.join("usr/bin/tool"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::os::unix::fs::symlink("/usr/share/zoneinfo/UTC", root.join("etc/localtime")).unwrap();
    std::os::unix::fs::chown(root.join("home/user"), Some(1000), Some(1000)).unwrap();
    random_file(&root.join("srv/data/big.bin"), 12 << 20, 13);
    std::fs::write(root.join("srv/data/small.txt"), "small\n").unwrap();
    std::fs::create_dir_all(root.join("boot")).unwrap();
    std::fs::create_dir_all(root.join("var/log")).unwrap();
    // A shell in the recovered system, for the post-recover hook run in its chroot.
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(rescue::cmd::find_program("busybox").unwrap(), root.join("bin/sh")).unwrap();
}

const IDENTITY: &[&str] = &["TYPE", "UUID", "LABEL", "PARTUUID", "PARTLABEL", "PART_ENTRY_TYPE"];

#[test]
fn recover_end_to_end_on_loop_disks() {
    require_root();
    require_tools(STORAGE_TOOLS);
    require_tools(EXTRA_TOOLS);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // The source system.
    let volumes = [
        Volume { part: 1, fs: "vfat", label: "ESP", mount: None },
        Volume { part: 2, fs: "ext4", label: "root", mount: Some("/") },
        Volume { part: 3, fs: "xfs", label: "srv", mount: Some("/srv") },
        Volume { part: 4, fs: "swap", label: "swp", mount: None },
    ];
    let (mut fstab, mut source_tree) = (String::new(), BTreeMap::new());
    let src = BackedUp::new(
        dir,
        512,
        "label: gpt\n\
         size=32M, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"EFI system\"\n\
         size=100M, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root\n\
         size=320M, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=srv\n\
         size=16M, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, name=swap",
        &volumes,
        |root, disk| {
            populate(root);
            fstab = format!(
                "UUID={} / ext4 errors=remount-ro 0 1\n{} /srv xfs noatime 0 2\nUUID={} none swap sw 0 0\n",
                blkid(&disk.part(2))["UUID"],
                disk.part(3),
                blkid(&disk.part(4))["UUID"]
            );
            std::fs::write(root.join("etc/fstab"), &fstab).unwrap();
            source_tree = tree_manifest(root);
        },
    );
    let (cfg, cfg_text, backups, layout_file) = (src.cfg.clone(), src.cfg_text.clone(), src.backups.clone(), src.layout_file.clone());
    let layout = Layout::load(&layout_file).unwrap();
    assert_eq!(layout.bootloader.kind, BootloaderKind::None, "a loop disk has no bootloader");
    assert_eq!(layout.mounts.len(), 2, "{:?}", layout.mounts);
    assert!(source_tree.contains_key("srv/data/big.bin") && source_tree.contains_key("home/user/data.bin"));
    let src_name = src.name.clone();

    // Recover onto a blank disk.
    let dst = LoopDisk::new(dir, "dst", 512);
    let target = dir.join("target");
    let check = dir.join("check");
    let _u = Unmounter(vec![target.clone(), check.clone()]);
    let map = format!("{src_name}={}", dst.dev);
    let started = Instant::now();
    let o =
        run(&cfg, &["--json", "recover", "--yes", "--layout", layout_file.to_str().unwrap(), "--map", &map, "--target-root", target.to_str().unwrap()], &[]);
    let took = started.elapsed();
    assert!(o.status.success(), "recover: {}", text(&o));
    eprintln!("recover took {took:?}");
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("report is not JSON ({e}): {}", text(&o)));
    let phases: Vec<&str> = rep["phases"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    // A blank target disk: one pass over the backup, no separate check phase.
    assert_eq!(phases, ["verify", "plan", "storage", "restore", "finalize"], "{rep:#}");
    assert_eq!(rep["verify-mode"], serde_json::json!({ "mode": "one-pass", "why": "all target disks are blank" }), "{rep:#}");
    assert!(rep["phases"].as_array().unwrap().iter().all(|p| p["ok"] == true && p["seconds"].as_f64().unwrap() >= 0.0));
    assert_eq!(rep["result"], "ok");
    assert!(rep["total-seconds"].as_f64().unwrap() > 0.0, "{rep:#}");
    assert!(rep["restored"]["bytes"].as_u64().unwrap() >= 17 << 20, "{rep:#}");
    assert!(rep["restored"]["entries"].as_u64().unwrap() > 10, "{rep:#}");
    assert_eq!(rep["backup"]["verified"], true, "checked against its manifest while restoring: {rep:#}");
    assert!(rep["finalize"].as_array().unwrap().iter().any(|s| s.as_str().unwrap().contains("rewrite /etc/fstab")), "{rep:#}");
    assert!(mounted_under(&target).is_empty(), "still mounted: {:?}", mounted_under(&target));

    // Identities and data.
    for n in 1..=4 {
        let (a, b) = (blkid(&src.disk.part(n)), blkid(&dst.part(n)));
        for k in IDENTITY {
            assert_eq!(a.get(*k), b.get(*k), "{k} of partition {n}: {a:?} vs {b:?}");
        }
    }
    let mut dst = dst;
    dst.mount(&dst.part(2), &check, Some("ro"));
    dst.mount(&dst.part(3), &check.join("srv"), Some("ro"));
    let mut recovered = tree_manifest(&check);
    let new_fstab = std::fs::read_to_string(check.join("etc/fstab")).unwrap();
    assert_eq!(new_fstab, fstab.replace(&src.disk.part(3), &dst.part(3)), "fstab follows the new device name");
    let mut expected = source_tree.clone();
    expected.remove("etc/fstab");
    recovered.remove("etc/fstab");
    assert_eq!(recovered, expected, "the recovered tree differs from the source");
    let logs: Vec<PathBuf> = std::fs::read_dir(check.join("var/log/rescue")).unwrap().map(|e| e.unwrap().path()).collect();
    let log = logs.iter().find(|p| p.extension().is_some_and(|e| e == "log")).unwrap_or_else(|| panic!("no log in {logs:?}"));
    let name = log.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("recover-") && name.len() == "recover-YYYYMMDD-HHMMSS.log".len(), "{name}");
    let log_text = std::fs::read_to_string(log).unwrap();
    assert!(log_text.contains("Recovery of") && log_text.contains("restore") && log_text.contains("phase 5/5 finalize"), "{log_text}");
    assert!(logs.iter().any(|p| p.extension().is_some_and(|e| e == "json")), "{logs:?}");
    dst.umount_all();

    // Failures: each stops before any disk is touched. The disk now holds
    // the recovered system: the backup is read in full before writing.
    let before = device_sum(&dst.dev);
    let o = run(&cfg, &["--json", "recover", "--plan", "--layout", layout_file.to_str().unwrap(), "--map", &map], &[]);
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("plan is not JSON ({e}): {}", text(&o)));
    assert_eq!(plan["verify"]["mode"], "full", "{plan:#}");
    assert!(plan["verify"]["why"].as_str().unwrap().starts_with(&format!("{} holds a partition", dst.dev)), "{plan:#}");
    let recover_args = |url: &str| -> Vec<String> {
        ["recover", "--yes", "--layout", layout_file.to_str().unwrap(), "--map", &map, "--target-root", target.to_str().unwrap(), "--url", url]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let expect_fail = |args: &[String], env: &[(&str, &str)], code: i32, needles: &[&str]| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_failed(&run(&cfg, &a, env), code, needles);
        assert_eq!(device_sum(&dst.dev), before, "the target disk changed after: {args:?}");
        assert!(mounted_under(&target).is_empty());
    };

    // The backup location holds no archive.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    expect_fail(&recover_args(&format!("file://{}", empty.display())), &[], 2, &["phase verify", "no backup of", "nothing was written"]);

    // A corrupt archive: a few bytes in the middle flipped.
    let archive = src.archive();
    let host_dir = archive.parent().unwrap().to_path_buf();
    let corrupt = dir.join("corrupt").join(host_dir.file_name().unwrap());
    std::fs::create_dir_all(&corrupt).unwrap();
    let mut bytes = std::fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 16] {
        *b ^= 0x5a;
    }
    std::fs::write(corrupt.join(archive.file_name().unwrap()), bytes).unwrap();
    expect_fail(&recover_args(&format!("file://{}", dir.join("corrupt").display())), &[], 3, &["phase check", "is damaged", "Nothing was written"]);

    // A tool missing: a PATH with everything but mkfs.xfs.
    let bin = path_without(&dir.join("bin"), &["mkfs.xfs"]);
    let url = format!("file://{}", backups.display());
    expect_fail(&recover_args(&url), &[("PATH", bin.to_str().unwrap())], 3, &["phase verify", "mkfs.xfs", "apt-get install xfsprogs", "Nothing was written"]);

    // Unattended: no --yes and no recover.unattended-proceed.
    let mut unattended: Vec<String> = recover_args(&url).into_iter().filter(|a| a != "--yes").collect();
    unattended.push("--unattended".into());
    expect_fail(&unattended, &[], 2, &["phase plan", "recover.unattended-proceed", "nothing was written"]);

    // Unattended with two disks that could hold the recorded one.
    let recorded = layout.disks[0].size;
    let inv = serde_json::json!({ "disks": [
        { "name": "sdx", "path": "/dev/sdx", "size": recorded, "logical-sector-size": 512 },
        { "name": "sdy", "path": "/dev/sdy", "size": recorded, "logical-sector-size": 512 },
    ]});
    let inv_file = dir.join("inventory.json");
    std::fs::write(&inv_file, inv.to_string()).unwrap();
    let ambiguous: Vec<String> = [
        "recover",
        "--unattended",
        "--yes",
        "--layout",
        layout_file.to_str().unwrap(),
        "--target-root",
        target.to_str().unwrap(),
        "--inventory",
        inv_file.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    expect_fail(&ambiguous, &[], 2, &["phase plan", "/dev/sdx", "/dev/sdy", &format!("--map {src_name}=")]);

    // Unattended and allowed by the config: recovers over the recovered disk.
    let cfg2 = dir.join("unattended.toml");
    // With hooks: pre-recover in this (rescue) system, post-recover in the recovered one (shell builtins only: busybox as sh).
    let pre_log = dir.join("pre-recover.log");
    let hooks = format!(
        "[hooks]\npre-recover = 'echo \"$RESCUE_PHASE $RESCUE_TARGET_ROOT\" > {}'\n\
         post-recover = 'echo \"$RESCUE_PHASE $RESCUE_TARGET_ROOT\" > /post-recover.txt; [ -d /proc/self ] && echo proc >> /post-recover.txt; echo said hello'\n",
        pre_log.display()
    );
    std::fs::write(&cfg2, format!("{cfg_text}[recover]\nunattended-proceed = true\n{hooks}")).unwrap();
    let started = Instant::now();
    let o = run(&cfg2, &["recover", "--unattended", "--layout", layout_file.to_str().unwrap(), "--map", &map, "--target-root", target.to_str().unwrap()], &[]);
    assert!(o.status.success(), "unattended recover: {}", text(&o));
    eprintln!("unattended recover took {:?}", started.elapsed());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Recovery of") && err.contains("total"), "{err}");
    eprintln!("{}", &err[err.find("Recovery of").unwrap()..]);
    assert!(mounted_under(&target).is_empty());
    dst.mount(&dst.part(2), &check, Some("ro"));
    dst.mount(&dst.part(3), &check.join("srv"), Some("ro"));
    assert_eq!(std::fs::read_to_string(&pre_log).unwrap(), format!("pre-recover {}\n", target.display()));
    assert_eq!(
        std::fs::read_to_string(check.join("post-recover.txt")).unwrap(),
        format!("post-recover {}\nproc\n", target.display()),
        "run in the chroot, /proc bound"
    );
    assert!(err.contains("hook post-recover: ok") && err.contains("| said hello"), "the report shows the hook and its output: {err}");
    let mut again = tree_manifest(&check);
    again.remove("etc/fstab");
    again.remove("post-recover.txt");
    // The hook's chroot made the mount points of /dev, /proc, /sys and /run (every real system has them).
    for d in ["dev", "proc", "sys", "run"] {
        again.remove(d);
    }
    assert_eq!(again, expected);
    dst.umount_all();
}

/// `rescue mkbackup` with `backup.url = "iso:///backup"`: the descriptor is
/// saved and records the backup, the archive is staged and goes into the
/// ISO as /backup/HOST/..., and recovering from a copy of the ISO's /backup
/// (what the rescue system reads from its boot medium; the host kernel
/// cannot mount ISO 9660) restores the files.
#[test]
fn mkbackup_puts_the_backup_into_the_iso() {
    require_root();
    require_tools(&["sfdisk", "mkfs.ext4", "xorriso", "grub-mkimage", "mcopy", "mkfs.vfat", "busybox", "udevadm", "cpio"]);
    let (kernel, modules) = image_common::kernel_dir();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cfg = dir.join("rescue.toml");
    let cfg_text = format!(
        "log-dir = \"{0}/log\"\nstate-dir = \"{0}/state\"\n[backup]\nurl = \"iso:///backup\"\niso-dir = \"{0}/iso\"\n[image]\ncompression-level = 1\n",
        dir.display()
    );
    std::fs::write(&cfg, &cfg_text).unwrap();

    let mut src = LoopDisk::new(dir, "src", 128);
    src.partition("label: gpt\nsize=100M, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root");
    sh(&format!("mkfs.ext4 -q -L root {}", src.part(1)));
    let root = dir.join("src-root");
    src.mount(&src.part(1), &root, None);
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/fstab"), format!("UUID={} / ext4 defaults 0 1\n", blkid(&src.part(1))["UUID"])).unwrap();
    random_file(&root.join("srv/payload.bin"), 3 << 20, 5);
    std::fs::create_dir_all(root.join("var/log")).unwrap();
    let source_tree = tree_manifest(&root);

    let out_dir = dir.join("out");
    let started = Instant::now();
    let o = run(
        &cfg,
        &[
            "--json",
            "mkbackup",
            "--disk",
            &src.dev,
            "--root",
            root.to_str().unwrap(),
            "--kernel",
            kernel.to_str().unwrap(),
            "--modules-dir",
            modules.to_str().unwrap(),
            "--output",
            "iso",
            "--output-dir",
            out_dir.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "mkbackup: {}", text(&o));
    eprintln!("mkbackup took {:?}", started.elapsed());
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    let steps: Vec<&str> = summary["seconds"].as_array().unwrap().iter().map(|s| s[0].as_str().unwrap()).collect();
    assert_eq!(steps, ["savelayout", "backup", "mkrescue"], "{summary:#}");
    src.umount_all();

    // The descriptor records the backup.
    let layout = Layout::load(&dir.join("state/layout.toml")).unwrap();
    let rec = layout.backup.clone().expect("the descriptor records the backup");
    assert_eq!(rec.url, "iso:///backup");
    assert!(rec.archive.starts_with("backup-") && rec.archive.ends_with(".tar.zst"), "{rec:?}");
    assert!(rec.data_bytes >= 3 << 20 && rec.files >= 2, "{rec:?}");
    let host = layout.host.hostname.clone();
    let staged = dir.join("iso/backup").join(&host).join(&rec.archive);
    assert!(staged.is_file(), "{} missing", staged.display());

    // The ISO holds it under /backup/HOST/.
    let iso = out_dir.join(format!("rescue-{host}.iso"));
    let from_iso = dir.join("from-iso");
    std::fs::create_dir_all(&from_iso).unwrap();
    sh(&format!("xorriso -osirrox on -indev {} -extract /backup {}/backup 2>/dev/null", iso.display(), from_iso.display()));
    let copied = from_iso.join("backup").join(&host).join(&rec.archive);
    assert_eq!(std::fs::read(&copied).unwrap(), std::fs::read(&staged).unwrap(), "the archive in the ISO differs from the staged one");

    // Recover from what the ISO holds (iso-dir pointing at the extracted /backup).
    std::fs::write(&cfg, cfg_text.replace(&format!("{}/iso", dir.display()), &from_iso.display().to_string())).unwrap();
    let dst = LoopDisk::new(dir, "dst", 128);
    let target = dir.join("target");
    let _u = Unmounter(vec![target.clone()]);
    let src_name = src.dev.trim_start_matches("/dev/").to_string();
    // No --url: the location comes from the config (the image's config in the rescue system).
    let o = run(&cfg, &["recover", "--yes", "--keep-mounted", "--map", &format!("{src_name}={}", dst.dev), "--target-root", target.to_str().unwrap()], &[]);
    assert!(o.status.success(), "recover from the ISO's backup: {}", text(&o));
    assert_eq!(mounted_under(&target), vec![target.display().to_string()], "--keep-mounted");
    assert_eq!(tree_manifest(&target), source_tree);
    let o = run(&cfg, &["recover", "--umount", "--target-root", target.to_str().unwrap()], &[]);
    assert!(o.status.success(), "recover --umount: {}", text(&o));
    assert!(mounted_under(&target).is_empty());
}
