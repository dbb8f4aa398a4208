//! Reading an archive: extract (safely), list, verify.
//!
//! Extraction never writes outside the target, by structure: every
//! filesystem call is relative to a directory file descriptor opened beneath
//! the target, one component at a time with `O_NOFOLLOW | O_DIRECTORY`
//! (`openat`, `mkdirat`, `symlinkat`, `linkat`, `mknodat`, `unlinkat`), and
//! metadata is set through the opened file (`fchown`, `fchmod`, `fsetxattr`,
//! `futimens`) or with `AT_SYMLINK_NOFOLLOW`. No path string is ever
//! resolved, so no member can redirect another: a member below a symlink is
//! refused, and a directory that a later member replaced by a symlink keeps
//! its metadata to itself (a warning). Members with `..` are refused,
//! absolute names are made relative. Symlinks themselves are restored
//! verbatim, as the restored system needs them. Directory metadata is
//! applied last, deepest first, on the directory re-opened the same way.
//!
//! Each filesystem mounted beneath the target is written by its own thread
//! (see [`extract`]); the checks above hold in every one of them.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use xxhash_rust::xxh3::Xxh3;

use super::format::{self, EntryMeta, Kind, TarReader};
use super::progress::Progress;

#[derive(Debug, Clone)]
pub struct ExtractOptions {
    pub target: PathBuf,
    pub progress: bool,
    /// Total compressed size, for the ETA.
    pub total_bytes: Option<u64>,
    /// Keep the manifest member as a file in the target (off: it is checked, not written).
    pub keep_manifest: bool,
    /// Apply the dumpdirs of an incremental archive (GNU tar's format):
    /// names a directory no longer held are removed, renames are applied.
    /// The archives of a chain are extracted in order with this on.
    pub incremental: bool,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ExtractReport {
    pub entries: u64,
    pub bytes: u64,
    /// Members not extracted for safety (`..`, under a symlink, a NUL in the name).
    pub refused: Vec<String>,
    /// Absolute member names that were made relative.
    pub made_relative: u64,
    /// Symlinks whose target is absolute or leaves the tree (kept verbatim).
    pub outward_symlinks: u64,
    /// Members that could not be written or whose metadata could not be set.
    pub warnings: Vec<String>,
    /// Files whose checksum differs from the manifest.
    pub damaged: Vec<String>,
    pub manifest_checked: bool,
    /// SELinux labels (`security.selinux`) this restore set and the target
    /// refused; `None` when the restore method cannot tell (a backup server,
    /// rsync): finalize then asks for a relabel.
    pub selinux_labels: Option<SelinuxLabels>,
}

/// How many restored files got their SELinux label back, and how many
/// labels the target filesystem refused (no xattr support, a label the
/// running kernel rejects).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SelinuxLabels {
    pub restored: u64,
    pub refused: u64,
}

impl ExtractReport {
    /// Add the report of another part of one restore (an archive of a
    /// chain, a filesystem's writer) to the report of the whole.
    pub fn add_part(&mut self, r: ExtractReport) {
        self.entries += r.entries;
        self.bytes += r.bytes;
        self.refused.extend(r.refused);
        self.made_relative += r.made_relative;
        self.outward_symlinks += r.outward_symlinks;
        self.warnings.extend(r.warnings);
        self.damaged.extend(r.damaged);
        self.manifest_checked &= r.manifest_checked;
        self.selinux_labels = match (self.selinux_labels, r.selinux_labels) {
            (Some(a), Some(b)) => Some(SelinuxLabels { restored: a.restored + b.restored, refused: a.refused + b.refused }),
            (a, b) => a.or(b),
        };
    }
}

impl SelinuxLabels {
    /// Every labelled file of the archive has its label.
    pub fn complete(&self) -> bool {
        self.restored > 0 && self.refused == 0
    }
}

const SELINUX_XATTR: &[u8] = b"security.selinux";

