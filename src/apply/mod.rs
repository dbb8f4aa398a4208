//! Executing a [`Plan`]: every operation goes through [`Cmd`] (or the
//! partition table crates), in order. A failure stops at the failing
//! operation; the error names it, carries the command and its output, and
//! lists what was already done. What we activated (mounts, LUKS, VGs, MD) is
//! torn down on failure so running again starts over cleanly.

pub mod guard;
pub mod lvm;
pub mod table;
mod wipe;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::cmd::Cmd;
use crate::layout::{Filesystem, FsType};
use crate::plan::fat::{self, FatFormat};
use crate::plan::{Operation, Plan};
use guard::{Teardown, TempMount, Undo};

pub use wipe::{active_holders, deactivate_under, holds_data, teardown_target, Holder};

/// A LUKS key: a file, or the key itself (read from a USB stick).
pub enum LuksKey {
    File(PathBuf),
    Bytes(Vec<u8>),
}

/// Asks a person for the key of the named LUKS volume.
pub type KeyPrompt<'a> = &'a dyn Fn(&str) -> Result<Vec<u8>>;

pub struct ApplyOptions<'a> {
    /// LUKS mapper name -> key.
    pub luks_keys: BTreeMap<String, LuksKey>,
    /// Asked for a LUKS key that has no file (interactive prompt); `None`: fail.
    pub ask_key: Option<KeyPrompt<'a>>,
    /// Called before each operation (index from 0, total).
    pub progress: &'a dyn Fn(usize, usize, &Operation),
}

/// Whether udev runs here (then it makes the device nodes and links and we wait for it).
pub fn udev_running() -> bool {
    Path::new("/run/udev/control").exists()
}

/// Run the plan. On success the mounts stay (see [`teardown_target`]).
pub fn apply(plan: &Plan, opts: &ApplyOptions) -> Result<()> {
    let mut state = State {
        teardown: Teardown::new(),
        vgs: BTreeMap::new(),
        tops: BTreeMap::new(),
        typed_keys: BTreeMap::new(),
        work: tempfile::Builder::new().prefix("rescue-apply.").tempdir().context("creating a work directory")?,
    };
    let total = plan.operations.len();
    for (i, op) in plan.operations.iter().enumerate() {
        (opts.progress)(i, total, op);
        // Temporary btrfs mounts end before the real mounts begin.
        if matches!(op, Operation::Mount { .. }) {
            state.tops.clear();
        }
        if let Err(e) = run_op(op, plan, opts, &mut state) {
            state.tops.clear();
            let done: Vec<String> = plan.operations[..i].iter().enumerate().map(|(k, o)| format!("  {:>3}. {o}", k + 1)).collect();
            let done = if done.is_empty() { "  nothing".to_string() } else { done.join("\n") };
            return Err(e.context(format!(
                "operation {} of {total} failed: {op}\nalready done:\n{done}\n\
                 mounts, LUKS mappings and volume groups opened so far are being closed; \
                 fix the cause and run the same command again: it wipes the target disks and starts over",
                i + 1
            )));
        }
    }
    state.tops.clear();
    state.teardown.keep();
    Ok(())
}

/// Whether the plan creates `block` as a BIOS boot partition.
fn is_bios_boot(plan: &Plan, block: &str) -> bool {
    plan.operations.iter().any(|op| {
        matches!(op, Operation::CreatePartition { block: b, partition, .. } if b == block && partition.type_id.eq_ignore_ascii_case(crate::plan::resize::BIOS_BOOT))
    })
}

struct State {
    teardown: Teardown,
    vgs: BTreeMap<String, lvm::VgState>,
    /// Top-level btrfs mounts for subvolume work, by device.
    tops: BTreeMap<PathBuf, TempMount>,
    work: tempfile::TempDir,
    /// Passphrases typed at the prompt, by LUKS name: asked once for the
    /// format and reused for the open.
    typed_keys: BTreeMap<String, Vec<u8>>,
}

