//! Writing partition tables: GPT with the `gpt` crate, MBR with `mbrman`.
//!
//! Every identity is the recorded one: disk GUID, partition GUIDs, type
//! GUIDs, names and attribute bits on GPT; disk signature, type ids, boot
//! flag and the extended/logical chain on MBR.
//!
//! One exception goes through `sfdisk`: the `gpt` crate (v4) writes the used
//! entries of its partition map compactly (entry index = rank, not partition
//! number), so a GPT whose numbering has gaps (1, 2, 5) would be renumbered.
//! Such a partition is added with an `sfdisk -N` script instead.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::Path;
use std::str::FromStr;

use anyhow::{anyhow, bail, Context, Result};

use crate::cmd::Cmd;
use crate::layout::{PartitionKind, TableType};
use crate::plan::NewPartition;

fn lb_size(lss: u64) -> Result<gpt::disk::LogicalBlockSize> {
    match lss {
        512 => Ok(gpt::disk::LogicalBlockSize::Lb512),
        4096 => Ok(gpt::disk::LogicalBlockSize::Lb4096),
        n => bail!("GPT with {n}-byte sectors is not supported (only 512 and 4096)"),
    }
}

fn open_rw(dev: &Path) -> Result<std::fs::File> {
    OpenOptions::new().read(true).write(true).open(dev).with_context(|| format!("opening {} for writing", dev.display()))
}

/// Write an empty partition table with the recorded disk identity.
pub fn create_table(dev: &Path, table: TableType, disk_guid: Option<&str>, mbr_signature: Option<&str>, lss: u64) -> Result<()> {
    let mut file = open_rw(dev)?;
    match table {
        TableType::Gpt => {
            let guid = disk_guid.map(|g| uuid::Uuid::from_str(g).with_context(|| format!("the disk GUID {g} is not a GUID"))).transpose()?;
            let size = file.seek_end()?;
            let sectors = size / lss;
            // The protective MBR covers the whole disk (or as much as 32 bits can say).
            let pmbr = gpt::mbr::ProtectiveMBR::with_lb_size(u32::try_from(sectors.saturating_sub(1)).unwrap_or(u32::MAX));
            pmbr.overwrite_lba0(&mut file).with_context(|| format!("writing the protective MBR on {}", dev.display()))?;
            let disk = gpt::GptConfig::new()
                .writable(true)
                .logical_block_size(lb_size(lss)?)
                .create_from_device(file, guid)
                .with_context(|| format!("preparing a GPT for {}", dev.display()))?;
            let f = disk.write().with_context(|| format!("writing the GPT on {}", dev.display()))?;
            f.sync_all().with_context(|| format!("flushing {}", dev.display()))?;
        }
        TableType::Msdos => {
            let sig = parse_signature(mbr_signature.unwrap_or("0x00000000"))?;
            let mut mbr = mbrman::MBR::new_from(&mut file, lss as u32, sig).map_err(|e| anyhow!("preparing an MBR for {}: {e}", dev.display()))?;
            mbr.write_into(&mut file).map_err(|e| anyhow!("writing the MBR on {}: {e}", dev.display()))?;
            file.sync_all().with_context(|| format!("flushing {}", dev.display()))?;
        }
    }
    Ok(())
}

trait SeekEnd {
    fn seek_end(&mut self) -> Result<u64>;
}
impl SeekEnd for std::fs::File {
    fn seek_end(&mut self) -> Result<u64> {
        use std::io::{Seek, SeekFrom};
        let n = self.seek(SeekFrom::End(0)).context("finding the device size")?;
        self.seek(SeekFrom::Start(0))?;
        Ok(n)
    }
}

/// `0x5d3c2b1a` -> the 4 bytes as stored on disk (little endian).
fn parse_signature(s: &str) -> Result<[u8; 4]> {
    let hex = s.trim_start_matches("0x").trim_start_matches("0X");
    let v = u32::from_str_radix(hex, 16).with_context(|| format!("the MBR disk signature {s} is not 8 hex digits"))?;
    Ok(v.to_le_bytes())
}

