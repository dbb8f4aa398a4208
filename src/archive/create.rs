//! Writing an archive. Three stages overlap:
//! 1. a walker thread lists the sources depth-first (lstat, excludes,
//!    one-file-system with nested btrfs subvolumes, hard link detection) in
//!    a fixed order;
//! 2. reader threads read small files whole (and every entry's xattrs and
//!    ACLs) and checksum them, ahead of the writer, within a memory budget;
//! 3. the calling thread writes headers and data in the walker's order,
//!    streaming large and sparse files itself, into the compressor, whose
//!    own worker threads compress.
//!
//! Files that vanish, change or cannot be read are warnings, not failures.
//!
//! An archive of an incremental chain ([`CreateOptions::chain`]) is the same
//! walk with a filter: every directory carries its dumpdir (GNU tar's
//! incremental format, see `incremental`), and entries unchanged since the
//! previous archive of the chain are listed there but left out. The state
//! the next incremental compares against comes back in the report.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{File, Metadata};
use std::io::{self, BufWriter, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use xxhash_rust::xxh3::{xxh3_128, Xxh3};

use super::format::{self, EntryMeta, Kind};
use super::incremental::{self, DIRECTORY, IN_ARCHIVE, UNCHANGED};
use super::progress::Progress;
use super::snapshot::{FileState, Snapshot};
use super::{Compression, Sink};

/// Files up to this size are read whole by the reader threads.
const SMALL_FILE: u64 = 1 << 20;
/// Bytes of read-ahead file data held in memory at most.
const READ_AHEAD_BUDGET: u64 = 32 << 20;
/// Entries queued between the walker and the writer at most.
const QUEUE: usize = 2048;
const CHUNK: usize = 1 << 20;

/// One tree to archive: `path` on disk, stored under `name` in the archive
/// (`""` stores the tree's root as `.` and its children at the top level).
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub name: Vec<u8>,
}

impl Source {
    /// Like tar: `/etc` is stored as `etc`, `./x` as `x`.
    pub fn from_path(path: &Path) -> Source {
        let s = path.as_os_str().as_bytes();
        let mut n: &[u8] = s;
        loop {
            if let Some(r) = n.strip_prefix(b"/") {
                n = r;
            } else if let Some(r) = n.strip_prefix(b"./") {
                n = r;
            } else {
                break;
            }
        }
        let mut name = n.to_vec();
        while name.ends_with(b"/") {
            name.pop();
        }
        if name == b"." {
            name.clear();
        }
        Source { path: path.to_path_buf(), name }
    }
}

#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub compression: Compression,
    pub level: Option<i32>,
    /// Compression worker threads (zstd workers / gzip workers).
    pub threads: usize,
    /// Reader threads for small files.
    pub readers: usize,
    /// Glob patterns: with a `/` matched against the whole path on disk,
    /// without against the file name.
    pub excludes: Vec<String>,
    /// Paths on disk never archived (the backup target itself...).
    pub exclude_paths: Vec<PathBuf>,
    pub one_file_system: bool,
    /// Show progress (bar or plain lines).
    pub progress: bool,
    /// Expected bytes, for the ETA.
    pub expected_bytes: Option<u64>,
    /// Encrypt the compressed stream (age) to these keys.
    pub encrypt: Option<super::age::EncryptTo>,
    /// An archive of an incremental chain: dumpdirs, and only what changed
    /// since the previous state.
    pub chain: Option<Chain>,
}

/// How an archive of a chain is made.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    /// The state after the previous archive of the chain; `None` for the
    /// full archive that starts one (every entry is in it).
    pub previous: Option<std::sync::Arc<Snapshot>>,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            compression: Compression::Zstd,
            level: None,
            threads: super::cpus(),
            readers: 4,
            excludes: Vec::new(),
            exclude_paths: Vec::new(),
            one_file_system: false,
            progress: false,
            expected_bytes: None,
            encrypt: None,
            chain: None,
        }
    }
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct CreateReport {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub specials: u64,
    /// File data bytes archived (logical).
    pub bytes: u64,
    /// Problems that did not stop the archive (changed, vanished, unreadable files).
    pub warnings: Vec<String>,
    /// Members (archive names) whose file changed while it was read: archived
    /// as read, maybe inconsistent. Also listed in the manifest (`changed - - NAME`).
    pub changed: Vec<String>,
    /// Mounts read from a read-only snapshot (`backup.snapshot`), whose files cannot change.
    #[serde(rename = "from-snapshots", skip_serializing_if = "Vec::is_empty")]
    pub from_snapshots: Vec<String>,
    /// Things skipped on purpose (sockets, excluded mounts).
    pub notes: Vec<String>,
    /// Entries left out of an incremental archive: unchanged since the previous one.
    pub unchanged: u64,
    /// The state the next incremental of the chain compares against (archives of a chain only).
    #[serde(skip)]
    pub snapshot: Option<Snapshot>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Small,
    Large,
    NoData,
}

