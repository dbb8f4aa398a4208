//! Backups, behind one interface: [`Backend`]. Each backup method is a
//! module that implements it:
//! - [`archives`]: rescue's own archives (pax tar + zstd) at a destination
//!   URL (`file://`, `nfs://`, `cifs://`, `usb://`, `iso://`; [`location`]);
//! - [`rsync`]: a file tree on an rsync server or over ssh;
//! - [`bacula`]: a Bacula or Bareos director holds the data and restores it;
//! - [`s3`]: rescue's archives as objects in S3-compatible storage (`s3://`).
//!
//! Every operation takes the layout descriptor when there is one: it names
//! the host (the per-host directory of archives) and the filesystems to back
//! up. A director knows its client by its own config and needs none.
//!
//! [`open`] makes the backend from the config (`backup.method`,
//! `backup.url`) and is the only place that looks at either: the workflows
//! ask the backend and never branch on the method. A new method is a module
//! with a type that implements [`Backend`] and one arm in [`configured`];
//! docs/archive.md ("Backends") says how.

pub mod archives;
pub mod bacula;
pub mod chain;
pub mod cleanup;
pub mod config;
pub mod location;
pub mod rsync;
pub mod s3;
pub mod selfserved;
pub mod snapshot;

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::archive::age::IdentitySource;
use crate::archive::{CreateReport, ExtractReport};
use crate::layout::{BackupRecord, Layout};
use crate::needs::Needs;
use crate::util::human_bytes;

pub use archives::{list_backups, write_archive_file};
pub use config::{BackupConfig, BackupMethod};
pub use location::{Location, Opened};

/// One backup method: where the data of this system goes, and how it
/// comes back. Made by [`open`] (or [`configured`]) from the config.
pub trait Backend {
    /// Where the data is, in the user's words: the URL, or the director and client.
    fn describe(&self) -> String;
    /// Whether the backup holds the mounts the descriptor records (rescue
    /// reads them itself), so that a mount left out of the descriptor is a
    /// gap in it. A director backs up its own fileset instead.
    fn follows_the_descriptor(&self) -> bool;
    /// The local disk that holds the backup (a USB disk): it is left out of
    /// the captured layout and never recovered onto.
    fn local_disk(&self) -> Option<String> {
        None
    }
    /// Whether the backup travels inside the rescue ISO (`iso://`), which
    /// must then be built.
    fn inside_the_iso(&self) -> bool {
        false
    }
    /// Whether this method makes incremental chains of archives
    /// (`--level incremental`, `backup.full-every`); [`for_backup`] asks it
    /// before any backup work or connection.
    fn chains(&self) -> Chains;
    /// Back up `set`. Retention ([`Backend::keep`]) is applied by [`run`].
    fn backup(&self, set: &BackupSet) -> Result<Backed>;
    /// Verify phase: the backup `pick` names can be restored (reachable,
    /// present, and with `opts.verify` read to its end), before any disk is
    /// touched. Writes nothing anywhere.
    fn check(&self, layout: Option<&Layout>, pick: &Pick, opts: &CheckOptions) -> Result<BackupUsed>;
    /// Restore the backup `pick` names (the newest by default) into the
    /// mounted target root.
    fn restore(&self, layout: Option<&Layout>, pick: &Pick, target: &Path, opts: &RestoreOptions) -> Result<Restored>;
    /// The backups of the host `layout` describes, newest first.
    fn list(&self, layout: Option<&Layout>) -> Result<Vec<String>>;
    /// Retention: delete what `backup.keep` no longer keeps; what was deleted.
    fn keep(&self, layout: Option<&Layout>) -> Result<Vec<String>>;
    /// The programs and kernel modules the rescue system needs to restore.
    fn rescue_needs(&self) -> Needs;
    /// The files and settings the rescue image needs besides programs.
    fn image_parts(&self) -> Result<ImageParts>;
    /// The settings `rescue dump` shows (secrets masked), when there are
    /// more than the config says.
    fn settings(&self) -> Option<Settings>;
}

