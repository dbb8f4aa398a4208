//! Kernel state we create (mounts, LUKS mappings, active VGs, MD arrays) is
//! recorded in a [`Teardown`] stack. If recovery fails, dropping the stack
//! undoes it in reverse order, so the disks are free for another attempt.
//! When it succeeds the caller [`keep`](Teardown::keep)s it: the tree stays
//! mounted for the next phase and `rescue recover --umount` tears it down.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::cmd::Cmd;
use crate::target::TargetRoot;

#[derive(Debug, Clone, PartialEq)]
pub enum Undo {
    /// A mount of the recreated tree, recorded under its target root.
    Umount(TargetRoot, PathBuf),
    CloseLuks(String),
    DeactivateVg(String),
    StopRaid(PathBuf),
}

impl Undo {
    pub fn run(&self) -> Result<()> {
        match self {
            Undo::Umount(root, p) => {
                Cmd::new("umount").arg(p).run()?;
                root.forget_mount(p)
            }
            Undo::CloseLuks(n) => Cmd::new("cryptsetup").args(["close", n]).run(),
            Undo::DeactivateVg(n) => crate::apply::lvm::lvm_cmd().args(["vgchange", "-an", n]).run(),
            Undo::StopRaid(p) => Cmd::new("mdadm").arg("--stop").arg(p).run(),
        }
    }
}

/// Things to undo, last first.
#[derive(Debug, Default)]
pub struct Teardown {
    stack: Vec<Undo>,
    armed: bool,
}

impl Teardown {
    pub fn new() -> Self {
        Teardown { stack: Vec::new(), armed: true }
    }

    pub fn push(&mut self, u: Undo) {
        self.stack.push(u);
    }

    /// Keep everything as it is (success): nothing is undone on drop.
    pub fn keep(mut self) {
        self.armed = false;
    }

    /// Undo everything now; every step is tried, the first error is returned.
    pub fn undo_all(&mut self) -> Result<()> {
        let mut first = None;
        while let Some(u) = self.stack.pop() {
            if let Err(e) = u.run() {
                tracing::warn!("cleanup: {e:#}");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Teardown {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.undo_all();
        }
    }
}

/// A filesystem mounted at a temporary directory for a moment (to create
/// btrfs subvolumes), unmounted and removed on drop.
pub struct TempMount {
    dir: Option<tempfile::TempDir>,
}

impl TempMount {
    pub fn new(device: &Path, fstype: &str, options: &str) -> Result<TempMount> {
        let dir = tempfile::Builder::new().prefix("rescue-mnt.").tempdir()?;
        Cmd::new("mount").args(["-t", fstype, "-o", options]).arg(device).arg(dir.path()).run()?;
        Ok(TempMount { dir: Some(dir) })
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().map(|d| d.path()).unwrap_or(Path::new("/nonexistent"))
    }
}

impl Drop for TempMount {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            if let Err(e) = Cmd::new("umount").arg(d.path()).run() {
                tracing::warn!("cleanup: {e:#}");
                // Leave the directory rather than remove a mounted tree.
                let _ = d.keep();
            }
        }
    }
}
