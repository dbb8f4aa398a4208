//! The `[backup.server]` section: how `rescue` reaches a Bacula or Bareos
//! director. Documented key by key in
//! docs/config.md and docs/bareos.md.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Which director: Bacula, or its fork Bareos (other program names, a JSON API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Director {
    Bacula,
    Bareos,
}

impl Director {
    /// The product name, for messages.
    pub fn product(self) -> &'static str {
        match self {
            Director::Bacula => "Bacula",
            Director::Bareos => "Bareos",
        }
    }
}

/// What `mkbackup`/`mkbackuponly` does with a backup server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MkbackupMode {
    /// Ask the director to run `backup-job` for this client and wait for its end.
    #[default]
    Run,
    /// Only check that the last successful backup of this client is younger than `rpo-hours`.
    Check,
}

/// Where the console password is read from by default; `mkrescue` puts the
/// configured file here in the image (the image's config loses the key).
pub const DEFAULT_PASSWORD_FILE: &str = "/etc/rescue/director.password";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ServerConfig {
    /// Host name or IP address of the director.
    pub address: Option<String>,
    /// The director's console port.
    pub port: u16,
    /// The `Name` of the director's `Director` resource.
    pub director_name: Option<String>,
    /// A named console (restricted `Console` resource); absent: the director's default console.
    pub console_name: Option<String>,
    /// File holding the console password (first line). Never copied into logs or the descriptor.
    /// Not written out when default: every secret-looking key is cut from the
    /// image's config, and a default one need not be (nor be reported as cut).
    #[serde(skip_serializing_if = "is_default_password_file")]
    pub password_file: PathBuf,
    /// This system's client (file daemon) name on the director; absent: `HOSTNAME-fd`.
    pub client: Option<String>,
    /// The fileset restored (and checked).
    pub fileset: Option<String>,
    /// The backup job `mkbackup` runs (mode "run").
    pub backup_job: Option<String>,
    /// The restore job used by `restore`; absent: the director's only restore job.
    pub restore_job: Option<String>,
    /// Storage for the backup job / restore (absent: the job's own).
    pub storage: Option<String>,
    /// Pool for the backup job (absent: the job's own).
    pub pool: Option<String>,
    /// "run" the backup job and wait, or only "check" the last one against `rpo-hours`.
    pub mkbackup_mode: MkbackupMode,
    /// Recovery point objective: the newest good backup must be younger than this.
    pub rpo_hours: u64,
    /// A restore of fewer files than this fails (besides fewer than the director selected).
    pub min_files: u64,
    /// Seconds to wait for the director to answer a connection or a console command.
    pub connect_timeout: u64,
    /// Seconds a backup or restore job may take before `rescue` gives up waiting (0: no limit).
    pub job_timeout: u64,
    /// Seconds between two looks at a running job.
    pub poll_interval: u64,
    /// The bconsole program; absent: found in PATH.
    pub bconsole: Option<PathBuf>,
    /// The file daemon's config put into the rescue image; absent: the distribution's.
    pub fd_config: Option<PathBuf>,
}

fn is_default_password_file(p: &std::path::Path) -> bool {
    p == std::path::Path::new(DEFAULT_PASSWORD_FILE)
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            address: None,
            port: 9101,
            director_name: None,
            console_name: None,
            password_file: DEFAULT_PASSWORD_FILE.into(),
            client: None,
            fileset: None,
            backup_job: None,
            restore_job: None,
            storage: None,
            pool: None,
            mkbackup_mode: MkbackupMode::Run,
            rpo_hours: 26,
            min_files: 0,
            connect_timeout: 15,
            job_timeout: 0,
            poll_interval: 3,
            bconsole: None,
            fd_config: None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::backup::config::BackupMethod;
    use crate::config::Config;

    #[test]
    fn server_section_parses_and_rejects_unknown_keys() {
        let c = Config::from_toml(
            r#"
            [backup]
            method = "bareos"
            [backup.server]
            address = "backup.example.com"
            port = 9101
            director-name = "backup-dir"
            console-name = "rescue"
            password-file = "/etc/rescue/bareos.pw"
            client = "web1-fd"
            fileset = "LinuxAll"
            backup-job = "backup-web1"
            restore-job = "RestoreFiles"
            mkbackup-mode = "check"
            rpo-hours = 30
            min-files = 1000
            "#,
        )
        .unwrap();
        assert_eq!(c.backup.method, BackupMethod::Bareos);
        assert_eq!(c.backup.server.mkbackup_mode, MkbackupMode::Check);
        assert_eq!(c.backup.server.client.as_deref(), Some("web1-fd"));
        assert_eq!(c.backup.server.password_file, PathBuf::from("/etc/rescue/bareos.pw"));
        let e = Config::from_toml("[backup.server]\npassword = \"x\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("unknown field `password`"), "{e:#}");
        assert!(Config::from_toml("[backup]\nmethod = \"tsm\"\n").is_err());
        assert_eq!(Config::from_toml("").unwrap().backup.method, BackupMethod::Archive);
    }
}
