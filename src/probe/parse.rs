//! Parsers for what the system tools print. Each takes the text a tool
//! wrote and returns plain data; JSON where the tool offers it.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::Value;

/// One node of `lsblk -J -b -O`: the fields we use, read leniently (util-linux
/// versions differ in booleans as `true` or `"1"` and numbers as strings).
#[derive(Debug, Clone, Default)]
pub struct BlockNode {
    pub name: String,
    pub kname: String,
    pub path: String,
    pub kind: String,
    pub size: u64,
    pub log_sec: u64,
    pub phy_sec: u64,
    pub removable: bool,
    pub read_only: bool,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    pub maj_min: String,
    pub fstype: Option<String>,
    pub children: Vec<BlockNode>,
}

fn v_str(v: &Value, k: &str) -> Option<String> {
    match v.get(k)? {
        Value::String(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn v_u64(v: &Value, k: &str) -> Option<u64> {
    match v.get(k)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn v_bool(v: &Value, k: &str) -> bool {
    match v.get(k) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "1" || s == "true",
        Some(Value::Number(n)) => n.as_u64() == Some(1),
        _ => false,
    }
}

fn block_node(v: &Value) -> BlockNode {
    BlockNode {
        name: v_str(v, "name").unwrap_or_default(),
        kname: v_str(v, "kname").or_else(|| v_str(v, "name")).unwrap_or_default(),
        path: v_str(v, "path").unwrap_or_default(),
        kind: v_str(v, "type").unwrap_or_default(),
        size: v_u64(v, "size").unwrap_or(0),
        log_sec: v_u64(v, "log-sec").unwrap_or(512),
        phy_sec: v_u64(v, "phy-sec").unwrap_or(512),
        removable: v_bool(v, "rm"),
        read_only: v_bool(v, "ro"),
        model: v_str(v, "model"),
        serial: v_str(v, "serial"),
        wwn: v_str(v, "wwn"),
        maj_min: v_str(v, "maj:min").unwrap_or_default(),
        fstype: v_str(v, "fstype"),
        children: v.get("children").and_then(Value::as_array).map(|a| a.iter().map(block_node).collect()).unwrap_or_default(),
    }
}

/// `lsblk -J -b -O` → the top-level nodes with their children.
pub fn lsblk(json: &str) -> Result<Vec<BlockNode>> {
    let v: Value = serde_json::from_str(json).context("parsing the JSON of `lsblk -J -b -O`")?;
    let devs = v.get("blockdevices").and_then(Value::as_array).context("`lsblk -J` printed no `blockdevices`")?;
    Ok(devs.iter().map(block_node).collect())
}

#[derive(Debug, Clone, Deserialize)]
pub struct SfdiskTable {
    pub label: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub sectorsize: Option<u64>,
    #[serde(default)]
    pub partitions: Vec<SfdiskPartition>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SfdiskPartition {
    pub node: String,
    pub start: u64,
    pub size: u64,
    #[serde(rename = "type")]
    pub type_id: String,
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub attrs: Option<String>,
    #[serde(default)]
    pub bootable: bool,
}

/// `sfdisk -J DEV` → the partition table.
pub fn sfdisk(json: &str) -> Result<SfdiskTable> {
    #[derive(Deserialize)]
    struct Wrap {
        partitiontable: SfdiskTable,
    }
    Ok(serde_json::from_str::<Wrap>(json).context("parsing the JSON of `sfdisk -J`")?.partitiontable)
}

/// `KEY=value` lines (`blkid -o export`, `mdadm --export`, os-release).
pub fn key_values(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.starts_with('#') {
                return None;
            }
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
            Some((k.trim().to_string(), unescape_export(v)))
        })
        .collect()
}

/// blkid's export format escapes special characters with a backslash.
fn unescape_export(v: &str) -> String {
    let mut out = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq)]
pub struct MountInfo {
    pub maj_min: String,
    /// Path inside the filesystem that is mounted (btrfs subvolume, bind mounts).
    pub fs_root: String,
    pub mount_point: String,
    pub options: String,
    pub fstype: String,
    pub source: String,
    pub super_options: String,
}

/// Undo the octal escapes the kernel uses in mount tables (`\040` = space).
pub fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let n = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(n);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if f.len() < 6 || r.len() < 3 {
                return None;
            }
            Some(MountInfo {
                maj_min: f[2].to_string(),
                fs_root: unescape_octal(f[3]),
                mount_point: unescape_octal(f[4]),
                options: f[5].to_string(),
                fstype: r[0].to_string(),
                source: unescape_octal(r[1]),
                super_options: r[2].to_string(),
            })
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub struct FstabEntry {
    pub spec: String,
    pub file: String,
    pub vfstype: String,
    pub options: String,
}

pub fn fstab(text: &str) -> Vec<FstabEntry> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3).then(|| FstabEntry {
                spec: unescape_octal(f[0]),
                file: unescape_octal(f[1]),
                vfstype: f[2].to_string(),
                options: f.get(3).unwrap_or(&"defaults").to_string(),
            })
        })
        .collect()
}

