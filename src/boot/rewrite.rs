//! Device-name rewriting in the restored system's configuration files, when
//! disks were mapped to devices with other names (`/dev/sda` → `/dev/vda`).
//! UUID=/LABEL= references need nothing: recovery recreates identical ones.

use super::{DeviceMap, Step};
use crate::layout::Layout;

/// Old device name → new device name, longest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RenameTable(pub Vec<(String, String)>);

impl RenameTable {
    /// The table a planned `RewriteFile` step carries.
    pub fn from_changes(step: &Step) -> RenameTable {
        match step {
            Step::RewriteFile { changes, .. } => RenameTable(changes.clone()),
            _ => RenameTable::default(),
        }
    }
}

/// `/dev/nvme0n1` + 2 → `/dev/nvme0n1p2`; `/dev/sda` + 2 → `/dev/sda2`.
pub fn partition_path(disk: &str, number: u32) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p{number}")
    } else {
        format!("{disk}{number}")
    }
}

/// Every device name of the recorded system that is different now.
pub fn device_renames(layout: &Layout, map: &DeviceMap) -> RenameTable {
    let mut v: Vec<(String, String)> = Vec::new();
    for d in &layout.disks {
        let Some(new_disk) = map.paths.get(&d.name) else { continue };
        if &d.path != new_disk {
            v.push((d.path.clone(), new_disk.clone()));
        }
        for p in layout.partitions_of(&d.name) {
            let old = partition_path(&d.path, p.number);
            let new = map.paths.get(&p.name).cloned().unwrap_or_else(|| partition_path(new_disk, p.number));
            if old != new {
                v.push((old, new.clone()));
            }
            // by-id names do not survive a change of hardware.
            if &d.path != new_disk {
                for id in &d.by_id {
                    v.push((format!("/dev/disk/by-id/{id}-part{}", p.number), new.clone()));
                }
            }
        }
        if &d.path != new_disk {
            for id in &d.by_id {
                v.push((format!("/dev/disk/by-id/{id}"), new_disk.clone()));
            }
        }
    }
    v.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
    v.dedup();
    RenameTable(v)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':')
}

/// Replace whole device names only (`/dev/sda1` is not touched by a rule for
/// `/dev/sda`, nor `/dev/sda10` by one for `/dev/sda1`). Returns the new text
/// and the renames that were applied.
pub fn apply(text: &str, table: &RenameTable) -> (String, Vec<(String, String)>) {
    let mut out = String::with_capacity(text.len());
    let mut applied: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    let bytes = text.as_bytes();
    'outer: while i < text.len() {
        let prev_ok = i == 0 || !text[..i].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '/');
        if prev_ok && bytes[i] == b'/' {
            for (old, new) in &table.0 {
                if text[i..].starts_with(old.as_str()) {
                    let next = text[i + old.len()..].chars().next();
                    if next.is_none_or(|c| !is_name_char(c)) {
                        out.push_str(new);
                        if !applied.iter().any(|(a, _)| a == old) {
                            applied.push((old.clone(), new.clone()));
                        }
                        i += old.len();
                        continue 'outer;
                    }
                }
            }
        }
        let c = text[i..].chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    (out, applied)
}

/// Boot numbers of `efibootmgr` entries with exactly this label.
pub fn efi_entries_with_label(listing: &str, label: &str) -> Vec<String> {
    crate::probe::parse::efibootmgr(listing).1.into_iter().filter(|e| e.label == label).map(|e| e.num).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, &str)]) -> RenameTable {
        let mut v: Vec<(String, String)> = pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        v.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        RenameTable(v)
    }

    #[test]
    fn whole_names_only() {
        let t = table(&[("/dev/sda1", "/dev/vda1"), ("/dev/sda", "/dev/vda")]);
        let (s, ch) = apply("/dev/sda1 / ext4 defaults 0 1\n/dev/sda10 /x ext4 defaults 0 0\nGRUB=root=/dev/sda1,ro\n", &t);
        assert_eq!(s, "/dev/vda1 / ext4 defaults 0 1\n/dev/sda10 /x ext4 defaults 0 0\nGRUB=root=/dev/vda1,ro\n");
        assert_eq!(ch, vec![("/dev/sda1".to_string(), "/dev/vda1".to_string())]);
    }

    #[test]
    fn uuids_are_untouched() {
        let t = table(&[("/dev/sda1", "/dev/vda1")]);
        let text = "UUID=8e5b7f0a-3c4d-4e6f-9a1b-2c3d4e5f6a7b / ext4 errors=remount-ro 0 1\n";
        assert_eq!(apply(text, &t), (text.to_string(), vec![]));
    }

    #[test]
    fn renames_from_a_layout() {
        let mut l = crate::layout::Layout::from_toml(include_str!("../../layouts/mbr-logical.toml")).unwrap();
        l.disks[0].by_id = vec!["ata-OLD_DISK".into()];
        let mut map = DeviceMap::default();
        map.paths.insert("sda".into(), "/dev/nvme0n1".into());
        let t = device_renames(&l, &map);
        let (s, _) = apply("/dev/sda6 / ext4 x 0 1\n/dev/disk/by-id/ata-OLD_DISK-part7 /srv xfs y 0 2\n/dev/sda5 none swap sw 0 0\n", &t);
        assert_eq!(s, "/dev/nvme0n1p6 / ext4 x 0 1\n/dev/nvme0n1p7 /srv xfs y 0 2\n/dev/nvme0n1p5 none swap sw 0 0\n");
        // Same names: nothing to rewrite.
        map.paths.insert("sda".into(), "/dev/sda".into());
        assert!(device_renames(&l, &map).0.is_empty());
    }

    #[test]
    fn partition_paths() {
        assert_eq!(partition_path("/dev/sda", 1), "/dev/sda1");
        assert_eq!(partition_path("/dev/nvme0n1", 2), "/dev/nvme0n1p2");
        assert_eq!(partition_path("/dev/mmcblk0", 1), "/dev/mmcblk0p1");
        assert_eq!(partition_path("/dev/loop3", 4), "/dev/loop3p4");
    }
}
