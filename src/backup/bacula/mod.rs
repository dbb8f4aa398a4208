//! The director method: a Bacula or Bareos director holds this system's
//! files, behind [`DirectorBackend`]. `rescue` drives it through `bconsole`
//! ([`console`]): checks the last backup against the RPO or runs the backup
//! job ([`mkbackup`]), and restores into the recreated target root
//! ([`restore`]), following the job to its end and checking its status and
//! file count. The rescue image gets the file daemon and bconsole
//! ([`image`]). Every function here takes the `[backup.server]` section
//! ([`ServerConfig`]) and which director it is, never the whole config.
//! Set-up: docs/bareos.md.

pub mod config;
pub mod console;
pub mod image;
pub mod parse;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

pub use config::{Director, MkbackupMode, ServerConfig};
pub use console::{AuthRefused, Console, DirectorUnreachable};
pub use parse::JobInfo;

use super::{Backed, Backend, BackupConfig, BackupMethod, BackupSet, BackupUsed, Chains, CheckOptions, ImageParts, Pick, RestoreOptions, Restored, Settings};
use crate::error::input_error;
use crate::layout::Layout;
use crate::needs::{Needs, Runs, When};
use crate::util::human_bytes;
use console::arg_quote;

/// A Bacula or Bareos director, as the [`Backend`] of `backup.method = "bacula"`/`"bareos"`.
pub struct DirectorBackend {
    cfg: ServerConfig,
    director: Director,
}

impl DirectorBackend {
    pub fn new(cfg: &BackupConfig) -> DirectorBackend {
        let director = if cfg.method == BackupMethod::Bareos { Director::Bareos } else { Director::Bacula };
        DirectorBackend { cfg: cfg.server.clone(), director }
    }

    /// The director restores what it holds: an archive file means nothing to it.
    fn refuse_archive(&self, pick: &Pick) -> Result<()> {
        if pick.archive.is_some() {
            crate::bail_input!(
                "--archive names one of rescue's own archive files; with backup.method = \"{}\" the director restores the data \
                 (choose the backup with --restore-jobid or --restore-before)",
                self.director.product().to_ascii_lowercase()
            );
        }
        Ok(())
    }
}

impl Backend for DirectorBackend {
    fn describe(&self) -> String {
        format!("{} director {}, client {}", self.director.product(), director_address(&self.cfg), client_name(&self.cfg))
    }

    fn follows_the_descriptor(&self) -> bool {
        false
    }

    fn chains(&self) -> Chains {
        Chains::NotMade {
            method: format!("a {} director", self.director.product()),
            instead: "the director's own Job and Schedule resources set each job's level (Full, Differential, Incremental) and its catalog restores them",
        }
    }

    fn backup(&self, _set: &BackupSet) -> Result<Backed> {
        Ok(Backed::Job(Box::new(mkbackup(&self.cfg, self.director)?)))
    }

    fn check(&self, _layout: Option<&Layout>, pick: &Pick, _opts: &CheckOptions) -> Result<BackupUsed> {
        self.refuse_archive(pick)?;
        // The director answers, accepts the console and holds a backup of this client.
        let pf = preflight(&self.cfg, self.director, pick).context("the backup server cannot restore this client; nothing was written")?;
        let job = pf.backup.as_ref();
        tracing::info!("director {} ({}) holds {} of {}", pf.director, pf.greeting, backup_held(job), pf.client);
        let mut used = BackupUsed::at(&format!("{} director {}, client {}", self.director.product(), pf.director, pf.client), pick);
        used.archive = job.map(|j| format!("job {} ({}, ended {})", j.jobid, j.level_name(), j.end_time));
        used.archive_bytes = job.map(|j| j.bytes);
        used.files = job.map(|j| j.files);
        used.director = Some(pf);
        Ok(used)
    }

    fn restore(&self, _layout: Option<&Layout>, pick: &Pick, target: &Path, _opts: &RestoreOptions) -> Result<Restored> {
        self.refuse_archive(pick)?;
        Ok(Restored::Job(Box::new(restore(&self.cfg, self.director, target, pick)?)))
    }