fn lossy(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// Clean a member name into a relative path. `Err(reason)` refuses it.
pub(super) fn clean_path(raw: &[u8], made_relative: &mut bool) -> std::result::Result<PathBuf, &'static str> {
    if raw.contains(&0) {
        return Err("its name contains a NUL byte, which no Linux file name can hold");
    }
    if raw.starts_with(b"/") {
        *made_relative = true;
    }
    let mut out = PathBuf::new();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("contains '..'"),
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

/// Whether a symlink at `rel` (relative path of the link) pointing to
/// `target` would leave the extraction tree.
fn points_outside(rel: &Path, target: &[u8]) -> bool {
    if target.starts_with(b"/") {
        return true;
    }
    let mut depth: i64 = rel.components().count() as i64 - 1;
    for c in target.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

/// How a directory beneath the target is opened: never through a symlink.
pub(super) fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Open the directory `name` in `dir`, never through a symlink; with
/// `create`, make it (mode 0755) when missing.
pub(super) fn open_below(dir: BorrowedFd, name: &OsStr, create: bool) -> io::Result<OwnedFd> {
    match rustix::fs::openat(dir, name, dir_flags(), Mode::empty()) {
        Ok(d) => Ok(d),
        Err(rustix::io::Errno::NOENT) if create => {
            match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            Ok(rustix::fs::openat(dir, name, dir_flags(), Mode::empty())?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Remove whatever is at `name` in `dir` so that a new entry can take its
/// place: an empty directory too; a non-empty one is an error.
fn clear(dir: BorrowedFd, name: &OsStr) -> io::Result<()> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?),
        Ok(_) => Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?),
        Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Errors that say a component is a symlink or not a directory.
fn is_redirect(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR))
}

/// Errors after which no further member can be written either: the
/// extraction stops instead of listing one warning per member.
fn is_fatal(e: &anyhow::Error) -> bool {
    e.chain().filter_map(|c| c.downcast_ref::<io::Error>()).any(|io| matches!(io.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT | libc::EROFS | libc::EIO)))
}

/// Why a member was not restored.
enum Failure {
    /// The archive cannot be read on: the extraction stops.
    Stream(anyhow::Error),
    /// This member could not be placed (a warning, unless the target itself fails).
    Member(anyhow::Error),
    /// This member is not placed for safety.
    Refused(&'static str),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Member(e.into())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Member(e)
    }
}

struct Extractor {
    /// The target directory, open: everything happens beneath it.
    root: OwnedFd,
    /// The target's path, for messages only.
    root_path: PathBuf,
    /// The directories from beneath the root down to the one the last
    /// member went into, open (members of one directory follow each other).
    open: Vec<(OsString, OwnedFd)>,
    /// Directories whose metadata is applied at the end.
    dirs: Vec<(PathBuf, EntryMeta)>,
    /// Apply dumpdirs (`ExtractOptions::incremental`).
    incremental: bool,
    report: ExtractReport,
    hashes: HashMap<Vec<u8>, (u64, u128)>,
}

impl Extractor {
    fn new(root: OwnedFd, opts: &ExtractOptions) -> Extractor {
        let report = ExtractReport { selinux_labels: Some(SelinuxLabels::default()), ..ExtractReport::default() };
        Extractor { root, root_path: opts.target.clone(), open: Vec::new(), dirs: Vec::new(), incremental: opts.incremental, report, hashes: HashMap::new() }
    }

    /// Open the directory `rel` beneath the target (see `open_below`).
    fn open_dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        let mut dir = self.root.try_clone()?;
        for c in rel.iter() {
            dir = open_below(dir.as_fd(), c, false)?;
        }
        Ok(dir)
    }

    /// Make `self.open` hold the directories of `rel`: keep the open ones
    /// its path shares with the previous member's, open the rest.
    fn enter(&mut self, rel: &Path, create: bool) -> io::Result<()> {
        let names: Vec<&OsStr> = rel.iter().collect();
        let shared = self.open.iter().zip(&names).take_while(|((open, _), name)| open.as_os_str() == **name).count();
        self.open.truncate(shared);
        for name in &names[shared..] {
            let fd = open_below(self.top(), name, create)?;
            self.open.push((name.to_os_string(), fd));
        }
        Ok(())
    }

    /// The deepest open directory (the root when none is).
    fn top(&self) -> BorrowedFd<'_> {
        self.open.last().map_or(self.root.as_fd(), |(_, fd)| fd.as_fd())
    }

    /// The open parent directory of `rel` (created when missing), taken out
    /// of `self.open` while the member is placed; `put_back` returns it.
    fn take_parent(&mut self, rel: &Path) -> std::result::Result<(Option<OsString>, OwnedFd), Failure> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        match self.enter(parent, true) {
            Ok(()) => {}
            Err(e) if is_redirect(&e) => return Err(Failure::Refused("a parent directory in the target is a symlink or not a directory")),
            Err(e) => return Err(Failure::Member(anyhow::Error::from(e).context(format!("opening the directory {}", self.show(parent))))),
        }
        match self.open.pop() {
            Some((name, fd)) => Ok((Some(name), fd)),
            None => Ok((None, self.root.try_clone()?)),
        }
    }

    fn put_back(&mut self, name: Option<OsString>, fd: OwnedFd) {
        if let Some(name) = name {
            self.open.push((name, fd));
        }
    }

    /// The target path of a relative path, for messages.
    fn show(&self, rel: &Path) -> String {
        self.root_path.join(rel).display().to_string()
    }

    fn refuse(&mut self, path: &[u8], why: &str) {
        let s = format!("{}: {why}", lossy(path));
        tracing::warn!("refused archive member {s}");
        self.report.refused.push(s);
    }

    fn count_labels(&mut self, l: SelinuxLabels) {
        if let Some(t) = self.report.selinux_labels.as_mut() {
            t.restored += l.restored;
            t.refused += l.refused;
        }
    }

    /// Take over what a filesystem's writer restored and saw.
    fn absorb(&mut self, w: Extractor) {
        self.report.add_part(w.report);
        self.hashes.extend(w.hashes);
    }

    fn warn(&mut self, s: String) {
        tracing::debug!("warning: {s}");
        self.report.warnings.push(s);
    }
}

/// How much file data one job carries; how much one batch of jobs carries
/// (or how many jobs it holds) before it goes to the writer; how many
/// batches a writer's queue holds: at most about 20 MiB of data waits per
/// filesystem, so a writer that falls behind never holds up memory.
/// Jobs travel in batches because a system is mostly small files: one
/// message (and one wake-up of the writer) per member cost more than the
/// member's own write.
const CHUNK: usize = 256 << 10;
const BATCH_BYTES: usize = 1 << 20;
const BATCH_JOBS: usize = 256;
const QUEUE: usize = 16;

