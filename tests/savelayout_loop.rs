//! As root on a loop disk: capture a GPT disk holding an ESP (vfat), ext4,
//! xfs, swap and btrfs with subvolumes, mounted under a temporary root, and
//! check every recorded identity against what `blkid -p` and `sfdisk -J`
//! report. Then `checklayout` says 0 when nothing changed and 1 after a
//! partition is added.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use rescue::layout::{FsType, Layout};

#[test]
fn savelayout_and_checklayout_on_a_loop_disk() {
    require_root();
    require_tools(&["sfdisk", "blkid", "lsblk", "partx", "mkfs.vfat", "mkfs.ext4", "mkfs.xfs", "mkswap", "mkfs.btrfs", "btrfs", "dumpe2fs", "xfs_info"]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut disk = LoopDisk::new(dir, "disk", 760);
    disk.partition(
        "label: gpt\n\
         size=32M, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"EFI system\"\n\
         size=128M, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root\n\
         size=320M, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=srv\n\
         size=32M, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F\n\
         size=200M, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, attrs=\"GUID:60\"",
    );
    sh(&format!("mkfs.vfat -F 32 -n ESP {} >/dev/null 2>&1", disk.part(1)));
    sh(&format!("mkfs.ext4 -q -L root -I 512 {}", disk.part(2)));
    sh(&format!("mkfs.xfs -q -f -L data -m reflink=0 {}", disk.part(3)));
    sh(&format!("mkswap -L swp {} >/dev/null", disk.part(4)));
    sh(&format!("mkfs.btrfs -q -f -L tank {} >/dev/null", disk.part(5)));

    // Subvolumes are made at the top level, then mounted by name.
    let top = dir.join("top");
    disk.mount(&disk.part(5), &top, None);
    sh(&format!("btrfs subvolume create {0}/@home >/dev/null && btrfs subvolume create {0}/@data >/dev/null", top.display()));
    disk.umount_all();

    let root = dir.join("root");
    disk.mount(&disk.part(2), &root, None);
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("etc/fstab"),
        format!(
            "# test fstab\nLABEL=root / ext4 errors=remount-ro 0 1\nLABEL=data /srv xfs noatime 0 2\nUUID={} /home btrfs subvol=@home,compress=zstd 0 0\n",
            blkid(&disk.part(5))["UUID"]
        ),
    )
    .unwrap();
    disk.mount(&disk.part(3), &root.join("srv"), None);
    disk.mount(&disk.part(5), &root.join("home"), Some("subvol=@home"));
    disk.mount(&disk.part(5), &root.join("data"), Some("subvol=@data"));

    let out_file = dir.join("layout.toml");
    let started = std::time::Instant::now();
    let out = rescue(dir, &["savelayout", "--disk", &disk.dev, "--root", root.to_str().unwrap(), "-o", out_file.to_str().unwrap()]);
    let took = started.elapsed();
    assert!(out.status.success(), "savelayout failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(took.as_secs() < 10, "capture took {took:?}");
    let l = Layout::load(&out_file).unwrap();
    let diskname = disk.dev.trim_start_matches("/dev/");

    // Disk and partitions against sfdisk -J.
    let sf = sfdisk_json(&disk.dev);
    let table = &sf["partitiontable"];
    assert_eq!(l.disks.len(), 1);
    assert_eq!(l.disks[0].name, diskname);
    assert_eq!(l.disks[0].size, 760 << 20);
    assert_eq!(l.disks[0].disk_guid.as_deref(), table["id"].as_str());
    let parts = table["partitions"].as_array().unwrap();
    assert_eq!(l.partitions.len(), parts.len());
    for sp in parts {
        let node = sp["node"].as_str().unwrap();
        let name = node.trim_start_matches("/dev/");
        let p = l.partition(name).unwrap_or_else(|| panic!("partition {name} missing"));
        assert_eq!(p.disk, diskname);
        assert_eq!(p.start, sp["start"].as_u64().unwrap(), "{name} start");
        assert_eq!(p.size, sp["size"].as_u64().unwrap(), "{name} size");
        assert_eq!(p.type_id, sp["type"].as_str().unwrap(), "{name} type");
        assert_eq!(p.uuid.as_deref(), sp["uuid"].as_str(), "{name} PARTUUID");
        assert_eq!(p.label.as_deref(), sp["name"].as_str(), "{name} PARTLABEL");
        assert_eq!(p.attrs.as_deref(), sp["attrs"].as_str(), "{name} attrs");
        // blkid agrees on the partition identity too.
        let b = blkid(node);
        assert_eq!(p.uuid.as_deref().map(str::to_lowercase), b.get("PART_ENTRY_UUID").cloned(), "{name}");
    }

    // Filesystems and swap against blkid -p.
    for (n, fstype) in [(1, FsType::Vfat), (2, FsType::Ext4), (3, FsType::Xfs), (5, FsType::Btrfs)] {
        let dev = disk.part(n);
        let b = blkid(&dev);
        let f = l.filesystem_on(dev.trim_start_matches("/dev/")).unwrap_or_else(|| panic!("no filesystem on {dev}"));
        assert_eq!(f.fstype, fstype);
        assert_eq!(Some(&f.uuid), b.get("UUID"), "{dev} UUID");
        assert_eq!(f.label.as_ref(), b.get("LABEL"), "{dev} LABEL");
    }
    let swap = &l.swaps[0];
    assert_eq!(swap.device, disk.part(4).trim_start_matches("/dev/"));
    assert_eq!(swap.uuid.as_ref(), blkid(&disk.part(4)).get("UUID"));
    assert_eq!(swap.label.as_deref(), Some("swp"));

    // Creation options.
    let ext = l.filesystem_on(&format!("{diskname}p2")).unwrap();
    let eo = ext.ext.as_ref().unwrap();
    assert_eq!(eo.inode_size, 512);
    assert!(eo.features.iter().any(|f| f == "has_journal"));
    assert!(!eo.features.iter().any(|f| f == "needs_recovery"), "state flags are not features");
    assert!(ext.used_bytes > 0);
    let xo = l.filesystem_on(&format!("{diskname}p3")).unwrap().xfs.clone().unwrap();
    assert!(xo.crc && !xo.reflink && xo.finobt, "{xo:?}");
    assert_eq!(xo.block_size, 4096);
    let vo = l.filesystem_on(&format!("{diskname}p1")).unwrap().vfat.clone().unwrap();
    assert_eq!(vo.fat_size, 32);
    assert_eq!(vo.volume_id, blkid(&disk.part(1))["UUID"].replace('-', ""));
    let bo = l.filesystem_on(&format!("{diskname}p5")).unwrap().btrfs.clone().unwrap();
    let subs: Vec<&str> = bo.subvolumes.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(subs, vec!["@home", "@data"]);

    // Mounts, relative to the root, with the fstab's source form and options.
    let m = |p: &str| l.mounts.iter().find(|m| m.path == p).unwrap_or_else(|| panic!("mount {p} missing: {:?}", l.mounts));
    assert_eq!(m("/").source, "LABEL=root");
    assert_eq!(m("/").options, "errors=remount-ro");
    assert_eq!(m("/srv").source, "LABEL=data");
    assert_eq!(m("/srv").options, "noatime");
    assert_eq!(m("/home").subvol.as_deref(), Some("@home"));
    assert_eq!(m("/home").options, "compress=zstd", "subvol= is kept apart from the options");
    assert_eq!(m("/data").subvol.as_deref(), Some("@data"));
    assert!(m("/data").source.starts_with("UUID="), "no fstab entry: UUID= form");

    // Recording a fixture and replaying it gives the same layout.
    let fixture = dir.join("fixture.json");
    let out = rescue(dir, &["savelayout", "--disk", &disk.dev, "--root", root.to_str().unwrap(), "--record-fixture", fixture.to_str().unwrap(), "-o", "-"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = rescue(dir, &["savelayout", "--disk", &disk.dev, "--root", root.to_str().unwrap(), "--from-fixture", fixture.to_str().unwrap(), "-o", "-"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let replayed = Layout::from_toml(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert!(rescue::layout::diff::compare(&l, &replayed).is_empty(), "replay differs: {:?}", rescue::layout::diff::compare(&l, &replayed));

    // checklayout: unchanged → 0.
    let out = rescue(dir, &["checklayout", "--disk", &disk.dev, "--root", root.to_str().unwrap(), "--layout", out_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "unchanged: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("unchanged"));

    // Writing files (free space, used bytes) is not a change.
    sh(&format!("dd if=/dev/zero of={}/filler bs=1M count=8 status=none && sync", root.display()));
    let out = rescue(dir, &["checklayout", "--disk", &disk.dev, "--root", root.to_str().unwrap(), "--layout", out_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "free space is not a layout change: {}", String::from_utf8_lossy(&out.stdout));

    // A new partition → 1, with a readable diff and JSON.
    sh(&format!("echo 'size=8M, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4' | sfdisk -q --no-reread --append {}", disk.dev));
    disk.settle();
    let out = rescue(dir, &["checklayout", "--disk", &disk.dev, "--root", root.to_str().unwrap(), "--layout", out_file.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "changed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("partition {diskname}p6 added: recovery would not create this partition")), "{stdout}");
    let out = rescue(dir, &["--json", "checklayout", "--disk", &disk.dev, "--root", root.to_str().unwrap(), "--layout", out_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["changed"], true);
    assert!(j["differences"].as_array().unwrap().iter().any(|c| c["item"] == format!("partition {diskname}p6") && c["change"] == "added"));

    // A missing saved layout is an input error (2), not "changed".
    let out = rescue(dir, &["checklayout", "--disk", &disk.dev, "--layout", "/nonexistent/layout.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("run `rescue savelayout`"));
}

#[test]
fn savelayout_refuses_unknown_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let out = rescue(tmp.path(), &["savelayout", "--disk", "/dev/nosuchdisk", "-o", "-"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no block device `/dev/nosuchdisk`"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The partition table is also read from the disk with the gpt crate and
/// compared with sfdisk's report: a damaged primary GPT header (sfdisk then
/// reads the backup) is reported as a warning naming the disk.
#[test]
fn savelayout_warns_when_the_primary_gpt_is_damaged() {
    require_root();
    require_tools(&["losetup", "sfdisk", "dd"]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let disk = LoopDisk::new(dir, "gptdamaged", 64);
    disk.partition("label: gpt\nsize=16M\ntype=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n");
    // Intact: no warning about the table.
    let out = rescue(dir, &["savelayout", "--disk", &disk.dev, "-o", &dir.join("ok.toml").to_string_lossy()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("GPT"), "{err}");
    // Flip a byte of the disk GUID in the primary header (LBA 1, offset 56): its CRC no longer matches.
    sh(&format!("printf '\\xa5' | dd of={} bs=1 seek={} conv=notrunc status=none", disk.dev, 512 + 60));
    let out = rescue(dir, &["savelayout", "--disk", &disk.dev, "-o", &dir.join("damaged.toml").to_string_lossy()]);
    let err = String::from_utf8_lossy(&out.stderr);
    let name = disk.dev.trim_start_matches("/dev/");
    assert!(err.contains(&format!("{name}: the primary GPT header is not valid")), "{err}");
    assert!(err.contains("sfdisk --verify"), "{err}");
}

/// `util::disk_of_device` (used to keep the backup's USB disk out of the
/// layout and out of the recovery targets): a partition, its disk and a link
/// to the partition all name the disk.
#[test]
fn disk_of_device_names_the_whole_disk() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let disk = LoopDisk::new(tmp.path(), "diskof", 16);
    disk.partition("label: gpt\nsize=4M\n");
    let name = disk.dev.trim_start_matches("/dev/").to_string();
    assert_eq!(rescue::util::disk_of_device(std::path::Path::new(&disk.part(1))), Some(name.clone()));
    assert_eq!(rescue::util::disk_of_device(std::path::Path::new(&disk.dev)), Some(name.clone()));
    let link = tmp.path().join("by-label-link");
    std::os::unix::fs::symlink(disk.part(1), &link).unwrap();
    assert_eq!(rescue::util::disk_of_device(&link), Some(name));
    assert_eq!(rescue::util::disk_of_device(std::path::Path::new("/dev/nonexistent-rescue-test")), None);
}
