//! Planning and disk mapping as data, on the example descriptors with made-up
//! inventories: nothing here touches a device.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rescue::inventory::{Inventory, PresentDisk};
use rescue::layout::Layout;
use rescue::plan::{self, MatchReason, Operation, PlanOptions, ResizePolicy};
use rescue::util::human_bytes as human;

const GIB: u64 = 1 << 30;

fn layout(name: &str) -> Layout {
    Layout::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts").join(name)).unwrap()
}

fn disk(name: &str, size: u64) -> PresentDisk {
    PresentDisk { name: name.into(), path: PathBuf::from(format!("/dev/{name}")), size, logical_sector_size: 512, ..Default::default() }
}

fn opts() -> PlanOptions {
    PlanOptions { target_root: rescue::target::TargetRoot::new("/mnt/local").unwrap(), ..Default::default() }
}

fn parts(p: &plan::Plan) -> BTreeMap<String, (PathBuf, u64, u64)> {
    p.operations
        .iter()
        .filter_map(|o| match o {
            Operation::CreatePartition { block, device, partition, .. } => Some((block.clone(), (device.clone(), partition.start, partition.size))),
            _ => None,
        })
        .collect()
}

fn err(l: &Layout, inv: &Inventory, o: &PlanOptions) -> String {
    let e = plan::build(l, inv, o).unwrap_err();
    assert_eq!(rescue::error::exit_code_for(&e), 2, "must be an input error: {e:#}");
    format!("{e:#}")
}

#[test]
fn same_disk_by_serial_keeps_every_partition() {
    let l = layout("bios-gpt-ext4.toml");
    let mut d = disk("vda", l.disks[0].size);
    d.serial = Some("web1-root".into());
    let inv = Inventory { disks: vec![d] };
    let p = plan::build(&l, &inv, &opts()).unwrap();
    assert_eq!(p.mapping[0].reason, MatchReason::Serial);
    assert!(p.resized.is_empty(), "{:?}", p.resized);
    let got = parts(&p);
    for rp in &l.partitions {
        assert_eq!(got[&rp.name], (PathBuf::from(format!("/dev/{}", rp.name)), rp.start, rp.size));
    }
    // The order of the kinds of operation.
    let kinds: Vec<String> = p.operations.iter().map(|o| serde_json::to_value(o).unwrap()["op"].as_str().unwrap().to_string()).collect();
    let first = |k: &str| kinds.iter().position(|x| x == k).unwrap_or_else(|| panic!("no {k} in {kinds:?}"));
    assert!(first("wipe") < first("create-partition-table"));
    assert!(first("create-partition-table") < first("create-partition"));
    assert!(first("create-partition") < first("settle"));
    assert!(first("settle") < first("make-filesystem"));
    assert!(first("make-filesystem") < first("mount"));
    assert!(kinds.contains(&"make-swap".to_string()));
    // Human and JSON renderings.
    let text = p.to_string();
    assert!(text.contains("create GPT partition table on /dev/vda, disk GUID 6A9D4E2B"), "{text}");
    assert!(text.contains("mount /dev/vda2 (ext4) on /mnt/local for / with errors=remount-ro"), "{text}");
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["operations"][0]["op"], "wipe");
}