struct Item {
    fs_path: PathBuf,
    name: Vec<u8>,
    meta: Metadata,
    route: Route,
    hardlink_to: Option<Vec<u8>>,
    /// A directory's names (archives of a chain).
    dumpdir: Option<Vec<u8>>,
}

struct Prepared {
    item: Item,
    data: Option<Vec<u8>>,
    hash: Option<u128>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    acl_access: Option<String>,
    acl_default: Option<String>,
    warning: Option<String>,
    /// The file changed while it was read (the warning says how).
    changed: bool,
    skip: bool,
}

enum Slot {
    Entry(Receiver<Prepared>),
    Warning(String),
    Note(String),
    /// Left out of an incremental archive; its state carries over.
    Unchanged(Vec<u8>, FileState),
    Fatal(anyhow::Error),
}

/// A simple byte budget shared by the walker (takes) and writer (gives back).
struct Budget {
    used: Mutex<u64>,
    cv: Condvar,
}

impl Budget {
    fn take(&self, n: u64, cancel: &AtomicBool) -> bool {
        let Ok(mut used) = self.used.lock() else { return false };
        while *used + n > READ_AHEAD_BUDGET && *used > 0 {
            if cancel.load(Ordering::Relaxed) {
                return false;
            }
            used = match self.cv.wait_timeout(used, Duration::from_millis(100)) {
                Ok(g) => g.0,
                Err(_) => return false,
            };
        }
        *used += n;
        true
    }
    fn give(&self, n: u64) {
        if let Ok(mut used) = self.used.lock() {
            *used = used.saturating_sub(n);
        }
        self.cv.notify_all();
    }
}

/// Write an archive of `sources` into `out`. Returns `out` (flushed, after
/// the compressor finished) and what was archived. Errors only for things
/// that make the archive unusable (output write errors, missing sources).
pub fn create<W: Write + Send>(sources: &[Source], out: W, opts: &CreateOptions) -> Result<(W, CreateReport)> {
    for s in sources {
        std::fs::symlink_metadata(&s.path).with_context(|| format!("cannot archive {}", s.path.display()))?;
    }
    let excludes = Excludes::new(&opts.excludes, &opts.exclude_paths)?;
    let out = super::age::MaybeEncrypted::new(out, opts.encrypt.as_ref())?;
    let sink = Sink::new(out, opts.compression, opts.level, opts.threads)?;
    let mut w = BufWriter::with_capacity(256 * 1024, sink);
    let cancel = AtomicBool::new(false);
    let budget = Budget { used: Mutex::new(0), cv: Condvar::new() };
    let (slot_tx, slot_rx) = sync_channel::<Slot>(QUEUE);
    let (job_tx, job_rx) = sync_channel::<(Item, SyncSender<Prepared>)>(QUEUE);
    let job_rx = Mutex::new(job_rx);

    let report = std::thread::scope(|scope| {
        scope.spawn(|| walk(sources, opts.one_file_system, opts.chain.as_ref(), &excludes, &budget, &cancel, slot_tx, job_tx));
        for _ in 0..opts.readers.max(1) {
            scope.spawn(|| reader(&job_rx));
        }
        let r = write_all(slot_rx, &mut w, &budget, opts);
        cancel.store(true, Ordering::Relaxed);
        r
    })?;
    let sink = w.into_inner().map_err(|e| e.into_error()).context("writing the archive")?;
    let out = sink.finish().context("finishing the compressed archive stream")?;
    let out = out.finish().context("finishing the encrypted archive stream")?;
    Ok((out, report))
}

// ---------------------------------------------------------------- walking

