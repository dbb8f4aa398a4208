//! As root on loop disks with 4096-byte logical sectors (`losetup
//! --sector-size 4096`: a 4Kn disk). First, `mkfs.fat` makes exactly the
//! cluster counts the plan computed, on 512- and 4096-byte sectors at 100,
//! 200, 260 and 512 MiB, each read back with `fsck.fat -v`, `file -s` and
//! `minfo`; a FAT32 forced onto too few clusters makes `mkfs.fat` warn, and
//! the warning reaches the recovery report. Then `rescue recover
//! --layout-only` of a system recorded on 512-byte sectors (a 64 MiB FAT32
//! ESP, ext4 /boot with 1 KiB blocks, XFS with 512-byte sectors, swap) onto a
//! 4Kn disk: the ESP grows to a valid FAT32, every filesystem is made for
//! 4096-byte sectors, and a warning `mkfs.fat` printed while it succeeded is
//! listed under Warnings.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::recovery::Unmounter;
use common::*;
use rescue::cmd::{Cmd, WarningMark};
use rescue::layout::{Filesystem, FsType, VfatOptions};
use rescue::plan::fat;

const MIB: u64 = 1 << 20;
/// Besides [`STORAGE_TOOLS`]: what reads a FAT back.
const FAT_TOOLS: &[&str] = &["fsck.fat", "minfo", "file"];

/// `fsck.fat -n -v`: the data clusters and the whole output.
fn fsck_fat(dev: &str) -> (u64, String) {
    let out = Command::new("fsck.fat").args(["-n", "-v", dev]).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "fsck.fat -n -v {dev}:\n{text}");
    let clusters = text.lines().find_map(|l| l.trim().strip_suffix(')').and_then(|l| l.split_once(" data clusters"))).map(|(n, _)| n.trim().parse().unwrap());
    (clusters.unwrap_or_else(|| panic!("no cluster count from fsck.fat:\n{text}")), text)
}

fn esp(label: &str) -> Filesystem {
    Filesystem {
        device: "sdx1".into(),
        fstype: FsType::Vfat,
        uuid: "1A2B-3C4D".into(),
        label: Some(label.into()),
        used_bytes: 0,
        size: None,
        extra_devices: Vec::new(),
        ext: None,
        xfs: None,
        vfat: Some(VfatOptions { fat_size: 32, volume_id: "1A2B3C4D".into(), sectors_per_cluster: None }),
        btrfs: None,
    }
}

#[test]
fn mkfs_fat_makes_the_clusters_the_plan_computed_and_a_forced_fat32_warns_in_the_report() {
    require_root();
    require_tools(STORAGE_TOOLS);
    require_tools(FAT_TOOLS);
    let dir = tempfile::tempdir().unwrap();
    for sector in [512, 4096] {
        for mib in [100, 200, 260, 512] {
            let disk = LoopDisk::with_sector_size(dir.path(), &format!("fat-{sector}-{mib}"), mib, sector);
            let want = fat::choose(32, None, mib * MIB, sector).unwrap();
            let mark = WarningMark::now();
            rescue::apply::mkfs_command(Path::new(&disk.dev), &esp("ESP"), &[], false, sector, Some(&want)).unwrap().run().unwrap();
            let what = format!("{mib} MiB on {sector}-byte sectors, planned {want}");
            let (clusters, fsck) = fsck_fat(&disk.dev);
            assert_eq!(clusters, want.clusters, "{what}:\n{fsck}");
            assert!(!fsck.to_ascii_lowercase().contains("warning"), "{what}:\n{fsck}");
            assert!(fat::valid(want.fat_size, clusters), "{what}");
            assert_eq!(want.fat_size == 32, !(sector == 4096 && mib < 260), "{what}");
            let file = sh(&format!("file -s {}", disk.dev));
            assert!(file.contains(&format!("FAT ({} bit)", want.fat_size)), "{what}: {file}");
            let minfo = sh(&format!("minfo -i {} ::", disk.dev));
            assert!(minfo.contains(&format!("sector size: {sector} bytes")), "{what}: {minfo}");
            assert!(minfo.contains(&format!("cluster size: {} sectors", want.sectors_per_cluster)), "{what}: {minfo}");
            assert!(!mark.since().iter().any(|w| w.contains(&disk.dev)), "{what}: {:?}", mark.since());
        }
    }

    // Forced the way the recorded fat-size used to be passed: FAT32 on 200 MiB of 4 KiB sectors.
    let disk = LoopDisk::with_sector_size(dir.path(), "forced", 200, 4096);
    let mark = WarningMark::now();
    Cmd::new("mkfs.vfat").args(["-F", "32", "-i", "1A2B3C4D"]).arg(&disk.dev).run().unwrap();
    let (clusters, fsck) = fsck_fat(&disk.dev);
    assert!(clusters < fat::MIN_FAT32_CLUSTERS && fsck.contains("less than the required minimum"), "{fsck}");
    let mut report = rescue::workflow::recover::Report::new(Path::new("layout.toml"), Path::new("/mnt/local"), true);
    report.add_tool_warnings(&mark);
    let text = report.text();
    assert!(text.contains("Warnings (1):") && text.contains(&format!("-i 1A2B3C4D {}`: WARNING: Number of clusters for 32 bit FAT", disk.dev)), "{text}");
}

