//! `rescue recover`: recreate the recorded storage on this machine's disks.
//!
//! This build does the storage part: `--plan` shows what would be done and
//! changes nothing; `--layout-only` wipes the mapped disks, recreates
//! partitions, RAID, LUKS, LVM, filesystems and subvolumes, and mounts the
//! tree under the target root; `--umount` tears that down. Restoring files
//! and the bootloader is not part of this build, so `recover` without
//! `--plan` or `--layout-only` refuses.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::apply::{self, ApplyOptions};
use crate::cli::Ctx;
use crate::error::input_error;
use crate::inventory::Inventory;
use crate::layout::Layout;
use crate::plan::{self, MatchReason, PlanOptions, ResizePolicy};

pub const EXAMPLES: &str = "\
Examples:
  rescue recover --plan                      show what would be done, change nothing
  rescue --json recover --plan               the plan as data
  rescue recover --layout-only --map sda=/dev/nvme0n1
                                             rebuild the disks and mount them under /mnt/local
  rescue recover --layout-only --yes --luks-key cryptroot=/root/key
  rescue recover --umount                    unmount /mnt/local and close LUKS/LVM/MD";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The layout descriptor. Default: STATE_DIR/layout.toml.
    #[arg(long, value_name = "FILE")]
    pub layout: Option<PathBuf>,
    /// Print the plan (with --json: as data) and change nothing.
    #[arg(long, conflicts_with_all = ["layout_only", "umount"])]
    pub plan: bool,
    /// Recreate the storage and mount it under the target root, then stop.
    #[arg(long, conflicts_with = "umount")]
    pub layout_only: bool,
    /// Recover recorded disk OLD onto device NEW (repeatable), e.g. `sda=/dev/vdb`.
    #[arg(long = "map", value_name = "OLD=NEW")]
    pub map: Vec<String>,
    /// Do not ask for confirmation before overwriting the mapped disks.
    #[arg(long)]
    pub yes: bool,
    /// Never ask: stop on ambiguity; proceed only with --yes or `recover.unattended-proceed = true`.
    #[arg(long)]
    pub unattended: bool,
    /// Key file for a LUKS volume, by its mapper name (repeatable), e.g. `cryptroot=/root/key`.
    #[arg(long = "luks-key", value_name = "NAME=FILE")]
    pub luks_keys: Vec<String>,
    /// Unmount the tree under the target root and close LUKS/LVM/MD of the descriptor.
    #[arg(long)]
    pub umount: bool,
    /// Where the recreated tree is mounted. Default: `recover.target-root` (/mnt/local).
    #[arg(long, value_name = "DIR")]
    pub target_root: Option<PathBuf>,
    /// How partitions follow a disk of another size. Default: `recover.resize` (last).
    #[arg(long, value_enum)]
    pub resize: Option<ResizeArg>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ResizeArg {
    Last,
    Proportional,
}

