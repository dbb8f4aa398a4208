//! `rescue archive create|extract|list|verify`: the archive engine on its
//! own, for any directory trees, to any destination URL.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::archive::{self, Compression, CreateOptions, ExtractOptions, Source};
use crate::backup::{self, Location};
use crate::config::LuksKeySource;
use crate::context::Ctx;
use crate::util::human_bytes;

pub const EXAMPLES: &str = "\
Examples:
  rescue archive create /etc /home -o /srv/backup/host.tar.zst
  rescue archive create -C /srv/data . -o /tmp/data.tar.gz --compress gzip
  rescue archive create / --one-file-system --exclude '/var/cache/*' -o nfs://nas/backups/host.tar.zst
  rescue archive list /srv/backup/host.tar.zst
  rescue archive verify /srv/backup/host.tar.zst
  rescue archive extract /srv/backup/host.tar.zst --target /mnt/local
  rescue archive create /etc -o /tmp/etc.tar.zst.age --age-recipient age1...
  rescue archive verify /tmp/etc.tar.zst.age --age-identity /root/backup-key.txt
Without rescue: tar --zstd -xpf host.tar.zst --xattrs --xattrs-include='*' --acls --numeric-owner
Encrypted:      age -d -i KEYFILE host.tar.zst.age | zstd -d | tar -xpf - --xattrs --xattrs-include='*' --acls --numeric-owner";

#[derive(Debug, clap::Subcommand)]
pub enum ArchiveCommand {
    /// Write an archive of directory trees (pax tar, zstd or gzip compressed).
    #[command(after_long_help = EXAMPLES)]
    Create(CreateArgs),
    /// Restore an archive into a directory, refusing members that would land outside it.
    #[command(after_long_help = EXAMPLES)]
    Extract(ExtractArgs),
    /// List the members of an archive.
    #[command(after_long_help = EXAMPLES)]
    List(SourceArg),
    /// Read a whole archive and check every member against its manifest.
    #[command(after_long_help = EXAMPLES)]
    Verify(SourceArg),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Files or directory trees to archive (stored without the leading `/`).
    #[arg(required = true)]
    pub sources: Vec<PathBuf>,
    /// Output file or URL (file://, nfs://, cifs://, usb://); written under a temporary name and renamed when complete.
    #[arg(short, long, value_name = "FILE|URL")]
    pub output: String,
    /// Compression (default: backup.compress from the config, zstd).
    #[arg(long, value_enum)]
    pub compress: Option<Compression>,
    /// Compression level (zstd 1-19, default 3; gzip 1-9, default 6).
    #[arg(long)]
    pub level: Option<i32>,
    /// Glob pattern to leave out; with a `/` it matches the whole path, without it the file name. Repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Encrypt to this age recipient (`age1...`; repeatable). Default: backup.encrypt from the config.
    #[arg(long, value_name = "RECIPIENT")]
    pub age_recipient: Vec<String>,
    /// Change to DIR first: SOURCES are relative to it and stored as given (like tar -C).
    #[arg(short = 'C', long = "directory", value_name = "DIR")]
    pub directory: Option<PathBuf>,
    /// Do not descend into other filesystems (mount points are archived as empty directories).
    #[arg(long)]
    pub one_file_system: bool,
}

#[derive(Debug, clap::Args)]
pub struct ExtractArgs {
    /// Archive file or URL.
    pub archive: String,
    /// Directory to restore into (created if missing).
    #[arg(long, short = 'C', value_name = "DIR")]
    pub target: PathBuf,
    /// Apply GNU tar incremental records (like `tar -x --listed-incremental=/dev/null`): extract the archives
    /// of a chain in order, and names deleted or renamed since the previous one are removed from DIR.
    #[arg(long)]
    pub incremental: bool,
    #[command(flatten)]
    pub key: KeyArg,
}

#[derive(Debug, clap::Args)]
pub struct KeyArg {
    /// The age identity of an encrypted archive: a file, or `usb://LABEL/path`.
    /// Default: `recover.age-identity`; without either it is asked for on the terminal.
    #[arg(long, value_name = "FILE", value_parser = LuksKeySource::parse_arg)]
    pub age_identity: Option<LuksKeySource>,
}

#[derive(Debug, clap::Args)]
pub struct SourceArg {
    /// Archive file or URL.
    pub archive: String,
    #[command(flatten)]
    pub key: KeyArg,
}