    fn list(&self, _layout: Option<&Layout>) -> Result<Vec<String>> {
        let console = Console::open(&self.cfg, self.director)?;
        let client = client_name(&self.cfg);
        let mut jobs: Vec<JobInfo> =
            console.jobs(&format!("llist jobs client={}", arg_quote(&client)?))?.into_iter().filter(|j| j.job_type == "B" && j.succeeded()).collect();
        jobs.sort_by_key(|j| std::cmp::Reverse((j.end_epoch.unwrap_or(0), j.jobid)));
        Ok(jobs.iter().map(|j| format!("job {} ({}, {} files, ended {})", j.jobid, j.level_name(), j.files, j.end_time)).collect())
    }

    fn keep(&self, _layout: Option<&Layout>) -> Result<Vec<String>> {
        // The director's own retention (its pools' volume and job retention) applies.
        Ok(Vec::new())
    }

    fn rescue_needs(&self) -> Needs {
        let mut n = Needs::default();
        let why = format!("the {} director restores through them", self.director.product());
        let fd = image::file_daemon(self.director);
        n.program(fd, Runs::Recover, When::Always, format!("the {} file daemon: {why}", self.director.product()));
        let bconsole = self.cfg.bconsole.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "bconsole".into());
        n.program(&bconsole, Runs::Recover, When::Always, format!("the console: {why}"));
        n.program("timeout", Runs::Recover, When::Always, "to bound each console session with the director");
        n
    }

    fn image_parts(&self) -> Result<ImageParts> {
        image::image_parts(&self.cfg, self.director)
    }

    fn settings(&self) -> Option<Settings> {
        let s = summary(&self.cfg, self.director);
        Some(Settings {
            what: format!("backup server ({})", self.director.product()),
            values: vec![("director".into(), s.director), ("client".into(), s.client), ("password".into(), s.password)],
        })
    }
}

/// The backup the preflight found, for the log: absent when the director
/// picks it itself (`--restore-before`).
fn backup_held(job: Option<&JobInfo>) -> String {
    match job {
        Some(j) => format!("backup job {} ({}, {} files, ended {})", j.jobid, j.level_name(), j.files, j.end_time),
        None => "backups before the --restore-before date (the director picks them)".to_string(),
    }
}

/// What a restore through the director did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub director: String,
    pub client: String,
    /// The restore job.
    pub job: JobInfo,
    /// Files the director selected for the restore.
    pub expected_files: u64,
    pub target: String,
    pub seconds: f64,
    /// Warning lines of the job log (the job still succeeded).
    pub warnings: Vec<String>,
}

/// What `mkbackup` did with the backup server.
#[derive(Debug, Clone, Serialize)]
pub struct MkbackupReport {
    pub director: String,
    pub client: String,
    pub mode: MkbackupMode,
    /// The job run (mode run) or the last good backup found (mode check).
    pub job: JobInfo,
    /// Age of that backup in hours, when known.
    pub age_hours: Option<f64>,
    pub rpo_hours: u64,
}

impl MkbackupReport {
    /// Log the job (run, or checked against the RPO); the exit code (1: the job ended with warnings).
    pub fn print(&self) -> i32 {
        let age = self.age_hours.map(|a| format!(", {a:.1} h old (RPO {} h)", self.rpo_hours)).unwrap_or_default();
        let what = match self.mode {
            MkbackupMode::Run => "backup job",
            MkbackupMode::Check => "last good backup",
        };
        let j = &self.job;
        tracing::info!(
            "{what} of {} on {}: job {} ({}, {}), {} files, {}, ended {}{age}",
            self.client,
            self.director,
            j.jobid,
            j.name,
            j.level_name(),
            j.files,
            human_bytes(j.bytes),
            j.end_time
        );
        if j.status == "W" {
            crate::error::EXIT_CHANGED
        } else {
            crate::error::EXIT_OK
        }
    }
}

