//! How large a new filesystem must be to hold its recorded data. A fresh
//! filesystem keeps part of its device for itself (ext journal and inode
//! tables, the XFS log, allocation metadata), and the recorded used bytes
//! are mostly file data (`statvfs` of the mounted source), so comparing
//! them with the raw device size accepts targets the restore then fills
//! up half-way, after the disks were wiped.

use crate::layout::{Filesystem, FsType};

const MIB: u64 = 1 << 20;

/// The recorded data plus 5 % for growth and metadata of the files themselves.
pub fn needed_data(f: &Filesystem) -> u64 {
    f.used_bytes + f.used_bytes / 20
}

/// Bytes a new filesystem of `size` bytes keeps for itself, estimated on the
/// safe side: ext journal (mke2fs's default for the size) and inode tables
/// (the recorded inode ratio and size), the XFS log (mkfs.xfs 6.1: 64 MiB up
/// to 128 GiB, then 1/2048 of the size), and 1 % + 1 MiB for the rest
/// (bitmaps, group descriptors, allocation groups, FATs, btrfs chunks).
pub fn overhead_bytes(f: &Filesystem, size: u64) -> u64 {
    let rest = size / 100 + MIB;
    match f.fstype {
        FsType::Ext2 | FsType::Ext3 | FsType::Ext4 => {
            let (block, inode, ratio, journal) = match &f.ext {
                Some(e) => (
                    u64::from(e.block_size).max(1024),
                    u64::from(e.inode_size).max(128),
                    e.inode_ratio.unwrap_or(16384).max(1024),
                    e.features.iter().any(|x| x == "has_journal"),
                ),
                None => (4096, 256, 16384, f.fstype != FsType::Ext2),
            };
            let journal = if journal { ext_journal_blocks(size / block) * block } else { 0 };
            size / ratio * inode + journal + rest
        }
        FsType::Xfs => (size / 2048).clamp(64 * MIB, 2 << 30) + rest,
        FsType::Vfat | FsType::Btrfs => rest,
    }
}

/// mke2fs's default journal size, in blocks, for a filesystem of `blocks`
/// blocks (e2fsprogs `ext2fs_default_journal_size`).
fn ext_journal_blocks(blocks: u64) -> u64 {
    match blocks {
        0..2048 => 0,
        2048..32768 => 1024,
        32768..262144 => 4096,
        262144..524288 => 8192,
        524288..4194304 => 16384,
        4194304..8388608 => 32768,
        8388608..16777216 => 65536,
        16777216..33554432 => 131072,
        _ => 262144,
    }
}

/// `mkfs.xfs` (xfsprogs 5.19 and later) refuses to make a smaller XFS.
pub const XFS_MIN_BYTES: u64 = 300 * MIB;

/// Whether a new `f` on a device of `size` bytes holds its recorded data.
/// At its recorded size or more it does: made with the same options, it
/// held the data before. An XFS is never made under [`XFS_MIN_BYTES`].
pub fn holds_data(f: &Filesystem, size: u64) -> bool {
    if f.fstype == FsType::Xfs && size < XFS_MIN_BYTES {
        return false;
    }
    f.size.is_some_and(|s| size >= s) || size.saturating_sub(overhead_bytes(f, size)) >= needed_data(f)
}

/// The smallest device (whole MiB) on which a new `f` holds its recorded data.
pub fn min_device_bytes(f: &Filesystem) -> u64 {
    let mut hi = (needed_data(f).div_ceil(MIB) + 1).next_power_of_two();
    while !holds_data(f, hi * MIB) && hi < 1 << 40 {
        hi *= 2;
    }
    smallest_mib(hi, |mib| holds_data(f, mib * MIB)) * MIB
}

/// The smallest number of MiB that `holds` accepts, given that `hi` does
/// (and that a larger size never makes it fail).
pub fn smallest_mib(mut hi: u64, holds: impl Fn(u64) -> bool) -> u64 {
    // `lo` never holds, `hi` does.
    let mut lo = 0;
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if holds(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::layout::ExtOptions;

    fn fs(fstype: FsType, used: u64, ext: Option<ExtOptions>) -> Filesystem {
        Filesystem {
            device: "sda1".into(),
            fstype,
            uuid: "u".into(),
            label: None,
            used_bytes: used,
            size: None,
            extra_devices: Vec::new(),
            ext,
            xfs: None,
            vfat: None,
            btrfs: None,
        }
    }

    #[test]
    fn small_ext4_needs_room_for_its_journal_and_inode_tables() {
        // A 90 MiB ext4 made with 1 KiB blocks and 4 KiB per inode (mke2fs's "small"),
        // holding 30 MiB: 31.5 MiB of raw device is far too little (the
        // restore filled it up in tests/recover_fail_loop.rs).
        let ext = ExtOptions { block_size: 1024, inode_size: 256, inode_ratio: Some(4096), features: vec!["has_journal".into()], reserved_percent: Some(5.0) };
        let f = fs(FsType::Ext4, 30 * MIB, Some(ext));
        assert!(!holds_data(&f, 32 * MIB) && !holds_data(&f, 36 * MIB));
        let min = min_device_bytes(&f);
        assert!(holds_data(&f, min) && !holds_data(&f, min - MIB), "{min}");
        // 31.5 MiB of data, 4 MiB journal, 1/16 for inode tables, 1 % + 1 MiB.
        assert!((38 * MIB..42 * MIB).contains(&min), "{}", min / MIB);
    }

    #[test]
    fn large_filesystems_lose_a_few_percent() {
        let f = fs(FsType::Ext4, 10 << 30, None);
        let min = min_device_bytes(&f);
        // 10.5 GiB of data, 256 MiB journal, 1.6 % inode tables, 1 %.
        assert!(min > 10_752 * MIB && min < 11_200 * MIB, "{}", min / MIB);
        let x = fs(FsType::Xfs, 100 * MIB, None);
        assert_eq!(overhead_bytes(&x, 1 << 30), 64 * MIB + (1 << 30) / 100 + MIB, "the 64 MiB log");
        assert_eq!(overhead_bytes(&fs(FsType::Vfat, 0, None), 100 * MIB), 2 * MIB);
        assert_eq!(ext_journal_blocks(524288), 16384);
    }

    #[test]
    fn mkfs_xfs_makes_nothing_under_300_mib() {
        let mut x = fs(FsType::Xfs, MIB, None);
        x.size = Some(200 * MIB);
        assert!(!holds_data(&x, 299 * MIB) && holds_data(&x, 300 * MIB));
        assert_eq!(min_device_bytes(&x), 300 * MIB);
    }

    #[test]
    fn a_full_filesystem_fits_at_its_recorded_size() {
        // 97 % full: no room for the 5 % on a smaller device, but the same size held it.
        let mut f = fs(FsType::Ext4, 970 * MIB, None);
        f.size = Some(1000 * MIB);
        assert!(holds_data(&f, 1000 * MIB) && holds_data(&f, 2000 * MIB));
        assert!(!holds_data(&f, 999 * MIB));
        assert_eq!(min_device_bytes(&f), 1000 * MIB);
    }
}
