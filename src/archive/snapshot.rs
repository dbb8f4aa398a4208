//! The state an incremental archive compares against: for every
//! non-directory entry the previous archive of a chain holds (or that was
//! unchanged in it), its inode, size, mtime and ctime. A file whose state
//! differs (or that is new) goes into the next incremental; the others are
//! listed in their directory's dumpdir as unchanged (`N`) and left out.
//! ctime catches a change that put the mtime back (`touch -d` after a write),
//! the inode a file replaced by another of the same size and times.
//!
//! Stored as text, one entry a line (`INODE SIZE MTIME CTIME PATH`, times as
//! `SEC.NSEC`, the path escaped as in the manifest), after a header line.

use std::collections::HashMap;
use std::fs::Metadata;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};

use super::format::{escape_path, unescape_path};

const HEADER: &str = "rescue-incremental-snapshot 1";

/// What decides whether an entry changed since the previous archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileState {
    pub inode: u64,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl FileState {
    pub fn of(m: &Metadata) -> FileState {
        FileState { inode: m.ino(), size: m.len(), mtime: (m.mtime(), m.mtime_nsec()), ctime: (m.ctime(), m.ctime_nsec()) }
    }
}

/// The state of every non-directory entry of an archive chain, by member name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    entries: HashMap<Vec<u8>, FileState>,
}

impl Snapshot {
    /// Whether the entry `name` (not a directory) is as the previous archive left it.
    pub fn unchanged(&self, name: &[u8], m: &Metadata) -> bool {
        self.entries.get(name) == Some(&FileState::of(m))
    }

    pub fn insert(&mut self, name: Vec<u8>, state: FileState) {
        self.entries.insert(name, state);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Write to `path` atomically (a temporary file renamed into place).
    pub fn save(&self, path: &Path) -> Result<()> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut tmp =
            tempfile::Builder::new().prefix(".snapshot-").tempfile_in(dir).with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        {
            let mut w = BufWriter::new(tmp.as_file_mut());
            writeln!(w, "{HEADER}")?;
            let mut names: Vec<_> = self.entries.iter().collect();
            names.sort_by(|a, b| a.0.cmp(b.0));
            for (name, s) in names {
                writeln!(w, "{} {} {}.{} {}.{} {}", s.inode, s.size, s.mtime.0, s.mtime.1, s.ctime.0, s.ctime.1, escape_path(name))?;
            }
            w.flush()?;
        }
        tmp.as_file().sync_all()?;
        tmp.persist(path).with_context(|| format!("writing the incremental state {}", path.display()))?;
        Ok(())
    }

    /// Read a snapshot [`Snapshot::save`] wrote.
    pub fn load(path: &Path) -> Result<Snapshot> {
        let f = std::fs::File::open(path).with_context(|| format!("opening the incremental state {}", path.display()))?;
        let bad =
            |n: usize| anyhow::anyhow!("the incremental state {} is damaged at line {n}: delete it and make a full backup (--level full)", path.display());
        let mut lines = BufReader::new(f).lines();
        if lines.next().transpose()?.as_deref() != Some(HEADER) {
            return Err(bad(1));
        }
        let mut s = Snapshot::default();
        for (i, line) in lines.enumerate() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            let f: Vec<&str> = line.splitn(5, ' ').collect();
            let time = |t: &str| -> Option<(i64, i64)> {
                let (a, b) = t.split_once('.')?;
                Some((a.parse().ok()?, b.parse().ok()?))
            };
            let state = match f[..] {
                [ino, size, m, c, _] => (|| Some(FileState { inode: ino.parse().ok()?, size: size.parse().ok()?, mtime: time(m)?, ctime: time(c)? }))(),
                _ => None,
            };
            let (Some(state), Some(name)) = (state, f.get(4)) else { return Err(bad(i + 2)) };
            s.entries.insert(unescape_path(name), state);
        }
        Ok(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_reads_back_and_catches_a_change_that_keeps_the_mtime() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, "one").unwrap();
        let m = std::fs::symlink_metadata(&f).unwrap();
        let mut s = Snapshot::default();
        s.insert(b"dir/odd name\n".to_vec(), FileState::of(&m));
        s.insert(b"f".to_vec(), FileState::of(&m));
        let p = d.path().join("state");
        s.save(&p).unwrap();
        let back = Snapshot::load(&p).unwrap();
        assert_eq!(back, s);
        assert!(back.unchanged(b"f", &m));
        // Same size, mtime put back: the ctime moved.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&f, "two").unwrap();
        let t = filetime_of(&m);
        nix::sys::stat::utimensat(None, &f, &t, &t, nix::sys::stat::UtimensatFlags::NoFollowSymlink).unwrap();
        let m2 = std::fs::symlink_metadata(&f).unwrap();
        assert_eq!((m2.mtime(), m2.mtime_nsec(), m2.len()), (m.mtime(), m.mtime_nsec(), m.len()));
        assert!(!back.unchanged(b"f", &m2));
        assert!(!back.unchanged(b"new", &m2));
        std::fs::write(&p, "rescue-incremental-snapshot 1\n1 2 3 x\n").unwrap();
        assert!(format!("{:#}", Snapshot::load(&p).unwrap_err()).contains("line 2"));
    }

    fn filetime_of(m: &Metadata) -> nix::sys::time::TimeSpec {
        nix::sys::time::TimeSpec::new(m.mtime(), m.mtime_nsec())
    }
}