impl RestoreReport {
    /// Log the restore; the exit code (1: the job reported warnings).
    pub fn print(&self) -> i32 {
        tracing::info!(
            "restored {} files ({}) of {} into {} with job {} in {:.0} s",
            self.job.files,
            human_bytes(self.job.bytes),
            self.client,
            self.target,
            self.job.jobid,
            self.seconds
        );
        for w in &self.warnings {
            tracing::warn!("{w}");
        }
        if self.warnings.is_empty() {
            crate::error::EXIT_OK
        } else {
            crate::error::EXIT_CHANGED
        }
    }
}

/// A restore job ended badly: the director's own lines say why.
#[derive(Debug, thiserror::Error)]
#[error("the {product} {what} job {jobid} ended with status {status} ({status_name}) after {files} files{}", if problems.is_empty() { String::new() } else { format!("; the director says:\n  {}", problems.join("\n  ")) })]
pub struct JobFailed {
    pub product: &'static str,
    pub what: &'static str,
    pub jobid: u64,
    pub status: String,
    pub status_name: &'static str,
    pub files: u64,
    pub problems: Vec<String>,
}

/// The backup server settings as `rescue dump` shows them: the password
/// itself never, only whether the file holds one.
#[derive(Debug, Clone, Serialize)]
pub struct ServerSummary {
    pub method: Director,
    pub director: String,
    pub client: String,
    pub password: String,
}

/// `address:port (name)` of the director.
fn director_address(cfg: &ServerConfig) -> String {
    format!(
        "{}:{}{}",
        cfg.address.as_deref().unwrap_or("(backup.server.address not set)"),
        cfg.port,
        cfg.director_name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()
    )
}

pub fn summary(cfg: &ServerConfig, method: Director) -> ServerSummary {
    let pw = &cfg.password_file;
    let password = match std::fs::read_to_string(pw) {
        Ok(t) if !t.trim().is_empty() => format!("******** (from {})", pw.display()),
        Ok(_) => format!("EMPTY ({} holds no password)", pw.display()),
        Err(e) => format!("MISSING ({}: {e})", pw.display()),
    };
    ServerSummary { method, director: director_address(cfg), client: client_name(cfg), password }
}

/// This system's client name on the director.
pub fn client_name(cfg: &ServerConfig) -> String {
    cfg.client.clone().unwrap_or_else(|| {
        let host = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
        let short = host.split('.').next().unwrap_or("").to_string();
        format!("{}-fd", if short.is_empty() { "localhost" } else { &short })
    })
}

