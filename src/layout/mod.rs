//! The layout descriptor: what a system's storage looks like, as plain serde
//! types. Capture (`probe`) writes it, recovery (`plan`, `apply`) reads it, a
//! person can read and edit it. TOML, `version = 1`, kebab-case keys.
//!
//! Items refer to each other by *block id*: the kernel name of a disk or
//! partition at capture time (`sda`, `nvme0n1p2`), the name of an MD array
//! (`md0`), the mapper name of a LUKS volume (`cryptroot`), or `VG/LV` for a
//! logical volume. These are names inside the descriptor, not device paths on
//! the recovery machine: the plan maps disks to present devices.

pub mod diff;
pub mod network;
pub mod recovery;
pub mod validate;

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub use validate::{line_of_item, ValidationError};

/// The descriptor format version this build reads and writes.
pub const VERSION: u32 = 1;

/// The RAID levels a descriptor may record (validation accepts these only).
pub const RAID_LEVELS: &[&str] = &["raid0", "raid1", "raid4", "raid5", "raid6", "raid10", "linear"];
/// The LUKS versions a descriptor may record.
pub const LUKS_VERSIONS: &[u32] = &[1, 2];
/// The LVM segment types recovery recreates (the plan refuses others).
pub const LVM_SEGMENT_TYPES: &[&str] = &["linear", "striped"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Layout {
    pub version: u32,
    pub host: Host,
    #[serde(default, rename = "disk", skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<Disk>,
    #[serde(default, rename = "partition", skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<Partition>,
    #[serde(default, rename = "raid", skip_serializing_if = "Vec::is_empty")]
    pub raids: Vec<Raid>,
    #[serde(default, rename = "luks", skip_serializing_if = "Vec::is_empty")]
    pub luks: Vec<Luks>,
    #[serde(default, rename = "lvm-pv", skip_serializing_if = "Vec::is_empty")]
    pub lvm_pvs: Vec<LvmPv>,
    #[serde(default, rename = "lvm-vg", skip_serializing_if = "Vec::is_empty")]
    pub lvm_vgs: Vec<LvmVg>,
    #[serde(default, rename = "lvm-lv", skip_serializing_if = "Vec::is_empty")]
    pub lvm_lvs: Vec<LvmLv>,
    #[serde(default, rename = "filesystem", skip_serializing_if = "Vec::is_empty")]
    pub filesystems: Vec<Filesystem>,
    #[serde(default, rename = "swap", skip_serializing_if = "Vec::is_empty")]
    pub swaps: Vec<Swap>,
    #[serde(default, rename = "mount", skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    #[serde(default, rename = "excluded", skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<Excluded>,
    #[serde(default)]
    pub bootloader: Bootloader,
    /// The backup made together with this descriptor (`rescue mkbackup`), so
    /// recovery knows where the data is even without a config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupRecord>,
    /// The network of the recorded system (absent in descriptors captured
    /// before rescue recorded it, or from a tree that is not the running system).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<network::Network>,
}

/// Whether `name` is a host name: labels of letters, digits, `-` and `_`
/// (not starting with `-`), separated by single dots, at most 253
/// characters. It names the host's backup directory, so `.`, `..` and
/// anything with `/` are never one.
pub fn is_valid_hostname(name: &str) -> bool {
    name.len() <= 253
        && !name.is_empty()
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Host {
    pub hostname: String,
    /// `PRETTY_NAME` from os-release.
    #[serde(default)]
    pub os_release: String,
    /// `ID` from os-release (debian, ubuntu, rhel...), to pick distribution tools.
    #[serde(default)]
    pub os_id: String,
    #[serde(default)]
    pub kernel: String,
    #[serde(default)]
    pub arch: String,
    pub firmware: Firmware,
    /// RFC 3339 time of capture.
    #[serde(default)]
    pub captured_at: String,
    #[serde(default)]
    pub rescue_version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Firmware {
    #[default]
    Bios,
    Uefi,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TableType {
    Gpt,
    Msdos,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Disk {
    /// Block id (kernel name at capture, e.g. `sda`, `nvme0n1`).
    pub name: String,
    /// Device path at capture.
    pub path: String,
    /// `/dev/disk/by-id/` names (without the directory), most specific first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_id: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Size in bytes.
    pub size: u64,
    #[serde(default = "default_sector")]
    pub logical_sector_size: u64,
    #[serde(default = "default_sector")]
    pub physical_sector_size: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removable: bool,
    /// Partition table; absent for a whole-disk filesystem/PV/RAID member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<TableType>,
    /// GPT disk GUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_guid: Option<String>,
    /// MBR disk signature, as `0x` and 8 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mbr_signature: Option<String>,
}

impl Disk {
    /// What names this disk whatever the kernel calls it: its WWN, else its
    /// serial, else its first `/dev/disk/by-id` name; the kernel name only
    /// when it has none of these (a loop device, a virtual disk without serial).
    pub fn identity(&self) -> String {
        let given = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
        if let Some(w) = given(&self.wwn) {
            format!("wwn-{w}")
        } else if let Some(s) = given(&self.serial) {
            format!("serial-{s}")
        } else if let Some(b) = self.by_id.first() {
            b.clone()
        } else {
            self.name.clone()
        }
    }
}

fn default_sector() -> u64 {
    512
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionKind {
    #[default]
    Primary,
    Extended,
    Logical,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Partition {
    /// Block id (kernel name at capture, e.g. `sda1`, `nvme0n1p2`).
    pub name: String,
    /// Block id of the disk that holds it.
    pub disk: String,
    pub number: u32,
    /// First sector, in the disk's logical sectors.
    pub start: u64,
    /// Length in the disk's logical sectors.
    pub size: u64,
    /// GPT partition type GUID (upper case), or MBR type id as two hex digits (`83`).
    #[serde(rename = "type")]
    pub type_id: String,
    /// GPT partition GUID (PARTUUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// GPT partition name (PARTLABEL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// GPT attribute bits (bit numbers as sfdisk writes them, e.g. `LegacyBIOSBootable GUID:63`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attrs: Option<String>,
    /// MBR boot flag.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bootable: bool,
    /// MBR primary/extended/logical; always primary on GPT.
    #[serde(default, skip_serializing_if = "is_primary")]
    pub kind: PartitionKind,
    /// Keep this size when the target disk differs, whatever the resize policy.
    /// Absent: decided by what the partition holds (ESP, BIOS boot, /boot, swap keep their size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<bool>,
}

fn is_primary(k: &PartitionKind) -> bool {
    *k == PartitionKind::Primary
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Raid {
    /// Block id: the kernel name (`md0`, `md127`).
    pub name: String,
    /// The `/dev/md/NAME` name, if any (`root`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    /// `raid0`, `raid1`, `raid5`, `raid6`, `raid10`.
    pub level: String,
    /// Superblock version: `1.2`, `1.0`, `0.90`...
    pub metadata: String,
    pub uuid: String,
    /// Array name stored in the superblock (`host:root`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_name: Option<String>,
    /// Chunk size in bytes (striped levels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<u64>,
    /// Number of active devices the array is built for (members may be missing).
    pub raid_devices: u32,
    /// Layout for raid5/6/10 (`left-symmetric`, `n2`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    /// Array size in bytes.
    pub size: u64,
    /// Active members, block ids, in role order.
    pub devices: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spares: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Luks {
    /// Block id: the device-mapper name (`cryptroot`, `luks-<uuid>`).
    pub name: String,
    /// Block id of the device holding the LUKS header.
    pub device: String,
    /// 1 or 2.
    pub version: u32,
    pub uuid: String,
    pub cipher: String,
    /// Key size in bits.
    pub key_size: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pbkdf: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsystem: Option<String>,
    /// Encryption sector size in bytes (LUKS2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sector_size: Option<u32>,
    /// Data offset in 512-byte sectors (header size), to recreate the same usable size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Size of the opened mapping in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LvmPv {
    /// Block id of the device that is the PV.
    pub device: String,
    pub uuid: String,
    /// VG it belongs to.
    pub vg: String,
    /// PV size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LvmVg {
    pub name: String,
    pub uuid: String,
    /// Extent size in bytes.
    pub extent_size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LvmLv {
    pub vg: String,
    pub name: String,
    pub uuid: String,
    /// Size in bytes.
    pub size: u64,
    /// `linear`, `striped`, `raid1`, `thin-pool`...
    #[serde(default = "default_segtype")]
    pub segment_type: String,
    #[serde(default = "one")]
    pub stripes: u32,
    /// Stripe size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_size: Option<u64>,
}

impl LvmLv {
    /// The block id other items use to refer to this LV: `VG/LV`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.vg, self.name)
    }
}

/// The stripe size `lvcreate -i` uses when given none (64 KiB).
pub const DEFAULT_STRIPE_SIZE: u64 = 64 << 10;

impl LvmLv {
    /// Bytes per stripe: the recorded size, or LVM's default.
    pub fn stripe_bytes(&self) -> u64 {
        self.stripe_size.unwrap_or(DEFAULT_STRIPE_SIZE)
    }

    /// Why this striped LV cannot be made in a VG of `extent_size` bytes, if it cannot:
    /// LVM wants a power of two between 4 KiB and the extent size.
    pub fn stripe_problem(&self, extent_size: u64) -> Option<String> {
        let ss = self.stripe_bytes();
        (self.stripes > 1 && (ss < 4096 || !ss.is_power_of_two() || ss > extent_size)).then(|| {
            format!("logical volume {}: stripe size {ss} bytes is not a power of two between 4 KiB and the extent size ({extent_size} bytes)", self.id())
        })
    }
}

fn default_segtype() -> String {
    "linear".into()
}
fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum FsType {
    Ext2,
    Ext3,
    Ext4,
    Xfs,
    Vfat,
    Btrfs,
}

impl FsType {
    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Ext2 => "ext2",
            FsType::Ext3 => "ext3",
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
            FsType::Vfat => "vfat",
            FsType::Btrfs => "btrfs",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ext2" => FsType::Ext2,
            "ext3" => FsType::Ext3,
            "ext4" => FsType::Ext4,
            "xfs" => FsType::Xfs,
            "vfat" | "fat" | "msdos" => FsType::Vfat,
            "btrfs" => FsType::Btrfs,
            _ => return None,
        })
    }
    pub fn is_ext(self) -> bool {
        matches!(self, FsType::Ext2 | FsType::Ext3 | FsType::Ext4)
    }
}

impl std::fmt::Display for FsType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Filesystem {
    /// Block id of the device holding it. Btrfs spanning several devices
    /// lists the others in `extra-devices`.
    pub device: String,
    #[serde(rename = "type")]
    pub fstype: FsType,
    pub uuid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Bytes in use at capture (recovery refuses a target that cannot hold them).
    #[serde(default)]
    pub used_bytes: u64,
    /// Filesystem size in bytes at capture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_devices: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<ExtOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xfs: Option<XfsOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vfat: Option<VfatOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub btrfs: Option<BtrfsOptions>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ExtOptions {
    pub block_size: u32,
    pub inode_size: u32,
    /// Bytes per inode (from block count and inode count), for `mke2fs -i`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inode_ratio: Option<u64>,
    /// Features as `dumpe2fs -h` lists them (`has_journal`, `extent`, `64bit`, ...).
    #[serde(default)]
    pub features: Vec<String>,
    /// Reserved blocks percentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_percent: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct XfsOptions {
    pub block_size: u32,
    #[serde(default)]
    pub sector_size: u32,
    #[serde(default)]
    pub inode_size: u32,
    pub crc: bool,
    pub reflink: bool,
    pub finobt: bool,
    #[serde(default)]
    pub rmapbt: bool,
    #[serde(default)]
    pub bigtime: bool,
    #[serde(default)]
    pub inobtcount: bool,
    #[serde(default)]
    pub sparse: bool,
    #[serde(default)]
    pub agcount: u32,
    /// Log size in bytes (internal log).
    #[serde(default)]
    pub log_size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VfatOptions {
    /// 12, 16 or 32.
    pub fat_size: u32,
    /// Volume id as 8 hex digits (what blkid shows as UUID without the dash).
    pub volume_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sectors_per_cluster: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BtrfsOptions {
    /// Data profile: single, dup, raid0, raid1, raid10, raid5, raid6.
    pub data_profile: String,
    pub metadata_profile: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sector_size: Option<u32>,
    /// Features as `mkfs.btrfs -O` names them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
    #[serde(default, rename = "subvolume", skip_serializing_if = "Vec::is_empty")]
    pub subvolumes: Vec<Subvolume>,
    /// Path of the default subvolume (absent or empty: the top level, id 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_subvolume: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Subvolume {
    pub id: u64,
    /// Path relative to the top level (`@`, `@/home`, `var/lib/docker`).
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub readonly: bool,
    /// Snapshots are listed but not recreated (their content is restored as files when mounted).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub snapshot: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Swap {
    pub device: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Mount {
    /// Mount point in the recovered system (`/`, `/home`, `/boot/efi`).
    pub path: String,
    /// Block id of the filesystem's device.
    pub device: String,
    /// The source as written in fstab: `UUID=...`, `LABEL=...`, `/dev/mapper/vg-root`, `PARTUUID=...`.
    pub source: String,
    /// Mount options as in fstab (`defaults`, `noatime,errors=remount-ro`).
    #[serde(default = "default_options")]
    pub options: String,
    /// Btrfs subvolume path mounted here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subvol: Option<String>,
}

fn default_options() -> String {
    "defaults".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Excluded {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fstype: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BootloaderKind {
    #[default]
    None,
    Grub2Bios,
    Grub2Efi,
    SystemdBoot,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Bootloader {
    #[serde(default)]
    pub kind: BootloaderKind,
    /// GRUB BIOS: block ids of the disks carrying boot code in their MBR/BIOS boot partition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub boot_disks: Vec<String>,
    /// UEFI: block id of the ESP partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub esp: Option<String>,
    /// UEFI: loader path inside the ESP (`\EFI\debian\shimx64.efi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loader: Option<String>,
    /// UEFI: whether the distribution's signed shim is in use.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shim: bool,
    /// UEFI: the boot entries found in NVRAM.
    #[serde(default, rename = "efi-entry", skip_serializing_if = "Vec::is_empty")]
    pub efi_entries: Vec<EfiEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EfiEntry {
    /// Boot number, 4 hex digits (`0001`).
    pub num: String,
    pub label: String,
    /// PARTUUID of the partition the loader is on, when it is a disk entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partuuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub active: bool,
}

/// Where the backup of this system went when `rescue mkbackup` made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BackupRecord {
    /// The destination as configured (`iso:///backup`, `nfs://nas/backups`).
    pub url: String,
    /// The archive file name in the host's directory there (empty for rsync).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub archive: String,
    /// RFC 3339 time the backup finished.
    #[serde(default)]
    pub created: String,
    /// Bytes of file data and number of files archived.
    #[serde(default)]
    pub data_bytes: u64,
    #[serde(default)]
    pub files: u64,
    /// The mount points the backup holds and the filesystem each was, so a
    /// later capture can tell what no backup covers (`rescue mkrescue` says so).
    #[serde(default, rename = "mount", skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<BackedUpMount>,
    /// Its level in its incremental chain (0: a full backup).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub level: u32,
    /// The full backup that starts its chain.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub chain: String,
    /// The backup it is an increment of (an incremental only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parent: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BackedUpMount {
    pub path: String,
    /// UUID of the filesystem mounted there.
    pub uuid: String,
}

/// What kind of thing a block id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    Disk,
    Partition,
    Raid,
    Luks,
    Lv,
}

impl Layout {
    /// Read and validate a descriptor file.
    pub fn load(path: &Path) -> Result<Layout> {
        let bytes = std::fs::read(path).with_context(|| format!("reading the layout descriptor {}", path.display()))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            let line = e.as_bytes()[..at].iter().filter(|b| **b == b'\n').count() + 1;
            crate::error::input_error(format!(
                "the layout descriptor {} is not UTF-8 text: line {line} has bytes that are not UTF-8 (byte {at}); a descriptor is TOML, which is UTF-8",
                path.display()
            ))
        })?;
        Self::from_toml(&text).with_context(|| format!("in the layout descriptor {}", path.display()))
    }

    /// Parse and validate descriptor text. Errors name the item and the line.
    pub fn from_toml(text: &str) -> Result<Layout> {
        validate::parse_and_validate(text)
    }

    /// The descriptor as TOML, with a header comment for the human reader.
    pub fn to_toml(&self) -> Result<String> {
        let body = toml::to_string(self).context("serializing the layout descriptor")?;
        Ok(format!(
            "# rescue layout descriptor: the storage of {} as captured at {}.\n\
             # Edit with care (e.g. sizes for a migration); `rescue layout validate FILE` checks it.\n\
             # Sizes: disks and filesystems in bytes, partition start/size in the disk's logical sectors.\n\n{body}",
            self.host.hostname, self.host.captured_at
        ))
    }

    /// Write atomically (temporary file then rename), creating the directory.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = self.to_toml()?;
        crate::util::write_atomic(path, text.as_bytes(), 0o600)
    }

    /// What a block id names, if anything.
    pub fn block_kind(&self, id: &str) -> Option<BlockKind> {
        if self.disks.iter().any(|d| d.name == id) {
            Some(BlockKind::Disk)
        } else if self.partitions.iter().any(|p| p.name == id) {
            Some(BlockKind::Partition)
        } else if self.raids.iter().any(|r| r.name == id) {
            Some(BlockKind::Raid)
        } else if self.luks.iter().any(|l| l.name == id) {
            Some(BlockKind::Luks)
        } else if self.lvm_lvs.iter().any(|l| l.id() == id) {
            Some(BlockKind::Lv)
        } else {
            None
        }
    }

    pub fn disk(&self, name: &str) -> Option<&Disk> {
        self.disks.iter().find(|d| d.name == name)
    }

    pub fn partition(&self, name: &str) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.name == name)
    }

    /// Partitions of a disk, ordered by number.
    pub fn partitions_of(&self, disk: &str) -> Vec<&Partition> {
        let mut v: Vec<_> = self.partitions.iter().filter(|p| p.disk == disk).collect();
        v.sort_by_key(|p| p.number);
        v
    }

    pub fn filesystem_on(&self, device: &str) -> Option<&Filesystem> {
        self.filesystems.iter().find(|f| f.device == device)
    }

    /// The block ids a block id sits directly on (a partition on its disk, a
    /// RAID on its members, LUKS on its device, an LV on its VG's PVs).
    pub fn parents_of(&self, id: &str) -> Vec<String> {
        if let Some(p) = self.partition(id) {
            return vec![p.disk.clone()];
        }
        if let Some(r) = self.raids.iter().find(|r| r.name == id) {
            return r.devices.iter().chain(r.spares.iter()).cloned().collect();
        }
        if let Some(l) = self.luks.iter().find(|l| l.name == id) {
            return vec![l.device.clone()];
        }
        if let Some(lv) = self.lvm_lvs.iter().find(|l| l.id() == id) {
            return self.lvm_pvs.iter().filter(|pv| pv.vg == lv.vg).map(|pv| pv.device.clone()).collect();
        }
        Vec::new()
    }

    /// The disks a block id ultimately sits on.
    pub fn disks_under(&self, id: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo = vec![id.to_string()];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(cur) = todo.pop() {
            if !seen.insert(cur.clone()) {
                continue;
            }
            if self.disk(&cur).is_some() {
                if !out.contains(&cur) {
                    out.push(cur);
                }
                continue;
            }
            todo.extend(self.parents_of(&cur));
        }
        out
    }
}
