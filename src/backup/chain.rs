//! Incremental chains of rescue's archives at a destination: a full archive,
//! then incrementals, each against the state the previous one left (GNU
//! tar's incremental format: dumpdirs, unchanged files left out; see
//! `archive::incremental`).
//!
//! - Beside every archive of a chain, its record `NAME.chain` names its
//!   level, its chain (the full archive that starts it) and its parent (the
//!   archive before it). It is written before the archive is put in place,
//!   so an archive never lacks it; an archive without one (made before
//!   chains existed) is a full backup on its own.
//! - The state the next incremental compares against is kept on the backed
//!   up system, per destination and host ([`State`]), and written only after
//!   the archive is complete.
//! - A restore takes the chain up to the archive chosen (the newest by
//!   default), oldest first; a link that is missing is an error naming it.
//! - Retention counts chains and deletes only whole chains.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::archive::create::Chain;
use crate::archive::snapshot::Snapshot;

/// The suffix of an archive's chain record.
pub const LINK_SUFFIX: &str = ".chain";

/// `mkbackup --level`: which kind of archive to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Level {
    /// A full archive, starting a new chain.
    Full,
    /// Only what changed since the previous archive of the chain (a full one when there is none).
    Incremental,
}

/// Where an archive stands in its chain: the record `NAME.chain` beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Link {
    /// 0 for the full archive, then 1, 2... for each incremental.
    pub level: u32,
    /// The full archive that starts the chain (its own name for a full one).
    pub chain: String,
    /// The archive this one is an increment of (none for a full one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

impl Link {
    fn full(name: &str) -> Link {
        Link { level: 0, chain: name.to_string(), parent: None }
    }
}

/// The record of the archive `archive`; a full chain of its own when it has none.
pub fn read_link(archive: &Path) -> Result<Link> {
    let name = file_name(archive);
    let path = link_path(archive);
    let link: Link = match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("reading the chain record {} of the backup {name}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Link::full(&name)),
        Err(e) => return Err(e).with_context(|| format!("reading the chain record {} of the backup {name}", path.display())),
    };
    // A record comes from the backup medium: the names in it are archives
    // beside it, never a path elsewhere, and they must fit its level.
    let names_ok = is_bare_name(&link.chain) && link.parent.as_deref().is_none_or(is_bare_name);
    match (link.level, &link.parent) {
        (0, None) if names_ok && link.chain == name => Ok(link),
        (0, _) => {
            // A full archive needs nothing from its record.
            tracing::warn!("the chain record {} does not fit its full backup {name} (damaged?); the archive is read as a full backup", path.display());
            Ok(Link::full(&name))
        }
        (_, Some(_)) if names_ok => Ok(link),
        _ => crate::bail_input!(
            "the chain record {} of the backup {name} is damaged (level {}, chain {:?}, parent {:?}: an incremental names its parent and \
             chain by their file names beside it); the chain cannot be known, nothing was written. Restore another backup with --archive NAME",
            path.display(),
            link.level,
            link.chain,
            link.parent
        ),
    }
}

/// A file name in the backup directory: no directory part, not `.` or `..`.
fn is_bare_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && name != "." && name != ".."
}

/// Write the record of `archive` (before the archive is put in place). It
/// is created exclusively (`O_EXCL`): a name another backup took already is
/// an error, never an overwrite of that backup.
pub fn write_link(archive: &Path, link: &Link) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = link_path(archive);
    let text = toml::to_string(link).context("encoding a chain record")?;
    let mut file = match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => crate::bail_input!(
            "the backup name {} is taken already in {} (its chain record {} exists: another backup started at the same instant); \
             nothing was written. Run the backup again",
            file_name(archive),
            archive.parent().unwrap_or(Path::new(".")).display(),
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("creating the chain record {}", path.display())),
    };
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).with_context(|| format!("writing the chain record {}", path.display()))
}

/// `NAME.chain` beside `NAME`.
pub fn link_path(archive: &Path) -> PathBuf {
    let mut p = archive.as_os_str().to_os_string();
    p.push(LINK_SUFFIX);
    PathBuf::from(p)
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The chain ending with `last` (an archive in `dir`), oldest first. A
/// missing link is an error naming it and the chain it breaks.
pub fn chain_to(dir: &Path, last: &Path) -> Result<Vec<PathBuf>> {
    let mut chain = vec![last.to_path_buf()];
    let mut link = read_link(last)?;
    let last_level = link.level;
    while let Some(parent) = link.parent.clone() {
        let p = dir.join(&parent);
        if !p.is_file() {
            crate::bail_input!(
                "the backup {} is an incremental (level {}) of the chain started by {}, but its link {parent} (level {}) is missing in {}: \
                 the chain cannot be restored; nothing was written. Restore another chain with --archive NAME (a full backup, or an \
                 incremental of a complete chain)",
                file_name(last),
                last_level,
                link.chain,
                link.level.saturating_sub(1),
                dir.display()
            );
        }
        let next = read_link(&p)?;
        if next.chain != link.chain || next.level + 1 != link.level {
            crate::bail_input!(
                "the backup {} names {parent} as its parent, but that one's record (level {}, chain {}) does not fit (level {}, chain {}); \
                 nothing was written. Restore another chain with --archive NAME",
                file_name(chain.last().map(PathBuf::as_path).unwrap_or(last)),
                next.level,
                next.chain,
                link.level.saturating_sub(1),
                link.chain
            );
        }
        chain.push(p);
        link = next;
    }
    chain.reverse();
    Ok(chain)
}

/// The archives `backups` (newest first) grouped into chains, newest chain first.
pub fn chains(backups: &[PathBuf]) -> Result<Vec<Vec<PathBuf>>> {
    let mut out: Vec<(String, Vec<PathBuf>)> = Vec::new();
    for b in backups {
        let key = read_link(b)?.chain;
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(b.clone()),
            None => out.push((key, vec![b.clone()])),
        }
    }
    Ok(out.into_iter().map(|(_, v)| v).collect())
}