/// What the reader hands a filesystem's writer, in archive order: a member,
/// then (a regular file) its data in chunks of at most `CHUNK` bytes, each
/// within one data region.
enum Job {
    Member(EntryMeta),
    Data(Vec<u8>),
}

/// The reader's end of a writer's queue: jobs are gathered into a batch,
/// sent when it is full and when the reader is done.
struct Outbox {
    tx: SyncSender<Vec<Job>>,
    batch: Vec<Job>,
    bytes: usize,
}

impl Outbox {
    fn new(tx: SyncSender<Vec<Job>>) -> Outbox {
        Outbox { tx, batch: Vec::new(), bytes: 0 }
    }

    /// Queue a job; false when the writer has stopped.
    fn push(&mut self, job: Job) -> bool {
        self.bytes += match &job {
            Job::Data(d) => d.len(),
            Job::Member(_) => 0,
        };
        self.batch.push(job);
        if self.bytes >= BATCH_BYTES || self.batch.len() >= BATCH_JOBS {
            return self.flush();
        }
        true
    }

    /// Send what is gathered; false when the writer has stopped.
    fn flush(&mut self) -> bool {
        self.bytes = 0;
        if self.batch.is_empty() {
            return true;
        }
        self.tx.send(std::mem::take(&mut self.batch)).is_ok()
    }
}

/// The writer's end of its queue: the jobs one at a time, in order.
struct Inbox {
    rx: Receiver<Vec<Job>>,
    batch: std::vec::IntoIter<Job>,
}

impl Inbox {
    fn new(rx: Receiver<Vec<Job>>) -> Inbox {
        Inbox { rx, batch: Vec::new().into_iter() }
    }

    /// The next job; `None` once the reader is done (or stopped) and
    /// everything it sent was taken.
    fn recv(&mut self) -> Option<Job> {
        loop {
            if let Some(job) = self.batch.next() {
                return Some(job);
            }
            self.batch = self.rx.recv().ok()?.into_iter();
        }
    }
}

/// What all threads of one extraction share: the first error, and whether
/// a writer failed, which stops every thread (a stream that cannot be read
/// on stops only the reader: the writers finish what it read before).
struct Shared {
    stop: AtomicBool,
    first_error: Mutex<Option<anyhow::Error>>,
}

impl Shared {
    /// An error that stops every thread.
    fn fail(&self, e: anyhow::Error) {
        self.report(e);
        self.stop.store(true, Ordering::SeqCst);
    }

