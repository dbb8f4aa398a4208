//! Recovery as data: a descriptor, the present disks and the options become
//! an ordered list of typed [`Operation`]s, computed with no side effects.
//! `rescue recover --plan` prints it, `--json` serializes it, `apply`
//! executes it, and tests check it as data.

pub mod capacity;
pub mod fat;
pub mod mapping;
pub mod nics;
pub mod resize;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::error::input_error;
use crate::inventory::{Inventory, PresentDisk};
use crate::layout::{Filesystem, FsType, Layout, PartitionKind, TableType};
use crate::target::TargetRoot;
use crate::util::human_bytes;

pub use mapping::{map_disks, partition_path, Ambiguity, DiskAssignment, MappingProblem, MatchReason};
pub use nics::{NicAssignment, NicPlan, NicReason};
pub use resize::ResizePolicy;

/// What the planner needs besides the descriptor and the disks.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    pub resize: ResizePolicy,
    /// Recorded disk block id -> present device (`/dev/sdb`, `sdb`, by-id name).
    pub map: BTreeMap<String, String>,
    /// Where the tree is mounted (`/mnt/local`).
    pub target_root: TargetRoot,
}

/// One recorded partition as it is created.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct NewPartition {
    pub number: u32,
    pub start: u64,
    pub size: u64,
    #[serde(rename = "type")]
    pub type_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attrs: Option<String>,
    pub bootable: bool,
    pub kind: PartitionKind,
}

/// A PV as the VG restore needs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PvRef {
    pub device: PathBuf,
    pub uuid: String,
}

/// One step of a recovery. Device paths are those on the machine we recover
/// onto; `block` fields are the descriptor's block ids.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
// Operations are few (hundreds) and read more than moved: no boxing.
#[allow(clippy::large_enum_variant)]
pub enum Operation {
    /// Deactivate what is stacked on the disk (mounts under the target root,
    /// swap, LVM, LUKS, MD) and erase every signature on it and its partitions.
    Wipe {
        disk: String,
        device: PathBuf,
    },
    CreatePartitionTable {
        disk: String,
        device: PathBuf,
        table: TableType,
        #[serde(skip_serializing_if = "Option::is_none")]
        disk_guid: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        mbr_signature: Option<String>,
        logical_sector_size: u64,
    },
    CreatePartition {
        block: String,
        disk_device: PathBuf,
        device: PathBuf,
        table: TableType,
        logical_sector_size: u64,
        partition: NewPartition,
    },
    /// Re-read the partition table and wait for the partition nodes.
    Settle {
        disk: String,
        device: PathBuf,
        partitions: Vec<PathBuf>,
    },
    /// Erase stale signatures on a new partition or array before use.
    WipeSignatures {
        block: String,
        device: PathBuf,
    },
    CreateRaid {
        block: String,
        device: PathBuf,
        level: String,
        metadata: String,
        uuid: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        array_name: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        chunk: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        layout: Option<String>,
        raid_devices: u32,
        /// Members in role order; `None` is a missing member.
        members: Vec<Option<PathBuf>>,
        spares: Vec<PathBuf>,
    },
    CreateLuks {
        block: String,
        device: PathBuf,
        version: u32,
        uuid: String,
        cipher: String,
        key_size: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        hash: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pbkdf: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        label: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        subsystem: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        sector_size: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
    },
    OpenLuks {
        block: String,
        device: PathBuf,
        mapper: PathBuf,
    },
    CreatePv {
        block: String,
        device: PathBuf,
        uuid: String,
        vg: String,
    },
    /// Writes the VG's metadata with the recorded UUIDs (vgcfgrestore).
    CreateVg {
        name: String,
        uuid: String,
        extent_size: u64,
        pvs: Vec<PvRef>,
    },
    /// Adds an LV with its recorded UUID to the VG's metadata.
    CreateLv {
        vg: String,
        name: String,
        uuid: String,
        size: u64,
        /// 1 for a linear LV.
        stripes: u32,
        /// Bytes per stripe (used when `stripes` > 1; LVM's 64 KiB when not recorded).
        stripe_size: u64,
        device: PathBuf,
    },
    ActivateVg {
        name: String,
    },
    MakeFilesystem {
        block: String,
        device: PathBuf,
        /// Size of the device it is made on, bytes.
        device_size: u64,
        /// The device keeps its recorded size: recorded geometry (xfs AG count, log size) applies.
        same_size: bool,
        /// Logical sector size of the device it is made on: the largest of the
        /// target disks' and LUKS encryption sectors under it (block sizes cannot be smaller).
        sector_size: u64,
        filesystem: Filesystem,
        /// vfat: the FAT type and cluster size it is made with, valid for its
        /// cluster count on `sector_size` (see [`fat::choose`]).
        #[serde(skip_serializing_if = "Option::is_none")]
        fat: Option<fat::FatFormat>,
        /// Devices of a multi-device btrfs besides `device`.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        extra_devices: Vec<PathBuf>,
    },
    MakeSwap {
        block: String,
        device: PathBuf,
        #[serde(skip_serializing_if = "Option::is_none")]
        uuid: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        label: Option<String>,
    },
    CreateSubvolume {
        block: String,
        device: PathBuf,
        path: String,
        readonly: bool,
    },
    SetDefaultSubvolume {
        block: String,
        device: PathBuf,
        path: String,
    },
    Mount {
        /// Mount point in the recovered system (`/home`).
        path: String,
        /// Where it is mounted now (`/mnt/local/home`).
        target: PathBuf,
        block: String,
        device: PathBuf,
        fstype: FsType,
        options: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        subvol: Option<String>,
    },
}

