//! Comparing two descriptors for `checklayout`: the differences between
//! what recovery would do with each. Both go through the one normalisation
//! of [`recovery::recovery_view`]; nothing is ignored here.

use serde::Serialize;
use serde_json::Value;

use super::recovery::{recovery_view, MountScope, RecoveryView};
use super::Layout;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    Added,
    Removed,
    Modified,
}

impl Change {
    fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Modified => "modified",
        }
    }
}

/// One difference: an item added or removed (no field; `old`/`new` is the
/// item), or one field of an item modified.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// `partition sda3`, `filesystem on vg0/root`, `mount /data`, `bootloader`.
    pub item: String,
    pub change: Change,
    /// `size`, `label`, `ext.features`, `boot-disks`; none for a whole item.
    pub field: Option<String>,
    pub old: Value,
    pub new: Value,
    /// What the difference means for a recovery from the old descriptor.
    pub why: &'static str,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            None => write!(f, "{} {}: {}", self.item, self.change.as_str(), self.why),
            Some(field) => write!(f, "{}: {field} {} -> {}: {}", self.item, short(&self.old), short(&self.new), self.why),
        }
    }
}

fn short(v: &Value) -> String {
    match v {
        Value::Null => "(none)".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// [`compare_in`] with the fixed rules only (no `capture.exclude-mounts`).
pub fn compare(old: &Layout, new: &Layout) -> Vec<Difference> {
    compare_in(old, new, &MountScope::default())
}

/// The differences between what recovery would use from `old` and from `new`,
/// `scope` saying which mounts recovery recreates.
pub fn compare_in(old: &Layout, new: &Layout, scope: &MountScope) -> Vec<Difference> {
    let (old, new) = (recovery_view(old, scope), recovery_view(new, scope));
    let (Ok(Value::Object(a)), Ok(Value::Object(b))) = (serde_json::to_value(&old.layout), serde_json::to_value(&new.layout)) else {
        return Vec::new();
    };
    let names = Names { old: &old, new: &new };
    let mut out = Vec::new();
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let (va, vb) = (a.get(key).unwrap_or(&Value::Null), b.get(key).unwrap_or(&Value::Null));
        if va == vb {
            continue;
        }
        match (va, vb) {
            (Value::Array(_), _) | (_, Value::Array(_)) => compare_items(key, as_array(va), as_array(vb), &names, &mut out),
            (Value::Object(_), Value::Object(_)) => field_changes(key, key, va, vb, &names, &mut out),
            _ => out.push(whole(key, key, va, vb)),
        }
    }
    out
}

/// Identities back to the kernel names each side used.
struct Names<'a> {
    old: &'a RecoveryView,
    new: &'a RecoveryView,
}

impl Names<'_> {
    fn item(&self, identity: &str) -> String {
        self.new.names.get(identity).or_else(|| self.old.names.get(identity)).cloned().unwrap_or_else(|| identity.to_string())
    }
    fn value(v: &Value, view: &RecoveryView) -> Value {
        match v {
            Value::String(s) => Value::String(view.names.get(s).cloned().unwrap_or_else(|| s.clone())),
            Value::Array(a) => Value::Array(a.iter().map(|x| Self::value(x, view)).collect()),
            other => other.clone(),
        }
    }
}

fn as_array(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) => a,
        _ => &[],
    }
}

/// The id of an item of an array (the field other items use to refer to it).
fn item_id(kind: &str, v: &Value) -> String {
    let get = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    match kind {
        "lvm-lv" => format!("{}/{}", get("vg"), get("name")),
        "filesystem" | "swap" | "lvm-pv" => get("device"),
        "mount" => get("path"),
        _ => get("name"),
    }
}

fn item_label(kind: &str, id: &str, names: &Names) -> String {
    match kind {
        "filesystem" | "swap" | "lvm-pv" => format!("{kind} on {}", names.item(id)),
        _ => format!("{kind} {}", names.item(id)),
    }
}