    /// The error the extraction ends with, unless an earlier one is.
    fn report(&self, e: anyhow::Error) {
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(e);
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// The filesystems mounted beneath `target`, as paths relative to it, the
/// target's own first (`""`). Each gets its own writer thread; a member
/// belongs to the deepest one its path lies in.
fn filesystems_beneath(target: &Path) -> Vec<PathBuf> {
    let mut out = vec![PathBuf::new()];
    let (Ok(canon), Ok(mounts)) = (target.canonicalize(), crate::util::mountinfo()) else {
        return out;
    };
    for m in mounts {
        if let Ok(rel) = m.target.strip_prefix(&canon) {
            if !rel.as_os_str().is_empty() && !out.iter().any(|o| o == rel) {
                out.push(rel.to_path_buf());
            }
        }
    }
    out
}

/// The index in `filesystems` of the one `rel` lies in (the deepest match).
fn writer_for(filesystems: &[PathBuf], rel: &Path) -> usize {
    let depth = |i: usize| filesystems[i].components().count();
    (0..filesystems.len()).filter(|&i| rel.starts_with(&filesystems[i])).max_by_key(|&i| depth(i)).unwrap_or(0)
}

/// Extract an archive stream (any compression) into `opts.target`.
/// A corrupt or truncated archive is an error; what was extracted stays.
///
/// One thread reads the stream (decompression runs on every core below it);
/// each filesystem mounted beneath the target gets its own writer thread fed
/// by a bounded queue, so that writes to different filesystems overlap while
/// the reader goes on. A member's filesystem is known from its path, so hard
/// links (never across filesystems) and a directory's contents stay in the
/// order of the archive within their writer. The first error (a stream that
/// cannot be read on, a target that takes nothing more) stops every thread.
pub fn extract<R: Read + Send + 'static>(input: R, opts: &ExtractOptions) -> Result<ExtractReport> {
    let counter = Arc::new(AtomicU64::new(0));
    let (stream, _) = super::open_stream(super::CountingReader { inner: input, count: counter.clone() }).context("reading the archive")?;
    std::fs::create_dir_all(&opts.target).with_context(|| format!("creating the target directory {}", opts.target.display()))?;
    let root = rustix::fs::open(&opts.target, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .with_context(|| format!("opening the target directory {}", opts.target.display()))?;
    let filesystems = filesystems_beneath(&opts.target);
    if filesystems.len() > 1 {
        let names: Vec<String> = filesystems.iter().map(|f| format!("/{}", f.display())).collect();
        tracing::info!("{} filesystems written in parallel, each by its own thread: {}", filesystems.len(), names.join(" "));
    }
    let mut writers = Vec::new();
    for _ in &filesystems {
        writers.push(Extractor::new(root.try_clone().context("opening the target directory again")?, opts));
    }
    let shared = Shared { stop: AtomicBool::new(false), first_error: Mutex::new(None) };
    let mut progress = Progress::new("restoring", opts.total_bytes, opts.progress);
    let (manifest, finished) = std::thread::scope(|s| {
        let shared = &shared;
        let mut queues = Vec::new();
        let mut handles = Vec::new();
        for x in writers {
            let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
            queues.push(Outbox::new(tx));
            handles.push(s.spawn(move || write_jobs(x, Inbox::new(rx), shared)));
        }
        let manifest = read_jobs(stream, &filesystems, &mut queues, shared, &mut progress, &counter);
        // What the reader gathered goes out also after an error (what was
        // read before it is restored); the writers finish what is queued
        // once the reader lets go.
        for q in &mut queues {
            q.flush();
        }
        drop(queues);
        let finished: Vec<Option<Extractor>> = handles.into_iter().map(|h| h.join().ok()).collect();
        (manifest, finished)
    });
    progress.finish();
    let mut x = Extractor::new(root, opts);
    for w in finished {
        match w {
            Some(w) => x.absorb(w),
            None => shared.fail(anyhow::anyhow!("a writer thread of the restore stopped unexpectedly; run the restore again")),
        }
    }
    // The manifest (the archive's last member) is checked also when the
    // stream breaks after it: the damage it names says which member was hit.
    let checked = manifest.map_or(Ok(()), |text| {
        check_manifest(&mut x, &text)?;
        if opts.keep_manifest {
            write_manifest(&x, &text).with_context(|| format!("writing {}", x.show(Path::new(format::MANIFEST_NAME))))?;
        }
        Ok(())
    });
    let result = match shared.first_error.into_inner().ok().flatten() {
        Some(e) => Err(e),
        None => checked,
    };
    // Damage the manifest check already named says which member it hit.
    let damaged = &x.report.damaged;
    result.map_err(|e| match damaged.first() {
        Some(first) => e.context(format!("{} restored files differ from the manifest (first: {first})", damaged.len())),
        None => e,
    })?;
    Ok(x.report)
}

/// The reader: hand every member (and its data) to its filesystem's writer
/// and return the manifest's text. It stops at the first error of any thread.
fn read_jobs<R: Read>(
    stream: R,
    filesystems: &[PathBuf],
    queues: &mut [Outbox],
    shared: &Shared,
    progress: &mut Progress,
    counter: &AtomicU64,
) -> Option<Vec<u8>> {
    let mut tar = TarReader::new(stream);
    let mut manifest = None;
    let mut members = 0;
    let mut last: Option<usize> = None;
    let read = (|| -> Result<()> {
        while let Some(m) = tar.next_entry().map_err(|e| annotate(e, &tar))? {
            progress.set_bytes(counter.load(Ordering::Relaxed), members);
            if m.path == format::MANIFEST_NAME.as_bytes() && m.kind == Kind::File {
                let mut text = vec![0u8; m.size.min(1 << 30) as usize];
                tar.read_data_exact(&mut text).map_err(|e| annotate(e.into(), &tar))?;
                manifest = Some(text);
                continue;
            }
            members += 1;
            let mut made_rel = false;
            let rel = clean_path(&m.path, &mut made_rel).unwrap_or_default();
            // A batch goes out when the reader moves on to another
            // filesystem: no member waits in a batch while others, read
            // after it, are written.
            let w = writer_for(filesystems, &rel);
            if let Some(l) = last.filter(|&l| l != w) {
                if !queues[l].flush() {
                    return Ok(());
                }
            }
            last = Some(w);
            let queue = &mut queues[w];
            let regions = match (m.kind, &m.sparse) {
                (Kind::File, Some(map)) => map.clone(),
                (Kind::File, None) => vec![(0, m.size)],
                _ => Vec::new(),
            };
            let path = m.path.clone();
            if shared.stopped() || !queue.push(Job::Member(m)) {
                return Ok(());
            }
            for (_, len) in regions {
                let mut left = len;
                while left > 0 {
                    let mut chunk = vec![0u8; left.min(CHUNK as u64) as usize];
                    tar.read_data_exact(&mut chunk).map_err(|e| annotate(e.into(), &tar).context(format!("extracting {}", lossy(&path))))?;
                    left -= chunk.len() as u64;
                    if !queue.push(Job::Data(chunk)) {
                        return Ok(());
                    }
                }
            }
        }
        tar.read_to_end_of_stream()
    })();
    // The writers go on with what was read before the damage (it is
    // restored, as the error says); only a writer's error stops the others.
    if let Err(e) = read {
        shared.report(e);
    }
    manifest
}

/// A filesystem's writer: place each member as it comes, then apply the
/// directories' metadata. No other writer creates anything in this
/// filesystem's directories, so its directories can be finished here.
fn write_jobs(mut x: Extractor, mut rx: Inbox, shared: &Shared) -> Extractor {
    while let Some(job) = rx.recv() {
        if shared.stopped() {
            break;
        }
        // Data left over from a member that was refused or failed.
        let Job::Member(m) = job else { continue };
        if let Err(e) = extract_one(&mut x, &mut rx, m) {
            shared.fail(e);
            break;
        }
    }
    // The reader, waiting on this queue, learns at once that it is closed.
    drop(rx);
    finish_dirs(&mut x);
    x
}

/// Directory metadata, deepest first, also after an error: what was
/// extracted stays and looks right.
fn finish_dirs(x: &mut Extractor) {
    let dirs = std::mem::take(&mut x.dirs);
    for (rel, m) in dirs.iter().rev() {
        let mut labels = SelinuxLabels::default();
        let applied = match x.enter(rel, false) {
            Ok(()) => apply_meta_fd(x.top(), m, &mut labels),
            Err(e) if is_redirect(&e) => Err(anyhow::anyhow!("a later member replaced it with a symlink or a file")),
            Err(e) => Err(e.into()),
        };
        x.count_labels(labels);
        if let Err(e) = applied {
            x.warn(format!("cannot set owner/mode/time of directory {}: {e:#}", x.show(rel)));
        }
    }
}

fn write_manifest(x: &Extractor, text: &[u8]) -> Result<()> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(&x.root, format::MANIFEST_NAME, flags, Mode::from_raw_mode(0o600))?;
    File::from(fd).write_all(text)?;
    Ok(())
}

fn annotate(e: anyhow::Error, tar: &TarReader<impl Read>) -> anyhow::Error {
    let last = tar.last_path.as_ref().map(|p| format!(" (last member read: {})", lossy(p))).unwrap_or_default();
    let io_eof = e.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::UnexpectedEof)
        || e.chain().any(|c| c.to_string().contains("ends in the middle"));
    if io_eof {
        e.context(format!("the archive is truncated at byte {} of its tar stream{last}", tar.offset))
    } else {
        e.context(format!("the archive is damaged at byte {} of its tar stream{last}", tar.offset))
    }
}

