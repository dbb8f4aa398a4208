//! Disk outputs: a raw disk image file and a USB disk. Both are a GPT disk
//! whose first partition (FAT32, label and name `RESCUEBOOT`, ESP type,
//! legacy-BIOS-bootable) holds the kernel, the initrd, syslinux for BIOS
//! (with syslinux's GPT MBR code) and GRUB for UEFI. A USB disk made by
//! `rescue format --usb` has a second partition, ext4 labelled `RESCUE`,
//! with room for backups.
//!
//! Everything is written through byte offsets (`mkfs.vfat --offset`,
//! `mke2fs -E offset=`, the boot FAT built in a file and copied to the
//! partition's offset), so it works on image files and on disks whose
//! partition nodes have not appeared (no udev).

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::boot::Menu;
use super::efi::EfiBoot;
use super::iso::syslinux_module;
use crate::cmd::Cmd;

pub const BOOT_LABEL: &str = "RESCUEBOOT";
pub const DATA_LABEL: &str = "RESCUE";
const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
const LINUX_TYPE: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
const GPT_MBR: &str = "/usr/lib/syslinux/mbr/gptmbr.bin";
const MIB: u64 = 1024 * 1024;

/// The boot partition of a rescue disk, by offset.
#[derive(Debug, Clone)]
pub struct BootPartition {
    /// The disk (block device or image file).
    pub disk: PathBuf,
    /// Byte offset and length of the partition.
    pub offset: u64,
    pub size: u64,
}

impl BootPartition {
    fn mtools_target(&self) -> String {
        format!("{}@@{}", self.disk.display(), self.offset)
    }
}

#[derive(Deserialize)]
struct SfdiskDump {
    partitiontable: SfdiskTable,
}
#[derive(Deserialize)]
struct SfdiskTable {
    #[serde(default)]
    sectorsize: Option<u64>,
    #[serde(default)]
    partitions: Vec<SfdiskPartition>,
}
#[derive(Deserialize)]
struct SfdiskPartition {
    start: u64,
    size: u64,
    #[serde(default)]
    name: Option<String>,
}

/// Partition `disk` for a rescue disk: the boot partition of `boot_bytes`
/// and, when `data` is set, an ext4 `RESCUE` partition on the rest.
/// Creates both file systems and the BIOS boot code.
pub fn partition_disk(disk: &Path, boot_bytes: u64, data: bool) -> Result<BootPartition> {
    let boot_sectors = boot_bytes.div_ceil(512);
    let mut script = format!("label: gpt\nstart=2048, size={boot_sectors}, type={ESP_TYPE}, name={BOOT_LABEL}, attrs=LegacyBIOSBootable\n");
    if data {
        script += &format!("size=+, type={LINUX_TYPE}, name={DATA_LABEL}\n");
    }
    Cmd::new("sfdisk").args(["-q", "--wipe", "always", "--wipe-partitions", "always"]).arg(disk).stdin(script).run()?;
    let table = read_table(disk)?;
    let sector = table.sectorsize.unwrap_or(512);
    let boot = table.partitions.first().context("sfdisk wrote no partition")?;
    let bp = BootPartition { disk: disk.to_path_buf(), offset: boot.start * sector, size: boot.size * sector };
    Cmd::new("mkfs.vfat")
        .args(["-I", "-F", "32", "-n", BOOT_LABEL, "--offset"])
        .arg((bp.offset / 512).to_string())
        .arg(disk)
        .arg((bp.size / 1024).to_string())
        .run()?;
    if data {
        let p = table.partitions.get(1).context("sfdisk wrote no data partition")?;
        Cmd::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-L", DATA_LABEL, "-E"])
            .arg(format!("offset={}", p.start * sector))
            .arg(disk)
            .arg(format!("{}k", p.size * sector / 1024))
            .run()?;
    }
    write_mbr_code(disk)?;
    Ok(bp)
}

fn read_table(disk: &Path) -> Result<SfdiskTable> {
    let json = Cmd::new("sfdisk").arg("-J").arg(disk).read()?;
    let d: SfdiskDump = serde_json::from_str(&json).with_context(|| format!("reading the partition table of {}", disk.display()))?;
    Ok(d.partitiontable)
}