/// The backend of `cfg` restoring from or backing up to `url` (`--url`),
/// else `backup.url`, else the location the descriptor records
/// (`recorded`). `None` when the method needs a URL and none is known.
pub fn configured(cfg: &BackupConfig, url: Option<&str>, recorded: Option<&str>) -> Result<Option<Box<dyn Backend>>> {
    match cfg.method {
        BackupMethod::Bacula | BackupMethod::Bareos => {
            if url.is_some() {
                crate::bail_input!(
                    "--url and --archive name rescue's own archives; with backup.method = \"{}\" the director's jobs hold it and the director \
                     restores the data (choose the backup with --restore-jobid or --restore-before)",
                    cfg.method.name()
                );
            }
            Ok(Some(Box::new(bacula::DirectorBackend::new(cfg))))
        }
        BackupMethod::Archive => {
            let Some(url) = url.or(cfg.url.as_deref()).or(recorded.filter(|u| !u.is_empty())) else { return Ok(None) };
            Ok(Some(match Location::parse(url)? {
                Location::Rsync(spec) => {
                    if cfg.encrypt.load()?.is_some() {
                        crate::bail_input!(
                            "backup.encrypt is set, but {url} is an rsync destination: rsync copies files as they are and cannot encrypt them. \
                             Use an archive destination (a directory, nfs://, cifs://, usb://, iso://, s3://) for encrypted backups, or remove [backup.encrypt]"
                        );
                    }
                    Box::new(rsync::RsyncBackend::new(url, &spec)) as Box<dyn Backend>
                }
                #[cfg(feature = "s3")]
                Location::S3(bucket) => Box::new(s3::S3Backend::new(url, bucket, cfg.clone())),
                #[cfg(not(feature = "s3"))]
                Location::S3(_) => crate::bail_input!(
                    "{url} is object storage, but this rescue was built without S3 support (cargo feature `s3`): \
                     use a build with the default features, or another backup.url"
                ),
                loc => Box::new(archives::Archives::new(url, loc, cfg.clone())),
            }))
        }
    }
}

/// [`configured`] for a backup run: the destination must be known.
pub fn open(cfg: &BackupConfig, url: Option<&str>) -> Result<Box<dyn Backend>> {
    configured(cfg, url, None)?.ok_or_else(|| {
        crate::error::input_error("no backup destination: set backup.url in the config (e.g. \"iso:///backup\" or \"nfs://nas/backups\") or pass --url")
    })
}

/// [`open`] for a backup run at `level` (`--level`; `None`: `backup.full-every`
/// decides): refused, before anything is read or connected to, when it asks
/// for an incremental chain the method does not make ([`Backend::chains`]).
pub fn for_backup(cfg: &BackupConfig, url: Option<&str>, level: Option<chain::Level>) -> Result<Box<dyn Backend>> {
    let backend = open(cfg, url)?;
    let Chains::NotMade { method, instead } = backend.chains() else { return Ok(backend) };
    let asked = match level {
        Some(chain::Level::Incremental) => "--level incremental".to_string(),
        None if cfg.full_every > 1 => format!("backup.full-every = {}", cfg.full_every),
        _ => return Ok(backend),
    };
    crate::bail_input!(
        "{asked} asks for an incremental chain, but {method} ({}) makes only full backups: {instead}. Nothing was backed up. \
         Leave --level out and set backup.full-every = 1 for this destination, or back up to rescue's archives in a directory, \
         nfs://, cifs://, usb:// or iso://, which make chains",
        backend.describe()
    );
}

/// Whether a backup method makes incremental chains ([`Backend::chains`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chains {
    /// `--level` and `backup.full-every` apply (rescue's archives at a destination).
    Made,
    /// Every backup is a full one.
    NotMade {
        /// The method in the user's words (`the S3 method`).
        method: String,
        /// Why, and what does the work of incrementals there.
        instead: &'static str,
    },
}

/// [`configured`] for a recovery: `--url`, `backup.url`, or the descriptor's.
pub fn for_recovery(cfg: &BackupConfig, url: Option<&str>, layout: &Layout) -> Result<Box<dyn Backend>> {
    configured(cfg, url, recorded_url(layout))?.ok_or_else(|| {
        crate::error::input_error(
            "no backup location: set backup.url in the config (/etc/rescue/rescue.toml in the rescue image), \
             or pass --url URL; to recreate only the disks use `rescue recover --layout-only`",
        )
    })
}

/// The backup location the descriptor records (`rescue mkbackup` notes it).
pub fn recorded_url(layout: &Layout) -> Option<&str> {
    layout.backup.as_ref().map(|b| b.url.as_str()).filter(|u| !u.is_empty())
}

/// What restoring `layout` needs to reach its backup: nothing when no
/// backup is configured (`--url` names it at recovery time).
pub fn rescue_needs_of(cfg: &BackupConfig, layout: &Layout) -> Needs {
    configured(cfg, None, recorded_url(layout)).ok().flatten().map(|b| b.rescue_needs()).unwrap_or_default()
}