fn check_manifest(x: &mut Extractor, text: &[u8]) -> Result<()> {
    let text = String::from_utf8_lossy(text);
    let (entries, _) = format::parse_manifest(&text)?;
    for e in entries {
        if e.kind != 'f' {
            continue;
        }
        if let (Some(h), Some((_, got))) = (e.hash, x.hashes.get(&e.path)) {
            if h != *got {
                x.report.damaged.push(lossy(&e.path));
            }
        }
    }
    x.report.manifest_checked = true;
    Ok(())
}

/// Restore one member. A member that cannot be placed is a warning naming
/// it and the extraction goes on; an archive that cannot be read on, or a
/// target that takes nothing more (full, read-only, I/O error), stops it.
fn extract_one(x: &mut Extractor, rx: &mut Inbox, m: EntryMeta) -> Result<()> {
    let mut made_rel = false;
    let rel = match clean_path(&m.path, &mut made_rel) {
        Ok(p) => p,
        Err(why) => {
            x.refuse(&m.path, why);
            return Ok(());
        }
    };
    if made_rel {
        x.report.made_relative += 1;
    }
    x.report.entries += 1;
    if rel.as_os_str().is_empty() {
        // The archive's root (".") : the target directory itself.
        if m.kind == Kind::Dir {
            let root = x.root.try_clone().context("opening the target directory again")?;
            apply_dumpdir(x, &m, root.as_fd(), &rel);
            x.dirs.push((rel, m));
        }
        return Ok(());
    }
    match place(x, rx, &m, &rel) {
        Ok(()) => Ok(()),
        Err(Failure::Stream(e)) => Err(e),
        Err(Failure::Refused(why)) => {
            x.refuse(&m.path, why);
            Ok(())
        }
        Err(Failure::Member(e)) if is_fatal(&e) => Err(e.context(format!("restoring {}", x.show(&rel)))),
        Err(Failure::Member(e)) => {
            x.warn(format!("member {} not restored: {e:#}", lossy(&m.path)));
            Ok(())
        }
    }
}

/// Apply a directory member's dumpdir (incremental extraction only); what
/// cannot be applied is a warning naming the directory.
fn apply_dumpdir(x: &mut Extractor, m: &EntryMeta, dir: BorrowedFd, rel: &Path) {
    let Some(raw) = m.dumpdir.as_deref().filter(|_| x.incremental) else { return };
    let applied = super::incremental::parse(raw).and_then(|d| super::incremental::apply(x.root.as_fd(), dir, &d));
    match applied {
        Ok(warnings) => {
            for w in warnings {
                x.warn(format!("in {}: {w}", x.show(rel)));
            }
        }
        Err(e) => x.warn(format!("the incremental record of {} was not applied: {e:#}", x.show(rel))),
    }
}

/// Create the member `rel` (not empty) in its parent directory.
fn place(x: &mut Extractor, rx: &mut Inbox, m: &EntryMeta, rel: &Path) -> std::result::Result<(), Failure> {
    let (parent, dir) = x.take_parent(rel)?;
    let name = rel.file_name().unwrap_or(rel.as_os_str());
    let placed = place_in(x, rx, m, rel, dir.as_fd(), name);
    x.put_back(parent, dir);
    placed
}

