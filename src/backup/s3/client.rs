//! The S3 client (aws-sdk-s3, behind the cargo feature `s3`, on by
//! default): the store, streamed multipart uploads and reads, the backend.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ObjectLockMode};
use aws_sdk_s3::Client;

use super::{Credentials, LockMode, S3Config, S3Url, IMAGE_CREDENTIALS_PATH, RECORD_SUFFIX};
use crate::error::input_error;

fn lock_mode(m: LockMode) -> ObjectLockMode {
    match m {
        LockMode::Compliance => ObjectLockMode::Compliance,
        LockMode::Governance => ObjectLockMode::Governance,
    }
}

/// One bucket at one endpoint, with one credential.
#[derive(Clone)]
pub struct Store {
    client: Client,
    rt: Arc<tokio::runtime::Runtime>,
    pub url: S3Url,
    /// The endpoint as configured, for messages.
    endpoint: String,
    access_key: String,
    lock: Option<(LockMode, u32)>,
    part_size: usize,
}

/// A complete backup in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBackup {
    /// `backup-STAMP.tar.zst`.
    pub name: String,
    pub key: String,
    pub size: u64,
}

/// What `keep` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    pub deleted: Vec<String>,
    /// Backups past `keep` still under Object Lock retention, with the date it ends.
    pub locked: Vec<(String, String)>,
}

