//! Backups: where they go (destinations by URL, mounted by rescue when
//! needed), what they hold (the mounted filesystems the descriptor
//! records), and getting them back (`restore`).
//!
//! Library entry points for the workflows: [`run_backup`] (mkbackup,
//! mkbackuponly) and [`restore`] (recover, restoreonly).

pub mod location;
pub mod rsync;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::archive::{self, CreateOptions, CreateReport, ExtractOptions, ExtractReport, Source};
use crate::config::{BackupConfig, Config};
use crate::layout::Layout;
use crate::util::human_bytes;

pub use location::{Location, Opened};

/// File names of backups: `backup-YYYYMMDD-HHMMSS.tar.zst` in the host's directory.
const BACKUP_PREFIX: &str = "backup-";

/// Options of one backup run besides the config.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Where the recorded mount points are found (`/` on the running system).
    pub root: PathBuf,
    /// Destination URL; `None` takes `backup.url` from the config.
    pub url: Option<String>,
    pub progress: bool,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions { root: PathBuf::from("/"), url: None, progress: false }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupReport {
    /// The destination as the user wrote it.
    pub url: String,
    /// The finished archive (path as seen while the destination was mounted), or the rsync target.
    pub archive: String,
    pub create: CreateReport,
    /// Mount points backed up, as recorded.
    pub mounts: Vec<String>,
}