/// Back up `set` with `backend`, then apply its retention.
pub fn run(backend: &dyn Backend, set: &BackupSet) -> Result<Backed> {
    let done = backend.backup(set)?;
    backend.keep(set.layout)?;
    Ok(done)
}

/// Which backup to restore: the newest, unless one is named. Each backend
/// refuses what does not apply to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Pick {
    /// An archive file in the host's directory (`--archive`).
    pub archive: Option<String>,
    /// Exactly this director job (`--restore-jobid`).
    pub jobid: Option<u64>,
    /// The most recent backup before this date, `YYYY-MM-DD[ HH:MM[:SS]]` (`--restore-before`).
    pub before: Option<String>,
}

impl Pick {
    /// Refuse `--restore-jobid`/`--restore-before` for a method without jobs.
    pub fn no_jobs(&self, method: &str) -> Result<()> {
        if self.jobid.is_some() || self.before.is_some() {
            crate::bail_input!(
                "--restore-jobid/--restore-before choose a backup server's job; this config restores {method} (backup.method = \"archive\"); \
                 set backup.method = \"bacula\" or \"bareos\" to restore through a director"
            );
        }
        Ok(())
    }
}

/// The person at the console, asked for what the configuration does not
/// give (the S3 read key). Workflows implement it; a backend gets none when
/// nobody can answer (unattended, no terminal) and then fails with what to
/// configure.
pub trait Ask {
    /// One line, echoed.
    fn line(&self, prompt: &str) -> Result<String>;
    /// One line, not echoed: a secret, which never reaches a log or an error.
    fn secret(&self, prompt: &str) -> Result<String>;
}

/// Options of the verify phase.
#[derive(Clone, Copy)]
pub struct CheckOptions<'a> {
    /// Read the whole backup and check it against its manifest (`recover.verify-archive`).
    pub verify: bool,
    pub progress: bool,
    /// Opens an encrypted (age) archive: a wrong or missing identity fails the check.
    pub keys: &'a dyn IdentitySource,
    /// Who to ask for a missing credential; `None`: nobody.
    pub ask: Option<&'a dyn Ask>,
}

/// Options of one restore.
#[derive(Clone, Copy)]
pub struct RestoreOptions<'a> {
    pub progress: bool,
    /// Opens an encrypted (age) archive.
    pub keys: &'a dyn IdentitySource,
    /// Who to ask for a missing credential; `None`: nobody.
    pub ask: Option<&'a dyn Ask>,
}

/// What one backup run backs up: the recorded mounts, found under `root`.
#[derive(Debug, Clone)]
pub struct BackupSet<'a> {
    /// The descriptor whose mounts are backed up (a director needs none).
    pub layout: Option<&'a Layout>,
    /// Where the recorded mount points are found (`/` on the running system).
    pub root: PathBuf,
    /// The mounts to back up, a parent before what is mounted below it.
    pub mounts: Vec<String>,
    /// Paths under `root` never backed up: excluded mounts, rescue's own log.
    pub exclude_paths: Vec<PathBuf>,
    /// Name patterns never backed up (`backup.exclude`).
    pub patterns: Vec<String>,
    /// rescue's log under `root`: it grows while being read.
    pub log_file: PathBuf,
    pub progress: bool,
    /// `--level`; `None` follows `backup.full-every`.
    pub level: Option<chain::Level>,
    /// Where the state of incremental chains is kept (`STATE_DIR`); without
    /// it every archive is a full one outside any chain.
    pub state_dir: Option<PathBuf>,
}

impl<'a> BackupSet<'a> {
    /// The mounts `layout` records (minus `exclude_mounts`: `capture.exclude-mounts`),
    /// under `root`, without rescue's log in `log_dir`.
    pub fn new(layout: Option<&'a Layout>, cfg: &BackupConfig, exclude_mounts: &[String], log_dir: &Path, root: &Path, progress: bool) -> BackupSet<'a> {
        let mounts = layout.map(|l| backup_mounts(l, exclude_mounts)).unwrap_or_default();
        let mut exclude_paths: Vec<PathBuf> = layout.iter().flat_map(|l| &l.excluded).map(|e| under_root(root, &e.path)).collect();
        exclude_paths.extend(exclude_mounts.iter().map(|e| under_root(root, e)));
        // Our own log grows while we read it (every command is logged): archiving it
        // would only ever be a "file changed" warning. The recovered system gets its
        // recovery log in the same directory.
        if root == Path::new("/") {
            exclude_paths.push(log_dir.join(crate::logging::LOG_FILE));
        }
        BackupSet {
            layout,
            root: root.to_path_buf(),
            mounts,
            exclude_paths,
            patterns: cfg.exclude.clone(),
            log_file: under_root(root, &log_dir.join(crate::logging::LOG_FILE).to_string_lossy()),
            progress,
            level: None,
            state_dir: None,
        }
    }

    /// Make archives of incremental chains: `level` (`--level`, else
    /// `backup.full-every` decides), their state kept under `state_dir`.
    pub fn with_chain(mut self, level: Option<chain::Level>, state_dir: &Path) -> BackupSet<'a> {
        self.level = level;
        self.state_dir = Some(state_dir.to_path_buf());
        self
    }

