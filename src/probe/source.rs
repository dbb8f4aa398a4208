//! Where the probe reads the system from: the live system, a fixture file
//! recorded earlier from a real system, or the live system while recording
//! such a fixture.
//!
//! Probing code never calls `Cmd` or `std::fs` directly; it asks a
//! [`SystemView`]. That is what lets unit tests replay the exact output of
//! `lsblk`, `lvm`, `mdadm` and `cryptsetup` captured inside a VM that had
//! LVM, MD and LUKS, on a host that has none of them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cmd::Cmd;

/// Read access to a system, the only way probing looks at one.
pub trait SystemView: Sync {
    /// Run a command (argv) and return its stdout. Fails like [`Cmd::read`].
    fn run(&self, argv: &[&str]) -> Result<String>;
    /// Read a text file (`/proc/...`, `/sys/...`, `/etc/...`).
    fn read(&self, path: &str) -> Result<String>;
    /// The first `len` bytes of a file or device, hex-encoded.
    fn read_head(&self, path: &str, len: usize) -> Result<Vec<u8>>;
    /// Entries of a directory (names only, sorted).
    fn list_dir(&self, path: &str) -> Result<Vec<String>>;
    /// Target of a symlink.
    fn read_link(&self, path: &str) -> Result<String>;
    /// Whether a path exists.
    fn exists(&self, path: &str) -> bool;
    /// (size, used) bytes of the filesystem mounted at `path`.
    fn statvfs(&self, path: &str) -> Result<(u64, u64)>;
}

/// The running system.
pub struct Live;

impl SystemView for Live {
    fn run(&self, argv: &[&str]) -> Result<String> {
        let (prog, args) = argv.split_first().ok_or_else(|| anyhow!("empty command"))?;
        Cmd::new(prog).args(args).read()
    }
    fn read(&self, path: &str) -> Result<String> {
        std::fs::read_to_string(path).with_context(|| format!("reading {path}"))
    }
    fn read_head(&self, path: &str, len: usize) -> Result<Vec<u8>> {
        use std::io::Read;
        let mut f = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
        let mut buf = vec![0u8; len];
        let n = f.read(&mut buf).with_context(|| format!("reading {path}"))?;
        buf.truncate(n);
        Ok(buf)
    }
    fn list_dir(&self, path: &str) -> Result<Vec<String>> {
        let mut v: Vec<String> = std::fs::read_dir(path)
            .with_context(|| format!("listing {path}"))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        v.sort();
        Ok(v)
    }
    fn read_link(&self, path: &str) -> Result<String> {
        Ok(std::fs::read_link(path).with_context(|| format!("reading link {path}"))?.to_string_lossy().into_owned())
    }
    fn exists(&self, path: &str) -> bool {
        Path::new(path).exists()
    }
    fn statvfs(&self, path: &str) -> Result<(u64, u64)> {
        let s = nix::sys::statvfs::statvfs(path).with_context(|| format!("statvfs {path}"))?;
        let frsize = s.fragment_size() as u64;
        let size = s.blocks() as u64 * frsize;
        let used = (s.blocks() as u64).saturating_sub(s.blocks_free() as u64) * frsize;
        Ok((size, used))
    }
}

/// A recorded system: every answer the probe got, keyed by the question.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Fixture {
    /// What this fixture is (free text, e.g. "Debian 12 VM, LUKS2 on vdb2 holding LVM").
    #[serde(default)]
    pub description: String,
    /// `argv joined by spaces` -> result.
    pub commands: BTreeMap<String, Answer>,
    pub files: BTreeMap<String, Answer>,
    #[serde(default)]
    pub heads: BTreeMap<String, Answer>,
    pub dirs: BTreeMap<String, Answer>,
    pub links: BTreeMap<String, Answer>,
    pub exists: BTreeMap<String, bool>,
    #[serde(default)]
    pub statvfs: BTreeMap<String, Answer>,
}

/// One recorded answer: the output, or the error message.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Answer {
    Ok(String),
    Err(String),
}

impl Answer {
    fn from<T: Into<String> + Clone>(r: &Result<T>) -> Self {
        match r {
            Ok(v) => Answer::Ok(v.clone().into()),
            Err(e) => Answer::Err(format!("{e:#}")),
        }
    }
    fn get(&self) -> Result<String> {
        match self {
            Answer::Ok(s) => Ok(s.clone()),
            Answer::Err(e) => Err(anyhow!("{e}")),
        }
    }
}

