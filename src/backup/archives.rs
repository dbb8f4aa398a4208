//! The archive method: rescue's own archives (pax tar + zstd, with a
//! manifest) at a destination URL ([`Location`]: a local directory, NFS,
//! CIFS, a USB disk, or inside the rescue ISO), one directory per host,
//! `backup-YYYYMMDD-HHMMSS-UUUUUU.tar.zst` (UTC, to the microsecond) in it: full archives, or incremental
//! chains ([`super::chain`]) restored, verified and kept whole.

use std::collections::{BTreeSet, HashSet};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::chain;
use super::{
    Backed, Backend, BackupConfig, BackupReport, BackupSet, BackupUsed, Chains, CheckOptions, ImageParts, Location, Opened, Pick, RestoreOptions, Restored,
    Settings,
};
use crate::archive::age::IdentitySource;
use crate::archive::{self, CreateOptions, CreateReport, ExtractOptions, ExtractReport, Source};
use crate::error::input_error;
use crate::layout::Layout;
use crate::needs::Needs;
use crate::util::human_bytes;

/// File names of backups: `backup-YYYYMMDD-HHMMSS-UUUUUU.tar.zst` in the host's directory.
pub(super) const BACKUP_PREFIX: &str = "backup-";

/// rescue's archives at one destination.
pub struct Archives {
    url: String,
    location: Location,
    cfg: BackupConfig,
}

impl Archives {
    pub fn new(url: &str, location: Location, cfg: BackupConfig) -> Archives {
        Archives { url: url.to_string(), location, cfg }
    }

    /// The chain up to the archive `pick` names in the opened destination,
    /// else up to the newest; oldest first (a full backup alone is a chain
    /// of one).
    fn find(&self, opened: &Opened, layout: &Layout, pick: &Pick) -> Result<Vec<PathBuf>> {
        pick.no_jobs("rescue's archives")?;
        let last = find_archive(opened.dir(), &super::host_dir_name(layout), &self.url, pick.archive.as_deref())?;
        let dir = last.parent().unwrap_or(opened.dir());
        chain::chain_to(dir, &last)
    }
}

impl Backend for Archives {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn follows_the_descriptor(&self) -> bool {
        true
    }

    fn local_disk(&self) -> Option<String> {
        match &self.location {
            Location::Usb { device, label, .. } => {
                let dev = device.clone().or_else(|| label.as_ref().map(|l| PathBuf::from(format!("/dev/disk/by-label/{l}"))))?;
                crate::util::disk_of_device(&dev)
            }
            _ => None,
        }
    }

    fn inside_the_iso(&self) -> bool {
        matches!(self.location, Location::Iso { .. })
    }

    fn chains(&self) -> Chains {
        Chains::Made
    }

    fn backup(&self, set: &BackupSet) -> Result<Backed> {
        let layout = set.recorded()?;
        let opened = Opened::open(&self.location, &self.cfg, true)?;
        let host = super::host_dir_name(layout);
        let dir = opened.dir().join(&host);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating the backup directory {}", dir.display()))?;
        let mut job = archive_job(set, layout, &self.cfg, Some(opened.dir()))?;
        let dest = dir.join(&job.name);
        let state = set.state_dir.as_deref().map(|d| chain::State::new(d, &self.url, &host));
        let planned = state.as_ref().map(|s| s.plan(set.level, self.cfg.full_every, &dir, &job.name)).transpose()?;
        let mut record = None;
        if let Some(p) = &planned {
            if p.link.level > 0 {
                tracing::info!("incremental backup, level {} of the chain started by {}", p.link.level, p.link.chain);
                // Its size is not the filesystems' size: no estimate, no space check from it.
                job.copts.expected_bytes = None;
            }
            job.copts.chain = Some(p.chain.clone());
            // The record goes first: an archive in place always has its own.
            // Created exclusively: a name taken already is refused, and only
            // a record this run made is removed with its archive when that
            // is not made (error, signal).
            chain::write_link(&dest, &p.link)?;
            record = Some(super::cleanup::register(super::cleanup::Undo::RemoveFile(chain::link_path(&dest)))?);
        }
        let create = job.report(write_archive_file(&job.sources, &dest, &job.copts)?);
        if let Some(r) = record {
            r.keep();
        }
        if let (Some(state), Some(p), Some(snapshot)) = (&state, &planned, &create.snapshot) {
            state.save(&job.name, &p.link, snapshot)?;
        }
        let link = planned.map(|p| p.link);
        Ok(Backed::Archive(BackupReport { url: self.url.clone(), archive: dest.display().to_string(), create, mounts: set.mounts.clone(), link }))
    }

