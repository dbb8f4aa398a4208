//! Fitting a recorded disk onto a disk of another size, and carrying the
//! change up the stack (RAID, LUKS, PV, VG, LV) to the filesystems.
//!
//! Policy `last`: the last partition that may change size takes the whole
//! difference; partitions after it keep their sizes and move. Policy
//! `proportional`: every partition that may change size scales by the same
//! factor. BIOS boot, ESP, /boot, swap and extended containers keep their
//! sizes (a partition's `fixed` overrides). Inside a VG, LVs follow the same
//! policy (swap and /boot LVs keep their sizes); free extents stay free.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::error::input_error;
use crate::layout::{Disk, Layout, Partition, PartitionKind, TableType};
use crate::util::human_bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ResizePolicy {
    #[default]
    Last,
    Proportional,
}

impl std::fmt::Display for ResizePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ResizePolicy::Last => "last",
            ResizePolicy::Proportional => "proportional",
        })
    }
}

/// A partition's place on the target disk, in the target's logical sectors.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlacedPartition {
    pub name: String,
    pub start: u64,
    pub size: u64,
}

/// Bytes of a GPT partition entry array (128 entries of 128 bytes).
const GPT_ARRAY: u64 = 16384;
/// Alignment of moved partitions.
const ALIGN_BYTES: u64 = 1 << 20;

/// First usable and end (exclusive) of the usable area, in sectors.
pub fn usable_area(table: Option<TableType>, size: u64, lss: u64) -> (u64, u64) {
    let total = size / lss;
    match table {
        Some(TableType::Gpt) => {
            let array = GPT_ARRAY.div_ceil(lss);
            (2 + array, total.saturating_sub(1 + array))
        }
        _ => (1, total),
    }
}

const ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// GPT type of the BIOS boot partition (where GRUB for BIOS puts its core image).
pub const BIOS_BOOT: &str = "21686148-6449-6E6F-744E-656564454649";
const GPT_SWAP: &str = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F";

/// Whether a GPT or MBR partition type is an EFI system partition.
pub fn is_esp_type(type_id: &str) -> bool {
    let t = type_id.to_ascii_uppercase();
    t == ESP || t == "EF"
}

/// Whether a partition keeps its size when the disk size changes.
pub fn is_fixed(layout: &Layout, p: &Partition) -> bool {
    if let Some(f) = p.fixed {
        return f;
    }
    if p.kind == PartitionKind::Extended {
        return true;
    }
    let t = p.type_id.to_ascii_uppercase();
    if t == ESP || t == BIOS_BOOT || t == GPT_SWAP || t == "EF" || t == "82" {
        return true;
    }
    keeps_size(layout, &p.name)
}

/// Whether what sits on a block id wants a fixed size: only swap, or /boot,
/// /boot/efi.
fn keeps_size(layout: &Layout, id: &str) -> bool {
    let mut terminals = Vec::new();
    let mut todo = vec![id.to_string()];
    let mut n = 0;
    while let Some(cur) = todo.pop() {
        n += 1;
        if n > 10_000 {
            break;
        }
        if let Some(f) = layout.filesystem_on(&cur) {
            let boot = layout.mounts.iter().any(|m| m.device == cur && (m.path == "/boot" || m.path == "/boot/efi"));
            terminals.push(if boot { "boot" } else { "fs" });
            let _ = f;
        }
        if layout.swaps.iter().any(|s| s.device == cur) {
            terminals.push("swap");
        }
        todo.extend(children_of(layout, &cur));
    }
    !terminals.is_empty() && terminals.iter().all(|t| *t != "fs")
}

/// The block ids sitting directly on `id`.
pub fn children_of(layout: &Layout, id: &str) -> Vec<String> {
    let mut v: Vec<String> = layout.partitions.iter().filter(|p| p.disk == id).map(|p| p.name.clone()).collect();
    v.extend(layout.raids.iter().filter(|r| r.devices.iter().chain(&r.spares).any(|d| d == id)).map(|r| r.name.clone()));
    v.extend(layout.luks.iter().filter(|l| l.device == id).map(|l| l.name.clone()));
    for pv in layout.lvm_pvs.iter().filter(|pv| pv.device == id) {
        v.extend(layout.lvm_lvs.iter().filter(|lv| lv.vg == pv.vg).map(|lv| lv.id()));
    }
    v
}

fn floor_to(x: i64, a: i64) -> i64 {
    x.div_euclid(a) * a
}

/// Place a recorded disk's partitions on a disk of `new_size` bytes with
/// `new_lss`-byte sectors. Errors say how much is missing.
pub fn fit_partitions(layout: &Layout, disk: &Disk, new_size: u64, new_lss: u64, policy: ResizePolicy) -> Result<Vec<PlacedPartition>> {
    place_partitions(layout, disk, new_size, new_lss, policy, &BTreeMap::new())
}