impl Fixture {
    pub fn load(path: &Path) -> Result<Fixture> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading fixture {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing fixture {}", path.display()))
    }
}

fn missing(kind: &str, key: &str) -> anyhow::Error {
    anyhow!("{kind} `{key}` is not in the fixture")
}

impl SystemView for Fixture {
    fn run(&self, argv: &[&str]) -> Result<String> {
        let key = argv.join(" ");
        self.commands.get(&key).ok_or_else(|| missing("command", &key))?.get()
    }
    fn read(&self, path: &str) -> Result<String> {
        self.files.get(path).ok_or_else(|| missing("file", path))?.get()
    }
    fn read_head(&self, path: &str, len: usize) -> Result<Vec<u8>> {
        let h = self.heads.get(path).ok_or_else(|| missing("device head", path))?.get()?;
        let mut b = hex::decode(h).context("fixture head is not hex")?;
        b.truncate(len);
        Ok(b)
    }
    fn list_dir(&self, path: &str) -> Result<Vec<String>> {
        let s = self.dirs.get(path).ok_or_else(|| missing("directory", path))?.get()?;
        Ok(s.lines().filter(|l| !l.is_empty()).map(str::to_string).collect())
    }
    fn read_link(&self, path: &str) -> Result<String> {
        self.links.get(path).ok_or_else(|| missing("link", path))?.get()
    }
    fn exists(&self, path: &str) -> bool {
        self.exists.get(path).copied().unwrap_or(false)
    }
    fn statvfs(&self, path: &str) -> Result<(u64, u64)> {
        let s = self.statvfs.get(path).ok_or_else(|| missing("statvfs", path))?.get()?;
        let (a, b) = s.split_once(' ').context("bad statvfs record")?;
        Ok((a.parse()?, b.parse()?))
    }
}

/// The live system, writing down every answer into a [`Fixture`].
pub struct Recorder {
    pub fixture: Mutex<Fixture>,
}

impl Recorder {
    pub fn new(description: &str) -> Self {
        Self { fixture: Mutex::new(Fixture { description: description.into(), ..Default::default() }) }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let f = self.fixture.lock().map_err(|_| anyhow!("recorder lock poisoned"))?;
        let text = serde_json::to_string_pretty(&*f)?;
        crate::util::write_atomic(path, text.as_bytes(), 0o644)
    }

    fn with<R>(&self, f: impl FnOnce(&mut Fixture) -> R) -> R {
        let mut guard = match self.fixture.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut guard)
    }
}

impl SystemView for Recorder {
    fn run(&self, argv: &[&str]) -> Result<String> {
        let r = Live.run(argv);
        self.with(|f| f.commands.insert(argv.join(" "), Answer::from(&r)));
        r
    }
    fn read(&self, path: &str) -> Result<String> {
        let r = Live.read(path);
        self.with(|f| f.files.insert(path.into(), Answer::from(&r)));
        r
    }
    fn read_head(&self, path: &str, len: usize) -> Result<Vec<u8>> {
        let r = Live.read_head(path, len);
        let a = match &r {
            Ok(b) => Answer::Ok(hex::encode(b)),
            Err(e) => Answer::Err(format!("{e:#}")),
        };
        // Keep the longest head read of a device: every shorter read is its prefix.
        self.with(|f| {
            let longer = matches!((f.heads.get(path), &a), (Some(Answer::Ok(old)), Answer::Ok(new)) if old.len() > new.len());
            if !longer {
                f.heads.insert(path.into(), a);
            }
        });
        r
    }
    fn list_dir(&self, path: &str) -> Result<Vec<String>> {
        let r = Live.list_dir(path);
        let a = match &r {
            Ok(v) => Answer::Ok(v.join("\n")),
            Err(e) => Answer::Err(format!("{e:#}")),
        };
        self.with(|f| f.dirs.insert(path.into(), a));
        r
    }
    fn read_link(&self, path: &str) -> Result<String> {
        let r = Live.read_link(path);
        self.with(|f| f.links.insert(path.into(), Answer::from(&r)));
        r
    }
    fn exists(&self, path: &str) -> bool {
        let r = Live.exists(path);
        self.with(|f| f.exists.insert(path.into(), r));
        r
    }
    fn statvfs(&self, path: &str) -> Result<(u64, u64)> {
        let r = Live.statvfs(path);
        let a = match &r {
            Ok((s, u)) => Answer::Ok(format!("{s} {u}")),
            Err(e) => Answer::Err(format!("{e:#}")),
        };
        self.with(|f| f.statvfs.insert(path.into(), a));
        r
    }
}
