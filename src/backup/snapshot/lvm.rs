//! LVM snapshots of the logical volumes under backed-up mounts: their size
//! (`backup.snapshot-size`, or a share of the VG's free space), the refusal
//! when the VG has no room, the read-only mount in a private directory, and
//! the removal of ones a killed run left behind.
//!
//! A snapshot is an LV named `ORIGIN-rescue-snap`, tagged `rescue-backup-snapshot`,
//! mounted at `/run/rescue/snapshots/VG/ORIGIN-rescue-snap` (the parent is 0700).
//! `lvcreate -s` suspends the origin, which freezes its filesystem: the
//! snapshot holds it as a clean unmount would (journal flushed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::apply::lvm::lvm_cmd;
use crate::backup::cleanup::{self, Pending, Undo};
use crate::cmd::Cmd;
use crate::layout::{FsType, Layout};
use crate::util::human_bytes;

/// The end of a snapshot LV's name: `root` → `root-rescue-snap`.
pub const NAME_SUFFIX: &str = "-rescue-snap";
/// The LVM tag every snapshot of ours carries: what the next run looks for.
pub const TAG: &str = "rescue-backup-snapshot";
/// Where snapshots are mounted (a private directory: 0700).
pub const MOUNT_ROOT: &str = "/run/rescue/snapshots";

/// A logical volume whose filesystem is read from a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub vg: String,
    pub name: String,
    /// Bytes.
    pub size: u64,
    pub fstype: FsType,
}

impl Origin {
    /// The LV holding the filesystem mounted at `mount`, from the
    /// descriptor; `Err` says why the mount is not one.
    pub fn of_mount(layout: &Layout, mount: &str) -> std::result::Result<Origin, String> {
        let device = layout.mounts.iter().find(|x| x.path == mount).map(|x| x.device.as_str()).ok_or("not a mount of the descriptor")?;
        let lv = layout
            .lvm_lvs
            .iter()
            .find(|l| l.id() == device)
            .ok_or("neither a btrfs subvolume nor a filesystem on an LVM logical volume (the kinds snapshots are taken of)")?;
        let fstype = layout.filesystem_on(device).map(|f| f.fstype).ok_or("the descriptor records no filesystem on its logical volume")?;
        if !matches!(fstype, FsType::Ext2 | FsType::Ext3 | FsType::Ext4 | FsType::Xfs) {
            return Err(format!("{} on the logical volume {device}: LVM snapshots are taken of ext2/3/4 and XFS only", fstype.as_str()));
        }
        Ok(Origin { vg: lv.vg.clone(), name: lv.name.clone(), size: lv.size, fstype })
    }

    /// `VG/LV`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.vg, self.name)
    }

    pub fn snapshot_name(&self) -> String {
        format!("{}{NAME_SUFFIX}", self.name)
    }

    /// Whether this LV is what is mounted at `dir` now (the descriptor may be
    /// older than the system).
    pub fn is_mounted_at(&self, dir: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let dev = Path::new("/dev").join(&self.vg).join(&self.name);
        match (std::fs::metadata(dir), std::fs::metadata(dev)) {
            (Ok(d), Ok(lv)) => d.dev() == lv.rdev(),
            _ => false,
        }
    }
}

/// Free space of a volume group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VgSpace {
    pub free: u64,
    pub extent_size: u64,
}

