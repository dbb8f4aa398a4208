//! `rescue mkbackup`: everything a recovery needs, in one run and in this
//! order: record the layout (savelayout), back up the data (the engine of
//! mkbackuponly) and note in the descriptor where the backup went, then
//! build the rescue image (mkrescue) holding that descriptor and the backup
//! location. With `backup.url = "iso:///backup"` the archive goes into the
//! ISO itself.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use super::mkrescue::{self, ImageArgs};
use super::savelayout::{capture_excluding, CaptureArgs};
use crate::backup::{self, BackupOptions, BackupReport};
use crate::cli::Ctx;
use crate::layout::recovery::backed_up_mounts;
use crate::layout::BackupRecord;

pub const EXAMPLES: &str = "\
Examples:
  rescue mkbackup                      layout, backup to backup.url, rescue ISO
  rescue mkbackup --url iso:///backup  the backup inside the ISO: one file recovers the machine
  rescue mkbackup --url nfs://nas/backups --output iso,pxe
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
    #[command(flatten)]
    pub image: ImageArgs,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
struct Summary {
    layout: PathBuf,
    backup: BackupReport,
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
fn check_destination(ctx: &Ctx, a: &Args) -> Result<()> {
    if ctx.config.backup.method.is_server() {
        if a.url.is_some() {
            crate::bail_input!(
                "--url names a destination for rescue's archives; with backup.method = \"{}\" the director's jobs hold the data",
                ctx.config.backup.method.product().to_ascii_lowercase()
            );
        }
        return Ok(());
    }
    let Some(url) = a.url.clone().or_else(|| ctx.config.backup.url.clone()) else {
        crate::bail_input!("no backup destination: set backup.url in the config (e.g. \"iso:///backup\" or \"nfs://nas/backups\") or pass --url");
    };
    if let backup::Location::Iso { .. } = backup::Location::parse(&url)? {
        let iso = if a.image.output.is_empty() {
            ctx.config.image.output.contains(&crate::image::config::OutputKind::Iso)
        } else {
            a.image.output.iter().any(|o| matches!(o, mkrescue::OutputArg::Iso))
        };
        if !iso {
            crate::bail_input!("the backup goes into the rescue ISO ({url}), but no ISO is built: add iso to --output or to [image] output");
        }
    }
    Ok(())
}

/// The disk behind a `usb://` destination, when it is present.
fn backup_usb_disk(ctx: &Ctx, a: &Args) -> Option<String> {
    let url = a.url.clone().or_else(|| ctx.config.backup.url.clone())?;
    match backup::Location::parse(&url).ok()? {
        backup::Location::Usb { device, label, .. } => {
            let dev = device.or_else(|| label.map(|l| PathBuf::from(format!("/dev/disk/by-label/{l}"))))?;
            crate::util::disk_of_device(&dev)
        }
        _ => None,
    }
}

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let started = Instant::now();
    let quiet = ctx.verbosity < 0;
    let mut seconds = Vec::new();
    let layout_path = a.layout.clone().unwrap_or_else(|| ctx.config.layout_path());
    check_destination(ctx, &a)?;

    let t = step(quiet, 1, "savelayout: record the storage layout");
    // The USB disk the backup goes to is not part of the system to recover.
    let backup_disk = backup_usb_disk(ctx, &a);
    if let Some(d) = &backup_disk {
        tracing::info!("leaving the backup disk {d} out of the layout");
    }
    let cap = capture_excluding(ctx, &a.capture, backup_disk.as_slice())?;
    let mut layout = cap.layout;
    layout.save(&layout_path)?;
    if !cap.warnings.is_empty() {
        tracing::warn!("{} warning(s) during capture; the descriptor is usable but incomplete where they say", cap.warnings.len());
    }
    tracing::info!("layout saved to {}", layout_path.display());
    seconds.push(("savelayout".to_string(), t.elapsed().as_secs_f64()));

    if ctx.config.backup.method.is_server() {
        // The director's job holds the data: run it (or check its age), then build the image.
        let t = step(quiet, 2, "backup: the backup server's job");
        let code = super::mkbackuponly::run_server(ctx)?;
        seconds.push(("backup".to_string(), t.elapsed().as_secs_f64()));
        let t = step(quiet, 3, "mkrescue: build the rescue image");
        let (m, output_dir) = mkrescue::build(&ctx.config, &a.image, layout_path.clone())?;
        seconds.push(("mkrescue".to_string(), t.elapsed().as_secs_f64()));
        let manifest = crate::image::manifest::manifest_path(&output_dir, &m.hostname);
        tracing::info!(
            "mkbackup done in {:.1} s: layout {}, {} job, rescue image in {} (manifest {})",
            started.elapsed().as_secs_f64(),
            layout_path.display(),
            ctx.config.backup.method.product(),
            output_dir.display(),
            manifest.display()
        );
        return Ok(code);
    }
    let t = step(quiet, 2, "backup: archive the recorded filesystems");
    let opts = BackupOptions { root: PathBuf::from(a.capture.root(&ctx.config)), url: a.url.clone(), progress: !quiet };
    let r = backup::run_backup(&layout, &ctx.config, &opts)?;
    let code = backup::print_create_report(&r.create, std::path::Path::new(&r.archive));
    let archive = if r.archive.ends_with('/') {
        String::new()
    } else {
        std::path::Path::new(&r.archive).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    };
    layout.backup = Some(BackupRecord {
        url: r.url.clone(),
        archive,
        created: crate::util::now_rfc3339(),
        data_bytes: r.create.bytes,
        files: r.create.files,
        mounts: backed_up_mounts(&layout, &r.mounts),
    });
    layout.save(&layout_path).with_context(|| format!("recording the backup in {}", layout_path.display()))?;
    seconds.push(("backup".to_string(), t.elapsed().as_secs_f64()));

    let t = step(quiet, 3, "mkrescue: build the rescue image");
    // The image's config points where this backup went, also with --url.
    let mut config = ctx.config.clone();
    config.backup.url = Some(r.url.clone());
    let (m, output_dir) = mkrescue::build(&config, &a.image, layout_path.clone())?;
    seconds.push(("mkrescue".to_string(), t.elapsed().as_secs_f64()));
    let manifest = crate::image::manifest::manifest_path(&output_dir, &m.hostname);
    let total = started.elapsed().as_secs_f64();

    if ctx.json {
        let s = Summary { layout: layout_path, backup: r, outputs: m.outputs.clone(), manifest, seconds, total_seconds: total };
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else if !quiet {
        println!("descriptor  {}", layout_path.display());
        println!("backup      {} ({} files, {})", r.archive, r.create.files, crate::util::human_bytes(r.create.bytes));
        for o in &m.outputs {
            println!("{:<11} {} ({})", o.kind, o.path, crate::util::human_bytes(o.bytes));
        }
        let times: Vec<String> = seconds.iter().map(|(k, v)| format!("{k} {v:.1} s")).collect();
        println!("took {total:.1} s ({})", times.join(", "));
    }
    Ok(code)
}
