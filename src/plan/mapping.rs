//! Which present disk receives which recorded disk.
//!
//! Order of evidence: an explicit mapping (`--map`, then the config's
//! `[mapping]`), then stable identity (WWN, serial, by-id name), then the same
//! size, then the only unused disk that can hold the recorded one. Busy disks
//! and virtual disks (loop, RAM) are never chosen automatically. Recorded
//! disks that are interchangeable (the members of a mirror: same size, same
//! partitions, each partition in the same RAID array or holding nothing) and
//! have exactly as many same-size candidates go to them in name order: any
//! order gives the same system. When more than one candidate remains
//! otherwise the caller gets the candidates, to ask a person or to stop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use crate::inventory::{Inventory, PresentDisk};
use crate::layout::{Disk, Layout};
use crate::util::human_bytes;

/// Why a recorded disk went to a present disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MatchReason {
    /// `--map` or the config's `[mapping]`.
    Explicit,
    Wwn,
    Serial,
    ById,
    SameSize,
    /// One of several interchangeable recorded disks (mirror members) onto
    /// as many same-size disks, in name order.
    Interchangeable,
    /// The only unused disk that can hold it.
    OnlyFitting,
    /// A person chose it when asked.
    Chosen,
}

impl std::fmt::Display for MatchReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MatchReason::Explicit => "mapped explicitly",
            MatchReason::Wwn => "same WWN",
            MatchReason::Serial => "same serial number",
            MatchReason::ById => "same /dev/disk/by-id name",
            MatchReason::SameSize => "the only unused disk of the same size",
            MatchReason::Interchangeable => "same size; the recorded disks are interchangeable (same partitions, members of the same RAID arrays)",
            MatchReason::OnlyFitting => "the only unused disk large enough",
            MatchReason::Chosen => "chosen interactively",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DiskAssignment {
    /// Block id of the recorded disk.
    pub recorded: String,
    pub recorded_size: u64,
    /// Present disk's kernel name and path.
    pub name: String,
    pub device: PathBuf,
    pub size: u64,
    pub logical_sector_size: u64,
    pub reason: MatchReason,
}

/// A recorded disk with several possible targets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ambiguity {
    pub disk: String,
    pub candidates: Vec<PathBuf>,
}

/// The mapping could not be completed without help.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct MappingProblem {
    pub ambiguous: Vec<Ambiguity>,
    /// Recorded disks with no possible target, with the reason.
    pub missing: Vec<(String, String)>,
    /// Errors in the explicit mapping.
    pub errors: Vec<String>,
}

impl std::fmt::Display for MappingProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut lines = Vec::new();
        lines.extend(self.errors.iter().cloned());
        for a in &self.ambiguous {
            lines.push(format!(
                "recorded disk {} could go to any of {}; choose with --map {}=DEVICE (or [mapping] in the config)",
                a.disk,
                a.candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", "),
                a.disk
            ));
        }
        for (d, why) in &self.missing {
            lines.push(format!("recorded disk {d} has no target: {why}; attach a disk or map one with --map {d}=DEVICE"));
        }
        f.write_str(&lines.join("\n"))
    }
}

fn assignment(d: &Disk, p: &PresentDisk, reason: MatchReason) -> DiskAssignment {
    DiskAssignment {
        recorded: d.name.clone(),
        recorded_size: d.size,
        name: p.name.clone(),
        device: p.path.clone(),
        size: p.size,
        logical_sector_size: p.logical_sector_size,
        reason,
    }
}

