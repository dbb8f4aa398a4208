//! `rescue restoreonly`: restore the newest backup into a target root that
//! is already partitioned, formatted and mounted (default /mnt/local).

use std::path::PathBuf;

use anyhow::Result;

use crate::backup::{self, RestoreOptions};
use crate::cli::Ctx;
use crate::layout::Layout;

pub const EXAMPLES: &str = "\
Examples:
  rescue restoreonly                                   newest backup into /mnt/local
  rescue restoreonly --target /mnt/new --url nfs://nas/backups
  rescue restoreonly --archive backup-20260101-020000.tar.zst";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The descriptor naming the host whose backup is restored (default: the saved one).
    #[arg(long, value_name = "FILE")]
    pub layout: Option<PathBuf>,
    /// The prepared target root (default: recover.target-root from the config, /mnt/local).
    #[arg(long, value_name = "DIR")]
    pub target: Option<PathBuf>,
    /// Backup location (default: backup.url from the config).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// A specific backup file in the host's directory (default: the newest).
    #[arg(long, value_name = "NAME")]
    pub archive: Option<String>,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let path = a.layout.clone().unwrap_or_else(|| ctx.config.layout_path());
    if !path.exists() {
        crate::bail_input!("no layout descriptor at {}: pass --layout FILE (the descriptor names the host whose backup to restore)", path.display());
    }
    let layout = Layout::load(&path)?;
    let target = a.target.unwrap_or_else(|| ctx.config.recover.target_root.clone());
    if !target.is_dir() {
        crate::bail_input!("the target root {} does not exist: create and mount the filesystems there first", target.display());
    }
    let opts = RestoreOptions { target: target.clone(), url: a.url, archive: a.archive, progress: ctx.verbosity >= 0 };
    let r = backup::restore(&layout, &ctx.config, &opts)?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    }
    Ok(backup::print_extract_report(&r, &target))
}