fn place_in(x: &mut Extractor, rx: &mut Inbox, m: &EntryMeta, rel: &Path, dir: BorrowedFd, name: &OsStr) -> std::result::Result<(), Failure> {
    match m.kind {
        Kind::Dir => {
            match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
                Ok(_) => {
                    clear(dir, name)?;
                    rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)).map_err(io::Error::from)?;
                }
                Err(_) => rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)).map_err(io::Error::from)?,
            }
            if x.incremental && m.dumpdir.is_some() {
                let this = open_below(dir, name, false)?;
                apply_dumpdir(x, m, this.as_fd(), rel);
            }
            x.dirs.push((rel.to_path_buf(), m.clone()));
        }
        Kind::File => {
            let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let open = || rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600)).map_err(io::Error::from);
            // Create first; only when something is in the way, remove it.
            let fd = match open() {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    clear(dir, name).context("removing what is in the way")?;
                    open()?
                }
                Err(e) => return Err(e.into()),
            };
            let mut f = File::from(fd);
            let hash = write_file_data(rx, m, &mut f)?;
            x.report.bytes += m.size;
            x.hashes.insert(m.path.clone(), (m.size, hash));
            let mut labels = SelinuxLabels::default();
            let applied = apply_meta_fd(f.as_fd(), m, &mut labels);
            x.count_labels(labels);
            if let Err(e) = applied {
                x.warn(format!("cannot set owner/mode/xattrs/time of {}: {e:#}", x.show(rel)));
            }
        }
        Kind::HardLink => {
            let mut mr = false;
            let target_rel = match clean_path(&m.link, &mut mr) {
                Ok(p) if !p.as_os_str().is_empty() => p,
                _ => return Err(Failure::Refused("hard link target leaves the target directory")),
            };
            let target_dir = match x.open_dir(target_rel.parent().unwrap_or(Path::new(""))) {
                Ok(d) => d,
                Err(e) if is_redirect(&e) => return Err(Failure::Refused("hard link target lies below a symlink")),
                Err(e) => return Err(anyhow::Error::from(e).context(format!("hard link target {}", target_rel.display())).into()),
            };
            let target_name = target_rel.file_name().unwrap_or(target_rel.as_os_str());
            let _ = clear(dir, name);
            rustix::fs::linkat(&target_dir, target_name, dir, name, AtFlags::empty())
                .map_err(io::Error::from)
                .with_context(|| format!("linking to {}", target_rel.display()))?;
        }
        Kind::Symlink => {
            if points_outside(rel, &m.link) {
                x.report.outward_symlinks += 1;
                tracing::debug!("symlink {} -> {} points outside the tree (kept; never followed during extraction)", rel.display(), lossy(&m.link));
            }
            let link = OsStr::from_bytes(&m.link);
            match rustix::fs::symlinkat(link, dir, name) {
                Ok(()) => {}
                Err(rustix::io::Errno::EXIST) => {
                    clear(dir, name).context("removing what is in the way")?;
                    rustix::fs::symlinkat(link, dir, name).map_err(io::Error::from)?;
                }
                Err(e) => return Err(io::Error::from(e).into()),
            }
            let mut labels = SelinuxLabels::default();
            let applied = apply_meta_at(dir, name, m, &mut labels);
            x.count_labels(labels);
            if let Err(e) = applied {
                x.warn(format!("cannot set owner/time of symlink {}: {e:#}", x.show(rel)));
            }
        }
        Kind::Char | Kind::Block | Kind::Fifo => {
            clear(dir, name).context("removing what is in the way")?;
            let (kind, dev) = match m.kind {
                Kind::Char => (FileType::CharacterDevice, rustix::fs::makedev(m.dev_major, m.dev_minor)),
                Kind::Block => (FileType::BlockDevice, rustix::fs::makedev(m.dev_major, m.dev_minor)),
                _ => (FileType::Fifo, 0),
            };
            rustix::fs::mknodat(dir, name, kind, Mode::from_raw_mode(0o600), dev).map_err(io::Error::from).context("creating the device node or FIFO")?;
            let mut labels = SelinuxLabels::default();
            let applied = apply_meta_at(dir, name, m, &mut labels);
            x.count_labels(labels);
            if let Err(e) = applied {
                x.warn(format!("cannot set owner/mode/time of {}: {e:#}", x.show(rel)));
            }
        }
    }
    Ok(())
}

/// Write a file member's data as the reader hands it over (each region of
/// a sparse one at its offset) and return its checksum.
fn write_file_data(rx: &mut Inbox, m: &EntryMeta, f: &mut File) -> std::result::Result<u128, Failure> {
    let mut hasher = Xxh3::new();
    let regions = m.sparse.clone().unwrap_or_else(|| vec![(0, m.size)]);
    for (off, len) in &regions {
        if m.sparse.is_some() {
            f.seek(io::SeekFrom::Start(*off)).with_context(|| format!("seeking to the sparse region at offset {off}"))?;
        }
        let mut left = *len;
        while left > 0 {
            // The reader stopped (its error, or another writer's, is the one reported).
            let Some(Job::Data(chunk)) = rx.recv() else {
                return Err(Failure::Stream(anyhow::anyhow!("the restore stopped while {} was written", lossy(&m.path))));
            };
            hasher.update(&chunk);
            f.write_all(&chunk).context("writing the data")?;
            left = left.saturating_sub(chunk.len() as u64);
        }
    }
    if m.sparse.is_some() {
        f.set_len(m.size).with_context(|| format!("setting the size to {} bytes", m.size))?;
    }
    Ok(hasher.digest128())
}