#[test]
fn renamed_disks_follow_their_wwn() {
    let l = layout("md-raid1-ext4.toml");
    // Same disks, now called vdc and vdd, and listed in the other order.
    let mut a = disk("vdc", l.disks[1].size);
    a.wwn = Some("0x5000C500A1B2C3D5".into());
    let mut b = disk("vdd", l.disks[0].size);
    b.wwn = Some("0x5000c500a1b2c3d4".into());
    let inv = Inventory { disks: vec![a, b] };
    let p = plan::build(&l, &inv, &opts()).unwrap();
    assert_eq!(p.mapping[0].recorded, "sda");
    assert_eq!(p.mapping[0].device, Path::new("/dev/vdd"));
    assert_eq!(p.mapping[1].device, Path::new("/dev/vdc"));
    assert!(p.mapping.iter().all(|m| m.reason == MatchReason::Wwn));
    let raid = p
        .operations
        .iter()
        .find_map(|o| match o {
            Operation::CreateRaid { block, members, uuid, .. } if block == "md0" => Some((members.clone(), uuid.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(raid.0, vec![Some(PathBuf::from("/dev/vdd2")), Some(PathBuf::from("/dev/vdc2"))]);
    assert_eq!(raid.1, "3f2e1d0c-4b5a-6978-8796-a5b4c3d2e1f0");
}

#[test]
fn explicit_map_and_nvme_partition_names() {
    let l = layout("uefi-lvm-xfs.toml");
    let inv = Inventory { disks: vec![disk("nvme1n1", l.disks[0].size), disk("sda", l.disks[0].size)] };
    let mut o = opts();
    o.map.insert("nvme0n1".into(), "/dev/nvme1n1".into());
    let p = plan::build(&l, &inv, &o).unwrap();
    assert_eq!(p.mapping[0].reason, MatchReason::Explicit);
    let got = parts(&p);
    assert_eq!(got["nvme0n1p3"].0, Path::new("/dev/nvme1n1p3"));
    assert_eq!(p.devices["vg0/root"], Path::new("/dev/mapper/vg0-root"));
    // The plan never touches the unmapped disk.
    let text = serde_json::to_string(&p).unwrap();
    assert!(!text.contains("/dev/sda"), "{text}");
    assert!(p
        .operations
        .iter()
        .any(|o| matches!(o, Operation::CreateLv { name, uuid, .. } if name == "home" && uuid == "Mn1bVc-2XzL-3kJh-4GfD-5sAp-6OiU-7yTrEw")));
}

#[test]
fn larger_disk_grows_the_last_resizable_partition_and_moves_swap() {
    let l = layout("bios-gpt-ext4.toml");
    let inv = Inventory { disks: vec![disk("sdb", 32 * GIB)] };
    let p = plan::build(&l, &inv, &opts()).unwrap();
    assert_eq!(p.mapping[0].reason, MatchReason::OnlyFitting);
    let got = parts(&p);
    let rec = |n: &str| l.partition(n).unwrap().clone();
    // BIOS boot unchanged, swap keeps its size at the end, root takes 12 GiB more.
    assert_eq!((got["vda1"].1, got["vda1"].2), (rec("vda1").start, rec("vda1").size));
    assert_eq!(got["vda3"].2, rec("vda3").size);
    assert_eq!(got["vda2"].2, rec("vda2").size + 12 * GIB / 512);
    assert_eq!(got["vda3"].1, got["vda2"].1 + got["vda2"].2 + (rec("vda3").start - rec("vda2").start - rec("vda2").size));
    assert!(got["vda3"].1 + got["vda3"].2 <= 32 * GIB / 512 - 33);
    assert_eq!(got["vda3"].1 % 2048, 0, "moved partitions stay aligned");
    assert!(p.resized.iter().any(|r| r.block == "vda2"));
    assert_eq!(got["vda1"].0, Path::new("/dev/sdb1"));
}

#[test]
fn smaller_disk_shrinks_root_and_checks_used_bytes() {
    let l = layout("bios-gpt-ext4.toml");
    let inv = Inventory { disks: vec![disk("sdb", 8 * GIB)] };
    let p = plan::build(&l, &inv, &opts()).unwrap();
    let got = parts(&p);
    assert_eq!(got["vda2"].2, l.partition("vda2").unwrap().size - 12 * GIB / 512);
    let fs = p
        .operations
        .iter()
        .find_map(|o| match o {
            Operation::MakeFilesystem { device_size, block, .. } if block == "vda2" => Some(*device_size),
            _ => None,
        })
        .unwrap();
    assert_eq!(fs, got["vda2"].2 * 512);
}

#[test]
fn free_space_at_the_end_of_the_recorded_disk_is_given_up_before_any_partition_shrinks() {
    let mut l = layout("bios-gpt-ext4.toml");
    // 4 GiB never partitioned after the swap partition.
    l.disks[0].size += 4 * GIB;
    let mut o = opts();
    o.map.insert("vda".into(), "sdb".into());
    // 2 GiB smaller: the free space absorbs it, every partition is as recorded.
    let got = parts(&plan::build(&l, &Inventory { disks: vec![disk("sdb", 22 * GIB)] }, &o).unwrap());
    for p in &l.partitions {
        assert_eq!((got[&p.name].1, got[&p.name].2), (p.start, p.size), "{}", p.name);
    }
    // 6 GiB smaller: root gives up only the 2 GiB the free space does not cover.
    let got = parts(&plan::build(&l, &Inventory { disks: vec![disk("sdb", 18 * GIB)] }, &o).unwrap());
    assert_eq!(got["vda2"].2, l.partition("vda2").unwrap().size - 2 * GIB / 512);
    assert_eq!(got["vda3"].2, l.partition("vda3").unwrap().size, "swap keeps its size");
}

#[test]
fn too_small_disk_is_refused_saying_what_is_missing() {
    let l = layout("bios-gpt-ext4.toml");
    // 1.5 GiB used on root, swap 2 GiB fixed: 3 GiB cannot hold it.
    let inv = Inventory { disks: vec![disk("sdb", 3 * GIB)] };
    let mut o = opts();
    o.map.insert("vda".into(), "sdb".into());
    let msg = err(&l, &inv, &o);
    assert!(msg.contains("too small"), "{msg}");
    assert!(msg.contains("missing"), "{msg}");
    assert!(msg.contains("nothing was written"), "{msg}");
    // The smallest disk that holds it, and what to do.
    let need = plan::smallest_fitting_disk(&l, &l.disks[0], 512, ResizePolicy::Last).unwrap();
    assert!(need > 3 * GIB && need < 4 * GIB, "{need}");
    assert!(plan::disk_fits(&l, &l.disks[0], &disk("sdb", need), ResizePolicy::Last));
    assert!(!plan::disk_fits(&l, &l.disks[0], &disk("sdb", need - (1 << 20)), ResizePolicy::Last));
    let hint = format!("recorded disk vda needs a disk of at least {} with its data; /dev/sdb has 3.0 GiB: {} missing", human(need), human(need - 3 * GIB));
    assert!(msg.contains(&hint) && msg.contains("--map vda=/dev/DISK"), "{hint:?} not in:\n{msg}");
    // 2 GiB cannot even hold the fixed partitions.
    let inv = Inventory { disks: vec![disk("sdb", 2 * GIB)] };
    let msg = err(&l, &inv, &o);
    assert!(msg.contains("does not fit") && msg.contains("partition vda2 would get no room at all"), "{msg}");
    assert!(msg.contains(&format!("/dev/sdb has 2.0 GiB: {} missing", human(need - 2 * GIB))), "{msg}");
    // Without a mapping, a too-small disk is no candidate at all.
    let msg = err(&l, &inv, &opts());
    assert!(msg.contains("has no target"), "{msg}");
}

#[test]
fn two_same_size_disks_are_ambiguous_and_listed() {
    let l = layout("btrfs-subvolumes.toml");
    let size = l.disks[0].size;
    let inv = Inventory { disks: vec![disk("vdb", size), disk("vdc", size)] };
    let problem = plan::map(&l, &inv, &opts()).unwrap_err();
    assert_eq!(problem.ambiguous.len(), 1);
    assert_eq!(problem.ambiguous[0].candidates, vec![PathBuf::from("/dev/vdb"), PathBuf::from("/dev/vdc")]);
    let msg = err(&l, &inv, &opts());
    assert!(msg.contains("/dev/vdb, /dev/vdc") && msg.contains("--map vda=DEVICE"), "{msg}");
    // Mapping one removes the ambiguity.
    let mut o = opts();
    o.map.insert("vda".into(), "vdc".into());
    assert!(plan::build(&l, &inv, &o).is_ok());
}

/// The members of a mirror are interchangeable: onto as many anonymous
/// same-size disks they go in name order, without a question (an unattended
/// recovery of a RAID1 server onto new disks must not stop here).
#[test]
fn mirrored_disks_onto_two_anonymous_same_size_disks_go_in_name_order() {
    let l = layout("md-raid1-ext4.toml");
    let size = l.disks[0].size;
    let inv = Inventory { disks: vec![disk("vdb", size), disk("vda", size)] };
    let m = plan::map(&l, &inv, &opts()).unwrap();
    let got: Vec<(&str, &str, MatchReason)> = m.iter().map(|a| (a.recorded.as_str(), a.name.as_str(), a.reason)).collect();
    assert_eq!(got, vec![("sda", "vda", MatchReason::Interchangeable), ("sdb", "vdb", MatchReason::Interchangeable)]);
    assert!(plan::build(&l, &inv, &opts()).is_ok());
    // Same names present (the same machine with new disks): each keeps its name.
    let inv = Inventory { disks: vec![disk("sdb", size), disk("sda", size)] };
    let m = plan::map(&l, &inv, &opts()).unwrap();
    assert!(m.iter().all(|a| a.recorded == a.name && a.reason == MatchReason::Interchangeable), "{m:?}");
}

#[test]
fn mirrored_disks_stay_ambiguous_with_a_third_same_size_disk() {
    let l = layout("md-raid1-ext4.toml");
    let size = l.disks[0].size;
    let inv = Inventory { disks: vec![disk("vda", size), disk("vdb", size), disk("vdc", size)] };
    let problem = plan::map(&l, &inv, &opts()).unwrap_err();
    assert_eq!(problem.ambiguous.len(), 2, "{problem:?}");
    assert_eq!(problem.ambiguous[0].candidates.len(), 3);
}

#[test]
fn same_size_disks_that_differ_stay_ambiguous() {
    let base = layout("md-raid1-ext4.toml");
    let size = base.disks[0].size;
    let inv = Inventory { disks: vec![disk("vda", size), disk("vdb", size)] };
    // Another partition type on one disk.
    let mut l = base.clone();
    l.partitions.iter_mut().find(|p| p.name == "sdb1").unwrap().type_id = "0FC63DAF-8483-4772-8E79-3D69D8477DE4".into();
    assert_eq!(plan::map(&l, &inv, &opts()).unwrap_err().ambiguous.len(), 2);
    // A partition outside the arrays holding a filesystem (data on one disk only).
    let mut l = base.clone();
    let mut fs = l.filesystems[0].clone();
    fs.device = "sdb1".into();
    l.filesystems.push(fs);
    assert_eq!(plan::map(&l, &inv, &opts()).unwrap_err().ambiguous.len(), 2);
    // Two disks without any RAID between them are not a mirror.
    let mut l = base;
    l.raids.clear();
    assert_eq!(plan::map(&l, &inv, &opts()).unwrap_err().ambiguous.len(), 2);
}

#[test]
fn missing_disk_is_reported() {
    let l = layout("md-raid1-ext4.toml");
    let mut a = disk("vdc", l.disks[0].size);
    a.serial = Some("QM00001".into());
    let inv = Inventory { disks: vec![a] };
    let problem = plan::map(&l, &inv, &opts()).unwrap_err();
    assert_eq!(problem.missing.len(), 1);
    assert_eq!(problem.missing[0].0, "sdb");
    assert!(problem.to_string().contains("no unused disk is present"), "{problem}");
}

#[test]
fn busy_and_virtual_disks_are_never_chosen_and_mapping_to_busy_is_refused() {
    let l = layout("btrfs-subvolumes.toml");
    let mut root = disk("vda", l.disks[0].size);
    root.busy = vec!["vda1 holds the running system (mounted at /)".into()];
    let mut lp = disk("loop0", l.disks[0].size);
    lp.virtual_disk = true;
    let inv = Inventory { disks: vec![root, lp] };
    let problem = plan::map(&l, &inv, &opts()).unwrap_err();
    assert_eq!(problem.missing.len(), 1, "{problem:?}");
    let mut o = opts();
    o.map.insert("vda".into(), "/dev/vda".into());
    let msg = err(&l, &inv, &o);
    assert!(msg.contains("refusing to overwrite") && msg.contains("running system"), "{msg}");
    // A virtual disk is fine when mapped explicitly.
    o.map.insert("vda".into(), "/dev/loop0".into());
    let p = plan::build(&l, &inv, &o).unwrap();
    assert_eq!(parts(&p)["vda2"].0, Path::new("/dev/loop0p2"));
}

#[test]
fn btrfs_subvolumes_default_and_mount_order() {
    let l = layout("btrfs-subvolumes.toml");
    let inv = Inventory { disks: vec![disk("vda", l.disks[0].size)] };
    let p = plan::build(&l, &inv, &opts()).unwrap();
    let subs: Vec<String> = p
        .operations
        .iter()
        .filter_map(|o| match o {
            Operation::CreateSubvolume { path, .. } => Some(path.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(subs, ["@", "@home", "@var_log", "@/srv/www"]);
    assert!(p.operations.iter().any(|o| matches!(o, Operation::SetDefaultSubvolume { path, .. } if path == "@")));
    let mounts: Vec<(String, Option<String>, String)> = p
        .operations
        .iter()
        .filter_map(|o| match o {
            Operation::Mount { path, subvol, options, .. } => Some((path.clone(), subvol.clone(), options.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(mounts[0], ("/".into(), Some("@".into()), "noatime,compress=zstd".into()));
    assert_eq!(mounts.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(), ["/", "/home", "/var/log"]);
}

#[test]
fn mbr_logical_partitions_grow_inside_a_growing_extended() {
    let l = layout("mbr-logical.toml");
    let inv = Inventory { disks: vec![disk("sdb", 16 * GIB)] };
    let p = plan::build(&l, &inv, &opts()).unwrap();
    let got = parts(&p);
    let rec = |n: &str| l.partition(n).unwrap().clone();
    assert_eq!(got["sda1"].2, rec("sda1").size);
    assert_eq!(got["sda5"].2, rec("sda5").size, "swap keeps its size");
    assert_eq!(got["sda6"].2, rec("sda6").size);
    assert_eq!(got["sda7"].2, rec("sda7").size + 8 * GIB / 512, "the last partition takes the difference");
    assert_eq!(got["sda2"].1, rec("sda2").start);
    assert_eq!(got["sda2"].1 + got["sda2"].2, 16 * GIB / 512, "the extended partition ends where its last logical does");
    // Extended is created before the logical partitions.
    let order: Vec<&str> = p
        .operations
        .iter()
        .filter_map(|o| match o {
            Operation::CreatePartition { block, .. } => Some(block.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["sda1", "sda2", "sda5", "sda6", "sda7"]);
}

#[test]
fn proportional_policy_scales_every_resizable_partition() {
    let l = layout("mbr-logical.toml");
    let inv = Inventory { disks: vec![disk("sdb", 16 * GIB)] };
    let mut o = opts();
    o.resize = ResizePolicy::Proportional;
    let p = plan::build(&l, &inv, &o).unwrap();
    let got = parts(&p);
    let rec = |n: &str| l.partition(n).unwrap().clone();
    assert_eq!(got["sda1"].2, rec("sda1").size, "/boot keeps its size");
    assert_eq!(got["sda5"].2, rec("sda5").size, "swap keeps its size");
    // root and /var share the 8 GiB in proportion to their sizes (5 GiB : 1.5 GiB).
    let grow6 = got["sda6"].2 - rec("sda6").size;
    let grow7 = got["sda7"].2 - rec("sda7").size;
    let ratio = grow6 as f64 / grow7 as f64;
    let want = rec("sda6").size as f64 / rec("sda7").size as f64;
    assert!((ratio - want).abs() < 0.01, "{ratio} vs {want}");
    assert_eq!(got["sda7"].1 + got["sda7"].2, 16 * GIB / 512);
}

#[test]
fn lvm_on_a_larger_disk_grows_the_last_non_swap_volume() {
    let l = layout("uefi-lvm-xfs.toml");
    let inv = Inventory { disks: vec![disk("nvme0n1", l.disks[0].size + 10 * GIB)] };
    let p = plan::build(&l, &inv, &opts()).unwrap();
    let lvs: BTreeMap<String, u64> = p
        .operations
        .iter()
        .filter_map(|o| match o {
            Operation::CreateLv { name, size, .. } => Some((name.clone(), *size)),
            _ => None,
        })
        .collect();
    assert_eq!(lvs["root"], 20 * GIB);
    assert_eq!(lvs["swap"], 4 * GIB);
    assert_eq!(lvs["home"], 30 * GIB);
    // ESP and /boot keep their sizes.
    let got = parts(&p);
    assert_eq!(got["nvme0n1p1"].2, 1048576);
    assert_eq!(got["nvme0n1p2"].2, 2097152);
}

#[test]
fn luks_lvm_plan_opens_before_the_volume_group() {
    let l = layout("luks2-lvm.toml");
    let inv = Inventory { disks: vec![disk("vda", l.disks[0].size)] };
    let p = plan::build(&l, &inv, &opts()).unwrap();
    let idx = |f: &dyn Fn(&Operation) -> bool| p.operations.iter().position(f).unwrap();
    let open = idx(&|o| matches!(o, Operation::OpenLuks { .. }));
    let pv = idx(&|o| matches!(o, Operation::CreatePv { device, .. } if device == Path::new("/dev/mapper/cryptroot")));
    let act = idx(&|o| matches!(o, Operation::ActivateVg { .. }));
    let mkfs = idx(&|o| matches!(o, Operation::MakeFilesystem { block, .. } if block == "vgcrypt/root"));
    assert!(open < pv && pv < act && act < mkfs);
}

#[test]
fn every_example_plans_onto_its_own_disks() {
    for f in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts")).unwrap() {
        let path = f.unwrap().path();
        let l = Layout::load(&path).unwrap();
        let inv = Inventory { disks: l.disks.iter().map(|d| disk(&d.name, d.size)).collect() };
        let mut o = opts();
        for d in &l.disks {
            o.map.insert(d.name.clone(), d.name.clone());
        }
        let p = plan::build(&l, &inv, &o).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        assert!(p.resized.is_empty(), "{}: {:?}", path.display(), p.resized);
        assert_eq!(p.operations.iter().filter(|o| matches!(o, Operation::MakeFilesystem { .. })).count(), l.filesystems.len());
    }
}

/// A synthetic descriptor: 20 disks; 10 carry 10 ext4 partitions each, 10
/// carry one PV each of a VG holding 100 xfs LVs: 200 volumes, all mounted.
fn big_layout() -> Layout {
    use std::fmt::Write;
    let mut t = String::from("version = 1\n[host]\nhostname = \"big\"\nfirmware = \"bios\"\n");
    let gib = 1u64 << 30;
    for d in 0..20 {
        let _ = write!(t, "[[disk]]\nname = \"sd{d}\"\npath = \"/dev/sd{d}\"\nserial = \"SER{d}\"\nsize = {}\ntable = \"gpt\"\n", 100 * gib);
    }
    for d in 0..10 {
        for p in 1..=10u64 {
            let start = 2048 + (p - 1) * 8 * gib / 512;
            let _ = write!(
                t,
                "[[partition]]\nname = \"sd{d}p{p}\"\ndisk = \"sd{d}\"\nnumber = {p}\nstart = {start}\nsize = {}\ntype = \"0FC63DAF-8483-4772-8E79-3D69D8477DE4\"\n",
                8 * gib / 512
            );
            let _ =
                write!(t, "[[filesystem]]\ndevice = \"sd{d}p{p}\"\ntype = \"ext4\"\nuuid = \"00000000-0000-4000-8000-{d:06}{p:06}\"\nused-bytes = 1000000\n");
            let _ = write!(t, "[[mount]]\npath = \"/data/{d}/{p}\"\ndevice = \"sd{d}p{p}\"\nsource = \"UUID=00000000-0000-4000-8000-{d:06}{p:06}\"\n");
        }
    }
    for d in 10..20 {
        let _ = write!(
            t,
            "[[partition]]\nname = \"sd{d}p1\"\ndisk = \"sd{d}\"\nnumber = 1\nstart = 2048\nsize = {}\ntype = \"E6D6D379-F507-44C2-A23C-238F2A3DF928\"\n",
            100 * gib / 512 - 2048 - 34
        );
        let _ = write!(t, "[[lvm-pv]]\ndevice = \"sd{d}p1\"\nuuid = \"PV{d}\"\nvg = \"vg\"\n");
    }
    let _ = write!(t, "[[lvm-vg]]\nname = \"vg\"\nuuid = \"VG\"\nextent-size = 4194304\n");
    for v in 0..100 {
        let _ = write!(t, "[[lvm-lv]]\nvg = \"vg\"\nname = \"lv{v}\"\nuuid = \"LV{v}\"\nsize = {}\n", 9 * gib);
        let _ = write!(t, "[[filesystem]]\ndevice = \"vg/lv{v}\"\ntype = \"xfs\"\nuuid = \"11111111-0000-4000-8000-{v:012}\"\nused-bytes = 1000000\n");
        let _ = write!(t, "[[mount]]\npath = \"/lv/{v}\"\ndevice = \"vg/lv{v}\"\nsource = \"/dev/mapper/vg-lv{v}\"\n");
    }
    Layout::from_toml(&t).unwrap()
}

/// Benchmark: planning 20 disks and 200 volumes (onto larger disks, so every
/// disk and the VG are resized) takes milliseconds. Prints the time.
#[test]
fn bench_plan_20_disks_200_volumes() {
    let l = big_layout();
    assert_eq!(l.filesystems.len(), 200);
    let inv = Inventory {
        disks: (0..20)
            .map(|d| {
                let mut p = disk(&format!("vd{d}"), 120 * GIB);
                p.serial = Some(format!("SER{d}"));
                p
            })
            .collect(),
    };
    let runs = 20;
    let start = std::time::Instant::now();
    let mut ops = 0;
    for _ in 0..runs {
        let p = plan::build(&l, &inv, &opts()).unwrap();
        ops = p.operations.len();
    }
    let per = start.elapsed() / runs;
    println!("planning 20 disks, 200 volumes ({ops} operations): {per:?} per plan");
    assert!(per < std::time::Duration::from_secs(1), "planning took {per:?}");
}

#[test]
fn a_4k_sector_target_gets_converted_geometry_and_sector_size() {
    let l = layout("luks2-lvm.toml");
    let mut d = disk("sdb", l.disks[0].size);
    d.logical_sector_size = 4096;
    let inv = Inventory { disks: vec![d] };
    let mut o = opts();
    o.map.insert("vda".into(), "sdb".into());
    let p = plan::build(&l, &inv, &o).unwrap();
    let got = parts(&p);
    // Same bytes, counted in 4096-byte sectors.
    assert_eq!((got["vda1"].1, got["vda1"].2), (256, 256));
    assert_eq!((got["vda2"].1, got["vda2"].2), (512, 131072));
    // The last partition ends inside the smaller 4Kn backup area.
    assert!(got["vda3"].1 + got["vda3"].2 <= l.disks[0].size / 4096 - 5);
    let boot = p
        .operations
        .iter()
        .find_map(|o| match o {
            Operation::MakeFilesystem { block, sector_size, same_size, .. } if block == "vda2" => Some((*sector_size, *same_size)),
            _ => None,
        })
        .unwrap();
    assert_eq!(boot, (4096, true));
}

#[test]
fn recover_config_keys() {
    let c = rescue::config::Config::from_toml(
        "[recover]\nresize = \"proportional\"\nunattended-proceed = true\nluks-keys = { cryptroot = \"/etc/rescue/k\" }\n[mapping]\nsda = \"/dev/vdb\"\n",
    )
    .unwrap();
    assert_eq!(c.recover.resize, ResizePolicy::Proportional);
    assert!(c.recover.unattended_proceed);
    assert_eq!(c.recover.luks_keys["cryptroot"], rescue::config::LuksKeySource::File(PathBuf::from("/etc/rescue/k")));
    assert_eq!(rescue::config::Config::default().recover.resize, ResizePolicy::Last);
    let e = rescue::config::Config::from_toml("[recover]\nresize = \"biggest\"\n").unwrap_err();
    assert_eq!(rescue::error::exit_code_for(&e), 2);
}

#[test]
fn striped_lvs_are_planned_first_with_their_stripes_and_other_types_refused() {
    // The descriptor captured in the VM: a 2-stripe LV and a linear one spanning both PVs.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/probe/lvm-span.toml");
    let mut l = Layout::load(&path).unwrap();
    let inv = Inventory { disks: l.disks.iter().map(|d| disk(&d.name, d.size)).collect() };
    let mut o = opts();
    for d in &l.disks {
        o.map.insert(d.name.clone(), d.name.clone());
    }
    // The VG is full (`lvcreate -l 100%FREE`): on disks of the recorded size no extent may be
    // missing (the recorded pv_size is already net of LVM's header).
    let p = plan::build(&l, &inv, &o).unwrap();
    assert!(p.resized.is_empty(), "{:?}", p.resized);
    let lvs: Vec<(String, u32, u64)> = p
        .operations
        .iter()
        .filter_map(|o| match o {
            Operation::CreateLv { name, stripes, stripe_size, .. } => Some((name.clone(), *stripes, *stripe_size)),
            _ => None,
        })
        .collect();
    // lvs lists "linear" first; the striped one must be allocated before it takes the free runs.
    assert_eq!(lvs, vec![("striped".into(), 2, 65536), ("linear".into(), 1, 65536)]);
    let shown = p.operations.iter().map(|o| o.to_string()).collect::<Vec<_>>().join("\n");
    assert!(shown.contains("vgdata/striped") && shown.contains("2 stripes of 64.0 KiB"), "{shown}");

    let striped = l.lvm_lvs.iter().position(|v| v.name == "striped").unwrap();
    // A stripe size LVM would refuse is an input error before any disk is touched.
    l.lvm_lvs[striped].stripe_size = Some(96 << 10);
    assert!(err(&l, &inv, &o).contains("stripe size 98304 bytes is not a power of two between 4 KiB and the extent size"));
    l.lvm_lvs[striped].stripe_size = Some(16 << 20);
    assert!(err(&l, &inv, &o).contains("stripe size 16777216 bytes"));
    l.lvm_lvs[striped].stripe_size = Some(64 << 10);
    l.lvm_lvs[striped].stripes = 3;
    assert!(err(&l, &inv, &o).contains("vgdata/striped has 3 stripes but its volume group has 2 physical volume(s)"));
    l.lvm_lvs[striped].segment_type = "thin-pool".into();
    assert!(err(&l, &inv, &o).contains("segment type thin-pool; this build recreates linear and striped volumes only"));
}

const MIB: u64 = 1 << 20;

/// The UEFI example with a 200 MiB FAT32 ESP (the partitions after it moved up to follow it).
fn uefi_with_200_mib_esp() -> Layout {
    let mut l = layout("uefi-lvm-xfs.toml");
    let gap = 1_048_576 - 409_600;
    l.partitions[0].size = 409_600;
    l.partitions[1].start -= gap;
    l.partitions[2].start -= gap;
    l.partitions[2].size += gap;
    l.filesystems[0].size = Some(200 * MIB);
    l
}

fn fat_of(p: &plan::Plan, block: &str) -> plan::fat::FatFormat {
    p.operations
        .iter()
        .find_map(|o| match o {
            Operation::MakeFilesystem { block: b, fat, .. } if b == block => *fat,
            _ => None,
        })
        .unwrap_or_else(|| panic!("no vfat on {block}"))
}

fn on_sectors(l: &Layout, lss: u64, o: &PlanOptions) -> plan::Plan {
    on_disk(l, l.disks[0].size, lss, o)
}

fn on_disk(l: &Layout, size: u64, lss: u64, o: &PlanOptions) -> plan::Plan {
    let mut d = disk("sdb", size);
    d.logical_sector_size = lss;
    let mut o = o.clone();
    o.map.insert(l.disks[0].name.clone(), "sdb".into());
    plan::build(l, &Inventory { disks: vec![d] }, &o).unwrap()
}

#[test]
fn a_fat32_esp_too_small_for_4k_sectors_grows_to_260_mib() {
    let l = uefi_with_200_mib_esp();
    // On 512-byte sectors nothing changes: FAT32 of 512-byte clusters.
    let p = on_sectors(&l, 512, &opts());
    assert!(p.notes.is_empty() && p.resized.is_empty(), "{:?} {:?}", p.notes, p.resized);
    let f = fat_of(&p, "nvme0n1p1");
    assert_eq!((f.fat_size, f.sector_size, f.sectors_per_cluster), (32, 512, 1), "{f}");

    // On 4Kn the ESP grows; the LVM partition after it gives the room.
    let p = on_sectors(&l, 4096, &opts());
    let got = parts(&p);
    assert_eq!((got["nvme0n1p1"].1, got["nvme0n1p1"].2), (256, 260 * MIB / 4096));
    assert_eq!(got["nvme0n1p2"].1, 256 + 260 * MIB / 4096, "the next partition follows, aligned");
    let f = fat_of(&p, "nvme0n1p1");
    assert_eq!((f.fat_size, f.sector_size, f.sectors_per_cluster), (32, 4096, 1), "{f}");
    assert!(f.clusters >= plan::fat::MIN_FAT32_CLUSTERS, "{f}");
    let notes = p.notes.join("\n");
    assert!(notes.contains("the ESP nvme0n1p1 grows from 200.0 MiB to 260.0 MiB") && notes.contains("51,068"), "{notes}");
    assert!(p.to_string().contains("Changes from the recorded system:"), "{p}");
    assert!(p.resized.iter().any(|r| r.block == "nvme0n1p1" && r.new_size == 260 * MIB), "{:?}", p.resized);
}

#[test]
fn an_esp_that_cannot_grow_gets_the_fat_type_its_clusters_imply() {
    let mut l = uefi_with_200_mib_esp();
    // Nothing may give room: the LVM partition keeps its size, and the disk has 1 MiB to spare.
    l.partitions[2].fixed = Some(true);
    let p = on_disk(&l, l.disks[0].size + MIB, 4096, &opts());
    let got = parts(&p);
    assert_eq!(got["nvme0n1p1"].2, 200 * MIB / 4096, "the ESP keeps its size");
    let f = fat_of(&p, "nvme0n1p1");
    assert_eq!((f.fat_size, f.sector_size, f.sectors_per_cluster, f.clusters), (16, 4096, 1, 51_145), "{f}");
    let notes = p.notes.join("\n");
    assert!(notes.contains("growing the ESP nvme0n1p1 to 260.0 MiB does not fit, so it keeps its size"), "{notes}");
    assert!(notes.contains("is made as FAT16 with 51,145 clusters of 4.0 KiB instead of the recorded FAT32"), "{notes}");
    assert!(p.to_string().contains("as FAT16 with 51,145 clusters"), "{p}");
}

#[test]
fn luks_and_the_filesystems_on_it_get_the_4k_target_sector_size() {
    let l = layout("luks2-lvm.toml");
    assert_eq!(l.luks[0].sector_size, Some(512));
    let p = on_sectors(&l, 4096, &opts());
    let luks = p.operations.iter().find_map(|o| match o {
        Operation::CreateLuks { sector_size, .. } => Some(*sector_size),
        _ => None,
    });
    assert_eq!(luks, Some(Some(4096)), "LUKS2 encryption sectors at least the disk's");
    assert!(p.notes.iter().any(|n| n.contains("LUKS cryptroot gets 4096-byte encryption sectors (recorded: 512 bytes)")), "{:?}", p.notes);
    for o in &p.operations {
        if let Operation::MakeFilesystem { block, sector_size, .. } = o {
            assert_eq!(*sector_size, 4096, "{block}");
        }
    }
    // A LUKS1 header of 2052 sectors (1026 KiB, `--align-payload`) would put the data inside a 4 KiB sector.
    let mut l1 = l.clone();
    l1.luks[0].version = 1;
    l1.luks[0].sector_size = None;
    l1.luks[0].offset = Some(2052);
    let p = on_sectors(&l1, 4096, &opts());
    assert!(p.operations.iter().any(|o| matches!(o, Operation::CreateLuks { offset: Some(2056), sector_size: None, .. })), "{p}");
    assert!(p.notes.iter().any(|n| n.contains("data area moves from 512-byte sector 2052 to 2056")), "{:?}", p.notes);
    // On 512-byte sectors the recorded 512 stays.
    let p = on_sectors(&l, 512, &opts());
    assert!(p.operations.iter().any(|o| matches!(o, Operation::CreateLuks { sector_size: Some(512), .. })));
    assert!(p.notes.is_empty(), "{:?}", p.notes);
    // A 4Kn source's 4096-byte encryption sectors stay 4096 on 512e, and so do the
    // filesystems' on the mapping (the LUKS device has 4096-byte sectors).
    let mut l4 = l.clone();
    l4.luks[0].sector_size = Some(4096);
    let p = on_sectors(&l4, 512, &opts());
    assert!(p.operations.iter().any(|o| matches!(o, Operation::CreateLuks { sector_size: Some(4096), .. })));
    let root = p.operations.iter().find_map(|o| match o {
        Operation::MakeFilesystem { block, sector_size, .. } if block.starts_with("vg") && block.ends_with("root") => Some(*sector_size),
        _ => None,
    });
    assert_eq!(root, Some(4096));
}

#[test]
fn sector_conversion_rounds_partition_edges_up_and_keeps_the_first_usable_sector() {
    let mut l = layout("bios-gpt-ext4.toml");
    // An old BIOS boot partition at sector 34 (17 KiB): inside a 4Kn GPT's first 24 KiB.
    l.partitions[0].start = 34;
    l.partitions[0].size = 2014;
    let p = on_sectors(&l, 4096, &opts());
    let got = parts(&p);
    assert_eq!((got["vda1"].1, got["vda1"].2), (6, 250), "starts at the first usable sector, ends where it ended");
    assert_eq!(got["vda2"].1, 512);
    assert!(p.notes.iter().any(|n| n.contains("vda1 is a BIOS boot partition") && n.contains("4096-byte sectors")), "{:?}", p.notes);
    // A size that is no whole number of 4 KiB rounds up, never down.
    let mut l = layout("bios-gpt-ext4.toml");
    l.partitions[0].size -= 5;
    let p = on_sectors(&l, 4096, &opts());
    let got = parts(&p);
    assert_eq!((got["vda1"].1, got["vda1"].2), (256, 256), "2043 sectors of 512 bytes are 256 of 4096, not 255");
}

#[test]
fn from_4k_sectors_to_512e_a_resized_partition_keeps_whole_4k_sectors() {
    let mut l = layout("luks2-lvm.toml");
    // The same disk as recorded on a 4Kn disk.
    l.disks[0].logical_sector_size = 4096;
    l.disks[0].physical_sector_size = 4096;
    for part in &mut l.partitions {
        part.start /= 8;
        part.size /= 8;
    }
    l.luks[0].sector_size = Some(4096);
    // Onto a larger 512e disk whose size is no whole number of 4 KiB past the GPT.
    let mut d = disk("sdb", l.disks[0].size + 3 * GIB + 5 * 512);
    d.logical_sector_size = 512;
    let mut o = opts();
    o.map.insert("vda".into(), "sdb".into());
    let p = plan::build(&l, &Inventory { disks: vec![d] }, &o).unwrap();
    let got = parts(&p);
    for (name, (_, start, size)) in &got {
        assert_eq!((start % 8, size % 8), (0, 0), "{name} must stay in whole 4 KiB sectors: {start}+{size}");
    }
}

#[test]
fn md_and_lvm_metadata_do_not_depend_on_the_target_sector_size() {
    // mdadm and LVM count their offsets in bytes or 512-byte units whatever the disk's
    // sectors: on disks of the recorded size the arrays and volumes keep their sizes on 4Kn.
    for name in ["md-raid1-ext4.toml", "uefi-lvm-xfs.toml", "luks2-lvm.toml"] {
        let l = layout(name);
        let stack = |lss: u64| {
            let mut o = opts();
            let disks = l
                .disks
                .iter()
                .map(|d| {
                    let mut p = disk(&format!("t{}", d.name), d.size);
                    p.logical_sector_size = lss;
                    o.map.insert(d.name.clone(), p.name.clone());
                    p
                })
                .collect();
            let p = plan::build(&l, &Inventory { disks }, &o).unwrap();
            p.operations
                .iter()
                .filter_map(|op| match op {
                    Operation::CreateRaid { level, metadata, raid_devices, .. } => Some(format!("raid {level} {metadata} {raid_devices}")),
                    Operation::CreateLv { name, size, .. } => Some(format!("lv {name} {size}")),
                    Operation::CreatePv { uuid, .. } => Some(format!("pv {uuid}")),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        let on_512 = stack(512);
        assert!(!on_512.is_empty(), "{name}");
        assert_eq!(stack(4096), on_512, "{name}");
    }
}