/// `dumpe2fs -h DEV`: `Key:   value` lines.
pub fn dumpe2fs(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// `xfs_info`: `section = key=value key=value, ...` → `section.key` → value.
pub fn xfs_info(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        let (head, rest) = match line.split_once('=') {
            Some(x) => x,
            None => continue,
        };
        let head = head.trim();
        let rest = if head.is_empty() {
            rest
        } else if head.contains(' ') {
            // `data     =bsize=4096` style: head is the section.
            section = head.split_whitespace().next().unwrap_or("").to_string();
            rest
        } else {
            section = head.to_string();
            rest
        };
        // Tokens like `isize=512` `agcount=4,` `internal log` `bsize=4096`.
        for tok in rest.split(|c: char| c.is_whitespace() || c == ',') {
            if let Some((k, v)) = tok.split_once('=') {
                out.insert(format!("{section}.{k}"), v.to_string());
            }
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
pub struct SubvolLine {
    pub id: u64,
    pub parent_uuid: Option<String>,
    pub uuid: Option<String>,
    pub path: String,
}

/// `btrfs subvolume list -a -p -u -q MNT`: with `-a` every path is the full
/// path from the top level, prefixed `<FS_TREE>/` when outside the mounted subvolume.
pub fn btrfs_subvolumes(text: &str) -> Vec<SubvolLine> {
    text.lines()
        .filter_map(|l| {
            let toks: Vec<&str> = l.split_whitespace().collect();
            let get = |k: &str| toks.iter().position(|t| *t == k).and_then(|i| toks.get(i + 1)).map(|s| s.to_string());
            let id = get("ID")?.parse().ok()?;
            // The path is everything after the `path` keyword (it may contain spaces).
            let path = l.split_once(" path ")?.1.to_string();
            let path = path.strip_prefix("<FS_TREE>/").unwrap_or(&path).to_string();
            Some(SubvolLine { id, parent_uuid: get("parent_uuid").filter(|u| u != "-"), uuid: get("uuid").filter(|u| u != "-"), path })
        })
        .collect()
}

/// `btrfs filesystem df -b MNT` → (data profile, metadata profile).
pub fn btrfs_profiles(text: &str) -> (Option<String>, Option<String>) {
    let mut data = None;
    let mut meta = None;
    for l in text.lines() {
        let Some((kind, rest)) = l.split_once(',') else { continue };
        let profile = rest.split(':').next().unwrap_or("").trim().to_lowercase();
        match kind.trim() {
            "Data" => data = Some(profile),
            "Metadata" => meta = Some(profile),
            "Data+Metadata" => {
                data = Some(profile.clone());
                meta = Some(profile);
            }
            _ => {}
        }
    }
    (data, meta)
}

/// `btrfs inspect-internal dump-super DEV`: sizes and the feature flags, as
/// `mkfs.btrfs -O` names them.
pub fn btrfs_super(text: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let mut kv = BTreeMap::new();
    let mut flags = Vec::new();
    for l in text.lines() {
        let t = l.trim();
        if let Some(inner) = t.strip_prefix('(') {
            flags.extend(inner.split('|').map(|f| f.trim_matches(|c: char| c == ')' || c.is_whitespace()).to_string()));
        } else if t.ends_with('|') || t.ends_with(')') {
            flags.extend(t.split('|').map(|f| f.trim_matches(|c: char| c == ')' || c.is_whitespace()).to_string()));
        } else {
            let mut it = t.splitn(2, char::is_whitespace);
            if let (Some(k), Some(v)) = (it.next(), it.next()) {
                kv.insert(k.to_string(), v.trim().to_string());
            }
        }
    }
    let features = flags
        .iter()
        .filter_map(|f| {
            Some(match f.as_str() {
                "EXTENDED_IREF" => "extref",
                "SKINNY_METADATA" => "skinny-metadata",
                "NO_HOLES" => "no-holes",
                "RAID56" => "raid56",
                "FREE_SPACE_TREE" => "free-space-tree",
                "BLOCK_GROUP_TREE" => "block-group-tree",
                "ZONED" => "zoned",
                "RAID1C34" => "raid1c34",
                "MIXED_GROUPS" => "mixed-bg",
                _ => return None,
            })
        })
        .map(str::to_string)
        .collect();
    (kv, features)
}

/// One report of `lvm pvs|vgs|lvs --reportformat json`: rows of fields.
pub fn lvm_report(json: &str, kind: &str) -> Result<Vec<BTreeMap<String, String>>> {
    let v: Value = serde_json::from_str(json).with_context(|| format!("parsing the JSON of `lvm {kind}s`"))?;
    let rows = v
        .get("report")
        .and_then(|r| r.get(0))
        .and_then(|r| r.get(kind))
        .and_then(Value::as_array)
        .with_context(|| format!("`lvm {kind}s` JSON has no report.{kind}"))?;
    Ok(rows
        .iter()
        .map(|row| row.as_object().map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").trim().to_string())).collect()).unwrap_or_default())
        .collect())
}

/// `cryptsetup luksDump DEV` text (LUKS1 and LUKS2): `Key: value` lines,
/// first occurrence wins (the header comes before keyslots).
pub fn luks_dump(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for l in text.lines() {
        if let Some((k, v)) = l.split_once(':') {
            let k = k.trim().to_string();
            out.entry(k).or_insert_with(|| v.trim().to_string());
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
pub struct EfiBootEntry {
    pub num: String,
    pub label: String,
    pub active: bool,
    pub partuuid: Option<String>,
    pub path: Option<String>,
}

/// `efibootmgr -v` → (BootCurrent, entries).
pub fn efibootmgr(text: &str) -> (Option<String>, Vec<EfiBootEntry>) {
    let mut current = None;
    let mut entries = Vec::new();
    for l in text.lines() {
        if let Some(c) = l.strip_prefix("BootCurrent:") {
            current = Some(c.trim().to_string());
            continue;
        }
        let Some(rest) = l.strip_prefix("Boot") else { continue };
        if rest.len() < 5 || !rest[..4].chars().all(|c| c.is_ascii_hexdigit()) {
            continue;
        }
        let num = rest[..4].to_string();
        let active = rest[4..].starts_with('*');
        let body = rest[4..].trim_start_matches('*').trim_start();
        let (label, dp) = match body.split_once('\t') {
            Some((a, b)) => (a.trim().to_string(), b.to_string()),
            None => match body.find(" HD(").or_else(|| body.find(" PciRoot(")).or_else(|| body.find(" FvVol(")) {
                Some(i) => (body[..i].trim().to_string(), body[i..].trim().to_string()),
                None => (body.trim().to_string(), String::new()),
            },
        };
        let partuuid = dp.find("HD(").and_then(|i| {
            let inner = &dp[i + 3..];
            let inner = &inner[..inner.find(')')?];
            let f: Vec<&str> = inner.split(',').collect();
            (f.get(1) == Some(&"GPT")).then(|| f.get(2).map(|u| u.to_uppercase())).flatten()
        });
        let path = if let Some(i) = dp.find("File(") {
            dp[i + 5..].split(')').next().map(str::to_string)
        } else {
            dp.find(")/\\").map(|i| dp[i + 2..].split_whitespace().next().unwrap_or("").to_string())
        };
        entries.push(EfiBootEntry { num, label, active, partuuid, path });
    }
    (current, entries)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sfdisk_gpt_and_mbr() {
        let t = sfdisk(r#"{"partitiontable":{"label":"gpt","id":"5E5E6400-73D9-2747-994B-C50DD8E4E174","device":"/dev/loop0","unit":"sectors","firstlba":2048,"lastlba":1228766,"sectorsize":512,"partitions":[{"node":"/dev/loop0p1","start":2048,"size":65536,"type":"C12A7328-F81F-11D2-BA4B-00A0C93EC93B","uuid":"FA322179-0BD0-FC4A-9597-3F8D0071F321","name":"EFI"},{"node":"/dev/loop0p5","start":657408,"size":569344,"type":"0FC63DAF-8483-4772-8E79-3D69D8477DE4","uuid":"0A1D7A52-6D53-FF46-8BCA-BC6EDAEB241E","attrs":"LegacyBIOSBootable GUID:60"}]}}"#).unwrap();
        assert_eq!(t.label, "gpt");
        assert_eq!(t.partitions[1].attrs.as_deref(), Some("LegacyBIOSBootable GUID:60"));
        let m = sfdisk(r#"{"partitiontable":{"label":"dos","id":"0x5d3c2b1a","device":"/dev/sda","unit":"sectors","sectorsize":512,"partitions":[{"node":"/dev/sda1","start":2048,"size":1048576,"type":"83","bootable":true},{"node":"/dev/sda2","start":1050624,"size":15726592,"type":"5"}]}}"#).unwrap();
        assert!(m.partitions[0].bootable);
        assert_eq!(m.partitions[1].type_id, "5");
    }

    #[test]
    fn mountinfo_with_escapes_and_subvol() {
        let m = mountinfo("36 35 0:31 /@home /mnt/my\\040home rw,relatime shared:1 - btrfs /dev/vda2 rw,space_cache=v2,subvolid=257,subvol=/@home\n");
        assert_eq!(m[0].mount_point, "/mnt/my home");
        assert_eq!(m[0].fs_root, "/@home");
        assert_eq!(m[0].fstype, "btrfs");
        assert_eq!(m[0].maj_min, "0:31");
    }

    #[test]
    fn xfs_info_sections() {
        let t = "meta-data=/dev/vdb1              isize=512    agcount=4, agsize=65536 blks\n         =                       sectsz=512   attr=2, projid32bit=1\n         =                       crc=1        finobt=1, sparse=1, rmapbt=0\n         =                       reflink=1    bigtime=1 inobtcount=1 nrext64=0\ndata     =                       bsize=4096   blocks=262144, imaxpct=25\n         =                       sunit=0      swidth=0 blks\nnaming   =version 2              bsize=4096   ascii-ci=0, ftype=1\nlog      =internal log           bsize=4096   blocks=16384, version=2\n         =                       sectsz=512   sunit=0 blks, lazy-count=1\nrealtime =none                   extsz=4096   blocks=0, rtextents=0\n";
        let m = xfs_info(t);
        assert_eq!(m["meta-data.isize"], "512");
        assert_eq!(m["meta-data.reflink"], "1");
        assert_eq!(m["data.bsize"], "4096");
        assert_eq!(m["data.blocks"], "262144");
        assert_eq!(m["log.blocks"], "16384");
    }

    #[test]
    fn btrfs_outputs() {
        let s = btrfs_subvolumes("ID 256 gen 7 parent 5 top level 5 parent_uuid -                                    uuid aa0e74e7-b3ac-db46-a37f-fc0fa5bfd156 path @\nID 258 gen 7 parent 256 top level 256 parent_uuid 11111111-b3ac-db46-a37f-fc0fa5bfd156 uuid e6d8cda0-e4c4-7f48-a176-48f54fe07865 path @/nested dir\n");
        assert_eq!(s[0].path, "@");
        assert_eq!(s[1].path, "@/nested dir");
        assert!(s[1].parent_uuid.is_some());
        let (d, m) = btrfs_profiles("Data, single: total=8388608, used=0\nSystem, DUP: total=8388608, used=16384\nMetadata, DUP: total=33554432, used=131072\nGlobalReserve, single: total=5767168, used=0\n");
        assert_eq!((d.as_deref(), m.as_deref()), (Some("single"), Some("dup")));
        let (kv, f) = btrfs_super("sectorsize\t\t4096\nnodesize\t\t16384\ncompat_ro_flags\t\t0x3\n\t\t\t( FREE_SPACE_TREE |\n\t\t\t  FREE_SPACE_TREE_VALID )\nincompat_flags\t\t0x341\n\t\t\t( MIXED_BACKREF |\n\t\t\t  EXTENDED_IREF |\n\t\t\t  SKINNY_METADATA |\n\t\t\t  NO_HOLES )\n");
        assert_eq!(kv["nodesize"], "16384");
        assert_eq!(f, vec!["free-space-tree", "extref", "skinny-metadata", "no-holes"]);
    }

    #[test]
    fn efibootmgr_both_formats() {
        let (cur, e) = efibootmgr("BootCurrent: 0001\nTimeout: 0 seconds\nBootOrder: 0001,0000\nBoot0000* UiApp\tFvVol(7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1)/FvFile(462caa21-7614-4503-836e-8ab6f4662331)\nBoot0001* debian\tHD(1,GPT,5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d,0x800,0x100000)/File(\\EFI\\debian\\shimx64.efi)\nBoot0002  old\tHD(1,GPT,5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d,0x800,0x100000)/\\EFI\\old\\grubx64.efi\n");
        assert_eq!(cur.as_deref(), Some("0001"));
        assert_eq!(e[1].label, "debian");
        assert_eq!(e[1].partuuid.as_deref(), Some("5A6B7C8D-9E0F-4A1B-8C2D-3E4F5A6B7C8D"));
        assert_eq!(e[1].path.as_deref(), Some("\\EFI\\debian\\shimx64.efi"));
        assert!(!e[2].active);
        assert_eq!(e[2].path.as_deref(), Some("\\EFI\\old\\grubx64.efi"));
    }

    #[test]
    fn lvm_json() {
        let rows = lvm_report(r#"{"report":[{"lv":[{"lv_name":"root","vg_name":"vg0","lv_uuid":"Qw1eRt","lv_size":"21474836480"}]}]}"#, "lv").unwrap();
        assert_eq!(rows[0]["lv_size"], "21474836480");
    }

    #[test]
    fn key_value_unescapes() {
        let m = key_values("LABEL=my\\ disk\nNAME=\"Debian GNU/Linux 12 (bookworm)\"\n");
        assert_eq!(m["LABEL"], "my disk");
        assert_eq!(m["NAME"], "Debian GNU/Linux 12 (bookworm)");
    }
}