/// How a recorded disk's partitions moved on its target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resized {
    pub block: String,
    pub recorded_size: u64,
    pub new_size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Plan {
    pub host: String,
    pub target_root: TargetRoot,
    pub resize: ResizePolicy,
    pub mapping: Vec<DiskAssignment>,
    /// Block ids whose size differs from the recorded one.
    pub resized: Vec<Resized>,
    /// Block id -> device path on the target.
    pub devices: BTreeMap<String, PathBuf>,
    /// Where the recreated system differs from the recorded one, and why
    /// (an ESP grown or a FAT type changed for the target's sector size).
    pub notes: Vec<String>,
    pub operations: Vec<Operation>,
    /// Recorded NICs → NICs here (set by recovery when the descriptor has a network).
    #[serde(skip_serializing_if = "NicPlan::is_empty")]
    pub nics: NicPlan,
}

impl Plan {
    /// The target devices the plan writes to (the mapped disks).
    pub fn target_disks(&self) -> Vec<&Path> {
        self.mapping.iter().map(|m| m.device.as_path()).collect()
    }

    /// Recorded block id -> device path now, as strings (what `boot::DeviceMap` takes).
    pub fn device_paths(&self) -> BTreeMap<String, String> {
        self.devices.iter().map(|(k, v)| (k.clone(), v.display().to_string())).collect()
    }
}

/// The LV's device-mapper path (`/dev/mapper/vg-root`, dashes doubled).
pub fn lv_path(vg: &str, lv: &str) -> PathBuf {
    PathBuf::from(format!("/dev/mapper/{}-{}", vg.replace('-', "--"), lv.replace('-', "--")))
}

/// Whether `present` can hold `disk` (partitions fit and filesystems keep their data).
pub fn disk_fits(layout: &Layout, disk: &crate::layout::Disk, present: &PresentDisk, policy: ResizePolicy) -> bool {
    if disk.table.is_none() {
        return present.size >= disk.size;
    }
    match resize::fit_partitions(layout, disk, present.size, present.logical_sector_size, policy) {
        Ok(placed) => {
            let lss = present.logical_sector_size;
            placed.iter().all(|p| {
                let new = p.size * lss;
                match layout.filesystem_on(&p.name) {
                    Some(f) => capacity::holds_data(f, new),
                    None => true,
                }
            })
        }
        Err(_) => false,
    }
}

/// The smallest disk (whole MiB, `lss`-byte sectors) that holds recorded
/// `disk` with its data, as [`disk_fits`] judges it; `None` when not even
/// its recorded size does (a stack the estimate does not follow).
pub fn smallest_fitting_disk(layout: &Layout, disk: &crate::layout::Disk, lss: u64, policy: ResizePolicy) -> Option<u64> {
    const MIB: u64 = 1 << 20;
    let fits = |mib: u64| disk_fits(layout, disk, &PresentDisk { size: mib * MIB, logical_sector_size: lss, ..Default::default() }, policy);
    let recorded = disk.size.div_ceil(MIB);
    fits(recorded).then(|| capacity::smallest_mib(recorded, fits) * MIB)
}

/// For each mapped disk that is too small: how large a disk it needs, how
/// much is missing, and the `--map` to use instead.
fn larger_disk_hints(layout: &Layout, mapping: &[DiskAssignment], policy: ResizePolicy) -> Vec<String> {
    let mut hints = Vec::new();
    for m in mapping {
        let Some(disk) = layout.disk(&m.recorded) else { continue };
        let here = PresentDisk { size: m.size, logical_sector_size: m.logical_sector_size, ..Default::default() };
        if disk_fits(layout, disk, &here, policy) {
            continue;
        }
        let what = format!("Map a larger disk with --map {}=/dev/DISK", m.recorded);
        hints.push(match smallest_fitting_disk(layout, disk, m.logical_sector_size, policy) {
            Some(need) if need > m.size => format!(
                "recorded disk {} needs a disk of at least {} with its data; {} has {}: {} missing. {what}",
                m.recorded,
                human_bytes(need),
                m.device.display(),
                human_bytes(m.size),
                human_bytes(need - m.size)
            ),
            _ => format!("recorded disk {} ({}) does not fit on {} ({}). {what}", m.recorded, human_bytes(disk.size), m.device.display(), human_bytes(m.size)),
        });
    }
    hints
}

