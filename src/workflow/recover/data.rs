//! Where the recovered system's data comes from, checking it before any
//! disk is touched (verify phase), and getting it back (restore phase).
//!
//! [`restore_data`] is the one dispatch point of the restore phase: a new
//! kind of source (a backup server such as Bacula/Bareos, chosen by its own
//! config) adds a [`DataSource`] variant and an arm in [`DataSource::resolve`],
//! [`check_source`] and [`restore_data`].

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::archive::age::IdentitySource;
use crate::archive::ExtractReport;
use crate::backup::{self, Location, Opened, RestoreOptions};
use crate::config::Config;
use crate::error::input_error;
use crate::layout::Layout;
use crate::util::human_bytes;

/// The data of the system to recover.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DataSource {
    /// An archive made by `mkbackup`/`mkbackuponly` (file, nfs, cifs, usb, iso URLs).
    /// `archive`: a file name in the host's directory; `None` is the newest.
    Archive { url: String, archive: Option<String> },
    /// A file tree copied by the rsync method.
    Rsync { url: String },
    /// A Bacula/Bareos director restores its client's backup (`backup.method`).
    BackupServer { selection: crate::bserver::Selection },
}

/// What the verify phase found about the backup.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct BackupUsed {
    pub url: String,
    /// The archive file name (none for rsync).
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
    /// The paths the backup holds (relative to the recovered root), when
    /// the verification read them: what finalize will find there.
    #[serde(skip)]
    pub listing: Option<HashSet<String>>,
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

impl DataSource {
    /// The source for this recovery: `--url`, else `backup.url` from the
    /// config, else the location the descriptor records (`rescue mkbackup`).
    pub fn resolve(config: &Config, layout: &Layout, url: Option<&str>, archive: Option<String>) -> Result<DataSource> {
        Self::resolve_with(config, layout, url, archive, crate::bserver::Selection::default())
    }

    /// [`DataSource::resolve`], with the backup a backup server restores
    /// (`--restore-jobid`, `--restore-before`).
    pub fn resolve_with(
        config: &Config,
        layout: &Layout,
        url: Option<&str>,
        archive: Option<String>,
        selection: crate::bserver::Selection,
    ) -> Result<DataSource> {
        let method = config.backup.method;
        if method.is_server() {
            if url.is_some() || archive.is_some() {
                crate::bail_input!(
                    "--url/--archive name rescue's own archives; with backup.method = \"{}\" the director restores the data \
                     (choose the backup with --restore-jobid or --restore-before)",
                    method.product().to_ascii_lowercase()
                );
            }
            return Ok(DataSource::BackupServer { selection });
        }
        if selection != crate::bserver::Selection::default() {
            crate::bail_input!(
                "--restore-jobid/--restore-before choose a backup server's job; this config restores rescue's archives (backup.method = \"archive\")"
            );
        }
        let url = url
            .map(str::to_string)
            .or_else(|| config.backup.url.clone())
            .or_else(|| layout.backup.as_ref().map(|b| b.url.clone()).filter(|u| !u.is_empty()))
            .ok_or_else(|| {
                input_error(
                    "no backup location: set backup.url in the config (/etc/rescue/rescue.toml in the rescue image), \
                     or pass --url URL; to recreate only the disks use `rescue recover --layout-only`",
                )
            })?;
        Ok(match Location::parse(&url)? {
            Location::Rsync(_) => {
                if archive.is_some() {
                    crate::bail_input!("--archive names an archive file, but {url} is an rsync destination (a file tree)");
                }
                DataSource::Rsync { url }
            }
            _ => DataSource::Archive { url, archive },
        })
    }

    /// The same source, pinned to the archive the verify phase checked.
    pub fn with_archive(self, used: &BackupUsed) -> DataSource {
        match self {
            DataSource::Archive { url, .. } => DataSource::Archive { url, archive: used.archive.clone() },
            other => other,
        }
    }
}