    fn check(&self, layout: Option<&Layout>, pick: &Pick, opts: &CheckOptions) -> Result<BackupUsed> {
        pick.no_jobs("rescue's archives")?;
        let layout = super::descriptor(layout)?;
        let url = &self.url;
        let opened =
            Opened::open(&self.location, &self.cfg, false).with_context(|| format!("the backup location {url} is not reachable; nothing was written"))?;
        let links = self.find(&opened, layout, pick)?;
        let Some(last) = links.last() else { crate::bail_input!("no backup to restore at {url}; nothing was written") };
        let name = last.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if links.len() > 1 {
            tracing::info!("{name} is the last of a chain of {} archives: checking every one", links.len());
        }
        let mut size = 0;
        for file in &links {
            size += std::fs::metadata(file)
                .map_err(|e| input_error(format!("the backup archive {} cannot be read: {e}; nothing was written", file.display())))?
                .len();
        }
        if let Some(rec) = layout.backup.as_ref().filter(|r| !r.archive.is_empty() && r.archive != name) {
            tracing::info!("the descriptor records the backup {} ({}); restoring the newer {name}", rec.archive, rec.created);
        }
        let mut used = BackupUsed::at(url, &Pick { archive: Some(name.clone()), ..Pick::default() });
        used.archive = Some(name);
        used.archive_bytes = Some(size);
        used.device = opened.device();
        used.unread = !opts.verify;
        for file in &links {
            check_link(file, opts, &mut used)?;
        }
        Ok(used)
    }

    fn restore(&self, layout: Option<&Layout>, pick: &Pick, target: &Path, opts: &RestoreOptions) -> Result<Restored> {
        let layout = super::descriptor(layout)?;
        let opened = Opened::open(&self.location, &self.cfg, false)?;
        let links = self.find(&opened, layout, pick)?;
        let mut total: Option<ExtractReport> = None;
        for (i, file) in links.iter().enumerate() {
            tracing::info!("restoring {} into {}{}", file.display(), target.display(), chain_position(i, links.len()));
            let f = std::fs::File::open(file).with_context(|| format!("opening the backup {}", file.display()))?;
            let bytes = f.metadata().ok().map(|m| m.len());
            // The full archive only adds; each incremental then applies its
            // dumpdirs (deletions, renames).
            let eopts = ExtractOptions { target: target.to_path_buf(), progress: opts.progress, total_bytes: bytes, keep_manifest: false, incremental: i > 0 };
            let f = archive::age::open(f, file, opts.keys)?;
            let r = archive::extract(f, &eopts).with_context(|| format!("restoring {} into {}", file.display(), target.display()))?;
            total = Some(match total {
                None => r,
                Some(mut t) => {
                    t.add_part(r);
                    t
                }
            });
        }
        Ok(Restored::Files(total.unwrap_or_default()))
    }

    fn list(&self, layout: Option<&Layout>) -> Result<Vec<String>> {
        let host = super::host_dir_name(super::descriptor(layout)?);
        let opened = Opened::open(&self.location, &self.cfg, false)?;
        Ok(names(&list_backups(&opened.dir().join(host))?))
    }

    fn keep(&self, layout: Option<&Layout>) -> Result<Vec<String>> {
        let host = super::host_dir_name(super::descriptor(layout)?);
        let opened = Opened::open(&self.location, &self.cfg, true)?;
        prune(&opened.dir().join(host), self.cfg.keep)
    }

    fn rescue_needs(&self) -> Needs {
        self.location.rescue_needs(&self.url)
    }

    fn image_parts(&self) -> Result<ImageParts> {
        Ok(ImageParts::default())
    }

    fn settings(&self) -> Option<Settings> {
        None
    }
}

