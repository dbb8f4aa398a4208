//! The configuration file (`/etc/rescue/rescue.toml` by default): typed,
//! unknown keys rejected, kebab-case, and every key has a default so that
//! `rescue` works with no config file at all. Documented in docs/config.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::error::InputError;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/rescue/rescue.toml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Config {
    /// Where logs go (one file per command run, plus `rescue.log`).
    pub log_dir: PathBuf,
    /// Where the saved layout descriptor and other state live.
    pub state_dir: PathBuf,
    pub capture: CaptureConfig,
    pub backup: BackupConfig,
    pub recover: RecoverConfig,
    /// The rescue image `rescue mkrescue` builds (docs/image.md).
    pub image: crate::image::config::ImageConfig,
    /// Recorded disk (block id in the descriptor) to the device to recover it onto.
    pub mapping: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            log_dir: "/var/log/rescue".into(),
            state_dir: "/var/lib/rescue".into(),
            capture: CaptureConfig::default(),
            backup: BackupConfig::default(),
            recover: RecoverConfig::default(),
            image: crate::image::config::ImageConfig::default(),
            mapping: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct CaptureConfig {
    /// Only these disks and what sits on them (like `--disk`); empty: every fixed disk.
    pub disks: Vec<String>,
    /// Record mount points relative to this directory (like `--root`); default `/`.
    pub root: Option<String>,
    /// Disks never to record (kernel names or /dev paths), e.g. a USB backup disk.
    pub exclude_disks: Vec<String>,
    /// Mount points or patterns (`/scratch`, `/var/lib/docker/*`) never to record nor back up.
    pub exclude_mounts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct BackupConfig {
    /// `archive` (rescue's own archives at `url`), `bacula` or `bareos` (a director holds the data).
    pub method: crate::bserver::BackupMethod,
    /// Where the backup goes (`file:///path`, `nfs://host/export`, `usb:///dev/disk/by-label/REAR-000`, `iso:///backup`).
    pub url: Option<String>,
    /// Paths (globs) not to back up, besides pseudo filesystems and the backup target.
    pub exclude: Vec<String>,
    /// Archive compression: `zstd` (default), `gzip` or `none`.
    pub compress: crate::archive::Compression,
    /// Compression level (zstd 1-19, default 3; gzip 1-9, default 6).
    pub level: Option<i32>,
    /// How many backups to keep at the destination (the newest; at least 1).
    pub keep: u32,
    /// `rescue archive create`: stay on the filesystem of each source (backups always do).
    pub one_file_system: bool,
    /// Extra mount options for nfs://, cifs:// and usb:// destinations (e.g. `credentials=/etc/rescue/cifs.cred`).
    /// Values of secret options (`password=`...) are masked wherever the config is shown or logged.
    pub mount_options: Option<MountOptions>,
    /// Seconds to wait for a network destination to answer before giving up.
    pub timeout: u64,
    /// Where iso:// backups are staged for the rescue ISO.
    pub iso_dir: PathBuf,
    /// The director, for method `bacula` or `bareos` (docs/bareos.md).
    pub server: crate::bserver::ServerConfig,
    /// `[backup.encrypt]`: encrypt archives (age) to these recipients.
    pub encrypt: crate::archive::age::EncryptConfig,
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            method: crate::bserver::BackupMethod::Archive,
            url: None,
            exclude: Vec::new(),
            compress: crate::archive::Compression::Zstd,
            level: None,
            keep: 1,
            one_file_system: false,
            mount_options: None,
            timeout: 10,
            iso_dir: "/var/lib/rescue/iso".into(),
            server: crate::bserver::ServerConfig::default(),
            encrypt: crate::archive::age::EncryptConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct RecoverConfig {
    /// Where the recreated filesystems are mounted during recovery
    /// (absolute, normalized, not `/`: checked when the config is read).
    pub target_root: crate::target::TargetRoot,
    /// How partitions follow a disk of another size: `last` (the last
    /// resizable partition takes the difference) or `proportional`.
    pub resize: crate::plan::ResizePolicy,
    /// In unattended mode without `--yes`: whether recovery may overwrite the mapped disks.
    pub unattended_proceed: bool,
    /// LUKS mapper name -> key file, or `usb://LABEL/path` (a file on a USB
    /// stick), for unattended recovery of encrypted volumes.
    pub luks_keys: BTreeMap<String, crate::workflow::recover::LuksKeySource>,
    /// Read the whole backup archive and check it against its manifest before any disk is touched.
    pub verify_archive: bool,
    /// The age identity that decrypts encrypted backups: a file in the rescue
    /// system or `usb://LABEL/path`; without it, it is asked for on the terminal.
    pub age_identity: Option<crate::workflow::recover::LuksKeySource>,
}

impl Default for RecoverConfig {
    fn default() -> Self {
        Self {
            target_root: crate::target::TargetRoot::default(),
            resize: crate::plan::ResizePolicy::Last,
            unattended_proceed: false,
            luks_keys: BTreeMap::new(),
            verify_archive: true,
            age_identity: None,
        }
    }
}

impl Config {
    /// Load the config. A missing file at the default path means "all
    /// defaults"; a missing file that the user named explicitly is an error.
    pub fn load(path: &Path, explicit: bool) -> Result<Config> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_toml(&text).with_context(|| format!("in the config file {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(Config::default()),
            Err(e) => Err(anyhow::Error::new(InputError(format!("cannot read the config file {}: {e}", path.display())))),
        }
    }

    pub fn from_toml(text: &str) -> Result<Config> {
        toml::from_str(text).map_err(|e| InputError(format!("{e}")).into())
    }

    /// The default place of the saved layout descriptor.
    pub fn layout_path(&self) -> PathBuf {
        self.state_dir.join("layout.toml")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_all_defaults() {
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
    }

    #[test]
    fn keys_are_kebab_case_and_typed() {
        let c = Config::from_toml(
            r#"
            log-dir = "/tmp/l"
            [capture]
            exclude-disks = ["sdz"]
            [mapping]
            sda = "/dev/vdb"
            "#,
        )
        .unwrap();
        assert_eq!(c.log_dir, PathBuf::from("/tmp/l"));
        assert_eq!(c.capture.exclude_disks, vec!["sdz"]);
        assert_eq!(c.mapping["sda"], "/dev/vdb");
    }

    #[test]
    fn luks_keys_are_files_or_usb_sticks() {
        use crate::workflow::recover::LuksKeySource;
        let text = "[recover]\nluks-keys = { cryptroot = \"usb://KEYS/web1/cryptroot.key\", data = \"/root/data.key\" }\n";
        let c = Config::from_toml(text).unwrap();
        assert!(matches!(&c.recover.luks_keys["cryptroot"], LuksKeySource::Usb { url, .. } if url == "usb://KEYS/web1/cryptroot.key"));
        assert_eq!(c.recover.luks_keys["data"], LuksKeySource::File("/root/data.key".into()));
        // Written back as written (the rescue image gets this config).
        let back = Config::from_toml(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back.recover.luks_keys, c.recover.luks_keys);
        let e = format!("{:#}", Config::from_toml("[recover]\nluks-keys = { cryptroot = \"usb://KEYS\" }\n").unwrap_err());
        assert!(e.contains("no file on it") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn unknown_key_is_an_input_error_with_line() {
        let e = Config::from_toml("log-dir = \"/x\"\nlogdir = 3\n").unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("unknown field `logdir`"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
        assert_eq!(crate::error::exit_code_for(&e), 2);
    }

    #[test]
    fn missing_default_file_is_fine_missing_explicit_is_not() {
        let p = Path::new("/nonexistent/rescue.toml");
        assert!(Config::load(p, false).is_ok());
        assert!(Config::load(p, true).is_err());
    }
}

/// Mount options (`username=alice,password=...`): the values of options that
/// are secrets ([`MountOptions::is_secret_option`]) never leave this type
/// except through [`MountOptions::reveal`], which only the mount command
/// uses. Shown (Display, Debug, serialized for `rescue dump`) with those
/// values masked.
#[derive(Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(transparent)]
pub struct MountOptions(String);

/// What a secret value is shown as.
pub const MASK: &str = "********";

impl MountOptions {
    pub fn new(options: impl Into<String>) -> MountOptions {
        MountOptions(options.into())
    }

    /// Whether an option's value is a secret, by the option's name:
    /// password (CIFS `password`/`pass`/`password2`), credentials file,
    /// and anything else named like a secret.
    pub fn is_secret_option(name: &str) -> bool {
        let n = name.trim().to_ascii_lowercase();
        n == "pass" || ["password", "passwd", "credential", "secret", "token", "passphrase", "key"].iter().any(|w| n.contains(w))
    }

    fn split(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.0.split(',').filter(|o| !o.is_empty()).map(|o| match o.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (o, None),
        })
    }

    /// The options as given, secrets included: for the mount command only.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// The options with every secret value replaced by `********`.
    pub fn masked(&self) -> String {
        self.split()
            .map(|(k, v)| match v {
                Some(_) if Self::is_secret_option(k) => format!("{k}={MASK}"),
                Some(v) => format!("{k}={v}"),
                None => k.to_string(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The names of the options that carry secrets.
    pub fn secret_names(&self) -> Vec<String> {
        self.split().filter(|(k, v)| v.is_some() && Self::is_secret_option(k)).map(|(k, _)| k.to_string()).collect()
    }

    /// The options without those that carry secrets (for a rescue image
    /// made without include-secrets).
    pub fn without_secrets(&self) -> MountOptions {
        MountOptions(
            self.split()
                .filter(|(k, v)| !(v.is_some() && Self::is_secret_option(k)))
                .map(|(k, v)| v.map(|v| format!("{k}={v}")).unwrap_or(k.to_string()))
                .collect::<Vec<_>>()
                .join(","),
        )
    }

    /// These options followed by `more` (both may be empty).
    pub fn and(&self, more: &MountOptions) -> MountOptions {
        MountOptions([self.0.as_str(), more.0.as_str()].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join(","))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for MountOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.masked())
    }
}

impl std::fmt::Debug for MountOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MountOptions({:?})", self.masked())
    }
}

/// Serialized masked: what serializes the config (`rescue dump`, the
/// image's copy) never carries the secret; the image puts it back only
/// when include-secrets asks for it.
impl Serialize for MountOptions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.masked())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod mount_options_tests {
    use super::*;

    #[test]
    fn secret_mount_options_are_masked_everywhere_but_the_mount() {
        let o = MountOptions::new("username=alice,password=hunter2,vers=3.0,ro,credentials=/etc/c,pass=x");
        assert_eq!(o.reveal(), "username=alice,password=hunter2,vers=3.0,ro,credentials=/etc/c,pass=x");
        let shown = o.masked();
        assert_eq!(shown, "username=alice,password=********,vers=3.0,ro,credentials=********,pass=********");
        assert_eq!(format!("{o}"), shown);
        assert!(!format!("{o:?}").contains("hunter2"));
        assert_eq!(serde_json::to_string(&o).unwrap(), format!("\"{shown}\""));
        assert_eq!(o.secret_names(), ["password", "credentials", "pass"]);
        assert_eq!(o.without_secrets().reveal(), "username=alice,vers=3.0,ro");
        assert_eq!(MountOptions::new("soft").and(&o).secret_names().len(), 3);
        let c: Config = toml::from_str("[backup]\nmount-options = \"user=bob,password=pw\"\n").unwrap();
        let text = toml::to_string(&c).unwrap();
        assert!(!text.contains("=pw") && text.contains("password=********"), "{text}");
    }
}
