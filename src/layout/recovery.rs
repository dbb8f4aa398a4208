//! What recovery uses from a descriptor, and nothing else.
//!
//! Two questions have one answer each here, so that capture and `checklayout`
//! cannot drift apart:
//! - [`MountScope::classify`]: is a mount part of what recovery recreates?
//!   Capture records a mount only when it is; the comparison drops every
//!   recorded mount that is not (a descriptor saved before a pattern was added
//!   to `capture.exclude-mounts` compares as if captured with it).
//! - [`recovery_view`]: the descriptor reduced to what recovery reads, with
//!   disks and arrays named by identity instead of kernel name. Two captures
//!   of a system whose recovery would not differ have equal views.
//!
//! And whether the recorded backup holds every recorded mount: [`backup_gaps`].

use std::collections::BTreeMap;

use serde::Serialize;

use super::{BackedUpMount, Layout};

/// Filesystem types that never hold data to recover: kernel interfaces,
/// memory, images, namespaces, automount points. Mounts of these come and go
/// (a tmpfs, a container's overlay, a snap's squashfs) and are never recorded.
const PSEUDO_FS: &[&str] = &[
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "tmpfs",
    "ramfs",
    "cgroup",
    "cgroup2",
    "securityfs",
    "pstore",
    "efivarfs",
    "bpf",
    "debugfs",
    "tracefs",
    "mqueue",
    "hugetlbfs",
    "configfs",
    "autofs",
    "binfmt_misc",
    "rpc_pipefs",
    "nsfs",
    "selinuxfs",
    "overlay",
    "squashfs",
    "erofs",
    "iso9660",
    "nfsd",
];

/// Network filesystems: their data lives elsewhere and is not ours to recover.
const NETWORK_FS: &[&str] = &["nfs", "nfs4", "cifs", "smb3", "ceph", "glusterfs", "9p"];

/// Directories whose mounts belong to a container runtime or a user session:
/// whatever is mounted below them is made and removed by that software.
/// (A filesystem mounted *at* one of them, e.g. a dedicated `/var/lib/docker`,
/// is recorded as usual.)
const TRANSIENT_DIRS: &[&str] = &[
    "/run/user",
    "/var/lib/docker",
    "/var/lib/containers",
    "/run/containers",
    "/run/containerd",
    "/run/docker",
    "/var/lib/kubelet/pods",
    "/var/lib/lxc",
    "/var/lib/lxd",
    "/var/lib/incus",
    "/run/netns",
    "/run/snapd",
    "/snap",
];

/// Why a mount is not part of what recovery recreates. None of them is ever
/// a change for `checklayout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRecovered {
    /// Pseudo, in-memory, FUSE and image filesystems: recorded nowhere.
    Pseudo,
    /// A real filesystem mounted where a container runtime or a user session
    /// mounts: listed under `[[excluded]]`, because it may be the same
    /// filesystem as a recorded mount (a bind mount), which the backup must
    /// not archive twice.
    Transient,
    /// A pattern of `capture.exclude-mounts`: listed under `[[excluded]]`.
    Configured,
    /// NFS, CIFS...: listed under `[[excluded]]`.
    Network,
}

impl NotRecovered {
    /// The reason written under `[[excluded]]`.
    pub fn reason(self) -> &'static str {
        match self {
            NotRecovered::Pseudo => "pseudo filesystem",
            NotRecovered::Transient => "mounted by a container runtime or a user session",
            NotRecovered::Configured => "excluded by configuration (capture.exclude-mounts)",
            NotRecovered::Network => "network filesystem",
        }
    }
}

/// Which mounts recovery recreates: the fixed rules plus the patterns of
/// `capture.exclude-mounts`.
#[derive(Debug, Clone, Default)]
pub struct MountScope {
    exclude: Vec<String>,
}

impl MountScope {
    /// `exclude_mounts`: mount points (`/scratch`) or patterns where `*`
    /// matches any characters, `/` included (`/var/lib/docker/*`), and `?` one.
    pub fn new(exclude_mounts: &[String]) -> MountScope {
        MountScope { exclude: exclude_mounts.iter().map(|p| normalize_path(p)).collect() }
    }

    /// Whether a pattern of `capture.exclude-mounts` names this mount point.
    pub fn is_configured_out(&self, path: &str) -> bool {
        let path = normalize_path(path);
        self.exclude.iter().any(|p| glob_match(p.as_bytes(), path.as_bytes()))
    }

