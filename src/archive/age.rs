//! Encrypted archives: the compressed tar stream wrapped in the age format
//! (<https://age-encryption.org/v1>), so that `age -d -i KEY F | zstd -d |
//! tar -x` restores a backup without rescue.
//!
//! The backup side holds only recipients (public keys, `age1...`), or a
//! passphrase file for scrypt; the identity (private key or passphrase) is
//! only needed to read an archive back. Secrets live in [`Identity`] and
//! [`EncryptTo`], whose `Debug` never shows them, and never reach a
//! command line: the age crate does the work in this process.
//!
//! age authenticates every 64 KiB chunk of the payload (STREAM): a flipped
//! byte, a truncation or a wrong key is an error here, before a member of
//! the altered chunk reaches the tar reader.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::{ExposeSecret, SecretString};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// How every age file starts (the version line of its header).
pub const MAGIC: &[u8] = b"age-encryption.org/";

/// The suffix an encrypted archive's name gets: `backup-*.tar.zst.age`.
pub const SUFFIX: &str = ".age";

/// `[backup.encrypt]`: whom archives are encrypted to. Empty: not encrypted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct EncryptConfig {
    /// age X25519 recipients (`age1...`, the output of `age-keygen -y`):
    /// anyone holding one of the matching identities can read the backups.
    pub recipients: Vec<String>,
    /// A file holding a passphrase (scrypt). age allows a passphrase only
    /// alone, so this excludes `recipients`.
    pub passphrase_file: Option<PathBuf>,
}

/// The keys archives are encrypted to, checked and ready.
#[derive(Clone)]
pub enum EncryptTo {
    Recipients(Vec<age::x25519::Recipient>),
    Passphrase(SecretString),
}

impl fmt::Debug for EncryptTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncryptTo::Recipients(r) => write!(f, "Recipients({})", r.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ")),
            EncryptTo::Passphrase(_) => f.write_str("Passphrase(<hidden>)"),
        }
    }
}

impl EncryptConfig {
    /// The keys to encrypt to, or `None` when encryption is off.
    pub fn load(&self) -> Result<Option<EncryptTo>> {
        match (self.recipients.is_empty(), &self.passphrase_file) {
            (true, None) => Ok(None),
            (false, Some(_)) => crate::bail_input!(
                "backup.encrypt has both recipients and passphrase-file; the age format allows a passphrase only alone. \
                 Keep one of them (recipients are recommended: the server then holds no secret)"
            ),
            (false, None) => {
                let mut v = Vec::new();
                for (i, r) in self.recipients.iter().enumerate() {
                    let key = age::x25519::Recipient::from_str(r.trim()).map_err(|why| {
                        crate::error::input_error(format!(
                            "backup.encrypt.recipients[{i}] = {r:?} is not an age X25519 recipient ({why}); it looks like \
                             age1... (print it from an identity with `age-keygen -y KEYFILE`)"
                        ))
                    })?;
                    v.push(key);
                }
                Ok(Some(EncryptTo::Recipients(v)))
            }
            (true, Some(p)) => {
                let text = std::fs::read(p).with_context(|| format!("reading the backup passphrase file {} (backup.encrypt.passphrase-file)", p.display()))?;
                let pass = first_line(&text).ok_or_else(|| {
                    crate::error::input_error(format!("the backup passphrase file {} is empty: write the passphrase on its first line", p.display()))
                })?;
                Ok(Some(EncryptTo::Passphrase(SecretString::from(pass))))
            }
        }
    }
}

/// The first line of `text`, without its line end; `None` when empty.
fn first_line(text: &[u8]) -> Option<String> {
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    (!line.is_empty()).then(|| String::from_utf8_lossy(line).into_owned())
}

/// Encrypt everything written to `out`; `finish` writes the last chunk.
pub fn encrypt<W: Write>(out: W, to: &EncryptTo) -> Result<age::stream::StreamWriter<W>> {
    let encryptor = match to {
        EncryptTo::Recipients(r) => age::Encryptor::with_recipients(r.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| anyhow::anyhow!("preparing the age encryption to the backup.encrypt recipients: {e}"))?,
        EncryptTo::Passphrase(p) => age::Encryptor::with_user_passphrase(p.clone()),
    };
    encryptor.wrap_output(out).context("writing the age header of the encrypted archive")
}

/// An output that is encrypted or not, finished the same way.
pub enum MaybeEncrypted<W: Write> {
    Plain(W),
    Age(age::stream::StreamWriter<W>),
}

impl<W: Write> MaybeEncrypted<W> {
    pub fn new(out: W, to: Option<&EncryptTo>) -> Result<Self> {
        Ok(match to {
            Some(to) => MaybeEncrypted::Age(encrypt(out, to)?),
            None => MaybeEncrypted::Plain(out),
        })
    }

