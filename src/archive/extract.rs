//! Reading an archive: extract (safely), list, verify.
//!
//! Extraction never writes outside the target: members with `..` are
//! refused, absolute names are made relative, and nothing is written
//! through a symlink (a member below a symlinked directory is refused).
//! Symlinks themselves are restored verbatim, as the restored system needs
//! them. Directory metadata is applied last, deepest first.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
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
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ExtractReport {
    pub entries: u64,
    pub bytes: u64,
    /// Members not extracted for safety (`..`, under a symlink).
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
}

fn lossy(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// Clean a member name into a relative path. `Err(reason)` refuses it.
fn clean_path(raw: &[u8], made_relative: &mut bool) -> std::result::Result<PathBuf, &'static str> {
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

struct Extractor {
    root: PathBuf,
    /// Relative directories known to be real directories (not symlinks).
    safe_dirs: HashSet<PathBuf>,
    /// Directories whose metadata is applied at the end.
    dirs: Vec<(PathBuf, EntryMeta)>,
    report: ExtractReport,
    hashes: HashMap<Vec<u8>, (u64, u128)>,
}

impl Extractor {
    /// Make sure every parent of `rel` is a real directory inside the
    /// target, creating missing ones. `false` when one is a symlink or not
    /// a directory (the member is refused).
    fn ensure_parents(&mut self, rel: &Path) -> Result<bool> {
        let Some(parent) = rel.parent() else { return Ok(true) };
        if parent.as_os_str().is_empty() || self.safe_dirs.contains(parent) {
            return Ok(true);
        }
        let mut cur = PathBuf::new();
        for c in parent.components() {
            cur.push(c);
            if self.safe_dirs.contains(&cur) {
                continue;
            }
            let full = self.root.join(&cur);
            match std::fs::symlink_metadata(&full) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    std::fs::DirBuilder::new().mode(0o755).create(&full).with_context(|| format!("creating directory {}", full.display()))?;
                }
                Err(e) => return Err(e).with_context(|| format!("checking {}", full.display())),
            }
            self.safe_dirs.insert(cur.clone());
        }
        Ok(true)
    }

    /// Remove whatever is at `full` so a new entry can take its place
    /// (an empty directory too; a non-empty one is an error).
    fn clear(&mut self, rel: &Path, full: &Path) -> io::Result<()> {
        match std::fs::symlink_metadata(full) {
            Ok(m) if m.is_dir() => {
                self.safe_dirs.retain(|d| !d.starts_with(rel));
                std::fs::remove_dir(full)
            }
            Ok(_) => std::fs::remove_file(full),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn refuse(&mut self, path: &[u8], why: &str) {
        let s = format!("{}: {why}", lossy(path));
        tracing::warn!("refused archive member {s}");
        self.report.refused.push(s);
    }

    fn warn(&mut self, s: String) {
        tracing::debug!("warning: {s}");
        self.report.warnings.push(s);
    }
}

/// Extract an archive stream (any compression) into `opts.target`.
/// A corrupt or truncated archive is an error; what was extracted stays.
pub fn extract<R: Read + Send + 'static>(input: R, opts: &ExtractOptions) -> Result<ExtractReport> {
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (stream, _) = super::open_stream(super::CountingReader { inner: input, count: counter.clone() }).context("reading the archive")?;
    std::fs::create_dir_all(&opts.target).with_context(|| format!("creating the target directory {}", opts.target.display()))?;
    let root = opts.target.canonicalize().with_context(|| format!("resolving {}", opts.target.display()))?;
    let mut x = Extractor { root, safe_dirs: HashSet::new(), dirs: Vec::new(), report: ExtractReport::default(), hashes: HashMap::new() };
    let mut tar = TarReader::new(stream);
    let mut progress = Progress::new("restoring", opts.total_bytes, opts.progress);
    let mut buf = vec![0u8; 1 << 20];
    let result = (|| -> Result<()> {
        while let Some(m) = tar.next_entry().map_err(|e| annotate(e, &tar))? {
            progress.set_bytes(counter.load(std::sync::atomic::Ordering::Relaxed), x.report.entries);
            if m.path == format::MANIFEST_NAME.as_bytes() && m.kind == Kind::File {
                let mut text = vec![0u8; m.size.min(1 << 30) as usize];
                tar.read_data_exact(&mut text).map_err(|e| annotate(e.into(), &tar))?;
                check_manifest(&mut x, &text)?;
                if opts.keep_manifest {
                    std::fs::write(x.root.join(format::MANIFEST_NAME), &text)?;
                }
                continue;
            }
            extract_one(&mut x, &mut tar, m, &mut buf)?;
        }
        Ok(())
    })();
    progress.finish();
    // Directory metadata, deepest first, also after an error: what was
    // extracted stays and looks right.
    let dirs = std::mem::take(&mut x.dirs);
    for (rel, m) in dirs.iter().rev() {
        let full = x.root.join(rel);
        if let Err(e) = apply_meta_path(&full, m) {
            x.warn(format!("cannot set owner/mode/time of {}: {e:#}", full.display()));
        }
    }
    result?;
    Ok(x.report)
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

fn extract_one<R: Read>(x: &mut Extractor, tar: &mut TarReader<R>, m: EntryMeta, buf: &mut [u8]) -> Result<()> {
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
    let full = x.root.join(&rel);
    if rel.as_os_str().is_empty() {
        // The archive's root (".") : the target directory itself.
        if m.kind == Kind::Dir {
            x.dirs.push((rel, m));
        }
        return Ok(());
    }
    if !x.ensure_parents(&rel)? {
        x.refuse(&m.path, "a parent directory in the target is a symlink or not a directory");
        return Ok(());
    }
    match m.kind {
        Kind::Dir => {
            match std::fs::symlink_metadata(&full) {
                Ok(md) if md.is_dir() => {}
                Ok(_) => {
                    x.clear(&rel, &full)?;
                    std::fs::DirBuilder::new().mode(0o700).create(&full).with_context(|| format!("creating {}", full.display()))?;
                }
                Err(_) => {
                    std::fs::DirBuilder::new().mode(0o700).create(&full).with_context(|| format!("creating {}", full.display()))?;
                }
            }
            x.safe_dirs.insert(rel.clone());
            x.dirs.push((rel, m));
        }
        Kind::File => {
            let open = || OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(&full);
            // Create first; only when something is in the way, remove it.
            let mut f = match open() {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if let Err(e) = x.clear(&rel, &full) {
                        x.warn(format!("cannot replace {}: {e}; member skipped", full.display()));
                        return Ok(());
                    }
                    open().with_context(|| format!("creating {}", full.display()))?
                }
                Err(e) => return Err(e).with_context(|| format!("creating {}", full.display())),
            };
            let mut hasher = Xxh3::new();
            let regions = m.sparse.clone().unwrap_or_else(|| vec![(0, m.size)]);
            for (off, len) in &regions {
                if m.sparse.is_some() {
                    use std::io::Seek;
                    f.seek(io::SeekFrom::Start(*off))?;
                }
                let mut left = *len;
                while left > 0 {
                    let want = left.min(buf.len() as u64) as usize;
                    tar.read_data_exact(&mut buf[..want]).map_err(|e| annotate(e.into(), tar)).with_context(|| format!("extracting {}", lossy(&m.path)))?;
                    hasher.update(&buf[..want]);
                    f.write_all(&buf[..want]).with_context(|| format!("writing {}", full.display()))?;
                    left -= want as u64;
                }
            }
            if m.sparse.is_some() {
                f.set_len(m.size).with_context(|| format!("setting the size of {}", full.display()))?;
            }
            x.report.bytes += m.size;
            x.hashes.insert(m.path.clone(), (m.size, hasher.digest128()));
            if let Err(e) = apply_meta_file(&f, &m) {
                x.warn(format!("cannot set owner/mode/xattrs/time of {}: {e:#}", full.display()));
            }
        }
        Kind::HardLink => {
            let mut mr = false;
            let target_rel = match clean_path(&m.link, &mut mr) {
                Ok(p) if !p.as_os_str().is_empty() => p,
                _ => {
                    x.refuse(&m.path, "hard link target leaves the target directory");
                    return Ok(());
                }
            };
            if !x.ensure_parents(&target_rel)? {
                x.refuse(&m.path, "hard link target lies below a symlink");
                return Ok(());
            }
            let _ = x.clear(&rel, &full);
            if let Err(e) = std::fs::hard_link(x.root.join(&target_rel), &full) {
                x.warn(format!("cannot create hard link {} to {}: {e}", full.display(), target_rel.display()));
            }
        }
        Kind::Symlink => {
            if points_outside(&rel, &m.link) {
                x.report.outward_symlinks += 1;
                tracing::debug!("symlink {} -> {} points outside the tree (kept; never followed during extraction)", rel.display(), lossy(&m.link));
            }
            let link = OsStr::from_bytes(&m.link);
            if let Err(e) = std::os::unix::fs::symlink(link, &full) {
                if e.kind() != io::ErrorKind::AlreadyExists {
                    return Err(e).with_context(|| format!("creating symlink {}", full.display()));
                }
                if let Err(e) = x.clear(&rel, &full) {
                    x.warn(format!("cannot replace {}: {e}; member skipped", full.display()));
                    return Ok(());
                }
                std::os::unix::fs::symlink(link, &full).with_context(|| format!("creating symlink {}", full.display()))?;
            }
            if let Err(e) = apply_meta_path(&full, &m) {
                x.warn(format!("cannot set owner/time of symlink {}: {e:#}", full.display()));
            }
        }
        Kind::Char | Kind::Block | Kind::Fifo => {
            if let Err(e) = x.clear(&rel, &full) {
                x.warn(format!("cannot replace {}: {e}; member skipped", full.display()));
                return Ok(());
            }
            let (sflag, dev) = match m.kind {
                Kind::Char => (nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::makedev(m.dev_major as u64, m.dev_minor as u64)),
                Kind::Block => (nix::sys::stat::SFlag::S_IFBLK, nix::sys::stat::makedev(m.dev_major as u64, m.dev_minor as u64)),
                _ => (nix::sys::stat::SFlag::S_IFIFO, 0),
            };
            match nix::sys::stat::mknod(&full, sflag, nix::sys::stat::Mode::from_bits_truncate(0o600), dev) {
                Ok(()) => {
                    if let Err(e) = apply_meta_path(&full, &m) {
                        x.warn(format!("cannot set owner/mode/time of {}: {e:#}", full.display()));
                    }
                }
                Err(e) => x.warn(format!("cannot create device node or FIFO {}: {e}", full.display())),
            }
        }
    }
    Ok(())
}