struct Excludes {
    globs: Vec<(CString, bool)>,
    paths: Vec<PathBuf>,
}

impl Excludes {
    fn new(patterns: &[String], paths: &[PathBuf]) -> Result<Self> {
        let globs = patterns
            .iter()
            .map(|p| {
                let p = p.trim_end_matches('/');
                let anchored = p.contains('/');
                CString::new(p.as_bytes()).map(|c| (c, anchored)).map_err(|_| crate::error::input_error(format!("exclude pattern {p:?} contains a NUL byte")))
            })
            .collect::<Result<_>>()?;
        Ok(Excludes { globs, paths: paths.to_vec() })
    }

    fn excluded(&self, path: &Path) -> bool {
        if self.paths.iter().any(|p| p == path) {
            return true;
        }
        if self.globs.is_empty() {
            return false;
        }
        let full = path.as_os_str().as_bytes();
        let base = path.file_name().map(|b| b.as_bytes()).unwrap_or(full);
        let (Ok(full), Ok(base)) = (CString::new(full), CString::new(base)) else { return false };
        self.globs.iter().any(|(g, anchored)| {
            let subject = if *anchored { &full } else { &base };
            // SAFETY: both arguments are valid NUL-terminated strings.
            #[allow(unsafe_code)]
            let r = unsafe { libc::fnmatch(g.as_ptr(), subject.as_ptr(), 0) };
            r == 0
        })
    }
}

fn join_name(parent: &[u8], child: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        return child.to_vec();
    }
    let mut n = Vec::with_capacity(parent.len() + 1 + child.len());
    n.extend_from_slice(parent);
    n.push(b'/');
    n.extend_from_slice(child);
    n
}

#[allow(clippy::too_many_arguments)]
fn walk(
    sources: &[Source],
    one_fs: bool,
    chain: Option<&Chain>,
    excludes: &Excludes,
    budget: &Budget,
    cancel: &AtomicBool,
    slots: SyncSender<Slot>,
    jobs: SyncSender<(Item, SyncSender<Prepared>)>,
) {
    let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let previous = chain.and_then(|c| c.previous.as_deref());
    for src in sources {
        let meta = match std::fs::symlink_metadata(&src.path) {
            Ok(m) => m,
            Err(e) => {
                let _ = slots.send(Slot::Fatal(anyhow::anyhow!("cannot archive {}: {e}", src.path.display())));
                return;
            }
        };
        // The devices of this tree: its root's, and those of the nested btrfs subvolumes entered.
        let mut tree_devs = vec![meta.dev()];
        let root_name = if src.name.is_empty() { b".".to_vec() } else { src.name.clone() };
        // Depth-first with an explicit stack; children sorted by name.
        let mut stack: Vec<(PathBuf, Vec<u8>, Metadata)> = vec![(src.path.clone(), root_name, meta)];
        while let Some((path, name, meta)) = stack.pop() {
            if cancel.load(Ordering::Relaxed) {
                return;
            }
            let ft = meta.file_type();
            if ft.is_socket() {
                let _ = slots.send(Slot::Note(format!("socket {} skipped", path.display())));
                continue;
            }
            let is_dir = ft.is_dir();
            if !is_dir && previous.is_some_and(|p| p.unchanged(&name, &meta)) {
                let state = FileState::of(&meta);
                if slots.send(Slot::Unchanged(name, state)).is_err() {
                    return;
                }
                continue;
            }
            let mut descend = is_dir && (!one_fs || tree_devs.contains(&meta.dev()));
            if is_dir && !descend {
                match super::subvol::crossing(&path, &meta) {
                    super::subvol::Crossing::Subvolume => {
                        tree_devs.push(meta.dev());
                        descend = true;
                    }
                    super::subvol::Crossing::Snapshot => {
                        let _ = slots.send(Slot::Note(format!("{} is a read-only btrfs snapshot: only its directory is archived", path.display())));
                    }
                    super::subvol::Crossing::Other => {
                        let _ = slots.send(Slot::Note(format!("{} is another filesystem: only the mount point directory is archived", path.display())));
                    }
                }
            }
            let mut hardlink_to = None;
            if !is_dir && meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                match links.get(&key) {
                    Some(first) => hardlink_to = Some(first.clone()),
                    None => {
                        links.insert(key, name.clone());
                    }
                }
            }
            let route = if hardlink_to.is_some() || !ft.is_file() {
                Route::NoData
            } else if meta.len() <= SMALL_FILE && meta.blocks() * 512 >= meta.len() {
                Route::Small
            } else {
                Route::Large
            };
            // A directory's children are listed before it is sent: its dumpdir names them.
            let (children, dumpdir) = if descend { list_children(&path, &name, chain.is_some(), previous, excludes, &slots) } else { (Vec::new(), None) };
            if route == Route::Small && !budget.take(meta.len(), cancel) {
                return;
            }
            let (tx, rx) = sync_channel(1);
            let item = Item { fs_path: path, name, meta, route, hardlink_to, dumpdir };
            if slots.send(Slot::Entry(rx)).is_err() || jobs.send((item, tx)).is_err() {
                return;
            }
            stack.extend(children);
        }
    }
}

