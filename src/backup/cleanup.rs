//! What a backup leaves behind if it stops half-way, undone also when it is
//! stopped by SIGINT or SIGTERM: snapshots (btrfs subvolumes, LVM snapshot
//! volumes and their read-only mounts) and the hidden `.NAME.partial-*` file
//! an archive is written to before it is renamed into place.
//!
//! Each such thing is registered as an [`Undo`] before it is made, and the
//! returned [`Pending`] undoes it when dropped (after the backup, or on an
//! error). On a signal, every registered undo runs, newest first, and the
//! process exits as the signal's default action would have. One registry for
//! all of them: a new kind of leftover is one more [`Undo`] variant.
//!
//! The undos after a signal cannot run beside the threads still reading the
//! snapshot: their open files keep its mount busy, so neither `umount` nor
//! `lvremove` would succeed. So the process re-executes itself
//! (`/proc/self/exe`, which ends every other thread and closes every file)
//! with the list in [`AFTER_SIGNAL_ENV`], and [`finish_after_signal`], first
//! thing in `main`, runs it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::cmd::Cmd;

/// One thing to undo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Undo {
    /// A btrfs snapshot (`btrfs subvolume delete`).
    DeleteSubvolume(PathBuf),
    /// A mount made by the backup, and its (empty) mount point directory.
    Umount(PathBuf),
    /// An LVM logical volume made by the backup (`VG/LV`; `lvremove`).
    RemoveLv(String),
    /// A file that only exists while the backup runs.
    RemoveFile(PathBuf),
}

impl Undo {
    pub fn run(&self) -> Result<()> {
        match self {
            Undo::DeleteSubvolume(p) => Cmd::new("btrfs").args(["subvolume", "delete"]).arg(p).run(),
            Undo::Umount(p) => {
                if crate::util::is_mount_root(p) && p.exists() {
                    Cmd::new("umount").arg(p).run()?;
                }
                match std::fs::remove_dir(p) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).with_context(|| format!("removing the mount point {}", p.display())),
                    _ => Ok(()),
                }
            }
            Undo::RemoveLv(lv) => crate::apply::lvm::lvm_cmd().args(["lvremove", "-y", lv.as_str()]).run(),
            Undo::RemoveFile(p) => match std::fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).with_context(|| format!("removing {}", p.display())),
                _ => Ok(()),
            },
        }
    }

    /// What to tell the user to run when the undo failed.
    fn by_hand(&self) -> String {
        match self {
            Undo::DeleteSubvolume(p) => format!("btrfs subvolume delete {}", p.display()),
            Undo::Umount(p) => format!("umount {}", p.display()),
            Undo::RemoveLv(lv) => format!("lvremove {lv}"),
            Undo::RemoveFile(p) => format!("rm {}", p.display()),
        }
    }
}

/// Registered undos, oldest first. Held locked while an undo runs, so the
/// signal handler's thread never races a drop.
static PENDING: Mutex<Vec<(u64, Undo)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);
/// The write end of the pipe the signal handler wakes the cleanup thread through.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
static HANDLER: Once = Once::new();

fn pending() -> MutexGuard<'static, Vec<(u64, Undo)>> {
    // A panic while holding the lock leaves the list as it was: still usable.
    PENDING.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An undo that runs when dropped, or on SIGINT/SIGTERM.
#[derive(Debug)]
#[must_use = "dropping it undoes at once"]
pub struct Pending {
    id: u64,
    undo: Option<Undo>,
}

/// Register `undo` (before making what it undoes: a signal in between must
/// not leave it behind).
pub fn register(undo: Undo) -> Result<Pending> {
    install_signal_cleanup()?;
    let id = NEXT_ID.fetch_add(1, Ordering::SeqCst);
    pending().push((id, undo.clone()));
    Ok(Pending { id, undo: Some(undo) })
}

impl Pending {
    /// Undo now; the error says what failed.
    pub fn run(mut self) -> Result<()> {
        self.undo_now()
    }

    /// Keep what it would undo (the thing succeeded and stays, e.g. the
    /// partial file renamed into place).
    pub fn keep(mut self) {
        pending().retain(|(id, _)| *id != self.id);
        self.undo = None;
    }

    fn undo_now(&mut self) -> Result<()> {
        let Some(undo) = self.undo.take() else { return Ok(()) };
        let mut list = pending();
        let r = undo.run();
        list.retain(|(id, _)| *id != self.id);
        r
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let what = self.undo.as_ref().map(Undo::by_hand);
        if let (Err(e), Some(what)) = (self.undo_now(), what) {
            tracing::warn!("cleanup after the backup failed: {e:#}; do it by hand: {what}");
        }
    }
}

