//! Loading and checking a descriptor. Every error names the item (kind and
//! name) and the line of the TOML text it comes from, so a person editing the
//! file for a migration can find and fix it.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;

use super::{FsType, Layout, PartitionKind, TableType, VERSION};
use crate::error::InputError;
use crate::target::not_normalized;

/// One problem in a descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// 1-based line in the TOML text, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

pub(super) fn parse_and_validate(text: &str) -> Result<Layout> {
    // Check the version before the schema: a descriptor from a newer rescue
    // should say so, not complain about fields it does not know.
    let value: toml::Value = toml::from_str(text).map_err(|e| InputError(format!("not valid TOML: {e}")))?;
    match value.get("version") {
        None => return Err(InputError("line 1: missing `version = 1` at the top of the descriptor".into()).into()),
        Some(toml::Value::Integer(v)) if *v == i64::from(VERSION) => {}
        Some(v) => {
            let line = line_of_key(text, None, "version");
            return Err(InputError(format!(
                "{}descriptor version {v} is not supported: this rescue {} reads version {VERSION}",
                line.map(|l| format!("line {l}: ")).unwrap_or_default(),
                env!("CARGO_PKG_VERSION")
            ))
            .into());
        }
    }
    let layout: Layout = toml::from_str(text).map_err(|e| InputError(format!("{e}")))?;
    let errors = check(&layout, Some(text));
    if errors.is_empty() {
        Ok(layout)
    } else {
        let list = errors.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n");
        Err(InputError(format!("the descriptor has {} problem(s):\n{list}", errors.len())).into())
    }
}

/// The line where the `index`-th `[[table]]` of an array of tables starts.
pub fn line_of_item(text: &str, table: &str, index: usize) -> Option<usize> {
    let header = format!("[[{table}]]");
    text.lines().enumerate().filter(|(_, l)| l.trim() == header).nth(index).map(|(n, _)| n + 1)
}

/// The line of `key = ...` inside the `index`-th `[[table]]` (or at top
/// level), falling back to the item's header line.
fn line_of_key(text: &str, item: Option<(&str, usize)>, key: &str) -> Option<usize> {
    // `start` is the 1-based header line, i.e. the 0-based index of the line after it.
    let start = match item {
        Some((t, i)) => line_of_item(text, t, i)?,
        None => 0,
    };
    for (n, l) in text.lines().enumerate().skip(start) {
        let t = l.trim_start();
        if t.starts_with('[') {
            break;
        }
        if let Some(rest) = t.strip_prefix(key) {
            if rest.trim_start().starts_with('=') {
                return Some(n + 1);
            }
        }
    }
    item.and_then(|(t, i)| line_of_item(text, t, i))
}

struct Checker<'a> {
    text: Option<&'a str>,
    errors: Vec<ValidationError>,
}

impl Checker<'_> {
    fn err(&mut self, table: &str, index: usize, key: Option<&str>, message: String) {
        let line = self.text.and_then(|t| match key {
            Some(k) => line_of_key(t, Some((table, index)), k),
            None => line_of_item(t, table, index),
        });
        self.errors.push(ValidationError { line, message });
    }
}

