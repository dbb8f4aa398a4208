//! The target root: the directory recovery mounts the recreated tree under
//! (`/mnt/local`), and the record of the mounts `rescue` made there.
//!
//! A [`TargetRoot`] exists only after validation (absolute, normalized, not
//! `/`), and a path of the descriptor reaches the disk under it only through
//! [`TargetRoot::join`] (built on [`beneath`]), which refuses anything that
//! could leave the root. The mounts recovery makes are recorded in a state
//! file under /run ([`TargetRoot::record_mount`]): only those count as left
//! over from an earlier attempt, and only those are ever unmounted by
//! `rescue`. Anything else mounted there belongs to someone else.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::error::input_error;

/// Where the records of our mounts live: gone after a reboot, like the mounts.
const STATE_DIR: &str = "/run/rescue/targets";

/// Why `path` is not an absolute, normalized path (`/a/b`: no `.`, `..`,
/// `//` or trailing `/`), or `None` when it is. The one definition of
/// "normalized" for the descriptor's paths and the target root.
pub fn not_normalized(path: &str) -> Option<&'static str> {
    if !path.starts_with('/') {
        return Some("it is not an absolute path (it must start with /)");
    }
    if path == "/" {
        return None;
    }
    if path.contains('\0') {
        return Some("it contains a NUL byte");
    }
    let rest = &path[1..];
    if rest.ends_with('/') {
        return Some("it ends with /");
    }
    for c in rest.split('/') {
        match c {
            "" => return Some("it contains // (an empty component)"),
            "." => return Some("it contains a . component"),
            ".." => return Some("it contains a .. component, which could leave the target root"),
            _ => {}
        }
    }
    None
}

/// `path` (absolute or relative, as the descriptor writes it) below `root`.
/// Every component must be a plain name: `..`, `.` and empty components are
/// refused, so the result can never name anything outside `root`.
pub fn beneath(root: &Path, path: &str) -> Result<PathBuf> {
    let rel = path.trim_start_matches('/');
    let bad = || input_error(format!("the path {path:?} is not a plain path below {}: it must have no `..`, `.` or empty components", root.display()));
    if rel.is_empty() {
        return Ok(root.to_path_buf());
    }
    let mut out = root.to_path_buf();
    for c in rel.split('/') {
        if c.is_empty() || c == "." || c == ".." || c.contains('\0') {
            return Err(bad());
        }
        out.push(c);
    }
    // What `push` did must be what we meant: every component a plain name.
    if !Path::new(rel).components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(bad());
    }
    Ok(out)
}

/// The directory the recreated tree is mounted under. Constructed only by
/// validation: absolute, normalized, and not `/` (which would put the
/// recovered system over the running one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PathBuf", into = "PathBuf")]
pub struct TargetRoot(PathBuf);