/// On SIGINT or SIGTERM: run the pending undos, newest first, then exit with
/// 128 + the signal's number, as the default action would have. The handler
/// only writes the signal number to a pipe; a thread does the work.
fn install_signal_cleanup() -> Result<()> {
    let mut result = Ok(());
    HANDLER.call_once(|| result = install());
    result
}

fn install() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let (read, write) = nix::unistd::pipe().context("creating the pipe of the backup cleanup on signals")?;
    WAKE_FD.store(std::os::fd::IntoRawFd::into_raw_fd(write), Ordering::SeqCst);
    std::thread::spawn(move || {
        let mut f = std::fs::File::from(read);
        let mut sig = [0u8; 1];
        if std::io::Read::read_exact(&mut f, &mut sig).is_ok() {
            // Keep the lock to the end: no drop starts an undo after this.
            let list = pending();
            let after = AfterSignal { signal: i32::from(sig[0]), undo: list.iter().rev().map(|(_, u)| u.clone()).collect() };
            if !after.undo.is_empty() {
                if let Ok(json) = serde_json::to_string(&after) {
                    let e = Cmd::new(SELF).env(AFTER_SIGNAL_ENV, json).exec();
                    tracing::warn!("cleanup on signal {}: {e:#}; undoing beside the running threads", sig[0]);
                }
            }
            std::process::exit(after.run());
        }
    });
    let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESTART, SigSet::empty());
    for s in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only calls write(2), which is async-signal-safe.
        #[allow(unsafe_code)]
        unsafe { sigaction(s, &action) }.with_context(|| format!("installing the {s} handler that cleans up after the backup"))?;
    }
    Ok(())
}

/// This very binary (no package provides it), even if replaced on disk meanwhile.
const SELF: &str = "/proc/self/exe";

/// The environment variable that carries the undos into the re-executed process.
pub const AFTER_SIGNAL_ENV: &str = "RESCUE_CLEANUP_AFTER_SIGNAL";

/// What is left to do after a signal: the undos, newest first.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct AfterSignal {
    signal: i32,
    undo: Vec<Undo>,
}

impl AfterSignal {
    /// Run every undo; the exit code of the signal.
    fn run(&self) -> i32 {
        for undo in &self.undo {
            if let Err(e) = undo.run() {
                eprintln!("rescue: the cleanup after signal {} failed: {e:#}; do it by hand: {}", self.signal, undo.by_hand());
            }
        }
        128 + self.signal
    }
}

/// In the process re-executed after a signal (with [`AFTER_SIGNAL_ENV`]):
/// run the undos it carries and return the exit code; `None` otherwise.
pub fn finish_after_signal() -> Option<i32> {
    let json = std::env::var_os(AFTER_SIGNAL_ENV)?;
    match serde_json::from_slice::<AfterSignal>(json.as_encoded_bytes()) {
        Ok(after) => Some(after.run()),
        Err(e) => {
            eprintln!("rescue: {AFTER_SIGNAL_ENV} is set but is not a cleanup list ({e}); unset it");
            Some(crate::error::EXIT_INPUT)
        }
    }
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
    fn a_pending_undo_runs_on_drop_and_not_after_keep() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::write(&a, b"x").unwrap();
        std::fs::write(&b, b"x").unwrap();
        let pa = register(Undo::RemoveFile(a.clone())).unwrap();
        let pb = register(Undo::RemoveFile(b.clone())).unwrap();
        assert!(pending().iter().any(|(_, u)| *u == Undo::RemoveFile(a.clone())));
        drop(pa);
        pb.keep();
        assert!(!a.exists(), "dropped: undone");
        assert!(b.exists(), "kept: left alone");
        assert!(!pending().iter().any(|(_, u)| matches!(u, Undo::RemoveFile(p) if p.starts_with(d.path()))), "both left the registry");
        // Undoing what is already gone is no error.
        register(Undo::RemoveFile(a)).unwrap().run().unwrap();
    }

    #[test]
    fn after_a_signal_the_undos_travel_to_the_re_executed_process() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("partial");
        std::fs::write(&f, b"x").unwrap();
        let after = AfterSignal { signal: 15, undo: vec![Undo::RemoveFile(f.clone()), Undo::RemoveLv("vg/root-rescue-snap".into())] };
        let json = serde_json::to_string(&after).unwrap();
        let back: AfterSignal = serde_json::from_str(&json).unwrap();
        assert_eq!(back.undo, after.undo, "{json}");
        assert_eq!(AfterSignal { signal: 15, undo: vec![Undo::RemoveFile(f.clone())] }.run(), 143);
        assert!(!f.exists());
    }
}
