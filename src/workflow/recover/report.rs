//! The recovery report: per-phase times, the total (the achieved RTO), what
//! was restored, warnings (the plan's changes from the recorded system, the
//! restore's, and every warning a tool printed while it succeeded). Printed
//! at the end (`--json`: as data) and
//! written into the recovered system as `/var/log/rescue/recover-DATE.log`
//! (with the debug log of the run) and `recover-DATE.json`.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::backup::BackupUsed;
use crate::cmd::WarningMark;
use crate::plan::DiskAssignment;
use crate::util::human_bytes;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PhaseTime {
    pub name: String,
    pub seconds: f64,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct MappedDisk {
    pub recorded: String,
    pub device: PathBuf,
    pub reason: String,
}

impl From<&DiskAssignment> for MappedDisk {
    fn from(m: &DiskAssignment) -> Self {
        MappedDisk { recorded: m.recorded.clone(), device: m.device.clone(), reason: m.reason.to_string() }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Restored {
    /// Files, directories, links and special files written.
    pub entries: u64,
    /// Bytes of file data written.
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    pub host: String,
    pub descriptor: PathBuf,
    pub target_root: PathBuf,
    pub unattended: bool,
    /// RFC 3339 start time.
    pub started: String,
    pub phases: Vec<PhaseTime>,
    /// From the start to the end of the last phase: the achieved recovery time.
    pub total_seconds: f64,
    pub mapping: Vec<MappedDisk>,
    /// Recorded NICs and the NICs here that took their place.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nics: Vec<crate::plan::NicAssignment>,
    pub backup: Option<BackupUsed>,
    /// When the backup's content was checked: in full before writing, or
    /// while restoring (one pass, on blank disks); decided in plan.
    pub verify_mode: Option<super::verify::VerifyMode>,
    pub restored: Option<Restored>,
    /// Finalize steps that ran.
    pub finalize: Vec<String>,
    /// The pre-recover and post-recover hooks that ran, with their output.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<crate::hooks::HookRun>,
    pub warnings: Vec<String>,
    /// `ok` or `failed`.
    pub result: String,
    pub failed_phase: Option<String>,
    pub error: Option<String>,
    pub next_step: Option<String>,
    /// The log written into the recovered system (path as seen from the rescue system).
    pub log: Option<PathBuf>,
    /// Unmounting after the report (not part of the total).
    pub unmount_seconds: Option<f64>,
}

impl Report {
    pub fn new(descriptor: &Path, target_root: &Path, unattended: bool) -> Report {
        Report {
            host: String::new(),
            descriptor: descriptor.to_path_buf(),
            target_root: target_root.to_path_buf(),
            unattended,
            started: crate::util::now_rfc3339(),
            phases: Vec::new(),
            total_seconds: 0.0,
            mapping: Vec::new(),
            nics: Vec::new(),
            backup: None,
            verify_mode: None,
            restored: None,
            finalize: Vec::new(),
            hooks: Vec::new(),
            warnings: Vec::new(),
            result: "running".into(),
            failed_phase: None,
            error: None,
            next_step: None,
            log: None,
            unmount_seconds: None,
        }
    }

    /// Close the report: total time, result, and on failure the phase, the error and what to do.
    pub fn finish(&mut self, started: Instant, phases: &Phases, error: Option<&anyhow::Error>, next: impl Fn(&str) -> String) {
        self.total_seconds = started.elapsed().as_secs_f64();
        self.phases = phases.done.clone();
        match error {
            None => self.result = "ok".into(),
            Some(e) => {
                self.result = "failed".into();
                let phase = phases.current.clone().unwrap_or_else(|| "verify".into());
                self.next_step = Some(next(&phase));
                self.failed_phase = Some(phase);
                self.error = Some(format!("{e:#}"));
            }
        }
    }

    /// The report for a person.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let status = if self.result == "ok" { "finished" } else { "FAILED" };
        s += &format!("\nRecovery of {} {status} in {:.1} s\n", if self.host.is_empty() { "?" } else { &self.host }, self.total_seconds);
        for p in &self.phases {
            let detail = match p.name.as_str() {
                "verify" => self.backup.as_ref().map(|b| b.to_string()).unwrap_or_default(),
                "plan" => {
                    let disks = self.mapping.iter().map(|m| format!("{} -> {}", m.recorded, m.device.display()));
                    let nics = self.nics.iter().map(|n| format!("{} -> {}", n.recorded, n.new_name));
                    disks.chain(nics).chain(self.verify_mode.iter().map(|m| m.to_string())).collect::<Vec<_>>().join(", ")
                }
                "restore" => self.restored.as_ref().map(|r| format!("{} entries, {}", r.entries, human_bytes(r.bytes))).unwrap_or_default(),
                "finalize" => format!("{} steps", self.finalize.len()),
                _ => String::new(),
            };
            let line = format!("  {:<9} {:>8.1} s  {}{}", p.name, p.seconds, if p.ok { "" } else { "FAILED " }, detail);
            s += line.trim_end();
            s.push('\n');
        }
        s += &format!("  {:<9} {:>8.1} s\n", "total", self.total_seconds);
        for step in &self.finalize {
            s += &format!("  finalize: {step}\n");
        }
        for h in &self.hooks {
            let how = if h.ok() { format!("ok in {:.1} s", h.seconds) } else { h.failure() };
            s += &format!("  hook {}: {how}\n", h.phase);
            for line in h.output.lines() {
                s += &format!("    | {line}\n");
            }
        }
        s += &warnings_text(&self.warnings);
        if let Some(l) = &self.log {
            s += &format!("Log: {}\n", l.display());
        }
        if let Some(p) = &self.failed_phase {
            s += &format!("Stopped in phase {p}.\n");
        }
        s
    }

    /// Add the warnings tools printed since `mark` while they succeeded
    /// (each once, also when called again after more commands ran).
    pub fn add_tool_warnings(&mut self, mark: &WarningMark) {
        for w in mark.since() {
            let w = format!("tool {w}");
            if !self.warnings.contains(&w) {
                self.warnings.push(w);
            }
        }
    }

    fn stamp(&self) -> String {
        // 2026-11-26T10:40:12Z -> 20261126-104012
        let digits: String = self.started.chars().filter(|c| c.is_ascii_digit()).take(14).collect();
        if digits.len() == 14 {
            format!("{}-{}", &digits[..8], &digits[8..])
        } else {
            "unknown".into()
        }
    }

    /// Write `recover-DATE.log` (the report, then this run's debug log) and
    /// `recover-DATE.json` into `dir`; returns the log's path.
    pub fn write_to_dir(&self, dir: &Path, mark: &LogMark) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let base = format!("recover-{}", self.stamp());
        let log = dir.join(format!("{base}.log"));
        let mut text = self.text();
        text += "\n--- debug log of this run ---\n";
        text += &mark.since();
        crate::util::write_atomic(&log, text.as_bytes(), 0o600)?;
        let json = serde_json::to_string_pretty(self)?;
        crate::util::write_atomic(&dir.join(format!("{base}.json")), json.as_bytes(), 0o600)?;
        Ok(log)
    }

    /// Write the log into the recovered system's `/var/log/rescue`.
    pub fn write_into(&self, root: &crate::target::TargetRoot, mark: &LogMark) -> Result<PathBuf> {
        let mut copy = self.clone();
        let dir = root.join("var/log/rescue")?;
        copy.log = Some(dir.join(format!("recover-{}.log", self.stamp())));
        copy.write_to_dir(&dir, mark)
    }
}

/// "Warnings: none", or the count and one warning a line: "none" only when
/// there are none.
pub fn warnings_text(warnings: &[String]) -> String {
    if warnings.is_empty() {
        return "Warnings: none\n".into();
    }
    let mut s = format!("Warnings ({}):\n", warnings.len());
    for w in warnings {
        s += &format!("  - {w}\n");
    }
    s
}

/// Where this run's lines start in the rescue log (`LOG_DIR/rescue.log`).
pub struct LogMark {
    file: PathBuf,
    offset: u64,
}

impl LogMark {
    pub fn now(log_dir: &Path) -> LogMark {
        let file = log_dir.join("rescue.log");
        let offset = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        LogMark { file, offset }
    }

    /// The log lines written since the mark (at most the last 8 MiB).
    pub fn since(&self) -> String {
        let Ok(mut f) = std::fs::File::open(&self.file) else { return String::new() };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let from = self.offset.max(len.saturating_sub(8 << 20));
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(from)).is_ok() {
            let _ = f.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// Runs phases in order, timing and logging each.
pub struct Phases {
    done: Vec<PhaseTime>,
    current: Option<String>,
    quiet: bool,
    /// verify, plan, storage, restore, finalize; and check when the backup
    /// is read in full before writing.
    count: usize,
}

impl Phases {
    pub fn new(quiet: bool) -> Phases {
        Phases { done: Vec::new(), current: None, quiet, count: 5 }
    }

    /// One more phase than the five of every recovery will run (check).
    pub fn add_one(&mut self) {
        self.count += 1;
    }

    pub fn run<T>(&mut self, rep: &mut Report, name: &str, what: &str, f: impl FnOnce(&mut Report) -> Result<T>) -> Result<T> {
        let n = self.done.len() + 1;
        self.current = Some(name.to_string());
        tracing::info!("phase {n}/{} {name}: {what}", self.count);
        if !self.quiet {
            eprintln!("==> phase {n}/{} {name}: {what}", self.count);
        }
        let t = Instant::now();
        let r = f(rep);
        let seconds = t.elapsed().as_secs_f64();
        self.done.push(PhaseTime { name: name.to_string(), seconds, ok: r.is_ok() });
        match &r {
            Ok(_) => {
                tracing::info!("phase {name} done in {seconds:.1} s");
                self.current = None;
            }
            Err(e) => tracing::error!("phase {name} failed after {seconds:.1} s: {e:#}"),
        }
        r
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_timed_and_the_failing_one_named() {
        let mut rep = Report::new(Path::new("/etc/rescue/layout.toml"), Path::new("/mnt/local"), true);
        let mut p = Phases::new(true);
        let start = Instant::now();
        p.run(&mut rep, "verify", "x", |r| {
            r.host = "h".into();
            Ok(())
        })
        .unwrap();
        let e = p.run(&mut rep, "plan", "y", |_| -> Result<()> { anyhow::bail!("ambiguous") }).unwrap_err();
        rep.finish(start, &p, Some(&e), |ph| format!("fix {ph}"));
        assert_eq!(rep.result, "failed");
        assert_eq!(rep.failed_phase.as_deref(), Some("plan"));
        assert_eq!(rep.next_step.as_deref(), Some("fix plan"));
        assert_eq!(rep.phases.iter().map(|p| (p.name.as_str(), p.ok)).collect::<Vec<_>>(), vec![("verify", true), ("plan", false)]);
        let t = rep.text();
        assert!(t.contains("Recovery of h FAILED") && t.contains("Stopped in phase plan."), "{t}");
        rep.started = "2026-11-26T10:40:12Z".into();
        assert_eq!(rep.stamp(), "20261126-104012");
    }

    #[test]
    fn a_tool_warning_of_a_succeeding_command_is_in_the_report() {
        let mut rep = Report::new(Path::new("/etc/rescue/layout.toml"), Path::new("/mnt/local"), true);
        let mark = WarningMark::now();
        assert!(rep.text().contains("Warnings: none"));
        crate::cmd::Cmd::new("sh").args(["-c", "echo 'mkfs.fat: Warning: lowercase labels might not work properly' >&2"]).run().unwrap();
        rep.add_tool_warnings(&mark);
        rep.add_tool_warnings(&mark);
        assert_eq!(rep.warnings.len(), 1, "{:?}", rep.warnings);
        let t = rep.text();
        assert!(t.contains("Warnings (1):\n  - tool `sh -c") && t.contains("lowercase labels might not work properly"), "{t}");
        assert!(!t.contains("Warnings: none"), "{t}");
    }
}
