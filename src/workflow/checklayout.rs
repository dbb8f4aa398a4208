//! `rescue checklayout`: would a recovery from the saved descriptor differ
//! from one of the system as it is now? For cron jobs and timers: exit 0
//! unchanged, 1 changed (rebuild the image), 2 error. What counts is what
//! recovery uses ([`crate::layout::recovery`]); transient mounts and kernel
//! names of identified disks never do.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use crate::context::Ctx;
use crate::error::{EXIT_CHANGED, EXIT_OK};
use crate::layout::diff::{self, Difference};
use crate::layout::recovery::{backup_gaps, BackupGap, MountScope};

pub const EXAMPLES: &str = "\
Examples:
  rescue checklayout                        compare with /var/lib/rescue/layout.toml
  rescue checklayout || rescue mkrescue     refresh the rescue image when needed
  rescue --json checklayout                 the differences as JSON (item, field, old, new, why)";

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub capture: super::savelayout::CaptureArgs,
    /// The saved descriptor to compare with. Default: STATE_DIR/layout.toml.
    #[arg(long, value_name = "FILE")]
    pub layout: Option<PathBuf>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Report<'a> {
    changed: bool,
    saved: String,
    differences: &'a [Difference],
    /// Recorded mounts the recorded backup does not hold (not a layout change:
    /// a new image would not cover them either; `rescue mkbackup` does).
    backup_gaps: &'a [BackupGap],
}

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let path = a.layout.clone().unwrap_or_else(|| ctx.config.layout_path());
    if !path.exists() {
        crate::bail_input!("no saved layout at {}: run `rescue savelayout` (or `rescue mkrescue`) first", path.display());
    }
    let (saved, current) = super::savelayout::recapture(ctx, &a.capture, &path)?;
    let Some(saved) = saved else {
        crate::bail_input!("the saved layout at {} vanished during the check; run it again", path.display());
    };
    let scope = MountScope::new(&ctx.config.capture.exclude_mounts);
    let differences = diff::compare_in(&saved, &current.layout, &scope);
    let backend = crate::backup::configured(&ctx.config.backup, None, crate::backup::recorded_url(&saved))?;
    let gaps = if backend.is_some_and(|b| !b.follows_the_descriptor()) { Vec::new() } else { backup_gaps(&current.layout, &scope) };
    if ctx.json {
        let r = Report { changed: !differences.is_empty(), saved: path.display().to_string(), differences: &differences, backup_gaps: &gaps };
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        if differences.is_empty() {
            println!("layout unchanged since {}", saved.host.captured_at);
        } else {
            println!("layout changed since {} ({} difference(s) for recovery):", saved.host.captured_at, differences.len());
            for d in &differences {
                println!("  {d}");
            }
        }
        for g in &gaps {
            println!("note: {g}");
        }
    }
    Ok(if differences.is_empty() { EXIT_OK } else { EXIT_CHANGED })
}
