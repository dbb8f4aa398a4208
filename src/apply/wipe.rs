//! Clearing a disk before it is reused: unmount what an earlier attempt of
//! `rescue` mounted (recorded under the target root; a disk mounted by
//! anyone else or used as swap is refused), take down device-mapper (LVM, LUKS)
//! and MD devices stacked on it (deepest first, wiping their signatures so
//! nothing old reassembles), then erase every signature on its partitions and
//! on the disk itself, and make the kernel forget the old partitions.

use std::collections::BTreeSet;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cmd::Cmd;
use crate::layout::Layout;
use crate::target::TargetRoot;

/// What can be active on a target disk and must be taken down to wipe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Holder {
    DeviceMapper,
    Md,
}

/// A block device in sysfs: kernel name and `major:minor`.
#[derive(Debug, Clone)]
struct Node {
    name: String,
    devnum: String,
    partition: bool,
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The disk, its partitions and all holders, deepest first (holders before
/// what they hold).
fn tree(disk: &str) -> Vec<Node> {
    fn visit(dir: &Path, name: &str, partition: bool, seen: &mut BTreeSet<String>, out: &mut Vec<Node>) {
        if !seen.insert(name.to_string()) {
            return;
        }
        if let Ok(rd) = std::fs::read_dir(dir.join("holders")) {
            let mut hs: Vec<String> = rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            hs.sort();
            for h in hs {
                visit(&Path::new("/sys/class/block").join(&h), &h, false, seen, out);
            }
        }
        if let Some(devnum) = read_trim(&dir.join("dev")) {
            out.push(Node { name: name.to_string(), devnum, partition });
        }
    }
    let sys = Path::new("/sys/block").join(disk);
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut parts: Vec<String> = std::fs::read_dir(&sys)
        .map(|rd| rd.flatten().filter(|e| e.path().join("partition").exists()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    parts.sort();
    for p in parts {
        visit(&sys.join(&p), &p, true, &mut seen, &mut out);
    }
    visit(&sys, disk, false, &mut seen, &mut out);
    out
}

/// The kernel name of a disk path (`/dev/disk/by-id/...` resolved).
fn kernel_name(dev: &Path) -> Result<String> {
    let real = std::fs::canonicalize(dev).with_context(|| format!("resolving {}", dev.display()))?;
    real.file_name().map(|n| n.to_string_lossy().into_owned()).with_context(|| format!("{} has no name", dev.display()))
}

/// What is active on `dev` now that wiping it must take down: a
/// device-mapper device (an old LVM or LUKS the rescue system activated), an
/// MD array; each with why. The plan phase checks the programs for these
/// (`needs::for_active`), so that a missing one stops the recovery before the
/// first write instead of in the middle of the wipe. (Swap in use is refused,
/// not turned off.)
pub fn active_holders(dev: &Path) -> Vec<(Holder, String)> {
    let Ok(name) = kernel_name(dev) else { return Vec::new() };
    holders(dev, &tree(&name))
}

fn holders(dev: &Path, nodes: &[Node]) -> Vec<(Holder, String)> {
    let mut v = Vec::new();
    for n in nodes.iter().filter(|n| !n.partition) {
        if n.name.starts_with("dm-") {
            let dm = read_trim(&Path::new("/sys/block").join(&n.name).join("dm/name")).unwrap_or(n.name.clone());
            v.push((Holder::DeviceMapper, format!("to remove the device-mapper device {dm} (an old LVM or LUKS volume) active on {}", dev.display())));
        } else if n.name.starts_with("md") {
            v.push((Holder::Md, format!("to stop the RAID array /dev/{} active on {}", n.name, dev.display())));
        }
    }
    v
}

/// Deactivate everything on the disk and unmount what `rescue` mounted there
/// itself (recorded under `root`). A disk mounted anywhere else or used as
/// swap is in use by something we did not make: refused, wherever it is.
pub fn deactivate_under(dev: &Path, root: &TargetRoot) -> Result<()> {
    let name = kernel_name(dev)?;
    let nodes = tree(&name);
    let nums: BTreeSet<&str> = nodes.iter().map(|n| n.devnum.as_str()).collect();
    let ours = root.our_mounts()?;
    let mounts: Vec<crate::util::MountInfo> = crate::util::mountinfo()?
        .into_iter()
        .filter(|m| nums.contains(m.devnum.as_str()) || crate::util::devnum_of_path(&m.source).is_some_and(|d| nums.contains(d.as_str())))
        .collect();
    if let Some(m) = mounts.iter().find(|m| !ours.iter().any(|o| o.target == m.target && o.devnum == m.devnum)) {
        bail!(
            "{} is in use: {} is mounted at {}; unmount it first, or map another disk (rescue only undoes the mounts it made itself under {})",
            dev.display(),
            m.source,
            m.target.display(),
            root.display()
        );
    }
    if let Ok(swaps) = std::fs::read_to_string("/proc/swaps") {
        if let Some(s) = swaps
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .find(|s| crate::util::devnum_of_path(s).is_some_and(|d| nums.contains(d.as_str())))
        {
            bail!("{} is in use: {s} is an active swap space; `swapoff {s}` first, or map another disk", dev.display());
        }
    }
    for m in ours.iter().filter(|o| mounts.iter().any(|m| m.target == o.target)) {
        Cmd::new("umount").arg(&m.target).run()?;
        root.forget_mount(&m.target)?;
    }
    // A device-mapper device on the disk that is held open by more than the
    // devices stacked on it (a process, a VM, a mount in another namespace)
    // is in use: refused before anything is erased. One the rescue system
    // merely activated (an old LVM) is open only by what sits on it.
    for n in nodes.iter().filter(|n| n.name.starts_with("dm-")) {
        let dm = read_trim(&Path::new("/sys/block").join(&n.name).join("dm/name")).unwrap_or(n.name.clone());
        let stacked = std::fs::read_dir(Path::new("/sys/block").join(&n.name).join("holders")).map(|rd| rd.count()).unwrap_or(0);
        let open = Cmd::new("dmsetup").args(["info", "-c", "--noheadings", "-o", "open", &dm]).read()?;
        let open: u32 = open.trim().parse().with_context(|| format!("reading the open count of {dm} from dmsetup: {open:?}"))?;
        if held_by_others(open, stacked) {
            bail!(
                "{} is in use: the device-mapper device {dm} on it is open {open} time(s), not only by the {stacked} device(s) stacked on it; \
                 stop what uses it (a process, a VM; `fuser -vm /dev/mapper/{dm}`) or map another disk",
                dev.display()
            );
        }
    }
    for n in nodes.iter().filter(|n| n.name != name && !n.partition) {
        let path = format!("/dev/{}", n.name);
        // Erase what is inside before taking the device down, so an old
        // filesystem or PV inside cannot reappear on the new device.
        let _ = Cmd::new("wipefs").args(["-a", "-q", &path]).run();
        if n.name.starts_with("dm-") {
            let dm = read_trim(&Path::new("/sys/block").join(&n.name).join("dm/name")).unwrap_or(n.name.clone());
            Cmd::new("dmsetup").args(["remove", "--retry", &dm]).run()?;
        } else if n.name.starts_with("md") {
            Cmd::new("mdadm").args(["--stop", &path]).run()?;
        }
    }
    Ok(())
}

/// Whether a device opened `open` times is used by more than the `stacked`
/// devices that sit on it (each holds it open once).
fn held_by_others(open: u32, stacked: usize) -> bool {
    open as usize > stacked
}

/// The `Wipe` operation.
pub fn wipe_disk(dev: &Path, root: &TargetRoot) -> Result<()> {
    deactivate_under(dev, root)?;
    let name = kernel_name(dev)?;
    for n in tree(&name).iter().filter(|n| n.partition) {
        let path = PathBuf::from(format!("/dev/{}", n.name));
        if path.exists() {
            Cmd::new("wipefs").args(["-a", "-q"]).arg(&path).run()?;
        }
    }
    Cmd::new("wipefs").args(["-a", "-q"]).arg(dev).run()?;
    zero_ends(dev)?;
    // Make the kernel forget the old partitions.
    if Cmd::new("blockdev").arg("--rereadpt").arg(dev).run().is_err() {
        let _ = Cmd::new("partx").arg("-d").arg(dev).ok_codes(&[1]).run();
    }
    Ok(())
}

/// What [`wipe_disk`] zeroes at each end of a disk: old boot code, stray
/// partition table copies.
const END_BYTES: u64 = 1 << 20;

/// The offsets and lengths of the disk's ends [`zero_ends`] zeroes, for a
/// disk of `size` bytes.
fn end_ranges(size: u64) -> Vec<(u64, u64)> {
    let n = END_BYTES.min(size);
    let mut v = vec![(0, n)];
    if size > n {
        let tail = n.min(size - n);
        v.push((size - tail, tail));
    }
    v
}

/// Zero the first and last MiB: old boot code, stray partition table copies.
fn zero_ends(dev: &Path) -> Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).open(dev).with_context(|| format!("opening {}", dev.display()))?;
    let size = f.seek(SeekFrom::End(0))?;
    let zeros = vec![0u8; END_BYTES as usize];
    for (at, len) in end_ranges(size) {
        f.seek(SeekFrom::Start(at))?;
        f.write_all(&zeros[..len as usize]).with_context(|| format!("zeroing {} bytes at offset {at} of {}", len, dev.display()))?;
    }
    f.sync_all().with_context(|| format!("flushing {}", dev.display()))?;
    Ok(())
}

/// What wiping `dev` ([`wipe_disk`]) would destroy, in words (e.g. "holds
/// a partition table (gpt)"); `None` when the disk is blank: no partition,
/// nothing stacked on it, no signature `wipefs` would remove and nothing
/// but zeros where [`zero_ends`] writes. The same parts [`wipe_disk`]
/// erases, so a disk judged blank loses nothing to a recovery.
pub fn holds_data(dev: &Path) -> Result<Option<String>> {
    let name = kernel_name(dev)?;
    let nodes = tree(&name);
    if let Some(n) = nodes.iter().find(|n| n.name != name) {
        let what = if n.partition { "a partition" } else { "a device stacked on it" };
        return Ok(Some(format!("holds {what} (/dev/{})", n.name)));
    }
    let found = Cmd::new("wipefs").args(["--no-act", "--noheadings", "--output", "TYPE"]).arg(dev).read()?;
    let kinds: Vec<&str> = found.split_whitespace().collect();
    if !kinds.is_empty() {
        return Ok(Some(format!("holds a partition table or filesystem signature ({})", kinds.join(", "))));
    }
    let mut f = std::fs::File::open(dev).with_context(|| format!("opening {} to see whether it is blank", dev.display()))?;
    let size = f.seek(SeekFrom::End(0))?;
    let mut buf = vec![0u8; END_BYTES as usize];
    for (at, len) in end_ranges(size) {
        f.seek(SeekFrom::Start(at))?;
        std::io::Read::read_exact(&mut f, &mut buf[..len as usize]).with_context(|| format!("reading {len} bytes at offset {at} of {}", dev.display()))?;
        if buf[..len as usize].iter().any(|&b| b != 0) {
            let which = if at == 0 { "first" } else { "last" };
            return Ok(Some(format!("holds data in its {which} MiB (boot code or an old partition table)")));
        }
    }
    Ok(None)
}

/// Zero a whole (small) device, e.g. a BIOS boot partition.
pub fn zero_all(dev: &Path) -> Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).open(dev).with_context(|| format!("opening {}", dev.display()))?;
    let size = f.seek(SeekFrom::End(0))?;
    f.seek(SeekFrom::Start(0))?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n]).with_context(|| format!("zeroing {}", dev.display()))?;
        left -= n as u64;
    }
    f.sync_all().with_context(|| format!("flushing {}", dev.display()))?;
    Ok(())
}