/// Map the disks: explicit mapping first, then identity, size, fit.
pub fn map(layout: &Layout, inv: &Inventory, opts: &PlanOptions) -> Result<Vec<DiskAssignment>, MappingProblem> {
    map_disks(layout, inv, &opts.map, &|d, p| disk_fits(layout, d, p, opts.resize))
}

/// Compute the plan. Fails (input error) when the mapping is incomplete or
/// ambiguous, when a target disk is busy, or when a target is too small.
pub fn build(layout: &Layout, inv: &Inventory, opts: &PlanOptions) -> Result<Plan> {
    let mapping = map(layout, inv, opts).map_err(|p| input_error(format!("cannot map the recorded disks:\n{p}")))?;
    build_with_mapping(layout, inv, opts, mapping)
}

/// Compute the plan for a mapping already decided (e.g. chosen interactively).
pub fn build_with_mapping(layout: &Layout, inv: &Inventory, opts: &PlanOptions, mapping: Vec<DiskAssignment>) -> Result<Plan> {
    // Refuse busy targets before anything else.
    let mut busy = Vec::new();
    for m in &mapping {
        if let Some(p) = inv.find(&m.device.to_string_lossy()) {
            if !p.busy.is_empty() {
                busy.push(format!("{} (for recorded {}): {}", p.path.display(), m.recorded, p.busy.join("; ")));
            }
        }
    }
    if !busy.is_empty() {
        return Err(input_error(format!(
            "refusing to overwrite disks in use:\n  {}\nunmount them or map the recorded disks to other devices with --map",
            busy.join("\n  ")
        )));
    }
    // An ESP too small for FAT32 on the target's sectors grows where the
    // resize rules and the other filesystems' data allow; else it keeps its
    // size and gets the FAT type its cluster count implies.
    let grow = esp_growth(layout, &mapping);
    if grow.is_empty() {
        return build_planned(layout, opts, mapping, &grow);
    }
    match build_planned(layout, opts, mapping.clone(), &grow) {
        Ok(p) => Ok(p),
        Err(e) => {
            let mut p = build_planned(layout, opts, mapping, &BTreeMap::new())?;
            let growth: Vec<String> = grow.iter().map(|(name, bytes)| format!("the ESP {name} to {}", human_bytes(*bytes))).collect();
            p.notes.insert(0, format!("growing {} does not fit, so it keeps its size ({e:#})", growth.join(" and ")));
            Ok(p)
        }
    }
}

/// The ESPs recorded as FAT32 that are too small for a FAT32 on their
/// target's sectors: partition block id -> the size in bytes they need.
fn esp_growth(layout: &Layout, mapping: &[DiskAssignment]) -> BTreeMap<String, u64> {
    let mut grow = BTreeMap::new();
    for m in mapping {
        let Some(disk) = layout.disk(&m.recorded) else { continue };
        for p in layout.partitions_of(&disk.name) {
            let bytes = p.size * disk.logical_sector_size;
            let Some(f) = layout.filesystem_on(&p.name).filter(|f| f.fstype == FsType::Vfat) else { continue };
            if !resize::is_esp_type(&p.type_id) || recorded_fat_size(f, bytes) != 32 {
                continue;
            }
            if let Some(need) = fat::esp_needs(bytes, m.logical_sector_size) {
                grow.insert(p.name.clone(), need);
            }
        }
    }
    grow
}

/// The FAT type a vfat filesystem was recorded with; without it, what
/// `mkfs.fat` picks by itself (FAT32 from 512 MiB on).
fn recorded_fat_size(f: &Filesystem, bytes: u64) -> u32 {
    f.vfat.as_ref().map(|v| v.fat_size).unwrap_or(if bytes >= 512 << 20 { 32 } else { 16 })
}