    /// The descriptor, and at least one mount it records to back up.
    pub fn recorded(&self) -> Result<&'a Layout> {
        let layout = descriptor(self.layout)?;
        if self.mounts.is_empty() {
            crate::bail_input!("the descriptor records no mounted filesystems to back up");
        }
        Ok(layout)
    }
}

/// The descriptor a method needs to name the host and its filesystems.
pub fn descriptor(layout: Option<&Layout>) -> Result<&Layout> {
    layout.ok_or_else(|| {
        crate::error::input_error(
            "this backup method needs the layout descriptor (it names the host whose backup this is and its filesystems): \
             run `rescue savelayout` first, or pass --layout FILE",
        )
    })
}

/// What a backup run made.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
// One per backup run: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Backed {
    /// rescue read the recorded mounts itself into an archive (or a tree).
    Archive(BackupReport),
    /// A director's job holds the data.
    Job(Box<bacula::MkbackupReport>),
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    /// The destination as the user wrote it.
    pub url: String,
    /// The finished archive (path as seen while the destination was mounted), or the rsync target.
    pub archive: String,
    pub create: CreateReport,
    /// Mount points backed up, as recorded.
    pub mounts: Vec<String>,
    /// Where the archive stands in its incremental chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<chain::Link>,
}

impl Backed {
    /// What the descriptor records about this backup, so that `recover`
    /// finds it again; `None` when the director's catalog knows it.
    pub fn record(&self, layout: &Layout) -> Option<BackupRecord> {
        let Backed::Archive(r) = self else { return None };
        let archive = if r.archive.ends_with('/') {
            String::new()
        } else {
            Path::new(&r.archive).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
        };
        Some(BackupRecord {
            url: r.url.clone(),
            archive,
            created: crate::util::now_rfc3339(),
            data_bytes: r.create.bytes,
            files: r.create.files,
            mounts: crate::layout::recovery::backed_up_mounts(layout, &r.mounts),
            level: r.link.as_ref().map_or(0, |l| l.level),
            chain: r.link.as_ref().map(|l| l.chain.clone()).unwrap_or_default(),
            parent: r.link.as_ref().and_then(|l| l.parent.clone()).unwrap_or_default(),
        })
    }

    /// Log what was backed up; the exit code (1 = completed with warnings).
    pub fn print(&self) -> i32 {
        match self {
            Backed::Archive(r) => {
                tracing::info!("backed up {} to {}", r.mounts.join(", "), r.url);
                print_create_report(&r.create, Path::new(&r.archive))
            }
            Backed::Job(r) => r.print(),
        }
    }

    /// Where this backup is now: the archive file (or rsync target), or the director's job.
    pub fn location(&self) -> String {
        match self {
            Backed::Archive(r) => r.archive.clone(),
            Backed::Job(r) => format!("job {} on the director {}", r.job.jobid, r.director),
        }
    }