fn mtime(m: &EntryMeta) -> SystemTime {
    if m.mtime_sec >= 0 {
        UNIX_EPOCH + Duration::new(m.mtime_sec as u64, m.mtime_nsec)
    } else {
        UNIX_EPOCH - Duration::from_secs(m.mtime_sec.unsigned_abs())
    }
}

fn set_acls_path(path: &Path, m: &EntryMeta, set: &dyn Fn(&str, &[u8]) -> io::Result<()>) -> Result<()> {
    if let Some(a) = &m.acl_access {
        set("system.posix_acl_access", &format::acl_text_to_xattr(a)?).with_context(|| format!("setting the ACL of {}", path.display()))?;
    }
    if let Some(a) = &m.acl_default {
        set("system.posix_acl_default", &format::acl_text_to_xattr(a)?).with_context(|| format!("setting the default ACL of {}", path.display()))?;
    }
    Ok(())
}

/// Owner, mode, xattrs, ACLs, then times (in this order: chown clears
/// setuid bits and file capabilities).
fn apply_meta_file(f: &File, m: &EntryMeta) -> Result<()> {
    use xattr::FileExt;
    std::os::unix::fs::fchown(f, Some(m.uid as u32), Some(m.gid as u32)).context("chown")?;
    f.set_permissions(std::fs::Permissions::from_mode(m.mode)).context("chmod")?;
    // An xattr or ACL that cannot be set must not leave the time unset.
    let mut first_err = None;
    for (k, v) in &m.xattrs {
        if let Err(e) = f.set_xattr(OsStr::from_bytes(k), v).with_context(|| format!("setting extended attribute {}", lossy(k))) {
            first_err.get_or_insert(e);
        }
    }
    if let Err(e) = set_acls_path(Path::new("file"), m, &|k, v| f.set_xattr(k, v)) {
        first_err.get_or_insert(e);
    }
    f.set_times(std::fs::FileTimes::new().set_modified(mtime(m))).context("setting the modification time")?;
    first_err.map_or(Ok(()), Err)
}