/// An entry to walk: its path on disk, its name in the archive, its lstat.
type Child = (PathBuf, Vec<u8>, Metadata);

/// The children of the directory `path` (stored as `name`) to archive,
/// last name first (the stack pops the first); with `chain`, its dumpdir.
/// Excluded children are listed in the dumpdir too, as what they are: a
/// restore keeps what it finds there (a filesystem mounted below, restored
/// from its own archive), never removes it.
fn list_children(
    path: &Path,
    name: &[u8],
    chain: bool,
    previous: Option<&Snapshot>,
    excludes: &Excludes,
    slots: &SyncSender<Slot>,
) -> (Vec<Child>, Option<Vec<u8>>) {
    let mut children = Vec::new();
    let mut listed = Vec::new();
    let rd = match std::fs::read_dir(path) {
        Ok(rd) => rd,
        Err(e) => {
            let _ = slots.send(Slot::Warning(format!("cannot read directory {}: {e}", path.display())));
            return (children, None);
        }
    };
    for de in rd {
        let de = match de {
            Ok(d) => d,
            Err(e) => {
                let _ = slots.send(Slot::Warning(format!("cannot read directory {}: {e}", path.display())));
                break;
            }
        };
        let cpath = de.path();
        let base = de.file_name().as_bytes().to_vec();
        let cname = join_name(if name == b"." { b"" } else { name }, &base);
        if excludes.excluded(&cpath) {
            if chain {
                let is_dir = std::fs::symlink_metadata(&cpath).is_ok_and(|m| m.is_dir());
                listed.push((base, if is_dir { DIRECTORY } else { UNCHANGED }));
            }
            continue;
        }
        match std::fs::symlink_metadata(&cpath) {
            Ok(m) => {
                if chain {
                    let flag = if m.is_dir() {
                        DIRECTORY
                    } else if m.file_type().is_socket() || previous.is_some_and(|p| p.unchanged(&cname, &m)) {
                        UNCHANGED
                    } else {
                        IN_ARCHIVE
                    };
                    listed.push((base, flag));
                }
                children.push((cpath, cname, m));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let _ = slots.send(Slot::Warning(format!("{} vanished before it could be archived", cpath.display())));
            }
            Err(e) => {
                let _ = slots.send(Slot::Warning(format!("cannot stat {}: {e}", cpath.display())));
            }
        }
    }
    children.sort_by(|a, b| b.1.cmp(&a.1));
    (children, chain.then(|| incremental::encode(listed)))
}

// ---------------------------------------------------------------- reading

fn open_nofollow(path: &Path) -> io::Result<File> {
    let flags = libc::O_NOFOLLOW | libc::O_NOATIME;
    match std::fs::OpenOptions::new().read(true).custom_flags(flags).open(path) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path),
        r => r,
    }
}

fn reader(jobs: &Mutex<Receiver<(Item, SyncSender<Prepared>)>>) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((item, reply)) = job else { return };
        let _ = reply.send(prepare(item));
    }
}

fn changed(a: &Metadata, b: &Metadata) -> bool {
    a.len() != b.len() || a.mtime() != b.mtime() || a.mtime_nsec() != b.mtime_nsec() || a.ctime() != b.ctime() || a.ctime_nsec() != b.ctime_nsec()
}