fn run_op(op: &Operation, plan: &Plan, opts: &ApplyOptions, st: &mut State) -> Result<()> {
    use Operation::*;
    match op {
        Wipe { device, .. } => wipe::wipe_disk(device, &plan.target_root),
        CreatePartitionTable { device, table, disk_guid, mbr_signature, logical_sector_size, .. } => {
            table::create_table(device, *table, disk_guid.as_deref(), mbr_signature.as_deref(), *logical_sector_size)
        }
        CreatePartition { disk_device, device, table, logical_sector_size, partition, .. } => {
            table::add_partition(disk_device, device, *table, *logical_sector_size, partition)
        }
        Settle { device, partitions, .. } => settle(device, partitions),
        WipeSignatures { block, device } => {
            Cmd::new("wipefs").args(["-a", "-q"]).arg(device).run()?;
            if is_bios_boot(plan, block) {
                // An old GRUB core image must not survive: only a finished
                // recovery installs boot code here.
                wipe::zero_all(device)?;
            }
            Ok(())
        }
        CreateRaid { device, level, metadata, uuid, array_name, chunk, layout, raid_devices, members, spares, .. } => {
            let mut c = Cmd::new("mdadm")
                .arg("--create")
                .arg(device)
                .args(["--run", "--force", "--metadata", metadata, "--level", level])
                .arg(format!("--raid-devices={raid_devices}"))
                .arg(format!("--uuid={uuid}"));
            // 0.90 superblocks have no name.
            if let Some(n) = array_name.as_ref().filter(|_| metadata.starts_with('1')) {
                c = c.arg(format!("--name={n}"));
            }
            if let Some(k) = chunk {
                c = c.arg(format!("--chunk={}K", k / 1024));
            }
            if let Some(l) = layout {
                c = c.arg(format!("--layout={l}"));
            }
            if !spares.is_empty() {
                c = c.arg(format!("--spare-devices={}", spares.len()));
            }
            for m in members {
                c = match m {
                    Some(p) => c.arg(p),
                    None => c.arg("missing"),
                };
            }
            c = c.args(spares);
            c.run()?;
            st.teardown.push(Undo::StopRaid(device.clone()));
            wait_for(std::slice::from_ref(device), Duration::from_secs(20))
        }
        CreateLuks { block, device, version, uuid, cipher, key_size, hash, pbkdf, label, subsystem, sector_size, offset } => {
            let mut c = Cmd::new("cryptsetup").args(["luksFormat", "--batch-mode", "--type", if *version == 1 { "luks1" } else { "luks2" }]).args([
                "--uuid",
                uuid,
                "--cipher",
                cipher,
                "--key-size",
                &key_size.to_string(),
            ]);
            if let Some(h) = hash {
                c = c.args(["--hash", h]);
            }
            if *version >= 2 {
                if let Some(p) = pbkdf {
                    c = c.args(["--pbkdf", p]);
                }
                if let Some(l) = label {
                    c = c.args(["--label", l]);
                }
                if let Some(s) = subsystem {
                    c = c.args(["--subsystem", s]);
                }
                if let Some(s) = sector_size {
                    c = c.args(["--sector-size", &s.to_string()]);
                }
            }
            if let Some(o) = offset {
                c = c.args(["--offset", &o.to_string()]);
            }
            with_key(c, block, opts, st)?.arg(device).run()
        }
        OpenLuks { block, device, mapper } => {
            let c = Cmd::new("cryptsetup").arg("open");
            with_key(c, block, opts, st)?.arg(device).arg(block).run()?;
            st.teardown.push(Undo::CloseLuks(block.clone()));
            wait_for(std::slice::from_ref(mapper), Duration::from_secs(20))
        }
        CreatePv { device, uuid, .. } => crate::apply::lvm::lvm_cmd().args(["pvcreate", "--yes", "-ff", "--uuid", uuid, "--norestorefile"]).arg(device).run(),
        CreateVg { name, uuid, extent_size, pvs } => {
            let devs: Vec<PathBuf> = pvs.iter().map(|p| p.device.clone()).collect();
            let geo = lvm::pv_geometry(&devs)?;
            let list = pvs.iter().zip(geo).map(|(p, (start, size))| (p.device.clone(), p.uuid.clone(), start, size)).collect();
            let mut vg = lvm::VgState::new(name, uuid, *extent_size, list)?;
            vg.restore(st.work.path())?;
            st.vgs.insert(name.clone(), vg);
            Ok(())
        }
        CreateLv { vg, name, uuid, size, stripes, stripe_size, .. } => {
            let state = st.vgs.get_mut(vg).ok_or_else(|| anyhow!("volume group {vg} was not created by this run"))?;
            state.add_lv(name, uuid, *size, *stripes, *stripe_size)?;
            state.restore(st.work.path())
        }
        ActivateVg { name } => {
            crate::apply::lvm::lvm_cmd().args(["vgchange", "-ay", name]).run()?;
            st.teardown.push(Undo::DeactivateVg(name.clone()));
            if !udev_running() {
                crate::apply::lvm::lvm_cmd().args(["vgmknodes", name]).run()?;
            }
            let devs: Vec<PathBuf> = plan
                .operations
                .iter()
                .filter_map(|o| match o {
                    CreateLv { vg, device, .. } if vg == name => Some(device.clone()),
                    _ => None,
                })
                .collect();
            wait_for(&devs, Duration::from_secs(20))
        }
        MakeFilesystem { device, same_size, sector_size, filesystem, extra_devices, fat, .. } => {
            mkfs_command(device, filesystem, extra_devices, *same_size, *sector_size, fat.as_ref())?.run()
        }
        MakeSwap { device, uuid, label, .. } => {
            let mut c = Cmd::new("mkswap").arg("-f");
            if let Some(u) = uuid {
                c = c.args(["-U", u]);
            }
            if let Some(l) = label {
                c = c.args(["-L", l]);
            }
            c.arg(device).run()
        }
        CreateSubvolume { device, path, readonly, .. } => {
            let top = top_mount(st, device)?;
            let full = crate::target::beneath(&top, path)?;
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            }
            Cmd::new("btrfs").args(["subvolume", "create"]).arg(&full).run()?;
            if *readonly {
                Cmd::new("btrfs").args(["property", "set", "-ts"]).arg(&full).args(["ro", "true"]).run()?;
            }
            Ok(())
        }
        SetDefaultSubvolume { device, path, .. } => {
            let top = top_mount(st, device)?;
            Cmd::new("btrfs").args(["subvolume", "set-default"]).arg(crate::target::beneath(&top, path)?).run()
        }
        Mount { target, device, fstype, options, subvol, .. } => {
            std::fs::create_dir_all(target).with_context(|| format!("creating the mount point {}", target.display()))?;
            let mut o = options.clone();
            if let Some(s) = subvol {
                o = if o == "defaults" { format!("subvol={s}") } else { format!("{o},subvol={s}") };
            }
            Cmd::new("mount").args(["-t", fstype.as_str(), "-o", &o]).arg(device).arg(target).run()?;
            st.teardown.push(Undo::Umount(plan.target_root.clone(), target.clone()));
            // Only recorded mounts count as ours: a later attempt or
            // `--umount` undoes these and nothing else.
            plan.target_root.record_mount(target)
        }
    }
}