/// Verify phase: the backup is reachable and its archive is there and
/// (with `recover.verify-archive`, the default) reads to its end with every
/// file matching the manifest. Writes nothing anywhere.
/// An encrypted archive is opened with the identity `keys` gives: a wrong
/// or missing one fails here.
pub fn check_source(source: &DataSource, layout: &Layout, config: &Config, keys: &dyn IdentitySource, progress: bool) -> Result<BackupUsed> {
    match source {
        DataSource::Archive { url, archive } => {
            let loc = Location::parse(url)?;
            let opened =
                Opened::open(&loc, &config.backup, false).with_context(|| format!("the backup location {url} is not reachable; nothing was written"))?;
            let host = backup::host_dir_name(layout);
            let file = find_archive(opened.dir(), &host, url, archive.as_deref())?;
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let size = std::fs::metadata(&file)
                .map_err(|e| input_error(format!("the backup archive {} cannot be read: {e}; nothing was written", file.display())))?
                .len();
            if let Some(rec) = layout.backup.as_ref().filter(|r| !r.archive.is_empty() && r.archive != name) {
                tracing::info!("the descriptor records the backup {} ({}); restoring the newer {name}", rec.archive, rec.created);
            }
            let mut used = BackupUsed {
                url: url.clone(),
                archive: Some(name.clone()),
                archive_bytes: Some(size),
                verified: false,
                data_bytes: None,
                files: None,
                device: opened.device(),
                listing: None,
            };
            if config.recover.verify_archive {
                tracing::info!("verifying {} ({}) before touching any disk", file.display(), human_bytes(size));
                let r = verify_archive(&file, keys, progress).map_err(|e| {
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
                used.data_bytes = Some(r.0);
                used.files = r.1;
                used.listing = Some(root_relative(r.2));
            } else {
                // At least the start must be an archive we can read.
                let f = std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
                let f = crate::archive::age::open(f, &file, keys)?;
                let mut out = Vec::new();
                crate::archive::list(std::io::Read::take(f, 1 << 20), &mut out).ok();
                if out.is_empty() {
                    crate::bail_input!("the backup archive {} does not start with a readable archive member; nothing was written", file.display());
                }
            }
            Ok(used)
        }
        DataSource::BackupServer { selection } => {
            // The director answers, accepts the console and holds a backup of this client.
            let pf = crate::bserver::preflight(config, selection).context("the backup server cannot restore this client; nothing was written")?;
            let job = pf.backup.as_ref();
            tracing::info!("director {} ({}) holds {} of {}", pf.director, pf.greeting, backup_held(job), pf.client);
            Ok(BackupUsed {
                url: format!("{} director {}, client {}", config.backup.method.product(), pf.director, pf.client),
                archive: job.map(|j| format!("job {} ({}, ended {})", j.jobid, j.level_name(), j.end_time)),
                archive_bytes: job.map(|j| j.bytes),
                verified: false,
                data_bytes: None,
                files: job.map(|j| j.files),
                device: None,
                listing: None,
            })
        }
        DataSource::Rsync { url } => {
            let spec = url.trim_end_matches('/');
            let src = format!("{spec}/{}/", backup::host_dir_name(layout));
            crate::cmd::Cmd::new("rsync")
                .arg("--list-only")
                .arg(&src)
                .output()
                .with_context(|| format!("the rsync backup {src} is not reachable; nothing was written"))?;
            Ok(BackupUsed { url: url.clone(), archive: None, archive_bytes: None, verified: false, data_bytes: None, files: None, device: None, listing: None })
        }
    }
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
                list_names(
                    backup::list_backups(&dir).unwrap_or_default().iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect()
                )
            );
        }
        return Ok(file);
    }
    let newest = backup::list_backups(&dir).map_err(|e| input_error(format!("no backup of {host} at {url}: {e:#}; nothing was written")))?.into_iter().next();
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
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader = crate::archive::age::open(crate::archive::CountingReader { inner: f, count: count.clone() }, file, keys)?;
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
fn root_relative(members: HashSet<Vec<u8>>) -> HashSet<String> {
    members
        .into_iter()
        .map(|m| {
            let p = String::from_utf8_lossy(&m).into_owned();
            let p = p.strip_prefix("./").unwrap_or(&p);
            p.trim_end_matches('/').to_string()
        })
        .collect()
}