impl TargetRoot {
    pub fn new(path: impl Into<PathBuf>) -> Result<TargetRoot> {
        let path = path.into();
        let Some(text) = path.to_str() else {
            return Err(input_error(format!("the target root {} is not valid UTF-8", path.display())));
        };
        if let Some(why) = not_normalized(text) {
            return Err(input_error(format!("the target root {text:?} cannot be used: {why}; give an absolute path such as /mnt/local")));
        }
        if text == "/" {
            return Err(input_error(
                "the target root cannot be / (the recovered system would be mounted over the running one); give an empty directory such as /mnt/local",
            ));
        }
        Ok(TargetRoot(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Refuse a root that reaches somewhere else through a symlink (a
    /// `/mnt/local` linking to `/` would put the recovered system over the
    /// running one). A root that does not exist yet is fine: it is made as a
    /// plain directory.
    pub fn check_no_symlink(&self) -> Result<()> {
        match std::fs::canonicalize(&self.0) {
            Ok(real) if real != self.0 => Err(input_error(format!(
                "the target root {} is reached through a symlink (it is really {}); give the real directory with --target-root",
                self.display(),
                real.display()
            ))),
            _ => Ok(()),
        }
    }

    pub fn display(&self) -> std::path::Display<'_> {
        self.0.display()
    }

    /// A path of the recovered system (`/home`, `etc/fstab`) under the
    /// target root. The only way recovery turns such a path into a place on
    /// this machine's filesystem.
    pub fn join(&self, path: &str) -> Result<PathBuf> {
        beneath(&self.0, path)
    }

    /// The state file listing our mounts under this root.
    fn state_file(&self) -> PathBuf {
        let mut name = String::new();
        for b in self.0.as_os_str().as_encoded_bytes() {
            if b.is_ascii_alphanumeric() || *b == b'.' || *b == b'-' {
                name.push(char::from(*b));
            } else {
                name.push_str(&format!("_{b:02x}"));
            }
        }
        Path::new(STATE_DIR).join(format!("{name}.json"))
    }

    fn read_records(&self) -> Vec<MountRecord> {
        std::fs::read(self.state_file()).ok().and_then(|b| serde_json::from_slice::<StateFile>(&b).ok()).map(|s| s.mounts).unwrap_or_default()
    }

    fn write_records(&self, mounts: Vec<MountRecord>) -> Result<()> {
        let file = self.state_file();
        if mounts.is_empty() {
            return match std::fs::remove_file(&file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).with_context(|| format!("removing {}", file.display())),
                _ => Ok(()),
            };
        }
        let state = StateFile { target_root: self.0.clone(), mounts };
        let text = serde_json::to_string_pretty(&state).context("writing the mount record")?;
        crate::util::write_atomic(&file, text.as_bytes(), 0o600).with_context(|| format!("recording the mounts of {} in {}", self.display(), file.display()))
    }

    /// Record that `rescue` mounted a filesystem at `mountpoint` (just now):
    /// only recorded mounts are ever taken as ours.
    pub fn record_mount(&self, mountpoint: &Path) -> Result<()> {
        let Some(devnum) = mountinfo()?.into_iter().rev().find(|m| m.target == mountpoint).map(|m| m.devnum) else {
            anyhow::bail!("{} is not mounted after mounting it", mountpoint.display());
        };
        let mut mounts = self.our_mounts_from(&mountinfo()?);
        mounts.retain(|m| m.target != mountpoint);
        mounts.push(MountRecord { target: mountpoint.to_path_buf(), devnum });
        self.write_records(mounts)
    }

    /// Forget a mount of ours (it was unmounted).
    pub fn forget_mount(&self, mountpoint: &Path) -> Result<()> {
        let mut mounts = self.read_records();
        mounts.retain(|m| m.target != mountpoint);
        self.write_records(mounts)
    }

    /// The mounts `rescue` made under this root that are still there (same
    /// place, same filesystem), deepest first.
    pub fn our_mounts(&self) -> Result<Vec<MountRecord>> {
        let ours = self.our_mounts_from(&mountinfo()?);
        // Records of mounts that are gone (unmounted by hand, or the same
        // place now holds another filesystem) are dropped: they must not
        // vouch for a later mount that is not ours.
        if ours.len() != self.read_records().len() {
            self.write_records(ours.clone())?;
        }
        Ok(ours)
    }

    fn our_mounts_from(&self, now: &[MountRecord]) -> Vec<MountRecord> {
        let mut ours: Vec<MountRecord> = self.read_records().into_iter().filter(|r| now.contains(r)).collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.target.as_os_str().len()));
        ours
    }

    /// Unmount every mount of ours under this root (deepest first) and forget
    /// it; nothing else is touched. Returns the mount points.
    pub fn unmount_ours(&self) -> Result<Vec<PathBuf>> {
        let mut done = Vec::new();
        for m in self.our_mounts()? {
            crate::cmd::Cmd::new("umount").arg(&m.target).run()?;
            self.forget_mount(&m.target)?;
            done.push(m.target);
        }
        // Records of mounts that are gone (unmounted by hand) go too.
        self.our_mounts()?;
        Ok(done)
    }
}

impl Default for TargetRoot {
    /// `recover.target-root`'s default.
    fn default() -> Self {
        TargetRoot(PathBuf::from("/mnt/local"))
    }
}

impl TryFrom<PathBuf> for TargetRoot {
    type Error = String;
    fn try_from(p: PathBuf) -> std::result::Result<Self, String> {
        TargetRoot::new(p).map_err(|e| format!("{e:#}"))
    }
}

