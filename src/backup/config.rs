//! The `[backup]` section of the config: which method (`backup.method`),
//! where (`backup.url`) and how archives are made, and each method's own
//! section (`[backup.server]` for a director). Documented key by key in
//! docs/config.md.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where the files of this system are backed up and restored from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BackupMethod {
    /// `rescue`'s own archives at `backup.url` (tar, zstd) or an rsync tree.
    #[default]
    Archive,
    /// A Bacula director runs the backups; `rescue` asks it through bconsole.
    Bacula,
    /// A Bareos director (Bacula's fork: other program names, a JSON API).
    Bareos,
}

impl BackupMethod {
    /// The name as the config writes it.
    pub fn name(self) -> &'static str {
        match self {
            BackupMethod::Archive => "archive",
            BackupMethod::Bacula => "bacula",
            BackupMethod::Bareos => "bareos",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct BackupConfig {
    /// `archive` (rescue's own archives at `url`), `bacula` or `bareos` (a director holds the data).
    pub method: BackupMethod,
    /// Where the backup goes (`file:///path`, `nfs://host/export`, `usb:///dev/disk/by-label/REAR-000`, `iso:///backup`).
    pub url: Option<String>,
    /// Paths (globs) not to back up, besides pseudo filesystems and the backup target.
    pub exclude: Vec<String>,
    /// Archive compression: `zstd` (default), `gzip` or `none`.
    pub compress: crate::archive::Compression,
    /// Compression level (zstd 1-19, default 3; gzip 1-9, default 6).
    pub level: Option<i32>,
    /// How many backups to keep at the destination (the newest; at least 1);
    /// with incremental chains, how many chains.
    pub keep: u32,
    /// Every N-th backup is a full one that starts a new incremental chain,
    /// the others are incrementals (1, the default: every backup is full).
    pub full_every: u32,
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
    pub server: crate::backup::bacula::config::ServerConfig,
    /// Object storage, for `url = "s3://BUCKET/PREFIX"` (docs/archive.md).
    pub s3: crate::backup::s3::config::S3Config,
    /// `[backup.encrypt]`: encrypt archives (age) to these recipients.
    pub encrypt: crate::archive::age::EncryptConfig,
    /// `auto`: read btrfs subvolumes and filesystems on LVM logical volumes from a read-only snapshot (docs/config.md).
    pub snapshot: crate::backup::snapshot::SnapshotMode,
    /// Bytes of each LVM snapshot (`"2G"`); default: a share of its volume group's free space.
    #[serde(deserialize_with = "deserialize_size", skip_serializing_if = "Option::is_none")]
    pub snapshot_size: Option<u64>,
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            method: BackupMethod::Archive,
            url: None,
            exclude: Vec::new(),
            compress: crate::archive::Compression::Zstd,
            level: None,
            keep: 1,
            full_every: 1,
            one_file_system: false,
            mount_options: None,
            timeout: 10,
            iso_dir: "/var/lib/rescue/iso".into(),
            server: crate::backup::bacula::config::ServerConfig::default(),
            s3: crate::backup::s3::config::S3Config::default(),
            snapshot: crate::backup::snapshot::SnapshotMode::Off,
            snapshot_size: None,
            encrypt: crate::archive::age::EncryptConfig::default(),
        }
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

/// `backup.snapshot-size`: bytes (a number, as `rescue dump` shows it), or
/// a string with an optional K, M, G or T (powers of 1024).
pub fn deserialize_size<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Option::<Size>::deserialize(d)? {
        None => Ok(None),
        Some(Size::Bytes(0)) => Err(serde::de::Error::custom("snapshot-size must be more than 0")),
        Some(Size::Bytes(n)) => Ok(Some(n)),
        Some(Size::Text(s)) => parse_size(&s).map(Some).map_err(serde::de::Error::custom),
    }
}

pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let (num, shift) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 10),
        Some('M') => (&t[..t.len() - 1], 20),
        Some('G') => (&t[..t.len() - 1], 30),
        Some('T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    match num.trim().parse::<u64>() {
        Ok(n) if n > 0 => n.checked_mul(1 << shift).ok_or_else(|| format!("snapshot-size {s:?} is too large")),
        _ => Err(format!("snapshot-size {s:?} is not a size: write bytes or a number with K, M, G or T (\"2G\")")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err() && parse_size("lots").is_err() && parse_size("2X").is_err());
    }

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
        let c: crate::config::Config = toml::from_str("[backup]\nmount-options = \"user=bob,password=pw\"\n").unwrap();
        let text = toml::to_string(&c).unwrap();
        assert!(!text.contains("=pw") && text.contains("password=********"), "{text}");
    }
}