/// The backup the preflight found, for the log: absent when the director
/// picks it itself (`--restore-before`).
fn backup_held(job: Option<&crate::bserver::JobInfo>) -> String {
    match job {
        Some(j) => format!("backup job {} ({}, {} files, ended {})", j.jobid, j.level_name(), j.files, j.end_time),
        None => "backups before the --restore-before date (the director picks them)".to_string(),
    }
}

/// `files=N` of the manifest's summary line (`files=N dirs=N ... bytes=N`).
fn summary_files(summary: &str) -> Option<u64> {
    summary.split_whitespace().find_map(|w| w.strip_prefix("files=")).and_then(|n| n.parse().ok())
}

/// Restore phase: the data into the recreated, mounted tree. The dispatch
/// point for every kind of source.
pub fn restore_data(source: &DataSource, layout: &Layout, config: &Config, target: &Path, keys: &dyn IdentitySource, progress: bool) -> Result<ExtractReport> {
    match source {
        DataSource::Archive { url, archive } => {
            let opts = RestoreOptions { target: target.to_path_buf(), url: Some(url.clone()), archive: archive.clone(), progress };
            backup::restore(layout, config, &opts, keys)
        }
        DataSource::Rsync { url } => {
            let opts = RestoreOptions { target: target.to_path_buf(), url: Some(url.clone()), archive: None, progress };
            backup::restore(layout, config, &opts, keys)
        }
        DataSource::BackupServer { selection } => {
            // An error carries the director's own message; recovery stops before the bootloader.
            let r = crate::bserver::restore(config, target, selection)?;
            Ok(ExtractReport { entries: r.job.files, bytes: r.job.bytes, warnings: r.warnings, ..Default::default() })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn layout(backup_url: Option<&str>) -> Layout {
        let mut l = Layout::from_toml(include_str!("../../../tests/fixtures/recover/gpt-ext4.toml")).unwrap();
        l.backup = backup_url.map(|u| crate::layout::BackupRecord { url: u.into(), ..Default::default() });
        l
    }

    #[test]
    fn source_comes_from_flag_then_config_then_descriptor() {
        let mut c = Config::default();
        let l = layout(Some("iso:///backup"));
        assert_eq!(DataSource::resolve(&c, &l, None, None).unwrap(), DataSource::Archive { url: "iso:///backup".into(), archive: None });
        c.backup.url = Some("nfs://nas/b".into());
        assert_eq!(DataSource::resolve(&c, &l, None, None).unwrap(), DataSource::Archive { url: "nfs://nas/b".into(), archive: None });
        assert_eq!(
            DataSource::resolve(&c, &l, Some("file:///srv/b"), Some("backup-1.tar.zst".into())).unwrap(),
            DataSource::Archive { url: "file:///srv/b".into(), archive: Some("backup-1.tar.zst".into()) }
        );
        assert_eq!(DataSource::resolve(&c, &l, Some("h:/srv/b"), None).unwrap(), DataSource::Rsync { url: "h:/srv/b".into() });
        let e = DataSource::resolve(&Config::default(), &layout(None), None, None).unwrap_err();
        assert!(format!("{e:#}").contains("no backup location"), "{e:#}");
        assert_eq!(crate::error::exit_code_for(&e), 2);
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
    fn the_verified_archive_lists_the_bootloader_files_of_the_recovered_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("usr/sbin")).unwrap();
        std::fs::create_dir_all(root.join("usr/lib/grub/i386-pc")).unwrap();
        std::fs::write(root.join("usr/sbin/grub-install"), "#!/bin/sh\n").unwrap();
        let file = d.path().join("backup.tar.zst");
        let sources = [crate::archive::Source { path: root.clone(), name: Vec::new() }];
        crate::backup::write_archive_file(&sources, &file, &crate::archive::CreateOptions::default()).unwrap();
        let listing = root_relative(verify_archive(&file, &crate::archive::age::NoIdentity, false).unwrap().2);
        assert!(listing.contains("usr/sbin/grub-install") && listing.contains("usr/lib/grub/i386-pc"), "{listing:?}");
        let l = Layout::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts/bios-gpt-ext4.toml")).unwrap();
        let source = DataSource::Archive { url: "file:///b".into(), archive: None };
        let needs = super::super::verify::needs_of(&l, &Config::default(), &source);
        super::super::verify::check_target(&needs, &l, |p| listing.contains(p)).unwrap();
        std::fs::remove_dir(root.join("usr/lib/grub/i386-pc")).unwrap();
        crate::backup::write_archive_file(&sources, &file, &crate::archive::CreateOptions::default()).unwrap();
        let listing = root_relative(verify_archive(&file, &crate::archive::age::NoIdentity, false).unwrap().2);
        let e = super::super::verify::check_target(&needs, &l, |p| listing.contains(p)).unwrap_err();
        assert!(format!("{e:#}").contains("grub-pc-bin"), "{e:#}");
    }

    #[test]
    fn an_encrypted_backup_is_checked_with_its_identity_before_any_disk_is_touched() {
        use crate::archive::age::{EncryptConfig, NoIdentity};
        use crate::workflow::recover::{AgeKey, LuksKeySource};
        use age::secrecy::ExposeSecret;
        let d = tempfile::tempdir().unwrap();
        let l = layout(None);
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hostname"), "web1\n").unwrap();
        let id = age::x25519::Identity::generate();
        let encrypt = EncryptConfig { recipients: vec![id.to_public().to_string()], passphrase_file: None }.load().unwrap();
        let host_dir = d.path().join("b").join(backup::host_dir_name(&l));
        let file = host_dir.join("backup-20261202-000000.tar.zst.age");
        let sources = [crate::archive::Source { path: root, name: Vec::new() }];
        crate::backup::write_archive_file(&sources, &file, &crate::archive::CreateOptions { encrypt, ..Default::default() }).unwrap();
        let key_file = d.path().join("key.txt");
        std::fs::write(&key_file, id.to_string().expose_secret()).unwrap();
        let wrong_file = d.path().join("wrong.txt");
        std::fs::write(&wrong_file, age::x25519::Identity::generate().to_string().expose_secret()).unwrap();

        let url = format!("file://{}", d.path().join("b").display());
        let source = DataSource::Archive { url, archive: None };
        let c = Config::default();
        let key = |p: &Path| AgeKey::new(Some(LuksKeySource::File(p.to_path_buf())), false, std::time::Duration::ZERO, 1);
        let used = check_source(&source, &l, &c, &key(&key_file), false).unwrap();
        assert!(used.verified && used.archive.as_deref() == Some("backup-20261202-000000.tar.zst.age"), "{used:?}");
        assert!(used.listing.unwrap().contains("etc/hostname"));
        for (keys, says) in [
            (key(&wrong_file), "does not open"),
            (key(&d.path().join("absent")), "cannot be read"),
            (AgeKey::new(None, false, std::time::Duration::ZERO, 1), "nobody to ask"),
        ] {
            let e = check_source(&source, &l, &c, &keys, false).unwrap_err();
            let m = format!("{e:#}");
            assert!(m.contains(says) && m.contains("nothing was written"), "{m}");
            assert_eq!(crate::error::exit_code_for(&e), 2, "{m}");
        }
        let e = check_source(&source, &l, &c, &NoIdentity, false).unwrap_err();
        assert!(format!("{e:#}").contains("--age-identity"), "{e:#}");

        // One flipped byte in the payload: damaged, named as such.
        let mut bytes = std::fs::read(&file).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x40;
        std::fs::write(&file, bytes).unwrap();
        let e = check_source(&source, &l, &c, &key(&key_file), false).unwrap_err();
        let m = format!("{e:#}");
        assert!(m.contains("is damaged") && m.contains("fails age's authentication") && m.contains("Nothing was written"), "{m}");
    }

    #[test]
    fn the_log_names_the_backup_job_not_an_option() {
        let j = crate::bserver::JobInfo { jobid: 7, level: "F".into(), files: 18635, end_time: "2026-11-26 14:09:33".into(), ..Default::default() };
        assert_eq!(backup_held(Some(&j)), "backup job 7 (full, 18635 files, ended 2026-11-26 14:09:33)");
        assert!(backup_held(None).contains("--restore-before"));
    }
}
