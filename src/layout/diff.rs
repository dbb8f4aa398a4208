//! Comparing two descriptors for `checklayout`: what changed that matters
//! for recovery. Capture time, the rescue version, used bytes and the order
//! of items are not changes.

use serde::Serialize;
use serde_json::Value;

use super::Layout;

/// One difference between the saved and the current layout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// `partition sda3`, `filesystem on vg0/root`, `host`, `bootloader`.
    pub item: String,
    /// `added`, `removed` or `modified`.
    pub change: &'static str,
    /// Field-level differences of a modified item: `field: old -> new`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub old: Value,
    pub new: Value,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.item, self.change)?;
        for fc in &self.fields {
            write!(f, "\n    {}: {} -> {}", fc.field, short(&fc.old), short(&fc.new))?;
        }
        Ok(())
    }
}

fn short(v: &Value) -> String {
    match v {
        Value::Null => "(none)".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Drop what does not matter for recovery, so two captures of an unchanged
/// system compare equal.
pub fn normalize(layout: &Layout) -> Layout {
    let mut l = layout.clone();
    l.host.captured_at.clear();
    l.host.rescue_version.clear();
    l.host.kernel.clear();
    // Where the last backup went is not part of the storage layout.
    l.backup = None;
    for f in &mut l.filesystems {
        f.used_bytes = 0;
    }
    l.mounts.sort_by(|a, b| a.path.cmp(&b.path));
    l.excluded.sort_by(|a, b| a.path.cmp(&b.path));
    l.disks.sort_by(|a, b| a.name.cmp(&b.name));
    l.partitions.sort_by(|a, b| (&a.disk, a.number).cmp(&(&b.disk, b.number)));
    l.filesystems.sort_by(|a, b| a.device.cmp(&b.device));
    l.swaps.sort_by(|a, b| a.device.cmp(&b.device));
    // Boot order and which entry is active change on every boot from the
    // firmware's menu; the set of entries is what matters.
    l.bootloader.efi_entries.sort_by(|a, b| a.num.cmp(&b.num));
    for e in &mut l.bootloader.efi_entries {
        e.active = false;
    }
    l
}

/// The items that differ between `old` and `new`, after normalizing both.
pub fn compare(old: &Layout, new: &Layout) -> Vec<Change> {
    let (old, new) = (normalize(old), normalize(new));
    let (Ok(Value::Object(a)), Ok(Value::Object(b))) = (serde_json::to_value(&old), serde_json::to_value(&new)) else {
        return Vec::new();
    };
    let mut changes = Vec::new();
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let (va, vb) = (a.get(key).unwrap_or(&Value::Null), b.get(key).unwrap_or(&Value::Null));
        if va == vb {
            continue;
        }
        match (va, vb) {
            (Value::Array(_), _) | (_, Value::Array(_)) => compare_items(key, as_array(va), as_array(vb), &mut changes),
            _ => changes.push(Change { item: key.clone(), change: "modified", fields: field_changes(va, vb) }),
        }
    }
    changes
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
        "filesystem" | "swap" | "lvm-pv" => format!("on {}", get("device")),
        "mount" | "excluded" => get("path"),
        _ => get("name"),
    }
}

fn compare_items(kind: &str, a: &[Value], b: &[Value], out: &mut Vec<Change>) {
    for x in a {
        let id = item_id(kind, x);
        match b.iter().find(|y| item_id(kind, y) == id) {
            None => out.push(Change { item: format!("{kind} {id}"), change: "removed", fields: vec![] }),
            Some(y) if x != y => out.push(Change { item: format!("{kind} {id}"), change: "modified", fields: field_changes(x, y) }),
            _ => {}
        }
    }
    for y in b {
        let id = item_id(kind, y);
        if !a.iter().any(|x| item_id(kind, x) == id) {
            out.push(Change { item: format!("{kind} {id}"), change: "added", fields: vec![] });
        }
    }
}

fn field_changes(a: &Value, b: &Value) -> Vec<FieldChange> {
    let mut out = Vec::new();
    flatten_diff("", a, b, &mut out);
    out
}

fn flatten_diff(prefix: &str, a: &Value, b: &Value, out: &mut Vec<FieldChange>) {
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
        _ => out.push(FieldChange { field: prefix.to_string(), old: a.clone(), new: b.clone() }),
    }
}
