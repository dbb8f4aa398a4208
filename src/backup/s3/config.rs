//! `[backup.s3]`: the settings of the S3 method ([`super`]), apart so
//! that the config types import nothing of the method itself.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The default place of the write credential (mkbackup).
pub const DEFAULT_CREDENTIALS_FILE: &str = "/etc/rescue/s3-credentials.toml";

/// `[backup.s3]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct S3Config {
    /// The service URL (`https://s3.example.com`, `http://10.0.2.2:7480`); unset: AWS.
    pub endpoint: Option<String>,
    pub region: String,
    /// Path-style addressing (`ENDPOINT/BUCKET/KEY`), which Ceph RGW and MinIO
    /// need unless wildcard DNS is set up; off: `BUCKET.ENDPOINT/KEY`.
    pub path_style: bool,
    /// The write credential mkbackup uses (TOML: `access-key-id`,
    /// `secret-access-key`, optional `session-token`). Never goes into the image.
    pub credentials_file: PathBuf,
    /// A read-only credential (same format) copied into the rescue image for
    /// `recover`. Unset: the image holds no credential and `recover` reads
    /// `recover-key-from`.
    pub image_credentials_file: Option<PathBuf>,
    /// Where `recover` finds the read-only credential when the image holds
    /// none: a file in the rescue system or `usb://LABEL/path` on a stick.
    /// (Not named "credentials": it is no secret and must reach the image's
    /// config, which drops secret-looking keys.)
    pub recover_key_from: Option<String>,
    /// Days each backup is kept immutable with S3 Object Lock (0: no lock).
    /// The bucket must have been created with Object Lock enabled.
    pub object_lock_days: u32,
    pub object_lock_mode: LockMode,
    /// Size of the upload parts in MiB (5 to 1024); memory use is about three
    /// parts. Parts double in size every 1000 parts, so from the default
    /// S3's 10000 parts reach its largest object, 5 TiB.
    pub part_size_mib: u32,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: None,
            region: "us-east-1".into(),
            path_style: false,
            credentials_file: DEFAULT_CREDENTIALS_FILE.into(),
            image_credentials_file: None,
            recover_key_from: None,
            object_lock_days: 0,
            object_lock_mode: LockMode::Compliance,
            part_size_mib: 16,
        }
    }
}

/// The Object Lock retention mode: `compliance` (nobody can shorten or
/// remove it, not even the root account) or `governance` (a user with the
/// bypass permission can).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LockMode {
    Compliance,
    Governance,
}