impl Store {
    /// A client for `url` with `credentials`; talks to nobody yet.
    pub fn new(url: S3Url, cfg: &S3Config, credentials: &Credentials, timeout: Duration) -> Result<Store> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3")
            .enable_all()
            .build()
            .context("starting the S3 client's I/O threads")?;
        let creds = aws_sdk_s3::config::Credentials::new(
            credentials.access_key_id.clone(),
            credentials.secret_access_key.clone(),
            credentials.session_token.clone(),
            None,
            "rescue",
        );
        let timeouts =
            aws_sdk_s3::config::timeout::TimeoutConfig::builder().connect_timeout(timeout).read_timeout(timeout.max(Duration::from_secs(60))).build();
        let mut b = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new(cfg.region.clone()))
            .credentials_provider(creds)
            .force_path_style(cfg.path_style)
            .timeout_config(timeouts)
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(3))
            // Checksums only where S3 requires them: older S3 servers (Ceph
            // before Reef, many appliances) reject the newer checksum trailers.
            .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired);
        if let Some(e) = &cfg.endpoint {
            b = b.endpoint_url(e.clone());
        }
        // The system's CA certificates only for https: a rescue system or a
        // minimal install without ca-certificates talks plain http to an
        // endpoint on its own network, and the client would stop on the
        // empty certificate store it loads.
        let https = cfg.endpoint.as_deref().is_none_or(|e| !e.starts_with("http://"));
        let tls = aws_smithy_http_client::tls::TlsContext::builder()
            .with_trust_store(aws_smithy_http_client::tls::TrustStore::empty().with_native_roots(https))
            .build()
            .context("setting up the S3 client's TLS")?;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(aws_smithy_http_client::tls::rustls_provider::CryptoMode::AwsLc))
            .tls_context(tls)
            .build_https();
        b = b.http_client(http);
        if !(5..=1024).contains(&cfg.part_size_mib) {
            crate::bail_input!("backup.s3.part-size-mib = {} is out of range: S3 parts are 5 to 1024 MiB", cfg.part_size_mib);
        }
        Ok(Store {
            client: Client::from_conf(b.build()),
            rt: Arc::new(rt),
            url,
            endpoint: cfg.endpoint.clone().unwrap_or_else(|| format!("AWS S3 ({})", cfg.region)),
            access_key: credentials.access_key_id.clone(),
            lock: (cfg.object_lock_days > 0).then_some((cfg.object_lock_mode, cfg.object_lock_days)),
            part_size: (cfg.part_size_mib as usize) << 20,
        })
    }

    /// What went wrong with a request, as a sentence with what to do next.
    fn explain<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        what: &str,
        e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> anyhow::Error {
        let (endpoint, bucket, key) = (&self.endpoint, &self.url.bucket, &self.access_key);
        let detail = format!("{}", aws_sdk_s3::error::DisplayErrorContext(&e));
        let msg = match &e {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                format!("{what}: the S3 endpoint {endpoint} cannot be reached ({detail}). Check backup.s3.endpoint, the network and that the service runs")
            }
            SdkError::ServiceError(s) => {
                let status = s.raw().status().as_u16();
                let code = s.err().code().unwrap_or("");
                match (status, code) {
                    (403, _) | (_, "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied") => format!(
                        "{what}: {endpoint} refused the access key {key} for bucket {bucket} (HTTP {status} {code}). Check the credentials \
                         file (access key and secret) and that this user may use the bucket"
                    ),
                    (404, c) if c == "NoSuchBucket" || what.starts_with("checking the bucket") => format!(
                        "{what}: the bucket {bucket} does not exist at {endpoint}. Check the bucket in backup.url (s3://BUCKET/PREFIX) \
                         and backup.s3.endpoint, or create the bucket (with Object Lock if object-lock-days is set)"
                    ),
                    (301, _) | (_, "PermanentRedirect" | "AuthorizationHeaderMalformed") => {
                        format!("{what}: the bucket {bucket} is in another region than backup.s3.region ({code}); set backup.s3.region")
                    }
                    _ => format!("{what}: {endpoint} answered HTTP {status} {code}: {detail}"),
                }
            }
            _ => format!("{what} at {endpoint}: {detail}"),
        };
        input_error(msg)
    }

    /// Before anything else is done: the endpoint answers, the credential
    /// is accepted and the bucket exists.
    pub fn check(&self) -> Result<()> {
        let r = self.rt.block_on(self.client.head_bucket().bucket(&self.url.bucket).send());
        r.map(|_| ()).map_err(|e| self.explain(&format!("checking the bucket {}", self.url.bucket), e))
    }

    /// Start a multipart upload of `key`; see [`Upload`].
    pub fn upload(&self, key: &str) -> Result<Upload> {
        let mut req = self.client.create_multipart_upload().bucket(&self.url.bucket).key(key).content_type("application/x-tar");
        if let Some((mode, until)) = self.retention() {
            req = req.object_lock_mode(lock_mode(mode)).object_lock_retain_until_date(until);
        }
        let out = self.rt.block_on(req.send()).map_err(|e| self.explain(&format!("starting the upload of {key} to bucket {}", self.url.bucket), e))?;
        let upload_id = out.upload_id().map(str::to_string).ok_or_else(|| anyhow::anyhow!("{} gave no upload id for {key}", self.endpoint))?;
        Ok(Upload {
            store: self.clone(),
            key: key.to_string(),
            upload_id,
            buf: Vec::with_capacity(self.part_size),
            parts: 0,
            inflight: VecDeque::new(),
            done: Vec::new(),
            written: 0,
            finished: false,
        })
    }

    fn retention(&self) -> Option<(LockMode, DateTime)> {
        let (mode, days) = self.lock?;
        let until = time::OffsetDateTime::now_utc() + time::Duration::days(days.into());
        Some((mode, DateTime::from_secs(until.unix_timestamp())))
    }

    /// Write a small object in one request (the record of a finished backup).
    pub fn put_small(&self, key: &str, body: Vec<u8>) -> Result<()> {
        let md5 = {
            use md5::Digest as _;
            aws_smithy_types::base64::encode(md5::Md5::digest(&body))
        };
        // Content-MD5: S3 requires it on a PUT with a retention.
        let mut req = self.client.put_object().bucket(&self.url.bucket).key(key).content_md5(md5).body(ByteStream::from(body));
        if let Some((mode, until)) = self.retention() {
            req = req.object_lock_mode(lock_mode(mode)).object_lock_retain_until_date(until);
        }
        let out = self.rt.block_on(req.send()).map_err(|e| self.explain(&format!("writing {key} to bucket {}", self.url.bucket), e))?;
        self.set_retention(key, out.version_id())
    }

    /// Set the Object Lock retention of a new object (version). The
    /// retention headers of the upload are not enough: Ceph RGW 16 ignores
    /// them on multipart uploads (the object came out unlocked), so it is
    /// always set explicitly too; for an object that already has it this
    /// only moves its end a few seconds later, which every mode allows.
    fn set_retention(&self, key: &str, version: Option<&str>) -> Result<()> {
        let Some((mode, until)) = self.retention() else { return Ok(()) };
        let retention = aws_sdk_s3::types::ObjectLockRetention::builder()
            .mode(match mode {
                LockMode::Compliance => aws_sdk_s3::types::ObjectLockRetentionMode::Compliance,
                LockMode::Governance => aws_sdk_s3::types::ObjectLockRetentionMode::Governance,
            })
            .retain_until_date(until)
            .build();
        let req = self.client.put_object_retention().bucket(&self.url.bucket).key(key).set_version_id(version.map(str::to_string)).retention(retention);
        self.rt.block_on(req.send()).map(|_| ()).map_err(|e| {
            self.explain(&format!("locking {key} with Object Lock (backup.s3.object-lock-days); the bucket must have been created with Object Lock enabled"), e)
        })
    }

    /// Complete backups of `host`, newest first: archives whose record exists.
    pub fn list(&self, host: &str) -> Result<Vec<StoredBackup>> {
        let prefix = self.url.key(host, crate::backup::archives::BACKUP_PREFIX);
        let mut objects = Vec::new();
        let mut token = None;
        loop {
            let req = self.client.list_objects_v2().bucket(&self.url.bucket).prefix(&prefix).set_continuation_token(token.take());
            let out = self.rt.block_on(req.send()).map_err(|e| self.explain(&format!("listing the backups of {host} in bucket {}", self.url.bucket), e))?;
            objects.extend(out.contents().iter().filter_map(|o| Some((o.key()?.to_string(), o.size().unwrap_or(0).max(0) as u64))));
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        let mut v: Vec<StoredBackup> = objects
            .iter()
            .filter(|(k, _)| crate::backup::archives::is_archive_name(k))
            .filter(|(k, _)| objects.iter().any(|(r, _)| r.strip_suffix(RECORD_SUFFIX) == Some(k)))
            .map(|(k, size)| StoredBackup { name: k.rsplit('/').next().unwrap_or(k).to_string(), key: k.clone(), size: *size })
            .collect();
        v.sort_by(|a, b| b.name.cmp(&a.name));
        Ok(v)
    }

    /// The backup of `host` named `name`, or the newest; the error says
    /// what is there.
    pub fn find(&self, host: &str, name: Option<&str>) -> Result<StoredBackup> {
        let all = self.list(host)?;
        let names = || all.iter().map(|b| b.name.as_str()).collect::<Vec<_>>().join(", ");
        match name {
            Some(n) => all.iter().find(|b| b.name == n).cloned().ok_or_else(|| {
                input_error(format!(
                    "the backup {n} of {host} is not in s3://{}/{} (complete backups there: {}); pass one of them with --archive NAME, or \
                     leave --archive out for the newest",
                    self.url.bucket,
                    self.url.host_prefix(host),
                    if all.is_empty() { "none".into() } else { names() }
                ))
            }),
            None => all.first().cloned().ok_or_else(|| {
                input_error(format!(
                    "no complete backup of {host} in s3://{}/{} at {}: check backup.url (s3://BUCKET/PREFIX) and the host name, or run \
                     `rescue mkbackup` on {host}",
                    self.url.bucket,
                    self.url.host_prefix(host),
                    self.endpoint
                ))
            }),
        }
    }

    /// The record of a backup, read back (it proves the archive is complete).
    pub fn read_record(&self, backup: &StoredBackup) -> Result<String> {
        let key = format!("{}{RECORD_SUFFIX}", backup.key);
        let mut r = self.open(&key)?;
        let mut s = String::new();
        r.read_to_string(&mut s).with_context(|| format!("reading the backup record {key}"))?;
        Ok(s)
    }

    /// A stream of the object `key`.
    pub fn open(&self, key: &str) -> Result<ObjectReader> {
        let out = self
            .rt
            .block_on(self.client.get_object().bucket(&self.url.bucket).key(key).send())
            .map_err(|e| self.explain(&format!("reading {key} from bucket {}", self.url.bucket), e))?;
        Ok(ObjectReader { rt: self.rt.clone(), body: out.body, chunk: Default::default(), key: key.to_string() })
    }

    /// A stream of the first `bytes` of the object `key` (a ranged GET).
    pub fn open_start(&self, key: &str, bytes: u64) -> Result<ObjectReader> {
        let range = format!("bytes=0-{}", bytes.saturating_sub(1));
        let out = self
            .rt
            .block_on(self.client.get_object().bucket(&self.url.bucket).key(key).range(range).send())
            .map_err(|e| self.explain(&format!("reading the start of {key} from bucket {}", self.url.bucket), e))?;
        Ok(ObjectReader { rt: self.rt.clone(), body: out.body, chunk: Default::default(), key: key.to_string() })
    }

    /// When the Object Lock retention of `key` ends, if it has not yet.
    pub fn locked_until(&self, key: &str) -> Result<Option<String>> {
        let out = self
            .rt
            .block_on(self.client.head_object().bucket(&self.url.bucket).key(key).send())
            .map_err(|e| self.explain(&format!("reading the retention of {key}"), e))?;
        let Some(until) = out.object_lock_retain_until_date() else { return Ok(None) };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        Ok((until.secs() > now).then(|| until.fmt(aws_sdk_s3::primitives::DateTimeFormat::DateTime).unwrap_or_else(|_| until.secs().to_string())))
    }

    /// Delete every version of `key` (versioned buckets keep old ones).
    fn delete_all_versions(&self, key: &str) -> Result<()> {
        let out = self
            .rt
            .block_on(self.client.list_object_versions().bucket(&self.url.bucket).prefix(key).send())
            .map_err(|e| self.explain(&format!("listing the versions of {key}"), e))?;
        let versions = out.versions().iter().filter(|v| v.key() == Some(key)).map(|v| v.version_id().map(str::to_string));
        let markers = out.delete_markers().iter().filter(|v| v.key() == Some(key)).map(|v| v.version_id().map(str::to_string));
        for version in versions.chain(markers).collect::<Vec<_>>() {
            let req = self.client.delete_object().bucket(&self.url.bucket).key(key).set_version_id(version);
            self.rt.block_on(req.send()).map_err(|e| self.explain(&format!("deleting {key}"), e))?;
        }
        Ok(())
    }

    /// Keep the newest `keep` backups of `host` (at least one); delete older
    /// ones unless Object Lock still protects them, which is reported, never
    /// tried. Also aborts multipart uploads of `host` left by killed runs
    /// started before `started`.
    pub fn prune(&self, host: &str, keep: u32, started: time::OffsetDateTime) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        for old in self.list(host)?.into_iter().skip(keep.max(1) as usize) {
            if let Some(until) = self.locked_until(&old.key)? {
                tracing::info!("keeping {} past backup.keep = {keep}: Object Lock retention until {until}", old.name);
                report.locked.push((old.name, until));
                continue;
            }
            tracing::info!("removing old backup {} (backup.keep = {keep})", old.name);
            // The record first: without it the archive no longer counts.
            self.delete_all_versions(&format!("{}{RECORD_SUFFIX}", old.key))?;
            self.delete_all_versions(&old.key)?;
            report.deleted.push(old.name);
        }
        self.abort_stale_uploads(host, started)?;
        Ok(report)
    }

    fn abort_stale_uploads(&self, host: &str, started: time::OffsetDateTime) -> Result<()> {
        let out = self
            .rt
            .block_on(self.client.list_multipart_uploads().bucket(&self.url.bucket).prefix(self.url.host_prefix(host)).send())
            .map_err(|e| self.explain("listing unfinished uploads", e))?;
        for u in out.uploads() {
            let (Some(key), Some(id)) = (u.key(), u.upload_id()) else { continue };
            if u.initiated().is_some_and(|t| t.secs() < started.unix_timestamp()) {
                tracing::info!("aborting the unfinished upload of {key} left by an interrupted backup");
                let req = self.client.abort_multipart_upload().bucket(&self.url.bucket).key(key).upload_id(id);
                self.rt.block_on(req.send()).map_err(|e| self.explain(&format!("aborting the unfinished upload of {key}"), e))?;
            }
        }
        Ok(())
    }
}