/// Map every recorded disk to a present disk. `explicit` is recorded block id
/// to device (`/dev/sdb`, `sdb` or a by-id name); `fits` says whether a present
/// disk can hold a recorded one (used for the last, size-based rule).
pub fn map_disks(
    layout: &Layout,
    inv: &Inventory,
    explicit: &BTreeMap<String, String>,
    fits: &dyn Fn(&Disk, &PresentDisk) -> bool,
) -> Result<Vec<DiskAssignment>, MappingProblem> {
    let mut problem = MappingProblem::default();
    let mut assigned: BTreeMap<String, DiskAssignment> = BTreeMap::new();
    let mut used: BTreeSet<String> = BTreeSet::new();

    for (old, new) in explicit {
        let Some(d) = layout.disk(old) else {
            problem.errors.push(format!(
                "the mapping names {old}, which is not a disk in the descriptor (its disks: {})",
                layout.disks.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ")
            ));
            continue;
        };
        let Some(p) = inv.find(new) else {
            problem.errors.push(format!(
                "the mapping {old}={new} names a device that is not a disk on this machine (present disks: {})",
                inv.disks.iter().map(|d| d.path.display().to_string()).collect::<Vec<_>>().join(", ")
            ));
            continue;
        };
        if !used.insert(p.name.clone()) {
            problem.errors.push(format!("the mapping sends two recorded disks to {}", p.path.display()));
            continue;
        }
        assigned.insert(d.name.clone(), assignment(d, p, MatchReason::Explicit));
    }

    let free = |p: &PresentDisk, used: &BTreeSet<String>| !used.contains(&p.name) && p.busy.is_empty();

    // Stable identity.
    for d in &layout.disks {
        if assigned.contains_key(&d.name) {
            continue;
        }
        let matches: Vec<(&PresentDisk, MatchReason)> =
            inv.disks.iter().filter(|p| free(p, &used)).filter_map(|p| identity_match(d, p).map(|r| (p, r))).collect();
        match matches.as_slice() {
            [(p, r)] => {
                used.insert(p.name.clone());
                assigned.insert(d.name.clone(), assignment(d, p, *r));
            }
            [] => {}
            many => problem.ambiguous.push(Ambiguity { disk: d.name.clone(), candidates: many.iter().map(|(p, _)| p.path.clone()).collect() }),
        }
    }
    let ambiguous_ids: BTreeSet<String> = problem.ambiguous.iter().map(|a| a.disk.clone()).collect();

    // Size: first the same size, then the only disk that fits. A candidate
    // wanted by two recorded disks is ambiguous for both.
    for rule in [MatchReason::SameSize, MatchReason::OnlyFitting] {
        let mut wanted: Vec<(&Disk, Vec<&PresentDisk>)> = Vec::new();
        for d in &layout.disks {
            if assigned.contains_key(&d.name) || ambiguous_ids.contains(&d.name) {
                continue;
            }
            let c: Vec<&PresentDisk> = inv
                .disks
                .iter()
                .filter(|p| free(p, &used) && !p.virtual_disk)
                .filter(|p| match rule {
                    MatchReason::SameSize => p.size == d.size,
                    _ => fits(d, p),
                })
                .collect();
            wanted.push((d, c));
        }
        if rule == MatchReason::SameSize {
            assign_interchangeable(layout, &wanted, &mut used, &mut assigned);
        }
        for (d, c) in &wanted {
            if assigned.contains_key(&d.name) {
                continue;
            }
            let contested = c.len() == 1 && wanted.iter().filter(|(_, o)| o.iter().any(|p| p.name == c[0].name)).count() > 1;
            match c.as_slice() {
                [p] if !contested => {
                    used.insert(p.name.clone());
                    assigned.insert(d.name.clone(), assignment(d, p, rule));
                }
                [] => {}
                many => {
                    if rule == MatchReason::OnlyFitting || !problem.ambiguous.iter().any(|a| a.disk == d.name) {
                        problem.ambiguous.retain(|a| a.disk != d.name);
                        problem.ambiguous.push(Ambiguity { disk: d.name.clone(), candidates: many.iter().map(|p| p.path.clone()).collect() });
                    }
                }
            }
        }
    }
    problem.ambiguous.retain(|a| !assigned.contains_key(&a.disk));
    problem.ambiguous.sort_by(|a, b| a.disk.cmp(&b.disk));
    problem.ambiguous.dedup_by(|a, b| a.disk == b.disk);

    for d in &layout.disks {
        if assigned.contains_key(&d.name) || problem.ambiguous.iter().any(|a| a.disk == d.name) {
            continue;
        }
        let why = if inv.disks.iter().any(|p| free(p, &used) && !p.virtual_disk) {
            format!(
                "no unused disk matches its identity or can hold its {} (largest unused: {})",
                human_bytes(d.size),
                inv.disks.iter().filter(|p| free(p, &used) && !p.virtual_disk).map(|p| p.size).max().map(human_bytes).unwrap_or_default()
            )
        } else {
            let busy: Vec<String> = inv.disks.iter().filter(|p| !p.busy.is_empty()).map(|p| format!("{}: {}", p.path.display(), p.busy.join(", "))).collect();
            if busy.is_empty() {
                "no unused disk is present".to_string()
            } else {
                format!("no unused disk is present (in use: {})", busy.join("; "))
            }
        };
        problem.missing.push((d.name.clone(), why));
    }
    if !problem.errors.is_empty() || !problem.ambiguous.is_empty() || !problem.missing.is_empty() {
        return Err(problem);
    }
    Ok(layout.disks.iter().filter_map(|d| assigned.remove(&d.name)).collect())
}

/// Groups of recorded disks that all want the same set of same-size
/// candidates, as many as there are disks, and are interchangeable: assigned
/// in name order (a present disk with a recorded disk's name gets that disk).
fn assign_interchangeable(
    layout: &Layout,
    wanted: &[(&Disk, Vec<&PresentDisk>)],
    used: &mut BTreeSet<String>,
    assigned: &mut BTreeMap<String, DiskAssignment>,
) {
    let mut groups: BTreeMap<Vec<String>, Vec<&Disk>> = BTreeMap::new();
    for (d, c) in wanted {
        if c.len() >= 2 {
            let mut names: Vec<String> = c.iter().map(|p| p.name.clone()).collect();
            names.sort();
            groups.entry(names).or_default().push(d);
        }
    }
    for (names, disks) in groups {
        if disks.len() != names.len() || !interchangeable(layout, &disks) {
            continue;
        }
        let Some((_, candidates)) = wanted.iter().find(|(d, _)| d.name == disks[0].name) else { continue };
        let mut recorded: Vec<&Disk> = disks.clone();
        recorded.sort_by(|a, b| a.name.cmp(&b.name));
        let mut free: Vec<&PresentDisk> = candidates.clone();
        free.sort_by(|a, b| a.name.cmp(&b.name));
        // The same kernel names first (same machine, new disks), then name order.
        let mut order: Vec<(&Disk, &PresentDisk)> = Vec::new();
        recorded.retain(|d| match free.iter().position(|p| p.name == d.name) {
            Some(i) => {
                order.push((d, free.remove(i)));
                false
            }
            None => true,
        });
        order.extend(recorded.into_iter().zip(free));
        for (d, p) in order {
            used.insert(p.name.clone());
            assigned.insert(d.name.clone(), assignment(d, p, MatchReason::Interchangeable));
        }
    }
}

