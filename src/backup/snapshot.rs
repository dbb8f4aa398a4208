//! Reading a filesystem from a read-only snapshot instead of live
//! (`backup.snapshot = "auto"`), so that files written during the backup
//! cannot change while they are read. A btrfs subvolume mounted on a backed
//! up mount point is snapshotted (`btrfs subvolume snapshot -r`) into a
//! hidden directory of its own root; the archive reads the snapshot and
//! stores its files under the mount's own path. The snapshots are removed
//! when [`Snapshots`] is dropped (after the archive is written, or on an
//! error), and by a signal handler on SIGINT or SIGTERM.
//!
//! Filesystems that are not btrfs subvolumes, and btrfs mounts with writable
//! subvolumes nested below them (a snapshot would hold them as empty
//! directories), are read live; [`Snapshots::live`] says why.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, Once};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::cmd::Cmd;

/// Whether backups read from snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotMode {
    /// Read every filesystem live (files that change are named, exit code 4).
    #[default]
    Off,
    /// Read btrfs subvolumes from a read-only snapshot.
    Auto,
}

/// The hidden directory, in the root of a snapshotted subvolume, that holds its snapshot.
pub const SNAPSHOT_DIR: &str = ".rescue-backup-snapshot";

/// Snapshots every process still has to remove when a signal stops it.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
/// The write end of the pipe the signal handler wakes the cleanup thread through.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
static HANDLER: Once = Once::new();

/// The snapshots taken for one backup; removed on drop.
#[derive(Debug, Default)]
pub struct Snapshots {
    /// Mount point (as recorded) → the snapshot directory to read instead.
    taken: BTreeMap<String, PathBuf>,
    /// Mounts read live, and why (`auto` only).
    pub live: Vec<String>,
}

impl Snapshots {
    /// With `mode = auto`: a read-only snapshot of each of `mounts` (found
    /// under `root`) that is a btrfs subvolume without writable nested ones.
    pub fn take(mode: SnapshotMode, root: &Path, mounts: &[String]) -> Result<Snapshots> {
        let mut s = Snapshots::default();
        if mode == SnapshotMode::Off {
            return Ok(s);
        }
        install_signal_cleanup()?;
        for m in mounts {
            let dir = super::under_root(root, m);
            if let Some(why) = not_snapshottable(&dir) {
                tracing::info!("{m} is read live: {why}");
                s.live.push(format!("{m}: {why}"));
                continue;
            }
            let snap = dir.join(SNAPSHOT_DIR);
            if snap.exists() {
                // Left by a run that was killed with SIGKILL: it is ours and stale.
                delete(&snap).with_context(|| format!("removing the stale snapshot {} of an earlier backup", snap.display()))?;
            }
            register(&snap);
            Cmd::new("btrfs").args(["subvolume", "snapshot", "-r"]).arg(&dir).arg(&snap).run().map_err(|e| {
                unregister(&snap);
                e.context(format!("taking a read-only snapshot of {m}; set backup.snapshot = \"off\" to read it live"))
            })?;
            tracing::info!("{m} is read from the read-only snapshot {}", snap.display());
            s.taken.insert(m.clone(), snap);
        }
        Ok(s)
    }

    /// The directory to read `mount` from: its snapshot, when it has one.
    pub fn read_from(&self, mount: &str) -> Option<&Path> {
        self.taken.get(mount).map(PathBuf::as_path)
    }

    /// The mounts read from a snapshot.
    pub fn mounts(&self) -> Vec<String> {
        self.taken.keys().cloned().collect()
    }
}

impl Drop for Snapshots {
    fn drop(&mut self) {
        for (m, snap) in &self.taken {
            match delete(snap) {
                Ok(()) => tracing::debug!("removed the snapshot of {m}"),
                Err(e) => tracing::warn!("could not remove the snapshot {} of {m}: {e:#}; remove it with `btrfs subvolume delete`", snap.display()),
            }
            unregister(snap);
        }
    }
}

/// Why the filesystem mounted at `dir` cannot be read from a snapshot here.
fn not_snapshottable(dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let on_btrfs = nix::sys::statfs::statfs(dir).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::BTRFS_SUPER_MAGIC);
    if !on_btrfs {
        return Some("not a btrfs subvolume (snapshots are taken of btrfs subvolumes only)".into());
    }
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

fn delete(snap: &Path) -> Result<()> {
    Cmd::new("btrfs").args(["subvolume", "delete"]).arg(snap).run()
}

fn register(snap: &Path) {
    if let Ok(mut p) = PENDING.lock() {
        p.push(snap.to_path_buf());
    }
}

fn unregister(snap: &Path) {
    if let Ok(mut p) = PENDING.lock() {
        p.retain(|s| s != snap);
    }
}

/// On SIGINT or SIGTERM: remove the pending snapshots, then exit with 128 + the
/// signal's number, as the default action would have. The handler only
/// writes the signal number to a pipe; a thread does the work.
fn install_signal_cleanup() -> Result<()> {
    let mut result = Ok(());
    HANDLER.call_once(|| result = install());
    result
}

fn install() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let (read, write) = nix::unistd::pipe().context("creating the pipe of the snapshot cleanup on signals")?;
    WAKE_FD.store(std::os::fd::IntoRawFd::into_raw_fd(write), Ordering::SeqCst);
    std::thread::spawn(move || {
        let mut f = std::fs::File::from(read);
        let mut sig = [0u8; 1];
        if std::io::Read::read_exact(&mut f, &mut sig).is_ok() {
            let pending: Vec<PathBuf> = PENDING.lock().map(|p| p.clone()).unwrap_or_default();
            for snap in pending {
                let _ = delete(&snap);
            }
            std::process::exit(128 + i32::from(sig[0]));
        }
    });
    let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESTART, SigSet::empty());
    for s in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only calls write(2), which is async-signal-safe.
        #[allow(unsafe_code)]
        unsafe { sigaction(s, &action) }.with_context(|| format!("installing the {s} handler that removes snapshots"))?;
    }
    Ok(())
}

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = WAKE_FD.load(Ordering::SeqCst);
    let b = [sig as u8];
    // SAFETY: write(2) of one byte from a local buffer is async-signal-safe.
    #[allow(unsafe_code)]
    unsafe {
        libc::write(fd, b.as_ptr().cast(), 1);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_are_off_unless_asked_for() {
        let c = crate::config::Config::from_toml("[backup]\nsnapshot = \"auto\"\n").unwrap();
        assert_eq!(c.backup.snapshot, SnapshotMode::Auto);
        assert_eq!(crate::config::Config::default().backup.snapshot, SnapshotMode::Off);
        assert!(crate::config::Config::from_toml("[backup]\nsnapshot = \"lvm\"\n").is_err());
        let d = tempfile::tempdir().unwrap();
        let s = Snapshots::take(SnapshotMode::Off, d.path(), &["/".into()]).unwrap();
        assert!(s.mounts().is_empty() && s.live.is_empty());
    }
}