/// Which credential a run needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// mkbackup: `credentials-file`.
    Write,
    /// restore and recover: the image's read-only credential, else
    /// `recover-key-from`, else `credentials-file`.
    Read,
}

/// Where a key typed at the console came from, for messages.
const TYPED: &str = "the key typed on the terminal";

/// The credential for `access`, and where it came from (for messages).
/// A read credential found nowhere is asked of `ask`, when there is one.
pub fn credentials(cfg: &S3Config, access: Access, timeout: u64, ask: Option<&dyn crate::backup::Ask>) -> Result<(Credentials, String)> {
    if access == Access::Read {
        let image = Path::new(IMAGE_CREDENTIALS_PATH);
        if image.exists() {
            return Ok((Credentials::load(image)?, image.display().to_string()));
        }
        if let Some(src) = &cfg.recover_key_from {
            if let Some(rest) = src.strip_prefix("usb://") {
                let bad = |why: &str| input_error(format!("bad backup.s3.recover-key-from {src:?}: {why}"));
                let loc = crate::backup::Location::parse_usb(rest).map_err(bad)?;
                let (data, dev) = crate::backup::location::read_usb_file(&loc, Duration::from_secs(10), timeout)
                    .with_context(|| format!("reading the S3 credentials from {src} (backup.s3.recover-key-from); plug in the stick or pass --url"))?;
                let text = String::from_utf8_lossy(&data);
                return Ok((Credentials::from_toml(&text, &format!("{src} on {}", dev.display()))?, src.clone()));
            }
            return Ok((Credentials::load(Path::new(src))?, src.clone()));
        }
        let missing = format!(
            "no S3 key to restore with: the rescue image holds none (set backup.s3.image-credentials-file to a read-only key and run \
             mkrescue), backup.s3.recover-key-from is not set (a file, or usb://LABEL/path on a stick), and backup.s3.credentials-file \
             {} cannot be read",
            cfg.credentials_file.display()
        );
        return match (Credentials::load(&cfg.credentials_file), ask) {
            (Ok(creds), _) => Ok((creds, cfg.credentials_file.display().to_string())),
            (Err(e), None) => Err(e.context(format!("{missing}; nobody to ask (unattended, or no terminal)"))),
            (Err(_), Some(ask)) => Ok((ask_credentials(cfg, ask, &missing)?, TYPED.to_string())),
        };
    }
    Ok((Credentials::load(&cfg.credentials_file)?, cfg.credentials_file.display().to_string()))
}

