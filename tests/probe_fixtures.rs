//! Replays the probe fixtures recorded inside the test VM (tests/fixtures/probe,
//! made by tests/vm/record-fixtures.sh on a Debian 12 guest with udev, MD, LVM,
//! LUKS, btrfs, OVMF and NVMe/SATA disks) through `probe::capture`, on a host
//! that has none of these. Each capture must equal the descriptor written in
//! the VM (except the capture time), be valid, and hold the items that make
//! the stack recoverable.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use rescue::layout::*;
use rescue::probe::capture::{capture, CaptureOptions};
use rescue::probe::source::Fixture;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/probe")
}

/// Capture fixture `name` limited to `disks` (as in the fixtures' README), and
/// compare with the recorded descriptor.
fn replay(name: &str, disks: &[&str]) -> Layout {
    let fx = Fixture::load(&dir().join(format!("{name}.json"))).unwrap();
    let opts = CaptureOptions { disks: disks.iter().map(|d| d.to_string()).collect(), root: "/mnt/target".into(), ..Default::default() };
    let cap = capture(&fx, &opts).unwrap();
    assert!(cap.warnings.is_empty(), "{name}: warnings {:?}", cap.warnings);
    let mut got = cap.layout;
    let errors = rescue::layout::validate::check(&got, None);
    assert!(errors.is_empty(), "{name}: captured layout invalid: {errors:?}");
    Layout::from_toml(&got.to_toml().unwrap()).unwrap_or_else(|e| panic!("{name}: written descriptor does not load: {e:#}"));
    let mut want = Layout::load(&dir().join(format!("{name}.toml"))).unwrap();
    want.host.captured_at.clear();
    got.host.captured_at.clear();
    want.host.rescue_version.clear();
    got.host.rescue_version.clear();
    if got != want {
        let g = got.to_toml().unwrap();
        let w = want.to_toml().unwrap();
        let diff = similar::TextDiff::from_lines(&w, &g);
        panic!("{name}: capture differs from {name}.toml:\n{}", diff.unified_diff().header("recorded", "replayed"));
    }
    got
}

#[test]
fn md_raid1_with_grub_on_both_members() {
    let l = replay("md-raid1", &["/dev/vdb", "/dev/vdc"]);
    assert_eq!(l.disks.len(), 2);
    assert_eq!(l.raids.len(), 1);
    let md = &l.raids[0];
    assert_eq!(md.level, "raid1");
    assert_eq!(md.metadata, "1.2");
    assert_eq!(md.raid_devices, 2);
    assert_eq!(md.devices, ["vdb2", "vdc2"]);
    assert!(md.array_name.as_deref().unwrap().ends_with(":root"));
    assert_eq!(md.uuid.len(), 35, "mdadm UUID form: {}", md.uuid);
    let fs = l.filesystem_on(&md.name).unwrap();
    assert_eq!(fs.fstype, FsType::Ext4);
    assert_eq!(fs.label.as_deref(), Some("root"));
    assert!(l.mounts.iter().any(|m| m.path == "/" && m.device == md.name));
    // BIOS boot partitions on both disks, GRUB in both MBRs.
    let bios_boot = l.partitions.iter().filter(|p| p.type_id == "21686148-6449-6E6F-744E-656564454649").count();
    assert_eq!(bios_boot, 2);
    assert_eq!(l.bootloader.kind, BootloaderKind::Grub2Bios);
    assert_eq!(l.bootloader.boot_disks, ["vdb", "vdc"]);
}

