//! `rescue format --usb DEV`: prepare a USB disk as rescue media (BIOS and
//! UEFI bootable boot partition `RESCUEBOOT`, ext4 `RESCUE` for backups).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cmd::Cmd;
use crate::context::Ctx;
use crate::error::input_error;
use crate::image::disk;

pub const EXAMPLES: &str = "\
Examples:
  rescue format --usb /dev/sdc            refuses a fixed or non-empty disk
  rescue format --usb /dev/sdc --force    erase whatever is on it
  rescue mkrescue --output usb --usb /dev/sdc";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The USB disk (whole disk, not a partition). Everything on it is erased.
    #[arg(long, value_name = "DEV", required = true)]
    pub usb: PathBuf,
    /// Also take a disk that is not removable or holds data.
    #[arg(long)]
    pub force: bool,
    /// Size of the boot partition in MiB (default: [image] usb-boot-size-mib).
    #[arg(long, value_name = "MIB")]
    pub boot_size_mib: Option<u64>,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let dev = &args.usb;
    let meta = std::fs::metadata(dev).map_err(|e| input_error(format!("cannot use {}: {e}", dev.display())))?;
    use std::os::unix::fs::FileTypeExt;
    if !meta.file_type().is_block_device() {
        return Err(input_error(format!("{} is not a block device: give the whole USB disk, e.g. /dev/sdc", dev.display())));
    }
    let real = std::fs::canonicalize(dev)?;
    let name = real.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let sys = Path::new("/sys/class/block").join(&name);
    if sys.join("partition").exists() {
        return Err(input_error(format!("{} is a partition: give the whole disk", dev.display())));
    }
    crate::image::refuse_if_mounted(dev)?;
    if !args.force {
        let removable = std::fs::read_to_string(sys.join("removable")).map(|s| s.trim() == "1").unwrap_or(false);
        let on_usb = std::fs::canonicalize(&sys).map(|p| p.to_string_lossy().contains("/usb")).unwrap_or(false);
        if !removable && !on_usb {
            return Err(input_error(format!("{} is not a removable or USB disk; if you are sure it is the right disk, add --force", dev.display())));
        }
        if let Some(what) = disk_contents(dev, &sys, &name)? {
            return Err(input_error(format!("{} is not empty ({what}); to erase it, add --force", dev.display())));
        }
    }
    let mib = args.boot_size_mib.unwrap_or(ctx.config.image.usb_boot_size_mib);
    let size = std::fs::read_to_string(sys.join("size")).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0) * 512;
    if size < (mib + 64) * 1024 * 1024 {
        return Err(input_error(format!(
            "{} holds {} but needs at least {} MiB (a {mib} MiB boot partition and room for backups)",
            dev.display(),
            crate::util::human_bytes(size),
            mib + 64
        )));
    }
    Cmd::new("wipefs").args(["-a", "-q"]).arg(dev).run()?;
    let bp = disk::partition_disk(dev, mib * 1024 * 1024, true)?;
    // Let the kernel (and udev, when it runs) see the new partitions.
    let _ = Cmd::new("partx").args(["-u"]).arg(dev).ok_codes(&[1]).run();
    if Path::new("/run/udev/control").exists() {
        let _ = Cmd::new("udevadm").args(["settle", "--timeout=30"]).run();
    }
    println!(
        "{}: boot partition {} ({} MiB, FAT32) and backup partition {} (ext4, the rest). \
         Now run: rescue mkrescue --output usb --usb {}",
        dev.display(),
        disk::BOOT_LABEL,
        bp.size / 1024 / 1024,
        disk::DATA_LABEL,
        dev.display()
    );
    Ok(0)
}

/// What is on a disk, if anything: partitions or a signature `blkid` knows.
fn disk_contents(dev: &Path, sys: &Path, name: &str) -> Result<Option<String>> {
    let parts: Vec<String> = std::fs::read_dir(sys)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(name) && n != name).collect())
        .unwrap_or_default();
    if !parts.is_empty() {
        return Ok(Some(format!("partitions {}", parts.join(", "))));
    }
    let out = Cmd::new("blkid").args(["-p", "-o", "export"]).arg(dev).ok_codes(&[2]).read().with_context(|| format!("probing {}", dev.display()))?;
    let sig: Vec<&str> = out.lines().filter(|l| l.starts_with("TYPE=") || l.starts_with("PTTYPE=")).collect();
    Ok((!sig.is_empty()).then(|| sig.join(" ")))
}