/// The chain state of one host at one destination, on the backed up system:
/// `DIR/last.toml` (the newest archive of the chain and its record) and
/// `DIR/snapshot` (see `archive::snapshot`).
pub struct State {
    dir: PathBuf,
}

/// `last.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Last {
    archive: String,
    link: Link,
}

/// What the next archive is.
pub struct Planned {
    pub link: Link,
    pub chain: Chain,
}

impl State {
    /// The state of `host`'s backups to `url`, under `state_dir` (`STATE_DIR/incremental/URL/HOST`).
    pub fn new(state_dir: &Path, url: &str, host: &str) -> State {
        let key: String = url.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
        State { dir: state_dir.join("incremental").join(key).join(host) }
    }

    /// The next archive, named `name`, in `dest` (the host's directory):
    /// a full one when asked, when the chain is `full_every` long, or when
    /// there is no chain to continue (no state, its newest archive gone).
    pub fn plan(&self, level: Option<Level>, full_every: u32, dest: &Path, name: &str) -> Result<Planned> {
        let full = || Planned { link: Link::full(name), chain: Chain { previous: None } };
        if level == Some(Level::Full) {
            return Ok(full());
        }
        let last = match self.last() {
            Ok(Some(l)) => l,
            Ok(None) => {
                if level == Some(Level::Incremental) {
                    tracing::warn!("no previous backup of this chain is known ({}): making a full backup", self.dir.display());
                }
                return Ok(full());
            }
            Err(e) => {
                tracing::warn!("{e:#}; making a full backup");
                return Ok(full());
            }
        };
        if level.is_none() && last.link.level + 1 >= full_every.max(1) {
            return Ok(full());
        }
        if !dest.join(&last.archive).is_file() {
            tracing::warn!("the previous backup {} is no longer in {}: making a full backup to start a new chain", last.archive, dest.display());
            return Ok(full());
        }
        let previous = match Snapshot::load(&self.dir.join("snapshot")) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("{e:#}; making a full backup");
                return Ok(full());
            }
        };
        Ok(Planned {
            link: Link { level: last.link.level + 1, chain: last.link.chain, parent: Some(last.archive) },
            chain: Chain { previous: Some(Arc::new(previous)) },
        })
    }

    fn last(&self) -> Result<Option<Last>> {
        let path = self.dir.join("last.toml");
        match std::fs::read_to_string(&path) {
            Ok(t) => toml::from_str(&t).map(Some).with_context(|| format!("the incremental state {} is damaged", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading the incremental state {}", path.display())),
        }
    }

    /// Note the complete archive `archive` and the state after it.
    pub fn save(&self, archive: &str, link: &Link, snapshot: &Snapshot) -> Result<()> {
        snapshot.save(&self.dir.join("snapshot"))?;
        let text = toml::to_string(&Last { archive: archive.to_string(), link: link.clone() }).context("encoding the incremental state")?;
        let path = self.dir.join("last.toml");
        crate::util::write_atomic(&path, text.as_bytes(), 0o600).with_context(|| format!("writing the incremental state {}", path.display()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn put(dir: &Path, name: &str, link: Option<Link>) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, "x").unwrap();
        if let Some(l) = link {
            write_link(&p, &l).unwrap();
        }
        p
    }

    #[test]
    fn a_name_taken_already_is_refused_not_overwritten() {
        let t = tempfile::tempdir().unwrap();
        let archive = t.path().join("backup-20261202-093000-000000.tar.zst");
        let first = Link::full("backup-20261202-093000-000000.tar.zst");
        write_link(&archive, &first).unwrap();
        let e = write_link(&archive, &incr(1, "x", "y").unwrap()).unwrap_err();
        assert!(format!("{e:#}").contains("is taken already") && format!("{e:#}").contains("nothing was written"), "{e:#}");
        assert_eq!(crate::error::exit_code_for(&e), 2);
        assert_eq!(read_link(&archive).unwrap(), first, "the first record stays");
    }

    fn incr(level: u32, chain: &str, parent: &str) -> Option<Link> {
        Some(Link { level, chain: chain.into(), parent: Some(parent.into()) })
    }

    #[test]
    fn a_chain_is_found_from_its_last_link_and_a_missing_link_is_named() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let a = "backup-1.tar.zst";
        let old = put(dir, "backup-0.tar.zst", None);
        put(dir, a, Some(Link::full(a)));
        put(dir, "backup-2.tar.zst", incr(1, a, a));
        let c = put(dir, "backup-3.tar.zst", incr(2, a, "backup-2.tar.zst"));
        let names = |v: Vec<PathBuf>| v.iter().map(|p| file_name(p)).collect::<Vec<_>>();
        assert_eq!(names(chain_to(dir, &c).unwrap()), [a, "backup-2.tar.zst", "backup-3.tar.zst"]);
        assert_eq!(names(chain_to(dir, &old).unwrap()), ["backup-0.tar.zst"], "an archive without a record is a full one");
        let all = crate::backup::list_backups(dir).unwrap();
        let groups: Vec<Vec<String>> = chains(&all).unwrap().into_iter().map(names).collect();
        assert_eq!(groups, vec![vec!["backup-3.tar.zst", "backup-2.tar.zst", a], vec!["backup-0.tar.zst"]]);
        std::fs::remove_file(dir.join("backup-2.tar.zst")).unwrap();
        let e = chain_to(dir, &c).unwrap_err();
        assert_eq!(crate::error::exit_code_for(&e), 2);
        let m = format!("{e:#}");
        assert!(m.contains("its link backup-2.tar.zst (level 1) is missing") && m.contains("--archive NAME"), "{m}");
    }

    #[test]
    fn records_from_the_medium_name_only_archives_beside_them() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("host");
        std::fs::create_dir_all(&dir).unwrap();
        let a = "backup-1.tar.zst";
        put(&dir, a, Some(Link::full(a)));
        // Outside the directory: refused, never read as a link of the chain.
        std::fs::write(d.path().join("elsewhere.tar.zst"), "x").unwrap();
        for parent in ["../elsewhere.tar.zst", "/etc/passwd", "..", ""] {
            let name = "backup-2.tar.zst";
            let _ = std::fs::remove_file(dir.join("backup-2.tar.zst.chain"));
            let p = put(&dir, name, incr(1, a, parent));
            let e = chain_to(&dir, &p).unwrap_err();
            assert!(format!("{e:#}").contains("is damaged"), "{parent}: {e:#}");
            assert_eq!(crate::error::exit_code_for(&e), 2, "{parent}");
        }
        // An incremental without a parent cannot be placed.
        let _ = std::fs::remove_file(dir.join("backup-2.tar.zst.chain"));
        let p = put(&dir, "backup-2.tar.zst", Some(Link { level: 1, chain: a.into(), parent: None }));
        assert!(format!("{:#}", read_link(&p).unwrap_err()).contains("is damaged"));
        // A full archive whose record was damaged is still a full archive of its own.
        let f = put(&dir, "backup-3.tar.zst", Some(Link { level: 0, chain: "backup-3CORRUPTar.zst".into(), parent: None }));
        assert_eq!(read_link(&f).unwrap(), Link::full("backup-3.tar.zst"));
    }

    #[test]
    fn the_next_archive_continues_the_chain_until_full_every() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("dest");
        std::fs::create_dir_all(&dest).unwrap();
        let st = State::new(&d.path().join("state"), "nfs://nas/b", "web1");
        assert!(st.dir.ends_with("incremental/nfs___nas_b/web1"));
        // Nothing known: full, even when an incremental is asked for.
        let p = st.plan(Some(Level::Incremental), 1, &dest, "backup-1").unwrap();
        assert_eq!((p.link.level, p.chain.previous.is_none()), (0, true));
        put(&dest, "backup-1", None);
        st.save("backup-1", &p.link, &Snapshot::default()).unwrap();
        // full-every = 1 (the default): every backup full; --level incremental overrides.
        assert_eq!(st.plan(None, 1, &dest, "backup-2").unwrap().link.level, 0);
        let p = st.plan(Some(Level::Incremental), 1, &dest, "backup-2").unwrap();
        assert_eq!(p.link, Link { level: 1, chain: "backup-1".into(), parent: Some("backup-1".into()) });
        assert!(p.chain.previous.is_some());
        // full-every = 3: full, 1, 2, full.
        let p = st.plan(None, 3, &dest, "backup-2").unwrap();
        assert_eq!(p.link.level, 1);
        put(&dest, "backup-2", None);
        st.save("backup-2", &p.link, &Snapshot::default()).unwrap();
        assert_eq!(st.plan(None, 3, &dest, "backup-3").unwrap().link.level, 2);
        st.save("backup-3", &Link { level: 2, chain: "backup-1".into(), parent: Some("backup-2".into()) }, &Snapshot::default()).unwrap();
        put(&dest, "backup-3", None);
        assert_eq!(st.plan(None, 3, &dest, "backup-4").unwrap().link.level, 0);
        assert_eq!(st.plan(Some(Level::Full), 30, &dest, "backup-4").unwrap().link.level, 0);
        // The previous archive gone: a new chain.
        std::fs::remove_file(dest.join("backup-3")).unwrap();
        assert_eq!(st.plan(Some(Level::Incremental), 30, &dest, "backup-4").unwrap().link.level, 0);
    }
}
