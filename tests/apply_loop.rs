//! As root on loop disks: `rescue recover --layout-only` recreates the
//! descriptors the host kernel can build (GPT and MBR with extended/logical
//! partitions; ext4, xfs, vfat, btrfs with subvolumes, swap), every identity
//! checked with `sfdisk -J` and `blkid -p`. Then the round trip: the result is
//! captured with `savelayout`, recovered onto a fresh disk of the same size, a
//! larger and a smaller one, captured again, and the two descriptors must be
//! equal apart from device names and the sizes the plan meant to change.
//! Also: `--plan` changes no byte, a failing operation reports itself and
//! leaves nothing mounted, and a second run over the first starts over cleanly.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use rescue::inventory::Inventory;
use rescue::layout::{FsType, Layout, TableType};
use rescue::plan::{self, Operation, PlanOptions};

/// Beyond `common::STORAGE_TOOLS`.
const EXTRA_TOOLS: &[&str] = &["mkfs.btrfs", "btrfs"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recover").join(name)
}

/// Unmounts everything under its roots when dropped (declared after the
/// loop disks, so it runs before they are detached).
struct Unmounter(Vec<PathBuf>);
impl Drop for Unmounter {
    fn drop(&mut self) {
        for r in &self.0 {
            let _ = Command::new("umount").arg("-R").arg(r).output();
        }
    }
}

fn name_of(dev: &str) -> String {
    dev.trim_start_matches("/dev/").to_string()
}

/// `rescue recover --layout-only` of `layout` with `old` mapped onto `disk`.
fn recover(dir: &Path, layout: &Path, old: &str, disk: &LoopDisk, root: &Path) {
    let out = recover_layout_only(dir, layout, old, &disk.dev, root);
    assert!(out.status.success(), "recover {} onto {} failed:\n{}", layout.display(), disk.dev, String::from_utf8_lossy(&out.stderr));
}

/// The plan the binary executed, recomputed in-process (same inputs).
fn plan_for(layout: &Layout, old: &str, disk: &LoopDisk, root: &Path) -> plan::Plan {
    let root = rescue::target::TargetRoot::new(root).unwrap();
    let inv = Inventory::read_live(&root).unwrap();
    let mut map = BTreeMap::new();
    map.insert(old.to_string(), disk.dev.clone());
    plan::build(layout, &inv, &PlanOptions { map, target_root: root, ..Default::default() }).unwrap()
}

/// fstab for the recovered tree (what the restore would bring), so the probe
/// records the same mounts.
fn write_fstab(root: &Path, l: &Layout) {
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/fstab"), fstab_for(l)).unwrap();
}