/// The verify phase for one archive of the chain: with `opts.verify` read
/// it to its end against its manifest (adding to `used`'s counts and
/// listing), else check that it starts with a readable member.
fn check_link(file: &Path, opts: &CheckOptions, used: &mut BackupUsed) -> Result<()> {
    if opts.verify {
        tracing::info!("verifying {} ({}) before touching any disk", file.display(), human_bytes(std::fs::metadata(file).map(|m| m.len()).unwrap_or(0)));
        let r = verify_archive(file, opts.keys, opts.progress).map_err(|e| {
            if crate::error::exit_code_for(&e) == crate::error::EXIT_INPUT {
                // A missing or wrong age identity: the archive may well be fine.
                return e.context(format!("the backup archive {} cannot be opened; nothing was written", file.display()));
            }
            anyhow::anyhow!(format!(
                "the backup archive {} is damaged: {e:#}. Nothing was written; restore another backup with --archive NAME \
                 or --url, or repair the backup location",
                file.display()
            ))
        })?;
        used.verified = true;
        // Across a chain: the data read and files listed by all its archives,
        // and every path any of them holds.
        used.data_bytes = Some(used.data_bytes.unwrap_or(0) + r.0);
        used.files = r.1.map(|n| n + used.files.unwrap_or(0));
        used.listing.get_or_insert_with(HashSet::new).extend(root_relative(r.2));
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        check_start(f, file, opts.keys)?;
    }
    Ok(())
}

/// How much of an archive's start [`check_start`] reads.
pub const START_BYTES: u64 = 1 << 20;

/// The one-pass check of a backup before any write: the first
/// [`START_BYTES`] of `input` (the whole object or only its start) decrypt
/// with the identity given, if encrypted, and hold a readable archive member.
pub fn check_start<R: std::io::Read + Send + 'static>(input: R, name: &Path, keys: &dyn archive::age::IdentitySource) -> Result<()> {
    let f = archive::age::open(input, name, keys)?;
    let mut out = Vec::new();
    // The start may end inside a member: what was listed before that counts.
    crate::archive::list(std::io::Read::take(f, START_BYTES), &mut out).ok();
    if out.is_empty() {
        crate::bail_input!("the backup archive {} does not start with a readable archive member; nothing was written", name.display());
    }
    Ok(())
}

/// ` (link N of M)` of a chain longer than one.
fn chain_position(i: usize, len: usize) -> String {
    if len > 1 {
        format!(" (link {} of {len} of the chain)", i + 1)
    } else {
        String::new()
    }
}

/// One archive to make of `set`: its sources, file name and options.
pub(super) struct ArchiveJob {
    pub sources: Vec<Source>,
    pub name: String,
    pub copts: CreateOptions,
    /// The snapshots some sources are read from: removed when the job is dropped.
    pub snapshots: super::snapshot::Snapshots,
}

impl ArchiveJob {
    /// `r`, the report of this job's archive, saying which mounts came from a snapshot.
    pub fn report(&self, mut r: CreateReport) -> CreateReport {
        r.from_snapshots = self.snapshots.mounts();
        r.notes.extend(self.snapshots.notes());
        r.notes.extend(self.snapshots.live.iter().map(|l| format!("read live: {l}")));
        r.warnings.extend(self.snapshots.problems());
        r
    }
}