    /// Write the last (authenticated) chunk and hand back the output.
    pub fn finish(self) -> io::Result<W> {
        match self {
            MaybeEncrypted::Plain(w) => Ok(w),
            MaybeEncrypted::Age(w) => w.finish(),
        }
    }
}

impl<W: Write> Write for MaybeEncrypted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            MaybeEncrypted::Plain(w) => w.write(buf),
            MaybeEncrypted::Age(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            MaybeEncrypted::Plain(w) => w.flush(),
            MaybeEncrypted::Age(w) => w.flush(),
        }
    }
}

/// What reads an encrypted archive: X25519 identities or a passphrase.
pub enum Identity {
    Keys(Vec<age::x25519::Identity>),
    Passphrase(SecretString),
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Keys(k) => write!(f, "Keys({} hidden)", k.len()),
            Identity::Passphrase(_) => f.write_str("Passphrase(<hidden>)"),
        }
    }
}

impl Identity {
    /// Parse the contents of an identity file (`age-keygen` output: comment
    /// lines and `AGE-SECRET-KEY-1...` lines), or else a passphrase on the
    /// first line. `from` names the source in errors; the secret itself is
    /// never part of a message.
    pub fn parse(text: &[u8], from: &str) -> Result<Identity> {
        let text = String::from_utf8_lossy(text);
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if !line.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
                continue;
            }
            let key = age::x25519::Identity::from_str(line).map_err(|why| {
                crate::error::input_error(format!(
                    "line {} of the age identity {from} is not a valid AGE-SECRET-KEY-1... line ({why}); check that the file was copied whole",
                    n + 1
                ))
            })?;
            keys.push(key);
        }
        if !keys.is_empty() {
            return Ok(Identity::Keys(keys));
        }
        match first_line(text.as_bytes()) {
            Some(p) => Ok(Identity::Passphrase(SecretString::from(p))),
            None => crate::bail_input!("the age identity {from} is empty: it must hold an AGE-SECRET-KEY-1... line (from age-keygen) or a passphrase"),
        }
    }

    fn as_age(&self) -> Vec<Box<dyn age::Identity + '_>> {
        match self {
            Identity::Keys(k) => k.iter().map(|k| Box::new(k.clone()) as Box<dyn age::Identity>).collect(),
            Identity::Passphrase(p) => vec![Box::new(age::scrypt::Identity::new(p.clone()))],
        }
    }

    /// Whether it is a passphrase (for messages: "the passphrase" / "the key").
    pub fn is_passphrase(&self) -> bool {
        matches!(self, Identity::Passphrase(p) if !p.expose_secret().is_empty())
    }
}

/// Whether a stream starting with `first` is an age file.
pub fn is_encrypted(first: &[u8]) -> bool {
    first.starts_with(MAGIC)
}

/// Gives the identity for an encrypted archive when one is met: read from
/// a file, a USB stick or the terminal by the caller, only if needed.
pub trait IdentitySource {
    fn identity_for(&self, archive: &Path) -> Result<std::sync::Arc<Identity>>;
}

/// For callers that have no identity: an encrypted archive is an error saying what to pass.
pub struct NoIdentity;

impl IdentitySource for NoIdentity {
    fn identity_for(&self, archive: &Path) -> Result<std::sync::Arc<Identity>> {
        crate::bail_input!(
            "the archive {} is encrypted (age) and no identity was given; pass --age-identity FILE (the AGE-SECRET-KEY-1... file, \
             or a file holding the passphrase)",
            archive.display()
        )
    }
}

/// `input` as a plain archive stream: decrypted when it is an age file
/// (the identity comes from `keys`, asked only then), passed through
/// otherwise. A wrong key fails here, before anything is read further.
pub fn open<R: Read + Send + 'static>(input: R, name: &Path, keys: &dyn IdentitySource) -> Result<Box<dyn Read + Send>> {
    let mut br = BufReader::with_capacity(1 << 20, input);
    let head = br.fill_buf().with_context(|| format!("reading {}", name.display()))?;
    if !is_encrypted(head) {
        return Ok(Box::new(br));
    }
    let identity = keys.identity_for(name)?;
    decrypt(br, &identity, name)
}

/// Decrypt an age stream with `identity`.
pub fn decrypt<R: BufRead + Send + 'static>(input: R, identity: &Identity, name: &Path) -> Result<Box<dyn Read + Send>> {
    let decryptor = age::Decryptor::new_buffered(input).map_err(|e| header_error(e, name))?;
    let ids = identity.as_age();
    let reader = decryptor.decrypt(ids.iter().map(|i| i.as_ref())).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys | age::DecryptError::DecryptionFailed | age::DecryptError::KeyDecryptionFailed => crate::error::input_error(format!(
            "the age identity given does not open {} (it was encrypted to other recipients{}); nothing was read from it. \
                 Give the identity that matches one of backup.encrypt.recipients of the source system",
            name.display(),
            if identity.is_passphrase() { ", or with another passphrase" } else { "" }
        )),
        e => header_error(e, name),
    })?;
    Ok(Box::new(Authenticated { inner: reader, name: name.display().to_string() }))
}