fn apply_meta_path(path: &Path, m: &EntryMeta) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(m.uid as u32), Some(m.gid as u32)).context("chown")?;
    if m.kind != Kind::Symlink {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(m.mode)).context("chmod")?;
    }
    let mut first_err = None;
    for (k, v) in &m.xattrs {
        if let Err(e) = xattr::set(path, OsStr::from_bytes(k), v).with_context(|| format!("setting extended attribute {}", lossy(k))) {
            first_err.get_or_insert(e);
        }
    }
    if m.kind != Kind::Symlink {
        if let Err(e) = set_acls_path(path, m, &|k, v| xattr::set(path, k, v)) {
            first_err.get_or_insert(e);
        }
    }
    let t = mtime(m);
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let ts = nix::sys::time::TimeSpec::new(d.as_secs() as i64, d.subsec_nanos() as i64);
    let now = nix::sys::time::TimeSpec::UTIME_OMIT;
    nix::sys::stat::utimensat(None, path, &now, &ts, nix::sys::stat::UtimensatFlags::NoFollowSymlink).context("setting the modification time")?;
    first_err.map_or(Ok(()), Err)
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
    fn outward_symlinks() {
        assert!(points_outside(Path::new("a/b"), b"/etc"));
        assert!(points_outside(Path::new("a/b"), b"../../x"));
        assert!(!points_outside(Path::new("a/b"), b"../x"));
    }
}