/// The archive of `set` as every archive destination makes it; `backup_dir`
/// (where the backup goes, when it is a local directory) is never archived.
pub(super) fn archive_job(set: &BackupSet, layout: &Layout, cfg: &BackupConfig, backup_dir: Option<&Path>) -> Result<ArchiveJob> {
    let mut exclude_paths = set.exclude_paths.clone();
    // Never back up the backup, nor our own log: it grows while being read,
    // which would make every backup "completed with warnings".
    exclude_paths.extend(backup_dir.map(Path::to_path_buf));
    exclude_paths.push(set.log_file.clone());
    // A mount below another is archived as its own source, never twice
    // (on the live system one-file-system already stops there).
    exclude_paths.extend(set.mounts.iter().filter(|m| m.as_str() != "/").map(|m| super::under_root(&set.root, m)));
    let snapshots = super::snapshot::Snapshots::take(cfg.snapshot, cfg.snapshot_size, layout, &set.root, &set.mounts)?;
    // A snapshot is read in place of its mount: what is left out below the
    // mount is left out below the snapshot too, and so is the snapshot's own
    // (empty) directory.
    for m in snapshots.mounts() {
        let (live, Some(snap)) = (super::under_root(&set.root, &m), snapshots.read_from(&m)) else { continue };
        let below: Vec<PathBuf> =
            exclude_paths.iter().filter_map(|p| p.strip_prefix(&live).ok()).filter(|r| !r.as_os_str().is_empty()).map(|r| snap.join(r)).collect();
        exclude_paths.extend(below);
        exclude_paths.push(snap.join(super::snapshot::SNAPSHOT_DIR));
    }
    let sources: Vec<Source> = set
        .mounts
        .iter()
        .map(|m| Source {
            path: snapshots.read_from(m).map(Path::to_path_buf).unwrap_or_else(|| super::under_root(&set.root, m)),
            name: m.trim_start_matches('/').as_bytes().to_vec(),
        })
        .collect();
    // The data to back up, for the ETA and the space check: known when
    // every source is a mount point (a whole filesystem), as on a live system.
    let expected = expected_bytes(layout, &set.mounts, |m| {
        let p = super::under_root(&set.root, m);
        if p.exists() && crate::util::is_mount_root(&p) {
            used_bytes(&p)
        } else {
            None
        }
    });
    // To the microsecond: two backups started in the same second (a full one
    // and an incremental from a script) get two names; the chain record is
    // created exclusively ([`chain::write_link`]), so a name taken all the
    // same fails that backup instead of replacing the other.
    let stamp = time::OffsetDateTime::now_utc()
        .format(&time::macros::format_description!("[year][month][day]-[hour][minute][second]-[subsecond digits:6]"))
        .unwrap_or_else(|_| "now".into());
    let compression = cfg.compress;
    let encrypt = cfg.encrypt.load()?;
    let sealed = if encrypt.is_some() { archive::age::SUFFIX } else { "" };
    let name = format!("{BACKUP_PREFIX}{stamp}.{}{sealed}", compression.extension());
    let copts = CreateOptions {
        compression,
        level: cfg.level,
        excludes: set.patterns.clone(),
        exclude_paths,
        one_file_system: true,
        progress: set.progress,
        expected_bytes: expected,
        encrypt,
        ..CreateOptions::default()
    };
    Ok(ArchiveJob { sources, name, copts, snapshots })
}

/// Whether the last component of `name` is a backup archive's name.
pub fn is_archive_name(name: &str) -> bool {
    let name = name.rsplit('/').next().unwrap_or(name);
    let name = name.strip_suffix(archive::age::SUFFIX).unwrap_or(name);
    name.starts_with(BACKUP_PREFIX) && [".tar", ".tar.zst", ".tar.gz"].iter().any(|s| name.ends_with(s))
}

/// The file names of `paths`.
fn names(paths: &[PathBuf]) -> Vec<String> {
    paths.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect()
}

/// Bytes used on the filesystem holding `path` (for the ETA and space check).
fn used_bytes(path: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    Some((s.blocks() - s.blocks_free()) as u64 * s.fragment_size() as u64)
}

/// The data in `mounts`, counting each recorded filesystem once: the
/// subvolumes of one btrfs are mounted apart (`/`, `/home`, `/var/log`) and
/// `used` (statvfs) reports the whole filesystem at each, so summing them
/// tripled the ETA and could refuse a backup for lack of space. `None` when
/// the usage of one of them is unknown.
fn expected_bytes(layout: &Layout, mounts: &[String], used: impl Fn(&str) -> Option<u64>) -> Option<u64> {
    let mut counted = BTreeSet::new();
    let mut total = 0;
    for m in mounts {
        let device = layout.mounts.iter().find(|x| &x.path == m).map(|x| x.device.as_str());
        if device.is_some_and(|d| !counted.insert(d)) {
            continue;
        }
        total += used(m)?;
    }
    Some(total)
}

fn free_bytes(path: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    Some(s.blocks_available() as u64 * s.fragment_size() as u64)
}