/// Every semantic problem of a parsed layout; `text` (when given) locates them.
pub fn check(layout: &Layout, text: Option<&str>) -> Vec<ValidationError> {
    let mut c = Checker { text, errors: Vec::new() };

    // The block id namespace: each name once.
    let mut ids: BTreeMap<String, &'static str> = BTreeMap::new();
    let mut add_id = |c: &mut Checker, id: String, what: &'static str, table: &str, i: usize| {
        if let Some(prev) = ids.insert(id.clone(), what) {
            c.err(table, i, None, format!("{what} `{id}`: the name is already used by a {prev}"));
        }
    };
    for (i, d) in layout.disks.iter().enumerate() {
        add_id(&mut c, d.name.clone(), "disk", "disk", i);
    }
    for (i, p) in layout.partitions.iter().enumerate() {
        add_id(&mut c, p.name.clone(), "partition", "partition", i);
    }
    for (i, r) in layout.raids.iter().enumerate() {
        add_id(&mut c, r.name.clone(), "RAID array", "raid", i);
    }
    for (i, l) in layout.luks.iter().enumerate() {
        add_id(&mut c, l.name.clone(), "LUKS volume", "luks", i);
    }
    for (i, l) in layout.lvm_lvs.iter().enumerate() {
        add_id(&mut c, l.id(), "logical volume", "lvm-lv", i);
    }

    // Who uses each block device: one consumer each.
    let mut users: BTreeMap<String, String> = BTreeMap::new();
    // A disk with a partition table is used by it: nothing else may sit on the whole disk.
    for p in &layout.partitions {
        users.entry(p.disk.clone()).or_insert_with(|| "its partition table".into());
    }
    let mut use_dev = |c: &mut Checker, dev: &str, user: String, table: &str, i: usize, key: &str| {
        if !ids.contains_key(dev) {
            c.err(
                table,
                i,
                Some(key),
                format!("{user} refers to `{dev}`, which is not a disk, partition, RAID array, LUKS volume or logical volume in this descriptor"),
            );
            return;
        }
        if let Some(prev) = users.insert(dev.to_string(), user.clone()) {
            c.err(table, i, Some(key), format!("{user} uses `{dev}`, which {prev} already uses"));
        }
    };

    let disk_names: BTreeSet<&str> = layout.disks.iter().map(|d| d.name.as_str()).collect();
    for (i, d) in layout.disks.iter().enumerate() {
        if d.size == 0 {
            c.err("disk", i, Some("size"), format!("disk `{}`: size is 0", d.name));
        }
        if !matches!(d.logical_sector_size, 512 | 1024 | 2048 | 4096) {
            c.err(
                "disk",
                i,
                Some("logical-sector-size"),
                format!("disk `{}`: logical sector size {} is not 512, 1024, 2048 or 4096", d.name, d.logical_sector_size),
            );
        }
        if d.table.is_none() && layout.partitions.iter().any(|p| p.disk == d.name) {
            c.err("disk", i, None, format!("disk `{}` has partitions but no `table` (gpt or msdos)", d.name));
        }
        if let Some(g) = &d.disk_guid {
            if !is_guid(g) {
                c.err("disk", i, Some("disk-guid"), format!("disk `{}`: disk-guid `{g}` is not a GUID", d.name));
            }
        }
    }

    for (i, p) in layout.partitions.iter().enumerate() {
        let who = format!("partition `{}`", p.name);
        if !disk_names.contains(p.disk.as_str()) {
            c.err("partition", i, Some("disk"), format!("{who} refers to disk `{}`, which is not in this descriptor", p.disk));
            continue;
        }
        let Some(disk) = layout.disk(&p.disk) else { continue };
        if p.size == 0 {
            c.err("partition", i, Some("size"), format!("{who}: size is 0"));
        }
        let sectors = disk.size / disk.logical_sector_size.max(1);
        let end = p.start.saturating_add(p.size);
        let usable_end = match disk.table {
            Some(TableType::Gpt) => sectors.saturating_sub(33),
            _ => sectors,
        };
        if end > usable_end {
            c.err(
                "partition",
                i,
                Some("size"),
                format!(
                    "{who} ends at sector {} beyond the end of disk `{}` ({} usable sectors of {} bytes); shrink it or fix the disk size",
                    end, p.disk, usable_end, disk.logical_sector_size
                ),
            );
        }
        if p.start == 0 {
            c.err("partition", i, Some("start"), format!("{who} starts at sector 0, over the partition table"));
        }
        match disk.table {
            Some(TableType::Gpt) => {
                if !is_guid(&p.type_id) {
                    c.err(
                        "partition",
                        i,
                        Some("type"),
                        format!("{who}: type `{}` is not a GPT type GUID (e.g. 0FC63DAF-8483-4772-8E79-3D69D8477DE4 for Linux data)", p.type_id),
                    );
                }
                if p.kind != PartitionKind::Primary {
                    c.err("partition", i, Some("kind"), format!("{who}: GPT has no extended or logical partitions"));
                }
                if p.number == 0 || p.number > 128 {
                    c.err("partition", i, Some("number"), format!("{who}: number {} is not between 1 and 128", p.number));
                }
            }
            Some(TableType::Msdos) => {
                if u8::from_str_radix(p.type_id.trim_start_matches("0x"), 16).is_err() {
                    c.err("partition", i, Some("type"), format!("{who}: type `{}` is not an MBR type id (two hex digits, e.g. 83)", p.type_id));
                }
                let logical = p.kind == PartitionKind::Logical;
                if logical != (p.number >= 5) {
                    c.err("partition", i, Some("number"), format!("{who}: on an MBR disk, numbers 1-4 are primary or extended and 5 and up are logical"));
                }
            }
            None => {}
        }
        if let Some(u) = &p.uuid {
            if !is_guid(u) {
                c.err("partition", i, Some("uuid"), format!("{who}: uuid `{u}` is not a GUID"));
            }
        }
    }

    // Overlaps, and logical partitions inside their extended one.
    for d in &layout.disks {
        let parts = layout.partitions_of(&d.name);
        let extended = parts.iter().find(|p| p.kind == PartitionKind::Extended);
        let mut numbers = BTreeSet::new();
        for p in &parts {
            if !numbers.insert(p.number) {
                let i = index_of_partition(layout, &p.name);
                c.err("partition", i, Some("number"), format!("partition `{}`: number {} is used twice on disk `{}`", p.name, p.number, d.name));
            }
        }
        for (a_i, a) in parts.iter().enumerate() {
            for b in parts.iter().skip(a_i + 1) {
                let nested = |x: &super::Partition, y: &super::Partition| x.kind == PartitionKind::Extended && y.kind == PartitionKind::Logical;
                if nested(a, b) || nested(b, a) {
                    continue;
                }
                let overlap = a.start < b.start + b.size && b.start < a.start + a.size;
                if overlap {
                    let i = index_of_partition(layout, &b.name);
                    c.err(
                        "partition",
                        i,
                        Some("start"),
                        format!(
                            "partition `{}` (sectors {}-{}) overlaps partition `{}` (sectors {}-{})",
                            b.name,
                            b.start,
                            b.start + b.size - 1,
                            a.name,
                            a.start,
                            a.start + a.size - 1
                        ),
                    );
                }
            }
            if a.kind == PartitionKind::Logical {
                let i = index_of_partition(layout, &a.name);
                match extended {
                    None => c.err("partition", i, None, format!("logical partition `{}` but disk `{}` has no extended partition", a.name, d.name)),
                    Some(e) if a.start < e.start || a.start + a.size > e.start + e.size => {
                        c.err("partition", i, Some("start"), format!("logical partition `{}` lies outside extended partition `{}`", a.name, e.name))
                    }
                    _ => {}
                }
            }
        }
    }

    for (i, r) in layout.raids.iter().enumerate() {
        let who = format!("RAID array `{}`", r.name);
        if r.devices.is_empty() {
            c.err("raid", i, Some("devices"), format!("{who} has no member devices"));
        }
        for dev in r.devices.iter().chain(r.spares.iter()) {
            use_dev(&mut c, dev, who.clone(), "raid", i, "devices");
        }
        if !super::RAID_LEVELS.contains(&r.level.as_str()) {
            c.err("raid", i, Some("level"), format!("{who}: level `{}` is not one of {}", r.level, super::RAID_LEVELS.join(", ")));
        }
        if !is_uuid_like(&r.uuid) {
            c.err("raid", i, Some("uuid"), format!("{who}: uuid `{}` is not a UUID", r.uuid));
        }
    }
    for (i, l) in layout.luks.iter().enumerate() {
        let who = format!("LUKS volume `{}`", l.name);
        use_dev(&mut c, &l.device, who.clone(), "luks", i, "device");
        if !super::LUKS_VERSIONS.contains(&l.version) {
            c.err("luks", i, Some("version"), format!("{who}: LUKS version {} is not 1 or 2", l.version));
        }
        if !is_guid(&l.uuid) {
            c.err("luks", i, Some("uuid"), format!("{who}: uuid `{}` is not a UUID", l.uuid));
        }
    }
    let vg_names: BTreeSet<&str> = layout.lvm_vgs.iter().map(|v| v.name.as_str()).collect();
    for (i, pv) in layout.lvm_pvs.iter().enumerate() {
        let who = format!("LVM physical volume on `{}`", pv.device);
        use_dev(&mut c, &pv.device, who.clone(), "lvm-pv", i, "device");
        if !vg_names.contains(pv.vg.as_str()) {
            c.err("lvm-pv", i, Some("vg"), format!("{who} belongs to volume group `{}`, which is not in this descriptor", pv.vg));
        }
    }
    for (i, vg) in layout.lvm_vgs.iter().enumerate() {
        if !layout.lvm_pvs.iter().any(|pv| pv.vg == vg.name) {
            c.err("lvm-vg", i, None, format!("volume group `{}` has no physical volume", vg.name));
        }
        if vg.extent_size == 0 || !vg.extent_size.is_power_of_two() {
            c.err("lvm-vg", i, Some("extent-size"), format!("volume group `{}`: extent size {} is not a power of two", vg.name, vg.extent_size));
        }
    }
    for (i, lv) in layout.lvm_lvs.iter().enumerate() {
        if !vg_names.contains(lv.vg.as_str()) {
            c.err("lvm-lv", i, Some("vg"), format!("logical volume `{}` belongs to volume group `{}`, which is not in this descriptor", lv.name, lv.vg));
        }
    }

    let mut fs_devices = BTreeSet::new();
    for (i, f) in layout.filesystems.iter().enumerate() {
        let who = format!("{} filesystem on `{}`", f.fstype, f.device);
        use_dev(&mut c, &f.device, who.clone(), "filesystem", i, "device");
        for extra in &f.extra_devices {
            use_dev(&mut c, extra, who.clone(), "filesystem", i, "extra-devices");
        }
        fs_devices.insert(f.device.as_str());
        let uuid_ok = match f.fstype {
            FsType::Vfat => is_vfat_id(&f.uuid),
            _ => is_guid(&f.uuid),
        };
        if !uuid_ok {
            c.err("filesystem", i, Some("uuid"), format!("{who}: uuid `{}` is not valid for {}", f.uuid, f.fstype));
        }
        let (has_ext, has_xfs, has_vfat, has_btrfs) = (f.ext.is_some(), f.xfs.is_some(), f.vfat.is_some(), f.btrfs.is_some());
        let wrong = match f.fstype {
            t if t.is_ext() => has_xfs || has_vfat || has_btrfs,
            FsType::Xfs => has_ext || has_vfat || has_btrfs,
            FsType::Vfat => has_ext || has_xfs || has_btrfs,
            FsType::Btrfs => has_ext || has_xfs || has_vfat,
            _ => false,
        };
        if wrong {
            c.err("filesystem", i, Some("type"), format!("{who} has options for another filesystem type"));
        }
        if let Some(v) = &f.vfat {
            if !matches!(v.fat_size, 12 | 16 | 32) {
                c.err("filesystem", i, None, format!("{who}: fat-size {} is not 12, 16 or 32", v.fat_size));
            }
        }
        if let (Some(size), true) = (f.size, f.used_bytes > 0) {
            if f.used_bytes > size {
                c.err("filesystem", i, Some("used-bytes"), format!("{who}: used-bytes {} is larger than its size {size}", f.used_bytes));
            }
        }
    }
    for (i, s) in layout.swaps.iter().enumerate() {
        use_dev(&mut c, &s.device, format!("swap on `{}`", s.device), "swap", i, "device");
    }
    let mut mount_paths = BTreeSet::new();
    for (i, m) in layout.mounts.iter().enumerate() {
        if let Some(why) = not_normalized(&m.path) {
            c.err("mount", i, Some("path"), format!("mount `{}`: the mount point must be an absolute, normalized path (like /srv/data): {why}", m.path));
        }
        if let Some(why) = m.subvol.as_deref().and_then(not_plain_relative) {
            c.err("mount", i, Some("subvol"), format!("mount `{}`: subvolume `{}` {why}", m.path, m.subvol.as_deref().unwrap_or_default()));
        }
        if !mount_paths.insert(m.path.as_str()) {
            c.err("mount", i, Some("path"), format!("mount `{}` appears twice", m.path));
        }
        let fs = layout.filesystem_on(&m.device);
        match fs {
            None => c.err("mount", i, Some("device"), format!("mount `{}` refers to `{}`, which holds no filesystem in this descriptor", m.path, m.device)),
            Some(fs) => {
                if let Some(sv) = &m.subvol {
                    let known = fs.btrfs.as_ref().is_some_and(|b| {
                        let sv = sv.trim_start_matches('/');
                        sv.is_empty() || b.subvolumes.iter().any(|s| s.path == sv)
                    });
                    if !known {
                        c.err(
                            "mount",
                            i,
                            Some("subvol"),
                            format!("mount `{}` uses subvolume `{sv}`, which filesystem on `{}` does not have", m.path, m.device),
                        );
                    }
                }
            }
        }
    }
    let mut subvolume_index = 0;
    for (i, f) in layout.filesystems.iter().enumerate() {
        let Some(b) = &f.btrfs else { continue };
        for sv in &b.subvolumes {
            if let Some(why) = not_plain_relative(&sv.path) {
                c.err("filesystem.btrfs.subvolume", subvolume_index, Some("path"), format!("btrfs subvolume `{}` on `{}`: the path {why}", sv.path, f.device));
            }
            subvolume_index += 1;
        }
        if let Some(why) = b.default_subvolume.as_deref().and_then(not_plain_relative) {
            c.err(
                "filesystem",
                i,
                None,
                format!("btrfs filesystem on `{}`: default-subvolume `{}` {why}", f.device, b.default_subvolume.as_deref().unwrap_or_default()),
            );
        }
    }
    for (i, e) in layout.excluded.iter().enumerate() {
        if let Some(why) = not_normalized(&e.path) {
            c.err("excluded", i, Some("path"), format!("excluded `{}`: the path must be absolute and normalized: {why}", e.path));
        }
    }
    check_cycles(layout, &mut c);
    if !super::is_valid_hostname(&layout.host.hostname) {
        c.errors.push(ValidationError {
            line: text.and_then(|t| line_in_table(t, "host", "hostname")),
            message: format!(
                "hostname `{}` is not a host name (letters, digits, `-`, `_`, and dots between non-empty labels, at most 253 characters): it names the host's backup directory",
                layout.host.hostname
            ),
        });
    }
    let bl = &layout.bootloader;
    for d in &bl.boot_disks {
        if !disk_names.contains(d.as_str()) {
            c.errors.push(ValidationError {
                line: text.and_then(|t| t.lines().position(|l| l.trim() == "[bootloader]").map(|n| n + 1)),
                message: format!("bootloader boot disk `{d}` is not a disk in this descriptor"),
            });
        }
    }
    if let Some(esp) = &bl.esp {
        if layout.partition(esp).is_none() {
            c.errors.push(ValidationError {
                line: text.and_then(|t| t.lines().position(|l| l.trim() == "[bootloader]").map(|n| n + 1)),
                message: format!("bootloader ESP `{esp}` is not a partition in this descriptor"),
            });
        }
    }
    if let Some(net) = &layout.network {
        for p in super::network::check(net) {
            if p.table == "network" {
                c.errors.push(ValidationError { line: text.and_then(|t| line_in_table(t, "network", p.key.unwrap_or("nameservers"))), message: p.message });
            } else {
                c.err(p.table, p.index, p.key, p.message);
            }
        }
    }
    c.errors
}

