//! The disks present on the machine we recover onto, read from sysfs (and
//! `/dev/disk/by-id` when udev made it), with what makes a disk unsafe to
//! overwrite: mounted, holding the running system, active swap, or in use by
//! a device-mapper/MD device.
//!
//! Planning only sees this data, never the system, so tests can hand it a
//! made-up inventory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::target::TargetRoot;

/// One whole disk that could receive a recorded disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub struct PresentDisk {
    /// Kernel name (`sda`, `nvme0n1`, `loop3`).
    pub name: String,
    /// `/dev/NAME`.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    pub logical_sector_size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `/dev/disk/by-id/` names pointing at this disk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_id: Vec<String>,
    #[serde(default)]
    pub removable: bool,
    /// Loop, RAM and similar virtual disks: never chosen automatically, only by `--map`.
    #[serde(default)]
    pub virtual_disk: bool,
    /// Why this disk must not be overwritten (empty: free to use).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub busy: Vec<String>,
}

/// One NIC of the machine we recover onto, as the rescue system sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub struct PresentNic {
    /// Its name in the rescue system.
    pub name: String,
    /// Permanent MAC.
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_path: Option<String>,
    /// The predictable name udev gives it (`enp1s0`), when udev can say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_name: Option<String>,
}

/// The present NICs from a JSON list (a saved inventory; tests).
pub fn read_nics_file(f: &Path) -> Result<Vec<PresentNic>> {
    let text = std::fs::read_to_string(f).with_context(|| format!("reading the NIC inventory {}", f.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing the NIC inventory {}", f.display()))
}

/// The NICs of this machine: `ip -j -d link` and sysfs read as capture reads
/// them, and the name udev's predictable naming (`udevadm test-builtin
/// net_id`: onboard, else slot, else path) gives each.
pub fn read_nics_live() -> Result<Vec<PresentNic>> {
    let net = crate::probe::network::capture_network(&crate::probe::source::Live, "/").context("reading this machine's network interfaces")?;
    Ok(net
        .nics()
        .filter_map(|i| {
            let mac = i.mac.clone()?;
            let props = crate::cmd::Cmd::new("udevadm").args(["test-builtin", "net_id"]).arg(format!("/sys/class/net/{}", i.name)).read().unwrap_or_default();
            let props = crate::probe::parse::key_values(&props);
            let predicted_name = ["ID_NET_NAME_ONBOARD", "ID_NET_NAME_SLOT", "ID_NET_NAME_PATH"].iter().find_map(|k| props.get(*k).cloned());
            Some(PresentNic { name: i.name.clone(), mac, driver: i.driver.clone(), pci_path: i.pci_path.clone(), predicted_name })
        })
        .collect())
}

/// The present disks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Inventory {
    pub disks: Vec<PresentDisk>,
}

impl Inventory {
    /// Find a disk by `/dev/NAME`, `NAME`, a `/dev/disk/by-id/...` path or a by-id name.
    pub fn find(&self, spec: &str) -> Option<&PresentDisk> {
        let base = spec.strip_prefix("/dev/disk/by-id/").unwrap_or(spec);
        let name = spec.strip_prefix("/dev/").unwrap_or(spec);
        self.disks.iter().find(|d| d.path == Path::new(spec) || d.name == name || d.by_id.iter().any(|b| b == base))
    }

    /// Read the present disks from sysfs. `target_root` is where recovery
    /// mounts the recreated tree: the mounts `rescue` recorded there (an
    /// earlier attempt) do not make a disk busy; every other mount, wherever
    /// it is, and every active swap does.
    pub fn read_live(target_root: &TargetRoot) -> Result<Inventory> {
        let ours = target_root.our_mounts()?;
        let mounts: Vec<MountEntry> =
            read_mounts().unwrap_or_default().into_iter().filter(|m| !ours.iter().any(|o| o.devnum == m.devnum && o.target == Path::new(&m.target))).collect();
        let swaps = read_swaps().unwrap_or_default();
        let by_id = read_by_id();
        let mut disks = Vec::new();
        let names = std::fs::read_dir("/sys/block").context("listing /sys/block (is sysfs mounted?)")?;
        let mut names: Vec<String> = names.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        for name in names {
            if let Some(d) = read_disk(&name, &mounts, &swaps, &by_id)? {
                disks.push(d);
            }
        }
        Ok(Inventory { disks })
    }
}

/// A mounted device: by `major:minor` and by mount point.
struct MountEntry {
    devnum: String,
    source_devnum: Option<String>,
    target: String,
}

fn read_mounts() -> Result<Vec<MountEntry>> {
    Ok(crate::util::mountinfo()?
        .into_iter()
        .map(|m| MountEntry {
            // Btrfs reports an anonymous device number; its source path names the real one.
            source_devnum: if m.source.starts_with("/dev/") { crate::util::devnum_of_path(&m.source) } else { None },
            devnum: m.devnum,
            target: m.target.to_string_lossy().into_owned(),
        })
        .collect())
}

fn read_swaps() -> Result<Vec<String>> {
    let text = std::fs::read_to_string("/proc/swaps").context("reading /proc/swaps")?;
    Ok(text.lines().skip(1).filter_map(|l| l.split_whitespace().next()).filter_map(crate::util::devnum_of_path).collect())
}

/// by-id name -> kernel name of the disk or partition it points at.
fn read_by_id() -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir("/dev/disk/by-id") else { return out };
    for e in rd.flatten() {
        let Ok(target) = std::fs::read_link(e.path()) else { continue };
        let Some(kname) = target.file_name() else { continue };
        out.entry(kname.to_string_lossy().into_owned()).or_default().push(e.file_name().to_string_lossy().into_owned());
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

fn read_trim(path: &Path) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn read_disk(name: &str, mounts: &[MountEntry], swaps: &[String], by_id: &BTreeMap<String, Vec<String>>) -> Result<Option<PresentDisk>> {
    let sys = Path::new("/sys/block").join(name);
    // Device-mapper and MD devices are built by the plan, not targets of it;
    // optical and floppy drives never are.
    if ["dm-", "md", "sr", "fd", "zram", "ram", "nbd"].iter().any(|p| name.starts_with(p)) {
        return Ok(None);
    }
    let sectors: u64 = read_trim(&sys.join("size")).and_then(|s| s.parse().ok()).unwrap_or(0);
    if sectors == 0 {
        return Ok(None);
    }
    let virtual_disk = name.starts_with("loop") || read_trim(&sys.join("device/type")).is_none() && !sys.join("device").exists();
    let serial = read_trim(&sys.join("serial")).or_else(|| read_trim(&sys.join("device/serial")));
    let wwn =
        read_trim(&sys.join("wwid")).or_else(|| read_trim(&sys.join("device/wwid"))).map(|w| w.strip_prefix("naa.").map(|n| format!("0x{n}")).unwrap_or(w));
    let model = read_trim(&sys.join("device/model"));
    let logical_sector_size = read_trim(&sys.join("queue/logical_block_size")).and_then(|s| s.parse().ok()).unwrap_or(512);
    let removable = read_trim(&sys.join("removable")).as_deref() == Some("1");

    // The disk, its partitions, and everything stacked on them (holders).
    let mut devs: Vec<(String, String)> = Vec::new(); // (kernel name, major:minor)
    let mut todo = vec![sys.clone()];
    if let Ok(rd) = std::fs::read_dir(&sys) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(name) && e.path().join("partition").exists() {
                todo.push(e.path());
            }
        }
    }
    let mut seen = BTreeSet::new();
    let mut busy = Vec::new();
    while let Some(dir) = todo.pop() {
        let Some(kname) = dir.file_name().map(|f| f.to_string_lossy().into_owned()) else { continue };
        if !seen.insert(kname.clone()) {
            continue;
        }
        if let Some(dn) = read_trim(&dir.join("dev")) {
            devs.push((kname.clone(), dn));
        }
        if let Ok(rd) = std::fs::read_dir(dir.join("holders")) {
            for h in rd.flatten() {
                // A holder (LVM, MD, LUKS) alone does not make the disk busy:
                // the wipe tears it down. What is mounted on it does.
                let hn = h.file_name().to_string_lossy().into_owned();
                todo.push(Path::new("/sys/class/block").join(&hn));
            }
        }
    }
    for (kname, dn) in &devs {
        for m in mounts {
            if &m.devnum == dn || m.source_devnum.as_deref() == Some(dn.as_str()) {
                if m.target == "/" {
                    busy.push(format!("{kname} holds the running system (mounted at /)"));
                } else {
                    busy.push(format!("{kname} is mounted at {}", m.target));
                }
            }
        }
        if swaps.contains(dn) {
            busy.push(format!("{kname} is an active swap"));
        }
    }
    busy.sort();
    busy.dedup();
    Ok(Some(PresentDisk {
        name: name.to_string(),
        path: Path::new("/dev").join(name),
        size: sectors * 512,
        logical_sector_size,
        serial,
        wwn,
        model,
        by_id: by_id.get(name).cloned().unwrap_or_default(),
        removable,
        virtual_disk,
        busy,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_by_path_name_and_by_id() {
        let inv = Inventory {
            disks: vec![PresentDisk {
                name: "sdb".into(),
                path: "/dev/sdb".into(),
                by_id: vec!["ata-X_123".into()],
                size: 1,
                logical_sector_size: 512,
                ..Default::default()
            }],
        };
        assert!(inv.find("/dev/sdb").is_some());
        assert!(inv.find("sdb").is_some());
        assert!(inv.find("/dev/disk/by-id/ata-X_123").is_some());
        assert!(inv.find("ata-X_123").is_some());
        assert!(inv.find("sdc").is_none());
    }

    #[test]
    fn live_inventory_reads_without_error() {
        // Every machine has sysfs; the host's own root disk must show up busy.
        let inv = Inventory::read_live(&TargetRoot::default()).unwrap();
        for d in &inv.disks {
            assert!(d.size > 0, "{d:?}");
        }
    }
}
