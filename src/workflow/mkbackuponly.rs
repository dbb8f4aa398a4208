//! `rescue mkbackuponly`: back up the filesystems recorded in the saved
//! descriptor to the configured destination, without making a rescue image.

use std::path::PathBuf;

use anyhow::Result;

use crate::backup::{self, BackupSet};
use crate::context::Ctx;
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
    let backend = backup::open(&ctx.config.backup, a.url.as_deref())?;
    let path = a.layout.clone().unwrap_or_else(|| ctx.config.layout_path());
    // The methods that read the recorded filesystems need the descriptor; the backend says so when it is missing.
    let layout = if path.exists() { Some(Layout::load(&path)?) } else { None };
    let c = &ctx.config;
    let set = BackupSet::new(layout.as_ref(), &c.backup, &c.capture.exclude_mounts, &c.log_dir, &a.root, ctx.verbosity >= 0).with_chain(a.level, &c.state_dir);
    let r = backup::run(backend.as_ref(), &set)?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    }
    Ok(r.print())
}