#[test]
fn luks2_holding_lvm() {
    let l = replay("luks2-lvm", &["/dev/vdb"]);
    assert_eq!(l.luks.len(), 1);
    let lk = &l.luks[0];
    assert_eq!((lk.version, lk.device.as_str(), lk.name.as_str()), (2, "vdb3", "vdb3_crypt"));
    assert_eq!(lk.cipher, "aes-xts-plain64");
    assert_eq!(lk.key_size, 512);
    assert_eq!(lk.pbkdf.as_deref(), Some("argon2id"));
    assert_eq!(lk.label.as_deref(), Some("cryptroot"));
    assert!(lk.offset.is_some());
    // The PV sits on the LUKS mapping; the VG holds root, home and swap.
    assert_eq!(l.lvm_pvs.len(), 1);
    assert_eq!(l.lvm_pvs[0].device, "vdb3_crypt");
    assert_eq!(l.lvm_vgs[0].name, "vg0");
    let lvs: Vec<&str> = l.lvm_lvs.iter().map(|v| v.name.as_str()).collect();
    for want in ["root", "home", "swap"] {
        assert!(lvs.contains(&want), "LV {want} missing: {lvs:?}");
    }
    assert_eq!(l.filesystem_on("vg0/root").unwrap().fstype, FsType::Xfs);
    assert_eq!(l.filesystem_on("vg0/home").unwrap().fstype, FsType::Ext4);
    assert!(l.swaps.iter().any(|s| s.device == "vg0/swap" && s.uuid.is_some()));
    assert!(l.mounts.iter().any(|m| m.path == "/boot" && m.device == "vdb2"));
    // No secret of any kind.
    let text = l.to_toml().unwrap();
    assert!(!text.contains("fixture-key"));
    assert_eq!(l.bootloader.kind, BootloaderKind::Grub2Bios);
}

#[test]
fn luks1_with_ext4() {
    let l = replay("luks1", &["/dev/vdb"]);
    let lk = &l.luks[0];
    assert_eq!(lk.version, 1);
    assert_eq!(lk.pbkdf.as_deref(), Some("pbkdf2"));
    assert_eq!(lk.hash.as_deref(), Some("sha256"));
    let fs = l.filesystem_on(&lk.name).unwrap();
    assert_eq!((fs.fstype, fs.label.as_deref()), (FsType::Ext4, Some("data")));
}

#[test]
fn lvm_spanning_two_pvs_with_a_striped_lv() {
    let l = replay("lvm-span", &["/dev/vdb", "/dev/vdc"]);
    assert_eq!(l.lvm_pvs.len(), 2);
    assert!(l.lvm_pvs.iter().all(|p| p.vg == "vgdata"));
    assert_eq!(l.lvm_vgs[0].extent_size, 8 << 20);
    let striped = l.lvm_lvs.iter().find(|v| v.name == "striped").unwrap();
    assert_eq!((striped.segment_type.as_str(), striped.stripes, striped.stripe_size), ("striped", 2, Some(65536)));
    assert_eq!(striped.size, 512 << 20);
    let linear = l.lvm_lvs.iter().find(|v| v.name == "linear").unwrap();
    assert_eq!((linear.segment_type.as_str(), linear.stripes), ("linear", 1));
    // The linear LV spans both PVs: larger than either.
    assert!(linear.size > l.lvm_pvs[0].size.unwrap());
    let xfs = l.filesystem_on("vgdata/linear").unwrap().xfs.clone().unwrap();
    assert!(xfs.crc && xfs.reflink && xfs.finobt);
}

#[test]
fn uefi_esp_and_boot_entry() {
    let l = replay("uefi", &["/dev/vdb"]);
    assert_eq!(l.host.firmware, Firmware::Uefi);
    assert_eq!(l.bootloader.kind, BootloaderKind::Grub2Efi);
    assert_eq!(l.bootloader.esp.as_deref(), Some("vdb1"));
    // The guest booted from its own disk: the loader comes from the entry on the captured ESP.
    assert_eq!(l.bootloader.loader.as_deref(), Some(r"\EFI\debian\grubx64.efi"));
    let esp = l.partitions.iter().find(|p| p.name == "vdb1").unwrap();
    let entry = l.bootloader.efi_entries.iter().find(|e| e.label == "debian").unwrap();
    assert_eq!(entry.partuuid.as_deref().map(str::to_uppercase), esp.uuid.clone());
    let fat = l.filesystem_on("vdb1").unwrap();
    assert_eq!(fat.fstype, FsType::Vfat);
    assert_eq!(fat.label.as_deref(), Some("ESP"));
    assert_eq!(fat.vfat.as_ref().unwrap().fat_size, 32);
    assert!(l.mounts.iter().any(|m| m.path == "/boot/efi" && m.device == "vdb1"));
}