/// Ask the person at the console for a key: the id echoed, the secret not.
fn ask_credentials(cfg: &S3Config, ask: &dyn crate::backup::Ask, why: &str) -> Result<Credentials> {
    let endpoint = cfg.endpoint.clone().unwrap_or_else(|| format!("AWS S3 ({})", cfg.region));
    let id = ask.line(&format!("{why}.\nType a key that may read the backups at {endpoint} (a read-only one is enough).\nAccess key id: "))?;
    let secret = if id.is_empty() { String::new() } else { ask.secret("Secret access key: ")? };
    if id.is_empty() || secret.is_empty() {
        crate::bail_input!(
            "no S3 key was typed; nothing was written. Type an access key id and its secret, or give a read-only key with \
             backup.s3.recover-key-from (a file, or usb://LABEL/path on a stick)"
        );
    }
    Ok(Credentials { access_key_id: id, secret_access_key: secret, session_token: None })
}

/// A store for `url` with the credential `access` needs, checked: the
/// endpoint answers, the credential is accepted, the bucket exists.
pub fn connect(url: &S3Url, cfg: &crate::backup::BackupConfig, access: Access) -> Result<Store> {
    let (creds, from) = credentials(&cfg.s3, access, cfg.timeout, None)?;
    checked_store(url, cfg, &creds, &from)
}

