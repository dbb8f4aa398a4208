//! btrfs subvolumes nested in an archived tree. Each subvolume has its own
//! anonymous device number, so a one-file-system walk by `st_dev` would take
//! a nested subvolume (`btrfs subvolume create /srv/vm`, `/var/lib/machines`,
//! docker's) for another filesystem and leave its files out. A directory on
//! another device is entered when it is the root of a writable subvolume of
//! a btrfs that is not mounted on its own; read-only subvolumes (snapshots:
//! snapper's, `btrfs subvolume snapshot -r`) are left out, as the recovery
//! does not recreate snapshots.

use std::fs::{File, Metadata};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// The inode number of every btrfs subvolume's root directory (BTRFS_FIRST_FREE_OBJECTID).
const SUBVOLUME_ROOT_INO: u64 = 256;
/// `BTRFS_SUBVOL_RDONLY` in the flags `BTRFS_IOC_SUBVOL_GETFLAGS` returns.
const SUBVOL_RDONLY: u64 = 1 << 1;

// BTRFS_IOC_SUBVOL_GETFLAGS = _IOR(BTRFS_IOCTL_MAGIC 0x94, 25, __u64).
nix::ioctl_read!(subvol_getflags, 0x94, 25, u64);

/// What a directory on another device than its parent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crossing {
    /// A writable btrfs subvolume, not mounted on its own: part of the tree.
    Subvolume,
    /// A read-only btrfs subvolume, not mounted on its own: a snapshot, left out.
    Snapshot,
    /// A mount point (or anything else): another filesystem.
    Other,
}

/// Classify the directory `path` (its lstat `meta`), which is on another device than the tree's root.
pub fn crossing(path: &Path, meta: &Metadata) -> Crossing {
    if meta.ino() != SUBVOLUME_ROOT_INO || !is_btrfs(path) || crate::util::is_mount_root(path) {
        return Crossing::Other;
    }
    match read_only(path) {
        Some(true) => Crossing::Snapshot,
        Some(false) => Crossing::Subvolume,
        None => Crossing::Other,
    }
}

fn is_btrfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::BTRFS_SUPER_MAGIC)
}

/// The subvolume's read-only flag; `None` when it cannot be read.
fn read_only(path: &Path) -> Option<bool> {
    let dir = File::options().read(true).custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW).open(path).ok()?;
    let mut flags: u64 = 0;
    #[allow(unsafe_code)]
    // SAFETY: the ioctl writes one u64 into `flags`; the descriptor is open for the call.
    unsafe { subvol_getflags(dir.as_raw_fd(), &mut flags) }.ok()?;
    Some(flags & SUBVOL_RDONLY != 0)
}
