//! The user's hooks: commands `rescue` runs around a backup and a recovery
//! (`[hooks]` in the config, docs/config.md), e.g. a database dump before
//! the backup reads the disk. Each is a shell command line run by `sh -c`
//! under a timeout, with what it needs to know in its environment:
//!
//! | variable | value |
//! |---|---|
//! | `RESCUE_PHASE` | `pre-backup`, `post-backup`, `pre-recover`, `post-recover` |
//! | `RESCUE_TARGET_ROOT` | the root backed up, or where the recovered system is mounted |
//! | `RESCUE_ARCHIVE` | the destination before a backup; the archive (or director job) after it |
//! | `RESCUE_RESULT` | `ok` or `failed` (post-backup only) |
//!
//! A failing or timed-out `pre-*` hook stops the run before anything is
//! written; a failing `post-*` hook is a warning. Output goes to the log and
//! into the [`HookRun`] the caller reports.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::cmd::Cmd;

/// Seconds a hook may run when neither `hooks.timeout` nor its own `timeout` says otherwise.
pub const DEFAULT_TIMEOUT: u64 = 300;
/// Seconds between the polite SIGTERM and the SIGKILL of a hook that timed out.
const KILL_AFTER: u64 = 10;
/// Bytes of a hook's output kept for the report (the log gets all of it).
const OUTPUT_KEPT: usize = 4096;
/// `timeout`'s exit codes when it had to stop the command.
const TIMED_OUT: [i32; 2] = [124, 137];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct HooksConfig {
    /// Seconds each hook may run unless it sets its own.
    pub timeout: u64,
    /// Before a backup reads anything (e.g. dump a database).
    pub pre_backup: Option<Hook>,
    /// After the backup, also a failed one; `RESCUE_RESULT` says which.
    pub post_backup: Option<Hook>,
    /// In the rescue system, before any disk is touched.
    pub pre_recover: Option<Hook>,
    /// In a chroot of the recovered system, after finalize.
    pub post_recover: Option<Hook>,
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig { timeout: DEFAULT_TIMEOUT, pre_backup: None, post_backup: None, pre_recover: None, post_recover: None }
    }
}

/// One hook: a shell command line, or a table with the command and its own timeout.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Hook {
    Command(String),
    Table(HookTable),
}

/// Either form, with an error that names both (serde's untagged enums only
/// say that nothing matched).
impl<'de> Deserialize<'de> for Hook {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Hook, D::Error> {
        struct Either;
        impl<'de> serde::de::Visitor<'de> for Either {
            type Value = Hook;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a shell command line (a string) or a table { command = \"...\", timeout = SECONDS }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Hook, E> {
                Ok(Hook::Command(v.to_string()))
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, m: M) -> std::result::Result<Hook, M::Error> {
                HookTable::deserialize(serde::de::value::MapAccessDeserializer::new(m)).map(Hook::Table)
            }
        }
        d.deserialize_any(Either)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HookTable {
    pub command: String,
    /// Seconds (default: `hooks.timeout`).
    pub timeout: Option<u64>,
}

impl Hook {
    fn command(&self) -> &str {
        match self {
            Hook::Command(c) => c,
            Hook::Table(t) => &t.command,
        }
    }

    fn timeout(&self, default: u64) -> u64 {
        match self {
            Hook::Command(_) => default,
            Hook::Table(t) => t.timeout.unwrap_or(default),
        }
    }
}

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    PreBackup,
    PostBackup,
    PreRecover,
    PostRecover,
}

impl Phase {
    pub const ALL: [Phase; 4] = [Phase::PreBackup, Phase::PostBackup, Phase::PreRecover, Phase::PostRecover];

    /// The name in the config and in `RESCUE_PHASE`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::PreBackup => "pre-backup",
            Phase::PostBackup => "post-backup",
            Phase::PreRecover => "pre-recover",
            Phase::PostRecover => "post-recover",
        }
    }

    fn hook(self, cfg: &HooksConfig) -> Option<&Hook> {
        match self {
            Phase::PreBackup => cfg.pre_backup.as_ref(),
            Phase::PostBackup => cfg.post_backup.as_ref(),
            Phase::PreRecover => cfg.pre_recover.as_ref(),
            Phase::PostRecover => cfg.post_recover.as_ref(),
        }
    }

    /// A `pre-*` hook guards the run: its failure stops it.
    pub fn stops_the_run(self) -> bool {
        matches!(self, Phase::PreBackup | Phase::PreRecover)
    }

    /// Where nothing has been written yet when this hook fails, in the user's words.
    fn before(self) -> &'static str {
        match self {
            Phase::PreBackup => "no backup was made",
            Phase::PreRecover => "no disk was touched",
            Phase::PostBackup | Phase::PostRecover => "",
        }
    }
}