pub fn run(ctx: &Ctx, c: ArchiveCommand) -> Result<i32> {
    match c {
        ArchiveCommand::Create(a) => create(ctx, a),
        ArchiveCommand::Extract(a) => extract(ctx, a),
        ArchiveCommand::List(a) => {
            let (loc, file, _) = open_input(ctx, &a.archive, a.key)?;
            let stdout = std::io::stdout();
            let n = archive::list(file, &mut stdout.lock()).with_context(|| format!("listing {}", loc.display()))?;
            tracing::debug!("{n} members");
            Ok(0)
        }
        ArchiveCommand::Verify(a) => {
            let (loc, file, _) = open_input(ctx, &a.archive, a.key)?;
            let r = archive::verify(file).with_context(|| format!("verifying {}", loc.display()))?;
            if ctx.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            }
            for d in &r.damaged {
                eprintln!("damaged: {d} (checksum or size differs from the manifest)");
            }
            for m in &r.missing {
                eprintln!("missing: {m} (listed in the manifest, absent from the archive)");
            }
            for u in &r.unexpected {
                eprintln!("unexpected: {u} (in the archive, not in the manifest)");
            }
            if r.ok() {
                tracing::info!("{}: {} members, {} of file data, all match the manifest", loc.display(), r.members, human_bytes(r.bytes));
                Ok(0)
            } else {
                anyhow::bail!(
                    "{} is damaged: {} damaged, {} missing, {} unexpected members (listed above); restore from another copy",
                    loc.display(),
                    r.damaged.len(),
                    r.missing.len(),
                    r.unexpected.len()
                )
            }
        }
    }
}

/// The archive at `spec`, decrypted when it is an age file; its compressed size.
fn open_input(ctx: &Ctx, spec: &str, key: KeyArg) -> Result<(backup::Opened, Box<dyn std::io::Read + Send>, Option<u64>)> {
    let loc = Location::parse(spec)?;
    let opened = backup::Opened::open(&loc, &ctx.config.backup, false)?;
    let path = opened.file_path()?;
    let f = std::fs::File::open(&path).with_context(|| format!("opening the archive {}", path.display()))?;
    let size = f.metadata().ok().map(|m| m.len());
    let interactive = !ctx.json && std::io::stdin().is_terminal();
    let keys = crate::secrets::age_key(&ctx.config, key.age_identity, interactive);
    let f = archive::age::open(f, &path, &keys)?;
    Ok((opened, f, size))
}

fn create(ctx: &Ctx, a: CreateArgs) -> Result<i32> {
    let cfg = &ctx.config.backup;
    let compression = a.compress.unwrap_or(cfg.compress);
    let mut excludes = cfg.exclude.clone();
    excludes.extend(a.exclude.iter().cloned());
    let loc = Location::parse(&a.output)?;
    let opened = backup::Opened::open(&loc, cfg, true)?;
    let dest = opened.file_path()?;
    let opts = CreateOptions {
        compression,
        level: a.level.or(cfg.level),
        excludes,
        exclude_paths: vec![dest.clone()],
        encrypt: if a.age_recipient.is_empty() {
            cfg.encrypt.load()?
        } else {
            archive::age::EncryptConfig { recipients: a.age_recipient.clone(), passphrase_file: None }.load()?
        },
        one_file_system: a.one_file_system || cfg.one_file_system,
        progress: ctx.verbosity >= 0,
        ..CreateOptions::default()
    };
    let sources: Vec<Source> = a
        .sources
        .iter()
        .map(|p| match &a.directory {
            Some(dir) => Source { path: dir.join(p).components().collect(), name: Source::from_path(p).name },
            None => Source::from_path(p),
        })
        .collect();
    let report = backup::write_archive_file(&sources, &dest, &opts)?;
    Ok(backup::print_create_report(&report, &dest))
}

fn extract(ctx: &Ctx, a: ExtractArgs) -> Result<i32> {
    let (loc, file, total) = open_input(ctx, &a.archive, a.key)?;
    let opts = ExtractOptions { target: a.target.clone(), progress: ctx.verbosity >= 0, total_bytes: total, keep_manifest: false, incremental: a.incremental };
    let r = archive::extract(file, &opts).with_context(|| format!("extracting {} into {}", loc.display(), a.target.display()))?;
    Ok(backup::print_extract_report(&r, &a.target))
}