fn checked_store(url: &S3Url, cfg: &crate::backup::BackupConfig, creds: &Credentials, from: &str) -> Result<Store> {
    let store = Store::new(url.clone(), &cfg.s3, creds, Duration::from_secs(cfg.timeout))?;
    store.check().with_context(|| format!("the S3 credential came from {from}"))?;
    Ok(store)
}

/// The S3 method: rescue's archives as objects under `s3://BUCKET/PREFIX/HOST/`.
pub struct S3Backend {
    url: String,
    bucket: S3Url,
    cfg: crate::backup::BackupConfig,
    /// A read key typed at the console and accepted: asked once, for the
    /// check and the restore. Never written anywhere.
    typed: std::sync::Mutex<Option<Credentials>>,
}

impl S3Backend {
    pub fn new(url: &str, bucket: S3Url, cfg: crate::backup::BackupConfig) -> S3Backend {
        S3Backend { url: url.to_string(), bucket, cfg, typed: std::sync::Mutex::new(None) }
    }

    /// A store to read from: with the key typed before, or the configured
    /// one, or one asked of `ask`.
    fn connect_read(&self, ask: Option<&dyn crate::backup::Ask>) -> Result<Store> {
        let before = self.typed.lock().ok().and_then(|t| t.clone());
        let (creds, from) = match before {
            Some(c) => (c, TYPED.to_string()),
            None => credentials(&self.cfg.s3, Access::Read, self.cfg.timeout, ask)?,
        };
        let store = checked_store(&self.bucket, &self.cfg, &creds, &from)?;
        if from == TYPED {
            tracing::info!("{} accepted the S3 key {} typed on the terminal", store.endpoint, creds.access_key_id);
            if let Ok(mut t) = self.typed.lock() {
                *t = Some(creds);
            }
        }
        Ok(store)
    }

    /// The backup `pick` names (or the newest) of the host `layout`
    /// describes, after checking endpoint, credential, bucket, the object
    /// and its record; with the store to read it from.
    fn find(&self, layout: Option<&crate::layout::Layout>, pick: &crate::backup::Pick, ask: Option<&dyn crate::backup::Ask>) -> Result<(Store, StoredBackup)> {
        pick.no_jobs("rescue's archives in object storage")?;
        let host = crate::backup::host_dir_name(crate::backup::descriptor(layout)?);
        let store = self.connect_read(ask)?;
        let backup = store.find(&host, pick.archive.as_deref())?;
        store.read_record(&backup).with_context(|| format!("the backup {} has no readable record: restore another one with --archive NAME", backup.name))?;
        Ok((store, backup))
    }
}