/// What a hook is told.
#[derive(Debug, Clone, Default)]
pub struct HookEnv {
    /// `RESCUE_TARGET_ROOT`.
    pub target_root: PathBuf,
    /// `RESCUE_ARCHIVE`: the destination, archive file or job.
    pub archive: Option<String>,
    /// `RESCUE_RESULT` (post-backup): whether the backup succeeded.
    pub result: Option<bool>,
    /// Run inside `chroot` of this directory (post-recover).
    pub chroot: Option<PathBuf>,
}

/// One hook that ran: for the log and the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct HookRun {
    pub phase: String,
    pub command: String,
    pub seconds: f64,
    /// The exit code (`None`: killed by a signal).
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// Its stdout then stderr, the last few KiB.
    pub output: String,
}

impl HookRun {
    pub fn ok(&self) -> bool {
        !self.timed_out && self.exit_code == Some(0)
    }

    /// What went wrong, as a sentence (for a failed hook).
    pub fn failure(&self) -> String {
        let how = if self.timed_out {
            "did not finish in time and was killed".to_string()
        } else {
            match self.exit_code {
                Some(c) => format!("failed with exit code {c}"),
                None => "was killed by a signal".to_string(),
            }
        };
        let output = self.output.trim();
        let output = if output.is_empty() { String::new() } else { format!("; its output ends with: {}", last_lines(output, 5)) };
        format!("the {} hook `{}` {how}{output}", self.phase, self.command)
    }
}

/// Run the hook of `phase`, if one is configured. A `pre-*` hook that
/// fails or times out is an error that stops the run; any other hook's
/// failure is only logged, and in the returned [`HookRun`].
pub fn run(cfg: &HooksConfig, phase: Phase, env: &HookEnv) -> Result<Option<HookRun>> {
    let Some(hook) = phase.hook(cfg) else { return Ok(None) };
    let done = execute(hook, cfg.timeout, phase, env)?;
    if done.ok() {
        tracing::info!("{} hook finished in {:.1} s", phase.name(), done.seconds);
    } else if phase.stops_the_run() {
        anyhow::bail!("{}; {}. Fix the hook (or remove hooks.{} from the config) and run again", done.failure(), phase.before(), phase.name());
    } else {
        tracing::warn!("{}", done.failure());
    }
    Ok(Some(done))
}

fn execute(hook: &Hook, default_timeout: u64, phase: Phase, env: &HookEnv) -> Result<HookRun> {
    let timeout = hook.timeout(default_timeout);
    tracing::info!("running the {} hook (at most {timeout} s): {}", phase.name(), hook.command());
    // `timeout` runs the hook in a process group of its own and signals the
    // whole group: a shell's children die with it.
    let mut cmd = Cmd::new("timeout").arg(format!("--kill-after={KILL_AFTER}")).arg(timeout.to_string());
    if let Some(root) = &env.chroot {
        cmd = cmd.arg("chroot").arg(root);
    }
    cmd = cmd.args(["/bin/sh", "-c", hook.command()]).env("RESCUE_PHASE", phase.name()).env("RESCUE_TARGET_ROOT", &env.target_root);
    if let Some(a) = &env.archive {
        cmd = cmd.env("RESCUE_ARCHIVE", a);
    }
    if let Some(ok) = env.result {
        cmd = cmd.env("RESCUE_RESULT", if ok { "ok" } else { "failed" });
    }
    let started = Instant::now();
    let out = cmd.output_any_status()?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    for line in text.lines() {
        tracing::info!("{} hook: {line}", phase.name());
    }
    Ok(HookRun {
        phase: phase.name().to_string(),
        command: hook.command().to_string(),
        seconds: started.elapsed().as_secs_f64(),
        exit_code: out.code,
        timed_out: out.code.is_some_and(|c| TIMED_OUT.contains(&c)),
        output: tail(&text, OUTPUT_KEPT).to_string(),
    })
}

/// The last `n` lines of `text`, joined by ` / ` (for one error line).
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}