/// Complete backups in `dir`, newest first.
pub fn list_backups(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    let rd = std::fs::read_dir(dir).with_context(|| format!("reading the backup directory {}", dir.display()))?;
    for de in rd {
        let de = de?;
        let name = de.file_name().to_string_lossy().into_owned();
        if is_archive_name(&name) {
            v.push(de.path());
        }
    }
    v.sort();
    v.reverse();
    Ok(v)
}

/// Keep the newest `keep` chains (at least one; a full backup alone is a
/// chain of one) in `dir`, delete older ones whole; the deleted.
fn prune(dir: &Path, keep: u32) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for old_chain in chain::chains(&list_backups(dir)?)?.into_iter().skip(keep.max(1) as usize) {
        for old in old_chain {
            tracing::info!("removing old backup {} (backup.keep = {keep} chains)", old.display());
            std::fs::remove_file(&old).with_context(|| format!("removing old backup {}", old.display()))?;
            match std::fs::remove_file(chain::link_path(&old)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    tracing::warn!("the chain record of the removed backup {} stays: {e}", old.display())
                }
                _ => {}
            }
            removed.push(old.display().to_string());
        }
    }
    Ok(removed)
}

fn is_enospc(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().and_then(|io| io.raw_os_error()) == Some(libc::ENOSPC))
}

/// Write an archive to `dest` under a temporary name in the same
/// directory, fsync, and rename it into place only when complete: a
/// failure leaves any previous archive untouched and no partial file.
pub fn write_archive_file(sources: &[Source], dest: &Path, opts: &CreateOptions) -> Result<CreateReport> {
    let dir = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    remove_stale_partials(dir);
    check_space(dir, opts.expected_bytes)?;
    let fname = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{fname}{PARTIAL}"))
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    // Held while the archive is written: a partial file nobody holds locked
    // is left from a backup that was killed, and the next backup removes it.
    if let Err(e) = rustix::fs::flock(tmp.as_file(), rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        tracing::debug!("no lock on {} ({e}): if this backup is killed, its partial file stays", tmp.path().display());
    }
    // Removed on drop by `tmp`, on SIGINT/SIGTERM by this.
    let partial = super::cleanup::register(super::cleanup::Undo::RemoveFile(tmp.path().to_path_buf()))?;
    let started = std::time::Instant::now();
    let out = WritebackFile { file: tmp.as_file_mut(), written: 0, started_to: 0 };
    let result = archive::create(sources, out, opts).and_then(|(w, r)| {
        w.file.sync_all().context("flushing the archive to the destination")?;
        Ok(r)
    });
    let report = match result {
        Ok(r) => r,
        Err(e) if is_enospc(&e) => {
            return Err(e.context(format!(
                "the destination {} is full: the archive was not completed; the partial file was removed and any previous archive is untouched. Free space there or choose another backup.url",
                dir.display()
            )))
        }
        Err(e) => return Err(e.context(format!("writing the archive {}", dest.display()))),
    };
    tmp.persist(dest).with_context(|| format!("renaming the finished archive into place at {}", dest.display()))?;
    partial.keep();
    let size = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
    tracing::info!(
        "wrote {} ({}, {} files, {} of data, {:.1} s)",
        dest.display(),
        human_bytes(size),
        report.files,
        human_bytes(report.bytes),
        started.elapsed().as_secs_f64()
    );
    Ok(report)
}

/// What a partial archive's name holds after the archive's own name
/// (`.NAME.partial-XXXXXX`).
const PARTIAL: &str = ".partial-";

/// How long a partial archive nobody holds locked must have been untouched
/// before a later backup removes it.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Remove the partial archives in `dir` that no running backup writes: a
/// backup holds an exclusive lock on its partial file until it is renamed
/// into place, so one that can be locked was left by a backup that was
/// killed (SIGKILL, power loss). Where the filesystem cannot lock, nothing
/// is removed.
fn remove_stale_partials(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((archive, _)) = name.strip_prefix('.').and_then(|n| n.split_once(PARTIAL)) else { continue };
        if !is_archive_name(archive) {
            continue;
        }
        let path = e.path();
        let Ok(f) = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&path) else { continue };
        // Untouched for a minute: not one whose backup is between creating
        // and locking it.
        let Ok(meta) = f.metadata() else { continue };
        if meta.modified().ok().and_then(|m| m.elapsed().ok()).is_none_or(|age| age < STALE_AFTER) {
            continue;
        }
        if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            continue;
        }
        let size = meta.len();
        if let Err(err) = std::fs::remove_file(&path) {
            tracing::warn!("the partial archive {} of a killed backup stays: {err}; remove it by hand", path.display());
            continue;
        }
        tracing::info!("removed {} ({}): the partial archive of a backup that was killed", path.display(), human_bytes(size));
        // Its chain record, written before it, names an archive that never came.
        let never_made = dir.join(archive);
        if !never_made.exists() {
            let record = chain::link_path(&never_made);
            if std::fs::remove_file(&record).is_ok() {
                tracing::info!("removed {}: the chain record of that killed backup", record.display());
            }
        }
    }
}