    /// One line for a summary: what holds the backup now.
    pub fn line(&self) -> String {
        match self {
            Backed::Archive(r) => {
                let snaps =
                    if r.create.from_snapshots.is_empty() { String::new() } else { format!(", {} read from snapshots", r.create.from_snapshots.join(" ")) };
                format!("{} ({} files, {}{snaps})", r.archive, r.create.files, human_bytes(r.create.bytes))
            }
            Backed::Job(r) => format!("job {} on the director {} ({} files, {})", r.job.jobid, r.director, r.job.files, human_bytes(r.job.bytes)),
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Restored {
    /// rescue wrote the files itself (from an archive or a tree).
    Files(ExtractReport),
    /// A director's restore job wrote them.
    Job(Box<bacula::RestoreReport>),
}

impl Restored {
    /// The counts and problems, in the terms of an extraction.
    pub fn files(&self) -> ExtractReport {
        match self {
            Restored::Files(r) => r.clone(),
            // The director checks its own volumes: no manifest to check here.
            Restored::Job(r) => {
                ExtractReport { entries: r.job.files, bytes: r.job.bytes, warnings: r.warnings.clone(), manifest_checked: true, ..Default::default() }
            }
        }
    }

    /// Log the summary; the exit code (1 = completed with warnings).
    pub fn print(&self, target: &Path) -> i32 {
        match self {
            Restored::Files(r) => print_extract_report(r, target),
            Restored::Job(r) => r.print(),
        }
    }
}

/// What the verify phase found about the backup.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct BackupUsed {
    pub url: String,
    /// The archive file name (none for rsync), or the director's job.
    pub archive: Option<String>,
    /// Its size in bytes.
    pub archive_bytes: Option<u64>,
    /// Read to its end and every file checked against its manifest.
    pub verified: bool,
    /// File data bytes the verification read.
    pub data_bytes: Option<u64>,
    /// Regular files the archive's manifest lists.
    pub files: Option<u64>,
    /// The local device holding the backup (a USB disk, the rescue medium): never a target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<PathBuf>,
    /// What the director said (its greeting, the backup it would restore).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub director: Option<bacula::Preflight>,
    /// The paths the backup holds (relative to the recovered root), when
    /// the verification read them: what finalize will find there.
    #[serde(skip)]
    pub listing: Option<HashSet<String>>,
    /// The backup the restore must take: the one checked here.
    #[serde(skip)]
    pub pick: Pick,
    /// The backup could have been read before any disk was touched but was
    /// not (`recover.verify-archive = false`).
    #[serde(skip)]
    pub unread: bool,
}

impl BackupUsed {
    /// Found at `url`, nothing more known yet.
    pub fn at(url: &str, pick: &Pick) -> BackupUsed {
        BackupUsed {
            url: url.to_string(),
            archive: None,
            archive_bytes: None,
            verified: false,
            data_bytes: None,
            files: None,
            device: None,
            director: None,
            listing: None,
            pick: pick.clone(),
            unread: false,
        }
    }
}

impl fmt::Display for BackupUsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "backup {}", self.url)?;
        if let Some(a) = &self.archive {
            write!(f, " {a}")?;
        }
        if let Some(b) = self.archive_bytes {
            write!(f, " ({})", human_bytes(b))?;
        }
        if self.verified {
            write!(f, ", verified")?;
        }
        if let Some(n) = self.files {
            write!(f, ", {n} files")?;
        }
        Ok(())
    }
}

/// Files and settings a backend adds to the rescue image.
#[derive(Debug, Default)]
pub struct ImageParts {
    /// Host files or directories copied to the same path.
    pub host_paths: Vec<PathBuf>,
    /// Empty directories a daemon needs (its working directory).
    pub dirs: Vec<PathBuf>,
    /// Generated files: path in the image, content, mode.
    pub files: Vec<(PathBuf, Vec<u8>, u32)>,
    /// `KEY=value` lines for /etc/rescue/image.env.
    pub env: Vec<(&'static str, String)>,
    /// Secrets that go in on purpose (listed in the manifest).
    pub secrets: Vec<String>,
}

/// A backend's settings as `rescue dump` shows them (secrets masked);
/// serialized as one object: `what` and each value by its name.
#[derive(Debug, Clone)]
pub struct Settings {
    /// What it is (`Bacula director`).
    pub what: String,
    /// Name and value, in order.
    pub values: Vec<(String, String)>,
}

impl Serialize for Settings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.values.len() + 1))?;
        m.serialize_entry("what", &self.what)?;
        for (k, v) in &self.values {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl fmt::Display for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.what)?;
        let v: Vec<String> = self.values.iter().map(|(k, v)| format!("{k} {v}")).collect();
        f.write_str(&v.join(", "))
    }
}