/// [`fit_partitions`], where the partitions named in `grow` get at least
/// that many target sectors (an ESP too small for FAT32 on the target's
/// sectors); their growth comes out of the free space at the end, then out
/// of the partitions that may change size, as a smaller disk would.
///
/// Sector conversion: a start or end that is not on a target sector
/// boundary moves up to the next one (a partition never starts inside the
/// previous one's last sector), and nothing starts before the first usable
/// sector (34 on a 512-byte GPT disk is 17 KiB, inside a 4Kn GPT's
/// 24 KiB). A partition that changes size keeps a whole number of the
/// larger of both sector sizes: on a 512e target a 4Kn source's LUKS2 and
/// XFS keep their 4096-byte sectors.
pub fn place_partitions(
    layout: &Layout,
    disk: &Disk,
    new_size: u64,
    new_lss: u64,
    policy: ResizePolicy,
    grow: &BTreeMap<String, u64>,
) -> Result<Vec<PlacedPartition>> {
    let old_lss = disk.logical_sector_size.max(1);
    // Recorded sectors in target sectors, rounded up.
    let up = |s: u64| (s * old_lss).div_ceil(new_lss);
    let grain = (old_lss.max(new_lss) / new_lss) as i64;
    let (_, old_end) = usable_area(disk.table, disk.size, old_lss);
    let (first_usable, new_end) = usable_area(disk.table, new_size, new_lss);
    let old_end = up(old_end) as i64;
    let diff = new_end as i64 - old_end;
    let align = (ALIGN_BYTES / new_lss).max(1) as i64;

    let parts = layout.partitions_of(&disk.name);
    let ext = parts.iter().find(|p| p.kind == PartitionKind::Extended).copied();
    let mut seq: Vec<&Partition> = parts.iter().filter(|p| p.kind != PartitionKind::Extended).copied().collect();
    seq.sort_by_key(|p| p.start);
    let old: Vec<(i64, i64)> = seq
        .iter()
        .map(|p| {
            let (start, end) = (up(p.start).max(first_usable) as i64, up(p.start + p.size) as i64);
            (start, end - start)
        })
        .collect();
    let resizable: Vec<usize> = (0..seq.len()).filter(|&i| !is_fixed(layout, seq[i])).collect();
    let mut sizes: Vec<i64> = old.iter().map(|o| o.1).collect();
    let mut grown = 0;
    for (i, p) in seq.iter().enumerate() {
        let want = grow.get(&p.name).map(|&w| w as i64).unwrap_or(0);
        if want > sizes[i] {
            // Whole alignment units: the partitions after it stay aligned.
            let extra = (want - sizes[i] + align - 1) / align * align;
            sizes[i] += extra;
            grown += extra;
        }
    }
    let diff = diff - grown;
    // On a smaller disk, the free space after the last partition goes
    // first: partitions only shrink for what it does not cover.
    let last_end = old.iter().map(|o| o.0 + o.1).chain(ext.map(|e| up(e.start + e.size) as i64)).max().unwrap_or(0);
    let slack = floor_to((old_end - last_end).max(0), align);
    let diff = if diff < 0 { (diff + slack).min(0) } else { diff };

    if diff != 0 && !resizable.is_empty() {
        let last = *resizable.last().unwrap_or(&0);
        let followers = last + 1 < seq.len();
        // The extended container of logical partitions also needs its tail.
        let d = if followers { floor_to(diff, align) } else { floor_to(diff, grain) };
        match policy {
            ResizePolicy::Last => sizes[last] += d,
            ResizePolicy::Proportional => {
                let total: i64 = resizable.iter().map(|&i| old[i].1).sum();
                let new_total = total + d;
                let mut given = 0;
                for &i in &resizable {
                    let s = if new_total <= 0 { 0 } else { floor_to(((old[i].1 as i128) * (new_total as i128) / (total as i128)) as i64, align) };
                    sizes[i] = s;
                    given += s;
                }
                sizes[last] += new_total - given;
            }
        }
    }
    // Place in order, keeping the gaps between partitions.
    let mut placed = Vec::new();
    let mut prev_old_end: Option<i64> = None;
    let mut prev_new_end: i64 = 0;
    let mut problems = Vec::new();
    for (i, p) in seq.iter().enumerate() {
        let start = match prev_old_end {
            None => old[i].0,
            Some(pe) => prev_new_end + (old[i].0 - pe),
        };
        let min = (ALIGN_BYTES / new_lss) as i64;
        if sizes[i] < min.min(old[i].1) {
            let gets = if sizes[i] <= 0 { "no room at all".to_string() } else { human_bytes(sizes[i] as u64 * new_lss) };
            problems.push(format!("partition {} would get {gets} (it has {} recorded)", p.name, human_bytes(old[i].1 as u64 * new_lss)));
        }
        prev_old_end = Some(old[i].0 + old[i].1);
        prev_new_end = start + sizes[i];
        placed.push(PlacedPartition { name: p.name.clone(), start: start.max(0) as u64, size: sizes[i].max(0) as u64 });
    }
    if let Some(e) = ext {
        let logicals: Vec<&PlacedPartition> = placed.iter().filter(|pp| layout.partition(&pp.name).is_some_and(|p| p.kind == PartitionKind::Logical)).collect();
        let (es, ee) = (up(e.start) as i64, up(e.start + e.size) as i64);
        let (start, end) = match (logicals.first(), logicals.last()) {
            (Some(f), Some(l)) => {
                let of = seq.iter().position(|p| p.name == f.name).map(|i| old[i].0).unwrap_or(es);
                let ol = seq.iter().position(|p| p.name == l.name).map(|i| old[i].0 + old[i].1).unwrap_or(ee);
                let start = f.start as i64 - (of - es);
                let end = (l.start + l.size) as i64 + (ee - ol);
                (start, end.min(new_end as i64).max(l.start as i64 + l.size as i64))
            }
            _ => (es, ee),
        };
        placed.push(PlacedPartition { name: e.name.clone(), start: start as u64, size: (end - start).max(0) as u64 });
    }
    // A partition without room makes the others start too early or end too
    // late: saying so too would only repeat it.
    let squeezed = !problems.is_empty();
    let end_needed = placed.iter().map(|p| p.start + p.size).max().unwrap_or(0);
    if end_needed > new_end && !squeezed {
        let missing = (end_needed - new_end) * new_lss;
        problems.push(format!("the partitions need {} more than the {} disk offers", human_bytes(missing), human_bytes(new_size)));
    }
    if let Some(p) = placed.iter().find(|p| p.start < first_usable).filter(|_| !squeezed) {
        problems.push(format!("partition {} would start before the first usable sector {first_usable}", p.name));
    }
    if !problems.is_empty() {
        return Err(input_error(format!(
            "recorded disk {} ({}) does not fit on a {} disk: {}",
            disk.name,
            human_bytes(disk.size),
            human_bytes(new_size),
            problems.join("; ")
        )));
    }
    placed.sort_by_key(|p| layout.partition(&p.name).map(|x| x.number).unwrap_or(0));
    Ok(placed)
}

