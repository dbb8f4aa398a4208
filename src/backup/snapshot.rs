//! Reading filesystems from read-only snapshots instead of live
//! (`backup.snapshot = "auto"`), so that files written during the backup
//! cannot change while they are read. For each backed-up mount:
//! - the root of a btrfs subvolume is snapshotted (`btrfs subvolume
//!   snapshot -r`) into a hidden directory of its own root;
//! - an ext2/3/4 or XFS on an LVM logical volume (found in the descriptor)
//!   is snapshotted with `lvcreate -s` and the snapshot mounted read-only in
//!   a private directory ([`lvm`]);
//! - anything else is read live, and [`Snapshots::live`] says why.
//!
//! The archive reads the snapshot and stores its files under the mount's
//! own path. Every snapshot (and its mount) is registered with
//! [`cleanup`](super::cleanup) before it is made, so it is removed when
//! [`Snapshots`] is dropped (after the archive is written, or on an error)
//! and on SIGINT or SIGTERM; one a SIGKILL left is removed by the next run.

pub mod lvm;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::cleanup::{self, Pending, Undo};
use crate::cmd::Cmd;
use crate::layout::Layout;

/// Whether backups read from snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotMode {
    /// Read every filesystem live (files that change are named, exit code 4).
    #[default]
    Off,
    /// Read btrfs subvolumes and filesystems on LVM logical volumes from a read-only snapshot.
    Auto,
}

/// The hidden directory, in the root of a snapshotted subvolume, that holds its snapshot.
pub const SNAPSHOT_DIR: &str = ".rescue-backup-snapshot";

/// One mount read from a snapshot.
#[derive(Debug)]
struct Taken {
    /// The directory to read instead of the mount.
    read_from: PathBuf,
    /// What it is, for the report.
    what: String,
}

/// The snapshots taken for one backup; removed on drop.
#[derive(Debug, Default)]
pub struct Snapshots {
    /// Mount point (as recorded) → its snapshot.
    taken: BTreeMap<String, Taken>,
    /// Mounts read live, and why (`auto` only).
    pub live: Vec<String>,
    /// The LVs snapshotted (to check after reading that none overflowed).
    origins: Vec<lvm::Origin>,
    /// Undone newest first on drop: unmount before lvremove.
    undo: Vec<Pending>,
    /// A lock on each snapshotted mount, held while its snapshot exists
    /// (dropped after `undo`): a second backup of it would take this run's
    /// snapshot for a stale one.
    _locks: Vec<std::fs::File>,
}

/// How one mount is read.
enum Plan {
    Btrfs,
    Lvm(lvm::Origin),
    Live(String),
}

impl Snapshots {
    /// With `mode = auto`: a read-only snapshot of each of `mounts` (found
    /// under `root`) that is a btrfs subvolume without writable nested ones,
    /// or an ext2/3/4 or XFS on an LVM logical volume of `layout`; LVM
    /// snapshots are `size` bytes each, else a share of their VG's free space.
    pub fn take(mode: SnapshotMode, size: Option<u64>, layout: &Layout, root: &Path, mounts: &[String]) -> Result<Snapshots> {
        let mut s = Snapshots::default();
        if mode == SnapshotMode::Off {
            return Ok(s);
        }
        let mut on_lvm: Vec<(String, lvm::Origin)> = Vec::new();
        for m in mounts {
            let dir = super::under_root(root, m);
            match plan(layout, m, &dir) {
                Plan::Btrfs => {
                    s._locks.push(lock(m, &dir)?);
                    s.take_btrfs(m, &dir)?
                }
                Plan::Lvm(o) => {
                    s._locks.push(lock(m, &dir)?);
                    on_lvm.push((m.clone(), o))
                }
                Plan::Live(why) => {
                    tracing::info!("{m} is read live: {why}");
                    s.live.push(format!("{m}: {why}"));
                }
            }
        }
        if on_lvm.is_empty() {
            return Ok(s);
        }
        let origins: Vec<lvm::Origin> = on_lvm.iter().map(|(_, o)| o.clone()).collect();
        // Stale snapshots first: they hold free extents the new ones need.
        lvm::remove_stale(&origins)?;
        let extents = lvm::plan(&origins, size)?;
        for ((m, o), n) in on_lvm.iter().zip(extents) {
            let (dir, undo) = lvm::take(o, n, m)?;
            s.undo.extend(undo);
            let what = format!("the LVM snapshot {}/{} of {}", o.vg, o.snapshot_name(), o.id());
            tracing::info!("{m} is read from {what}, mounted read-only at {}", dir.display());
            s.taken.insert(m.clone(), Taken { read_from: dir, what });
        }
        s.origins = origins;
        Ok(s)
    }

