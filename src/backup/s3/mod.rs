//! S3-compatible object storage: `backup.url = "s3://BUCKET/PREFIX"` with the
//! `[backup.s3]` section (endpoint, region, addressing, credentials, Object
//! Lock). Documented in docs/archive.md and docs/config.md.
//!
//! - Backups go to `PREFIX/HOST/backup-STAMP.tar.zst`, uploaded while the
//!   archive is made ([`Upload`]: multipart, a few parts in memory, nothing
//!   staged on disk). The object exists only once the upload is completed; a
//!   failed or dropped upload is aborted, and a killed one stays an incomplete
//!   multipart upload, which no listing shows.
//! - Only then the record `backup-STAMP.tar.zst.done` is written (size,
//!   time): a backup counts when its record exists, so `recover` can never
//!   pick up a partial one.
//! - Restores read the object as a stream ([`ObjectReader`]), no temp copy.
//! - With `object-lock-days`, both objects carry an Object Lock retention;
//!   `keep` leaves backups still under retention alone and reports them.
//!
//! The client library (aws-sdk-s3) is async; its tokio runtime stays inside
//! this module, the rest of rescue is synchronous.

use std::fmt;
use std::path::Path;

use anyhow::Result;
use serde::Deserialize;

use crate::error::input_error;

#[cfg(feature = "s3")]
mod client;
pub mod config;

#[cfg(feature = "s3")]
pub use client::*;

pub use config::{LockMode, S3Config};

/// Where the rescue image keeps the read-only credential
/// (`image-credentials-file`, copied in only when configured).
pub const IMAGE_CREDENTIALS_PATH: &str = "/etc/rescue/s3-read-credentials.toml";
/// Suffix of the record object written after the archive is complete.
pub const RECORD_SUFFIX: &str = ".done";

/// `s3://BUCKET/PREFIX`: the bucket and the key prefix (no slashes around it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    pub prefix: String,
}

impl S3Url {
    /// `None` when `url` is not an `s3://` URL.
    pub fn parse(url: &str) -> Result<Option<S3Url>> {
        let Some(rest) = url.strip_prefix("s3://") else { return Ok(None) };
        let bad = |why: &str| input_error(format!("bad backup destination {url:?}: {why}"));
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.contains('@') || bucket.contains(':') {
            return Err(bad("credentials and endpoints never go into the URL: write s3://BUCKET/PREFIX and set [backup.s3] endpoint and credentials-file"));
        }
        if bucket.is_empty() {
            return Err(bad("no bucket: write s3://BUCKET/PREFIX"));
        }
        Ok(Some(S3Url { bucket: bucket.to_string(), prefix: prefix.trim_matches('/').to_string() }))
    }

    /// The key of `name` in `host`'s directory.
    pub fn key(&self, host: &str, name: &str) -> String {
        format!("{}{name}", self.host_prefix(host))
    }

    /// `PREFIX/HOST/`.
    pub fn host_prefix(&self, host: &str) -> String {
        if self.prefix.is_empty() {
            format!("{host}/")
        } else {
            format!("{}/{host}/", self.prefix)
        }
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// An access key, read from a credentials file; the secret never prints.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
pub struct Credentials {
    pub access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, secret ***)", self.access_key_id)
    }
}

impl Credentials {
    pub fn from_toml(text: &str, from: &str) -> Result<Credentials> {
        toml::from_str(text).map_err(|e| {
            input_error(format!("the S3 credentials in {from} cannot be read: {}. Write access-key-id = \"...\" and secret-access-key = \"...\"", e.message()))
        })
    }

    pub fn load(path: &Path) -> Result<Credentials> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            input_error(format!(
                "cannot read the S3 credentials file {}: {e}. Create it (access-key-id = \"...\", secret-access-key = \"...\", mode 0600) \
                 or set backup.s3.credentials-file",
                path.display()
            ))
        })?;
        Credentials::from_toml(&text, &path.display().to_string())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_never_credentials() {
        let u = S3Url::parse("s3://backups/fleet/").unwrap().unwrap();
        assert_eq!(u, S3Url { bucket: "backups".into(), prefix: "fleet".into() });
        assert_eq!(u.key("web1", "backup-1.tar.zst"), "fleet/web1/backup-1.tar.zst");
        let bare = S3Url::parse("s3://backups").unwrap().unwrap();
        assert_eq!(bare.key("web1", "x"), "web1/x");
        assert!(S3Url::parse("nfs://x/y").unwrap().is_none());
        let e = format!("{:#}", S3Url::parse("s3://AKIA:secret@backups/x").unwrap_err());
        assert!(e.contains("never go into the URL"), "{e}");
        assert!(S3Url::parse("s3:///x").is_err());
    }

    #[test]
    fn credentials_never_print_their_secret() {
        let c = Credentials::from_toml("access-key-id = \"AK\"\nsecret-access-key = \"hush\"\n", "f").unwrap();
        assert!(!format!("{c:?}").contains("hush"));
        let e = format!("{:#}", Credentials::from_toml("access-key = \"AK\"\n", "/etc/x").unwrap_err());
        assert!(e.contains("/etc/x") && e.contains("secret-access-key"), "{e}");
    }

    #[test]
    fn config_keys() {
        let c: S3Config = toml::from_str(
            "endpoint = \"http://10.0.2.2:7480\"\nregion = \"eu\"\npath-style = true\ncredentials-file = \"/c\"\n\
             image-credentials-file = \"/r\"\nrecover-key-from = \"usb://KEYS/s3.toml\"\nobject-lock-days = 30\n\
             object-lock-mode = \"governance\"\npart-size-mib = 32\n",
        )
        .unwrap();
        assert_eq!(c.object_lock_mode, LockMode::Governance);
        assert_eq!(c.object_lock_days, 30);
        assert!(toml::from_str::<S3Config>("object-lock-mode = \"legal\"\n").is_err());
        assert!(toml::from_str::<S3Config>("secret = \"x\"\n").is_err());
    }
}