/// New sizes in bytes of every block id above the partitions, given the new
/// sizes of disks and partitions in `sizes`. Errors say how much is missing.
pub fn stack_sizes(layout: &Layout, sizes: &mut BTreeMap<String, u64>, policy: ResizePolicy) -> Result<()> {
    let old_size = |id: &str| -> u64 { recorded_size(layout, id).unwrap_or(0) };
    // RAID, LUKS and VGs can stack in any order: repeat until nothing changes.
    let mut rounds = 0;
    loop {
        rounds += 1;
        let mut progress = false;
        for r in &layout.raids {
            if sizes.contains_key(&r.name) || !r.devices.iter().all(|d| sizes.contains_key(d)) {
                continue;
            }
            let n = r.raid_devices.max(1) as u64;
            let factor = |n: u64| -> (u64, u64) {
                match r.level.as_str() {
                    "raid0" | "linear" => (n, 1),
                    "raid4" | "raid5" => (n.saturating_sub(1).max(1), 1),
                    "raid6" => (n.saturating_sub(2).max(1), 1),
                    "raid10" => (n, 2),
                    _ => (1, 1),
                }
            };
            let (num, den) = factor(n);
            let min_old = r.devices.iter().map(|d| old_size(d)).min().unwrap_or(0);
            let min_new = r.devices.iter().map(|d| sizes[d]).min().unwrap_or(0);
            let per_member_old = r.size * den / num;
            let overhead = min_old.saturating_sub(per_member_old);
            let new = if min_new == min_old { r.size } else { min_new.saturating_sub(overhead) * num / den };
            sizes.insert(r.name.clone(), new);
            progress = true;
        }
        for l in &layout.luks {
            if sizes.contains_key(&l.name) {
                continue;
            }
            let Some(&dev_new) = sizes.get(&l.device) else { continue };
            let dev_old = old_size(&l.device);
            let header = match l.size {
                Some(s) => dev_old.saturating_sub(s),
                None => l.offset.map(|o| o * 512).unwrap_or(16 << 20),
            };
            sizes.insert(l.name.clone(), dev_new.saturating_sub(header));
            progress = true;
        }
        for vg in &layout.lvm_vgs {
            let pvs: Vec<_> = layout.lvm_pvs.iter().filter(|pv| pv.vg == vg.name).collect();
            let lvs: Vec<_> = layout.lvm_lvs.iter().filter(|lv| lv.vg == vg.name).collect();
            if lvs.iter().all(|lv| sizes.contains_key(&lv.id())) && !lvs.is_empty() {
                continue;
            }
            if !pvs.iter().all(|pv| sizes.contains_key(&pv.device)) {
                continue;
            }
            fit_vg(layout, &vg.name, vg.extent_size.max(1), sizes, policy)?;
            progress = true;
        }
        if !progress || rounds > 1000 {
            break;
        }
    }
    Ok(())
}

