//! `rescue dump`: the effective configuration and what rescue finds on this
//! system (firmware, disks, tools), so a sysadmin can see what a capture or
//! an image would be made of before making it.

use anyhow::Result;
use serde::Serialize;

use crate::cli::Ctx;
use crate::cmd::find_program;

pub const EXAMPLES: &str = "Examples:\n  rescue dump\n  rescue --json dump | jq .tools";

#[derive(Debug, clap::Args)]
pub struct Args {}

/// Programs recovery may call, by what they are for.
pub const TOOLS: &[(&str, &str)] = &[
    ("sfdisk", "partition tables"),
    ("blkid", "filesystem identities"),
    ("lsblk", "block device tree"),
    ("wipefs", "clearing old signatures"),
    ("mkfs.ext4", "ext2/3/4"),
    ("dumpe2fs", "ext options capture"),
    ("mkfs.xfs", "xfs"),
    ("xfs_db", "xfs options capture"),
    ("mkfs.vfat", "vfat / ESP"),
    ("mkfs.btrfs", "btrfs"),
    ("btrfs", "btrfs subvolumes"),
    ("mkswap", "swap"),
    ("lvm", "LVM"),
    ("mdadm", "MD RAID"),
    ("cryptsetup", "LUKS"),
    ("efibootmgr", "UEFI boot entries"),
    ("grub-install", "GRUB"),
    ("xorriso", "ISO images"),
    ("rsync", "rsync backups"),
    ("bconsole", "Bacula/Bareos restores"),
];

#[derive(Serialize)]
struct Dump<'a> {
    config_file: String,
    config_file_found: bool,
    config: &'a crate::config::Config,
    backup_server: Option<crate::bserver::ServerSummary>,
    firmware: &'static str,
    /// The UEFI boot chain `mkrescue` would give the media (image.secure-boot), or why none.
    secure_boot: String,
    disks: Vec<DiskSeen>,
    tools: Vec<ToolSeen>,
}

#[derive(Serialize)]
struct DiskSeen {
    name: String,
    size: u64,
    removable: bool,
}

#[derive(Serialize)]
struct ToolSeen {
    program: &'static str,
    purpose: &'static str,
    path: Option<String>,
}

pub fn run(ctx: &Ctx, _args: Args) -> Result<i32> {
    let disks = std::fs::read_dir("/sys/block")
        .map(|rd| {
            let mut v: Vec<DiskSeen> = rd
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.starts_with("ram") || name.starts_with("zram") {
                        return None;
                    }
                    let read = |f: &str| std::fs::read_to_string(e.path().join(f)).ok().map(|s| s.trim().to_string());
                    let size = read("size")?.parse::<u64>().ok()? * 512;
                    (size > 0).then(|| DiskSeen { name, size, removable: read("removable").as_deref() == Some("1") })
                })
                .collect();
            v.sort_by(|a, b| a.name.cmp(&b.name));
            v
        })
        .unwrap_or_default();
    let d = Dump {
        config_file: ctx.config_path.display().to_string(),
        config_file_found: ctx.config_path.exists(),
        config: &ctx.config,
        backup_server: crate::bserver::summary(&ctx.config),
        firmware: if std::path::Path::new("/sys/firmware/efi").exists() { "uefi" } else { "bios" },
        secure_boot: secure_boot_chain(&ctx.config.image),
        disks,
        tools: TOOLS.iter().map(|(p, why)| ToolSeen { program: p, purpose: why, path: find_program(p).map(|x| x.display().to_string()) }).collect(),
    };
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&d)?);
        return Ok(0);
    }
    println!("config file: {}{}", d.config_file, if d.config_file_found { "" } else { " (not present: all defaults)" });
    println!("effective config:");
    for line in toml::to_string(&ctx.config)?.lines() {
        println!("  {line}");
    }
    if let Some(b) = &d.backup_server {
        println!("backup server ({}): director {}, client {}, password {}", b.method.product(), b.director, b.client, b.password);
    }
    println!("firmware: {}", d.firmware);
    println!("UEFI boot chain of the rescue media: {}", d.secure_boot);
    println!("block devices:");
    for disk in &d.disks {
        println!("  {:<12} {:>12}{}", disk.name, crate::util::human_bytes(disk.size), if disk.removable { "  removable" } else { "" });
    }
    println!("tools:");
    for t in &d.tools {
        println!("  {:<14} {:<28} {}", t.program, t.purpose, t.path.as_deref().unwrap_or("MISSING"));
    }
    match crate::image::manifest::last_manifest(&ctx.config) {
        Some((path, m)) => print!("last rescue image ({}):\n{}", path.display(), m.summary()),
        None => println!("last rescue image: none built yet (rescue mkrescue)"),
    }
    Ok(0)
}

/// What [`crate::image::efi::choose`] says for the configured kernel (or the running one's).
fn secure_boot_chain(cfg: &crate::image::config::ImageConfig) -> String {
    let release = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    let kernel = cfg.kernel.clone().unwrap_or_else(|| std::path::PathBuf::from(format!("/boot/vmlinuz-{release}")));
    match crate::image::efi::choose(cfg, &kernel) {
        Ok((chain, None)) => chain.to_string(),
        Ok((chain, Some(why))) => format!("{chain}: {why}"),
        Err(e) => format!("none: {e:#}"),
    }
}