/// GPT attribute bits from sfdisk's notation: `RequiredPartition`,
/// `NoBlockIOProtocol`, `LegacyBIOSBootable`, `GUID:60,63` (bits 48-63),
/// separated by spaces or commas.
pub fn parse_attrs(s: &str) -> Result<u64> {
    let mut bits = 0u64;
    let mut guid_mode = false;
    for tok in s.split([' ', ',']).filter(|t| !t.is_empty()) {
        let num = if let Some(rest) = tok.strip_prefix("GUID:") {
            guid_mode = true;
            Some(rest)
        } else if guid_mode && tok.chars().all(|c| c.is_ascii_digit()) {
            Some(tok)
        } else {
            guid_mode = false;
            None
        };
        let bit = match (num, tok) {
            (Some(n), _) => n.parse::<u32>().with_context(|| format!("bad GPT attribute bit {tok:?} in {s:?}"))?,
            (None, "RequiredPartition") => 0,
            (None, "NoBlockIOProtocol") => 1,
            (None, "LegacyBIOSBootable") => 2,
            (None, t) => bail!("unknown GPT attribute {t:?} in {s:?} (expected RequiredPartition, NoBlockIOProtocol, LegacyBIOSBootable or GUID:N)"),
        };
        if bit > 63 {
            bail!("GPT attribute bit {bit} out of range in {s:?}");
        }
        bits |= 1 << bit;
    }
    Ok(bits)
}

/// Add one partition to the table on `dev`.
/// `node` is the partition's device path (used to number it in the sfdisk case).
pub fn add_partition(dev: &Path, node: &Path, table: TableType, lss: u64, p: &NewPartition) -> Result<()> {
    match table {
        TableType::Gpt => add_gpt(dev, node, lss, p),
        TableType::Msdos => add_mbr(dev, lss, p),
    }
}

fn add_gpt(dev: &Path, node: &Path, lss: u64, p: &NewPartition) -> Result<()> {
    let file = open_rw(dev)?;
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(lb_size(lss)?)
        .open_from_device(file)
        .with_context(|| format!("reading the GPT on {}", dev.display()))?;
    let mut parts: BTreeMap<u32, gpt::partition::Partition> = disk.partitions().iter().filter(|(_, x)| x.is_used()).map(|(k, v)| (*k, v.clone())).collect();
    if p.number as usize != parts.len() + 1 || parts.keys().enumerate().any(|(i, k)| *k as usize != i + 1) {
        drop(disk);
        return add_gpt_sfdisk(dev, node, p);
    }
    let type_guid = gpt::partition_types::Type::from_str(&p.type_id).map_err(|e| anyhow!("the partition type {} is not a GUID: {e}", p.type_id))?;
    let part_guid = match &p.uuid {
        Some(u) => uuid::Uuid::from_str(u).with_context(|| format!("the partition GUID {u} is not a GUID"))?,
        None => uuid::Uuid::new_v4(),
    };
    let first_usable = disk.header().first_usable;
    let last_usable = disk.header().last_usable;
    let last = p.start + p.size - 1;
    if p.start < first_usable || last > last_usable {
        bail!("partition {} (sectors {}-{last}) is outside the usable area {first_usable}-{last_usable} of {}", p.number, p.start, dev.display());
    }
    parts.insert(
        p.number,
        gpt::partition::Partition {
            part_type_guid: type_guid,
            part_guid,
            first_lba: p.start,
            last_lba: last,
            flags: p.attrs.as_deref().map(parse_attrs).transpose()?.unwrap_or(0),
            name: p.label.clone().unwrap_or_default(),
        },
    );
    disk.update_partitions(parts).with_context(|| format!("adding partition {} to the GPT of {}", p.number, dev.display()))?;
    let f = disk.write().with_context(|| format!("writing the GPT on {}", dev.display()))?;
    f.sync_all().with_context(|| format!("flushing {}", dev.display()))?;
    Ok(())
}

/// The gap case (see the module docs): dump the table with `sfdisk -d`, add
/// a line named after the partition node (sfdisk numbers a partition from
/// its node name, `-N` would take the next free number), write it back.
fn add_gpt_sfdisk(dev: &Path, node: &Path, p: &NewPartition) -> Result<()> {
    let mut script = Cmd::new("sfdisk").arg("-d").arg(dev).read()?;
    let mut line = format!("{} : start={}, size={}, type={}", node.display(), p.start, p.size, p.type_id);
    if let Some(u) = &p.uuid {
        line += &format!(", uuid={u}");
    }
    if let Some(l) = &p.label {
        line += &format!(", name=\"{}\"", l.replace('"', ""));
    }
    if let Some(a) = &p.attrs {
        line += &format!(", attrs=\"{a}\"");
    }
    script += &format!("{line}\n");
    Cmd::new("sfdisk").args(["--no-reread", "--no-tell-kernel", "-q"]).arg(dev).stdin(script).run()
}

