//! `rescue mkbackup`: everything a recovery needs, in one run and in this
//! order: record the layout (savelayout), back up the data (the engine of
//! mkbackuponly) and note in the descriptor where the backup went, then
//! build the rescue image (mkrescue) holding that descriptor and the backup
//! location. With `backup.url = "iso:///backup"` the archive goes into the
//! ISO itself.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use super::mkrescue::{self, ImageArgs};
use super::savelayout::{capture_excluding, CaptureArgs};
use crate::backup::{self, Backed, Backend, BackupSet};
use crate::context::Ctx;
use crate::layout::Layout;

pub const EXAMPLES: &str = "\
Examples:
  rescue mkbackup                      layout, backup to backup.url, rescue ISO
  rescue mkbackup --url iso:///backup  the backup inside the ISO: one file recovers the machine
  rescue mkbackup --url nfs://nas/backups --output iso,pxe
  rescue mkbackup --level incremental   only what changed since the last backup (a chain)
  rescue mkbackup --kernel /boot/vmlinuz-6.1.0-28-amd64 --modules-dir /lib/modules/6.1.0-28-amd64
  rescue --json mkbackup               what was made and the time of each step, as JSON

Then boot the machine to recover from the ISO: entry \"recover unattended\"
(needs recover.unattended-proceed = true), or `rescue recover` in its shell.";

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub capture: CaptureArgs,
    /// Where to save the descriptor (default: STATE_DIR/layout.toml).
    #[arg(long, value_name = "FILE")]
    pub layout: Option<PathBuf>,
    /// Backup destination (default: backup.url from the config); the rescue image records it.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// `full` starts a new incremental chain, `incremental` backs up only what changed since the
    /// previous backup of the chain (default: backup.full-every decides; 1, every backup full).
    #[arg(long, value_name = "LEVEL")]
    pub level: Option<crate::backup::chain::Level>,
    #[command(flatten)]
    pub image: ImageArgs,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
struct Summary {
    layout: PathBuf,
    backup: Backed,
    /// The pre-backup and post-backup hooks that ran, with their output.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hooks: Vec<crate::hooks::HookRun>,
    outputs: Vec<crate::image::manifest::OutputFile>,
    manifest: PathBuf,
    /// Seconds for savelayout, backup, mkrescue, and in all.
    seconds: Vec<(String, f64)>,
    total_seconds: f64,
}

fn step(quiet: bool, n: usize, what: &str) -> Instant {
    tracing::info!("step {n}/3: {what}");
    if !quiet {
        eprintln!("==> step {n}/3 {what}");
    }
    Instant::now()
}

/// Refuse before any work when the backup could not be made or not be found again.
fn check_destination(ctx: &Ctx, a: &Args, backend: &dyn Backend) -> Result<()> {
    if backend.inside_the_iso() {
        let iso = if a.image.output.is_empty() {
            ctx.config.image.output.contains(&crate::image::config::OutputKind::Iso)
        } else {
            a.image.output.iter().any(|o| matches!(o, mkrescue::OutputArg::Iso))
        };
        if !iso {
            crate::bail_input!("the backup goes into the rescue ISO ({}), but no ISO is built: add iso to --output or to [image] output", backend.describe());
        }
    }
    Ok(())
}

/// Step 1: record the storage layout (without the backup's own disk) and save it.
fn savelayout_step(ctx: &Ctx, a: &Args, layout_path: &Path, backend: &dyn Backend, quiet: bool, seconds: &mut Vec<(String, f64)>) -> Result<Layout> {
    let t = step(quiet, 1, "savelayout: record the storage layout");
    // The USB disk the backup goes to is not part of the system to recover.
    let backup_disk = backend.local_disk();
    if let Some(d) = &backup_disk {
        tracing::info!("leaving the backup disk {d} out of the layout");
    }
    let cap = capture_excluding(ctx, &a.capture, backup_disk.as_slice())?;
    let layout = cap.layout;
    layout.save(layout_path)?;
    if !cap.warnings.is_empty() {
        tracing::warn!("{} warning(s) during capture; the descriptor is usable but incomplete where they say", cap.warnings.len());
    }
    tracing::info!("layout saved to {}", layout_path.display());
    seconds.push(("savelayout".to_string(), t.elapsed().as_secs_f64()));
    Ok(layout)
}

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let started = Instant::now();
    let quiet = ctx.verbosity < 0;
    let mut seconds = Vec::new();
    let layout_path = a.layout.clone().unwrap_or_else(|| ctx.config.layout_path());
    let backend = backup::for_backup(&ctx.config.backup, a.url.as_deref(), a.level)?;
    check_destination(ctx, &a, backend.as_ref())?;
    if let Some(w) = backup::selfserved::warning_for(&backend.describe()) {
        tracing::warn!("{w}");
    }

    let root = PathBuf::from(a.capture.root(&ctx.config));
    let (backed, hooks) = super::mkbackuponly::between_backup_hooks(
        &ctx.config.hooks,
        &root,
        &backend.describe(),
        || {
            let layout = savelayout_step(ctx, &a, &layout_path, backend.as_ref(), quiet, &mut seconds)?;
            let t = step(quiet, 2, &format!("backup: to {}", backend.describe()));
            let c = &ctx.config;
            let set = BackupSet::new(Some(&layout), &c.backup, &c.capture.exclude_mounts, &c.log_dir, &root, !quiet).with_chain(a.level, &c.state_dir);
            let r = backup::run(backend.as_ref(), &set)?;
            seconds.push(("backup".to_string(), t.elapsed().as_secs_f64()));
            Ok((layout, r))
        },
        |(_, r)| r,
    )?;
    let (mut layout, r) = backed?;
    let code = super::mkbackuponly::code_with_hooks(r.print(), &hooks);
    // The descriptor notes where the backup went, so that recover finds it.
    let mut config = ctx.config.clone();
    if let Some(record) = r.record(&layout) {
        // The image's config points where this backup went, also with --url.
        config.backup.url = Some(record.url.clone());
        layout.backup = Some(record);
        layout.save(&layout_path).with_context(|| format!("recording the backup in {}", layout_path.display()))?;
    }

    let t = step(quiet, 3, "mkrescue: build the rescue image");
    let (m, output_dir) = mkrescue::build(&config, &a.image, layout_path.clone())?;
    seconds.push(("mkrescue".to_string(), t.elapsed().as_secs_f64()));
    let manifest = crate::image::manifest::manifest_path(&output_dir, &m.hostname);
    let total = started.elapsed().as_secs_f64();

    if ctx.json {
        let s = Summary { layout: layout_path, backup: r, hooks, outputs: m.outputs.clone(), manifest, seconds, total_seconds: total };
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else if !quiet {
        println!("descriptor  {}", layout_path.display());
        println!("backup      {}", r.line());
        for h in &hooks {
            let how = if h.ok() { "ok".to_string() } else { h.failure() };
            println!("{:<11} {how} ({:.1} s)", format!("{} hook", h.phase), h.seconds);
        }
        for o in &m.outputs {
            println!("{:<11} {} ({})", o.kind, o.path, crate::util::human_bytes(o.bytes));
        }
        let times: Vec<String> = seconds.iter().map(|(k, v)| format!("{k} {v:.1} s")).collect();
        println!("took {total:.1} s ({})", times.join(", "));
    }
    Ok(code)
}