    fn take_btrfs(&mut self, m: &str, dir: &Path) -> Result<()> {
        let snap = dir.join(SNAPSHOT_DIR);
        if snap.exists() {
            // Left by a run that was killed with SIGKILL: it is ours and stale.
            Undo::DeleteSubvolume(snap.clone()).run().with_context(|| format!("removing the stale snapshot {} of an earlier backup", snap.display()))?;
        }
        let undo = cleanup::register(Undo::DeleteSubvolume(snap.clone()))?;
        if let Err(e) = Cmd::new("btrfs").args(["subvolume", "snapshot", "-r"]).arg(dir).arg(&snap).run() {
            undo.keep();
            return Err(e.context(format!("taking a read-only snapshot of {m}; set backup.snapshot = \"off\" to read it live")));
        }
        self.undo.push(undo);
        tracing::info!("{m} is read from the read-only snapshot {}", snap.display());
        self.taken.insert(m.to_string(), Taken { what: format!("the btrfs snapshot {}", snap.display()), read_from: snap });
        Ok(())
    }

    /// The directory to read `mount` from: its snapshot, when it has one.
    pub fn read_from(&self, mount: &str) -> Option<&Path> {
        self.taken.get(mount).map(|t| t.read_from.as_path())
    }

    /// The mounts read from a snapshot.
    pub fn mounts(&self) -> Vec<String> {
        self.taken.keys().cloned().collect()
    }

    /// One line per mount read from a snapshot: which snapshot.
    pub fn notes(&self) -> Vec<String> {
        self.taken.iter().map(|(m, t)| format!("{m}: read from {}", t.what)).collect()
    }

    /// After reading: the LVM snapshots that overflowed, as warnings (what
    /// was read from them after that is not one moment's state).
    pub fn problems(&self) -> Vec<String> {
        lvm::overflowed(&self.origins)
            .into_iter()
            .map(|id| {
                format!(
                    "the snapshot {id} ran out of space while it was read and became invalid: files read from it after that may be \
                     unreadable or inconsistent; set backup.snapshot-size larger (or free extents in its volume group)"
                )
            })
            .collect()
    }
}

impl Drop for Snapshots {
    fn drop(&mut self) {
        // Each undo warns with what to do by hand if it fails.
        while let Some(u) = self.undo.pop() {
            drop(u);
        }
    }
}

/// An exclusive lock (flock) on the mount `mount` at `dir`, held while a
/// backup has a snapshot of it.
fn lock(mount: &str, dir: &Path) -> Result<std::fs::File> {
    let f = std::fs::File::open(dir).with_context(|| format!("opening {} to lock it for its snapshot", dir.display()))?;
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(f),
        Err(rustix::io::Errno::WOULDBLOCK) => crate::bail_input!(
            "another backup is reading {mount} from a snapshot now (it holds a lock on {}); wait for it to finish, or set backup.snapshot = \"off\" to read live",
            dir.display()
        ),
        Err(e) => Err(e).with_context(|| format!("locking {} for its snapshot", dir.display())),
    }
}