fn add_mbr(dev: &Path, lss: u64, p: &NewPartition) -> Result<()> {
    let mut file = open_rw(dev)?;
    let mut mbr = mbrman::MBR::read_from(&mut file, lss as u32).map_err(|e| anyhow!("reading the MBR on {}: {e}", dev.display()))?;
    let sys = u8::from_str_radix(p.type_id.trim_start_matches("0x"), 16).with_context(|| format!("the MBR partition type {} is not a hex byte", p.type_id))?;
    let start = u32::try_from(p.start).context("an MBR partition must start below 2 TiB")?;
    let sectors = u32::try_from(p.size).context("an MBR partition must be smaller than 2 TiB")?;
    let entry = mbrman::MBRPartitionEntry {
        boot: if p.bootable { mbrman::BOOT_ACTIVE } else { mbrman::BOOT_INACTIVE },
        first_chs: mbrman::CHS::empty(),
        sys,
        last_chs: mbrman::CHS::empty(),
        starting_lba: start,
        sectors,
    };
    match p.kind {
        PartitionKind::Primary | PartitionKind::Extended => {
            if !(1..=4).contains(&p.number) {
                bail!("MBR primary/extended partition number {} must be 1-4", p.number);
            }
            if p.kind == PartitionKind::Extended {
                // The first EBR goes at the start of the extended partition:
                // old data there must not read as a chain of logical partitions.
                use std::io::{Seek, SeekFrom, Write};
                file.seek(SeekFrom::Start(p.start * lss))?;
                file.write_all(&vec![0u8; lss as usize])?;
            }
            mbr[p.number as usize] = entry;
        }
        PartitionKind::Logical => {
            let expected = 5 + mbr.logical_partitions.len() as u32;
            if p.number != expected {
                bail!("logical partitions are created in order: expected number {expected}, got {}", p.number);
            }
            let ext = mbr
                .header
                .iter()
                .map(|(_, e)| e)
                .find(|e| e.is_extended())
                .cloned()
                .ok_or_else(|| anyhow!("logical partition {} needs an extended partition on {}, and there is none", p.number, dev.display()))?;
            // The EBR sits at the start of the extended partition for the
            // first logical partition, else right after the previous one.
            let first = mbr.logical_partitions.is_empty();
            let ebr = match mbr.logical_partitions.last() {
                None => ext.starting_lba,
                Some(prev) => prev.partition.starting_lba + prev.partition.sectors,
            };
            if ebr >= start {
                bail!("no room for the EBR of logical partition {} before sector {start}", p.number);
            }
            mbr.logical_partitions.push(mbrman::LogicalPartition {
                partition: entry,
                absolute_ebr_lba: ebr,
                ebr_sectors: if first { None } else { Some(start + sectors - ebr) },
                ebr_first_chs: mbrman::CHS::empty(),
                ebr_last_chs: if first { None } else { Some(mbrman::CHS::empty()) },
                bootstrap_code: [0; 446],
            });
        }
    }
    mbr.write_into(&mut file).map_err(|e| anyhow!("writing the MBR on {}: {e}", dev.display()))?;
    file.sync_all().with_context(|| format!("flushing {}", dev.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attrs_in_sfdisk_notation() {
        assert_eq!(parse_attrs("LegacyBIOSBootable").unwrap(), 4);
        assert_eq!(parse_attrs("RequiredPartition LegacyBIOSBootable GUID:60,63").unwrap(), 1 | 4 | 1 << 60 | 1 << 63);
        assert_eq!(parse_attrs("GUID:60 GUID:63").unwrap(), 1 << 60 | 1 << 63);
        assert!(parse_attrs("Bogus").is_err());
    }

    #[test]
    fn signature_is_little_endian() {
        assert_eq!(parse_signature("0x5d3c2b1a").unwrap(), [0x1a, 0x2b, 0x3c, 0x5d]);
    }
}