fn vg_space(vg: &str) -> Result<VgSpace> {
    let json = lvm_cmd()
        .args(["vgs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "vg_name,vg_free,vg_extent_size", vg])
        .read()
        .with_context(|| format!("reading the free space of the volume group {vg} for its snapshots"))?;
    let rows = crate::probe::parse::lvm_report(&json, "vg")?;
    let row = rows.first().with_context(|| format!("`lvm vgs {vg}` reported no volume group"))?;
    let num = |k: &str| row.get(k).and_then(|v| v.parse::<u64>().ok()).with_context(|| format!("`lvm vgs {vg}` reported no number for {k}"));
    Ok(VgSpace { free: num("vg_free")?, extent_size: num("vg_extent_size")?.max(1) })
}

/// Extents for the snapshot of each of `origins` (in order): `configured`
/// bytes each, else half the VG's free space shared equally by the VG's
/// snapshots, never more than the origin's own size (a snapshot never
/// needs more). Refused, naming the VG, its free space and the ways out,
/// when the VG cannot hold them.
pub fn extents(origins: &[Origin], configured: Option<u64>, space: &BTreeMap<String, VgSpace>) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for o in origins {
        let s = space.get(&o.vg).copied().unwrap_or_default();
        let ext = s.extent_size.max(1);
        let free = s.free / ext;
        let in_vg: Vec<&Origin> = origins.iter().filter(|x| x.vg == o.vg).collect();
        let own = o.size.div_ceil(ext);
        let (want, room) = match configured {
            Some(bytes) => (bytes.div_ceil(ext), free / in_vg.len() as u64),
            None => (own.min(free / 2 / in_vg.len() as u64).max(1), free / in_vg.len() as u64),
        };
        if want > room || room == 0 {
            crate::bail_input!(
                "the volume group {vg} has {} free ({free} extents of {}), too little for a snapshot of {id} ({} wanted{}): free extents in {vg} \
                 (vgextend it, or shrink another logical volume), {}or set backup.snapshot = \"off\" to read it live",
                human_bytes(s.free),
                human_bytes(ext),
                human_bytes(want * ext),
                if in_vg.len() > 1 { format!(", for each of {} snapshots in it", in_vg.len()) } else { String::new() },
                if configured.is_some() { "set backup.snapshot-size smaller, " } else { "" },
                vg = o.vg,
                id = o.id(),
            );
        }
        out.push(want);
    }
    Ok(out)
}

/// [`extents`] with the VGs' free space read now.
pub fn plan(origins: &[Origin], configured: Option<u64>) -> Result<Vec<u64>> {
    let mut space = BTreeMap::new();
    for o in origins {
        if !space.contains_key(&o.vg) {
            space.insert(o.vg.clone(), vg_space(&o.vg)?);
        }
    }
    extents(origins, configured, &space)
}

/// The directory the snapshot `snapshot` of VG `vg` is mounted at.
pub fn mount_dir(vg: &str, snapshot: &str) -> PathBuf {
    Path::new(MOUNT_ROOT).join(vg).join(snapshot)
}

/// Remove the snapshots of `origins` that a killed run left (unmount, lvremove):
/// LVs named as ours and tagged as ours.
pub fn remove_stale(origins: &[Origin]) -> Result<()> {
    for o in origins {
        let snap = o.snapshot_name();
        let json = lvm_cmd()
            .args(["lvs", "--reportformat", "json", "-o", "lv_name,lv_tags", &o.vg])
            .read()
            .with_context(|| format!("listing the logical volumes of {} to find a snapshot an earlier backup left", o.vg))?;
        let stale = crate::probe::parse::lvm_report(&json, "lv")?
            .iter()
            .any(|row| row.get("lv_name") == Some(&snap) && row.get("lv_tags").is_some_and(|t| t.split(',').any(|t| t == TAG)));
        if !stale {
            continue;
        }
        tracing::warn!("removing the snapshot {}/{snap} that an earlier backup left (it was killed before it could remove it)", o.vg);
        Undo::Umount(mount_dir(&o.vg, &snap)).run()?;
        Undo::RemoveLv(format!("{}/{snap}", o.vg)).run().with_context(|| format!("removing the stale snapshot {}/{snap}", o.vg))?;
    }
    Ok(())
}

/// Make the snapshot of `o` (`extents` big) and mount it read-only; returns
/// the mount point and the undos (newest last) that unmount and remove it.
pub fn take(o: &Origin, extents: u64, mount: &str) -> Result<(PathBuf, Vec<Pending>)> {
    let snap = o.snapshot_name();
    let mut undo = Vec::new();
    let lv = cleanup::register(Undo::RemoveLv(format!("{}/{snap}", o.vg)))?;
    let made = lvm_cmd()
        .args(["lvcreate", "--snapshot", "--yes", "--name", &snap, "--extents", &extents.to_string(), "--addtag", TAG, &o.id()])
        .run()
        .with_context(|| format!("taking an LVM snapshot of {} for {mount}; set backup.snapshot = \"off\" to read it live", o.id()));
    if let Err(e) = made {
        lv.keep();
        return Err(e);
    }
    undo.push(lv);
    let dev = Path::new("/dev").join(&o.vg).join(&snap);
    wait_for(&dev)?;
    let dir = private_dir(&o.vg, &snap)?;
    undo.push(cleanup::register(Undo::Umount(dir.clone()))?);
    // ro on a writable snapshot: should its journal or log need replaying, the
    // kernel replays it into the snapshot (never the origin); `noload` or
    // `norecovery` would show a tree with the journal's updates missing.
    // XFS refuses a second mount of the same UUID unless told `nouuid`.
    let options = if o.fstype == FsType::Xfs { "ro,nouuid" } else { "ro" };
    Cmd::new("mount")
        .args(["-t", o.fstype.as_str(), "-o", options])
        .arg(&dev)
        .arg(&dir)
        .run()
        .with_context(|| format!("mounting the snapshot {} of {mount} read-only at {}", dev.display(), dir.display()))?;
    Ok((dir, undo))
}

/// `MOUNT_ROOT/VG/SNAP`, made empty, under a 0700 `MOUNT_ROOT`.
fn private_dir(vg: &str, snap: &str) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(MOUNT_ROOT).with_context(|| format!("creating {MOUNT_ROOT}"))?;
    std::fs::set_permissions(MOUNT_ROOT, std::fs::Permissions::from_mode(0o700)).with_context(|| format!("making {MOUNT_ROOT} private (0700)"))?;
    let dir = mount_dir(vg, snap);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating the mount point {}", dir.display()))?;
    Ok(dir)
}