fn now_epoch() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The most recent successful backup of the configured client (and
/// fileset, when set). An error when there is none.
pub fn last_good_backup(console: &Console, cfg: &ServerConfig) -> Result<JobInfo> {
    let client = client_name(cfg);
    let jobs = console.jobs(&format!("llist jobs client={}", arg_quote(&client)?))?;
    let fileset_ok = |j: &JobInfo| cfg.fileset.as_ref().is_none_or(|f| &j.fileset == f || j.fileset.is_empty());
    jobs.into_iter().filter(|j| j.job_type == "B" && j.succeeded() && fileset_ok(j)).max_by_key(|j| (j.end_epoch.unwrap_or(0), j.jobid)).ok_or_else(|| {
        input_error(format!(
            "the {} director {} has no successful backup of the client {client}{}: run a backup job for it first (or check backup.server.client)",
            console.method().product(),
            console.address(),
            cfg.fileset.as_ref().map(|f| format!(" with the fileset {f}")).unwrap_or_default()
        ))
    })
}

/// Follow a queued job until it ends, with a progress line whenever its
/// counters change (at most every 10 s); returns its final record.
fn follow_job(console: &Console, cfg: &ServerConfig, jobid: u64, what: &str, client: &str) -> Result<JobInfo> {
    let started = Instant::now();
    let poll = Duration::from_secs(cfg.poll_interval.max(1));
    let mut last_shown: Option<(String, u64)> = None;
    let mut last_time = Instant::now() - Duration::from_secs(60);
    loop {
        let job = console.jobs(&format!("llist jobid={jobid}"))?.into_iter().find(|j| j.jobid == jobid);
        if let Some(j) = &job {
            if j.finished() {
                tracing::info!(
                    "{} {what} job {jobid} ended: {} ({} files, {}, {:.0} s)",
                    console.method().product(),
                    parse::status_name(&j.status),
                    j.files,
                    human_bytes(j.bytes),
                    started.elapsed().as_secs_f64()
                );
                return Ok(j.clone());
            }
            // The catalog counts at the end; the file daemon knows now. Asked
            // only when a line is due: every bconsole run costs the client
            // CPU time the job needs (a second or more on a slow machine).
            let due = last_time.elapsed() >= Duration::from_secs(10);
            let counters = if due {
                console.run(&[format!("status client={}", arg_quote(client)?)], 0).ok().and_then(|o| parse::running_counters(&o, jobid))
            } else {
                None
            };
            let files = counters.map(|c| c.0).unwrap_or(j.files);
            let shown = (j.status.clone(), files);
            if due && last_shown.as_ref() != Some(&shown) {
                tracing::info!(
                    "{} {what} job {jobid}: {}, {files} files{} so far, {:.0} s",
                    console.method().product(),
                    parse::status_name(&j.status),
                    counters.map(|c| format!(", {}", human_bytes(c.1))).unwrap_or_default(),
                    started.elapsed().as_secs_f64()
                );
                last_shown = Some(shown);
                last_time = Instant::now();
            }
        }
        if cfg.job_timeout > 0 && started.elapsed() > Duration::from_secs(cfg.job_timeout) {
            bail!(
                "the {} {what} job {jobid} did not end within backup.server.job-timeout = {} s; it may still run on the director (cancel it there with `cancel jobid={jobid}`)",
                console.method().product(),
                cfg.job_timeout
            );
        }
        std::thread::sleep(poll);
    }
}

fn job_failed(console: &Console, what: &'static str, job: &JobInfo) -> anyhow::Error {
    let problems = console.job_problems(job.jobid);
    JobFailed {
        product: console.method().product(),
        what,
        jobid: job.jobid,
        status: job.status.clone(),
        status_name: parse::status_name(&job.status),
        files: job.files,
        problems,
    }
    .into()
}

/// Queue a command that prints `Job queued. JobId=N`; the job id, or the
/// director's answer as the error.
fn queue(console: &Console, command: &str, what: &str) -> Result<(u64, String)> {
    let out = console.run(&[command.to_string()], 0)?;
    match parse::queued_jobid(&out) {
        Some(id) => Ok((id, out)),
        None => {
            let answer = parse::director_answer(&out, command, 6);
            bail!(
                "the {} director {} did not start the {what}: `{command}` answered:\n  {}",
                console.method().product(),
                console.address(),
                if answer.is_empty() { "(nothing)".to_string() } else { answer.replace('\n', "\n  ") }
            )
        }
    }
}

/// `mkbackup` with a backup server: run the client's backup job and wait
/// for it (mode run), or check that the newest good backup is younger than
/// the RPO (mode check).
pub fn mkbackup(cfg: &ServerConfig, director: Director) -> Result<MkbackupReport> {
    let console = Console::open(cfg, director)?;
    let client = client_name(cfg);
    let product = console.method().product();
    let job = match cfg.mkbackup_mode {
        MkbackupMode::Run => {
            let Some(name) = &cfg.backup_job else {
                return Err(input_error("backup.server.mkbackup-mode = \"run\" needs backup.server.backup-job (the director's job that backs up this client)"));
            };
            let mut command = format!("run job={} client={}", arg_quote(name)?, arg_quote(&client)?);
            if let Some(f) = &cfg.fileset {
                command.push_str(&format!(" fileset={}", arg_quote(f)?));
            }
            if let Some(s) = &cfg.storage {
                command.push_str(&format!(" storage={}", arg_quote(s)?));
            }
            if let Some(p) = &cfg.pool {
                command.push_str(&format!(" pool={}", arg_quote(p)?));
            }
            command.push_str(" yes");
            let (jobid, _) = queue(&console, &command, "backup job")?;
            tracing::info!("{product} backup job {jobid} ({name}) queued for {client}");
            let job = follow_job(&console, cfg, jobid, "backup", &client)?;
            if !job.succeeded() {
                return Err(job_failed(&console, "backup", &job));
            }
            job
        }
        MkbackupMode::Check => last_good_backup(&console, cfg)?,
    };
    let age_hours = job.end_epoch.map(|e| (now_epoch() - e).max(0) as f64 / 3600.0);
    if cfg.mkbackup_mode == MkbackupMode::Check {
        match age_hours {
            Some(age) if rpo_missed(age, cfg.rpo_hours) => bail!(
                "the newest successful backup of {client} on the {product} director is {age:.1} hours old (job {}, {} {}, ended {}): older than backup.server.rpo-hours = {}. Run a backup job for it",
                job.jobid,
                job.level_name(),
                job.name,
                job.end_time,
                cfg.rpo_hours
            ),
            Some(_) => {}
            None => tracing::warn!("the director gave no end time for job {}: its age is unknown", job.jobid),
        }
    }
    Ok(MkbackupReport { director: console.address(), client, mode: cfg.mkbackup_mode, job, age_hours, rpo_hours: cfg.rpo_hours })
}

/// The newest good backup must be younger than the RPO: one exactly as old (a backup that
/// ended this very second, against `rpo-hours = 0`) misses it too.
fn rpo_missed(age_hours: f64, rpo_hours: u64) -> bool {
    age_hours >= rpo_hours as f64
}

/// What a restore would take, found without changing anything.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preflight {
    pub director: String,
    /// The director's greeting (name and version).
    pub greeting: String,
    pub client: String,
    /// The backup a restore would start from (the newest good one, or the one `--restore-jobid` names).
    pub backup: Option<JobInfo>,
}

