//! The rsync method: the backup is a file tree on an rsync server
//! (`rsync://host/module/path`) or reached over ssh (`host:/path`),
//! copied with `rsync -aHAX --numeric-ids` and copied back on restore.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{Backed, Backend, BackupReport, BackupSet, BackupUsed, Chains, CheckOptions, ImageParts, Location, Pick, RestoreOptions, Restored, Settings};
use crate::archive::{CreateReport, ExtractReport};
use crate::cmd::Cmd;
use crate::layout::Layout;
use crate::needs::Needs;

/// A file tree per host at `spec` (`rsync://host/module/path` or `host:/path`).
pub struct RsyncBackend {
    url: String,
    spec: String,
}

impl RsyncBackend {
    pub fn new(url: &str, spec: &str) -> RsyncBackend {
        RsyncBackend { url: url.to_string(), spec: spec.to_string() }
    }

    /// A tree holds one backup: there is nothing to choose.
    fn refuse_choice(&self, pick: &Pick) -> Result<()> {
        if pick.archive.is_some() {
            crate::bail_input!("--archive names an archive file, but {} is an rsync destination (a file tree)", self.url);
        }
        pick.no_jobs("an rsync tree")
    }
}

impl Backend for RsyncBackend {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn follows_the_descriptor(&self) -> bool {
        true
    }

    fn chains(&self) -> Chains {
        Chains::NotMade { method: "the rsync method".into(), instead: "rsync updates one tree and copies only what changed since the last run anyway" }
    }

    fn backup(&self, set: &BackupSet) -> Result<Backed> {
        let layout = set.recorded()?;
        let mut sources = set.mounts.clone();
        sources.extend(super::nested_subvolume_dirs(layout, &set.mounts));
        let host = super::host_dir_name(layout);
        let create = backup(&set.root, &sources, &set.patterns, &set.exclude_paths, &self.spec, &host)?;
        Ok(Backed::Archive(BackupReport { url: self.url.clone(), archive: format!("{}/{host}/", self.spec), create, mounts: set.mounts.clone(), link: None }))
    }

    fn check(&self, layout: Option<&Layout>, pick: &Pick, _opts: &CheckOptions) -> Result<BackupUsed> {
        self.refuse_choice(pick)?;
        let src = dest_dir(&self.spec, &super::host_dir_name(super::descriptor(layout)?));
        Cmd::new("rsync").arg("--list-only").arg(&src).output().with_context(|| format!("the rsync backup {src} is not reachable; nothing was written"))?;
        Ok(BackupUsed::at(&self.url, pick))
    }

    fn restore(&self, layout: Option<&Layout>, pick: &Pick, target: &Path, _opts: &RestoreOptions) -> Result<Restored> {
        self.refuse_choice(pick)?;
        Ok(Restored::Files(restore(&self.spec, &super::host_dir_name(super::descriptor(layout)?), target)?))
    }

    fn list(&self, layout: Option<&Layout>) -> Result<Vec<String>> {
        let src = dest_dir(&self.spec, &super::host_dir_name(super::descriptor(layout)?));
        Cmd::new("rsync").arg("--list-only").arg(&src).output().with_context(|| format!("listing the rsync backup {src}"))?;
        Ok(vec![src])
    }

    fn keep(&self, _layout: Option<&Layout>) -> Result<Vec<String>> {
        // One tree per host, updated in place: nothing older to delete.
        Ok(Vec::new())
    }

    fn rescue_needs(&self) -> Needs {
        Location::Rsync(self.spec.clone()).rescue_needs(&self.url)
    }

    fn image_parts(&self) -> Result<ImageParts> {
        Ok(ImageParts::default())
    }

    fn settings(&self) -> Option<Settings> {
        None
    }
}

/// rsync exit code 24: "some files vanished before they could be transferred".
const VANISHED: i32 = 24;
/// 23: partial transfer (some files unreadable).
const PARTIAL: i32 = 23;

fn dest_dir(spec: &str, host: &str) -> String {
    format!("{}/{host}/", spec.trim_end_matches('/'))
}

/// Copy the mounts under `root` to `spec/host/`, one filesystem each.
fn backup(root: &Path, mounts: &[String], patterns: &[String], exclude_paths: &[PathBuf], spec: &str, host: &str) -> Result<CreateReport> {
    if !crate::cmd::have_program("rsync") {
        anyhow::bail!("the rsync method needs rsync: apt-get install rsync");
    }
    let mut cmd = Cmd::new("rsync").args(["-aHAXS", "--numeric-ids", "--one-file-system", "--relative", "--delete", "--delete-excluded", "--stats"]);
    for p in patterns {
        cmd = cmd.arg(format!("--exclude={p}"));
    }
    for p in exclude_paths {
        if let Ok(rel) = p.strip_prefix(root) {
            cmd = cmd.arg(format!("--exclude=/{}", rel.display()));
        }
    }
    // ROOT/./mount: --relative keeps only what follows "/./".
    for m in mounts {
        let rel = m.trim_start_matches('/');
        let src = format!("{}/./{}", root.display().to_string().trim_end_matches('/'), rel);
        cmd = cmd.arg(src);
    }
    let dest = dest_dir(spec, host);
    // Make the host directory (rsync creates only the last level).
    cmd = cmd.arg(&dest).ok_codes(&[VANISHED, PARTIAL]);
    let out = cmd.output().with_context(|| format!("copying the system to {dest} with rsync"))?;
    let mut report = CreateReport::default();
    match out.code {
        Some(VANISHED) => report.warnings.push("some files vanished while rsync copied them (rsync exit code 24)".into()),
        Some(PARTIAL) => report.warnings.push(format!(
            "rsync could not copy some files (exit code 23): {}",
            String::from_utf8_lossy(&out.stderr).lines().take(20).collect::<Vec<_>>().join("; ")
        )),
        _ => {}
    }
    let stats = String::from_utf8_lossy(&out.stdout);
    for l in stats.lines() {
        if let Some(v) = l.strip_prefix("Number of regular files transferred: ") {
            report.files = v.replace(',', "").trim().parse().unwrap_or(0);
        }
        if let Some(v) = l.strip_prefix("Total transferred file size: ") {
            report.bytes = v.split_whitespace().next().unwrap_or("0").replace(',', "").parse().unwrap_or(0);
        }
    }
    Ok(report)
}

/// Copy `spec/host/` back into the target root.
fn restore(spec: &str, host: &str, target: &Path) -> Result<ExtractReport> {
    std::fs::create_dir_all(target).with_context(|| format!("creating {}", target.display()))?;
    let src = dest_dir(spec, host);
    let out = Cmd::new("rsync")
        .args(["-aHAXS", "--numeric-ids", "--stats"])
        .arg(&src)
        .arg(format!("{}/", target.display()))
        .ok_codes(&[PARTIAL])
        .output()
        .with_context(|| format!("restoring {src} into {} with rsync", target.display()))?;
    let mut r = ExtractReport { manifest_checked: true, ..ExtractReport::default() };
    if out.code == Some(PARTIAL) {
        r.warnings.push(format!("rsync could not restore some files: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(v) = l.strip_prefix("Number of files: ") {
            r.entries = v.split_whitespace().next().unwrap_or("0").replace(',', "").parse().unwrap_or(0);
        }
    }
    Ok(r)
}