#[test]
fn btrfs_subvolumes_and_default() {
    let l = replay("btrfs", &["/dev/vdb"]);
    let fs = &l.filesystems[0];
    assert_eq!((fs.fstype, fs.label.as_deref()), (FsType::Btrfs, Some("broot")));
    let b = fs.btrfs.as_ref().unwrap();
    let paths: Vec<&str> = b.subvolumes.iter().map(|s| s.path.as_str()).collect();
    for want in ["@", "@home", "@snapshots", "@/var/lib/machines", "@snapshots/1"] {
        assert!(paths.contains(&want), "subvolume {want} missing: {paths:?}");
    }
    assert_eq!(b.default_subvolume.as_deref(), Some("@"));
    let snap = b.subvolumes.iter().find(|s| s.path == "@snapshots/1").unwrap();
    assert!(snap.readonly && snap.snapshot);
    assert!(b.subvolumes.iter().all(|s| s.id >= 256));
    let root = l.mounts.iter().find(|m| m.path == "/").unwrap();
    assert_eq!(root.subvol.as_deref(), Some("@"));
    assert!(root.options.contains("compress=zstd"));
    assert!(l.mounts.iter().any(|m| m.path == "/home" && m.subvol.as_deref() == Some("@home")));
}

#[test]
fn nvme_and_sata_with_mbr_logical_partitions() {
    let l = replay("nvme-sata", &["/dev/nvme0n1", "/dev/sda"]);
    let nvme = l.disks.iter().find(|d| d.name == "nvme0n1").unwrap();
    assert_eq!(nvme.table, Some(TableType::Gpt));
    assert!(nvme.serial.is_some() && !nvme.by_id.is_empty());
    assert!(l.partitions.iter().any(|p| p.name == "nvme0n1p1" && p.disk == "nvme0n1"));
    let sda = l.disks.iter().find(|d| d.name == "sda").unwrap();
    assert_eq!(sda.table, Some(TableType::Msdos));
    assert!(sda.mbr_signature.is_some());
    let p1 = l.partitions.iter().find(|p| p.name == "sda1").unwrap();
    assert!(p1.bootable);
    assert_eq!(p1.kind, PartitionKind::Primary);
    assert_eq!(l.partitions.iter().find(|p| p.name == "sda2").unwrap().kind, PartitionKind::Extended);
    assert_eq!(l.partitions.iter().find(|p| p.name == "sda5").unwrap().kind, PartitionKind::Logical);
    // fstab source forms are kept as written.
    let src = |path: &str| l.mounts.iter().find(|m| m.path == path).unwrap().source.clone();
    assert!(src("/").starts_with("UUID="));
    assert!(l.mounts.iter().any(|m| m.source.starts_with("LABEL=")));
    assert!(l.mounts.iter().any(|m| m.source.starts_with("/dev/")));
    // Swap not active is still recorded.
    assert!(l.swaps.iter().any(|s| s.device == "nvme0n1p2"));
}

/// mkbackup leaves the disk its usb:// backup goes to out of the layout; that
/// is expected, so unlike capture.exclude-disks it is no capture warning.
#[test]
fn the_backup_disk_is_left_out_without_a_warning() {
    let fx = Fixture::load(&dir().join("nvme-sata.json")).unwrap();
    let capture_with = |exclude: &[&str], backup: &[&str]| {
        let strings = |v: &[&str]| v.iter().map(|d| d.to_string()).collect();
        let opts = CaptureOptions { root: "/mnt/target".into(), exclude_disks: strings(exclude), backup_disks: strings(backup), ..Default::default() };
        capture(&fx, &opts).unwrap()
    };
    let cap = capture_with(&["vda"], &["/dev/sda"]);
    assert_eq!(cap.layout.disks.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["nvme0n1"]);
    assert!(!cap.warnings.iter().any(|w| w.contains("sda")), "{:?}", cap.warnings);
    let cap = capture_with(&["vda", "sda"], &[]);
    assert_eq!(cap.layout.disks.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["nvme0n1"]);
    assert!(cap.warnings.iter().any(|w| w.contains("disk sda is excluded by the configuration")), "{:?}", cap.warnings);
}
