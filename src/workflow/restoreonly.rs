//! `rescue restoreonly`: restore the newest backup into a target root that
//! is already partitioned, formatted and mounted (default /mnt/local).

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;

use crate::backup::{self, RestoreOptions};
use crate::cli::Ctx;
use crate::layout::Layout;
use crate::target::TargetRoot;
use crate::workflow::recover::LuksKeySource;

pub const EXAMPLES: &str = "\
Examples:
  rescue restoreonly                                   newest backup into /mnt/local
  rescue restoreonly --target /mnt/new --url nfs://nas/backups
  rescue restoreonly --archive backup-20260101-020000.tar.zst
  rescue restoreonly --restore-before 2026-01-01   (backup.method = \"bacula\"/\"bareos\")
  rescue restoreonly --restore-jobid 1234
  rescue restoreonly --check    director reachable, console accepted, a backup there?";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The descriptor naming the host whose backup is restored (default: the saved one).
    #[arg(long, value_name = "FILE")]
    pub layout: Option<PathBuf>,
    /// The prepared target root (default: recover.target-root from the config, /mnt/local).
    #[arg(long, value_name = "DIR")]
    pub target: Option<TargetRoot>,
    /// Backup location (default: backup.url from the config).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// A specific backup file in the host's directory (default: the newest).
    #[arg(long, value_name = "NAME")]
    pub archive: Option<String>,
    /// The age identity of an encrypted backup: a file, or `usb://LABEL/path` (a file on a USB stick).
    /// Default: `recover.age-identity`; without either it is asked for on the terminal.
    #[arg(long, value_name = "FILE", value_parser = LuksKeySource::parse_arg)]
    pub age_identity: Option<LuksKeySource>,
    /// Backup server (backup.method bacula/bareos): restore exactly this job.
    #[arg(long, value_name = "JOBID", conflicts_with = "restore_before")]
    pub restore_jobid: Option<u64>,
    /// Backup server: restore the newest backup before this date (YYYY-MM-DD[ HH:MM[:SS]]).
    #[arg(long, value_name = "DATE")]
    pub restore_before: Option<String>,
    /// Backup server: only check that the director answers, accepts the console and has a backup to restore.
    #[arg(long)]
    pub check: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    if ctx.config.backup.method.is_server() {
        return run_server(ctx, a);
    }
    if a.restore_jobid.is_some() || a.restore_before.is_some() {
        crate::bail_input!("--restore-jobid and --restore-before choose a backup on a backup server: set backup.method = \"bacula\" or \"bareos\"");
    }
    let path = a.layout.clone().unwrap_or_else(|| ctx.config.layout_path());
    if !path.exists() {
        crate::bail_input!("no layout descriptor at {}: pass --layout FILE (the descriptor names the host whose backup to restore)", path.display());
    }
    let layout = Layout::load(&path)?;
    let root = a.target.unwrap_or_else(|| ctx.config.recover.target_root.clone());
    root.check_no_symlink()?;
    let target = root.path().to_path_buf();
    if !target.is_dir() {
        crate::bail_input!("the target root {} does not exist: create and mount the filesystems there first", target.display());
    }
    let opts = RestoreOptions { target: target.clone(), url: a.url, archive: a.archive, progress: ctx.verbosity >= 0 };
    let interactive = !ctx.json && std::io::stdin().is_terminal();
    let key = crate::workflow::recover::age_key(ctx, a.age_identity, interactive);
    let r = backup::restore(&layout, &ctx.config, &opts, &key)?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    }
    Ok(backup::print_extract_report(&r, &target))
}

/// Backup server: the director restores into the target (docs/bareos.md).
fn run_server(ctx: &Ctx, a: Args) -> Result<i32> {
    if a.url.is_some() || a.archive.is_some() {
        crate::bail_input!(
            "--url and --archive name rescue archives; with backup.method = \"{}\" choose a backup with --restore-jobid or --restore-before",
            ctx.config.backup.method.product().to_ascii_lowercase()
        );
    }
    let root = a.target.unwrap_or_else(|| ctx.config.recover.target_root.clone());
    root.check_no_symlink()?;
    let target = root.path().to_path_buf();
    let sel = crate::bserver::Selection { jobid: a.restore_jobid, before: a.restore_before };
    if a.check {
        let p = crate::bserver::preflight(&ctx.config, &sel)?;
        if ctx.json {
            println!("{}", serde_json::to_string_pretty(&p)?);
        }
        tracing::info!("the director {} answers ({}); client {}", p.director, p.greeting, p.client);
        if let Some(j) = &p.backup {
            tracing::info!(
                "a restore would start from job {} ({}, {}), {} files, {}, ended {}",
                j.jobid,
                j.name,
                j.level_name(),
                j.files,
                crate::util::human_bytes(j.bytes),
                j.end_time
            );
        }
        return Ok(crate::error::EXIT_OK);
    }
    let r = crate::bserver::restore(&ctx.config, &target, &sel)?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    }
    tracing::info!(
        "restored {} files ({}) of {} into {} with job {} in {:.0} s",
        r.job.files,
        crate::util::human_bytes(r.job.bytes),
        r.client,
        r.target,
        r.job.jobid,
        r.seconds
    );
    for w in &r.warnings {
        tracing::warn!("{w}");
    }
    Ok(if r.warnings.is_empty() { crate::error::EXIT_OK } else { crate::error::EXIT_CHANGED })
}