/// A file writer that starts the kernel's writeback every few MiB, so the
/// data reaches the disk while the archive is still being made: the final
/// fsync is short and dirty pages do not pile up (a rescue system has
/// little memory).
struct WritebackFile<'a> {
    file: &'a mut std::fs::File,
    written: u64,
    started_to: u64,
}

const WRITEBACK_EVERY: u64 = 16 << 20;

impl std::io::Write for WritebackFile<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.started_to >= WRITEBACK_EVERY {
            use std::os::fd::AsRawFd;
            // SAFETY: sync_file_range only starts writeback of a range of
            // a file descriptor we own; no memory is passed.
            #[allow(unsafe_code)]
            let _ = unsafe {
                libc::sync_file_range(self.file.as_raw_fd(), self.started_to as i64, (self.written - self.started_to) as i64, libc::SYNC_FILE_RANGE_WRITE)
            };
            self.started_to = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Refuse to start when the destination obviously cannot hold the archive.
fn check_space(dir: &Path, expected: Option<u64>) -> Result<()> {
    let Some(free) = free_bytes(dir) else { return Ok(()) };
    if free < 1 << 20 {
        anyhow::bail!(
            "the destination {} is full ({} free): nothing was written. Free space there or choose another backup.url",
            dir.display(),
            human_bytes(free)
        );
    }
    if let Some(exp) = expected {
        // System trees compress to 30-50 %; below a quarter it cannot fit.
        if free < exp / 4 {
            anyhow::bail!(
                "the destination {} has {} free, too little for {} of data (even compressed): nothing was written. Free space there or choose another backup.url",
                dir.display(),
                human_bytes(free),
                human_bytes(exp)
            );
        }
        if free < exp / 2 {
            tracing::warn!("the destination {} has only {} free for {} of data; the backup may not fit", dir.display(), human_bytes(free), human_bytes(exp));
        }
    }
    Ok(())
}

/// The archive of `host` in the backup location mounted at `base`: the one
/// named, else the newest. Each way of not finding it says what is there
/// and what to pass instead.
fn find_archive(base: &Path, host: &str, url: &str, archive: Option<&str>) -> Result<PathBuf> {
    const WHERE: &str = "Check backup.url in the config (/etc/rescue/rescue.toml in the rescue image) or pass --url URL where \
                         the backup is";
    if !base.is_dir() {
        crate::bail_input!("the backup location {url} does not exist ({} is not a directory); nothing was written. {WHERE}", base.display());
    }
    let dir = base.join(host);
    if !dir.is_dir() {
        crate::bail_input!("no backup of {host} at {url}: there is no directory {host} in it (it holds: {}); nothing was written. {WHERE}", names_in(base));
    }
    if let Some(name) = archive {
        let file = dir.join(name);
        if !file.is_file() {
            crate::bail_input!(
                "the backup archive {name} does not exist in {} (backups there: {}); nothing was written. Pass one of them \
                 with --archive NAME, or leave --archive out for the newest",
                dir.display(),
                list_names(names(&list_backups(&dir).unwrap_or_default()))
            );
        }
        return Ok(file);
    }
    let newest = list_backups(&dir).map_err(|e| input_error(format!("no backup of {host} at {url}: {e:#}; nothing was written")))?.into_iter().next();
    newest.ok_or_else(|| {
        input_error(format!(
            "no backup of {host} at {url} (no backup-*.tar.* in {}; it holds: {}); nothing was written. {WHERE}",
            dir.display(),
            names_in(&dir)
        ))
    })
}

/// What `dir` holds, for a message.
fn names_in(dir: &Path) -> String {
    list_names(std::fs::read_dir(dir).map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default())
}

/// Up to 10 names, newest (highest) first, for a message.
fn list_names(mut names: Vec<String>) -> String {
    if names.is_empty() {
        return "nothing".into();
    }
    names.sort();
    names.reverse();
    let more = names.len().saturating_sub(10);
    names.truncate(10);
    if more > 0 {
        names.push(format!("and {more} more"));
    }
    names.join(", ")
}

/// Read the whole archive and check it against its manifest; the file data
/// bytes, the number of files the manifest lists, and the members' paths.
fn verify_archive(file: &Path, keys: &dyn IdentitySource, progress: bool) -> Result<(u64, Option<u64>, HashSet<Vec<u8>>)> {
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let total = f.metadata().ok().map(|m| m.len());
    verify_stream(f, total, file, keys, progress)
}

/// [`verify_archive`] of an archive read from `f` (`total` bytes long, if known).
pub(super) fn verify_stream<R: std::io::Read + Send + 'static>(
    f: R,
    total: Option<u64>,
    file: &Path,
    keys: &dyn IdentitySource,
    progress: bool,
) -> Result<(u64, Option<u64>, HashSet<Vec<u8>>)> {
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader = archive::age::open(crate::archive::CountingReader { inner: f, count: count.clone() }, file, keys)?;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The verification reads at disk speed; a line now and then says it is alive.
    let ticker = progress.then(|| {
        let (count, done) = (count.clone(), done.clone());
        std::thread::spawn(move || {
            let mut p = crate::archive::progress::Progress::new("verifying", total, true);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                p.set_bytes(count.load(std::sync::atomic::Ordering::Relaxed), 0);
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            p.finish();
        })
    });
    let r = crate::archive::verify(reader);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(t) = ticker {
        let _ = t.join();
    }
    let r = r?;
    if !r.ok() {
        let mut parts = Vec::new();
        for (what, list) in [("damaged", &r.damaged), ("missing", &r.missing), ("unexpected", &r.unexpected)] {
            if !list.is_empty() {
                parts.push(format!("{} {what} (first: {})", list.len(), list[0]));
            }
        }
        anyhow::bail!("members differ from the archive's manifest: {}", parts.join(", "));
    }
    let files = r.summary.as_deref().and_then(summary_files);
    Ok((r.bytes, files, r.paths))
}