/// Check before anything is destroyed that a restore can work: the director
/// answers, accepts the console, and holds a backup of this client (the
/// named job, when one is). `recover` calls this before wiping disks.
pub fn preflight(cfg: &ServerConfig, director: Director, sel: &Pick) -> Result<Preflight> {
    let console = Console::open(cfg, director)?;
    let greeting = console.hello()?;
    let client = client_name(cfg);
    let backup = match (sel.jobid, &sel.before) {
        (Some(id), _) => {
            let job = console.jobs(&format!("llist jobid={id}"))?.into_iter().find(|j| j.jobid == id);
            match job {
                Some(j) if j.job_type == "B" && j.succeeded() => Some(j),
                Some(j) => {
                    return Err(input_error(format!(
                        "job {id} on the director is not a good backup (type {}, status {}: {}); choose another with --restore-jobid",
                        j.job_type,
                        j.status,
                        parse::status_name(&j.status)
                    )))
                }
                None => return Err(input_error(format!("the director has no job {id} (--restore-jobid)"))),
            }
        }
        // The director picks the backups before a date itself.
        (None, Some(_)) => None,
        (None, None) => Some(last_good_backup(&console, cfg)?),
    };
    Ok(Preflight { director: console.address(), greeting, client, backup })
}

/// The restore command for a selection.
pub fn restore_command(cfg: &ServerConfig, client: &str, target: &Path, sel: &Pick) -> Result<String> {
    let where_ = target.to_str().ok_or_else(|| input_error(format!("the target {} is not UTF-8", target.display())))?;
    let mut c = String::from("restore");
    if let Some(id) = sel.jobid {
        c.push_str(&format!(" jobid={id}"));
    }
    c.push_str(&format!(" client={}", arg_quote(client)?));
    if let (Some(f), None) = (&cfg.fileset, sel.jobid) {
        c.push_str(&format!(" fileset={}", arg_quote(f)?));
    }
    c.push_str(&format!(" where={}", arg_quote(where_)?));
    if let Some(j) = &cfg.restore_job {
        c.push_str(&format!(" restorejob={}", arg_quote(j)?));
    }
    if let Some(s) = &cfg.storage {
        c.push_str(&format!(" storage={}", arg_quote(s)?));
    }
    c.push_str(" replace=always");
    match (&sel.jobid, &sel.before) {
        (Some(_), Some(_)) => return Err(input_error("--restore-jobid and --restore-before exclude each other")),
        (Some(_), None) => c.push_str(" all done yes"),
        (None, Some(d)) => {
            let d = parse::director_date(d)
                .ok_or_else(|| input_error(format!("--restore-before {d:?} is not a date: write YYYY-MM-DD or \"YYYY-MM-DD HH:MM[:SS]\"")))?;
            c.push_str(&format!(" before=\"{d}\" select all done yes"));
        }
        (None, None) => c.push_str(" select current all done yes"),
    }
    Ok(c)
}

