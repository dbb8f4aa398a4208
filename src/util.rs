//! Small helpers shared by every module.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Write a file atomically: a temporary file in the same directory, fsync,
/// then rename over the target. A crash leaves the old file or the new one,
/// never half of either.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating directory {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(data).with_context(|| format!("writing {}", path.display()))?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).with_context(|| format!("renaming the new file into place at {}", path.display()))?;
    Ok(())
}

/// Human-readable byte count (binary units).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Now, as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Whether we run as root (most commands that touch disks need it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The whole disk (kernel name) a block device belongs to: `/dev/sdb1` and
/// `/dev/disk/by-label/X` pointing at it give `sdb`; a disk gives itself.
pub fn disk_of_device(dev: &std::path::Path) -> Option<String> {
    let real = std::fs::canonicalize(dev).ok()?;
    let name = real.file_name()?.to_string_lossy().into_owned();
    // A partition's disk is the directory above it in sysfs.
    let disk = std::fs::canonicalize(std::path::Path::new("/sys/class/block").join(&name))
        .ok()
        .filter(|p| p.join("partition").exists())
        .and_then(|p| p.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or(name);
    Some(disk)
}

/// Whether `path` is the root of a mount (statx `STATX_ATTR_MOUNT_ROOT`, Linux
/// 5.8 and later). Comparing device numbers with the parent cannot tell: a
/// btrfs subvolume has a device number of its own without being mounted. When
/// the kernel cannot tell, it counts as one.
pub fn is_mount_root(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return true };
    #[allow(unsafe_code)]
    // SAFETY: statx is all-integer plain data, for which zero is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    #[allow(unsafe_code)]
    // SAFETY: `c` is a NUL-terminated path that outlives the call; `stx` is a valid,
    // writable statx the kernel fills.
    let r = unsafe { libc::statx(libc::AT_FDCWD, c.as_ptr(), libc::AT_SYMLINK_NOFOLLOW, 0, &mut stx) };
    let bit = libc::STATX_ATTR_MOUNT_ROOT as u64;
    r != 0 || stx.stx_attributes_mask & bit == 0 || stx.stx_attributes & bit != 0
}

/// One line of `/proc/self/mountinfo`: the filesystem's `major:minor`, the
/// mount source and the mount point (unescaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub devnum: String,
    pub source: String,
    pub target: PathBuf,
}

/// What is mounted now, in mount order: the one reader of mountinfo.
pub fn mountinfo() -> Result<Vec<MountInfo>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    Ok(parse_mountinfo(&text))
}

/// [`mountinfo`] of a text; lines that do not parse are left out.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            Some(MountInfo { devnum: f.get(2)?.to_string(), source: unescape_mountinfo(f.get(sep + 2)?), target: PathBuf::from(unescape_mountinfo(f.get(4)?)) })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
pub fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// The `major:minor` of a block device node (as mountinfo writes it).
pub fn devnum_of_path(path: &str) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let rdev = std::fs::metadata(path).ok()?.rdev();
    Some(format!("{}:{}", libc::major(rdev), libc::minor(rdev)))
}

/// The id of a user (`/etc/passwd`) or group (`/etc/group`) name, read from
/// the file itself rather than through NSS: the portable static build of
/// rescue cannot load NSS modules, and the rescue system has only these files.
pub fn account_id(file: &Path, name: &str) -> Result<Option<u32>> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    Ok(account_id_in(&text, name))
}

/// [`account_id`] on the text of a passwd or group file (`name:x:id:...`).
pub fn account_id_in(text: &str, name: &str) -> Option<u32> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let mut f = l.split(':');
        (f.next() == Some(name)).then(|| f.nth(1).and_then(|id| id.trim().parse().ok())).flatten()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod mountinfo_tests {
    use super::*;

    #[test]
    fn mountinfo_lines_give_devnum_source_and_unescaped_target() {
        let text = "36 35 98:0 / /mnt/my\\040disk rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n\
                    37 36 0:42 / /run/user/0 rw shared:2 - tmpfs tmpfs rw\n\
                    garbage line\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].devnum.as_str(), m[0].source.as_str(), m[0].target.as_path()), ("98:0", "/dev/root", Path::new("/mnt/my disk")));
        assert_eq!(m[1].target, PathBuf::from("/run/user/0"));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_come_from_the_files() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n# a comment\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\nbad:x:zz:1::/:/bin/sh\n";
        assert_eq!(account_id_in(passwd, "www-data"), Some(33));
        assert_eq!(account_id_in(passwd, "root"), Some(0));
        assert_eq!(account_id_in(passwd, "www"), None);
        assert_eq!(account_id_in(passwd, "bad"), None);
        assert_eq!(account_id_in("adm:x:4:syslog,alice\n", "adm"), Some(4));
        assert_eq!(account_id(Path::new("/nonexistent/passwd"), "root").unwrap(), None);
        assert_eq!(account_id(Path::new("/etc/passwd"), "root").unwrap(), Some(0));
    }
}