    /// `None` when recovery recreates a mount of type `fstype` at `path`
    /// (relative to the recorded root), else why not.
    pub fn classify(&self, path: &str, fstype: &str) -> Option<NotRecovered> {
        if PSEUDO_FS.contains(&fstype) || fstype.starts_with("fuse") {
            Some(NotRecovered::Pseudo)
        } else if is_below_transient_dir(path) {
            Some(NotRecovered::Transient)
        } else if self.is_configured_out(path) {
            Some(NotRecovered::Configured)
        } else if NETWORK_FS.contains(&fstype) {
            Some(NotRecovered::Network)
        } else {
            None
        }
    }
}

fn normalize_path(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        "/".into()
    } else {
        t.to_string()
    }
}

fn is_below_transient_dir(path: &str) -> bool {
    TRANSIENT_DIRS.iter().any(|d| path.strip_prefix(d).is_some_and(|rest| rest.starts_with('/')))
}

/// Shell-style match of a whole string: `*` any run of bytes, `?` one byte.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it matched up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A descriptor reduced to what recovery uses, and the kernel name behind
/// each identity (to show differences in the names the system uses now).
#[derive(Debug, Clone)]
pub struct RecoveryView {
    pub layout: Layout,
    /// Identity (as in `layout`) → block id in the descriptor it came from.
    pub names: BTreeMap<String, String>,
}

/// The one normalisation of a descriptor into what recovery uses:
/// - disks are named by identity (WWN, serial, by-id; the kernel name only
///   when there is none), partitions by disk identity and number, RAID arrays
///   by UUID: a swap of kernel names is no difference;
/// - recorded mounts that `scope` does not recover are dropped, and so is the
///   list of excluded mounts (recovery never reads it);
/// - capture time, versions, free space, snapshots and the EFI boot order
///   (which the firmware changes at will) are cleared;
/// - items are sorted.
pub fn recovery_view(layout: &Layout, scope: &MountScope) -> RecoveryView {
    let mut l = layout.clone();
    let identities = identities(&l);
    let mut names = BTreeMap::new();
    for (id, identity) in &identities {
        names.insert(identity.clone(), id.clone());
    }
    for r in block_refs_mut(&mut l) {
        if let Some(identity) = identities.get(r.as_str()) {
            *r = identity.clone();
        }
    }
    for d in &mut l.disks {
        d.path.clear();
    }

    l.host.captured_at.clear();
    l.host.rescue_version.clear();
    l.host.kernel.clear();
    l.host.os_release.clear();
    l.excluded.clear();
    let fstype_of: BTreeMap<String, &'static str> = l.filesystems.iter().map(|f| (f.device.clone(), f.fstype.as_str())).collect();
    l.mounts.retain(|m| scope.classify(&m.path, fstype_of.get(&m.device).copied().unwrap_or("")).is_none());
    for f in &mut l.filesystems {
        f.used_bytes = 0;
        if let Some(b) = f.btrfs.as_mut() {
            // Snapshots are not recreated; subvolumes get new UUIDs when they are.
            b.subvolumes.retain(|s| !s.snapshot);
            for s in &mut b.subvolumes {
                s.uuid = None;
            }
        }
    }
    // Boot order and which entry is active change on every boot from the
    // firmware's menu; the set of entries is what matters.
    l.bootloader.efi_entries.sort_by(|a, b| a.num.cmp(&b.num));
    for e in &mut l.bootloader.efi_entries {
        e.active = false;
    }

    l.disks.sort_by(|a, b| a.name.cmp(&b.name));
    l.partitions.sort_by(|a, b| (&a.disk, a.number).cmp(&(&b.disk, b.number)));
    l.raids.sort_by(|a, b| a.name.cmp(&b.name));
    l.luks.sort_by(|a, b| a.name.cmp(&b.name));
    l.lvm_pvs.sort_by(|a, b| a.device.cmp(&b.device));
    l.lvm_vgs.sort_by(|a, b| a.name.cmp(&b.name));
    l.lvm_lvs.sort_by_key(|a| a.id());
    l.filesystems.sort_by(|a, b| a.device.cmp(&b.device));
    l.swaps.sort_by(|a, b| a.device.cmp(&b.device));
    l.mounts.sort_by(|a, b| a.path.cmp(&b.path));
    l.bootloader.boot_disks.sort();
    RecoveryView { layout: l, names }
}