/// Restore this client's backup (the newest, or the one `sel` names) into
/// `target_root` through the director, follow the job to its end, and
/// check its status and file count. Every failure is an error carrying the
/// director's own message: unreachable, authentication refused, no backup,
/// job in error, fewer files than expected.
pub fn restore(cfg: &ServerConfig, director: Director, target_root: &Path, sel: &Pick) -> Result<RestoreReport> {
    if !target_root.is_dir() {
        return Err(input_error(format!("the target root {} does not exist: create and mount the filesystems there first", target_root.display())));
    }
    let started = Instant::now();
    let console = Console::open(cfg, director)?;
    let product = console.method().product();
    let client = client_name(cfg);
    let command = restore_command(cfg, &client, target_root, sel)?;
    tracing::info!("asking the {product} director {} to restore {client} into {}", console.address(), target_root.display());
    let (jobid, out) = queue(&console, &command, "restore").map_err(|e| {
        let text = format!("{e:#}");
        if text.contains("Could not find Client") {
            input_error(format!("the director does not know the client {client} (backup.server.client): {text}"))
        } else if text.contains("No Full backup") || text.contains("No jobs found") || text.contains("No backup") {
            input_error(format!("no backup of the client {client} to restore: {text}"))
        } else {
            e
        }
    })?;
    let expected = parse::selected_files(&out).unwrap_or(0);
    tracing::info!("{product} restore job {jobid} queued: {expected} files selected");
    let job = follow_job(&console, cfg, jobid, "restore", &client)?;
    if !job.succeeded() || job.errors > 0 {
        return Err(job_failed(&console, "restore", &job));
    }
    let floor = expected.max(cfg.min_files);
    if job.files < floor {
        let why = if job.files < expected { format!("the director selected {expected}") } else { format!("backup.server.min-files = {}", cfg.min_files) };
        let mut problems = console.job_problems(jobid);
        problems.retain(|p| !p.starts_with("Termination:"));
        bail!(
            "the {product} restore job {jobid} restored {} files into {}, fewer than expected ({why}); the restored system would be incomplete{}",
            job.files,
            target_root.display(),
            if problems.is_empty() { String::new() } else { format!("; the director says:\n  {}", problems.join("\n  ")) }
        );
    }
    // Bacula 9.6 ends a restore with T even when the file daemon warned (an
    // ACL or attribute it could not set): the job log tells, whatever the status.
    let mut warnings = console.job_problems(jobid);
    warnings.retain(|p| !p.starts_with("Termination:"));
    for w in &warnings {
        tracing::warn!("{product} restore job {jobid}: {w}");
    }
    Ok(RestoreReport {
        director: console.address(),
        client,
        job,
        expected_files: expected,
        target: target_root.display().to_string(),
        seconds: started.elapsed().as_secs_f64(),
        warnings,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn restore_commands() {
        let cfg = ServerConfig { fileset: Some("Linux All".into()), restore_job: Some("RestoreFiles".into()), ..Default::default() };
        let t = Path::new("/mnt/local");
        assert_eq!(
            restore_command(&cfg, "web1-fd", t, &Pick::default()).unwrap(),
            "restore client=web1-fd fileset=\"Linux All\" where=/mnt/local restorejob=RestoreFiles replace=always select current all done yes"
        );
        assert_eq!(
            restore_command(&cfg, "web1-fd", t, &Pick { jobid: Some(42), ..Default::default() }).unwrap(),
            "restore jobid=42 client=web1-fd where=/mnt/local restorejob=RestoreFiles replace=always all done yes"
        );
        assert!(restore_command(&cfg, "web1-fd", t, &Pick { before: Some("2026-01-02".into()), ..Default::default() })
            .unwrap()
            .ends_with("before=\"2026-01-02 00:00:00\" select all done yes"));
        assert!(restore_command(&cfg, "web1-fd", t, &Pick { before: Some("last week".into()), ..Default::default() }).is_err());
        assert!(restore_command(&cfg, "web1-fd", t, &Pick { jobid: Some(1), before: Some("2026-01-02".into()), ..Default::default() }).is_err());
    }

    /// A stand-in for Bareos' bconsole: answers in `.api 2` JSON like Bareos
    /// does, so the Bareos path runs end to end without a Bareos director
    /// (Debian 12 has none). `STATUS` is the restore job's final status.
    fn fake_bareos(dir: &Path, status: &str) -> std::path::PathBuf {
        let script = format!(
            r#"#!/bin/sh
echo "Connecting to Director 127.0.0.1:9101"
echo " Encryption: TLS_CHACHA20_POLY1305_SHA256 TLSv1.3"
echo "1000 OK: bareos-dir Version: 23.0.3 (26 September 2024)"
while read -r line; do
  case "$line" in
    ".api 2") printf '%s\n' '{{"jsonrpc":"2.0","id":null,"result":{{"api":2}}}}' ;;
    version) echo "bareos-dir Version: 23.0.3" ;;
    restore*) echo "$line"; echo "1,234 files selected to be restored."; echo "Job queued. JobId=42" ;;
    "llist jobid=42") printf '%s\n' '{{"jsonrpc":"2.0","id":null,"result":{{"jobs":[{{"jobid":"42","name":"RestoreFiles","type":"R","level":"F","clientname":"web1-fd","jobstatus":"{status}","jobfiles":"1234","jobbytes":"5678","joberrors":"0","jobtdate":"1767387790"}}]}}}}' ;;
    "llist jobs client=web1-fd") printf '%s\n' '{{"jsonrpc":"2.0","id":null,"result":{{"jobs":[{{"jobid":"7","name":"backup-web1","type":"B","level":"I","clientname":"web1-fd","jobstatus":"T","jobfiles":"10","jobbytes":"99","joberrors":"0","fileset":"LinuxAll","jobtdate":"{now}"}}]}}}}' ;;
    "llist joblog jobid=42") printf '%s\n' '{{"jsonrpc":"2.0","id":null,"result":{{"joblog":[{{"time":"2026-01-02 21:00:02","logtext":"bareos-dir JobId 42: Fatal error: Bareos cannot write on disk: /mnt/local/etc: ERR=Read-only file system\n"}}]}}}}' ;;
    status*) echo "No Jobs running." ;;
    quit) exit 0 ;;
  esac
