//! `rescue mkbackuponly`: back up the filesystems recorded in the saved
//! descriptor to the configured destination, without making a rescue image.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::backup::{self, Backed, BackupSet};
use crate::context::Ctx;
use crate::hooks::{self, HookRun, HooksConfig, Phase};
use crate::layout::Layout;

pub const EXAMPLES: &str = "\
Examples:
  rescue mkbackuponly                              to backup.url from the config
  rescue mkbackuponly --url nfs://nas/backups      to another destination
  rescue mkbackuponly --level incremental          only what changed since the last backup
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
    /// `full` starts a new incremental chain, `incremental` backs up only what changed since the
    /// previous backup of the chain (default: backup.full-every decides; 1, every backup full).
    #[arg(long, value_name = "LEVEL")]
    pub level: Option<crate::backup::chain::Level>,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let backend = backup::for_backup(&ctx.config.backup, a.url.as_deref(), a.level)?;
    let path = a.layout.clone().unwrap_or_else(|| ctx.config.layout_path());
    let c = &ctx.config;
    let (r, hooks) = between_backup_hooks(
        &c.hooks,
        &a.root,
        &backend.describe(),
        || {
            // The methods that read the recorded filesystems need the descriptor; the backend says so when it is missing.
            let layout = if path.exists() { Some(Layout::load(&path)?) } else { None };
            let set = BackupSet::new(layout.as_ref(), &c.backup, &c.capture.exclude_mounts, &c.log_dir, &a.root, ctx.verbosity >= 0)
                .with_chain(a.level, &c.state_dir);
            backup::run(backend.as_ref(), &set)
        },
        |b| b,
    )?;
    let r = r?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&WithHooks { backup: &r, hooks: &hooks })?);
    }
    Ok(code_with_hooks(r.print(), &hooks))
}

/// A backup's JSON report with the hooks that ran around it.
#[derive(Serialize)]
struct WithHooks<'a> {
    #[serde(flatten)]
    backup: &'a Backed,
    #[serde(skip_serializing_if = "<[HookRun]>::is_empty")]
    hooks: &'a [HookRun],
}

/// Run `backup` between the pre-backup and post-backup hooks of `cfg`
/// (`root`: what is backed up, `destination`: where to). A failing
/// pre-backup hook stops everything before `backup` runs (the error);
/// post-backup runs after `backup` whatever its result, and is told it.
/// Returns the backup's own result and the hooks that ran.
/// `backed` finds the backup in what `backup` returns.
pub(super) fn between_backup_hooks<T>(
    cfg: &HooksConfig,
    root: &Path,
    destination: &str,
    backup: impl FnOnce() -> Result<T>,
    backed: impl Fn(&T) -> &Backed,
) -> Result<(Result<T>, Vec<HookRun>)> {
    let mut ran = Vec::new();
    ran.extend(hooks::run(cfg, Phase::PreBackup, &hooks::backup_env(root, Some(destination.to_string()), None))?);
    let r = backup();
    let archive = r.as_ref().map(|t| backed(t).location()).unwrap_or_else(|_| destination.to_string());
    match hooks::run(cfg, Phase::PostBackup, &hooks::backup_env(root, Some(archive), Some(r.is_ok()))) {
        Ok(h) => ran.extend(h),
        Err(e) => tracing::warn!("the post-backup hook could not run: {e:#}"),
    }
    Ok((r, ran))
}

/// The exit code of a backup: a post-backup hook that failed makes a clean
/// run "completed with warnings" (1).
pub(super) fn code_with_hooks(code: i32, hooks: &[HookRun]) -> i32 {
    if code == crate::error::EXIT_OK && hooks.iter().any(|h| !h.ok()) {
        crate::error::EXIT_CHANGED
    } else {
        code
    }
}