fn savelayout(dir: &Path, disk: &LoopDisk, root: &Path, out: &Path) -> Layout {
    let o = rescue(dir, &["savelayout", "--disk", &disk.dev, "--root", root.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "savelayout failed: {}", String::from_utf8_lossy(&o.stderr));
    Layout::load(out).unwrap()
}

/// Every recorded identity is on the disk: table, partitions, filesystems, swap.
fn check_identities(l: &Layout, disk: &LoopDisk, p: &plan::Plan) {
    let d = &l.disks[0];
    let sf = sfdisk_json(&disk.dev);
    let t = &sf["partitiontable"];
    match d.table {
        Some(TableType::Gpt) => {
            assert_eq!(t["label"], "gpt");
            assert_eq!(t["id"].as_str().unwrap(), d.disk_guid.as_deref().unwrap());
        }
        Some(TableType::Msdos) => {
            assert_eq!(t["label"], "dos");
            assert_eq!(t["id"].as_str().unwrap(), d.mbr_signature.as_deref().unwrap());
        }
        None => {}
    }
    let planned: BTreeMap<String, (u64, u64)> = p
        .operations
        .iter()
        .filter_map(|o| match o {
            Operation::CreatePartition { device, partition, .. } => Some((device.display().to_string(), (partition.start, partition.size))),
            _ => None,
        })
        .collect();
    let parts = t["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), l.partitions.len());
    for rp in &l.partitions {
        let node = p.devices[&rp.name].display().to_string();
        let sp = parts.iter().find(|x| x["node"] == node.as_str()).unwrap_or_else(|| panic!("{node} not in {sf}"));
        assert_eq!((sp["start"].as_u64().unwrap(), sp["size"].as_u64().unwrap()), planned[&node], "{node} geometry");
        let ty = sp["type"].as_str().unwrap();
        let same_byte = |a: &str, b: &str| matches!((u8::from_str_radix(a, 16), u8::from_str_radix(b, 16)), (Ok(x), Ok(y)) if x == y);
        assert!(ty.eq_ignore_ascii_case(&rp.type_id) || same_byte(ty, &rp.type_id), "{node}: type {ty} vs {}", rp.type_id);
        assert_eq!(sp["uuid"].as_str(), rp.uuid.as_deref(), "{node} PARTUUID");
        assert_eq!(sp["name"].as_str(), rp.label.as_deref(), "{node} PARTLABEL");
        assert_eq!(sp["attrs"].as_str(), rp.attrs.as_deref(), "{node} attributes");
        assert_eq!(sp["bootable"].as_bool().unwrap_or(false), rp.bootable, "{node} boot flag");
    }
    for f in &l.filesystems {
        let dev = p.devices[&f.device].display().to_string();
        let b = blkid(&dev);
        assert_eq!(b.get("TYPE").map(String::as_str), Some(f.fstype.as_str()), "{dev}: {b:?}");
        let uuid = b.get("UUID").cloned().unwrap_or_default();
        assert!(uuid.eq_ignore_ascii_case(&f.uuid), "{dev}: UUID {uuid} vs {}", f.uuid);
        assert_eq!(b.get("LABEL"), f.label.as_ref(), "{dev} label");
    }
    for s in &l.swaps {
        let dev = p.devices[&s.device].display().to_string();
        let b = blkid(&dev);
        assert_eq!(b.get("TYPE").map(String::as_str), Some("swap"), "{dev}");
        assert_eq!(b.get("UUID"), s.uuid.as_ref(), "{dev}");
        assert_eq!(b.get("LABEL"), s.label.as_ref(), "{dev}");
    }
}

/// What a capture of `plan`'s result should say, given the descriptor it
/// recovered: names follow the mapping, partitions and disk take their
/// planned geometry; sizes inside filesystems, the host and what depends on
/// the filesystem size (xfs AG count, log size) come from the new capture.
fn expected(l: &Layout, p: &plan::Plan, captured: &Layout) -> Layout {
    let mut e = l.clone();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for m in &p.mapping {
        names.insert(m.recorded.clone(), m.name.clone());
    }
    for pt in &l.partitions {
        names.insert(pt.name.clone(), p.devices[&pt.name].file_name().unwrap().to_string_lossy().into_owned());
    }
    let r = |s: &str| names.get(s).cloned().unwrap_or_else(|| s.to_string());
    e.host = captured.host.clone();
    e.excluded = captured.excluded.clone();
    e.bootloader = captured.bootloader.clone();
    for d in &mut e.disks {
        let m = p.mapping.iter().find(|m| m.recorded == d.name).unwrap();
        d.size = m.size;
        d.name = m.name.clone();
        d.path = m.device.display().to_string();
        let c = captured.disk(&d.name).unwrap();
        (d.by_id, d.serial, d.wwn, d.model) = (c.by_id.clone(), c.serial.clone(), c.wwn.clone(), c.model.clone());
    }
    for pt in &mut e.partitions {
        let (start, size) = p
            .operations
            .iter()
            .find_map(|o| match o {
                Operation::CreatePartition { block, partition, .. } if *block == pt.name => Some((partition.start, partition.size)),
                _ => None,
            })
            .unwrap();
        (pt.start, pt.size) = (start, size);
        pt.name = r(&pt.name);
        pt.disk = r(&pt.disk);
    }
    for f in &mut e.filesystems {
        f.device = r(&f.device);
        let c = captured.filesystem_on(&f.device).unwrap_or_else(|| panic!("no filesystem on {} captured", f.device));
        f.size = c.size;
        // Counts that follow the size: the inode ratio is rounded from the
        // inode count, the xfs AG count and log size are left to mkfs.
        let resized = f.size != l.filesystems.iter().find(|o| o.uuid == f.uuid).and_then(|o| o.size);
        if let (Some(x), Some(cx), true) = (&mut f.xfs, &c.xfs, resized) {
            x.agcount = cx.agcount;
            x.log_size = cx.log_size;
        }
        if let (Some(x), Some(cx), true) = (&mut f.ext, &c.ext, resized) {
            x.inode_ratio = cx.inode_ratio;
        }
        // btrfs-progs cannot set a subvolume's UUID: new ones are expected.
        if let (Some(x), Some(cx)) = (&mut f.btrfs, &c.btrfs) {
            for s in &mut x.subvolumes {
                s.uuid = cx.subvolumes.iter().find(|c| c.path == s.path).and_then(|c| c.uuid.clone());
            }
        }
    }
    for s in &mut e.swaps {
        s.device = r(&s.device);
        s.size = captured.swaps.iter().find(|c| c.device == s.device).and_then(|c| c.size);
    }
    for m in &mut e.mounts {
        m.device = r(&m.device);
    }
    e
}

fn assert_same(what: &str, want: &Layout, got: &Layout) {
    let changes = rescue::layout::diff::compare(want, got);
    assert!(
        changes.is_empty(),
        "{what}: the captured layout differs from the expected one:\n{}",
        changes.iter().map(|c| format!("  {c}")).collect::<Vec<_>>().join("\n")
    );
}

/// Recover `fixture` onto a disk of its own size, check every identity,
/// capture it; then recover that capture onto disks of each size in
/// `sizes_mib` and compare the captures.
fn round_trip(fixture_name: &str, sizes_mib: &[u64]) {
    require_root();
    require_tools(STORAGE_TOOLS);
    require_tools(EXTRA_TOOLS);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let src = Layout::load(&fixture(fixture_name)).unwrap();
    let old = src.disks[0].name.clone();
    let first = LoopDisk::new(dir, "first", src.disks[0].size >> 20);
    let mut disks = Vec::new();
    for (i, s) in sizes_mib.iter().enumerate() {
        disks.push(LoopDisk::new(dir, &format!("target{i}"), *s));
    }
    let roots: Vec<PathBuf> = (0..=sizes_mib.len()).map(|i| dir.join(format!("root{i}"))).collect();
    let _unmount = Unmounter(roots.clone());

    recover(dir, &fixture(fixture_name), &old, &first, &roots[0]);
    let p0 = plan_for(&src, &old, &first, &roots[0]);
    check_identities(&src, &first, &p0);
    check_btrfs(&src, &roots[0]);
    write_fstab(&roots[0], &src);
    let l1_path = dir.join("l1.toml");
    let l1 = savelayout(dir, &first, &roots[0], &l1_path);
    // The capture of the recovered disk is the fixture, renamed.
    let want = expected(&src, &p0, &l1);
    assert_same(&format!("{fixture_name} recovered"), &normalize_fixture(&want, &l1), &l1);
    // XFS refuses to mount, and mkfs.btrfs to make, a second filesystem with
    // the same UUID: retire this copy before the next.
    retire(dir, &first, &roots[0]);

    for (i, disk) in disks.iter().enumerate() {
        let root = &roots[i + 1];
        recover(dir, &l1_path, &name_of(&first.dev), disk, root);
        let p = plan_for(&l1, &name_of(&first.dev), disk, root);
        check_identities(&l1, disk, &p);
        write_fstab(root, &l1);
        let l2 = savelayout(dir, disk, root, &dir.join(format!("l2-{i}.toml")));
        assert_same(&format!("{fixture_name} onto {} MiB", sizes_mib[i]), &expected(&l1, &p, &l2), &l2);
        retire(dir, disk, root);
    }
}

/// Unmount a recovered tree with `recover --umount` and erase its signatures.
fn retire(dir: &Path, disk: &LoopDisk, root: &Path) {
    let out = rescue(dir, &["recover", "--umount", "--target-root", root.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!sh("findmnt -rn -o TARGET").lines().any(|l| Path::new(l).starts_with(root)), "still mounted under {}", root.display());
    sh(&format!("for p in {0}p*; do wipefs -a -q $p; done; wipefs -a -q {0}", disk.dev));
    let _ = Command::new("btrfs").args(["device", "scan", "--forget"]).output();
}

/// A hand-written fixture records fewer details than a capture does (inode
/// ratio, reserved blocks...): take those from the capture, keep every
/// identity from the fixture.
fn normalize_fixture(want: &Layout, captured: &Layout) -> Layout {
    let mut w = want.clone();
    for f in &mut w.filesystems {
        let Some(c) = captured.filesystem_on(&f.device) else { continue };
        if let (Some(x), Some(cx)) = (&mut f.ext, &c.ext) {
            x.inode_ratio = x.inode_ratio.or(cx.inode_ratio);
            x.reserved_percent = x.reserved_percent.or(cx.reserved_percent);
        }
        if let (Some(x), Some(cx)) = (&mut f.xfs, &c.xfs) {
            // mkfs.xfs chooses the log when the recorded one is below its 64 MiB minimum.
            if x.log_size < 64 << 20 {
                x.log_size = cx.log_size;
            }
            if x.agcount == 0 {
                x.agcount = cx.agcount;
            }
            x.rmapbt = cx.rmapbt && x.rmapbt;
        }
        if let (Some(x), Some(cx)) = (&mut f.vfat, &c.vfat) {
            x.sectors_per_cluster = x.sectors_per_cluster.or(cx.sectors_per_cluster);
        }
        if let (Some(x), Some(cx)) = (&mut f.btrfs, &c.btrfs) {
            // The same set of features, in the order the probe lists them.
            let (mut a, mut b) = (x.features.clone(), cx.features.clone());
            a.sort();
            b.sort();
            if a == b {
                x.features = cx.features.clone();
            }
            for s in &mut x.subvolumes {
                if let Some(cs) = cx.subvolumes.iter().find(|c| c.path == s.path) {
                    s.uuid = s.uuid.clone().or(cs.uuid.clone());
                }
            }
        }
    }
    for s in &mut w.swaps {
        if s.label.is_none() {
            s.label = captured.swaps.iter().find(|c| c.device == s.device).and_then(|c| c.label.clone());
        }
    }
    w
}

/// Subvolumes with their ids, and the default subvolume.
fn check_btrfs(l: &Layout, root: &Path) {
    for f in l.filesystems.iter().filter(|f| f.fstype == FsType::Btrfs) {
        let Some(b) = &f.btrfs else { continue };
        let list = sh(&format!("btrfs subvolume list {}", root.display()));
        for s in b.subvolumes.iter().filter(|s| !s.snapshot) {
            assert!(
                list.contains(&format!("ID {} ", s.id))
                    && list.lines().any(|x| x.contains(&format!("ID {} ", s.id)) && x.ends_with(s.path.rsplit('/').next().unwrap())),
                "subvolume {} (id {}) missing:\n{list}",
                s.path,
                s.id
            );
        }
        if let Some(d) = &b.default_subvolume {
            let got = sh(&format!("btrfs subvolume get-default {}", root.display()));
            assert!(got.trim_end().ends_with(&format!("path {d}")), "default subvolume: {got}");
        }
    }
}

#[test]
fn gpt_ext4_swap_same_larger_smaller() {
    round_trip("gpt-ext4.toml", &[512, 768, 448]);
}

#[test]
fn btrfs_subvolumes_same_larger_smaller() {
    round_trip("btrfs-subvolumes.toml", &[512, 640, 400]);
}

#[test]
fn mbr_extended_logical_same_larger_smaller() {
    round_trip("mbr-logical.toml", &[1024, 1280, 900]);
}

#[test]
fn gpt_esp_xfs_attrs_and_numbering_gap() {
    round_trip("gpt-esp-xfs.toml", &[1024, 1200, 900]);
}

fn sha(path: &Path) -> String {
    sh(&format!("sha256sum {}", path.display())).split_whitespace().next().unwrap().to_string()
}

#[test]
fn plan_changes_nothing_and_failures_report_and_clean_up() {
    require_root();
    require_tools(STORAGE_TOOLS);
    require_tools(EXTRA_TOOLS);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let disk = LoopDisk::new(dir, "d", 512);
    let root = dir.join("root");
    let _unmount = Unmounter(vec![root.clone()]);
    let good = fixture("gpt-ext4.toml");
    recover(dir, &good, "vda", &disk, &root);
    sh(&format!("echo data > {}/file && sync", root.display()));
    let out = rescue(dir, &["recover", "--umount", "--target-root", root.to_str().unwrap()]);
    assert!(out.status.success());

    // --plan (text and JSON) reads only.
    let before = sha(&disk.image);
    for json in [false, true] {
        let mut args = vec!["recover", "--layout", good.to_str().unwrap(), "--plan", "--map"];
        let m = format!("vda={}", disk.dev);
        args.push(&m);
        if json {
            args.insert(0, "--json");
        }
        let out = rescue(dir, &args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        if json {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["operations"][0]["op"], "wipe");
        } else {
            assert!(text.contains(&format!("create partition {}p2", disk.dev)), "{text}");
        }
    }
    assert_eq!(sha(&disk.image), before, "--plan changed the disk");

    // Without --layout-only: refused as an input error, nothing written.
    let out = rescue(dir, &["recover", "--layout", good.to_str().unwrap(), "--map", &format!("vda={}", disk.dev)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--layout-only"));
    // Without --yes and without a terminal: refused.
    let out = rescue(dir, &["recover", "--layout", good.to_str().unwrap(), "--layout-only", "--map", &format!("vda={}", disk.dev)]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sha(&disk.image), before, "a refused recover changed the disk");

    // A failing mkfs: the error names the operation, the command and its
    // output, and what was done; nothing stays mounted.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, std::fs::read_to_string(&good).unwrap().replace("\"metadata_csum\"]", "\"metadata_csum\", \"no_such_feature\"]")).unwrap();
    let out = rescue(
        dir,
        &[
            "recover",
            "--layout",
            bad.to_str().unwrap(),
            "--layout-only",
            "--yes",
            "--map",
            &format!("vda={}", disk.dev),
            "--target-root",
            root.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("operation 10 of 12 failed: make ext4"), "{err}");
    assert!(err.contains("mkfs.ext4 -F -q -U 8e5b7f0a"), "{err}");
    assert!(err.contains("no_such_feature"), "{err}");
    assert!(err.contains("already done:") && err.contains("9. erase stale signatures"), "{err}");
    assert!(!sh("findmnt -rn -o TARGET").lines().any(|l| Path::new(l).starts_with(&root)));

    // Running again with the right descriptor starts over and succeeds.
    recover(dir, &good, "vda", &disk, &root);
    assert!(!root.join("file").exists(), "the old filesystem survived");
    let l = Layout::load(&good).unwrap();
    check_identities(&l, &disk, &plan_for(&l, "vda", &disk, &root));
}

#[test]
fn unattended_proceeds_only_when_the_config_says_so() {
    require_root();
    require_tools(STORAGE_TOOLS);
    require_tools(EXTRA_TOOLS);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let disk = LoopDisk::new(dir, "u", 512);
    let root = dir.join("root");
    let _unmount = Unmounter(vec![root.clone()]);
    let good = fixture("gpt-ext4.toml");
    let run = |cfg: &str| {
        let path = dir.join("u.toml");
        std::fs::write(&path, format!("log-dir = \"{0}/log\"\nstate-dir = \"{0}/state\"\n{cfg}", dir.display())).unwrap();
        Command::new(rescue_bin())
            .arg("--config")
            .arg(&path)
            .args(["recover", "--layout", good.to_str().unwrap(), "--layout-only", "--unattended"])
            .args(["--map", &format!("vda={}", disk.dev), "--target-root", root.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = run("");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unattended-proceed"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(blkid(&disk.dev).is_empty(), "a refused run wrote to the disk");
    let out = run("[recover]\nunattended-proceed = true\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(blkid(&format!("{}p2", disk.dev)).get("LABEL").map(String::as_str), Some("root"));
}