fn header_error(e: age::DecryptError, name: &Path) -> anyhow::Error {
    anyhow::anyhow!("the age header of {} cannot be read ({e}): the file is damaged or not an age file; restore another backup", name.display())
}

/// Turns the STREAM's chunk errors into a sentence: the data was altered.
struct Authenticated<R> {
    inner: R,
    name: String,
}

impl<R: Read> Read for Authenticated<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData || e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(
                    e.kind(),
                    format!(
                        "the encrypted archive {} fails age's authentication ({e}): it was altered, damaged or cut short after it \
                         was written. Its data cannot be trusted; restore another backup",
                        self.name
                    ),
                )
            } else {
                e
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    struct Given(std::sync::Arc<Identity>);
    impl IdentitySource for Given {
        fn identity_for(&self, _: &Path) -> Result<std::sync::Arc<Identity>> {
            Ok(self.0.clone())
        }
    }

    fn sealed(to: &EncryptTo, data: &[u8]) -> Vec<u8> {
        let mut w = MaybeEncrypted::new(Vec::new(), Some(to)).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn opened(file: Vec<u8>, id: Identity) -> Result<Vec<u8>> {
        let mut r = open(io::Cursor::new(file), Path::new("a.tar.zst.age"), &Given(std::sync::Arc::new(id)))?;
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn round_trip_wrong_key_and_flipped_byte() {
        let id = age::x25519::Identity::generate();
        let cfg = EncryptConfig { recipients: vec![id.to_public().to_string()], passphrase_file: None };
        let to = cfg.load().unwrap().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        let file = sealed(&to, &data);
        assert!(is_encrypted(&file));
        let secret = id.to_string();
        let text = format!("# created: now\n# public key: x\n{}\n", secret.expose_secret());
        assert_eq!(opened(file.clone(), Identity::parse(text.as_bytes(), "test").unwrap()).unwrap(), data);

        let other = age::x25519::Identity::generate();
        let e = opened(file.clone(), Identity::Keys(vec![other])).unwrap_err();
        assert!(format!("{e:#}").contains("does not open"), "{e:#}");
        assert_eq!(crate::error::exit_code_for(&e), 2);

        let mut bad = file.clone();
        let at = bad.len() - 70_000;
        bad[at] ^= 1;
        let e = opened(bad, Identity::Keys(vec![id.clone()])).unwrap_err();
        assert!(format!("{e:#}").contains("fails age's authentication"), "{e:#}");
        let mut short = file;
        short.truncate(short.len() - 100);
        let e = opened(short, Identity::Keys(vec![id])).unwrap_err();
        assert!(format!("{e:#}").contains("fails age's authentication"), "{e:#}");
    }

    #[test]
    fn passphrase_round_trip_and_plain_input_passes_through() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pass");
        std::fs::write(&p, "correct horse\n").unwrap();
        let cfg = EncryptConfig { recipients: vec![], passphrase_file: Some(p) };
        let to = cfg.load().unwrap().unwrap();
        assert_eq!(format!("{to:?}"), "Passphrase(<hidden>)");
        let file = sealed(&to, b"hello");
        assert_eq!(opened(file.clone(), Identity::parse(b"correct horse\n", "t").unwrap()).unwrap(), b"hello");
        let e = opened(file, Identity::parse(b"wrong", "t").unwrap()).unwrap_err();
        assert!(format!("{e:#}").contains("another passphrase"), "{e:#}");
        let mut r = open(io::Cursor::new(b"plain".to_vec()), Path::new("x"), &NoIdentity).unwrap();
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "plain");
        let e = open(io::Cursor::new(sealed(&to, b"x")), Path::new("x.age"), &NoIdentity).err().unwrap();
        assert!(format!("{e:#}").contains("--age-identity"), "{e:#}");
    }

    #[test]
    fn config_errors_name_the_key_and_never_the_secret() {
        let both = EncryptConfig { recipients: vec!["age1x".into()], passphrase_file: Some("/p".into()) };
        assert!(format!("{:#}", both.load().unwrap_err()).contains("only alone"));
        let bad = EncryptConfig { recipients: vec!["age1nope".into()], passphrase_file: None };
        assert!(format!("{:#}", bad.load().unwrap_err()).contains("recipients[0]"));
        let e = Identity::parse(b"AGE-SECRET-KEY-1NOTAKEYATALLXYZ\n", "usb://KEYS/id").unwrap_err();
        let m = format!("{e:#}");
        assert!(m.contains("line 1 of the age identity usb://KEYS/id") && !m.contains("NOTAKEY"), "{m}");
        let id = Identity::parse(age::x25519::Identity::generate().to_string().expose_secret().as_bytes(), "t").unwrap();
        assert_eq!(format!("{id:?}"), "Keys(1 hidden)");
        assert!(Identity::parse(b"", "t").is_err());
    }
}