/// lvcreate waits for udev where it runs; without udev LVM makes the node itself.
fn wait_for(dev: &Path) -> Result<()> {
    for _ in 0..100 {
        if dev.exists() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    anyhow::bail!("the snapshot device {} did not appear within 10 s after lvcreate", dev.display())
}

/// The snapshots of `origins` that overflowed (their copy-on-write space
/// ran out, which invalidates them): what was read after that is not the
/// snapshot's state.
pub fn overflowed(origins: &[Origin]) -> Vec<String> {
    let mut out = Vec::new();
    for o in origins {
        let id = format!("{}/{}", o.vg, o.snapshot_name());
        let attr = lvm_cmd().args(["lvs", "--noheadings", "-o", "lv_attr", &id]).read().unwrap_or_default();
        // The fifth lv_attr character: `I` = invalid snapshot.
        if attr.trim().chars().nth(4) == Some('I') {
            out.push(id);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn origin(vg: &str, name: &str, size: u64) -> Origin {
        Origin { vg: vg.into(), name: name.into(), size, fstype: FsType::Ext4 }
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn default_size_is_a_share_of_half_the_free_space_at_most_the_origin() {
        let space = BTreeMap::from([("vg".to_string(), VgSpace { free: 1000 * 4 * MIB, extent_size: 4 * MIB })]);
        let o = [origin("vg", "root", 10_000 * MIB), origin("vg", "small", 40 * MIB)];
        // Two snapshots share half of 1000 extents; the small one needs only its own 10.
        assert_eq!(extents(&o, None, &space).unwrap(), vec![250, 10]);
        assert_eq!(extents(&o, Some(100 * MIB), &space).unwrap(), vec![25, 25], "configured, rounded up to extents");
    }

    #[test]
    fn a_vg_without_room_is_refused_naming_it_and_the_ways_out() {
        let space = BTreeMap::from([("vgfull".to_string(), VgSpace { free: 0, extent_size: 4 * MIB })]);
        let e = extents(&[origin("vgfull", "data", 100 * MIB)], None, &space).unwrap_err().to_string();
        for want in ["vgfull has 0 B free", "vgfull/data", "free extents in vgfull", "backup.snapshot = \"off\""] {
            assert!(e.contains(want), "{want:?} in {e}");
        }
        let space = BTreeMap::from([("vg".to_string(), VgSpace { free: 10 * 4 * MIB, extent_size: 4 * MIB })]);
        let e = extents(&[origin("vg", "data", 100 * MIB)], Some(80 * MIB), &space).unwrap_err().to_string();
        assert!(e.contains("backup.snapshot-size smaller") && e.contains("40.0 MiB free"), "{e}");
    }

    #[test]
    fn the_lv_under_a_mount_comes_from_the_descriptor() {
        let l = Layout::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts/uefi-lvm-xfs.toml")).unwrap();
        let root = l.mounts.iter().find(|m| m.path == "/").unwrap();
        let o = Origin::of_mount(&l, "/").unwrap();
        assert_eq!(o.id(), root.device);
        assert_eq!(o.snapshot_name(), format!("{}{NAME_SUFFIX}", o.name));
        let efi = Origin::of_mount(&l, "/boot/efi").unwrap_err();
        assert!(efi.contains("neither a btrfs subvolume nor"), "{efi}");
    }
}