impl crate::backup::Backend for S3Backend {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn follows_the_descriptor(&self) -> bool {
        true
    }

    fn chains(&self) -> crate::backup::Chains {
        crate::backup::Chains::NotMade { method: "the S3 method".into(), instead: "each backup is one complete archive object, streamed as it is made" }
    }

    /// Archive straight into a multipart upload, then write the record.
    fn backup(&self, set: &crate::backup::BackupSet) -> Result<crate::backup::Backed> {
        let layout = set.recorded()?;
        let host = crate::backup::host_dir_name(layout);
        let store = connect(&self.bucket, &self.cfg, Access::Write)?;
        let job = crate::backup::archives::archive_job(set, layout, &self.cfg, None)?;
        let key = self.bucket.key(&host, &job.name);
        let started = time::OffsetDateTime::now_utc();
        let clock = std::time::Instant::now();
        let upload = store.upload(&key)?;
        // On an error the upload is dropped inside create, which aborts it.
        let (upload, create) = crate::archive::create(&job.sources, upload, &job.copts)
            .with_context(|| format!("backing up to s3://{}/{key}: the upload was aborted and nothing was stored", self.bucket.bucket))?;
        let create = job.report(create);
        let size = upload.finish()?;
        let record = serde_json::json!({
            "archive": job.name,
            "bytes": size,
            "created": started.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            "files": create.files,
            "data-bytes": create.bytes,
        });
        store.put_small(&format!("{key}{RECORD_SUFFIX}"), record.to_string().into_bytes())?;
        tracing::info!(
            "stored s3://{}/{key} ({}, {} files, {:.1} s)",
            self.bucket.bucket,
            crate::util::human_bytes(size),
            create.files,
            clock.elapsed().as_secs_f64()
        );
        let archive = format!("s3://{}/{key}", self.bucket.bucket);
        Ok(crate::backup::Backed::Archive(crate::backup::BackupReport { url: self.url.clone(), archive, create, mounts: set.mounts.clone(), link: None }))
    }

    fn check(
        &self,
        layout: Option<&crate::layout::Layout>,
        pick: &crate::backup::Pick,
        opts: &crate::backup::CheckOptions,
    ) -> Result<crate::backup::BackupUsed> {
        let (store, found) = self.find(layout, pick, opts.ask).context("the S3 backup cannot be restored; nothing was written")?;
        let mut used = crate::backup::BackupUsed::at(&self.url, &crate::backup::Pick { archive: Some(found.name.clone()), ..crate::backup::Pick::default() });
        used.archive = Some(found.name.clone());
        used.archive_bytes = Some(found.size);
        used.unread = !opts.verify;
        if opts.verify {
            tracing::info!("verifying s3://{}/{} ({}) before touching any disk", self.bucket.bucket, found.key, crate::util::human_bytes(found.size));
            let reader = store.open(&found.key)?;
            let r = crate::backup::archives::verify_stream(reader, Some(found.size), Path::new(&found.key), opts.keys, opts.progress).map_err(|e| {
                anyhow::anyhow!(format!("the backup archive {} is damaged: {e:#}. Nothing was written; restore another backup with --archive NAME", found.key))
            })?;
            used.verified = true;
            used.data_bytes = Some(r.0);
            used.files = r.1;
            used.listing = Some(crate::backup::archives::root_relative(r.2));
        } else {
            // One pass (blank disks): the content is checked during the
            // restore, but the object must at least open and start well.
            let start = store.open_start(&found.key, crate::backup::archives::START_BYTES)?;
            crate::backup::archives::check_start(start, Path::new(&found.key), opts.keys)
                .with_context(|| format!("checking the start of s3://{}/{}", self.bucket.bucket, found.key))?;
        }
        Ok(used)
    }