/// The mounts to back up: the descriptor's mounts minus excluded ones
/// (`exclude_mounts`: `capture.exclude-mounts`), sorted so a parent comes
/// before what is mounted below it.
pub fn backup_mounts(layout: &Layout, exclude_mounts: &[String]) -> Vec<String> {
    let scope = crate::layout::recovery::MountScope::new(exclude_mounts);
    let mut v: Vec<String> = layout
        .mounts
        .iter()
        .map(|m| m.path.clone())
        .filter(|p| !layout.excluded.iter().any(|e| &e.path == p))
        .filter(|p| !scope.is_configured_out(p))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Where the writable btrfs subvolumes nested in the backed-up `mounts` (and not
/// mounted themselves) appear, e.g. `/srv/www` for `@/srv/www` under `/` = `@`.
/// rsync's one-file-system stops at them (each has its own device number), so
/// the rsync method copies each as a source of its own; the archive walk enters
/// them itself. Snapshots and read-only subvolumes are left out.
pub fn nested_subvolume_dirs(layout: &Layout, mounts: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for m in layout.mounts.iter().filter(|m| mounts.contains(&m.path)) {
        let Some(b) = layout.filesystem_on(&m.device).and_then(|f| f.btrfs.as_ref()) else { continue };
        let base = m.subvol.as_deref().unwrap_or("").trim_matches('/');
        let mounted = |p: &str| layout.mounts.iter().any(|o| o.device == m.device && o.subvol.as_deref().unwrap_or("").trim_matches('/') == p);
        for s in b.subvolumes.iter().filter(|s| !s.snapshot && !s.readonly) {
            let p = s.path.trim_matches('/');
            let rest = if base.is_empty() { Some(p) } else { p.strip_prefix(base).and_then(|r| r.strip_prefix('/')) };
            if let Some(rest) = rest.filter(|r| !r.is_empty() && !mounted(p)) {
                out.push(format!("{}/{rest}", m.path.trim_end_matches('/')));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `mount` (a recorded mount point) under `root`.
pub fn under_root(root: &Path, mount: &str) -> PathBuf {
    let rel = mount.trim_start_matches('/');
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

/// The per-host directory at the destination.
pub fn host_dir_name(layout: &Layout) -> String {
    let h = layout.host.hostname.trim();
    if !crate::layout::is_valid_hostname(h) {
        "unknown-host".into()
    } else {
        h.to_string()
    }
}

/// Print the end-of-run summary of a create; the exit code (1 = completed
/// with warnings, 4 = files changed while read).
pub fn print_create_report(r: &CreateReport, dest: &Path) -> i32 {
    tracing::info!(
        "archived {} files, {} directories, {} symlinks, {} hard links, {} special files, {} of data into {}",
        r.files,
        r.dirs,
        r.symlinks,
        r.hardlinks,
        r.specials,
        human_bytes(r.bytes),
        dest.display()
    );
    for n in &r.notes {
        tracing::debug!("note: {n}");
    }
    if !r.from_snapshots.is_empty() {
        tracing::info!("read from read-only snapshots: {}", r.from_snapshots.join(", "));
    }
    if r.warnings.is_empty() {
        return crate::error::EXIT_OK;
    }
    for w in &r.warnings {
        tracing::warn!("{w}");
    }
    tracing::warn!("completed with {} warnings (listed above); the archive is complete otherwise", r.warnings.len());
    if r.changed.is_empty() {
        return crate::error::EXIT_CHANGED;
    }
    tracing::warn!(
        "{} files changed while they were read ({}); their copies may be inconsistent: read them from a \
         snapshot (backup.snapshot = \"auto\": btrfs or LVM) or quiesce their writers in a pre-backup hook ([hooks] in the config)",
        r.changed.len(),
        r.changed.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
    );
    crate::error::EXIT_CHANGED_WHILE_READ
}

/// Print the summary of an extract; the exit code (1 = completed with warnings).
pub fn print_extract_report(r: &ExtractReport, target: &Path) -> i32 {
    tracing::info!("restored {} entries, {} of data into {}", r.entries, human_bytes(r.bytes), target.display());
    if r.made_relative > 0 {
        tracing::info!("{} absolute member names were restored relative to {}", r.made_relative, target.display());
    }
    if r.outward_symlinks > 0 {
        tracing::info!("{} symlinks point to absolute paths or outside the tree; restored as they are (extraction never follows them)", r.outward_symlinks);
    }
    let mut problems = 0;
    for s in &r.refused {
        tracing::warn!("refused member {s}");
        problems += 1;
    }
    for s in &r.warnings {
        tracing::warn!("{s}");
        problems += 1;
    }
    for s in &r.damaged {
        tracing::warn!("damaged: {s} (its checksum differs from the manifest)");
        problems += 1;
    }
    if !r.manifest_checked {
        tracing::warn!("the archive has no manifest: file checksums were not checked");
    }
    if problems == 0 {
        crate::error::EXIT_OK
    } else {
        tracing::warn!("completed with {problems} warnings (listed above)");
        crate::error::EXIT_CHANGED
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn backup_config_keys() {
        let c = Config::from_toml(
            r#"
            [backup]
            url = "nfs://nas/backups"
            compress = "gzip"
            level = 9
            keep = 3
            full-every = 7
            one-file-system = true
            mount-options = "vers=4.2"
            timeout = 5
            iso-dir = "/tmp/iso"
            exclude = ["*.tmp"]
            "#,
        )
        .unwrap();
        assert_eq!(c.backup.compress, crate::archive::Compression::Gzip);
        assert_eq!(c.backup.level, Some(9));
        assert_eq!(c.backup.keep, 3);
        assert_eq!(c.backup.full_every, 7);
        assert_eq!(Config::default().backup.full_every, 1, "every backup full unless asked");
        assert!(c.backup.one_file_system);
        assert_eq!(c.backup.timeout, 5);
        assert!(Config::from_toml("[backup]\ncompress = \"lz4\"\n").is_err());
    }

    fn layout(backup_url: Option<&str>) -> Layout {
        let mut l = Layout::from_toml(include_str!("../../tests/fixtures/recover/gpt-ext4.toml")).unwrap();
        l.backup = backup_url.map(|u| BackupRecord { url: u.into(), ..Default::default() });
        l
    }

    #[test]
    fn the_backend_comes_from_the_flag_then_the_config_then_the_descriptor() {
        let mut c = Config::default();
        let l = layout(Some("iso:///backup"));
        assert_eq!(for_recovery(&c.backup, None, &l).unwrap().describe(), "iso:///backup");
        c.backup.url = Some("nfs://nas/b".into());
        assert_eq!(for_recovery(&c.backup, None, &l).unwrap().describe(), "nfs://nas/b");
        assert_eq!(for_recovery(&c.backup, Some("file:///srv/b"), &l).unwrap().describe(), "file:///srv/b");
        let rsync = for_recovery(&c.backup, Some("h:/srv/b"), &l).unwrap();
        assert_eq!(rsync.describe(), "h:/srv/b");
        let e = for_recovery(&Config::default().backup, None, &layout(None)).err().unwrap();
        assert!(format!("{e:#}").contains("no backup location"), "{e:#}");
        assert_eq!(crate::error::exit_code_for(&e), 2);
        let e = open(&Config::default().backup, None).err().unwrap();
        assert!(format!("{e:#}").contains("no backup destination"), "{e:#}");
        // A director: --url is refused, backup.url and the descriptor's are not its business.
        c.backup.method = BackupMethod::Bacula;
        assert!(for_recovery(&c.backup, None, &l).unwrap().describe().contains("Bacula director"));
        let e = for_recovery(&c.backup, Some("file:///x"), &l).err().unwrap();
        assert!(format!("{e:#}").contains("the director restores the data"), "{e:#}");
    }

    #[test]
    fn the_record_of_a_backup_names_its_level_chain_and_parent() {
        let l = layout(None);
        let report = |link| BackupReport {
            url: "file:///b".into(),
            archive: "/b/h/backup-2.tar.zst".into(),
            create: CreateReport::default(),
            mounts: vec!["/".into()],
            link,
        };
        let link = chain::Link { level: 2, chain: "backup-0.tar.zst".into(), parent: Some("backup-1.tar.zst".into()) };
        let r = Backed::Archive(report(Some(link))).record(&l).unwrap();
        assert_eq!((r.archive.as_str(), r.level, r.chain.as_str(), r.parent.as_str()), ("backup-2.tar.zst", 2, "backup-0.tar.zst", "backup-1.tar.zst"));
        let text = toml::to_string(&r).unwrap();
        assert!(text.contains("level = 2") && text.contains("parent = \"backup-1.tar.zst\""), "{text}");
        let plain = Backed::Archive(report(None)).record(&l).unwrap();
        assert_eq!((plain.level, plain.chain.as_str()), (0, ""));
        assert!(!toml::to_string(&plain).unwrap().contains("level"), "a full backup outside a chain records as before");
    }

    #[test]
    fn encryption_with_the_rsync_method_is_refused() {
        let mut c = Config::default();
        c.backup.encrypt.recipients = vec!["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p".into()];
        for url in ["h:/srv/b", "rsync://h/m/b"] {
            let e = open(&c.backup, Some(url)).err().unwrap();
            assert_eq!(crate::error::exit_code_for(&e), 2);
            assert!(format!("{e:#}").contains("rsync copies files as they are and cannot encrypt"), "{e:#}");
        }
        assert!(open(&c.backup, Some("file:///srv/b")).is_ok());
    }

    #[test]
    fn methods_without_chains_refuse_incrementals_and_full_every_before_connecting() {
        use chain::Level::{Full, Incremental};
        let mut bacula = Config::default().backup;
        bacula.method = BackupMethod::Bacula;
        bacula.server.address = Some("nohost.invalid".into());
        let archive = Config::default().backup;
        // No server exists at any of these: the refusal comes before any connection.
        let without: &[(&BackupConfig, Option<&str>, &str)] = &[
            (&archive, Some("nohost.invalid:/srv/b"), "the rsync method"),
            (&archive, Some("s3://bucket/prefix"), "the S3 method"),
            (&bacula, None, "a Bacula director"),
        ];
        for (cfg, url, method) in without {
            let e = for_backup(cfg, *url, Some(Incremental)).err().unwrap();
            let text = format!("{e:#}");
            assert!(text.starts_with("--level incremental asks for an incremental chain") && text.contains(method), "{text}");
            assert!(text.contains("makes only full backups") && text.contains("Nothing was backed up"), "{text}");
            assert_eq!(crate::error::exit_code_for(&e), 2);
            let mut every = (*cfg).clone();
            every.full_every = 7;
            let e = for_backup(&every, *url, None).err().unwrap();
            assert!(format!("{e:#}").starts_with("backup.full-every = 7 asks for an incremental chain"), "{e:#}");
            // A full backup is what these methods make, asked or by default.
            assert!(for_backup(&every, *url, Some(Full)).is_ok());
            assert!(for_backup(cfg, *url, None).is_ok());
        }
        for url in ["file:///srv/b", "nfs://nas/b", "usb://RESCUEBAK", "iso:///backup"] {
            let b = open(&archive, Some(url)).unwrap();
            assert_eq!(b.chains(), Chains::Made, "{url}");
            assert!(for_backup(&archive, Some(url), Some(Incremental)).is_ok(), "{url}");
        }
    }

    #[test]
    fn each_backend_refuses_a_pick_it_cannot_take() {
        let l = layout(None);
        let mut c = Config::default();
        let d = tempfile::tempdir().unwrap();
        let url = format!("file://{}", d.path().display());
        let opts = CheckOptions { verify: false, progress: false, keys: &crate::archive::age::NoIdentity, ask: None };
        let job = Pick { jobid: Some(7), ..Default::default() };
        let e = open(&c.backup, Some(&url)).unwrap().check(Some(&l), &job, &opts).err().unwrap();
        assert!(format!("{e:#}").contains("--restore-jobid"), "{e:#}");
        let e = open(&c.backup, Some("h:/srv/b"))
            .unwrap()
            .restore(
                Some(&l),
                &Pick { archive: Some("x".into()), ..Default::default() },
                d.path(),
                &RestoreOptions { progress: false, keys: &crate::archive::age::NoIdentity, ask: None },
            )
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("rsync destination"), "{e:#}");
        c.backup.method = BackupMethod::Bareos;
        let e = open(&c.backup, None).unwrap().check(Some(&l), &Pick { archive: Some("x".into()), ..Default::default() }, &opts).err().unwrap();
        assert!(format!("{e:#}").contains("--archive"), "{e:#}");
    }

    #[test]
    fn subvolumes_nested_in_a_mount_are_found() {
        let layout = Layout::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/layouts/btrfs-subvolumes.toml"))).unwrap();
        let mounts = backup_mounts(&layout, &[]);
        assert_eq!(mounts, vec!["/", "/home", "/var/log"]);
        // @/srv/www is nested in @ (mounted on /) and not mounted itself.
        assert_eq!(nested_subvolume_dirs(&layout, &mounts), vec!["/srv/www"]);
        let mut l = layout.clone();
        l.mounts[1].subvol = Some("@/srv/www".into());
        assert_eq!(nested_subvolume_dirs(&l, &mounts), Vec::<String>::new(), "a mounted one is a mount of its own");
        let mut l = layout.clone();
        let b = l.filesystems.iter_mut().find_map(|f| f.btrfs.as_mut()).unwrap();
        b.subvolumes.iter_mut().find(|s| s.path == "@/srv/www").unwrap().snapshot = true;
        assert_eq!(nested_subvolume_dirs(&l, &mounts), Vec::<String>::new(), "snapshots are left out");
    }

    #[test]
    fn mounts_to_back_up_skip_excluded_ones() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/archive/layout.toml")).unwrap();
        let layout = Layout::from_toml(&text).unwrap();
        assert_eq!(backup_mounts(&layout, &[]), vec!["/", "/boot"]);
        assert_eq!(backup_mounts(&layout, &["/boot".into()]), vec!["/"]);
    }
}
