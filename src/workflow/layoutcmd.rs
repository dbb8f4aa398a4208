//! `rescue layout validate|show FILE`: check or summarize a descriptor.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use crate::context::Ctx;
use crate::layout::Layout;
use crate::util::human_bytes;

#[derive(Debug, Subcommand)]
pub enum LayoutCommand {
    /// Check a descriptor: syntax, version, references, partition geometry.
    #[command(after_long_help = "Examples:\n  rescue layout validate /var/lib/rescue/layout.toml\n  rescue layout validate layouts/*.toml")]
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print a descriptor as a readable tree (or as JSON with --json).
    #[command(
        after_long_help = "Examples:\n  rescue layout show /var/lib/rescue/layout.toml\n  rescue --json layout show layout.toml | jq '.partition[].uuid'"
    )]
    Show { file: PathBuf },
    /// Map the descriptor's recorded NICs onto this machine's as recover does
    /// (`[network-mapping]`, MAC, PCI address, driver order, bond members) and
    /// print `RECORDED PRESENT` a line. The rescue init brings the recorded
    /// network up on these.
    #[command(after_long_help = "Examples:\n  rescue layout nics /etc/rescue/layout.toml\n  rescue --json layout nics layout.toml")]
    Nics {
        file: PathBuf,
        /// Read the present NICs from a JSON list instead of `ip` and sysfs (tests).
        #[arg(long, value_name = "FILE", hide = true)]
        nic_inventory: Option<PathBuf>,
    },
}

pub fn run(ctx: &Ctx, cmd: LayoutCommand) -> Result<i32> {
    match cmd {
        LayoutCommand::Validate { files } => {
            let mut first_err = None;
            for f in &files {
                match Layout::load(f) {
                    Ok(_) => println!("{}: ok", f.display()),
                    Err(e) => {
                        eprintln!("{}: {e:#}", f.display());
                        first_err.get_or_insert(e);
                    }
                }
            }
            match first_err {
                None => Ok(0),
                Some(e) => Err(e.context(format!("{} of {} descriptor(s) invalid", files.len() - valid_count(&files), files.len()))),
            }
        }
        LayoutCommand::Show { file } => {
            let layout = Layout::load(&file)?;
            if ctx.json {
                println!("{}", serde_json::to_string_pretty(&layout)?);
            } else {
                print!("{}", render_tree(&layout));
            }
            Ok(0)
        }
        LayoutCommand::Nics { file, nic_inventory } => {
            let layout = Layout::load(&file)?;
            let Some(net) = layout.network.as_ref() else { return Ok(0) };
            let present = match &nic_inventory {
                Some(f) => crate::inventory::read_nics_file(f)?,
                None => crate::inventory::read_nics_live()?,
            };
            let nics = crate::plan::nics::map_nics(net, &present, &ctx.config.network_mapping).map_err(|p| {
                anyhow::anyhow!(
                    "cannot map the NICs recorded in {} onto this machine's:\n{p}\nName the pairs in [network-mapping] of the config (OLD = \"NEW\")",
                    file.display()
                )
            })?;
            if ctx.json {
                println!("{}", serde_json::to_string_pretty(&nics)?);
            } else {
                print!("{}", nic_lines(&nics));
            }
            Ok(0)
        }
    }
}

/// `RECORDED PRESENT` a line: what the rescue init reads.
fn nic_lines(nics: &crate::plan::NicPlan) -> String {
    nics.assignments.iter().map(|a| format!("{} {}\n", a.recorded, a.present)).collect()
}

fn valid_count(files: &[PathBuf]) -> usize {
    files.iter().filter(|f| Layout::load(f).is_ok()).count()
}

/// A tree from each disk down to mount points, the way a person pictures it.
pub fn render_tree(l: &Layout) -> String {
    let mut out = String::new();
    let h = &l.host;
    out += &format!(
        "host {} ({}), {} firmware, kernel {}, captured {}\n",
        h.hostname,
        if h.os_release.is_empty() { "unknown OS" } else { &h.os_release },
        match h.firmware {
            crate::layout::Firmware::Bios => "BIOS",
            crate::layout::Firmware::Uefi => "UEFI",
        },
        h.kernel,
        h.captured_at
    );
    fn children(l: &Layout, id: &str) -> Vec<String> {
        let mut v = Vec::new();
        for p in l.partitions_of(id) {
            v.push(p.name.clone());
        }
        for r in &l.raids {
            if r.devices.iter().chain(r.spares.iter()).any(|d| d == id) && !v.contains(&r.name) {
                v.push(r.name.clone());
            }
        }
        for x in &l.luks {
            if x.device == id {
                v.push(x.name.clone());
            }
        }
        for pv in &l.lvm_pvs {
            if pv.device == id {
                for lv in l.lvm_lvs.iter().filter(|lv| lv.vg == pv.vg) {
                    v.push(lv.id());
                }
            }
        }
        v
    }
    fn describe(l: &Layout, id: &str) -> String {
        let mut s = id.to_string();
        if let Some(d) = l.disk(id) {
            s += &format!(
                "  disk {} {}{}",
                human_bytes(d.size),
                d.table.map(|t| format!("{t:?}").to_lowercase()).unwrap_or_else(|| "no table".into()),
                d.model.as_ref().map(|m| format!(" {m}")).unwrap_or_default()
            );
        } else if let Some(p) = l.partition(id) {
            let sec = l.disk(&p.disk).map(|d| d.logical_sector_size).unwrap_or(512);
            s += &format!("  partition {} {}", human_bytes(p.size * sec), p.label.as_deref().unwrap_or(""));
        } else if let Some(r) = l.raids.iter().find(|r| r.name == id) {
            s += &format!("  {} {}", r.level, human_bytes(r.size));
        } else if l.luks.iter().any(|x| x.name == id) {
            s += "  LUKS";
        } else if let Some(lv) = l.lvm_lvs.iter().find(|lv| lv.id() == id) {
            s += &format!("  LV {}", human_bytes(lv.size));
        }
        if let Some(f) = l.filesystem_on(id) {
            s += &format!("  [{} {}{}]", f.fstype, f.uuid, f.label.as_ref().map(|x| format!(" \"{x}\"")).unwrap_or_default());
            for m in l.mounts.iter().filter(|m| m.device == id) {
                s += &format!(" on {}", m.path);
                if let Some(sv) = &m.subvol {
                    s += &format!(" (subvol {sv})");
                }
            }
        }
        if l.swaps.iter().any(|x| x.device == id) {
            s += "  [swap]";
        }
        if l.lvm_pvs.iter().any(|pv| pv.device == id) {
            s += "  [LVM PV]";
        }
        s
    }
    fn walk(l: &Layout, id: &str, depth: usize, out: &mut String) {
        out.push_str(&format!("{}{}\n", "  ".repeat(depth), describe(l, id)));
        if depth > 8 {
            return;
        }
        for c in children(l, id) {
            walk(l, &c, depth + 1, out);
        }
    }
    for d in &l.disks {
        walk(l, &d.name, 0, &mut out);
    }
    let bl = &l.bootloader;
    out += &format!("bootloader {:?}", bl.kind).to_lowercase();
    if !bl.boot_disks.is_empty() {
        out += &format!(" on {}", bl.boot_disks.join(", "));
    }
    if let Some(esp) = &bl.esp {
        out += &format!(" ESP {esp}");
    }
    out += "\n";
    for e in &l.excluded {
        out += &format!("excluded {} ({})\n", e.path, e.reason);
    }
    out
}