/// The plan for a decided mapping; the partitions in `grow` get at least
/// that many bytes.
fn build_planned(layout: &Layout, opts: &PlanOptions, mapping: Vec<DiskAssignment>, grow: &BTreeMap<String, u64>) -> Result<Plan> {
    let mut ops = Vec::new();
    let mut notes = Vec::new();
    let mut devices: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
    let mut resized = Vec::new();
    let mut problems = Vec::new();

    for m in &mapping {
        ops.push(Operation::Wipe { disk: m.recorded.clone(), device: m.device.clone() });
    }
    for m in &mapping {
        let Some(disk) = layout.disk(&m.recorded) else { continue };
        devices.insert(disk.name.clone(), m.device.clone());
        sizes.insert(disk.name.clone(), m.size);
        let Some(table) = disk.table else { continue };
        let lss = m.logical_sector_size;
        let grow_here: BTreeMap<String, u64> = grow.iter().map(|(k, v)| (k.clone(), v.div_ceil(lss))).collect();
        let placed = match resize::place_partitions(layout, disk, m.size, lss, opts.resize, &grow_here) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("{e:#}"));
                continue;
            }
        };
        ops.push(Operation::CreatePartitionTable {
            disk: disk.name.clone(),
            device: m.device.clone(),
            table,
            disk_guid: disk.disk_guid.clone(),
            mbr_signature: disk.mbr_signature.clone(),
            logical_sector_size: m.logical_sector_size,
        });
        let mut nodes = Vec::new();
        // Extended before logical: the logical ones live inside it.
        let mut order: Vec<_> = placed.iter().filter_map(|pp| layout.partition(&pp.name).map(|p| (p, pp))).collect();
        order.sort_by_key(|(p, _)| (p.kind == PartitionKind::Logical, p.number));
        for (p, pp) in order {
            let dev = partition_path(&m.device, p.number);
            devices.insert(p.name.clone(), dev.clone());
            sizes.insert(p.name.clone(), pp.size * m.logical_sector_size);
            if lss > 512 && p.type_id.eq_ignore_ascii_case(resize::BIOS_BOOT) {
                notes.push(format!(
                    "{} is a BIOS boot partition on {}, a disk with {lss}-byte sectors: GRUB installs there, but much BIOS \
                     firmware cannot boot from such a disk (4Kn disks boot through UEFI); if it does not boot, recover onto a \
                     disk with 512-byte logical sectors (512n or 512e)",
                    p.name,
                    m.device.display()
                ));
            }
            if grow.contains_key(&p.name) && pp.size * lss > p.size * disk.logical_sector_size {
                notes.push(format!(
                    "the ESP {} grows from {} to {}: FAT32 needs at least {} clusters, and on {lss}-byte sectors {} has {}",
                    p.name,
                    human_bytes(p.size * disk.logical_sector_size),
                    human_bytes(pp.size * lss),
                    fat::thousands(fat::MIN_FAT32_CLUSTERS),
                    human_bytes(p.size * disk.logical_sector_size),
                    fat::thousands(fat::clusters(p.size * disk.logical_sector_size, lss, 32, 1).unwrap_or(0)),
                ));
            }
            if pp.size * m.logical_sector_size != p.size * disk.logical_sector_size {
                resized.push(Resized { block: p.name.clone(), recorded_size: p.size * disk.logical_sector_size, new_size: pp.size * m.logical_sector_size });
            }
            if p.kind != PartitionKind::Extended {
                nodes.push((p.name.clone(), dev.clone()));
            }
            ops.push(Operation::CreatePartition {
                block: p.name.clone(),
                disk_device: m.device.clone(),
                device: dev,
                table,
                logical_sector_size: m.logical_sector_size,
                partition: NewPartition {
                    number: p.number,
                    start: pp.start,
                    size: pp.size,
                    type_id: p.type_id.clone(),
                    uuid: p.uuid.clone(),
                    label: p.label.clone(),
                    attrs: p.attrs.clone(),
                    bootable: p.bootable,
                    kind: p.kind,
                },
            });
        }
        nodes.sort();
        ops.push(Operation::Settle { disk: disk.name.clone(), device: m.device.clone(), partitions: nodes.iter().map(|n| n.1.clone()).collect() });
        for (block, dev) in nodes {
            ops.push(Operation::WipeSignatures { block, device: dev });
        }
    }
    if !problems.is_empty() {
        problems.extend(larger_disk_hints(layout, &mapping, opts.resize));
        return Err(input_error(format!("the target disks are too small; nothing was written:\n  {}", problems.join("\n  "))));
    }
    resize::stack_sizes(layout, &mut sizes, opts.resize)?;

    // Stacked devices, in dependency order.
    let mut ready: BTreeSet<String> = devices.keys().cloned().collect();
    let mut done_raid = BTreeSet::new();
    let mut done_luks = BTreeSet::new();
    let mut done_vg = BTreeSet::new();
    loop {
        let mut progress = false;
        for r in &layout.raids {
            if done_raid.contains(&r.name) || !r.devices.iter().chain(&r.spares).all(|d| ready.contains(d)) {
                continue;
            }
            let dev = PathBuf::from(format!("/dev/{}", r.name));
            let mut members: Vec<Option<PathBuf>> = r.devices.iter().map(|d| devices.get(d).cloned()).collect();
            while members.len() < r.raid_devices as usize {
                members.push(None);
            }
            ops.push(Operation::CreateRaid {
                block: r.name.clone(),
                device: dev.clone(),
                level: r.level.clone(),
                metadata: r.metadata.clone(),
                uuid: r.uuid.clone(),
                array_name: r.array_name.clone(),
                chunk: r.chunk,
                layout: r.layout.clone(),
                raid_devices: r.raid_devices,
                members,
                spares: r.spares.iter().filter_map(|d| devices.get(d).cloned()).collect(),
            });
            devices.insert(r.name.clone(), dev);
            ready.insert(r.name.clone());
            done_raid.insert(r.name.clone());
            progress = true;
        }
        for l in &layout.luks {
            if done_luks.contains(&l.name) || !ready.contains(&l.device) {
                continue;
            }
            let dev = devices[&l.device].clone();
            let mapper = PathBuf::from(format!("/dev/mapper/{}", l.name));
            // An encryption sector below the target's sector size is slower at
            // best; LUKS2 takes the target's (what cryptsetup picks by itself there).
            let sectors = planned_sector_size(layout, &mapping, &l.name) as u32;
            let sector_size = if l.version >= 2 && (l.sector_size.is_some() || sectors > 512) { Some(sectors) } else { l.sector_size };
            if sector_size != l.sector_size {
                notes.push(format!(
                    "LUKS {} gets {sectors}-byte encryption sectors (recorded: {}) to match the target disk's sectors",
                    l.name,
                    l.sector_size.map(|s| format!("{s} bytes")).unwrap_or_else(|| "cryptsetup's default".into())
                ));
            }
            // The data area starts on a whole sector of the device and of the encryption
            // (`--offset` counts 512-byte sectors whatever the disk's).
            let offset = l.offset.map(|o| o.div_ceil(u64::from(sectors) / 512) * (u64::from(sectors) / 512));
            if offset != l.offset {
                notes.push(format!(
                    "LUKS {}'s data area moves from 512-byte sector {} to {} to start on a whole {sectors}-byte sector",
                    l.name,
                    l.offset.unwrap_or(0),
                    offset.unwrap_or(0)
                ));
            }
            ops.push(Operation::CreateLuks {
                block: l.name.clone(),
                device: dev.clone(),
                version: l.version,
                uuid: l.uuid.clone(),
                cipher: l.cipher.clone(),
                key_size: l.key_size,
                hash: l.hash.clone(),
                pbkdf: l.pbkdf.clone(),
                label: l.label.clone(),
                subsystem: l.subsystem.clone(),
                sector_size,
                offset,
            });
            ops.push(Operation::OpenLuks { block: l.name.clone(), device: dev, mapper: mapper.clone() });
            devices.insert(l.name.clone(), mapper);
            ready.insert(l.name.clone());
            done_luks.insert(l.name.clone());
            progress = true;
        }
        for vg in &layout.lvm_vgs {
            let pvs: Vec<_> = layout.lvm_pvs.iter().filter(|pv| pv.vg == vg.name).collect();
            if done_vg.contains(&vg.name) || !pvs.iter().all(|pv| ready.contains(&pv.device)) {
                continue;
            }
            for pv in &pvs {
                ops.push(Operation::CreatePv { block: pv.device.clone(), device: devices[&pv.device].clone(), uuid: pv.uuid.clone(), vg: vg.name.clone() });
            }
            ops.push(Operation::CreateVg {
                name: vg.name.clone(),
                uuid: vg.uuid.clone(),
                extent_size: vg.extent_size,
                pvs: pvs.iter().map(|pv| PvRef { device: devices[&pv.device].clone(), uuid: pv.uuid.clone() }).collect(),
            });
            // Striped LVs first: each needs a free run on several PVs, which linear
            // LVs (that take any free extents) could otherwise use up.
            let mut lvs: Vec<_> = layout.lvm_lvs.iter().filter(|lv| lv.vg == vg.name).collect();
            lvs.sort_by_key(|lv| lv.stripes <= 1);
            for lv in lvs {
                if !crate::layout::LVM_SEGMENT_TYPES.contains(&lv.segment_type.as_str()) {
                    return Err(input_error(format!(
                        "logical volume {} has segment type {}; this build recreates linear and striped volumes only: \
                         edit the descriptor to make it linear, or create it by hand after --layout-only",
                        lv.id(),
                        lv.segment_type,
                    )));
                }
                if let Some(problem) = lv.stripe_problem(vg.extent_size) {
                    return Err(input_error(problem));
                }
                if lv.stripes as usize > pvs.len() {
                    return Err(input_error(format!(
                        "logical volume {} has {} stripes but its volume group has {} physical volume(s)",
                        lv.id(),
                        lv.stripes,
                        pvs.len()
                    )));
                }
                let dev = lv_path(&lv.vg, &lv.name);
                let size = sizes.get(&lv.id()).copied().unwrap_or(lv.size);
                if size != lv.size {
                    resized.push(Resized { block: lv.id(), recorded_size: lv.size, new_size: size });
                }
                ops.push(Operation::CreateLv {
                    vg: lv.vg.clone(),
                    name: lv.name.clone(),
                    uuid: lv.uuid.clone(),
                    size,
                    stripes: lv.stripes.max(1),
                    stripe_size: lv.stripe_bytes(),
                    device: dev.clone(),
                });
                devices.insert(lv.id(), dev);
                ready.insert(lv.id());
            }
            ops.push(Operation::ActivateVg { name: vg.name.clone() });
            done_vg.insert(vg.name.clone());
            progress = true;
        }
        if !progress {
            break;
        }
    }
    let unbuilt: Vec<String> = layout
        .raids
        .iter()
        .map(|r| r.name.clone())
        .filter(|n| !done_raid.contains(n))
        .chain(layout.luks.iter().map(|l| l.name.clone()).filter(|n| !done_luks.contains(n)))
        .chain(layout.lvm_vgs.iter().map(|v| v.name.clone()).filter(|n| !done_vg.contains(n)))
        .collect();
    if !unbuilt.is_empty() {
        return Err(input_error(format!("cannot build {}: they sit on devices that are not in the descriptor or not mapped", unbuilt.join(", "))));
    }

    // Check space for data, then filesystems and swap.
    let mut short = Vec::new();
    for f in &layout.filesystems {
        let Some(dev) = devices.get(&f.device) else {
            return Err(input_error(format!("the filesystem {} sits on {}, which the plan does not create", f.uuid, f.device)));
        };
        let size = sizes.get(&f.device).copied().unwrap_or(0);
        if !capacity::holds_data(f, size) {
            let need = capacity::min_device_bytes(f).max(size);
            short.push(format!(
                "{} filesystem on {} ({}) holds {} of data and needs a device of at least {} (with its own metadata) but would \
                 get {}: {} missing",
                f.fstype,
                f.device,
                dev.display(),
                human_bytes(f.used_bytes),
                human_bytes(need),
                human_bytes(size),
                human_bytes(need - size)
            ));
        }
    }
    if !short.is_empty() {
        short.extend(larger_disk_hints(layout, &mapping, opts.resize));
        return Err(input_error(format!("the target disks are too small; nothing was written:\n  {}", short.join("\n  "))));
    }
    for f in &layout.filesystems {
        let dev = devices[&f.device].clone();
        let size = sizes.get(&f.device).copied().unwrap_or(0);
        let same_size = resize::recorded_size(layout, &f.device) == Some(size);
        let sector_size = planned_sector_size(layout, &mapping, &f.device);
        let fat = match f.fstype {
            FsType::Vfat => Some(plan_fat(layout, f, &dev, size, sector_size, &mut notes)?),
            _ => None,
        };
        let fs = f.clone();
        ops.push(Operation::MakeFilesystem {
            block: f.device.clone(),
            device: dev.clone(),
            device_size: size,
            same_size,
            sector_size,
            fat,
            extra_devices: f.extra_devices.iter().filter_map(|d| devices.get(d).cloned()).collect(),
            filesystem: fs,
        });
        if let Some(b) = &f.btrfs {
            let mut subs: Vec<_> = b.subvolumes.iter().filter(|s| !s.snapshot).collect();
            subs.sort_by_key(|s| s.id);
            for s in subs {
                ops.push(Operation::CreateSubvolume { block: f.device.clone(), device: dev.clone(), path: s.path.clone(), readonly: s.readonly });
            }
            if let Some(d) = b.default_subvolume.as_ref().filter(|d| !d.is_empty()) {
                ops.push(Operation::SetDefaultSubvolume { block: f.device.clone(), device: dev.clone(), path: d.clone() });
            }
        }
    }
    for s in &layout.swaps {
        let Some(dev) = devices.get(&s.device) else {
            return Err(input_error(format!("the swap space on {} sits on a device the plan does not create", s.device)));
        };
        ops.push(Operation::MakeSwap { block: s.device.clone(), device: dev.clone(), uuid: s.uuid.clone(), label: s.label.clone() });
    }

    // Mounts, parents before children.
    let mut mounts: Vec<_> = layout.mounts.iter().collect();
    mounts.sort_by(|a, b| depth(&a.path).cmp(&depth(&b.path)).then(a.path.cmp(&b.path)));
    for m in mounts {
        let Some(fs) = layout.filesystem_on(&m.device) else { continue };
        let Some(dev) = devices.get(&m.device) else { continue };
        ops.push(Operation::Mount {
            path: m.path.clone(),
            target: opts.target_root.join(&m.path)?,
            block: m.device.clone(),
            device: dev.clone(),
            fstype: fs.fstype,
            options: mount_options(&m.options),
            subvol: m.subvol.clone(),
        });
    }
    resized.sort_by(|a, b| a.block.cmp(&b.block));
    resized.dedup_by(|a, b| a.block == b.block);
    Ok(Plan {
        host: layout.host.hostname.clone(),
        target_root: opts.target_root.clone(),
        resize: opts.resize,
        mapping,
        resized,
        devices,
        notes,
        operations: ops,
        nics: NicPlan::default(),
    })
}