/// Block id → identity, for every disk, partition and RAID array.
fn identities(l: &Layout) -> BTreeMap<String, String> {
    let mut disk_identity: BTreeMap<String, String> = l.disks.iter().map(|d| (d.name.clone(), d.identity())).collect();
    // Two disks claiming one identity (bridges that report the same serial):
    // the kernel name is all that tells them apart.
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for i in disk_identity.values() {
        *count.entry(i.as_str()).or_default() += 1;
    }
    let shared: Vec<String> = disk_identity.iter().filter(|(_, i)| count[i.as_str()] > 1).map(|(n, _)| n.clone()).collect();
    for n in shared {
        disk_identity.insert(n.clone(), n);
    }
    let mut out = disk_identity.clone();
    for p in &l.partitions {
        if let Some(d) = disk_identity.get(&p.disk) {
            out.insert(p.name.clone(), format!("{d}-part{}", p.number));
        }
    }
    for r in &l.raids {
        out.insert(r.name.clone(), format!("md-uuid-{}", r.uuid));
    }
    out
}

/// Every field of a descriptor that holds a block id of a disk, partition or
/// RAID array (LUKS and LVM names are chosen by the administrator and stable).
fn block_refs_mut(l: &mut Layout) -> Vec<&mut String> {
    let mut v: Vec<&mut String> = Vec::new();
    for d in &mut l.disks {
        v.push(&mut d.name);
    }
    for p in &mut l.partitions {
        v.push(&mut p.name);
        v.push(&mut p.disk);
    }
    for r in &mut l.raids {
        v.push(&mut r.name);
        v.extend(r.devices.iter_mut());
        v.extend(r.spares.iter_mut());
    }
    for x in &mut l.luks {
        v.push(&mut x.device);
    }
    for pv in &mut l.lvm_pvs {
        v.push(&mut pv.device);
    }
    for f in &mut l.filesystems {
        v.push(&mut f.device);
        v.extend(f.extra_devices.iter_mut());
    }
    for s in &mut l.swaps {
        v.push(&mut s.device);
    }
    for m in &mut l.mounts {
        v.push(&mut m.device);
    }
    v.extend(l.bootloader.boot_disks.iter_mut());
    v.extend(l.bootloader.esp.iter_mut());
    v
}

/// A recorded mount the recorded backup does not hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "gap", rename_all = "kebab-case")]
pub enum BackupGap {
    /// The descriptor records no backup at all.
    NoBackup,
    /// The backup record does not list what it holds (written by an older rescue).
    UnknownContents { created: String },
    /// Mounted since the backup was made.
    NewMount { path: String, created: String },
    /// Mounted then too, but another filesystem was.
    OtherFilesystem { path: String, created: String, backed_up: String, now: String },
}

impl std::fmt::Display for BackupGap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackupGap::NoBackup => write!(f, "no backup is recorded for this system: the image recreates the layout but knows of no data to restore"),
            BackupGap::UnknownContents { created } => {
                write!(f, "the backup of {created} does not record which filesystems it holds (made by an older rescue)")
            }
            BackupGap::NewMount { path, created } => write!(f, "{path}: a filesystem mounted since the backup of {created}; its data is in no backup"),
            BackupGap::OtherFilesystem { path, created, backed_up, now } => write!(
                f,
                "{path}: the backup of {created} holds the filesystem UUID {backed_up}, the layout now has UUID {now} there (the layout no longer matches the descriptor stored with the backup)"
            ),
        }
    }
}

/// The recorded mounts that the recorded backup does not hold.
pub fn backup_gaps(layout: &Layout, scope: &MountScope) -> Vec<BackupGap> {
    let Some(rec) = &layout.backup else {
        return vec![BackupGap::NoBackup];
    };
    if rec.mounts.is_empty() {
        return vec![BackupGap::UnknownContents { created: rec.created.clone() }];
    }
    let view = recovery_view(layout, scope);
    let mut gaps = Vec::new();
    for m in &view.layout.mounts {
        let uuid = view.layout.filesystems.iter().find(|f| f.device == m.device).map(|f| f.uuid.clone()).unwrap_or_default();
        match rec.mounts.iter().find(|b| b.path == m.path) {
            None => gaps.push(BackupGap::NewMount { path: m.path.clone(), created: rec.created.clone() }),
            Some(b) if b.uuid != uuid => {
                gaps.push(BackupGap::OtherFilesystem { path: m.path.clone(), created: rec.created.clone(), backed_up: b.uuid.clone(), now: uuid })
            }
            Some(_) => {}
        }
    }
    gaps
}

