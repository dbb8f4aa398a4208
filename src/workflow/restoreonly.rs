//! `rescue restoreonly`: restore the newest backup into a target root that
//! is already partitioned, formatted and mounted (default /mnt/local).

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;

use crate::backup::{self, CheckOptions, Pick, RestoreOptions};
use crate::config::LuksKeySource;
use crate::context::Ctx;
use crate::layout::Layout;
use crate::target::TargetRoot;

pub const EXAMPLES: &str = "\
Examples:
  rescue restoreonly                                   newest backup into /mnt/local
  rescue restoreonly --target /mnt/new --url nfs://nas/backups
  rescue restoreonly --archive backup-20260101-020000.tar.zst
  rescue restoreonly --restore-before 2026-01-01   (backup.method = \"bacula\"/\"bareos\")
  rescue restoreonly --restore-jobid 1234
  rescue restoreonly --check    backup reachable and complete (director answers, has a backup)?";

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
    /// A specific backup file in the host's directory (default: the newest); of an incremental
    /// chain, the chain up to and including it is restored.
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
    /// Only check that the backup can be restored (reachable, there, and an archive read to its end against
    /// its manifest; a director answers, accepts the console and has a backup), restoring nothing.
    #[arg(long)]
    pub check: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let backend = backup::open(&ctx.config.backup, a.url.as_deref())?;
    let path = a.layout.clone().unwrap_or_else(|| ctx.config.layout_path());
    // The descriptor names the host whose backup to restore; the backend says so when it needs it.
    let layout = if path.exists() { Some(Layout::load(&path)?) } else { None };
    let pick = Pick { archive: a.archive, jobid: a.restore_jobid, before: a.restore_before };
    let interactive = !ctx.json && std::io::stdin().is_terminal();
    let keys = crate::secrets::age_key(&ctx.config, a.age_identity, interactive);
    let terminal = interactive.then_some(&crate::secrets::Terminal as &dyn backup::Ask);
    if a.check {
        let used =
            backend.check(layout.as_ref(), &pick, &CheckOptions { verify: true, progress: ctx.verbosity >= 0 && !ctx.json, keys: &keys, ask: terminal })?;
        if ctx.json {
            println!("{}", serde_json::to_string_pretty(&used)?);
        }
        tracing::info!("a restore would start from the {used}");
        return Ok(crate::error::EXIT_OK);
    }
    let root = a.target.unwrap_or_else(|| ctx.config.recover.target_root.clone());
    root.check_no_symlink()?;
    let target = root.path().to_path_buf();
    if !target.is_dir() {
        crate::bail_input!("the target root {} does not exist: create and mount the filesystems there first", target.display());
    }
    let r = backend.restore(layout.as_ref(), &pick, &target, &RestoreOptions { progress: ctx.verbosity >= 0, keys: &keys, ask: terminal })?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    }
    Ok(r.print(&target))
}
