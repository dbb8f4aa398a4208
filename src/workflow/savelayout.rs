//! `rescue savelayout`: capture the storage layout into a descriptor.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::context::Ctx;
use crate::layout::Layout;
use crate::probe::source::{Fixture, Live, Recorder, SystemView};
use crate::probe::{capture, Capture, CaptureOptions};

pub const EXAMPLES: &str = "\
Examples:
  rescue savelayout                         all fixed disks, to /var/lib/rescue/layout.toml
  rescue savelayout -o -                    print the descriptor instead of saving it
  rescue savelayout --disk /dev/sdb --root /mnt/sysimage -o sysimage.toml
                                            a system mounted elsewhere, on one disk";

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub capture: CaptureArgs,
    /// Where to write the descriptor (`-` for stdout). Default: STATE_DIR/layout.toml.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// What to capture; shared by `savelayout`, `checklayout`, `mkrescue` and `mkbackup`.
#[derive(Debug, Clone, clap::Args)]
pub struct CaptureArgs {
    /// Only this disk and what sits on it (repeatable). Default: capture.disks, else every fixed disk.
    #[arg(long = "disk", value_name = "DEV")]
    pub disks: Vec<String>,
    /// Record mount points relative to DIR (a system mounted elsewhere). Default: capture.root, else /.
    #[arg(long, value_name = "DIR")]
    pub root: Option<String>,
    /// Write everything the probe read to FILE (a test fixture).
    #[arg(long, value_name = "FILE", hide = true)]
    pub record_fixture: Option<PathBuf>,
    /// Read the system from a recorded fixture instead of the live system.
    #[arg(long, value_name = "FILE", hide = true)]
    pub from_fixture: Option<PathBuf>,
}

impl CaptureArgs {
    /// The root to record mount points under: the flag, else the config, else `/`.
    pub fn root(&self, config: &crate::config::Config) -> String {
        self.root.clone().or_else(|| config.capture.root.clone()).unwrap_or_else(|| "/".into())
    }
}

/// Capture according to the flags and config, printing warnings.
pub fn capture_with(ctx: &Ctx, a: &CaptureArgs) -> Result<Capture> {
    capture_excluding(ctx, a, &[])
}

/// [`capture_with`], leaving out `backup_disks` too (the disk a usb:// backup goes to), without a warning.
pub fn capture_excluding(ctx: &Ctx, a: &CaptureArgs, backup_disks: &[String]) -> Result<Capture> {
    let opts = CaptureOptions {
        disks: if a.disks.is_empty() { ctx.config.capture.disks.clone() } else { a.disks.clone() },
        root: a.root(&ctx.config),
        exclude_disks: ctx.config.capture.exclude_disks.clone(),
        exclude_mounts: ctx.config.capture.exclude_mounts.clone(),
        backup_disks: backup_disks.to_vec(),
    };
    let started = std::time::Instant::now();
    let result = if let Some(f) = &a.from_fixture {
        let fixture = Fixture::load(f)?;
        capture(&fixture, &opts)
    } else if let Some(f) = &a.record_fixture {
        let rec = Recorder::new(&format!("recorded by rescue {} savelayout", env!("CARGO_PKG_VERSION")));
        let r = capture(&rec as &dyn SystemView, &opts);
        rec.save(f)?;
        tracing::info!("fixture written to {}", f.display());
        r
    } else {
        capture(&Live, &opts)
    };
    tracing::debug!("capture took {:?}", started.elapsed());
    result
}

/// Capture the layout again for a descriptor saved before: the backup that
/// descriptor records still stands, so the capture carries it over (a capture
/// alone knows of no backup). The saved descriptor, if any, and the capture.
pub fn recapture(ctx: &Ctx, a: &CaptureArgs, saved_path: &Path) -> Result<(Option<Layout>, Capture)> {
    let saved = if saved_path.exists() { Some(Layout::load(saved_path)?) } else { None };
    let mut cap = capture_with(ctx, a).context("capturing the current layout")?;
    cap.layout.backup = saved.as_ref().and_then(|s| s.backup.clone());
    Ok((saved, cap))
}

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let cap = capture_with(ctx, &a.capture)?;
    let text = cap.layout.to_toml()?;
    match a.output.as_deref() {
        Some(p) if p.as_os_str() == "-" => print!("{text}"),
        other => {
            let path = other.map(PathBuf::from).unwrap_or_else(|| ctx.config.layout_path());
            cap.layout.save(&path)?;
            let l = &cap.layout;
            tracing::info!(
                "layout saved to {}: {} disk(s), {} partition(s), {} RAID, {} LUKS, {} LV, {} filesystem(s), {} mount(s)",
                path.display(),
                l.disks.len(),
                l.partitions.len(),
                l.raids.len(),
                l.luks.len(),
                l.lvm_lvs.len(),
                l.filesystems.len(),
                l.mounts.len()
            );
        }
    }
    if !cap.warnings.is_empty() {
        tracing::warn!("{} warning(s) during capture; the descriptor is usable but incomplete where they say", cap.warnings.len());
    }
    Ok(0)
}