/// The `RESCUEBOOT` partition of a disk made by `rescue format --usb`.
pub fn find_boot_partition(disk: &Path) -> Result<BootPartition> {
    let table = read_table(disk)
        .with_context(|| format!("{} has no partition table; prepare it with `rescue format --usb {}` first", disk.display(), disk.display()))?;
    let sector = table.sectorsize.unwrap_or(512);
    let p =
        table.partitions.iter().find(|p| p.name.as_deref() == Some(BOOT_LABEL)).with_context(|| {
            format!("{} has no partition named {BOOT_LABEL}; prepare it with `rescue format --usb {}` first", disk.display(), disk.display())
        })?;
    Ok(BootPartition { disk: disk.to_path_buf(), offset: p.start * sector, size: p.size * sector })
}

/// Syslinux's GPT-aware MBR boot code, into the first 440 bytes only.
fn write_mbr_code(disk: &Path) -> Result<()> {
    let code = std::fs::read(GPT_MBR).with_context(|| format!("reading {GPT_MBR}; install the Debian package syslinux-common"))?;
    if code.len() > 440 {
        bail!("{GPT_MBR} is larger than the 440 bytes of MBR boot code");
    }
    let mut f = std::fs::OpenOptions::new().write(true).open(disk).with_context(|| format!("opening {}", disk.display()))?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&code)?;
    f.sync_all()?;
    Ok(())
}

/// Put the rescue system on a FAT file system (in a file, at an offset):
/// kernel, initrd, syslinux and its menu, GRUB EFI and its menu.
pub fn populate(bp: &BootPartition, efi: &EfiBoot, initrd: &Path, menu: &Menu, marker: &str, work: &Path) -> Result<()> {
    let kernel = &efi.kernel;
    let need = std::fs::metadata(kernel)?.len() + std::fs::metadata(initrd)?.len() + 8 * MIB;
    if need > bp.size {
        bail!(
            "the boot partition of {} holds {} MiB but the kernel and initrd need {} MiB; make it larger \
             (rescue format --usb with a larger usb-boot-size-mib) or use fewer modules",
            bp.disk.display(),
            bp.size / MIB,
            need / MIB
        );
    }
    let target = bp.mtools_target();
    let mtools = |prog: &str| Cmd::new(prog).env("MTOOLS_SKIP_CHECK", "1").args(["-i", &target]);
    for d in ["::/boot", "::/boot/grub", "::/boot/syslinux", "::/EFI", "::/EFI/BOOT"] {
        // mmd fails on an existing directory; that is fine.
        let _ = mtools("mmd").arg(d).run();
    }
    let stage = work.join("disk");
    std::fs::create_dir_all(&stage)?;
    std::fs::write(stage.join("marker"), format!("{marker}\n"))?;
    std::fs::write(stage.join("grub.cfg"), menu.grub_cfg("/boot/vmlinuz", "/boot/initrd.img", "exit"))?;
    std::fs::write(stage.join("syslinux.cfg"), menu.syslinux_cfg("/boot/vmlinuz", "/boot/initrd.img", "COM32 chain.c32\n  APPEND hd1"))?;
    let mut copies: Vec<(PathBuf, String)> = vec![
        (kernel.to_path_buf(), "::/boot/vmlinuz".into()),
        (initrd.to_path_buf(), "::/boot/initrd.img".into()),
        (stage.join("marker"), format!("::{marker}")),
        (stage.join("grub.cfg"), "::/boot/grub/grub.cfg".into()),
        (stage.join("syslinux.cfg"), "::/boot/syslinux/syslinux.cfg".into()),
        (efi.first.clone(), "::/EFI/BOOT/BOOTX64.EFI".into()),
    ];
    copies.extend(efi.beside.iter().map(|(name, f)| (f.clone(), format!("::/EFI/BOOT/{name}"))));
    for m in ["menu.c32", "libutil.c32", "libcom32.c32", "chain.c32"] {
        copies.push((syslinux_module(m)?, format!("::/boot/syslinux/{m}")));
    }
    for (src, dest) in copies {
        mtools("mcopy").arg("-o").arg(&src).arg(&dest).run()?;
    }
    // Installs ldlinux.sys/ldlinux.c32 and the partition boot sector.
    Cmd::new("syslinux")
        .args(["--install", "--offset"])
        .arg(bp.offset.to_string())
        .args(["--directory", "/boot/syslinux"])
        .arg(&bp.disk)
        .run()
        .context("installing syslinux (apt-get install syslinux if it is missing)")?;
    Ok(())
}

