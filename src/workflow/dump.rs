//! `rescue dump`: the effective configuration and what rescue finds on this
//! system (firmware, disks, tools), so a sysadmin can see what a capture or
//! an image would be made of before making it.

use anyhow::Result;
use serde::Serialize;

use crate::cmd::find_program;
use crate::context::Ctx;
use crate::needs::{self, Runs};

pub const EXAMPLES: &str = "Examples:\n  rescue dump\n  rescue --json dump | jq .tools";

#[derive(Debug, clap::Args)]
pub struct Args {}

/// Programs capturing the layout runs (`probe`), by what they are for.
/// What recovery runs comes from `needs::recovery` of the saved descriptor.
const CAPTURE_TOOLS: &[(&str, &str)] = &[
    ("sfdisk", "capture: partition tables"),
    ("blkid", "capture: filesystem identities"),
    ("lsblk", "capture: block device tree"),
    ("dumpe2fs", "capture: ext options"),
    ("xfs_info", "capture: xfs options"),
    ("btrfs", "capture: btrfs subvolumes"),
    ("lvm", "capture: LVM"),
    ("mdadm", "capture: MD RAID"),
    ("cryptsetup", "capture: LUKS"),
    ("efibootmgr", "capture: UEFI boot entries"),
];

#[derive(Serialize)]
struct Dump<'a> {
    config_file: String,
    config_file_found: bool,
    config: &'a crate::config::Config,
    backup_server: Option<crate::backup::Settings>,
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
    program: String,
    purpose: String,
    package: Option<&'static str>,
    path: Option<String>,
}

/// The capture tools, then what recovering the saved descriptor needs
/// (the rescue image's programs, and the recovered system's for finalize).
fn tools(config: &crate::config::Config) -> Vec<ToolSeen> {
    let seen = |program: &str, purpose: String, package| ToolSeen {
        program: program.to_string(),
        purpose,
        package,
        path: find_program(program).map(|x| x.display().to_string()),
    };
    let mut v: Vec<ToolSeen> = CAPTURE_TOOLS.iter().map(|(p, why)| seen(p, why.to_string(), crate::cmd::package_for(p))).collect();
    let Ok(layout) = crate::layout::Layout::load(&config.layout_path()) else { return v };
    let needs = needs::recovery(&layout, &config.image, crate::backup::rescue_needs_of(&config.backup, &layout));
    for p in needs.programs.iter().filter(|p| p.runs != Runs::Optional) {
        let place = if p.runs == Runs::Target { "recovery, in the recovered system" } else { "recovery" };
        v.push(seen(&p.name, format!("{place}: {}", p.why), p.package));
    }
    v
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
        backup_server: crate::backup::configured(&ctx.config.backup, None, None).ok().flatten().and_then(|b| b.settings()),
        firmware: if std::path::Path::new("/sys/firmware/efi").exists() { "uefi" } else { "bios" },
        secure_boot: secure_boot_chain(&ctx.config.image),
        disks,
        tools: tools(&ctx.config),
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
        println!("{b}");
    }
    println!("firmware: {}", d.firmware);
    println!("UEFI boot chain of the rescue media: {}", d.secure_boot);
    println!("block devices:");
    for disk in &d.disks {
        println!("  {:<12} {:>12}{}", disk.name, crate::util::human_bytes(disk.size), if disk.removable { "  removable" } else { "" });
    }
    println!("tools:");
    for t in &d.tools {
        let missing = match t.package {
            Some(p) => format!("MISSING (apt-get install {p})"),
            None => "MISSING".to_string(),
        };
        println!("  {:<18} {}  {}", t.program, t.path.as_deref().unwrap_or(&missing), t.purpose);
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