/// The logical sector size of block id `id` once recreated: the largest of
/// the target disks under it and of the LUKS encryption sectors under it.
fn planned_sector_size(layout: &Layout, mapping: &[DiskAssignment], id: &str) -> u64 {
    let mut size = 512;
    let mut todo = vec![id.to_string()];
    let mut seen = BTreeSet::new();
    while let Some(cur) = todo.pop() {
        if !seen.insert(cur.clone()) {
            continue;
        }
        if let Some(m) = mapping.iter().find(|m| m.recorded == cur) {
            size = size.max(m.logical_sector_size);
        }
        if let Some(l) = layout.luks.iter().find(|l| l.name == cur) {
            size = size.max(u64::from(l.sector_size.unwrap_or(512)));
        }
        todo.extend(layout.parents_of(&cur));
    }
    size
}

/// The FAT a recorded vfat filesystem is made with on `size` bytes of
/// `sector_size`-byte sectors; a FAT type other than the recorded one is noted.
fn plan_fat(layout: &Layout, f: &Filesystem, dev: &Path, size: u64, sector_size: u64, notes: &mut Vec<String>) -> Result<fat::FatFormat> {
    let wanted = recorded_fat_size(f, size);
    // The recorded cluster size counts the recorded disks' sectors.
    let recorded_lss = layout.disks_under(&f.device).iter().filter_map(|d| layout.disk(d)).map(|d| d.logical_sector_size).max().unwrap_or(512);
    let cluster = f.vfat.as_ref().and_then(|v| v.sectors_per_cluster).map(|s| u64::from(s) * recorded_lss);
    let chosen = fat::choose(wanted, cluster, size, sector_size).ok_or_else(|| {
        input_error(format!(
            "the vfat filesystem on {} ({}) cannot be made on {} of {sector_size}-byte sectors: no FAT type has a valid cluster count there; \
             map a larger disk with --map",
            f.device,
            dev.display(),
            human_bytes(size)
        ))
    })?;
    if chosen.fat_size != wanted {
        notes.push(format!(
            "the vfat filesystem on {} ({}) is made as {chosen} instead of the recorded FAT{wanted}: on {} of {sector_size}-byte sectors \
             a FAT{wanted} cannot have a valid cluster count (FAT32 needs at least {}, FAT16 at least {})",
            f.device,
            dev.display(),
            human_bytes(size),
            fat::thousands(fat::MIN_FAT32_CLUSTERS),
            fat::thousands(fat::MIN_FAT16_CLUSTERS),
        ));
    }
    Ok(chosen)
}