fn prepare(item: Item) -> Prepared {
    let mut p = Prepared { data: None, hash: None, xattrs: Vec::new(), acl_access: None, acl_default: None, warning: None, changed: false, skip: false, item };
    if p.item.hardlink_to.is_none() {
        read_xattrs(&mut p);
    }
    if p.item.route == Route::Small {
        match open_nofollow(&p.item.fs_path) {
            Ok(mut f) => {
                let len = p.item.meta.len();
                let mut data = Vec::with_capacity(len as usize);
                // At most the size seen by the walker: a file growing
                // without end must not fill the memory.
                match (&mut f).take(len).read_to_end(&mut data) {
                    Ok(_) => {
                        let mut one = [0u8; 1];
                        if data.len() as u64 == len && matches!(f.read(&mut one), Ok(1)) {
                            p.warning = Some(format!("{} grew while being read: archived its first {len} bytes", p.item.fs_path.display()));
                            p.changed = true;
                        } else if let Ok(after) = f.metadata() {
                            if changed(&p.item.meta, &after) || data.len() as u64 != len {
                                p.warning = Some(format!("{} changed while being read (archived as read: {} bytes)", p.item.fs_path.display(), data.len()));
                                p.changed = true;
                            }
                        }
                        p.hash = Some(xxh3_128(&data));
                        p.data = Some(data);
                    }
                    Err(e) => {
                        p.warning = Some(format!("cannot read {}: {e}; not archived", p.item.fs_path.display()));
                        p.skip = true;
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                p.warning = Some(format!("{} vanished before it could be archived", p.item.fs_path.display()));
                p.skip = true;
            }
            Err(e) => {
                p.warning = Some(format!("cannot open {}: {e}; not archived", p.item.fs_path.display()));
                p.skip = true;
            }
        }
    }
    p
}

fn read_xattrs(p: &mut Prepared) {
    let path = &p.item.fs_path;
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            p.warning = Some(format!("cannot list the extended attributes of {}: {e}", path.display()));
            return;
        }
    };
    for n in names {
        let key = n.as_bytes().to_vec();
        let value = match xattr::get(path, &n) {
            Ok(Some(v)) => v,
            Ok(None) => continue,
            Err(e) => {
                p.warning = Some(format!("cannot read extended attribute {} of {}: {e}", n.to_string_lossy(), path.display()));
                continue;
            }
        };
        match &key[..] {
            b"system.posix_acl_access" => p.acl_access = format::acl_xattr_to_text(&value, false),
            b"system.posix_acl_default" => p.acl_default = format::acl_xattr_to_text(&value, true),
            _ => p.xattrs.push((key, value)),
        }
    }
    p.xattrs.sort();
}

// ---------------------------------------------------------------- writing

fn base_meta(p: &Prepared, kind: Kind) -> EntryMeta {
    let m = &p.item.meta;
    let mut e = EntryMeta::new(kind, p.item.name.clone());
    e.mode = m.mode() & 0o7777;
    e.uid = m.uid() as u64;
    e.gid = m.gid() as u64;
    e.mtime_sec = m.mtime();
    e.mtime_nsec = m.mtime_nsec() as u32;
    e.xattrs = p.xattrs.clone();
    e.acl_access = p.acl_access.clone();
    e.acl_default = p.acl_default.clone();
    e.dumpdir = p.item.dumpdir.clone();
    if kind == Kind::Char || kind == Kind::Block {
        let rdev = m.rdev();
        e.dev_major = libc::major(rdev);
        e.dev_minor = libc::minor(rdev);
    }
    e
}

