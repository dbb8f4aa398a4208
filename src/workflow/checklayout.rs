//! `rescue checklayout`: has the storage layout changed since it was saved?
//! For cron jobs and timers: exit 0 unchanged, 1 changed, 2 error.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::Ctx;
use crate::error::{EXIT_CHANGED, EXIT_OK};
use crate::layout::{diff, Layout};

pub const EXAMPLES: &str = "\
Examples:
  rescue checklayout                        compare with /var/lib/rescue/layout.toml
  rescue checklayout || rescue mkrescue     refresh the rescue image when needed
  rescue --json checklayout                 the differences as JSON";

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub capture: super::savelayout::CaptureArgs,
    /// The saved descriptor to compare with. Default: STATE_DIR/layout.toml.
    #[arg(long, value_name = "FILE")]
    pub layout: Option<PathBuf>,
}

#[derive(Serialize)]
struct Report<'a> {
    changed: bool,
    saved: String,
    changes: &'a [diff::Change],
}

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let path = a.layout.clone().unwrap_or_else(|| ctx.config.layout_path());
    if !path.exists() {
        crate::bail_input!("no saved layout at {}: run `rescue savelayout` (or `rescue mkrescue`) first", path.display());
    }
    let saved = Layout::load(&path)?;
    let current = super::savelayout::capture_with(ctx, &a.capture).context("capturing the current layout")?;
    let changes = diff::compare(&saved, &current.layout);
    if ctx.json {
        let r = Report { changed: !changes.is_empty(), saved: path.display().to_string(), changes: &changes };
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else if changes.is_empty() {
        println!("layout unchanged since {}", saved.host.captured_at);
    } else {
        println!("layout changed since {} ({} difference(s)):", saved.host.captured_at, changes.len());
        for c in &changes {
            println!("  {c}");
        }
    }
    Ok(if changes.is_empty() { EXIT_OK } else { EXIT_CHANGED })
}