/// The member's owner as ids Linux takes (not `-1`, which means "unchanged").
fn owner(m: &EntryMeta) -> Result<(rustix::fs::Uid, rustix::fs::Gid)> {
    let uid = u32::try_from(m.uid).ok().filter(|&u| u != u32::MAX).with_context(|| format!("user id {} is not a Linux user id", m.uid))?;
    let gid = u32::try_from(m.gid).ok().filter(|&g| g != u32::MAX).with_context(|| format!("group id {} is not a Linux group id", m.gid))?;
    Ok((rustix::fs::Uid::from_raw(uid), rustix::fs::Gid::from_raw(gid)))
}

fn mtime(m: &EntryMeta) -> Timestamps {
    Timestamps {
        last_access: Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT },
        last_modification: Timespec { tv_sec: m.mtime_sec, tv_nsec: m.mtime_nsec.min(999_999_999).into() },
    }
}

/// The ACLs of a member as `system.posix_acl_*` xattrs, then its other xattrs.
fn all_xattrs(m: &EntryMeta) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut v = m.xattrs.clone();
    if let Some(a) = &m.acl_access {
        v.push((b"system.posix_acl_access".to_vec(), format::acl_text_to_xattr(a).context("the ACL")?));
    }
    if let Some(a) = &m.acl_default {
        v.push((b"system.posix_acl_default".to_vec(), format::acl_text_to_xattr(a).context("the default ACL")?));
    }
    Ok(v)
}

/// Owner, mode, xattrs, ACLs, then times, through the open file or
/// directory (in this order: chown clears setuid bits and file capabilities).
fn apply_meta_fd(fd: BorrowedFd, m: &EntryMeta, labels: &mut SelinuxLabels) -> Result<()> {
    let (uid, gid) = owner(m)?;
    rustix::fs::fchown(fd, Some(uid), Some(gid)).context("chown")?;
    rustix::fs::fchmod(fd, Mode::from_raw_mode(m.mode)).context("chmod")?;
    // An xattr or ACL that cannot be set must not leave the time unset.
    let set = all_xattrs(m).and_then(|x| set_xattrs(&x, labels, |k, v| rustix::fs::fsetxattr(fd, k, v, rustix::fs::XattrFlags::empty())));
    rustix::fs::futimens(fd, &mtime(m)).context("setting the modification time")?;
    set
}

