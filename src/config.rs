//! The configuration file (`/etc/rescue/rescue.toml` by default): typed,
//! unknown keys rejected, kebab-case, and every key has a default so that
//! `rescue` works with no config file at all. Documented in docs/config.md.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::backup::location::Location;
use crate::error::{input_error, InputError};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/rescue/rescue.toml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Config {
    /// Where logs go (one file per command run, plus `rescue.log`).
    pub log_dir: PathBuf,
    /// Where the saved layout descriptor and other state live.
    pub state_dir: PathBuf,
    pub capture: CaptureConfig,
    pub backup: crate::backup::config::BackupConfig,
    pub recover: RecoverConfig,
    /// Commands run around a backup and a recovery (docs/config.md `[hooks]`).
    pub hooks: crate::hooks::HooksConfig,
    /// The rescue image `rescue mkrescue` builds (docs/image.md).
    pub image: crate::image::config::ImageConfig,
    /// Recorded disk (block id in the descriptor) to the device to recover it onto.
    pub mapping: BTreeMap<String, String>,
    /// Recorded NIC (name or MAC) to the NIC here (name or MAC) that takes its place.
    pub network_mapping: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            log_dir: "/var/log/rescue".into(),
            state_dir: "/var/lib/rescue".into(),
            capture: CaptureConfig::default(),
            backup: crate::backup::config::BackupConfig::default(),
            recover: RecoverConfig::default(),
            hooks: crate::hooks::HooksConfig::default(),
            image: crate::image::config::ImageConfig::default(),
            mapping: BTreeMap::new(),
            network_mapping: BTreeMap::new(),
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
    pub luks_keys: BTreeMap<String, LuksKeySource>,
    /// Read the whole backup archive and check it against its manifest before any disk is touched.
    pub verify_archive: bool,
    /// When the backup is read in full before the disks are written:
    /// `auto` (only when a target disk holds data; on blank disks the
    /// content is checked during the restore's one pass) or `full` (always).
    pub verify: VerifyPolicy,
    /// The age identity that decrypts encrypted backups: a file in the rescue
    /// system or `usb://LABEL/path`; without it, it is asked for on the terminal.
    pub age_identity: Option<LuksKeySource>,
}

impl Default for RecoverConfig {
    fn default() -> Self {
        Self {
            target_root: crate::target::TargetRoot::default(),
            resize: crate::plan::ResizePolicy::Last,
            unattended_proceed: false,
            luks_keys: BTreeMap::new(),
            verify_archive: true,
            verify: VerifyPolicy::Auto,
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

/// When recovery reads the whole backup before writing the disks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyPolicy {
    /// In full before writing when a target disk holds data; in the
    /// restore's one pass when every target disk is blank.
    #[default]
    Auto,
    /// Always in full before writing.
    Full,
}

/// Where the key of one LUKS volume comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum LuksKeySource {
    /// A key file in the rescue system.
    File(PathBuf),
    /// A file on a removable disk: `url` as written, `location` parsed.
    Usb { url: String, location: Location },
}

impl LuksKeySource {
    pub fn parse(s: &str) -> Result<LuksKeySource> {
        let bad = |why: &str| input_error(format!("bad LUKS key source {s:?}: {why}"));
        if let Some(rest) = s.strip_prefix("usb://") {
            let location = Location::parse_usb(rest).map_err(bad)?;
            if matches!(&location, Location::Usb { path, .. } if path.trim_matches('/').is_empty()) {
                return Err(bad("it names the USB disk but no file on it; write usb://LABEL/path/to/keyfile"));
            }
            return Ok(LuksKeySource::Usb { url: s.to_string(), location });
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(bad(&format!("unknown scheme {scheme}:// (a key is a file path or usb://LABEL/path)")));
        }
        if s.is_empty() {
            return Err(bad("empty"));
        }
        Ok(LuksKeySource::File(PathBuf::from(s)))
    }
}

impl LuksKeySource {
    /// For clap: the same parse, its error as a sentence.
    pub fn parse_arg(s: &str) -> std::result::Result<LuksKeySource, String> {
        LuksKeySource::parse(s).map_err(|e| format!("{e:#}"))
    }
}

impl fmt::Display for LuksKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LuksKeySource::File(p) => write!(f, "{}", p.display()),
            LuksKeySource::Usb { url, .. } => f.write_str(url),
        }
    }
}

impl TryFrom<String> for LuksKeySource {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        LuksKeySource::parse(&s).map_err(|e| format!("{e:#}"))
    }
}

impl From<LuksKeySource> for String {
    fn from(k: LuksKeySource) -> String {
        k.to_string()
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
        let c: Config = toml::from_str("[network-mapping]\nens3 = \"enp1s0\"\n\"52:54:00:12:34:02\" = \"enp2s0\"\n").unwrap();
        assert_eq!((c.network_mapping["ens3"].as_str(), c.network_mapping["52:54:00:12:34:02"].as_str()), ("enp1s0", "enp2s0"));
    }

    #[test]
    fn the_verify_policy_is_auto_unless_full_is_asked() {
        assert_eq!(Config::default().recover.verify, VerifyPolicy::Auto);
        assert_eq!(Config::from_toml("[recover]\nverify = \"full\"\n").unwrap().recover.verify, VerifyPolicy::Full);
        let e = Config::from_toml("[recover]\nverify = \"sometimes\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("auto") && format!("{e:#}").contains("full"), "{e:#}");
    }

    #[test]
    fn luks_keys_are_files_or_usb_sticks() {
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