fn compare_items(kind: &str, a: &[Value], b: &[Value], names: &Names, out: &mut Vec<Difference>) {
    for x in a {
        let id = item_id(kind, x);
        let label = item_label(kind, &id, names);
        match b.iter().find(|y| item_id(kind, y) == id) {
            None => out.push(Difference {
                item: label,
                change: Change::Removed,
                field: None,
                old: x.clone(),
                new: Value::Null,
                why: why(kind, Change::Removed, ""),
            }),
            Some(y) if x != y => field_changes(kind, &label, x, y, names, out),
            _ => {}
        }
    }
    for y in b {
        let id = item_id(kind, y);
        if !a.iter().any(|x| item_id(kind, x) == id) {
            let label = item_label(kind, &id, names);
            out.push(Difference { item: label, change: Change::Added, field: None, old: Value::Null, new: y.clone(), why: why(kind, Change::Added, "") });
        }
    }
}

fn whole(kind: &str, label: &str, a: &Value, b: &Value) -> Difference {
    Difference { item: label.to_string(), change: Change::Modified, field: None, old: a.clone(), new: b.clone(), why: why(kind, Change::Modified, "") }
}

fn field_changes(kind: &str, label: &str, a: &Value, b: &Value, names: &Names, out: &mut Vec<Difference>) {
    let mut fields = Vec::new();
    flatten_diff("", a, b, &mut fields);
    for (field, old, new) in fields {
        out.push(Difference {
            item: label.to_string(),
            change: Change::Modified,
            why: why(kind, Change::Modified, &field),
            old: Names::value(&old, names.old),
            new: Names::value(&new, names.new),
            field: Some(field),
        });
    }
}

fn flatten_diff(prefix: &str, a: &Value, b: &Value, out: &mut Vec<(String, Value, Value)>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let (va, vb) = (x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null));
                if va != vb {
                    let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    flatten_diff(&p, va, vb, out);
                }
            }
        }
        _ => out.push((prefix.to_string(), a.clone(), b.clone())),
    }
}