#[test]
fn a_system_on_512_byte_sectors_recovers_onto_a_4kn_disk() {
    require_root();
    require_tools(STORAGE_TOOLS);
    require_tools(FAT_TOOLS);
    let dir = tempfile::tempdir().unwrap();
    let disk = LoopDisk::with_sector_size(dir.path(), "4kn", 1024, 4096);
    let root = dir.path().join("root");
    let _unmount = Unmounter(vec![root.clone()]);
    // The example recorded on 512-byte sectors, its ESP labelled in lower case
    // (mkfs.fat warns that DOS may not read such a label, and makes it).
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recover/gpt-esp-xfs.toml");
    let text = std::fs::read_to_string(fixture).unwrap().replace("label = \"ESP\"", "label = \"esp\"");
    let layout = dir.path().join("layout.toml");
    std::fs::write(&layout, text).unwrap();

    let out = recover_layout_only(dir.path(), &layout, "nvme0n1", &disk.dev, &root);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "recover failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // The plan says what it changes, and the report lists the tool's warning.
    assert!(stdout.contains("Changes from the recorded system:") && stdout.contains("the ESP nvme0n1p1 grows from 64.0 MiB to 260.0 MiB"), "{stdout}");
    assert!(stdout.contains("plan: the ESP nvme0n1p1 grows"), "{stdout}");
    assert!(stdout.contains("Warnings (") && stdout.contains("mkfs.fat: Warning: lowercase labels might not work properly"), "{stdout}");
    assert!(!stdout.contains("Warnings: none"), "{stdout}");

    // Partitions in 4 KiB sectors, the ESP grown, everything after it following.
    let sf = sfdisk_json(&disk.dev);
    assert_eq!(sf["partitiontable"]["sectorsize"], 4096, "{sf}");
    let parts = sf["partitiontable"]["partitions"].as_array().unwrap();
    let geometry: Vec<(u64, u64)> = parts.iter().map(|p| (p["start"].as_u64().unwrap(), p["size"].as_u64().unwrap())).collect();
    assert_eq!(geometry[0], (256, 260 * MIB / 4096), "{sf}");
    assert!(geometry.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0 && w[1].0 % 256 == 0), "{geometry:?}");

    // A FAT32 the firmware reads as FAT32.
    let (clusters, fsck) = fsck_fat(&disk.part(1));
    assert!(clusters >= fat::MIN_FAT32_CLUSTERS && !fsck.to_ascii_lowercase().contains("warning"), "{fsck}");
    assert!(sh(&format!("file -s {}", disk.part(1))).contains("FAT (32 bit)"));
    let id = blkid(&disk.part(1));
    assert_eq!((id["UUID"].as_str(), id["LABEL"].as_str()), ("1A2B-3C4D", "esp"), "{id:?}");
    // Block and sector sizes no smaller than the disk's sectors.
    let boot = sh(&format!("dumpe2fs -h {} 2>/dev/null", disk.part(2)));
    assert!(boot.lines().any(|l| l.starts_with("Block size:") && l.ends_with(" 4096")), "{boot}");
    let xfs = sh(&format!("xfs_info {}", root.display()));
    assert!(xfs.contains("sectsz=4096"), "{xfs}");
    assert_eq!(blkid(&disk.part(3)).get("TYPE").map(String::as_str), Some("swap"));

    let o = rescue(dir.path(), &["recover", "--umount", "--target-root", root.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
