//! GNU tar's incremental format. On creation, [`encode`] makes a
//! directory's dumpdir (`create` writes it as the pax record `GNU.dumpdir`
//! when making an archive of a chain). On extraction: a directory member of an
//! incremental archive carries a dumpdir, the names the directory held when
//! the archive was made (pax record `GNU.dumpdir`, or the data of a type
//! 'D' member in the GNU format). Restoring a chain (full, then each
//! incremental in order) applies it the way `tar -x --listed-incremental`
//! does: renames first (`R`/`T` pairs, `X` the temporary name), then every
//! name in the directory that the dumpdir does not list, or lists as a
//! non-directory while a directory is there, is removed. So deleted and
//! renamed files do not come back.
//!
//! All of it happens relative to directory file descriptors opened beneath
//! the target without following symlinks, as the rest of extraction: a
//! dumpdir can only name entries of its own directory (a name with `/`
//! matches nothing), and rename paths are cleaned like member names (`..`
//! is refused), so no dumpdir removes or moves anything outside the target.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use rustix::fs::{AtFlags, FileType, Mode};

use super::extract::{clean_path, dir_flags, open_below};

/// A parsed dumpdir.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Dumpdir {
    /// Name in the directory -> its control letter (`Y` in this archive,
    /// `N` unchanged, `D` a directory).
    pub names: HashMap<Vec<u8>, u8>,
    /// Renames (from, to), paths relative to the archive's root, in order.
    pub renames: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The flag of a name in a dumpdir: `D` a directory, `Y` in this archive,
/// `N` left out (unchanged since the previous archive of the chain).
pub const DIRECTORY: u8 = b'D';
pub const IN_ARCHIVE: u8 = b'Y';
pub const UNCHANGED: u8 = b'N';

/// A dumpdir of `names` (name, flag), sorted by name as GNU tar writes it.
pub fn encode(mut names: Vec<(Vec<u8>, u8)>) -> Vec<u8> {
    names.sort();
    let mut out = Vec::new();
    for (name, flag) in names {
        out.push(flag);
        out.extend_from_slice(&name);
        out.push(0);
    }
    out.push(0);
    out
}

/// Parse a dumpdir: records of a control letter and a name, each ended by
/// NUL, the list ended by an empty record.
pub fn parse(data: &[u8]) -> Result<Dumpdir> {
    let mut d = Dumpdir::default();
    let mut temp: Option<&[u8]> = None;
    let mut from: Option<Vec<u8>> = None;
    let or_temp = |name: &[u8], temp: Option<&[u8]>| -> Result<Vec<u8>> {
        match (name.is_empty(), temp) {
            (false, _) => Ok(name.to_vec()),
            (true, Some(t)) => Ok(t.to_vec()),
            (true, None) => bail!("a rename in a dumpdir uses the temporary name before an X record gives it"),
        }
    };
    for rec in data.split(|&b| b == 0) {
        let Some((&c, name)) = rec.split_first() else { break };
        match c {
            b'Y' | b'N' | b'D' => {
                d.names.insert(name.to_vec(), c);
            }
            b'X' => temp = Some(name),
            b'R' => {
                if from.is_some() {
                    bail!("a dumpdir has two rename sources (R) in a row");
                }
                from = Some(or_temp(name, temp)?);
            }
            b'T' => {
                let Some(f) = from.take() else { bail!("a dumpdir has a rename target (T) without a source (R)") };
                d.renames.push((f, or_temp(name, temp)?));
            }
            other => bail!("a dumpdir has an entry of unknown type {:?}", other as char),
        }
    }
    if from.is_some() {
        bail!("a dumpdir ends with a rename source (R) without its target (T)");
    }
    Ok(d)
}

/// Apply the dumpdir `d` of the directory `dir` (open), in the tree whose
/// root is `root`. Problems that leave the rest sound (a rename whose source
/// is gone, an entry that cannot be removed) are returned as warnings.
pub fn apply(root: BorrowedFd, dir: BorrowedFd, d: &Dumpdir) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    for (from, to) in &d.renames {
        if let Err(e) = rename(root, from, to) {
            warnings.push(format!("incremental rename of {} to {} not applied: {e}", String::from_utf8_lossy(from), String::from_utf8_lossy(to)));
        }
    }
    for name in names_in(dir)? {
        let n = OsStr::from_bytes(&name);
        let is_dir = rustix::fs::statat(dir, n, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
        let keep = match d.names.get(&name) {
            None => false,
            Some(&c) => !is_dir || c == b'D',
        };
        if !keep {
            if let Err(e) = remove_tree(dir, n) {
                warnings.push(format!("{} (deleted since the previous backup) not removed: {e}", String::from_utf8_lossy(&name)));
            }
        }
    }
    Ok(warnings)
}

