//! Secrets a workflow reads, below the workflows that use them: the LUKS
//! keys of a recovery (`recover.luks-keys`, `--luks-key NAME=SOURCE`), read
//! in the verify phase before any disk is written; the age identity of
//! encrypted backups (recover, restoreonly, `archive extract`); and the
//! person at the terminal (echoed answers, hidden passphrases and keys).
//!
//! A source is a key file in the rescue system, or a file on a removable disk
//! found by its filesystem label (`usb://LABEL/path`, also
//! `usb:///dev/disk/by-label/LABEL/path`). The disk is mounted read-only only
//! for the read (the usb:// code of [`crate::backup::location`]), so the key
//! never has to be inside the rescue image, and an unattended recovery needs
//! nobody at the console: only the stick plugged in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::apply::LuksKey;
use crate::archive::age::{Identity, IdentitySource};
use crate::backup::location;
use crate::config::LuksKeySource;
use crate::error::input_error;

/// The keys, ready for [`crate::apply::ApplyOptions`].
#[derive(Default)]
pub struct Keys {
    /// LUKS mapper name -> key.
    pub keys: BTreeMap<String, LuksKey>,
    /// Devices keys were read from: their disks are never recovery targets.
    pub devices: Vec<PathBuf>,
}

/// Get the key of every LUKS volume in `volumes` (mapper names). A volume
/// without a source is left to the prompt when `can_ask`; otherwise that is an
/// error here, before anything is written. USB disks are waited for up to
/// `wait` and mounted with `mount_timeout`.
pub fn read_keys(sources: &BTreeMap<String, LuksKeySource>, volumes: &[String], can_ask: bool, wait: Duration, mount_timeout: u64) -> Result<Keys> {
    for name in sources.keys().filter(|n| !volumes.contains(n)) {
        tracing::warn!("a LUKS key is given for {name}, but the descriptor has no LUKS volume {name} (it has: {}); it is not used", list(volumes));
    }
    let missing: Vec<&String> = volumes.iter().filter(|v| !sources.contains_key(*v)).collect();
    if !can_ask && !missing.is_empty() {
        let n = missing[0];
        return Err(input_error(format!(
            "no key for the LUKS volume(s) {} and nobody to ask (unattended, or no terminal); nothing was written. Give each a key: \
             `luks-keys = {{ {n} = \"usb://LABEL/path/{n}.key\" }}` under [recover] in the rescue image's config (a file on a \
             USB stick with that filesystem label), or `rescue recover --luks-key {n}=FILE`",
            missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    let mut out = Keys::default();
    for name in volumes {
        let Some(source) = sources.get(name) else { continue };
        match source {
            LuksKeySource::File(p) => {
                if !p.is_file() {
                    return Err(input_error(format!(
                        "the key file {} for the LUKS volume {name} does not exist in the rescue system; nothing was written. \
                         Copy it there, or give its place with --luks-key {name}=FILE (usb://LABEL/path for a USB stick)",
                        p.display()
                    )));
                }
                out.keys.insert(name.clone(), LuksKey::File(p.clone()));
            }
            LuksKeySource::Usb { url, location } => {
                let (bytes, dev) = location::read_usb_file(location, wait, mount_timeout)
                    .with_context(|| format!("reading the key of the LUKS volume {name} from {url}; nothing was written"))?;
                tracing::info!("the key of the LUKS volume {name} was read from {url} ({}, {} bytes)", dev.display(), bytes.len());
                out.keys.insert(name.clone(), LuksKey::Bytes(bytes));
                if !out.devices.contains(&dev) {
                    out.devices.push(dev);
                }
            }
        }
    }
    Ok(out)
}

/// The age identity that opens encrypted backups. It is read from its
/// source (a file, or a USB stick like a LUKS key), or asked for on the
/// terminal, only when an encrypted archive is met, and then kept for the
/// restore. It is never logged, and never passed to another program.
pub struct AgeKey {
    source: Option<LuksKeySource>,
    can_ask: bool,
    wait: Duration,
    mount_timeout: u64,
    got: Mutex<Option<(Arc<Identity>, Option<PathBuf>)>>,
}

impl AgeKey {
    pub fn new(source: Option<LuksKeySource>, can_ask: bool, wait: Duration, mount_timeout: u64) -> AgeKey {
        AgeKey { source, can_ask, wait, mount_timeout, got: Mutex::new(None) }
    }

    /// The device the identity was read from (a USB stick): never a recovery target.
    pub fn device(&self) -> Option<PathBuf> {
        self.got.lock().ok().and_then(|g| g.as_ref().and_then(|(_, d)| d.clone()))
    }

    fn read(&self, archive: &Path) -> Result<(Identity, Option<PathBuf>)> {
        let nothing = "nothing was written";
        match &self.source {
            Some(LuksKeySource::File(p)) => {
                let text = std::fs::read(p).map_err(|e| {
                    input_error(format!(
                        "the age identity file {} cannot be read ({e}); {nothing}. Copy it into the rescue system, or give its place \
                         with --age-identity FILE (usb://LABEL/path for a USB stick)",
                        p.display()
                    ))
                })?;
                Ok((Identity::parse(&text, &p.display().to_string())?, None))
            }
            Some(LuksKeySource::Usb { url, location }) => {
                let (bytes, dev) = location::read_usb_file(location, self.wait, self.mount_timeout)
                    .with_context(|| format!("reading the age identity from {url}; {nothing}"))?;
                tracing::info!("the age identity was read from {url} ({})", dev.display());
                Ok((Identity::parse(&bytes, url)?, Some(dev)))
            }
            None if self.can_ask => {
                let answer =
                    read_hidden(&format!("{} is encrypted. Paste its age identity (AGE-SECRET-KEY-1...) or type its passphrase: ", archive.display()))?;
                Ok((Identity::parse(answer.as_bytes(), "typed on the terminal")?, None))
            }
            None => Err(input_error(format!(
                "the backup {} is encrypted (age) and no identity is given, with nobody to ask (unattended, or no terminal); \
                 {nothing}. Set `age-identity = \"usb://LABEL/path/key.txt\"` under [recover] in the rescue image's config (a file \
                 on a USB stick with that filesystem label), or pass --age-identity FILE",
                archive.display()
            ))),
        }
    }
}

impl IdentitySource for AgeKey {
    fn identity_for(&self, archive: &Path) -> Result<Arc<Identity>> {
        let mut got = self.got.lock().map_err(|_| anyhow::anyhow!("the age identity holder was poisoned by a failed thread"))?;
        if let Some((id, _)) = got.as_ref() {
            return Ok(id.clone());
        }
        let (id, dev) = self.read(archive)?;
        let id = Arc::new(id);
        *got = Some((id.clone(), dev));
        Ok(id)
    }
}

/// The age identity of encrypted backups (`--age-identity`, else
/// `recover.age-identity`), read when an encrypted archive is met.
pub fn age_key(config: &crate::config::Config, flag: Option<LuksKeySource>, interactive: bool) -> AgeKey {
    let source = flag.or_else(|| config.recover.age_identity.clone());
    AgeKey::new(source, interactive, Duration::from_secs(config.backup.timeout), config.backup.timeout * 3)
}

/// The person at the console ([`crate::backup::Ask`]), for a recovery that is
/// not unattended and has a terminal.
pub struct Terminal;

impl crate::backup::Ask for Terminal {
    fn line(&self, prompt: &str) -> Result<String> {
        use std::io::Write;
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        read_line()
    }

    fn secret(&self, prompt: &str) -> Result<String> {
        read_hidden(prompt)
    }
}

/// Read one line from the terminal, echoed.
pub fn read_line() -> Result<String> {
    use std::io::BufRead;
    let mut s = String::new();
    std::io::stdin().lock().read_line(&mut s).context("reading the answer from the terminal")?;
    Ok(s.trim().to_string())
}

/// Read one line from the terminal with echo off (a passphrase, a key).
pub fn read_hidden(prompt: &str) -> Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    use std::io::{BufRead, Write};
    let stdin = std::io::stdin();
    let old = tcgetattr(&stdin).context("reading the terminal settings")?;
    let mut quiet = old.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    // Echo off before the prompt shows: a key typed as soon as the
    // prompt appears must not reach the screen.
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("turning off echo")?;
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut s = String::new();
    let r = stdin.lock().read_line(&mut s).context("reading the answer from the terminal");
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &old);
    eprintln!();
    r?;
    Ok(s.trim().to_string())
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::backup::Location;

    #[test]
    fn parses_files_and_usb_sticks() {
        assert_eq!(LuksKeySource::parse("/root/k").unwrap(), LuksKeySource::File("/root/k".into()));
        let k = LuksKeySource::parse("usb://KEYS/host/cryptroot.key").unwrap();
        assert_eq!(
            k,
            LuksKeySource::Usb {
                url: "usb://KEYS/host/cryptroot.key".into(),
                location: Location::Usb { device: None, label: Some("KEYS".into()), path: "host/cryptroot.key".into() }
            }
        );
        assert_eq!(k.to_string(), "usb://KEYS/host/cryptroot.key");
        let k = LuksKeySource::parse("usb:///dev/disk/by-label/KEYS/k").unwrap();
        assert!(matches!(k, LuksKeySource::Usb { location: Location::Usb { label: Some(l), path, .. }, .. } if l == "KEYS" && path == "k"));
    }

    #[test]
    fn rejects_a_stick_without_a_file_and_unknown_schemes() {
        let e = format!("{:#}", LuksKeySource::parse("usb://KEYS").unwrap_err());
        assert!(e.contains("no file on it"), "{e}");
        assert!(format!("{:#}", LuksKeySource::parse("usb://KEYS/").unwrap_err()).contains("no file on it"));
        assert!(format!("{:#}", LuksKeySource::parse("usb://").unwrap_err()).contains("no USB filesystem label"));
        assert!(format!("{:#}", LuksKeySource::parse("nfs://nas/k").unwrap_err()).contains("unknown scheme nfs://"));
    }

    #[test]
    fn unattended_without_a_key_stops_before_writing() {
        let e = read_keys(&BTreeMap::new(), &["cryptroot".into()], false, Duration::ZERO, 1).err().unwrap();
        let msg = format!("{e:#}");
        assert!(msg.contains("no key for the LUKS volume(s) cryptroot") && msg.contains("nothing was written"), "{msg}");
        assert_eq!(crate::error::exit_code_for(&e), crate::error::EXIT_INPUT);
        // With a terminal the prompt asks later.
        assert!(read_keys(&BTreeMap::new(), &["cryptroot".into()], true, Duration::ZERO, 1).unwrap().keys.is_empty());
    }

    #[test]
    fn key_files_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        let mut src = BTreeMap::new();
        src.insert("cryptroot".to_string(), LuksKeySource::File(key.clone()));
        let msg = format!("{:#}", read_keys(&src, &["cryptroot".into()], false, Duration::ZERO, 1).err().unwrap());
        assert!(msg.contains("does not exist in the rescue system"), "{msg}");
        std::fs::write(&key, b"secret").unwrap();
        let keys = read_keys(&src, &["cryptroot".into()], false, Duration::ZERO, 1).unwrap();
        assert!(matches!(keys.keys.get("cryptroot"), Some(LuksKey::File(p)) if p == &key));
        assert!(keys.devices.is_empty());
    }

    #[test]
    fn missing_usb_label_names_the_label() {
        let mut src = BTreeMap::new();
        src.insert("cryptroot".to_string(), LuksKeySource::parse("usb://RESCUE-TEST-NO-SUCH-LABEL/k").unwrap());
        let msg = format!("{:#}", read_keys(&src, &["cryptroot".into()], false, Duration::ZERO, 1).err().unwrap());
        assert!(msg.contains("from usb://RESCUE-TEST-NO-SUCH-LABEL/k") && msg.contains("no filesystem with the label \"RESCUE-TEST-NO-SUCH-LABEL\""), "{msg}");
        assert!(msg.contains("nothing was written"), "{msg}");
    }

    #[test]
    fn keys_for_volumes_not_in_the_descriptor_are_not_read() {
        let mut src = BTreeMap::new();
        src.insert("other".to_string(), LuksKeySource::parse("usb://RESCUE-TEST-NO-SUCH-LABEL/k").unwrap());
        assert!(read_keys(&src, &[], false, Duration::ZERO, 1).unwrap().keys.is_empty());
    }
}