fn depth(p: &str) -> usize {
    p.split('/').filter(|c| !c.is_empty()).count()
}

/// fstab options minus those that only mean something to fstab or systemd.
pub fn mount_options(fstab: &str) -> String {
    let keep: Vec<&str> = fstab
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .filter(|o| {
            !matches!(*o, "defaults" | "auto" | "noauto" | "nofail" | "user" | "users" | "nouser" | "owner" | "_netdev" | "group")
                && !o.starts_with("x-")
                && !o.starts_with("comment=")
                && !o.starts_with("subvol=")
                && !o.starts_with("subvolid=")
        })
        .collect();
    if keep.is_empty() {
        "defaults".into()
    } else {
        keep.join(",")
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Operation::*;
        match self {
            Wipe { disk, device } => write!(
                f,
                "wipe {} (for recorded {disk}): deactivate what is on it, erase partition tables and LVM/MD/LUKS/filesystem signatures",
                device.display()
            ),
            CreatePartitionTable { device, table, disk_guid, mbr_signature, .. } => {
                write!(f, "create {} partition table on {}", table_name(*table), device.display())?;
                if let Some(g) = disk_guid {
                    write!(f, ", disk GUID {g}")?;
                }
                if let Some(s) = mbr_signature {
                    write!(f, ", disk signature {s}")?;
                }
                Ok(())
            }
            CreatePartition { block, device, partition: p, logical_sector_size, .. } => {
                write!(
                    f,
                    "create partition {} ({block}) #{} start {} size {} sectors ({}) type {}",
                    device.display(),
                    p.number,
                    p.start,
                    p.size,
                    human_bytes(p.size * logical_sector_size),
                    p.type_id
                )?;
                match p.kind {
                    PartitionKind::Extended => write!(f, " extended")?,
                    PartitionKind::Logical => write!(f, " logical")?,
                    PartitionKind::Primary => {}
                }
                if let Some(u) = &p.uuid {
                    write!(f, " uuid {u}")?;
                }
                if let Some(l) = &p.label {
                    write!(f, " name {l:?}")?;
                }
                if let Some(a) = &p.attrs {
                    write!(f, " attrs {a:?}")?;
                }
                if p.bootable {
                    write!(f, " bootable")?;
                }
                Ok(())
            }
            Settle { device, partitions, .. } => write!(
                f,
                "re-read the partition table of {} and wait for {}",
                device.display(),
                partitions.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
            WipeSignatures { device, .. } => write!(f, "erase stale signatures on {}", device.display()),
            CreateRaid { device, level, metadata, uuid, members, spares, .. } => write!(
                f,
                "create {level} array {} (metadata {metadata}, uuid {uuid}) from {}{}",
                device.display(),
                members.iter().map(|m| m.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "missing".into())).collect::<Vec<_>>().join(", "),
                if spares.is_empty() {
                    String::new()
                } else {
                    format!(", spares {}", spares.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))
                }
            ),
            CreateLuks { device, version, uuid, cipher, key_size, .. } => {
                write!(f, "format {} as LUKS{version} (uuid {uuid}, {cipher}, {key_size}-bit key)", device.display())
            }
            OpenLuks { device, mapper, .. } => write!(f, "open LUKS {} as {}", device.display(), mapper.display()),
            CreatePv { device, uuid, vg, .. } => write!(f, "create LVM physical volume {} (uuid {uuid}) for {vg}", device.display()),
            CreateVg { name, uuid, extent_size, pvs } => write!(
                f,
                "create volume group {name} (uuid {uuid}, extents {}) on {}",
                human_bytes(*extent_size),
                pvs.iter().map(|p| p.device.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
            CreateLv { vg, name, uuid, size, stripes, stripe_size, .. } => {
                write!(f, "create logical volume {vg}/{name} (uuid {uuid}) of {}", human_bytes(*size))?;
                if *stripes > 1 {
                    write!(f, ", {stripes} stripes of {}", human_bytes(*stripe_size))?;
                }
                Ok(())
            }
            ActivateVg { name } => write!(f, "activate volume group {name}"),
            MakeFilesystem { device, filesystem: fs, device_size, fat, .. } => {
                write!(f, "make {} on {} ({}) uuid {}", fs.fstype, device.display(), human_bytes(*device_size), fs.uuid)?;
                if let Some(x) = fat {
                    write!(f, " as {x}")?;
                }
                if let Some(l) = &fs.label {
                    write!(f, " label {l:?}")?;
                }
                Ok(())
            }
            MakeSwap { device, uuid, label, .. } => {
                write!(f, "make swap on {}", device.display())?;
                if let Some(u) = uuid {
                    write!(f, " uuid {u}")?;
                }
                if let Some(l) = label {
                    write!(f, " label {l:?}")?;
                }
                Ok(())
            }
            CreateSubvolume { device, path, readonly, .. } => {
                write!(f, "create btrfs subvolume {path} on {}{}", device.display(), if *readonly { " (read-only)" } else { "" })
            }
            SetDefaultSubvolume { device, path, .. } => write!(f, "set the default subvolume of {} to {path}", device.display()),
            Mount { path, target, device, fstype, options, subvol, .. } => {
                write!(f, "mount {} ({fstype}) on {} for {path} with {options}", device.display(), target.display())?;
                if let Some(s) = subvol {
                    write!(f, ", subvolume {s}")?;
                }
                Ok(())
            }
        }
    }
}

fn table_name(t: TableType) -> &'static str {
    match t {
        TableType::Gpt => "GPT",
        TableType::Msdos => "MBR",
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Recovery plan for {}: {} operations, mounted under {}", self.host, self.operations.len(), self.target_root.display())?;
        writeln!(f, "Disk mapping:")?;
        for m in &self.mapping {
            writeln!(f, "  {} ({}) -> {} ({}): {}", m.recorded, human_bytes(m.recorded_size), m.device.display(), human_bytes(m.size), m.reason)?;
        }
        if !self.resized.is_empty() {
            writeln!(f, "Size changes (policy {}):", self.resize)?;
            for r in &self.resized {
                writeln!(f, "  {}: {} -> {}", r.block, human_bytes(r.recorded_size), human_bytes(r.new_size))?;
            }
        }
        if !self.nics.is_empty() {
            writeln!(f, "Network interfaces (the recovered system's config is rewritten for them):")?;
            write!(f, "{}", self.nics)?;
        }
        if !self.notes.is_empty() {
            writeln!(f, "Changes from the recorded system:")?;
            for n in &self.notes {
                writeln!(f, "  - {n}")?;
            }
        }
        writeln!(f, "Operations:")?;
        for (i, op) in self.operations.iter().enumerate() {
            writeln!(f, "  {:>3}. {op}", i + 1)?;
        }
        Ok(())
    }
}