fn write_all<W: Write>(slots: Receiver<Slot>, w: &mut W, budget: &Budget, opts: &CreateOptions) -> Result<CreateReport> {
    let mut report = CreateReport::default();
    let mut manifest = BufWriter::new(tempfile::tempfile().context("creating a temporary file for the archive manifest")?);
    manifest.write_all(format::MANIFEST_HEADER.as_bytes())?;
    let mut progress = Progress::new("archiving", opts.expected_bytes, opts.progress);
    let mut buf = vec![0u8; CHUNK];
    // Members whose file changed while read: listed at the manifest's end.
    let mut changed_names: Vec<Vec<u8>> = Vec::new();
    let mut snapshot = opts.chain.as_ref().map(|_| Snapshot::default());
    for slot in slots {
        let p = match slot {
            Slot::Entry(rx) => match rx.recv() {
                Ok(p) => p,
                Err(_) => anyhow::bail!("a file reader thread stopped unexpectedly"),
            },
            Slot::Warning(s) => {
                tracing::debug!("warning: {s}");
                report.warnings.push(s);
                continue;
            }
            Slot::Note(s) => {
                tracing::debug!("{s}");
                report.notes.push(s);
                continue;
            }
            Slot::Unchanged(name, state) => {
                if let Some(s) = snapshot.as_mut() {
                    s.insert(name, state);
                }
                report.unchanged += 1;
                continue;
            }
            Slot::Fatal(e) => return Err(e),
        };
        if let Some(wn) = &p.warning {
            tracing::debug!("warning: {wn}");
            report.warnings.push(wn.clone());
        }
        if p.changed {
            changed_names.push(p.item.name.clone());
        }
        let data_len = p.data.as_ref().map(|d| d.len() as u64);
        if p.item.route == Route::Small {
            budget.give(p.item.meta.len());
        }
        if p.skip {
            continue;
        }
        let ft = p.item.meta.file_type();
        if let Some(first) = &p.item.hardlink_to {
            let mut e = base_meta(&p, Kind::HardLink);
            e.link = first.clone();
            format::write_header(w, &e).context("writing the archive")?;
            manifest.write_all(format::manifest_line(Kind::HardLink, 0, None, &e.path).as_bytes())?;
            report.hardlinks += 1;
            remember(&mut snapshot, &p);
            progress.add(0, 1);
            continue;
        }
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_char_device() {
            Kind::Char
        } else if ft.is_block_device() {
            Kind::Block
        } else if ft.is_fifo() {
            Kind::Fifo
        } else {
            Kind::File
        };
        let mut e = base_meta(&p, kind);
        match kind {
            Kind::Symlink => match std::fs::read_link(&p.item.fs_path) {
                Ok(t) => {
                    e.link = t.as_os_str().as_bytes().to_vec();
                    report.symlinks += 1;
                }
                Err(e) => {
                    report.warnings.push(format!("cannot read symlink {}: {e}; not archived", p.item.fs_path.display()));
                    continue;
                }
            },
            Kind::Dir => report.dirs += 1,
            Kind::Char | Kind::Block | Kind::Fifo => report.specials += 1,
            _ => {}
        }
        if kind != Kind::File {
            format::write_header(w, &e).context("writing the archive")?;
            manifest.write_all(format::manifest_line(kind, 0, None, &e.path).as_bytes())?;
            remember(&mut snapshot, &p);
            progress.add(0, 1);
            continue;
        }
        if let (Some(data), Some(len)) = (&p.data, data_len) {
            e.size = len;
            format::write_header(w, &e).context("writing the archive")?;
            w.write_all(data).context("writing the archive")?;
            format::write_padding(w, len).context("writing the archive")?;
            manifest.write_all(format::manifest_line(Kind::File, len, p.hash, &e.path).as_bytes())?;
            report.files += 1;
            report.bytes += len;
            remember(&mut snapshot, &p);
            progress.add(len, 1);
            continue;
        }
        // A large or sparse file: streamed here.
        let mut f = match open_nofollow(&p.item.fs_path) {
            Ok(f) => f,
            Err(err) => {
                let msg = if err.kind() == io::ErrorKind::NotFound {
                    format!("{} vanished before it could be archived", p.item.fs_path.display())
                } else {
                    format!("cannot open {}: {err}; not archived", p.item.fs_path.display())
                };
                report.warnings.push(msg);
                continue;
            }
        };
        let size = p.item.meta.len();
        e.size = size;
        if p.item.meta.blocks() * 512 < size {
            match sparse_map(&mut f, size) {
                Ok(map) if map.iter().map(|r| r.1).sum::<u64>() < size && map.len() <= format::MAX_SPARSE_REGIONS => e.sparse = Some(map),
                _ => {}
            }
        }
        format::write_header(w, &e).context("writing the archive")?;
        let regions = e.sparse.clone().unwrap_or_else(|| vec![(0, size)]);
        let mut hasher = Xxh3::new();
        let mut short = false;
        for (off, len) in &regions {
            if f.seek(io::SeekFrom::Start(*off)).is_err() {
                short = true;
            }
            let mut left = *len;
            while left > 0 {
                let want = left.min(CHUNK as u64) as usize;
                let n = if short { 0 } else { read_full(&mut f, &mut buf[..want]).unwrap_or(0) };
                if n < want {
                    short = true;
                    buf[n..want].fill(0);
                }
                hasher.update(&buf[..want]);
                w.write_all(&buf[..want]).context("writing the archive")?;
                left -= want as u64;
                progress.add(want as u64, 0);
            }
        }
        format::write_padding(w, e.stored_size()).context("writing the archive")?;
        let grew = e.sparse.is_none() && !short && matches!(f.read(&mut buf[..1]), Ok(1));
        let after = f.metadata().ok();
        if short || grew || after.as_ref().is_some_and(|a| changed(&p.item.meta, a)) {
            changed_names.push(p.item.name.clone());
        }
        if short {
            report.warnings.push(format!("{} shrank while being read: archived with zeros after the end ({} bytes recorded)", p.item.fs_path.display(), size));
        } else if grew {
            report.warnings.push(format!("{} grew while being read: archived its first {size} bytes", p.item.fs_path.display()));
        } else if after.is_some_and(|a| changed(&p.item.meta, &a)) {
            report.warnings.push(format!("{} changed while being read", p.item.fs_path.display()));
        }
        let data_bytes: u64 = regions.iter().map(|r| r.1).sum();
        manifest.write_all(format::manifest_line(Kind::File, data_bytes, Some(hasher.digest128()), &e.path).as_bytes())?;
        report.files += 1;
        report.bytes += size;
        remember(&mut snapshot, &p);
        progress.add(0, 1);
    }
    progress.finish();
    // The manifest, as the last member.
    for name in &changed_names {
        manifest.write_all(format::manifest_changed_line(name).as_bytes())?;
    }
    report.changed = changed_names.iter().map(|n| String::from_utf8_lossy(n).into_owned()).collect();
    writeln!(
        manifest,
        "end files={} dirs={} symlinks={} hardlinks={} specials={} bytes={}",
        report.files, report.dirs, report.symlinks, report.hardlinks, report.specials, report.bytes
    )?;
    let mut mf = manifest.into_inner().map_err(|e| e.into_error())?;
    let mlen = mf.stream_position()?;
    mf.rewind()?;
    let mut e = EntryMeta::new(Kind::File, format::MANIFEST_NAME.as_bytes().to_vec());
    e.mode = 0o600;
    e.size = mlen;
    e.mtime_sec = time::OffsetDateTime::now_utc().unix_timestamp();
    format::write_header(w, &e).context("writing the archive")?;
    io::copy(&mut mf, w).context("writing the archive manifest")?;
    format::write_padding(w, mlen)?;
    format::write_trailer(w).context("writing the archive")?;
    w.flush().context("writing the archive")?;
    report.snapshot = snapshot;
    Ok(report)
}