/// Write the rescue system to the boot partition of a disk (image file or
/// block device): a fresh FAT file system is built in a sparse file of the
/// partition's size (mtools and the syslinux installer work on files, not
/// on block devices), then only its data extents are copied to the
/// partition, then the MBR boot code is refreshed.
pub fn write_boot_partition(bp: &BootPartition, efi: &EfiBoot, initrd: &Path, menu: &Menu, marker: &str, work: &Path) -> Result<()> {
    let img = work.join("boot-fat.img");
    let _ = std::fs::remove_file(&img);
    Cmd::new("mkfs.vfat").args(["-C", "-F", "32", "-n", BOOT_LABEL]).arg(&img).arg((bp.size / 1024).to_string()).run()?;
    let fat = BootPartition { disk: img.clone(), offset: 0, size: bp.size };
    populate(&fat, efi, initrd, menu, marker, work)?;
    copy_data_extents(&img, &bp.disk, bp.offset)?;
    write_mbr_code(&bp.disk)?;
    Ok(())
}

/// Copy the written (non-hole) parts of a sparse file into `dest` at `offset`.
fn copy_data_extents(src: &Path, dest: &Path, offset: u64) -> Result<()> {
    use nix::unistd::{lseek, Whence};
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let mut input = std::fs::File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let mut out = std::fs::OpenOptions::new().write(true).open(dest).with_context(|| format!("opening {} for writing", dest.display()))?;
    let len = input.metadata()?.len();
    let fd = input.as_raw_fd();
    let mut pos: u64 = 0;
    let mut buf = vec![0u8; 4 << 20];
    while pos < len {
        let data = match lseek(fd, pos as i64, Whence::SeekData) {
            Ok(d) => d as u64,
            Err(nix::errno::Errno::ENXIO) => break,
            Err(e) => return Err(e).with_context(|| format!("looking for data in {}", src.display())),
        };
        let hole = lseek(fd, data as i64, Whence::SeekHole).map(|h| h as u64).unwrap_or(len);
        input.seek(SeekFrom::Start(data))?;
        out.seek(SeekFrom::Start(offset + data))?;
        let mut left = hole - data;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            input.read_exact(&mut buf[..want]).with_context(|| format!("reading {}", src.display()))?;
            out.write_all(&buf[..want]).with_context(|| format!("writing {}", dest.display()))?;
            left -= want as u64;
        }
        pos = hole;
    }
    out.sync_all().with_context(|| format!("flushing {}", dest.display()))?;
    Ok(())
}

/// A raw disk image file holding only the boot partition.
pub fn write_raw(efi: &EfiBoot, initrd: &Path, menu: &Menu, marker: &str, work: &Path, out: &Path) -> Result<()> {
    let payload = std::fs::metadata(&efi.kernel)?.len() + std::fs::metadata(initrd)?.len();
    let boot = ((payload + 32 * MIB).div_ceil(MIB) * MIB).max(64 * MIB);
    let total = boot + 2 * MIB;
    let tmp = out.with_extension("raw.tmp");
    let _ = std::fs::remove_file(&tmp);
    {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.set_len(total)?;
    }
    let bp = partition_disk(&tmp, boot, false)?;
    write_boot_partition(&bp, efi, initrd, menu, marker, work)?;
    std::fs::rename(&tmp, out).with_context(|| format!("moving the disk image into place at {}", out.display()))?;
    Ok(())
}