fn top_mount(st: &mut State, device: &Path) -> Result<PathBuf> {
    if !st.tops.contains_key(device) {
        let m = TempMount::new(device, "btrfs", "subvolid=5")?;
        st.tops.insert(device.to_path_buf(), m);
    }
    Ok(st.tops[device].path().to_path_buf())
}

/// `--key-file` from `--luks-key NAME=FILE`, or the key (read from a stick,
/// or prompted: asked once per volume) on stdin.
fn with_key(c: Cmd, name: &str, opts: &ApplyOptions, st: &mut State) -> Result<Cmd> {
    match opts.luks_keys.get(name) {
        Some(LuksKey::File(f)) => {
            if !f.is_file() {
                bail!("the key file {} for LUKS volume {name} does not exist", f.display());
            }
            return Ok(c.arg("--key-file").arg(f));
        }
        // With `--key-file -` cryptsetup reads stdin to its end, newlines included: the same key as the file.
        Some(LuksKey::Bytes(key)) => return Ok(c.args(["--key-file", "-"]).stdin(key.clone())),
        None => {}
    }
    match opts.ask_key {
        Some(ask) => {
            let key = match st.typed_keys.get(name) {
                Some(k) => k.clone(),
                None => {
                    let k = ask(name)?;
                    st.typed_keys.insert(name.to_string(), k.clone());
                    k
                }
            };
            Ok(c.args(["--key-file", "-"]).stdin(key))
        }
        None => bail!("no key for LUKS volume {name}: give one with --luks-key {name}=FILE (run without --unattended to be asked)"),
    }
}