impl From<TargetRoot> for PathBuf {
    fn from(t: TargetRoot) -> PathBuf {
        t.0
    }
}

impl std::str::FromStr for TargetRoot {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        TargetRoot::try_from(PathBuf::from(s))
    }
}

/// A mount: where, and which filesystem (`major:minor` as mountinfo writes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    pub target: PathBuf,
    pub devnum: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct StateFile {
    target_root: PathBuf,
    mounts: Vec<MountRecord>,
}

/// What is mounted now (mount point and filesystem), in mount order.
fn mountinfo() -> Result<Vec<MountRecord>> {
    Ok(crate::util::mountinfo()?.into_iter().map(|m| MountRecord { target: m.target, devnum: m.devnum }).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_target_root_is_absolute_normalized_and_not_slash() {
        for bad in ["", "mnt/local", "./x", "/", "/mnt/../etc", "/mnt/./local", "/mnt//local", "/mnt/local/", "/.."] {
            let e = TargetRoot::new(bad).unwrap_err();
            assert_eq!(crate::error::exit_code_for(&e), crate::error::EXIT_INPUT, "{bad:?}");
        }
        assert!(format!("{:#}", TargetRoot::new("/").unwrap_err()).contains("cannot be /"));
        assert!(format!("{:#}", TargetRoot::new("x").unwrap_err()).contains("not an absolute path"));
        assert_eq!(TargetRoot::new("/mnt/local").unwrap().path(), Path::new("/mnt/local"));
        assert!("relative".parse::<TargetRoot>().is_err() && "/X".parse::<TargetRoot>().is_ok());
        // Through serde (the config) as well.
        #[derive(Deserialize)]
        struct C {
            #[allow(dead_code)]
            r: TargetRoot,
        }
        assert!(toml::from_str::<C>("r = \"/mnt/../\"").is_err());
        assert!(toml::from_str::<C>("r = \"/srv/t\"").is_ok());
    }

    #[test]
    fn nothing_joined_under_the_root_can_leave_it() {
        let root = TargetRoot::new("/mnt/local").unwrap();
        assert_eq!(root.join("/").unwrap(), Path::new("/mnt/local"));
        assert_eq!(root.join("/home/user").unwrap(), Path::new("/mnt/local/home/user"));
        assert_eq!(root.join("etc/fstab").unwrap(), Path::new("/mnt/local/etc/fstab"));
        for bad in ["/../../../../srv/x", "/data/../../../../../etc", "..", "/a/./b", "/a//b", "a/", "/a/..", "/a\0b"] {
            let e = root.join(bad).unwrap_err();
            assert!(format!("{e:#}").contains("not a plain path below /mnt/local"), "{bad:?}: {e:#}");
        }
    }

    #[test]
    fn normalized_paths() {
        assert_eq!(not_normalized("/"), None);
        assert_eq!(not_normalized("/boot/efi"), None);
        assert!(not_normalized("boot").unwrap().contains("absolute"));
        assert!(not_normalized("/x/../y").unwrap().contains(".."));
        assert!(not_normalized("/x/./y").unwrap().contains(". component"));
        assert!(not_normalized("/x//y").unwrap().contains("//"));
        assert!(not_normalized("/x/").unwrap().contains("ends with /"));
    }

    #[test]
    fn a_target_root_through_a_symlink_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(d.path()).unwrap();
        std::os::unix::fs::symlink("/", real.join("link")).unwrap();
        let e = TargetRoot::new(real.join("link")).unwrap().check_no_symlink().unwrap_err();
        assert!(format!("{e:#}").contains("really /"), "{e:#}");
        assert!(TargetRoot::new(real.join("absent")).unwrap().check_no_symlink().is_ok());
        assert!(TargetRoot::new(real).unwrap().check_no_symlink().is_ok());
    }

    #[test]
    fn state_files_of_different_roots_differ() {
        let a = TargetRoot::new("/a-b").unwrap().state_file();
        let b = TargetRoot::new("/a/b").unwrap().state_file();
        assert_ne!(a, b);
        assert!(a.starts_with(STATE_DIR), "{}", a.display());
    }
}