/// Note an entry written into the archive in the next incremental's state.
/// One left out (unreadable, vanished) is not noted, so the next
/// incremental tries it again.
fn remember(snapshot: &mut Option<Snapshot>, p: &Prepared) {
    if let Some(s) = snapshot.as_mut().filter(|_| !p.item.meta.is_dir()) {
        s.insert(p.item.name.clone(), FileState::of(&p.item.meta));
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The data regions of a file, from SEEK_DATA / SEEK_HOLE. The last region
/// always ends at `size` (a trailing hole is a zero-length region at the end,
/// as GNU tar does, so the real size is known).
fn sparse_map(f: &mut File, size: u64) -> io::Result<Vec<(u64, u64)>> {
    use std::os::fd::AsRawFd;
    let fd = f.as_raw_fd();
    let mut map = Vec::new();
    let mut pos: i64 = 0;
    while (pos as u64) < size {
        // SAFETY: lseek on a file descriptor we own; no memory is involved.
        #[allow(unsafe_code)]
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if data < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENXIO) {
                break;
            }
            return Err(err);
        }
        // SAFETY: as above.
        #[allow(unsafe_code)]
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        let end = (hole as u64).min(size);
        if end > data as u64 {
            map.push((data as u64, end - data as u64));
        }
        pos = hole;
    }
    if map.last().map(|(o, l)| o + l) != Some(size) {
        map.push((size, 0));
    }
    f.rewind()?;
    Ok(map)
}