/// Re-read a disk's partition table and wait for its partition nodes.
pub fn settle(disk: &Path, partitions: &[PathBuf]) -> Result<()> {
    // The kernel refuses to re-read a table while a partition is open; retry briefly.
    let mut last = None;
    for _ in 0..5 {
        match Cmd::new("blockdev").arg("--rereadpt").arg(disk).run() {
            Ok(()) => {
                last = None;
                break;
            }
            Err(e) => {
                last = Some(e);
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    if let Some(e) = last {
        tracing::debug!("re-reading the table of {} failed, trying partx: {e:#}", disk.display());
    }
    // partx covers what BLKRRPART did not (loop devices, busy disks): update
    // changed entries, add missing ones.
    let _ = Cmd::new("partx").arg("-u").arg(disk).ok_codes(&[1]).run();
    let _ = Cmd::new("partx").arg("-a").arg(disk).ok_codes(&[1]).run();
    if udev_running() {
        Cmd::new("udevadm").args(["settle", "--timeout=30"]).run()?;
    }
    wait_for(partitions, Duration::from_secs(10)).or_else(|_| {
        let _ = Cmd::new("partx").arg("-a").arg(disk).ok_codes(&[1]).run();
        wait_for(partitions, Duration::from_secs(10))
    })
}

/// Wait until every path exists as a block device.
pub fn wait_for(paths: &[PathBuf], timeout: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        let missing: Vec<&PathBuf> = paths.iter().filter(|p| !p.exists()).collect();
        if missing.is_empty() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!(
                "the device node(s) {} did not appear within {} s; check `dmesg` and that the kernel sees the new table (`partx -s DISK`)",
                missing.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// ext features that describe state rather than a choice made at mkfs time.
const EXT_RUNTIME_FEATURES: &[&str] = &["needs_recovery", "journal_dev", "snapshot_bitmap"];

/// A captured inode ratio is size / inode count, a little off the `-i`
/// value it was made with (mke2fs rounds the inodes per group). Within 2 % of
/// a power of two, that power of two is what was meant; passing the measured
/// value instead would drift a little with every recovery.
fn nice_inode_ratio(r: u64) -> u64 {
    let p = r.max(1).next_power_of_two();
    let near = [p / 2, p].into_iter().find(|&c| c > 0 && r.abs_diff(c) * 50 <= c);
    near.unwrap_or(r)
}

/// Features `mkfs.btrfs` takes with `-R` rather than `-O`.
const BTRFS_RUNTIME_FEATURES: &[&str] = &["free-space-tree", "quota"];

/// The mkfs command line for a recorded filesystem. `same_size`: the device
/// keeps its recorded size (recorded xfs geometry applies); `sector_size`: the
/// logical sector size under it (block and sector sizes cannot be smaller);
/// `fat`: the FAT the plan chose for a vfat filesystem, passed whole so that
/// `mkfs.fat` makes exactly the cluster count the plan checked.
pub fn mkfs_command(device: &Path, f: &Filesystem, extra: &[PathBuf], same_size: bool, sector_size: u64, fat: Option<&FatFormat>) -> Result<Cmd> {
    let at_least = |v: u32| u64::from(v).max(sector_size).to_string();
    let c = match f.fstype {
        FsType::Ext2 | FsType::Ext3 | FsType::Ext4 => {
            let mut c = Cmd::new(format!("mkfs.{}", f.fstype)).args(["-F", "-q", "-U", &f.uuid]);
            if let Some(l) = &f.label {
                c = c.args(["-L", l]);
            }
            if let Some(x) = &f.ext {
                if x.block_size > 0 {
                    c = c.args(["-b", &at_least(x.block_size)]);
                }
                if x.inode_size > 0 {
                    c = c.args(["-I", &x.inode_size.to_string()]);
                }
                if let Some(r) = x.inode_ratio {
                    c = c.args(["-i", &nice_inode_ratio(r).to_string()]);
                }
                if let Some(m) = x.reserved_percent {
                    c = c.args(["-m", &m.to_string()]);
                }
                if !x.features.is_empty() {
                    let feats: Vec<&str> = x.features.iter().map(String::as_str).filter(|f| !EXT_RUNTIME_FEATURES.contains(f)).collect();
                    c = c.args(["-O", &format!("none,{}", feats.join(","))]);
                }
            }
            c.arg(device)
        }
        FsType::Xfs => {
            let mut c = Cmd::new("mkfs.xfs").arg("-f");
            let mut meta = vec![format!("uuid={}", f.uuid)];
            if let Some(x) = &f.xfs {
                let b = |v: bool| if v { "1" } else { "0" };
                meta.push(format!("crc={}", b(x.crc)));
                if x.crc {
                    meta.push(format!("finobt={}", b(x.finobt)));
                    meta.push(format!("reflink={}", b(x.reflink)));
                    meta.push(format!("rmapbt={}", b(x.rmapbt)));
                    meta.push(format!("bigtime={}", b(x.bigtime)));
                    meta.push(format!("inobtcount={}", b(x.inobtcount)));
                } else {
                    meta.push("finobt=0".into());
                }
                if x.block_size > 0 {
                    c = c.args(["-b", &format!("size={}", at_least(x.block_size))]);
                }
                if x.sector_size > 0 {
                    c = c.args(["-s", &format!("size={}", at_least(x.sector_size))]);
                }
                let mut inode = Vec::new();
                if x.inode_size > 0 {
                    inode.push(format!("size={}", x.inode_size));
                }
                if x.crc {
                    inode.push(format!("sparse={}", b(x.sparse)));
                }
                if !inode.is_empty() {
                    c = c.args(["-i", &inode.join(",")]);
                }
                // Geometry only fits a device of the recorded size.
                if same_size && x.agcount > 0 {
                    c = c.args(["-d", &format!("agcount={}", x.agcount)]);
                }
                // xfsprogs >= 5.x refuses logs under 64 MiB: let it choose then.
                if same_size && x.log_size >= 64 << 20 {
                    c = c.args(["-l", &format!("size={}", x.log_size)]);
                }
            }
            c = c.args(["-m", &meta.join(",")]);
            if let Some(l) = &f.label {
                c = c.args(["-L", l]);
            }
            c.arg(device)
        }
        FsType::Vfat => {
            let x = fat.ok_or_else(|| {
                anyhow!("the plan chose no FAT type for the vfat filesystem on {}; make the plan again with this version of rescue", device.display())
            })?;
            let id = f.vfat.as_ref().map(|v| v.volume_id.clone()).unwrap_or_else(|| f.uuid.replace('-', ""));
            let mut c = Cmd::new("mkfs.vfat").args(["-F", &x.fat_size.to_string(), "-S", &x.sector_size.to_string(), "-s", &x.sectors_per_cluster.to_string()]);
            c = c.args(["-g", &format!("{}/{}", fat::GEOMETRY_HEADS, fat::GEOMETRY_SECTORS), "-i", &id]);
            if let Some(l) = &f.label {
                c = c.args(["-n", l]);
            }
            c.arg(device)
        }
        FsType::Btrfs => {
            let mut c = Cmd::new("mkfs.btrfs").args(["-f", "-U", &f.uuid]);
            if let Some(l) = &f.label {
                c = c.args(["-L", l]);
            }
            if let Some(b) = &f.btrfs {
                c = c.args(["-d", &b.data_profile, "-m", &b.metadata_profile]);
                if let Some(n) = b.node_size {
                    c = c.args(["-n", &n.to_string()]);
                }
                if let Some(s) = b.sector_size {
                    c = c.args(["-s", &at_least(s)]);
                }
                // Runtime features (`-R`) are a separate list for mkfs.btrfs 6.x.
                let (runtime, fs): (Vec<&String>, Vec<&String>) = b.features.iter().partition(|f| BTRFS_RUNTIME_FEATURES.contains(&f.as_str()));
                if !fs.is_empty() {
                    c = c.args(["-O", &fs.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")]);
                }
                if !runtime.is_empty() {
                    c = c.args(["-R", &runtime.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")]);
                }
            }
            c.arg(device).args(extra)
        }
    };
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Layout;

    fn fs_of(layout: &str, device: &str) -> Filesystem {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts").join(layout);
        let l = Layout::load(&path).unwrap_or_else(|e| panic!("{e:#}"));
        l.filesystem_on(device).cloned().unwrap_or_else(|| panic!("no filesystem on {device}"))
    }

    #[test]
    fn inode_ratio_snaps_to_the_power_of_two_it_came_from() {
        assert_eq!(nice_inode_ratio(16364), 16384);
        assert_eq!(nice_inode_ratio(16332), 16384);
        assert_eq!(nice_inode_ratio(16384), 16384);
        assert_eq!(nice_inode_ratio(4100), 4096);
        assert_eq!(nice_inode_ratio(12000), 12000);
    }

    #[test]
    fn mkfs_lines_carry_the_recorded_identity_and_options() {
        let dev = Path::new("/dev/x");
        let ext = fs_of("bios-gpt-ext4.toml", "vda2");
        let c = mkfs_command(dev, &ext, &[], true, 512, None).unwrap_or_else(|e| panic!("{e:#}")).display();
        assert!(c.starts_with("mkfs.ext4 -F -q -U 8e5b7f0a-3c4d-4e6f-9a1b-2c3d4e5f6a7b -L root -b 4096 -I 256 -i 16384 -m 5 -O none,has_journal,"), "{c}");
        assert!(c.ends_with(",metadata_csum /dev/x"), "{c}");

        let xfs = fs_of("uefi-lvm-xfs.toml", "vg0/root");
        let same = mkfs_command(dev, &xfs, &[], true, 512, None).unwrap_or_else(|e| panic!("{e:#}")).display();
        assert!(same.contains("-d agcount=4"), "{same}");
        assert!(same.contains("-m uuid=0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d,crc=1,finobt=1,reflink=1,rmapbt=0,bigtime=1,inobtcount=1"), "{same}");
        assert!(same.contains("-i size=512,sparse=1 ") && same.contains("-L root /dev/x"), "{same}");
        // On a device of another size the geometry is left to mkfs.xfs.
        let other = mkfs_command(dev, &xfs, &[], false, 512, None).unwrap_or_else(|e| panic!("{e:#}")).display();
        assert!(!other.contains("agcount"), "{other}");
        // On a 4Kn disk, block and sector sizes are at least 4096.
        let boot = fs_of("luks2-lvm.toml", "vda2");
        let c = mkfs_command(dev, &boot, &[], true, 4096, None).unwrap_or_else(|e| panic!("{e:#}")).display();
        assert!(c.contains("-b 4096"), "{c}");
        let c = mkfs_command(dev, &xfs, &[], true, 4096, None).unwrap_or_else(|e| panic!("{e:#}")).display();
        assert!(c.contains("-s size=4096"), "{c}");

        let esp = fs_of("uefi-lvm-xfs.toml", "nvme0n1p1");
        let f16 = FatFormat { fat_size: 16, sector_size: 4096, sectors_per_cluster: 1, clusters: 51_145 };
        let c = mkfs_command(dev, &esp, &[], true, 4096, Some(&f16)).unwrap_or_else(|e| panic!("{e:#}")).display();
        assert_eq!(c, "mkfs.vfat -F 16 -S 4096 -s 1 -g 64/32 -i 1A2B3C4D -n ESP /dev/x");
        assert!(mkfs_command(dev, &esp, &[], true, 512, None).is_err(), "a vfat filesystem needs the plan's FAT");

        let b = fs_of("btrfs-subvolumes.toml", "vda2");
        let c = mkfs_command(dev, &b, &[], true, 512, None).unwrap_or_else(|e| panic!("{e:#}")).display();
        assert_eq!(
            c,
            "mkfs.btrfs -f -U b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e -L system -d single -m dup -n 16384 -s 4096 \
             -O extref,skinny-metadata,no-holes -R free-space-tree /dev/x"
        );
    }
}