fn parse_pairs(list: &[String], what: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in list {
        let Some((k, v)) = item.split_once('=').filter(|(k, v)| !k.is_empty() && !v.is_empty()) else {
            return Err(input_error(format!("{what} {item:?} is not of the form NAME=VALUE")));
        };
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let target_root = a.target_root.clone().unwrap_or_else(|| ctx.config.recover.target_root.clone());
    let layout_path = a.layout.clone().unwrap_or_else(|| ctx.config.layout_path());

    if a.umount {
        let layout = if layout_path.exists() { Some(Layout::load(&layout_path)?) } else { None };
        let done = apply::teardown_target(&target_root, layout.as_ref())?;
        if ctx.json {
            println!("{}", serde_json::json!({ "done": done }));
        } else if done.is_empty() {
            println!("nothing mounted under {} and nothing of the descriptor open", target_root.display());
        } else {
            for d in done {
                println!("{d}");
            }
        }
        return Ok(0);
    }
    if !a.plan && !a.layout_only {
        return Err(input_error(
            "restoring files and the bootloader is not available in this build: use `rescue recover --layout-only` \
             to recreate the storage and mount it under the target root, or `rescue recover --plan` to see what it would do",
        ));
    }

    let layout = Layout::load(&layout_path)?;
    let mut map: BTreeMap<String, String> = ctx.config.mapping.clone();
    map.extend(parse_pairs(&a.map, "--map")?);
    let mut luks_keys: BTreeMap<String, PathBuf> = ctx.config.recover.luks_keys.clone();
    luks_keys.extend(parse_pairs(&a.luks_keys, "--luks-key")?.into_iter().map(|(k, v)| (k, PathBuf::from(v))));
    let resize = match a.resize {
        Some(ResizeArg::Last) => ResizePolicy::Last,
        Some(ResizeArg::Proportional) => ResizePolicy::Proportional,
        None => ctx.config.recover.resize,
    };
    let mut opts = PlanOptions { resize, map, target_root: target_root.clone() };
    let interactive = !a.unattended && !ctx.json && std::io::stdin().is_terminal();

    let inv = Inventory::read_live(&target_root)?;
    let mut chosen = Vec::new();
    let mapping = loop {
        match plan::map(&layout, &inv, &opts) {
            Ok(m) => break m,
            Err(problem) if interactive && problem.errors.is_empty() && problem.missing.is_empty() => {
                let amb = &problem.ambiguous[0];
                let dev = ask_choice(&layout, &amb.disk, &amb.candidates)?;
                opts.map.insert(amb.disk.clone(), dev.clone());
                chosen.push(amb.disk.clone());
            }
            Err(problem) => return Err(input_error(format!("cannot map the recorded disks:\n{problem}"))),
        }
    };
    let mapping = mapping
        .into_iter()
        .map(|mut m| {
            if chosen.contains(&m.recorded) {
                m.reason = MatchReason::Chosen;
            }
            m
        })
        .collect();
    let the_plan = plan::build_with_mapping(&layout, &inv, &opts, mapping)?;

    if a.plan {
        if ctx.json {
            println!("{}", serde_json::to_string_pretty(&the_plan)?);
        } else {
            print!("{the_plan}");
        }
        return Ok(0);
    }

    if !ctx.json {
        print!("{the_plan}");
    }
    let disks: Vec<String> = the_plan.target_disks().iter().map(|d| d.display().to_string()).collect();
    if !a.yes {
        if a.unattended || !interactive {
            if !(a.unattended && ctx.config.recover.unattended_proceed) {
                return Err(input_error(format!(
                    "not overwriting {} without confirmation: pass --yes{}",
                    disks.join(", "),
                    if a.unattended { ", or set recover.unattended-proceed = true in the rescue image's config" } else { "" }
                )));
            }
        } else if !confirm(&disks)? {
            return Err(input_error("cancelled; nothing was written"));
        }
    }

    let ask = |name: &str| ask_passphrase(name);
    let quiet = ctx.verbosity < 0 || ctx.json;
    let progress = |i: usize, n: usize, op: &plan::Operation| {
        tracing::debug!("[{}/{n}] {op}", i + 1);
        if !quiet {
            eprintln!("[{}/{n}] {op}", i + 1);
        }
    };
    let apply_opts = ApplyOptions {
        luks_keys,
        ask_key: if interactive { Some(&ask) } else { None },
        progress: &progress,
    };
    apply::apply(&the_plan, &apply_opts)?;
    if ctx.json {
        println!("{}", serde_json::json!({ "plan": the_plan, "result": "done" }));
    } else {
        println!(
            "Storage recreated and mounted under {}. Restore files there; `rescue recover --umount` unmounts it and closes LUKS/LVM/MD.",
            target_root.display()
        );
    }
    Ok(0)
}

fn read_line() -> Result<String> {
    let mut s = String::new();
    std::io::stdin().lock().read_line(&mut s).context("reading the answer from the terminal")?;
    Ok(s.trim().to_string())
}

fn ask_choice(layout: &Layout, disk: &str, candidates: &[PathBuf]) -> Result<String> {
    let size = layout.disk(disk).map(|d| crate::util::human_bytes(d.size)).unwrap_or_default();
    loop {
        eprintln!("Recorded disk {disk} ({size}) could go to more than one disk:");
        for (i, c) in candidates.iter().enumerate() {
            eprintln!("  {}) {}", i + 1, c.display());
        }
        eprint!("Number of the disk to use for {disk} (or q to stop): ");
        let _ = std::io::stderr().flush();
        let ans = read_line()?;
        if ans == "q" || ans.is_empty() {
            return Err(input_error(format!("no disk chosen for {disk}; nothing was written")));
        }
        if let Some(c) = ans.parse::<usize>().ok().and_then(|n| candidates.get(n.wrapping_sub(1))) {
            return Ok(c.display().to_string());
        }
    }
}

fn confirm(disks: &[String]) -> Result<bool> {
    eprint!("This erases ALL data on {}. Type YES to continue: ", disks.join(", "));
    let _ = std::io::stderr().flush();
    Ok(read_line()? == "YES")
}

/// Ask for a LUKS passphrase twice, without echo.
fn ask_passphrase(name: &str) -> Result<Vec<u8>> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    let old = tcgetattr(&stdin).context("reading the terminal settings")?;
    let mut quiet = old.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    let read = |prompt: &str| -> Result<String> {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("turning off echo")?;
        let r = read_line();
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &old);
        eprintln!();
        r
    };
    loop {
        let a = read(&format!("Passphrase for the new LUKS volume {name}: "))?;
        let b = read("Again: ")?;
        if a.is_empty() {
            eprintln!("An empty passphrase is not allowed.");
        } else if a != b {
            eprintln!("The passphrases differ; try again.");
        } else {
            return Ok(a.into_bytes());
        }
    }
}