/// Unmount what `rescue` mounted under `root` (deepest first; nothing else
/// mounted there is touched) and close what the descriptor's LUKS volumes,
/// VGs and MD arrays have open. Returns what was done.
pub fn teardown_target(root: &TargetRoot, layout: Option<&Layout>) -> Result<Vec<String>> {
    let mut done: Vec<String> = root.unmount_ours()?.iter().map(|t| format!("unmounted {}", t.display())).collect();
    if let Some(l) = layout {
        let dm_names: Vec<String> =
            std::fs::read_dir("/sys/block").map(|rd| rd.flatten().filter_map(|e| read_trim(&e.path().join("dm/name"))).collect()).unwrap_or_default();
        for vg in &l.lvm_vgs {
            let prefix = format!("{}-", vg.name.replace('-', "--"));
            if dm_names.iter().any(|n| n.starts_with(&prefix)) {
                crate::apply::lvm::lvm_cmd().args(["vgchange", "-an", &vg.name]).run()?;
                done.push(format!("deactivated volume group {}", vg.name));
            }
        }
        for lk in l.luks.iter().rev() {
            if dm_names.contains(&lk.name) {
                Cmd::new("cryptsetup").args(["close", &lk.name]).run()?;
                done.push(format!("closed LUKS volume {}", lk.name));
            }
        }
        for r in l.raids.iter().rev() {
            if Path::new("/sys/block").join(&r.name).join("md").exists() {
                Cmd::new("mdadm").args(["--stop", &format!("/dev/{}", r.name)]).run()?;
                done.push(format!("stopped RAID {}", r.name));
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ends_zeroed_are_the_ends_checked() {
        assert_eq!(end_ranges(3 << 20), [(0, 1 << 20), (2 << 20, 1 << 20)]);
        assert_eq!(end_ranges(1536 << 10), [(0, 1 << 20), (1 << 20, 512 << 10)], "the ends overlap nothing");
        assert_eq!(end_ranges(4096), [(0, 4096)]);
    }

    #[test]
    fn a_device_mapper_device_open_beyond_its_stack_is_in_use() {
        assert!(!held_by_others(0, 0), "an old LV the rescue system activated");
        assert!(!held_by_others(2, 2), "a PV under two active LVs");
        assert!(held_by_others(1, 0), "an LV a process or VM has open");
        assert!(held_by_others(3, 2));
    }

    #[test]
    fn holders_on_a_disk_need_their_programs() {
        let node = |name: &str, partition: bool| Node { name: name.into(), devnum: "0:0".into(), partition };
        let nodes = [node("dm-99", false), node("md127", false), node("sdz1", true), node("sdz", false)];
        let v = holders(Path::new("/dev/sdz"), &nodes);
        let kinds: Vec<Holder> = v.iter().map(|t| t.0).collect();
        assert_eq!(kinds, [Holder::DeviceMapper, Holder::Md], "{v:?}");
        assert!(v[1].1.contains("/dev/md127") && v[1].1.contains("/dev/sdz"), "{v:?}");
        let names: Vec<String> = crate::needs::for_active(&v).programs.into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["dmsetup", "mdadm"]);
        assert!(holders(Path::new("/dev/sdz"), &nodes[2..]).is_empty());
    }
}