/// Set each xattr with `set`, all of them even when one fails (the first
/// error is returned), counting the SELinux label into `labels`.
fn set_xattrs(xattrs: &[(Vec<u8>, Vec<u8>)], labels: &mut SelinuxLabels, set: impl Fn(&OsStr, &[u8]) -> rustix::io::Result<()>) -> Result<()> {
    let mut first_err = None;
    for (k, v) in xattrs {
        let r = set(OsStr::from_bytes(k), v);
        if k == SELINUX_XATTR {
            if r.is_ok() {
                labels.restored += 1;
            } else {
                labels.refused += 1;
            }
        }
        if let Err(e) = r.with_context(|| format!("setting extended attribute {}", lossy(k))) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// The same for an entry that cannot be opened (a symlink, a device node,
/// a FIFO): `name` in the open directory `dir`, never following a symlink.
fn apply_meta_at(dir: BorrowedFd, name: &OsStr, m: &EntryMeta, labels: &mut SelinuxLabels) -> Result<()> {
    let (uid, gid) = owner(m)?;
    rustix::fs::chownat(dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW).context("chown")?;
    if m.kind != Kind::Symlink {
        // Just made by mknodat in `dir`: not a symlink.
        rustix::fs::chmodat(dir, name, Mode::from_raw_mode(m.mode), AtFlags::empty()).context("chmod")?;
    }
    let xattrs = if m.kind == Kind::Symlink { Ok(m.xattrs.clone()) } else { all_xattrs(m) };
    // No `setxattrat` before Linux 6.13: the open directory's /proc/self/fd
    // link resolves to it, and lsetxattr does not follow `name`.
    let path = Path::new("/proc/self/fd").join(dir.as_raw_fd().to_string()).join(name);
    let set = xattrs.and_then(|x| set_xattrs(&x, labels, |k, v| rustix::fs::lsetxattr(&path, k, v, rustix::fs::XattrFlags::empty())));
    rustix::fs::utimensat(dir, name, &mtime(m), AtFlags::SYMLINK_NOFOLLOW).context("setting the modification time")?;
    set
}

// ---------------------------------------------------------------- list, verify

/// Print one line per member, like `tar -tv`, to `out`.
pub fn list<R: Read + Send + 'static>(input: R, out: &mut dyn Write) -> Result<u64> {
    let (stream, _) = super::open_stream(input).context("reading the archive")?;
    let mut tar = TarReader::new(stream);
    let mut n = 0;
    while let Some(m) = tar.next_entry().map_err(|e| annotate(e, &tar))? {
        if m.path == format::MANIFEST_NAME.as_bytes() {
            continue;
        }
        n += 1;
        let t = time::OffsetDateTime::from_unix_timestamp(m.mtime_sec).ok();
        let ts = t.and_then(|t| t.format(&time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]")).ok()).unwrap_or_default();
        let link = match m.kind {
            Kind::Symlink => format!(" -> {}", lossy(&m.link)),
            Kind::HardLink => format!(" link to {}", lossy(&m.link)),
            _ => String::new(),
        };
        let size = match m.kind {
            Kind::Char | Kind::Block => format!("{},{}", m.dev_major, m.dev_minor),
            _ => m.size.to_string(),
        };
        writeln!(out, "{}{:04o} {}/{} {:>12} {} {}{}", m.kind.letter(), m.mode, m.uid, m.gid, size, ts, format::escape_path(&m.path), link)?;
    }
    tar.read_to_end_of_stream()?;
    Ok(n)
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct VerifyReport {
    pub members: u64,
    pub bytes: u64,
    /// Members whose checksum or size differs from the manifest.
    pub damaged: Vec<String>,
    /// Members the manifest lists but the archive lacks.
    pub missing: Vec<String>,
    /// Members the archive has but the manifest does not list.
    pub unexpected: Vec<String>,
    pub summary: Option<String>,
    /// Every member's path (what the restore will bring), for checks before writing.
    #[serde(skip)]
    pub paths: HashSet<Vec<u8>>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.damaged.is_empty() && self.missing.is_empty() && self.unexpected.is_empty()
    }
}

/// Read the whole archive, checksum every file member and compare with
/// the manifest. A stream that cannot be read to its end is an error
/// naming the last good member.
pub fn verify<R: Read + Send + 'static>(input: R) -> Result<VerifyReport> {
    let (stream, _) = super::open_stream(input).context("reading the archive")?;
    let mut tar = TarReader::new(stream);
    let mut seen: HashMap<Vec<u8>, (char, u64, Option<u128>)> = HashMap::new();
    let mut report = VerifyReport::default();
    let mut manifest: Option<Vec<u8>> = None;
    let mut buf = vec![0u8; 1 << 20];
    while let Some(m) = tar.next_entry().map_err(|e| annotate(e, &tar))? {
        if m.path == format::MANIFEST_NAME.as_bytes() {
            let mut text = vec![0u8; m.size.min(1 << 30) as usize];
            tar.read_data_exact(&mut text).map_err(|e| annotate(e.into(), &tar))?;
            manifest = Some(text);
            continue;
        }
        report.members += 1;
        let mut hash = None;
        if m.kind == Kind::File {
            let mut h = Xxh3::new();
            let mut left = data_len(&m);
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                tar.read_data_exact(&mut buf[..want])
                    .map_err(|e| annotate(e.into(), &tar))
                    .with_context(|| format!("member {} is truncated", lossy(&m.path)))?;
                h.update(&buf[..want]);
                left -= want as u64;
                report.bytes += want as u64;
            }
            hash = Some(h.digest128());
        }
        let data = data_len(&m);
        seen.insert(m.path.clone(), (m.kind.letter(), data, hash));
    }
    tar.read_to_end_of_stream()?;
    let Some(text) = manifest else {
        bail!("the archive has no manifest member ({}): it was not written by rescue, or it is truncated", format::MANIFEST_NAME);
    };
    let (entries, summary) = format::parse_manifest(&String::from_utf8_lossy(&text))?;
    report.summary = summary;
    let mut listed = HashSet::new();
    for e in entries {
        listed.insert(e.path.clone());
        match seen.get(&e.path) {
            None => report.missing.push(lossy(&e.path)),
            Some((kind, size, hash)) => {
                if e.kind == 'f' && (Some(*size) != e.size || *hash != e.hash || *kind != 'f') {
                    report.damaged.push(lossy(&e.path));
                }
            }
        }
    }
    for p in seen.keys() {
        if !listed.contains(p) {
            report.unexpected.push(lossy(p));
        }
    }
    report.unexpected.sort();
    report.paths = seen.into_keys().collect();
    Ok(report)
}

/// Bytes of file data a member stores (the data regions of a sparse file).
fn data_len(m: &EntryMeta) -> u64 {
    match &m.sparse {
        Some(map) => map.iter().map(|r| r.1).sum(),
        None => m.size,
    }
}

/// Size of a file, for progress.
pub fn file_size(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.size())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_refuses_dotdot_and_strips_slash() {
        let mut r = false;
        assert!(clean_path(b"a/../../etc/passwd", &mut r).is_err());
        assert_eq!(clean_path(b"/etc/passwd", &mut r).unwrap(), PathBuf::from("etc/passwd"));
        assert!(r);
    }

    #[test]
    fn a_member_goes_to_the_deepest_filesystem_its_path_lies_in() {
        let fs: Vec<PathBuf> = ["", "boot", "boot/efi", "home"].iter().map(PathBuf::from).collect();
        let at = |p: &str| writer_for(&fs, Path::new(p));
        assert_eq!((at(""), at("etc/passwd"), at("bootx/y")), (0, 0, 0));
        assert_eq!((at("boot"), at("boot/vmlinuz"), at("boot/efi"), at("boot/efi/EFI/x")), (1, 1, 2, 2));
        assert_eq!((at("home/alice/.profile"), at("homes")), (3, 0));
    }

    #[test]
    fn outward_symlinks() {
        assert!(points_outside(Path::new("a/b"), b"/etc"));
        assert!(points_outside(Path::new("a/b"), b"../../x"));
        assert!(!points_outside(Path::new("a/b"), b"../x"));
    }
}