fn fit_vg(layout: &Layout, vg: &str, extent: u64, sizes: &mut BTreeMap<String, u64>, policy: ResizePolicy) -> Result<()> {
    let pvs: Vec<_> = layout.lvm_pvs.iter().filter(|pv| pv.vg == vg).collect();
    let lvs: Vec<_> = layout.lvm_lvs.iter().filter(|lv| lv.vg == vg).collect();
    // The bytes of extents a PV offers on a device of `dev_size`. The recorded `pv_size` is
    // LVM's pe_count x extent size: the device keeps losing what it lost to LVM's header and
    // rounding (exact on a same-size device, never more than there is on another). Without
    // it, LVM's first MiB goes to its label and metadata.
    let usable = |dev_size: u64, pv: &crate::layout::LvmPv, dev_old: u64| -> u64 {
        match pv.size {
            Some(s) => dev_size.saturating_sub(dev_old.saturating_sub(s)),
            None => dev_size.saturating_sub(1 << 20),
        }
    };
    let mut old_total = 0u64;
    let mut new_total = 0u64;
    for pv in &pvs {
        let dev_old = recorded_size(layout, &pv.device).unwrap_or(0);
        old_total += usable(dev_old, pv, dev_old) / extent;
        new_total += usable(sizes[&pv.device], pv, dev_old) / extent;
    }
    let old_ext: Vec<u64> = lvs.iter().map(|lv| lv.size.div_ceil(extent)).collect();
    let used: u64 = old_ext.iter().sum();
    let mut new_ext = old_ext.clone();
    let resizable: Vec<usize> = (0..lvs.len()).filter(|&i| !keeps_size(layout, &lvs[i].id())).collect();
    let delta: i64 = if new_total >= old_total {
        (new_total - old_total) as i64
    } else if new_total >= used {
        0
    } else {
        -((used - new_total) as i64)
    };
    if delta != 0 && !resizable.is_empty() {
        match policy {
            ResizePolicy::Last => {
                let i = *resizable.last().unwrap_or(&0);
                new_ext[i] = (old_ext[i] as i64 + delta).max(0) as u64;
            }
            ResizePolicy::Proportional => {
                let total: u64 = resizable.iter().map(|&i| old_ext[i]).sum();
                let new_res = (total as i64 + delta).max(0) as u64;
                let mut given = 0;
                for &i in &resizable {
                    new_ext[i] = (old_ext[i] * new_res).checked_div(total).unwrap_or(0);
                    given += new_ext[i];
                }
                let last = *resizable.last().unwrap_or(&0);
                new_ext[last] += new_res - given;
            }
        }
    }
    let need: u64 = new_ext.iter().sum();
    if need > new_total || new_ext.iter().zip(&old_ext).any(|(n, o)| *n == 0 && *o > 0) {
        return Err(input_error(format!(
            "volume group {vg} does not fit: its logical volumes need {} but its physical volumes would offer {}: {} missing",
            human_bytes(need.max(used) * extent),
            human_bytes(new_total * extent),
            human_bytes(need.max(used).saturating_sub(new_total) * extent)
        )));
    }
    for (i, lv) in lvs.iter().enumerate() {
        let s = if new_ext[i] == old_ext[i] { lv.size } else { new_ext[i] * extent };
        sizes.insert(lv.id(), s);
    }
    Ok(())
}

/// The recorded size in bytes of a block id.
pub fn recorded_size(layout: &Layout, id: &str) -> Option<u64> {
    if let Some(d) = layout.disk(id) {
        return Some(d.size);
    }
    if let Some(p) = layout.partition(id) {
        let lss = layout.disk(&p.disk).map(|d| d.logical_sector_size).unwrap_or(512);
        return Some(p.size * lss);
    }
    if let Some(r) = layout.raids.iter().find(|r| r.name == id) {
        return Some(r.size);
    }
    if let Some(l) = layout.luks.iter().find(|l| l.name == id) {
        let dev = recorded_size(layout, &l.device)?;
        return Some(l.size.unwrap_or(dev.saturating_sub(l.offset.map(|o| o * 512).unwrap_or(16 << 20))));
    }
    layout.lvm_lvs.iter().find(|l| l.id() == id).map(|l| l.size)
}