    /// Stream the object into the extractor: no temporary copy.
    fn restore(
        &self,
        layout: Option<&crate::layout::Layout>,
        pick: &crate::backup::Pick,
        target: &Path,
        opts: &crate::backup::RestoreOptions,
    ) -> Result<crate::backup::Restored> {
        let (store, found) = self.find(layout, pick, opts.ask)?;
        let what = format!("s3://{}/{}", self.bucket.bucket, found.key);
        tracing::info!("restoring {what} into {}", target.display());
        let reader = crate::archive::age::open(store.open(&found.key)?, Path::new(&found.key), opts.keys)?;
        let eopts = crate::archive::ExtractOptions {
            target: target.to_path_buf(),
            progress: opts.progress,
            total_bytes: Some(found.size),
            keep_manifest: false,
            incremental: false,
        };
        let r = crate::archive::extract(reader, &eopts).with_context(|| format!("restoring {what} into {}", target.display()))?;
        Ok(crate::backup::Restored::Files(r))
    }

    fn list(&self, layout: Option<&crate::layout::Layout>) -> Result<Vec<String>> {
        let host = crate::backup::host_dir_name(crate::backup::descriptor(layout)?);
        let store = connect(&self.bucket, &self.cfg, Access::Read)?;
        Ok(store.list(&host)?.into_iter().map(|b| b.name).collect())
    }

    /// Delete what `keep` no longer keeps, except backups Object Lock still
    /// protects (reported, never tried); abort uploads killed runs left.
    fn keep(&self, layout: Option<&crate::layout::Layout>) -> Result<Vec<String>> {
        let host = crate::backup::host_dir_name(crate::backup::descriptor(layout)?);
        let store = connect(&self.bucket, &self.cfg, Access::Write)?;
        // Uploads started before the newest backup belong to runs that are
        // gone (this run's upload is complete by now).
        let newest = store.list(&host)?.first().and_then(|b| stamp_of(&b.name));
        let report = store.prune(&host, self.cfg.keep, newest.unwrap_or_else(|| time::OffsetDateTime::now_utc() - time::Duration::minutes(1)))?;
        Ok(report.deleted)
    }

    fn rescue_needs(&self) -> crate::needs::Needs {
        crate::needs::Needs::default()
    }

    /// The read-only key, only when `image-credentials-file` names one;
    /// never the write key.
    fn image_parts(&self) -> Result<crate::backup::ImageParts> {
        let mut parts = crate::backup::ImageParts::default();
        if let Some(read_key) = &self.cfg.s3.image_credentials_file {
            let text =
                std::fs::read(read_key).with_context(|| format!("reading backup.s3.image-credentials-file {} for the rescue image", read_key.display()))?;
            let creds = Credentials::from_toml(&String::from_utf8_lossy(&text), &read_key.display().to_string())?;
            parts.files.push((PathBuf::from(IMAGE_CREDENTIALS_PATH), text, 0o600));
            parts.secrets.push(format!("the read-only S3 key {} ({IMAGE_CREDENTIALS_PATH})", creds.access_key_id));
        }
        Ok(parts)
    }

    fn settings(&self) -> Option<crate::backup::Settings> {
        None
    }
}

/// When the backup `backup-YYYYMMDD-HHMMSS[-UUUUUU].tar...` was started (UTC, to the second).
fn stamp_of(name: &str) -> Option<time::OffsetDateTime> {
    let stamp = name.strip_prefix(crate::backup::archives::BACKUP_PREFIX)?.get(..15)?;
    let format = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    time::PrimitiveDateTime::parse(stamp, &format).ok().map(|t| t.assume_utc())
}

/// Parts of at most this many bytes are uploading while the next one fills.
const INFLIGHT_PARTS: usize = 2;

/// Part `n` (0-based) of an upload with base part size `base`: it doubles
/// every 1000 parts up to 64 times the base (and S3's 5 GiB), so S3's 10000
/// parts reach its largest object (5 TiB) from the default 16 MiB, while
/// small archives keep small parts.
fn part_size(base: usize, n: usize) -> usize {
    (base << (n / 1000).min(6)).min(5 << 30)
}

type PartResult = std::result::Result<CompletedPart, SdkError<aws_sdk_s3::operation::upload_part::UploadPartError, aws_sdk_s3::config::http::HttpResponse>>;

/// A multipart upload as a `Write`: parts are sent as they fill, at most
/// [`INFLIGHT_PARTS`] at a time, so memory stays at a few parts whatever the
/// archive's size. [`Upload::finish`] completes it; dropped unfinished (an
/// error while archiving, a panic), it is aborted and no object appears.
pub struct Upload {
    store: Store,
    key: String,
    upload_id: String,
    buf: Vec<u8>,
    parts: usize,
    inflight: VecDeque<(i32, tokio::task::JoinHandle<PartResult>)>,
    done: Vec<CompletedPart>,
    written: u64,
    finished: bool,
}