/// Why a relative path inside a filesystem (a btrfs subvolume, `@/srv/www`)
/// is not plain, or `None`. A leading `/` is allowed, as btrfs writes it.
fn not_plain_relative(path: &str) -> Option<&'static str> {
    let rel = path.strip_prefix('/').unwrap_or(path);
    if rel.is_empty() {
        return None;
    }
    not_normalized(&format!("/{rel}")).map(|_| "must be a plain path: no `..`, `.` or empty components, no trailing /")
}

/// A block device that sits on itself (a PV on an LV of its own volume
/// group, directly or through RAID, LUKS or another VG) can never be built:
/// name it with its line.
fn check_cycles(layout: &Layout, c: &mut Checker) {
    // Everything `id` sits on, transitively.
    let below = |id: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![id.to_string()];
        while let Some(cur) = todo.pop() {
            for p in layout.parents_of(&cur) {
                if seen.insert(p.clone()) {
                    todo.push(p);
                }
            }
        }
        seen
    };
    for (i, pv) in layout.lvm_pvs.iter().enumerate() {
        let mut under = below(&pv.device);
        under.insert(pv.device.clone());
        if let Some(lv) = layout.lvm_lvs.iter().find(|lv| lv.vg == pv.vg && under.contains(&lv.id())) {
            c.err(
                "lvm-pv",
                i,
                Some("device"),
                format!(
                    "LVM physical volume on `{}` of volume group `{}` sits on `{}`, a logical volume of that same group: a cycle that cannot be built",
                    pv.device,
                    pv.vg,
                    lv.id()
                ),
            );
        }
    }
    for (i, r) in layout.raids.iter().enumerate() {
        if below(&r.name).contains(&r.name) {
            c.err("raid", i, Some("devices"), format!("RAID array `{}` sits on itself (through its member devices): a cycle that cannot be built", r.name));
        }
    }
    for (i, l) in layout.luks.iter().enumerate() {
        if below(&l.name).contains(&l.name) {
            c.err("luks", i, Some("device"), format!("LUKS volume `{}` sits on itself (through its device): a cycle that cannot be built", l.name));
        }
    }
}