/// The names in the open directory `dir` (without `.` and `..`).
fn names_in(dir: BorrowedFd) -> io::Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let n = entry?.file_name().to_bytes().to_vec();
        if n != b"." && n != b".." {
            names.push(n);
        }
    }
    Ok(names)
}

/// A rename path as a parent directory (opened beneath `root`) and a name.
fn split_open(root: BorrowedFd, raw: &[u8]) -> io::Result<(OwnedFd, PathBuf)> {
    let mut made_relative = false;
    let rel = clean_path(raw, &mut made_relative).map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, format!("refused: {why}")))?;
    let Some(name) = rel.file_name().map(PathBuf::from) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "refused: it names the target itself"));
    };
    let mut dir = rustix::fs::openat(root, ".", dir_flags(), Mode::empty())?;
    for c in rel.parent().unwrap_or(Path::new("")).iter() {
        dir = open_below(dir.as_fd(), c, false)?;
    }
    Ok((dir, name))
}

fn rename(root: BorrowedFd, from: &[u8], to: &[u8]) -> io::Result<()> {
    let (fd, fname) = split_open(root, from)?;
    let (td, tname) = split_open(root, to)?;
    Ok(rustix::fs::renameat(&fd, &fname, &td, &tname)?)
}

/// Remove `name` in `dir`, a directory with everything in it; never
/// following a symlink (a symlink is removed itself).
fn remove_tree(dir: BorrowedFd, name: &OsStr) -> io::Result<()> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?);
    }
    let sub = rustix::fs::openat(dir, name, dir_flags(), Mode::empty())?;
    for n in names_in(sub.as_fd())? {
        remove_tree(sub.as_fd(), OsStr::from_bytes(&n))?;
    }
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_encoded_dumpdir_parses_back() {
        let raw = encode(vec![(b"b".to_vec(), UNCHANGED), (b"a".to_vec(), DIRECTORY), (b"c d".to_vec(), IN_ARCHIVE)]);
        assert_eq!(raw, b"Da\0Nb\0Yc d\0\0");
        let d = parse(&raw).unwrap();
        assert_eq!(d.names[&b"c d".to_vec()], IN_ARCHIVE);
        assert_eq!(parse(&encode(Vec::new())).unwrap(), Dumpdir::default());
    }

    #[test]
    fn parses_gnu_dumpdirs_and_refuses_malformed_ones() {
        let d = parse(b"Da\0Nx\0Yy\0R./a/b\0T./a/c\0\0").unwrap();
        assert_eq!(d.names.len(), 3);
        assert_eq!(d.names[&b"a".to_vec()], b'D');
        assert_eq!(d.renames, vec![(b"./a/b".to_vec(), b"./a/c".to_vec())]);
        let d = parse(b"Xtmp1\0Ra\0T\0Rb\0Ta\0R\0Tb\0\0").unwrap();
        assert_eq!(d.renames[0], (b"a".to_vec(), b"tmp1".to_vec()));
        assert_eq!(d.renames[2], (b"tmp1".to_vec(), b"b".to_vec()));
        assert!(parse(b"").unwrap().names.is_empty());
        for bad in [&b"Ra\0\0"[..], b"Ta\0\0", b"Ra\0Rb\0\0", b"R\0Ta\0\0", b"Qx\0\0"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_hostile_dumpdir_cannot_reach_outside_the_target() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        let target = t.path().join("target");
        std::fs::create_dir_all(target.join("d")).unwrap();
        std::fs::write(target.join("d/gone"), "x").unwrap();
        std::fs::write(target.join("d/kept"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, target.join("link")).unwrap();
        let root = rustix::fs::open(&target, rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY, Mode::empty()).unwrap();
        let d = rustix::fs::open(target.join("d"), rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY, Mode::empty()).unwrap();
        // Names with `/`, `..` and `/` match nothing; renames through `..`
        // or a symlink are refused.
        let dd = parse(b"Nkept\0Nkept2\0N../outside/keep\0N/\0N..\0R../outside/keep\0Tstolen\0Rlink/keep\0Tstolen2\0R/d/kept\0T/d/kept2\0\0").unwrap();
        let w = apply(root.as_fd(), d.as_fd(), &dd).unwrap();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(outside.join("keep").exists());
        assert!(!target.join("d/gone").exists(), "not listed: removed");
        assert!(target.join("d/kept2").exists(), "an absolute rename path is made relative to the target");
        assert!(!target.join("stolen").exists() && !target.join("stolen2").exists());
        // The root's own dumpdir removes the symlink itself, not what it points to.
        let w = apply(root.as_fd(), root.as_fd(), &parse(b"Dd\0\0").unwrap()).unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert!(!target.join("link").exists() && outside.join("keep").exists());
        // A directory listed as a file (replaced by one) is removed whole.
        let w = apply(root.as_fd(), root.as_fd(), &parse(b"Yd\0\0").unwrap()).unwrap();
        assert!(w.is_empty() && !target.join("d").exists(), "{w:?}");
    }
}