/// The mounts to back up: the descriptor's mounts minus excluded ones,
/// sorted so a parent comes before what is mounted below it.
pub fn backup_mounts(layout: &Layout, config: &Config) -> Vec<String> {
    let scope = crate::layout::recovery::MountScope::new(&config.capture.exclude_mounts);
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

fn under_root(root: &Path, mount: &str) -> PathBuf {
    let rel = mount.trim_start_matches('/');
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
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

/// Back up the filesystems recorded in `layout` to the configured
/// destination. Files that changed or vanished are warnings in the report.
pub fn run_backup(layout: &Layout, config: &Config, opts: &BackupOptions) -> Result<BackupReport> {
    let url = destination_url(&config.backup, opts.url.as_deref())?;
    let loc = Location::parse(&url)?;
    let mounts = backup_mounts(layout, config);
    if mounts.is_empty() {
        crate::bail_input!("the descriptor records no mounted filesystems to back up");
    }
    let host = host_dir_name(layout);
    let mut exclude_paths: Vec<PathBuf> = layout.excluded.iter().map(|e| under_root(&opts.root, &e.path)).collect();
    exclude_paths.extend(config.capture.exclude_mounts.iter().map(|e| under_root(&opts.root, e)));
    // Our own log grows while we read it (every command is logged): archiving it
    // would only ever be a "file changed" warning. The recovered system gets its
    // recovery log in the same directory.
    if opts.root == Path::new("/") {
        exclude_paths.push(config.log_dir.join("rescue.log"));
    }
    if let Location::Rsync(spec) = &loc {
        let mut sources = mounts.clone();
        sources.extend(nested_subvolume_dirs(layout, &mounts));
        let create = rsync::backup(&opts.root, &sources, &config.backup.exclude, &exclude_paths, spec, &host)?;
        return Ok(BackupReport { url, archive: format!("{spec}/{host}/"), create, mounts });
    }
    let opened = Opened::open(&loc, &config.backup, true)?;
    let dir = opened.dir().join(&host);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating the backup directory {}", dir.display()))?;
    // Never back up the backup, nor our own log: it grows while being read,
    // which would make every backup "completed with warnings".
    exclude_paths.push(opened.dir().to_path_buf());
    exclude_paths.push(under_root(&opts.root, &config.log_dir.join(crate::logging::LOG_FILE).to_string_lossy()));
    // A mount below another is archived as its own source, never twice
    // (on the live system one-file-system already stops there).
    exclude_paths.extend(mounts.iter().filter(|m| m.as_str() != "/").map(|m| under_root(&opts.root, m)));
    let sources: Vec<Source> = mounts.iter().map(|m| Source { path: under_root(&opts.root, m), name: m.trim_start_matches('/').as_bytes().to_vec() }).collect();
    // The data to back up, for the ETA and the space check: known when
    // every source is a mount point (a whole filesystem), as on a live system.
    let expected = expected_bytes(layout, &mounts, |m| {
        let p = under_root(&opts.root, m);
        if p.exists() && crate::util::is_mount_root(&p) {
            used_bytes(&p)
        } else {
            None
        }
    });
    let stamp = time::OffsetDateTime::now_utc()
        .format(&time::macros::format_description!("[year][month][day]-[hour][minute][second]"))
        .unwrap_or_else(|_| "now".into());
    let compression = config.backup.compress;
    let encrypt = config.backup.encrypt.load()?;
    let sealed = if encrypt.is_some() { archive::age::SUFFIX } else { "" };
    let name = format!("{BACKUP_PREFIX}{stamp}.{}{sealed}", compression.extension());
    let dest = dir.join(&name);
    let copts = CreateOptions {
        compression,
        level: config.backup.level,
        excludes: config.backup.exclude.clone(),
        exclude_paths,
        one_file_system: true,
        progress: opts.progress,
        expected_bytes: expected,
        encrypt,
        ..CreateOptions::default()
    };
    let create = write_archive_file(&sources, &dest, &copts)?;
    prune(&dir, config.backup.keep)?;
    Ok(BackupReport { url, archive: dest.display().to_string(), create, mounts })
}

fn destination_url(cfg: &BackupConfig, url: Option<&str>) -> Result<String> {
    match url.map(str::to_string).or_else(|| cfg.url.clone()) {
        Some(u) => Ok(u),
        None => crate::bail_input!("no backup destination: set backup.url in the config (e.g. \"nfs://server/backups\") or pass --url"),
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

/// Complete backups in `dir`, newest first.
pub fn list_backups(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    let rd = std::fs::read_dir(dir).with_context(|| format!("reading the backup directory {}", dir.display()))?;
    for de in rd {
        let de = de?;
        let name = de.file_name().to_string_lossy().into_owned();
        let plain = name.strip_suffix(archive::age::SUFFIX).unwrap_or(&name);
        if plain.starts_with(BACKUP_PREFIX) && [".tar", ".tar.zst", ".tar.gz"].iter().any(|s| plain.ends_with(s)) {
            v.push(de.path());
        }
    }
    v.sort();
    v.reverse();
    Ok(v)
}

/// Keep the newest `keep` backups (at least one), delete older ones.
fn prune(dir: &Path, keep: u32) -> Result<()> {
    for old in list_backups(dir)?.into_iter().skip(keep.max(1) as usize) {
        tracing::info!("removing old backup {} (backup.keep = {keep})", old.display());
        std::fs::remove_file(&old).with_context(|| format!("removing old backup {}", old.display()))?;
    }
    Ok(())
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
    check_space(dir, opts.expected_bytes)?;
    let fname = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{fname}.partial-"))
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
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

/// Options of one restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The prepared target root (`/mnt/local`).
    pub target: PathBuf,
    pub url: Option<String>,
    /// A specific archive file name in the host's directory (default: newest).
    pub archive: Option<String>,
    pub progress: bool,
}

/// Restore the newest backup of the host `layout` describes into the target
/// root. An encrypted archive is opened with the identity `keys` gives.
pub fn restore(layout: &Layout, config: &Config, opts: &RestoreOptions, keys: &dyn archive::age::IdentitySource) -> Result<ExtractReport> {
    let url = destination_url(&config.backup, opts.url.as_deref())?;
    let loc = Location::parse(&url)?;
    let host = host_dir_name(layout);
    if let Location::Rsync(spec) = &loc {
        return rsync::restore(spec, &host, &opts.target);
    }
    let opened = Opened::open(&loc, &config.backup, false)?;
    let dir = opened.dir().join(&host);
    let file = match &opts.archive {
        Some(name) => dir.join(name),
        None => list_backups(&dir)?
            .into_iter()
            .next()
            .ok_or_else(|| crate::error::input_error(format!("no backup of {host} found in {} ({url})", dir.display())))?,
    };
    tracing::info!("restoring {} into {}", file.display(), opts.target.display());
    let f = std::fs::File::open(&file).with_context(|| format!("opening the backup {}", file.display()))?;
    let total = f.metadata().ok().map(|m| m.len());
    let eopts = ExtractOptions { target: opts.target.clone(), progress: opts.progress, total_bytes: total, keep_manifest: false, incremental: false };
    let f = archive::age::open(f, &file, keys)?;
    archive::extract(f, &eopts).with_context(|| format!("restoring {} into {}", file.display(), opts.target.display()))
}

/// Print the end-of-run summary of a create; the exit code (1 = completed with warnings).
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
    if r.warnings.is_empty() {
        return crate::error::EXIT_OK;
    }
    for w in &r.warnings {
        tracing::warn!("{w}");
    }
    tracing::warn!("completed with {} warnings (listed above); the archive is complete otherwise", r.warnings.len());
    crate::error::EXIT_CHANGED
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

    #[test]
    fn backup_config_keys() {
        let c = Config::from_toml(
            r#"
            [backup]
            url = "nfs://nas/backups"
            compress = "gzip"
            level = 9
            keep = 3
            one-file-system = true
            mount-options = "vers=4.2"
            timeout = 5
            iso-dir = "/tmp/iso"
            exclude = ["*.tmp"]
            "#,
        )
        .unwrap();
        assert_eq!(c.backup.compress, archive::Compression::Gzip);
        assert_eq!(c.backup.level, Some(9));
        assert_eq!(c.backup.keep, 3);
        assert!(c.backup.one_file_system);
        assert_eq!(c.backup.timeout, 5);
        assert!(Config::from_toml("[backup]\ncompress = \"lz4\"\n").is_err());
    }

    #[test]
    fn subvolumes_of_one_btrfs_count_once_in_the_expected_size() {
        let layout = Layout::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/layouts/btrfs-subvolumes.toml"))).unwrap();
        let mounts = backup_mounts(&layout, &Config::default());
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
        // statvfs reports the whole filesystem (1 GiB used) at each subvolume mount.
        assert_eq!(expected_bytes(&layout, &mounts, |_| Some(1 << 30)), Some(1 << 30));
        // Two filesystems add up; one unknown makes the total unknown.
        let two = Layout::from_toml(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/archive/layout.toml")).unwrap()).unwrap();
        assert_eq!(expected_bytes(&two, &["/".into(), "/boot".into()], |_| Some(100)), Some(200));
        assert_eq!(expected_bytes(&two, &["/".into(), "/boot".into()], |m| (m == "/").then_some(100)), None);
    }

    #[test]
    fn mounts_to_back_up_skip_excluded_ones() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/archive/layout.toml")).unwrap();
        let layout = Layout::from_toml(&text).unwrap();
        let mut config = Config::default();
        assert_eq!(backup_mounts(&layout, &config), vec!["/", "/boot"]);
        config.capture.exclude_mounts.push("/boot".into());
        assert_eq!(backup_mounts(&layout, &config), vec!["/"]);
    }
}