/// Why a difference matters for recovery: what recovering from the old
/// descriptor would get wrong.
fn why(kind: &str, change: Change, field: &str) -> &'static str {
    match (kind, change) {
        ("disk", Change::Added) => "recovery would leave this disk untouched: nothing on it would be recreated",
        ("disk", Change::Removed) => "recovery would need a disk this system no longer has",
        ("partition", Change::Added) => "recovery would not create this partition, nor anything on it",
        ("raid", Change::Added) => "recovery would not assemble this RAID array, nor anything on it",
        ("luks", Change::Added) => "recovery would not create this encrypted volume, nor anything in it",
        ("lvm-pv" | "lvm-vg" | "lvm-lv", Change::Added) => "recovery would not create this LVM volume, nor anything on it",
        ("filesystem", Change::Added) => "recovery would not make this filesystem",
        ("swap", Change::Added) => "recovery would not make this swap space",
        ("mount", Change::Added) => "recovery would not mount it, so no data would be restored there",
        ("mount", Change::Removed) => "recovery would mount and restore a filesystem this system no longer mounts there",
        (_, Change::Added) => "recovery would not recreate it",
        (_, Change::Removed) => "recovery would recreate something this system no longer has",
        ("bootloader", _) => "recovery installs the bootloader as recorded: the recovered machine might not boot",
        ("backup", _) => "recovery restores the data from the recorded backup",
        ("host", _) => "recovery picks the firmware setup and tools by it",
        (_, Change::Modified) => match field.split('.').next().unwrap_or("") {
            "size" | "start" => "recovery would recreate it with the recorded size and position",
            "uuid" | "disk-guid" | "mbr-signature" | "volume-id" => {
                "recovery recreates the recorded identifier; fstab, crypttab and the bootloader of the restored system refer to the current one"
            }
            "label" => "recovery recreates the recorded label; LABEL= references of the restored system would not match",
            "type" => "recovery would recreate it with the recorded type",
            "options" | "source" | "subvol" => "recovery mounts it, and writes fstab, as recorded",
            "ext" | "xfs" | "vfat" | "btrfs" => "recovery makes the filesystem with the recorded creation options",
            "device" | "devices" | "spares" | "disk" | "vg" | "extra-devices" => "recovery would put it on the recorded device",
            "wwn" | "serial" | "by-id" | "model" => "recovery finds the disk by its recorded identity",
            _ => "recovery recreates the recorded value",
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::layout::{LvmLv, Mount};

    fn fixture(name: &str) -> Layout {
        Layout::load(std::path::Path::new(&format!("{}/layouts/{name}", env!("CARGO_MANIFEST_DIR")))).unwrap()
    }

    fn diff(a: &Layout, b: &Layout) -> Vec<Difference> {
        compare(a, b)
    }

    fn one_field(d: &[Difference], item: &str, field: &str) {
        assert!(d.iter().any(|c| c.item == item && c.field.as_deref() == Some(field)), "no {item} {field} in {d:#?}");
    }

    /// Two disks with WWNs; the second capture sees their kernel names swapped.
    fn two_disks() -> Layout {
        Layout::from_toml(
            r#"
version = 1
[host]
hostname = "h"
firmware = "bios"
[[disk]]
name = "sda"
path = "/dev/sda"
wwn = "0x5000c500aaaaaaaa"
size = 1073741824
table = "gpt"
[[disk]]
name = "sdb"
path = "/dev/sdb"
wwn = "0x5000c500bbbbbbbb"
size = 2147483648
table = "gpt"
[[partition]]
name = "sda1"
disk = "sda"
number = 1
start = 2048
size = 1000000
type = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
[[partition]]
name = "sdb1"
disk = "sdb"
number = 1
start = 2048
size = 3000000
type = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
[[filesystem]]
device = "sda1"
type = "ext4"
uuid = "11111111-1111-1111-1111-111111111111"
label = "root"
[[filesystem]]
device = "sdb1"
type = "xfs"
uuid = "22222222-2222-2222-2222-222222222222"
[[mount]]
path = "/"
device = "sda1"
source = "LABEL=root"
[[mount]]
path = "/srv"
device = "sdb1"
source = "UUID=22222222-2222-2222-2222-222222222222"
[bootloader]
kind = "grub2-bios"
boot-disks = ["sda"]
"#,
        )
        .unwrap()
    }

    /// The same system after the kernel named its disks the other way round.
    fn swap_names(l: &Layout) -> Layout {
        let text = l.to_toml().unwrap().replace("sda", "sdX").replace("sdb", "sda").replace("sdX", "sdb");
        Layout::from_toml(&text).unwrap()
    }

    #[test]
    fn a_kernel_name_swap_of_identified_disks_is_no_difference() {
        let a = two_disks();
        let b = swap_names(&a);
        assert_ne!(a.disk("sda").unwrap().wwn, b.disk("sda").unwrap().wwn, "the swap really happened");
        assert_eq!(diff(&a, &b), vec![]);
        // Without identities the kernel name is all there is: the swap shows.
        let mut a2 = a.clone();
        for d in &mut a2.disks {
            d.wwn = None;
        }
        let b2 = swap_names(&a2);
        assert!(!diff(&a2, &b2).is_empty());
    }

    #[test]
    fn real_changes_count_and_say_why() {
        let a = two_disks();
        // A new partition.
        let mut b = swap_names(&a);
        let mut p = b.partitions[0].clone();
        p.name = "sdb2".into();
        p.disk = "sdb".into();
        p.number = 2;
        p.start = 2_000_000;
        b.partitions.push(p);
        let d = diff(&a, &b);
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!((d[0].item.as_str(), d[0].change), ("partition sdb2", Change::Added), "named by today's kernel name");
        assert!(d[0].to_string().contains("would not create this partition"), "{}", d[0]);
        // A resized filesystem.
        let mut b = a.clone();
        b.filesystems[1].size = Some(4 << 30);
        one_field(&diff(&a, &b), "filesystem on sdb1", "size");
        // A changed label.
        let mut b = a.clone();
        b.filesystems[0].label = Some("newroot".into());
        let d = diff(&a, &b);
        one_field(&d, "filesystem on sda1", "label");
        assert_eq!((d[0].old.as_str(), d[0].new.as_str()), (Some("root"), Some("newroot")));
        assert!(d[0].why.contains("LABEL="));
        // A new mount of a recorded filesystem.
        let mut b = a.clone();
        b.mounts.push(Mount { path: "/srv2".into(), device: "sdb1".into(), source: "UUID=2".into(), options: "defaults".into(), subvol: None });
        let d = diff(&a, &b);
        assert_eq!((d[0].item.as_str(), d[0].change), ("mount /srv2", Change::Added));
        // A changed bootloader.
        let mut b = a.clone();
        b.bootloader.boot_disks.push("sdb".into());
        let d = diff(&a, &b);
        one_field(&d, "bootloader", "boot-disks");
        assert_eq!(d[0].new, serde_json::json!(["sda", "sdb"]), "values in kernel names");
    }

    #[test]
    fn a_new_logical_volume_counts() {
        let a = fixture("uefi-lvm-xfs.toml");
        assert!(!a.lvm_lvs.is_empty());
        let mut b = a.clone();
        let lv = LvmLv { name: "scratch".into(), uuid: "x".into(), size: 1 << 30, ..a.lvm_lvs[0].clone() };
        b.lvm_lvs.push(lv);
        let d = diff(&a, &b);
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!((d[0].item.as_str(), d[0].change), (format!("lvm-lv {}/scratch", a.lvm_lvs[0].vg).as_str(), Change::Added));
        let mut c = a.clone();
        c.lvm_lvs[0].size += 1 << 30;
        one_field(&diff(&a, &c), &format!("lvm-lv {}", a.lvm_lvs[0].id()), "size");
    }

    #[test]
    fn what_recovery_does_not_use_is_no_difference() {
        let a = two_disks();
        let mut b = a.clone();
        b.host.captured_at = "2030-01-01T00:00:00Z".into();
        b.host.kernel = "9.9".into();
        b.filesystems[0].used_bytes = 12345;
        b.mounts.reverse();
        b.excluded.push(crate::layout::Excluded { path: "/tmp/x".into(), fstype: Some("tmpfs".into()), reason: "whatever".into() });
        // A descriptor saved with a mount that is now excluded by pattern.
        b.mounts.push(Mount { path: "/var/lib/docker/volumes/v".into(), device: "sdb1".into(), source: "x".into(), options: "defaults".into(), subvol: None });
        b.mounts.push(Mount { path: "/run/user/1000/data".into(), device: "sdb1".into(), source: "x".into(), options: "defaults".into(), subvol: None });
        b.mounts.push(Mount { path: "/cache".into(), device: "sdb1".into(), source: "x".into(), options: "defaults".into(), subvol: None });
        let scope = MountScope::new(&["/cache".into()]);
        assert_eq!(compare_in(&a, &b, &scope), vec![]);
        assert!(!compare(&a, &b).is_empty(), "without the pattern /cache is a new mount");
    }

    #[test]
    fn json_is_item_field_old_new() {
        let a = two_disks();
        let mut b = a.clone();
        b.filesystems[0].label = Some("x".into());
        let j = serde_json::to_value(diff(&a, &b)).unwrap();
        assert_eq!(j[0]["item"], "filesystem on sda1");
        assert_eq!(j[0]["field"], "label");
        assert_eq!(j[0]["old"], "root");
        assert_eq!(j[0]["new"], "x");
        assert!(j[0]["why"].as_str().unwrap().starts_with("recovery"));
    }
}