/// How the filesystem mounted at `dir` (recorded as `mount`) is read.
fn plan(layout: &Layout, mount: &str, dir: &Path) -> Plan {
    let on_btrfs = nix::sys::statfs::statfs(dir).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::BTRFS_SUPER_MAGIC);
    // A btrfs on an LV is never snapshotted by LVM: two devices with one
    // btrfs UUID confuse the kernel's device scan.
    if on_btrfs {
        return btrfs_refusal(dir).map_or(Plan::Btrfs, Plan::Live);
    }
    match lvm::Origin::of_mount(layout, mount) {
        Ok(o) if o.is_mounted_at(dir) => Plan::Lvm(o),
        Ok(o) => Plan::Live(format!("the descriptor records it on the logical volume {}, which is not what is mounted at {} now", o.id(), dir.display())),
        Err(why) => Plan::Live(why),
    }
}

/// Why the btrfs mounted at `dir` cannot be read from a snapshot here.
fn btrfs_refusal(dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata(dir).map(|m| m.ino()).ok() != Some(256) {
        return Some("a directory inside a btrfs subvolume, not its root".into());
    }
    // `-o`: subvolumes below this one; `-r`: only the read-only ones.
    let below = |extra: &[&str]| -> Option<usize> {
        Cmd::new("btrfs").args(["subvolume", "list", "-o"]).args(extra).arg(dir).read().ok().map(|t| t.lines().filter(|l| !l.ends_with(SNAPSHOT_DIR)).count())
    };
    match (below(&[]), below(&["-r"])) {
        (Some(all), Some(ro)) if all > ro => Some(format!("{} writable subvolume(s) are nested below it, which its snapshot would not hold", all - ro)),
        (Some(_), Some(_)) => None,
        _ => Some("`btrfs subvolume list` could not read its subvolumes".into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_are_off_unless_asked_for() {
        let c = crate::config::Config::from_toml("[backup]\nsnapshot = \"auto\"\nsnapshot-size = \"2G\"\n").unwrap();
        assert_eq!(c.backup.snapshot, SnapshotMode::Auto);
        assert_eq!(c.backup.snapshot_size, Some(2 << 30));
        assert_eq!(crate::config::Config::default().backup.snapshot, SnapshotMode::Off);
        assert!(crate::config::Config::from_toml("[backup]\nsnapshot = \"lvm\"\n").is_err());
        assert!(crate::config::Config::from_toml("[backup]\nsnapshot-size = \"big\"\n").is_err());
        let d = tempfile::tempdir().unwrap();
        let l = Layout::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts/uefi-lvm-xfs.toml")).unwrap();
        let s = Snapshots::take(SnapshotMode::Off, None, &l, d.path(), &["/".into()]).unwrap();
        assert!(s.mounts().is_empty() && s.live.is_empty());
    }

    #[test]
    fn one_backup_at_a_time_snapshots_a_mount() {
        let d = tempfile::tempdir().unwrap();
        let held = lock("/srv", d.path()).unwrap();
        let e = lock("/srv", d.path()).unwrap_err();
        assert!(format!("{e:#}").contains("another backup is reading /srv from a snapshot now"), "{e:#}");
        assert_eq!(crate::error::exit_code_for(&e), crate::error::EXIT_INPUT);
        drop(held);
        lock("/srv", d.path()).unwrap();
    }

    #[test]
    fn a_filesystem_on_no_lv_is_read_live_and_says_why() {
        let l = Layout::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts/uefi-lvm-xfs.toml")).unwrap();
        let d = tempfile::tempdir().unwrap();
        // Recorded on vg0/root, but that is not what is mounted at the directory.
        let Plan::Live(why) = plan(&l, "/", d.path()) else { panic!("read live") };
        assert!(why.contains("vg0/root, which is not what is mounted"), "{why}");
        let Plan::Live(why) = plan(&l, "/boot", d.path()) else { panic!("read live") };
        assert!(why.contains("LVM logical volume"), "{why}");
    }
}
