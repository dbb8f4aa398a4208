//! The drill VM's blank disks, derived from the descriptor: one per
//! recorded disk, at least as large (rounded up to the logical sector
//! size, so "same size" still matches), on a bus that gives the kernel name
//! the recorded one had (`nvme0n1` on NVMe, `vda` on virtio, `sda` on
//! SATA), with the recorded serial (or a made-up one) so recovery maps
//! each recorded disk to its blank twin by identity.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::layout::Layout;

/// How a disk is attached to the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Bus {
    Virtio,
    Sata,
    Nvme,
}

impl std::fmt::Display for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Bus::Virtio => "virtio",
            Bus::Sata => "sata",
            Bus::Nvme => "nvme",
        })
    }
}

/// qemu limits serials of virtio, NVMe and ATA disks to 20 bytes.
pub const MAX_SERIAL: usize = 20;
/// The AHCI controller has six ports.
pub const MAX_SATA: usize = 6;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DrillDisk {
    /// The recorded disk (block id in the descriptor).
    pub recorded: String,
    pub size: u64,
    pub bus: Bus,
    pub serial: String,
    /// ATA model (the `/dev/disk/by-id/ata-MODEL_SERIAL` name), SATA only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub logical_sector_size: u64,
    /// The firmware should boot from it (the first bootloader disk).
    pub boot: bool,
}

/// The bus whose kernel names look like the recorded name.
pub fn bus_for_name(name: &str) -> Bus {
    if name.starts_with("nvme") {
        Bus::Nvme
    } else if name.starts_with("sd") || name.starts_with("hd") {
        Bus::Sata
    } else {
        Bus::Virtio
    }
}

/// The blank disks for a drill of `layout`.
pub fn plan(layout: &Layout, bus_override: Option<Bus>) -> Result<Vec<DrillDisk>> {
    if layout.disks.is_empty() {
        crate::bail_input!("the descriptor records no disk: there is nothing to recover in a drill");
    }
    let boot_disk = layout.bootloader.boot_disks.first();
    let mut out: Vec<DrillDisk> = Vec::new();
    for (i, d) in layout.disks.iter().enumerate() {
        let sector = d.logical_sector_size.max(512);
        let size = d.size.div_ceil(sector) * sector;
        let bus = bus_override.unwrap_or_else(|| bus_for_name(&d.name));
        if bus != Bus::Sata && sector != 512 && sector != 4096 {
            crate::bail_input!("disk {} has {sector}-byte sectors; the drill VM can only make 512 or 4096", d.name);
        }
        let serial = match &d.serial {
            Some(s) if !s.is_empty() => s.chars().take(MAX_SERIAL).collect(),
            _ => format!("drill-{}", i + 1),
        };
        // `ata-QEMU_HARDDISK_SERIAL` otherwise; the recorded by-id name has the model with `_` for spaces.
        let model = (bus == Bus::Sata).then(|| d.model.clone()).flatten().filter(|m| !m.is_empty());
        out.push(DrillDisk {
            recorded: d.name.clone(),
            size,
            bus,
            serial,
            model,
            logical_sector_size: if bus == Bus::Sata { 512 } else { sector },
            boot: boot_disk == Some(&d.name),
        });
    }
    if !out.iter().any(|d| d.boot) {
        if let Some(first) = out.first_mut() {
            first.boot = true;
        }
    }
    let sata = out.iter().filter(|d| d.bus == Bus::Sata).count();
    if sata > MAX_SATA {
        crate::bail_input!("{sata} SATA disks, but the drill VM's AHCI controller has {MAX_SATA} ports; pass --disk-bus virtio");
    }
    Ok(out)
}

/// Create the sparse image files (`disk1.img`...) in `dir`.
pub fn create_files(disks: &[DrillDisk], dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for (i, d) in disks.iter().enumerate() {
        let p = dir.join(format!("disk{}.img", i + 1));
        let f = std::fs::File::create(&p).with_context(|| format!("creating the drill disk {}", p.display()))?;
        f.set_len(d.size).with_context(|| format!("making {} {} bytes large (sparse)", p.display(), d.size))?;
        files.push(p);
    }
    Ok(files)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn example(name: &str) -> Layout {
        Layout::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts").join(name)).unwrap()
    }

    #[test]
    fn one_virtio_disk_for_a_virtio_layout() {
        let l = example("bios-gpt-ext4.toml");
        let disks = plan(&l, None).unwrap();
        assert_eq!(disks.len(), 1);
        assert_eq!(disks[0].bus, Bus::Virtio);
        assert_eq!(disks[0].size, 21474836480);
        assert_eq!(disks[0].serial, "web1-root");
        assert!(disks[0].boot);
    }

    #[test]
    fn every_example_layout_gets_its_disks() {
        for e in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts")).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            let l = example(&name);
            let disks = plan(&l, None).unwrap();
            assert_eq!(disks.len(), l.disks.len(), "{name}");
            for (d, r) in disks.iter().zip(&l.disks) {
                assert!(d.size >= r.size && d.size % d.logical_sector_size == 0, "{name}: {d:?}");
                assert_eq!(d.bus, bus_for_name(&r.name), "{name}");
                assert!(d.serial.len() <= MAX_SERIAL);
            }
            assert_eq!(disks.iter().filter(|d| d.boot).count(), 1, "{name}");
            let serials: std::collections::BTreeSet<_> = disks.iter().map(|d| &d.serial).collect();
            assert_eq!(serials.len(), disks.len(), "{name}: serials must tell the disks apart");
        }
    }

    #[test]
    fn sizes_round_up_and_bus_can_be_forced() {
        let mut l = example("bios-gpt-ext4.toml");
        l.disks[0].size = 1000;
        l.disks[0].name = "nvme0n1".into();
        l.disks[0].serial = Some("a-very-long-serial-number-of-a-disk".into());
        let d = &plan(&l, None).unwrap()[0];
        assert_eq!((d.size, d.bus, d.serial.as_str()), (1024, Bus::Nvme, "a-very-long-serial-n"));
        l.disks[0].logical_sector_size = 4096;
        assert_eq!(plan(&l, None).unwrap()[0].size, 4096);
        let d = &plan(&l, Some(Bus::Sata)).unwrap()[0];
        assert_eq!((d.bus, d.logical_sector_size), (Bus::Sata, 512));
        assert_eq!(bus_for_name("sdb"), Bus::Sata);
        assert_eq!(bus_for_name("xvda"), Bus::Virtio);
    }

    #[test]
    fn too_many_sata_disks_is_an_input_error() {
        let mut l = example("bios-gpt-ext4.toml");
        let d0 = l.disks[0].clone();
        l.disks = (0..7).map(|i| crate::layout::Disk { name: format!("sd{}", (b'a' + i) as char), serial: None, ..d0.clone() }).collect();
        let e = plan(&l, None).unwrap_err();
        assert_eq!(crate::error::exit_code_for(&e), 2);
        assert_eq!(plan(&l, Some(Bus::Virtio)).unwrap().len(), 7);
    }

    #[test]
    fn files_are_sparse() {
        let d = tempfile::tempdir().unwrap();
        let l = example("bios-gpt-ext4.toml");
        let files = create_files(&plan(&l, None).unwrap(), d.path()).unwrap();
        let m = std::fs::metadata(&files[0]).unwrap();
        assert_eq!(m.len(), 21474836480);
        use std::os::unix::fs::MetadataExt;
        assert!(m.blocks() < 16, "not sparse: {} blocks", m.blocks());
    }
}