/// What a backup of `paths` (mount points of `layout`) holds, for its record.
pub fn backed_up_mounts(layout: &Layout, paths: &[String]) -> Vec<BackedUpMount> {
    layout
        .mounts
        .iter()
        .filter(|m| paths.contains(&m.path))
        .map(|m| BackedUpMount { path: m.path.clone(), uuid: layout.filesystem_on(&m.device).map(|f| f.uuid.clone()).unwrap_or_default() })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_like_the_shell_with_slashes() {
        let s = MountScope::new(&["/var/lib/docker/*".into(), "/scratch/".into(), "/srv/cache-?".into()]);
        assert!(s.is_configured_out("/var/lib/docker/overlay2/abc/merged"));
        assert!(!s.is_configured_out("/var/lib/docker"), "the directory itself is not below it");
        assert!(s.is_configured_out("/scratch"));
        assert!(!s.is_configured_out("/scratch2"));
        assert!(s.is_configured_out("/srv/cache-a"));
        assert!(!s.is_configured_out("/srv/cache-ab"));
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"a*b*c", b"axxbyyc"));
        assert!(!glob_match(b"a*b*c", b"axxbyy"));
    }

    #[test]
    fn transient_mounts_are_never_recovered() {
        let s = MountScope::default();
        for fstype in ["tmpfs", "overlay", "squashfs", "fuse", "fuse.sshfs", "fuseblk", "fuse.portal", "nsfs", "autofs", "proc", "devtmpfs"] {
            assert_eq!(s.classify("/mnt/x", fstype), Some(NotRecovered::Pseudo), "{fstype}");
        }
        for path in ["/run/user/1000", "/run/user/1000/doc", "/var/lib/docker/overlay2/x/merged", "/var/lib/containers/storage/overlay/y/merged"] {
            assert_eq!(s.classify(path, "ext4"), Some(NotRecovered::Transient), "{path}");
        }
        assert_eq!(s.classify("/var/lib/docker", "xfs"), None, "a dedicated filesystem at the runtime's directory is recorded");
        assert_eq!(s.classify("/home", "ext4"), None);
        assert_eq!(s.classify("/mnt/nas", "nfs4"), Some(NotRecovered::Network));
    }

    #[test]
    fn gaps_name_what_no_backup_holds() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/layouts/bios-gpt-ext4.toml");
        let mut l = Layout::load(std::path::Path::new(path)).unwrap();
        let s = MountScope::default();
        assert_eq!(backup_gaps(&l, &s), vec![BackupGap::NoBackup]);
        let all: Vec<String> = l.mounts.iter().map(|m| m.path.clone()).collect();
        l.backup = Some(crate::layout::BackupRecord { created: "then".into(), ..Default::default() });
        assert_eq!(backup_gaps(&l, &s), vec![BackupGap::UnknownContents { created: "then".into() }]);
        l.backup.as_mut().unwrap().mounts = backed_up_mounts(&l, &all);
        assert_eq!(backup_gaps(&l, &s), vec![], "every mount backed up");
        // A filesystem mounted since, and one made anew where another was backed up.
        let mut m = l.mounts[0].clone();
        m.path = "/data".into();
        l.mounts.push(m);
        let first = l.mounts[0].path.clone();
        let dev = l.mounts[0].device.clone();
        l.filesystems.iter_mut().find(|f| f.device == dev).unwrap().uuid = "new-uuid".into();
        let gaps = backup_gaps(&l, &s);
        assert!(gaps.contains(&BackupGap::NewMount { path: "/data".into(), created: "then".into() }), "{gaps:?}");
        assert!(gaps.iter().any(|g| matches!(g, BackupGap::OtherFilesystem { path, now, .. } if *path == first && now == "new-uuid")), "{gaps:?}");
        // Mounts recovery does not recreate need no backup.
        l.mounts.last_mut().unwrap().path = "/run/user/1000/x".into();
        assert!(!backup_gaps(&l, &s).iter().any(|g| matches!(g, BackupGap::NewMount { .. })));
    }
}