/// The line of `key = ...` in the single table `[table]`.
fn line_in_table(text: &str, table: &str, key: &str) -> Option<usize> {
    let header = format!("[{table}]");
    let start = text.lines().position(|l| l.trim() == header)?;
    for (n, l) in text.lines().enumerate().skip(start + 1) {
        let t = l.trim_start();
        if t.starts_with('[') {
            break;
        }
        if t.strip_prefix(key).is_some_and(|r| r.trim_start().starts_with('=')) {
            return Some(n + 1);
        }
    }
    Some(start + 1)
}

fn index_of_partition(layout: &Layout, name: &str) -> usize {
    layout.partitions.iter().position(|p| p.name == name).unwrap_or(0)
}

/// 8-4-4-4-12 hex GUID/UUID.
pub fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5 && parts.iter().zip([8, 4, 4, 4, 12]).all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// mdadm prints UUIDs as 4 groups of 8 hex digits separated by `:`; accept both.
fn is_uuid_like(s: &str) -> bool {
    is_guid(s) || {
        let parts: Vec<&str> = s.split(':').collect();
        parts.len() == 4 && parts.iter().all(|p| p.len() == 8 && p.chars().all(|c| c.is_ascii_hexdigit()))
    }
}

/// A FAT volume id as blkid shows it: `ABCD-1234`.
fn is_vfat_id(s: &str) -> bool {
    s.len() == 9 && s.as_bytes()[4] == b'-' && s.chars().enumerate().all(|(i, c)| i == 4 || c.is_ascii_hexdigit())
}
