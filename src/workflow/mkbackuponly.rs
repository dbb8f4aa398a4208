//! `rescue mkbackuponly`: back up the filesystems recorded in the saved
//! descriptor to the configured destination, without making a rescue image.

use std::path::PathBuf;

use anyhow::Result;

use crate::backup::{self, BackupOptions};
use crate::cli::Ctx;
use crate::layout::Layout;

pub const EXAMPLES: &str = "\
Examples:
  rescue mkbackuponly                              to backup.url from the config
  rescue mkbackuponly --url nfs://nas/backups      to another destination
  rescue mkbackuponly --layout /tmp/layout.toml --root /mnt/snapshot
  With backup.method = \"bacula\" or \"bareos\": runs the client's backup job on the
  director and waits (backup.server.mkbackup-mode = \"run\"), or checks that the last
  good backup is younger than backup.server.rpo-hours (\"check\").";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The descriptor whose mounts are backed up (default: the saved one in the state directory).
    #[arg(long, value_name = "FILE")]
    pub layout: Option<PathBuf>,
    /// Where the recorded mount points are found.
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    /// Destination URL (default: backup.url from the config).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    if ctx.config.backup.method.is_server() {
        if a.url.is_some() {
            crate::bail_input!(
                "--url names a destination for rescue's archives; with backup.method = \"{}\" the director's jobs hold the data",
                ctx.config.backup.method.product().to_ascii_lowercase()
            );
        }
        return run_server(ctx);
    }
    let path = a.layout.clone().unwrap_or_else(|| ctx.config.layout_path());
    if !path.exists() {
        crate::bail_input!("no layout descriptor at {}: run `rescue savelayout` first or pass --layout FILE", path.display());
    }
    let layout = Layout::load(&path)?;
    let opts = BackupOptions { root: a.root, url: a.url, progress: ctx.verbosity >= 0 };
    let r = backup::run_backup(&layout, &ctx.config, &opts)?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    }
    tracing::info!("backed up {} to {}", r.mounts.join(", "), r.url);
    Ok(backup::print_create_report(&r.create, std::path::Path::new(&r.archive)))
}

/// Backup server: run the job or check the RPO (docs/bareos.md).
pub(crate) fn run_server(ctx: &Ctx) -> Result<i32> {
    let r = crate::bserver::mkbackup(&ctx.config)?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    }
    let age = r.age_hours.map(|a| format!(", {a:.1} h old (RPO {} h)", r.rpo_hours)).unwrap_or_default();
    let what = match r.mode {
        crate::bserver::MkbackupMode::Run => "backup job",
        crate::bserver::MkbackupMode::Check => "last good backup",
    };
    tracing::info!(
        "{what} of {} on {}: job {} ({}, {}), {} files, {}, ended {}{age}",
        r.client,
        r.director,
        r.job.jobid,
        r.job.name,
        r.job.level_name(),
        r.job.files,
        crate::util::human_bytes(r.job.bytes),
        r.job.end_time
    );
    Ok(if r.job.status == "W" { crate::error::EXIT_CHANGED } else { crate::error::EXIT_OK })
}