/// Archive member names as paths relative to the recovered root: the root
/// filesystem's tree is stored as `.` (`./usr/sbin/x` or `usr/sbin/x`), the
/// others under their mount point (`boot/grub`).
pub(super) fn root_relative(members: HashSet<Vec<u8>>) -> HashSet<String> {
    members
        .into_iter()
        .map(|m| {
            let p = String::from_utf8_lossy(&m).into_owned();
            let p = p.strip_prefix("./").unwrap_or(&p);
            p.trim_end_matches('/').to_string()
        })
        .collect()
}

/// `files=N` of the manifest's summary line (`files=N dirs=N ... bytes=N`).
fn summary_files(summary: &str) -> Option<u64> {
    summary.split_whitespace().find_map(|w| w.strip_prefix("files=")).and_then(|n| n.parse().ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_old_unlocked_partial_archives_are_removed_with_their_records() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let make = |name: &str, age: std::time::SystemTime| {
            let f = std::fs::File::create(d.join(name)).unwrap();
            f.set_modified(age).unwrap();
            f
        };
        // Killed: old, unlocked; its chain record names an archive never made.
        make(".backup-20261202-101010-000001.tar.zst.partial-AAAAAA", old);
        std::fs::write(d.join("backup-20261202-101010-000001.tar.zst.chain"), "level = 0\n").unwrap();
        // Running: locked by its writer.
        let held = make(".backup-20261202-101011-000002.tar.zst.partial-BBBBBB", old);
        rustix::fs::flock(&held, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
        // Just created, not yet locked.
        make(".backup-20261202-101012-000003.tar.zst.partial-CCCCCC", std::time::SystemTime::now());
        // Not a backup's: never touched.
        make(".notes.txt.partial-DDDDDD", old);
        // A finished archive keeps its record.
        make("backup-20261202-101013-000004.tar.zst", old);
        std::fs::write(d.join("backup-20261202-101013-000004.tar.zst.chain"), "level = 0\n").unwrap();
        remove_stale_partials(d);
        let mut left: Vec<String> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".backup-20261202-101011-000002.tar.zst.partial-BBBBBB",
                ".backup-20261202-101012-000003.tar.zst.partial-CCCCCC",
                ".notes.txt.partial-DDDDDD",
                "backup-20261202-101013-000004.tar.zst",
                "backup-20261202-101013-000004.tar.zst.chain",
            ]
        );
        drop(held);
    }

    #[test]
    fn subvolumes_of_one_btrfs_count_once_in_the_expected_size() {
        let layout = Layout::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/layouts/btrfs-subvolumes.toml"))).unwrap();
        let mounts = super::super::backup_mounts(&layout, &[]);
        // statvfs reports the whole filesystem (1 GiB used) at each subvolume mount.
        assert_eq!(expected_bytes(&layout, &mounts, |_| Some(1 << 30)), Some(1 << 30));
        // Two filesystems add up; one unknown makes the total unknown.
        let two = Layout::from_toml(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/archive/layout.toml")).unwrap()).unwrap();
        assert_eq!(expected_bytes(&two, &["/".into(), "/boot".into()], |_| Some(100)), Some(200));
        assert_eq!(expected_bytes(&two, &["/".into(), "/boot".into()], |m| (m == "/").then_some(100)), None);
        assert_eq!(summary_files("files=12 dirs=3 symlinks=1 hardlinks=0 specials=0 bytes=99"), Some(12));
    }

    #[test]
    fn a_missing_archive_says_what_is_there_and_what_to_pass() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("backups");
        let msg = |r: Result<PathBuf>| {
            let e = r.unwrap_err();
            assert_eq!(crate::error::exit_code_for(&e), 2, "{e:#}");
            format!("{e:#}")
        };
        let m = msg(find_archive(&base, "web1", "file:///b", None));
        assert!(m.contains("does not exist") && m.contains("--url URL") && m.contains("nothing was written"), "{m}");
        std::fs::create_dir_all(base.join("db1")).unwrap();
        let m = msg(find_archive(&base, "web1", "file:///b", None));
        assert!(m.contains("no backup of web1") && m.contains("it holds: db1") && m.contains("--url URL"), "{m}");
        std::fs::create_dir_all(base.join("web1")).unwrap();
        let m = msg(find_archive(&base, "web1", "file:///b", None));
        assert!(m.contains("no backup-*.tar.*") && m.contains("it holds: nothing"), "{m}");
        for n in ["backup-20261101-000000.tar.zst", "backup-20261102-000000.tar.zst", "notes.txt"] {
            std::fs::write(base.join("web1").join(n), "x").unwrap();
        }
        assert_eq!(find_archive(&base, "web1", "file:///b", None).unwrap(), base.join("web1/backup-20261102-000000.tar.zst"));
        let m = msg(find_archive(&base, "web1", "file:///b", Some("backup-2000.tar.zst")));
        assert!(m.contains("backups there: backup-20261102-000000.tar.zst, backup-20261101-000000.tar.zst") && m.contains("--archive NAME"), "{m}");
        assert!(!m.contains("notes.txt"), "{m}");
        assert_eq!(list_names((0..12).map(|i| format!("{i:02}")).collect()), "11, 10, 09, 08, 07, 06, 05, 04, 03, 02, and 2 more");
    }

    #[test]
    fn the_verified_archive_lists_the_files_of_the_recovered_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("usr/sbin")).unwrap();
        std::fs::write(root.join("usr/sbin/grub-install"), "#!/bin/sh\n").unwrap();
        let file = d.path().join("backup.tar.zst");
        let sources = [Source { path: root.clone(), name: Vec::new() }];
        write_archive_file(&sources, &file, &CreateOptions::default()).unwrap();
        let listing = root_relative(verify_archive(&file, &crate::archive::age::NoIdentity, false).unwrap().2);
        assert!(listing.contains("usr/sbin/grub-install") && listing.contains("usr/sbin"), "{listing:?}");
    }
}
