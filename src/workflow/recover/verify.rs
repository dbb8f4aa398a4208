//! Verify phase: every program the storage plan, the data source and
//! finalize will run is present, before anything is written.

use anyhow::Result;

use super::data::DataSource;
use crate::cmd::{find_in_path, package_for};
use crate::layout::{BootloaderKind, FsType, Layout};
use crate::plan::Plan;

/// The programs recovery of `layout` runs in the rescue system, each with
/// the reason (for the error message). Programs run inside the recovered
/// system (grub-install, update-initramfs) are checked by finalize, once
/// the data is there.
pub fn required_tools(layout: &Layout, source: &DataSource, udev: bool, uefi: bool) -> Vec<(&'static str, String)> {
    let mut v: Vec<(&'static str, String)> = Vec::new();
    let disks = layout.disks.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ");
    for t in ["wipefs", "blockdev"] {
        v.push((t, format!("to wipe the target disks ({disks})")));
    }
    if layout.disks.iter().any(|d| d.table.is_some()) {
        v.push(("sfdisk", "to write partition tables".into()));
        v.push(("partx", "to make the kernel see the new partitions".into()));
    }
    if udev {
        v.push(("udevadm", "to wait for udev after partitioning".into()));
    }
    for f in &layout.filesystems {
        let mkfs: &'static str = match f.fstype {
            FsType::Ext2 => "mkfs.ext2",
            FsType::Ext3 => "mkfs.ext3",
            FsType::Ext4 => "mkfs.ext4",
            FsType::Xfs => "mkfs.xfs",
            FsType::Vfat => "mkfs.vfat",
            FsType::Btrfs => "mkfs.btrfs",
        };
        v.push((mkfs, format!("to make the {} filesystem on {}", f.fstype, f.device)));
        if f.btrfs.as_ref().is_some_and(|b| !b.subvolumes.is_empty() || b.default_subvolume.is_some()) {
            v.push(("btrfs", format!("to create the subvolumes on {}", f.device)));
        }
    }
    for s in &layout.swaps {
        v.push(("mkswap", format!("to make the swap space on {}", s.device)));
    }
    for r in &layout.raids {
        v.push(("mdadm", format!("to create the RAID array {}", r.name)));
    }
    for l in &layout.luks {
        v.push(("cryptsetup", format!("to create the LUKS volume {}", l.name)));
    }
    for vg in &layout.lvm_vgs {
        v.push(("lvm", format!("to create the volume group {}", vg.name)));
    }
    if !layout.mounts.is_empty() {
        v.push(("mount", "to mount the recreated filesystems".into()));
        v.push(("umount", "to unmount them at the end".into()));
    }
    v.extend(source.tools());
    if layout.bootloader.kind != BootloaderKind::None {
        v.push(("chroot", "to install the bootloader from inside the recovered system".into()));
    }
    if uefi && matches!(layout.bootloader.kind, BootloaderKind::Grub2Efi | BootloaderKind::SystemdBoot) {
        v.push(("efibootmgr", "to write the UEFI boot entry".into()));
    }
    let mut seen = std::collections::BTreeSet::new();
    v.retain(|(t, _)| seen.insert(*t));
    v
}

/// Fail, naming each missing program, its Debian package and why it is
/// needed, when one is not in `PATH`. Returns how many were checked.
pub fn check_tools(layout: &Layout, source: &DataSource) -> Result<usize> {
    let uefi = std::path::Path::new("/sys/firmware/efi").exists();
    let tools = required_tools(layout, source, crate::apply::udev_running(), uefi);
    require(&tools)?;
    Ok(tools.len())
}

/// Plan phase: the programs wiping the mapped disks runs for what is active
/// on them now (old swap, LVM/LUKS, MD arrays the rescue system started).
pub fn check_wipe_tools(plan: &Plan) -> Result<()> {
    let tools: Vec<(&'static str, String)> = plan.target_disks().iter().flat_map(|d| crate::apply::programs_for_wipe(d)).collect();
    require(&tools)
}

fn require(tools: &[(&'static str, String)]) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    let missing: Vec<String> = tools
        .iter()
        .filter(|(t, _)| seen.insert(*t) && find_in_path(t).is_none())
        .map(|(t, why)| match package_for(t) {
            Some(p) => format!("{t} ({why}; Debian package {p}: apt-get install {p})"),
            None => format!("{t} ({why})"),
        })
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "programs recovery needs are not installed here: {}. Nothing was written. Install them in this system, \
             or install them on the source system and make a new rescue image (`rescue mkrescue`)",
            missing.join("; ")
        );
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tools_follow_the_layout() {
        let l = Layout::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts/uefi-lvm-xfs.toml")).unwrap();
        let src = DataSource::Archive { url: "nfs://nas/b".into(), archive: None };
        let names: Vec<&str> = required_tools(&l, &src, false, true).into_iter().map(|t| t.0).collect();
        for t in ["wipefs", "sfdisk", "partx", "mkfs.xfs", "mkfs.vfat", "lvm", "mount", "mount.nfs", "chroot", "efibootmgr"] {
            assert!(names.contains(&t), "{t} missing from {names:?}");
        }
        assert!(!names.contains(&"mdadm") && !names.contains(&"udevadm"), "{names:?}");
        // Booted with BIOS: no NVRAM to write.
        let names: Vec<&str> = required_tools(&l, &src, true, false).into_iter().map(|t| t.0).collect();
        assert!(!names.contains(&"efibootmgr") && names.contains(&"udevadm"), "{names:?}");
    }
}