done
"#,
            now = now_epoch() - 3600
        );
        let p = dir.join("bconsole");
        std::fs::write(&p, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn a_backup_as_old_as_the_rpo_misses_it() {
        assert!(rpo_missed(0.0, 0), "rpo-hours = 0 fails even for a backup that ended this second");
        assert!(rpo_missed(26.0, 26) && rpo_missed(26.1, 26));
        assert!(!rpo_missed(25.99, 26));
    }

    #[test]
    fn bareos_json_path_end_to_end_with_a_stand_in_console() {
        let dir = tempfile::tempdir().unwrap();
        // Something must accept the TCP check; the fake console does the rest.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "secret\n").unwrap();
        let mut cfg = ServerConfig {
            address: Some("127.0.0.1".into()),
            port: listener.local_addr().unwrap().port(),
            password_file: pw,
            client: Some("web1-fd".into()),
            fileset: Some("LinuxAll".into()),
            mkbackup_mode: MkbackupMode::Check,
            rpo_hours: 2,
            poll_interval: 1,
            bconsole: Some(fake_bareos(dir.path(), "T")),
            ..Default::default()
        };
        let target = dir.path().join("target");
        std::fs::create_dir(&target).unwrap();
        let r = restore(&cfg, Director::Bareos, &target, &Pick::default()).unwrap();
        assert_eq!((r.job.jobid, r.job.files, r.expected_files), (42, 1234, 1234));
        let m = mkbackup(&cfg, Director::Bareos).unwrap();
        assert_eq!((m.job.jobid, m.job.level_name()), (7, "incremental"));
        assert!(m.age_hours.unwrap() > 0.9 && m.age_hours.unwrap() < 1.1);
        cfg.rpo_hours = 0;
        assert!(format!("{:#}", mkbackup(&cfg, Director::Bareos).unwrap_err()).contains("older than backup.server.rpo-hours = 0"));
        // A fatal error: the Bareos job log (JSON) is the message.
        cfg.bconsole = Some(fake_bareos(dir.path(), "f"));
        let e = format!("{:#}", restore(&cfg, Director::Bareos, &target, &Pick::default()).unwrap_err());
        assert!(e.contains("Bareos restore job 42 ended with status f (fatal error)"), "{e}");
        assert!(e.contains("Fatal error: Bareos cannot write on disk: /mnt/local/etc: ERR=Read-only file system"), "{e}");
        // Terminated with warnings (Bareos' W) succeeds, the warnings reported.
        cfg.bconsole = Some(fake_bareos(dir.path(), "W"));
        let r = restore(&cfg, Director::Bareos, &target, &Pick::default()).unwrap();
        assert_eq!(r.job.status, "W");
        assert!(r.warnings.iter().any(|w| w.contains("ERR=Read-only file system")), "{:?}", r.warnings);
        drop(listener);
    }

    #[test]
    fn the_log_names_the_backup_job_not_an_option() {
        let j = JobInfo { jobid: 7, level: "F".into(), files: 18635, end_time: "2026-11-26 14:09:33".into(), ..Default::default() };
        assert_eq!(backup_held(Some(&j)), "backup job 7 (full, 18635 files, ended 2026-11-26 14:09:33)");
        assert!(backup_held(None).contains("--restore-before"));
    }

    #[test]
    fn the_backend_shows_the_director_never_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let mut cfg = BackupConfig { method: BackupMethod::Bareos, ..Default::default() };
        cfg.server = ServerConfig { address: Some("dir.example".into()), password_file: pw, client: Some("web1-fd".into()), ..Default::default() };
        let b = DirectorBackend::new(&cfg);
        assert_eq!(b.describe(), "Bareos director dir.example:9101, client web1-fd");
        assert!(!b.follows_the_descriptor());
        let shown = b.settings().unwrap();
        let text = shown.to_string();
        assert!(text.starts_with("backup server (Bareos): director dir.example:9101") && text.contains("password ******** (from"), "{text}");
        let json = serde_json::to_value(&shown).unwrap();
        assert_eq!(json["client"], "web1-fd");
        assert!(!text.contains("s3cret") && !json.to_string().contains("s3cret"));
        let names: Vec<String> = b.rescue_needs().programs.into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["bareos-fd", "bconsole", "timeout"]);
    }

    #[test]
    fn client_defaults_to_hostname_fd() {
        assert!(client_name(&ServerConfig::default()).ends_with("-fd"));
        assert_eq!(client_name(&ServerConfig { client: Some("x-fd".into()), ..Default::default() }), "x-fd");
    }
}