impl Upload {
    fn send_part(&mut self) -> Result<()> {
        while self.inflight.len() >= INFLIGHT_PARTS {
            self.wait_oldest()?;
        }
        self.parts += 1;
        let number = self.parts as i32;
        let next = part_size(self.store.part_size, self.parts);
        let body = std::mem::replace(&mut self.buf, Vec::with_capacity(next));
        let req = self.store.client.upload_part().bucket(&self.store.url.bucket).key(&self.key).upload_id(&self.upload_id).part_number(number);
        let req = req.body(ByteStream::from(body));
        // The task holds no Store: the runtime must never be dropped by one of its own tasks.
        let task = self.store.rt.spawn(async move {
            let out = req.send().await?;
            Ok(CompletedPart::builder().part_number(number).set_e_tag(out.e_tag().map(str::to_string)).build())
        });
        self.inflight.push_back((number, task));
        Ok(())
    }

    fn wait_oldest(&mut self) -> Result<()> {
        if let Some((number, task)) = self.inflight.pop_front() {
            let part = self.store.rt.block_on(task).context("an upload task of the S3 client failed")?;
            let part = part.map_err(|e| self.store.explain(&format!("uploading part {number} of {}", self.key), e))?;
            self.done.push(part);
        }
        Ok(())
    }

    /// Send what is left and complete the upload: the object appears now.
    /// Returns its size.
    pub fn finish(mut self) -> Result<u64> {
        if !self.buf.is_empty() || self.parts == 0 {
            self.send_part()?;
        }
        while !self.inflight.is_empty() {
            self.wait_oldest()?;
        }
        self.done.sort_by_key(|p| p.part_number());
        let parts = CompletedMultipartUpload::builder().set_parts(Some(std::mem::take(&mut self.done))).build();
        let req =
            self.store.client.complete_multipart_upload().bucket(&self.store.url.bucket).key(&self.key).upload_id(&self.upload_id).multipart_upload(parts);
        let out = self.store.rt.block_on(req.send()).map_err(|e| self.store.explain(&format!("completing the upload of {}", self.key), e))?;
        self.finished = true;
        self.store.set_retention(&self.key, out.version_id())?;
        Ok(self.written)
    }
}

impl Write for Upload {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let target = part_size(self.store.part_size, self.parts);
        let n = data.len().min(target.saturating_sub(self.buf.len()));
        self.buf.extend_from_slice(&data[..n]);
        self.written += n as u64;
        if self.buf.len() >= target {
            self.send_part().map_err(|e| io::Error::other(format!("{e:#}")))?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        for (_, task) in self.inflight.drain(..) {
            task.abort();
        }
        let req = self.store.client.abort_multipart_upload().bucket(&self.store.url.bucket).key(&self.key).upload_id(&self.upload_id);
        match self.store.rt.block_on(req.send()) {
            Ok(_) => tracing::info!("aborted the upload of {}: no object was left", self.key),
            Err(e) => tracing::warn!(
                "could not abort the unfinished upload of {} ({}); no object appears, and the next backup aborts it",
                self.key,
                self.store.explain("aborting", e)
            ),
        }
    }
}

/// An object's body as a `Read`, fetched as the reader asks for it.
pub struct ObjectReader {
    rt: Arc<tokio::runtime::Runtime>,
    body: ByteStream,
    chunk: bytes::Bytes,
    key: String,
}

impl Read for ObjectReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rt.block_on(self.body.next()) {
                None => return Ok(0),
                Some(Ok(b)) => self.chunk = b,
                Some(Err(e)) => return Err(io::Error::other(format!("reading {} from S3: {e}", self.key))),
            }
        }
        let n = out.len().min(self.chunk.len());
        out[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk = self.chunk.slice(n..);
        Ok(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn backup_names_carry_their_start_time() {
        let t = stamp_of("backup-20261202-013544.tar.zst").unwrap();
        assert_eq!(t.unix_timestamp(), 1_796_175_344);
        assert!(stamp_of("backup-now.tar.zst").is_none());
    }

    #[test]
    fn parts_grow_to_reach_the_largest_s3_object() {
        let base = 16 << 20;
        assert_eq!(part_size(base, 0), base);
        assert_eq!(part_size(base, 999), base);
        assert_eq!(part_size(base, 1000), 2 * base);
        let total: u64 = (0..10_000).map(|n| part_size(base, n) as u64).sum();
        assert!(total > 9 << 39, "{total}: less than S3's largest object (5 TiB)");
        assert_eq!(part_size(1 << 30, 9999), 5 << 30, "S3 parts are at most 5 GiB");
    }
}