/// A recorded disk as the mapping compares them: size, table, the RAID array
/// on the whole disk, and per partition (number, start, size, type, RAID array).
type DiskShape = (u64, String, Option<String>, Vec<(u32, u64, u64, String, Option<String>)>);

/// Whether recorded disks are the same to a recovery: same size and table,
/// partitions with the same geometry and type, and each partition (or the
/// whole disk) either a member of the same RAID array on every disk or
/// holding nothing on any of them (a BIOS boot partition).
fn interchangeable(layout: &Layout, disks: &[&Disk]) -> bool {
    // What sits directly on a block id: Some(raid name), None for nothing,
    // Err(()) for anything else (a filesystem, swap, LUKS, a PV).
    let user = |id: &str| -> Result<Option<String>, ()> {
        if let Some(r) = layout.raids.iter().find(|r| r.devices.iter().chain(r.spares.iter()).any(|m| m == id)) {
            return Ok(Some(r.name.clone()));
        }
        let used = layout.filesystems.iter().any(|f| f.device == id)
            || layout.swaps.iter().any(|s| s.device == id)
            || layout.luks.iter().any(|l| l.device == id)
            || layout.lvm_pvs.iter().any(|pv| pv.device == id);
        if used {
            Err(())
        } else {
            Ok(None)
        }
    };
    let shape = |d: &Disk| -> Option<DiskShape> {
        let parts = layout
            .partitions_of(&d.name)
            .into_iter()
            .map(|p| user(&p.name).ok().map(|u| (p.number, p.start, p.size, p.type_id.clone(), u)))
            .collect::<Option<Vec<_>>>()?;
        Some((d.size, format!("{:?}", d.table), user(&d.name).ok()?, parts))
    };
    let Some(first) = disks.first().and_then(|d| shape(d)) else { return false };
    // Something must tie them together: a mirror, not two blank disks' worth of nothing.
    let any_raid = first.2.is_some() || first.3.iter().any(|p| p.4.is_some());
    any_raid && disks.iter().skip(1).all(|d| shape(d).as_ref() == Some(&first))
}

fn identity_match(d: &Disk, p: &PresentDisk) -> Option<MatchReason> {
    let eq = |a: &Option<String>, b: &Option<String>| match (a, b) {
        (Some(a), Some(b)) => !a.is_empty() && a.eq_ignore_ascii_case(b),
        _ => false,
    };
    if eq(&d.wwn, &p.wwn) {
        Some(MatchReason::Wwn)
    } else if eq(&d.serial, &p.serial) {
        Some(MatchReason::Serial)
    } else if d.by_id.iter().any(|b| p.by_id.contains(b)) {
        Some(MatchReason::ById)
    } else {
        None
    }
}

/// The device path of partition `number` on a disk, following the kernel's
/// naming: a `p` goes between when the disk name ends in a digit
/// (`nvme0n1p1`, `loop0p1`, `mmcblk0p1`, `md0p1`), not otherwise (`sda1`);
/// udev's by-id names take `-partN`.
pub fn partition_path(disk: &std::path::Path, number: u32) -> PathBuf {
    let s = disk.to_string_lossy();
    if s.starts_with("/dev/disk/") {
        return PathBuf::from(format!("{s}-part{number}"));
    }
    if s.ends_with(|c: char| c.is_ascii_digit()) {
        PathBuf::from(format!("{s}p{number}"))
    } else {
        PathBuf::from(format!("{s}{number}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn partition_names() {
        assert_eq!(partition_path(Path::new("/dev/sda"), 1), Path::new("/dev/sda1"));
        assert_eq!(partition_path(Path::new("/dev/vdb"), 12), Path::new("/dev/vdb12"));
        assert_eq!(partition_path(Path::new("/dev/nvme0n1"), 1), Path::new("/dev/nvme0n1p1"));
        assert_eq!(partition_path(Path::new("/dev/loop0"), 3), Path::new("/dev/loop0p3"));
        assert_eq!(partition_path(Path::new("/dev/mmcblk0"), 2), Path::new("/dev/mmcblk0p2"));
        assert_eq!(partition_path(Path::new("/dev/md0"), 1), Path::new("/dev/md0p1"));
        assert_eq!(partition_path(Path::new("/dev/disk/by-id/ata-X_1"), 2), Path::new("/dev/disk/by-id/ata-X_1-part2"));
    }
}