/// At most the last `max` bytes of `text`, cut at a character boundary.
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// The environment of a backup hook: `root` is what is backed up.
pub fn backup_env(root: &Path, archive: Option<String>, result: Option<bool>) -> HookEnv {
    HookEnv { target_root: root.to_path_buf(), archive, result, chroot: None }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn hooks_are_a_command_or_a_table() {
        let c = Config::from_toml(
            r#"
            [hooks]
            timeout = 60
            pre-backup = "make_catalog_backup.pl MyCatalog"
            [hooks.post-recover]
            command = "systemctl enable bacula-director"
            timeout = 5
            "#,
        )
        .unwrap();
        assert_eq!(c.hooks.timeout, 60);
        assert_eq!(c.hooks.pre_backup.as_ref().unwrap().timeout(c.hooks.timeout), 60);
        assert_eq!(c.hooks.post_recover.as_ref().unwrap().timeout(c.hooks.timeout), 5);
        assert_eq!(c.hooks.post_recover.as_ref().unwrap().command(), "systemctl enable bacula-director");
        assert!(Config::from_toml("[hooks]\npre-bakup = \"x\"\n").is_err(), "a misspelt hook is refused");
        let e = Config::from_toml("[hooks.pre-backup]\ncommand = \"x\"\ntimout = 3\n").unwrap_err();
        assert!(format!("{e:#}").contains("timout"), "{e:#}");
        let e = Config::from_toml("[hooks]\npost-backup = 5\n").unwrap_err();
        assert!(format!("{e:#}").contains("a shell command line (a string) or a table"), "{e:#}");
        // Each phase has its own key.
        for p in Phase::ALL {
            let c = Config::from_toml(&format!("[hooks]\n{} = \"true\"\n", p.name())).unwrap();
            assert!(p.hook(&c.hooks).is_some(), "{}", p.name());
        }
    }

    fn env_for(dir: &Path) -> HookEnv {
        backup_env(dir, Some("file:///srv/backups".into()), Some(false))
    }

    #[test]
    fn a_hook_sees_its_environment_and_its_output_is_kept() {
        let d = tempfile::tempdir().unwrap();
        let cfg = HooksConfig {
            post_backup: Some(Hook::Command("echo $RESCUE_PHASE $RESCUE_TARGET_ROOT $RESCUE_ARCHIVE $RESCUE_RESULT".into())),
            ..Default::default()
        };
        let r = run(&cfg, Phase::PostBackup, &env_for(d.path())).unwrap().unwrap();
        assert!(r.ok());
        assert_eq!(r.output.trim(), format!("post-backup {} file:///srv/backups failed", d.path().display()));
        assert!(run(&cfg, Phase::PreBackup, &env_for(d.path())).unwrap().is_none(), "no hook, nothing runs");
    }

    #[test]
    fn a_failing_pre_hook_stops_the_run_a_post_hook_does_not() {
        let d = tempfile::tempdir().unwrap();
        let fail = Some(Hook::Command("echo dump failed >&2; exit 7".into()));
        let cfg = HooksConfig { pre_backup: fail.clone(), post_backup: fail, ..Default::default() };
        let e = run(&cfg, Phase::PreBackup, &env_for(d.path())).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("exit code 7") && msg.contains("dump failed") && msg.contains("no backup was made"), "{msg}");
        let r = run(&cfg, Phase::PostBackup, &env_for(d.path())).unwrap().unwrap();
        assert!(!r.ok());
        assert_eq!(r.exit_code, Some(7));
    }

    #[test]
    fn a_hook_that_runs_too_long_is_killed_with_its_children() {
        let d = tempfile::tempdir().unwrap();
        let marker = d.path().join("survived");
        let cmd = format!("(sleep 3; touch {}) & sleep 30", marker.display());
        let cfg = HooksConfig { pre_recover: Some(Hook::Table(HookTable { command: cmd, timeout: Some(1) })), ..Default::default() };
        let started = Instant::now();
        let e = run(&cfg, Phase::PreRecover, &env_for(d.path())).unwrap_err();
        assert!(started.elapsed().as_secs() < 10, "took {:?}", started.elapsed());
        let msg = format!("{e:#}");
        assert!(msg.contains("did not finish in time") && msg.contains("no disk was touched"), "{msg}");
        std::thread::sleep(std::time::Duration::from_secs(3));
        assert!(!marker.exists(), "the hook's child outlived the timeout");
    }
}
