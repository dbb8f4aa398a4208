//! Destination URLs and getting at them: `file:///path` (or a plain path),
//! `nfs://host[:port]/export/path`, `cifs://host/share/path`,
//! `usb:///dev/disk/by-label/LABEL[/path]` or `usb://LABEL[/path]`,
//! `iso:///backup`, and for the rsync method `rsync://host/module/path` or
//! `host:/path`. Network and USB destinations are mounted on a temporary
//! directory for as long as the [`Opened`] value lives.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use super::config::{BackupConfig, MountOptions};
use crate::cmd::Cmd;
use crate::needs::{Needs, Runs, When};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local path (`file:///path` or `/path`).
    Local(PathBuf),
    Nfs {
        host: String,
        port: Option<u16>,
        path: String,
    },
    Cifs {
        host: String,
        path: String,
    },
    /// A USB disk: a device path or a filesystem label, and a path inside it.
    Usb {
        device: Option<PathBuf>,
        label: Option<String>,
        path: String,
    },
    /// Inside the rescue ISO (staged in `backup.iso-dir` when writing).
    Iso {
        path: String,
    },
    /// The rsync method: `rsync://host/module/path` or `host:/path`, kept as written.
    Rsync(String),
    /// S3 object storage: `s3://BUCKET/PREFIX` ([`crate::backup::s3`]).
    S3(crate::backup::s3::S3Url),
}

impl Location {
    pub fn parse(s: &str) -> Result<Location> {
        let bad = |why: &str| crate::error::input_error(format!("bad backup destination {s:?}: {why}"));
        if let Some(rest) = s.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(bad("file:// URLs need an absolute path, e.g. file:///srv/backup"));
            }
            return Ok(Location::Local(PathBuf::from(rest)));
        }
        if let Some(rest) = s.strip_prefix("nfs://") {
            let (hostport, path) = rest.split_once('/').ok_or_else(|| bad("expected nfs://host/export/path"))?;
            let (host, port) = split_port(hostport).map_err(|e| bad(&e))?;
            if host.is_empty() {
                return Err(bad("no NFS server named"));
            }
            return Ok(Location::Nfs { host, port, path: format!("/{path}") });
        }
        if let Some(rest) = s.strip_prefix("cifs://") {
            let (host, path) = rest.split_once('/').ok_or_else(|| bad("expected cifs://host/share/path"))?;
            if host.is_empty() || path.is_empty() {
                return Err(bad("expected cifs://host/share/path"));
            }
            return Ok(Location::Cifs { host: host.to_string(), path: format!("/{path}") });
        }
        if let Some(rest) = s.strip_prefix("usb://") {
            return Location::parse_usb(rest).map_err(bad);
        }
        if let Some(rest) = s.strip_prefix("iso://") {
            return Ok(Location::Iso { path: rest.trim_start_matches('/').to_string() });
        }
        if let Some(u) = crate::backup::s3::S3Url::parse(s)? {
            return Ok(Location::S3(u));
        }
        if s.starts_with("rsync://") {
            return Ok(Location::Rsync(s.trim_end_matches('/').to_string()));
        }
        if let Some(scheme) = s.split_once("://").map(|p| p.0) {
            return Err(bad(&format!("unknown scheme {scheme}:// (use file, nfs, cifs, usb, iso, rsync, s3)")));
        }
        if !s.starts_with('/') && !s.starts_with('.') {
            if let Some((host, path)) = s.split_once(':') {
                if !host.is_empty() && !host.contains('/') && path.starts_with('/') {
                    return Ok(Location::Rsync(s.trim_end_matches('/').to_string()));
                }
            }
        }
        Ok(Location::Local(PathBuf::from(s)))
    }

    /// `usb://REST`: `/dev/NAME[/path]`, `/dev/mapper/NAME[/path]`,
    /// `/dev/disk/by-*/NAME[/path]` or `LABEL[/path]`. Err: what is wrong.
    pub fn parse_usb(rest: &str) -> std::result::Result<Location, &'static str> {
        if let Some(p) = rest.strip_prefix('/') {
            let comps: Vec<&str> = p.split('/').collect();
            let n = match comps.as_slice() {
                ["dev", "disk", _, _, ..] => 4,
                ["dev", "mapper", _, ..] => 3,
                ["dev", _, ..] => 2,
                _ => return Err("expected usb:///dev/disk/by-label/LABEL or usb://LABEL"),
            };
            if comps.len() < n {
                return Err("expected usb:///dev/disk/by-label/LABEL or usb://LABEL");
            }
            let dev = format!("/{}", comps[..n].join("/"));
            let path = comps[n..].join("/");
            let label = dev.strip_prefix("/dev/disk/by-label/").map(str::to_string);
            return Ok(Location::Usb { device: Some(PathBuf::from(dev)), label, path });
        }
        let (label, path) = rest.split_once('/').unwrap_or((rest, ""));
        if label.is_empty() {
            return Err("no USB filesystem label");
        }
        Ok(Location::Usb { device: None, label: Some(label.to_string()), path: path.to_string() })
    }

    /// What the rescue system needs to reach the backup here (`url` as written).
    pub fn rescue_needs(&self, url: &str) -> Needs {
        let mut n = Needs::default();
        let why = format!("to reach the backup at {url}");
        match self {
            Location::Local(_) => {}
            Location::Nfs { .. } => {
                n.program("mount.nfs", Runs::Recover, When::Always, why.clone());
                n.program("mount", Runs::Recover, When::Always, why.clone());
                n.program("timeout", Runs::Recover, When::Always, "to give up on a backup server that does not answer");
                n.module("nfs", true, why.clone());
                n.module("nfsv4", false, why);
            }
            Location::Cifs { .. } => {
                n.program("mount.cifs", Runs::Recover, When::Always, why.clone());
                n.program("mount", Runs::Recover, When::Always, why.clone());
                n.program("timeout", Runs::Recover, When::Always, "to give up on a backup server that does not answer");
                n.module("cifs", true, why);
            }
            Location::Usb { .. } | Location::Iso { .. } => {
                n.program("blkid", Runs::Recover, When::Always, format!("to find the medium holding the backup at {url}"));
                n.program("mount", Runs::Recover, When::Always, why.clone());
                n.program("timeout", Runs::Recover, When::Always, "to give up on a medium that does not answer");
            }
            Location::Rsync(_) => n.program("rsync", Runs::Recover, When::Always, format!("to restore from {url}")),
            // rescue's own S3 client: only the network, which the image always has.
            Location::S3(_) => {}
        }
        n
    }

    /// The path inside the destination (for a file target: the file).
    fn inner_path(&self) -> String {
        match self {
            Location::Local(p) => p.display().to_string(),
            Location::Nfs { path, .. } | Location::Cifs { path, .. } => path.clone(),
            Location::Usb { path, .. } | Location::Iso { path } => path.clone(),
            Location::Rsync(s) => s.clone(),
            Location::S3(u) => u.to_string(),
        }
    }
}

fn split_port(hp: &str) -> std::result::Result<(String, Option<u16>), String> {
    match hp.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hp.starts_with('[') => {
            let port = p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?;
            Ok((h.trim_matches(|c| c == '[' || c == ']').to_string(), Some(port)))
        }
        _ => Ok((hp.to_string(), None)),
    }
}

/// A mount made by rescue, unmounted (and its directory removed) on drop.
pub struct MountGuard {
    dir: Option<tempfile::TempDir>,
    /// What was mounted (`/dev/sdb1`, `host:/export`).
    source: String,
}

impl MountGuard {
    pub fn path(&self) -> &Path {
        self.dir.as_ref().map(|d| d.path()).unwrap_or(Path::new("/"))
    }

    fn mount(what: &str, fstype: Option<&str>, options: &MountOptions, timeout: u64) -> Result<MountGuard> {
        Self::mount_for("the backup destination", what, fstype, options, timeout)
    }

    /// Mount `what`; `purpose` names it in the error ("the backup destination").
    fn mount_for(purpose: &str, what: &str, fstype: Option<&str>, options: &MountOptions, timeout: u64) -> Result<MountGuard> {
        std::fs::create_dir_all("/run/rescue").context("creating /run/rescue")?;
        let dir = tempfile::Builder::new().prefix("dest-").tempdir_in("/run/rescue").context("creating a mount point in /run/rescue")?;
        let mut cmd = Cmd::new("timeout").args([format!("{timeout}"), "mount".to_string()]);
        if let Some(t) = fstype {
            cmd = cmd.args(["-t", t]);
        }
        if !options.is_empty() {
            // A password in the options never reaches the log or an error.
            cmd = cmd.arg("-o").secret_arg(options.reveal(), options.masked());
        }
        cmd = cmd.arg(what).arg(dir.path());
        cmd.run().with_context(|| format!("mounting {purpose} {what} (gave up after {timeout} s)"))?;
        Ok(MountGuard { dir: Some(dir), source: what.to_string() })
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            if Cmd::new("umount").arg(d.path()).run().is_err() {
                let _ = Cmd::new("umount").arg("-l").arg(d.path()).run();
            }
        }
    }
}

/// A destination made reachable as a local directory.
pub struct Opened {
    location: Location,
    /// The local directory of the destination (for a file target: the file's directory).
    dir: PathBuf,
    /// The file name, for file targets (archive commands).
    file: Option<String>,
    _mount: Option<MountGuard>,
}

fn is_archive_name(p: &str) -> bool {
    let p = p.strip_suffix(crate::archive::age::SUFFIX).unwrap_or(p);
    [".tar", ".tar.zst", ".tar.gz", ".tzst", ".tgz", ".tar.zstd"].iter().any(|s| p.ends_with(s))
}

/// Fail fast, with a clear message, when a server does not answer.
pub fn check_reachable(what: &str, host: &str, port: u16, timeout: u64) -> Result<()> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve the {what} server name {host:?}: check the name or use an IP address"))?
        .collect();
    let mut last = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, Duration::from_secs(timeout.max(1))) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    let e = last.map(|e| e.to_string()).unwrap_or_else(|| "no address".into());
    anyhow::bail!(
        "the {what} server {host} port {port} is unreachable ({e}); nothing was written. Check that the server is up and that the port is open (waited at most {timeout} s)"
    )
}

impl Opened {
    /// Make the destination reachable. `for_write` creates local
    /// directories (and for iso:// uses the staging directory); without it
    /// every mount is read-only (`ro`): reading a backup never writes to
    /// its medium, not even a superblock.
    /// Destinations whose path ends in an archive name (`.tar.zst`...)
    /// are file targets: the directory above is mounted.
    pub fn open(loc: &Location, cfg: &BackupConfig, for_write: bool) -> Result<Opened> {
        let inner = loc.inner_path();
        let (dir_part, file) = if is_archive_name(&inner) {
            let p = Path::new(&inner);
            (p.parent().map(|d| d.display().to_string()).unwrap_or_default(), p.file_name().map(|f| f.to_string_lossy().into_owned()))
        } else {
            (inner.clone(), None)
        };
        let timeout = cfg.timeout;
        let extra = cfg.mount_options.clone().unwrap_or_default();
        let access = MountOptions::new(if for_write { "" } else { "ro" });
        let (dir, mount) = match loc {
            Location::Local(_) => {
                let d = if dir_part.is_empty() { PathBuf::from(".") } else { PathBuf::from(&dir_part) };
                (d, None)
            }
            Location::Nfs { host, port, .. } => {
                check_reachable("NFS", host, port.unwrap_or(2049), timeout)?;
                let mut opts = format!("soft,timeo={},retrans=2,nolock", timeout * 10);
                if let Some(p) = port {
                    opts.push_str(&format!(",port={p}"));
                }
                let opts = MountOptions::new(opts).and(&extra).and(&access);
                let export = if dir_part.is_empty() { "/".to_string() } else { dir_part.clone() };
                let g = MountGuard::mount(&format!("{host}:{export}"), Some("nfs"), &opts, timeout * 3)?;
                (g.path().to_path_buf(), Some(g))
            }
            Location::Cifs { host, .. } => {
                check_reachable("CIFS", host, 445, timeout)?;
                // The share is the first component; the rest is a directory inside it.
                let trimmed = dir_part.trim_start_matches('/');
                let (share, sub) = trimmed.split_once('/').unwrap_or((trimmed, ""));
                let opts = cfg.mount_options.clone().unwrap_or_else(|| MountOptions::new("guest")).and(&access);
                let g = MountGuard::mount(&format!("//{host}/{share}"), Some("cifs"), &opts, timeout * 3)?;
                let d = g.path().join(sub);
                (d, Some(g))
            }
            Location::Usb { device, label, .. } => {
                let dev = resolve_usb(device.as_deref(), label.as_deref())?;
                let g = MountGuard::mount(&dev.display().to_string(), None, &extra.and(&access), timeout * 3)?;
                let base = if dir_part.is_empty() { g.path().join("rescue") } else { g.path().join(dir_part.trim_start_matches('/')) };
                (base, Some(g))
            }
            Location::Iso { .. } => {
                let staged = cfg.iso_dir.join(dir_part.trim_start_matches('/'));
                if for_write || staged.exists() {
                    (staged, None)
                } else {
                    let (g, d) = mount_iso_medium(dir_part.trim_start_matches('/'), timeout * 3)?;
                    (d, Some(g))
                }
            }
            Location::Rsync(s) => {
                crate::bail_input!("{s} is an rsync destination: it holds a file tree, not an archive file (use it as backup.url for mkbackuponly/restoreonly)")
            }
            Location::S3(u) => {
                crate::bail_input!("{u} is object storage: it holds objects, not files (use it as backup.url for mkbackup, restoreonly and recover)")
            }
        };
        if for_write {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {} on the backup destination", dir.display()))?;
        }
        Ok(Opened { location: loc.clone(), dir, file, _mount: mount })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The local block device the destination was mounted from (usb://, the
    /// ISO medium): recovery must never pick its disk as a target.
    pub fn device(&self) -> Option<PathBuf> {
        self._mount.as_ref().map(|m| m.source.as_str()).filter(|s| s.starts_with("/dev/")).map(PathBuf::from)
    }

    /// The archive file path, for destinations that name a file.
    pub fn file_path(&self) -> Result<PathBuf> {
        match &self.file {
            Some(f) => Ok(self.dir.join(f)),
            None => crate::bail_input!("{} does not name an archive file: end it with .tar.zst, .tar.gz or .tar (and .age when encrypted)", self.display()),
        }
    }

    pub fn display(&self) -> String {
        match &self.location {
            Location::Local(p) => p.display().to_string(),
            Location::Nfs { host, path, .. } => format!("nfs://{host}{path}"),
            Location::Cifs { host, path } => format!("cifs://{host}{path}"),
            Location::Usb { device, label, path } => {
                format!("usb:{}/{}", device.as_ref().map(|d| d.display().to_string()).or(label.clone()).unwrap_or_default(), path)
            }
            Location::Iso { path } => format!("iso:///{path}"),
            Location::Rsync(s) => s.clone(),
            Location::S3(u) => u.to_string(),
        }
    }
}

/// Read one file from a USB disk (a [`Location::Usb`], e.g. `usb://KEYS/host/cryptroot.key`):
/// its filesystem is mounted read-only on a temporary directory for the read
/// only. A disk that is not there yet is waited for up to `wait` (a stick
/// plugged in just now takes a few seconds to appear). Returns the contents
/// and the device read from.
pub fn read_usb_file(loc: &Location, wait: Duration, timeout: u64) -> Result<(Vec<u8>, PathBuf)> {
    let Location::Usb { device, label, path } = loc else {
        anyhow::bail!("{loc:?} is not a usb:// location");
    };
    let dev = resolve_usb_waiting(device.as_deref(), label.as_deref(), wait)?;
    let what = match label {
        Some(l) => format!("{} (label {l})", dev.display()),
        None => dev.display().to_string(),
    };
    let mount = MountGuard::mount_for("the USB disk", &dev.display().to_string(), None, &MountOptions::new("ro"), timeout)?;
    let data = read_file_in(mount.path(), path, &what)?;
    Ok((data, dev))
}

/// `path` below the mounted filesystem `root` of `what`, with errors that say what is there instead.
fn read_file_in(root: &Path, path: &str, what: &str) -> Result<Vec<u8>> {
    let rel = path.trim_matches('/');
    if rel.is_empty() {
        anyhow::bail!("no file named on {what}: write usb://LABEL/path/to/file");
    }
    let file = root.join(rel);
    match std::fs::read(&file) {
        Ok(data) if data.is_empty() => anyhow::bail!("/{rel} on {what} is empty"),
        Ok(data) => Ok(data),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = Path::new(rel).parent().filter(|p| !p.as_os_str().is_empty());
            let dir = root.join(parent.unwrap_or(Path::new("")));
            let shown = format!("/{}", parent.map(|p| p.display().to_string()).unwrap_or_default());
            match std::fs::read_dir(&dir) {
                Ok(rd) => {
                    let mut names: Vec<String> = rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
                    names.sort();
                    let listing = if names.is_empty() { "nothing".to_string() } else { names.join(", ") };
                    anyhow::bail!("there is no /{rel} on {what} ({shown} holds {listing}); copy the file there or correct the path")
                }
                Err(_) => anyhow::bail!("there is no /{rel} on {what} (no directory {shown}); copy the file there or correct the path"),
            }
        }
        Err(e) => Err(e).with_context(|| format!("reading /{rel} on {what}")),
    }
}

/// [`resolve_usb`], retried once a second for up to `wait`.
fn resolve_usb_waiting(device: Option<&Path>, label: Option<&str>, wait: Duration) -> Result<PathBuf> {
    let start = std::time::Instant::now();
    loop {
        match resolve_usb(device, label) {
            Ok(d) => return Ok(d),
            Err(e) if wait.is_zero() => return Err(e),
            Err(e) if start.elapsed() >= wait => return Err(anyhow::anyhow!("{e:#} (waited {} s for it)", wait.as_secs())),
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

fn resolve_usb(device: Option<&Path>, label: Option<&str>) -> Result<PathBuf> {
    if let Some(d) = device {
        if d.exists() {
            return Ok(d.to_path_buf());
        }
    }
    if let Some(l) = label {
        // Without udev /dev/disk/by-label does not exist: ask blkid.
        let out = Cmd::new("blkid").args(["-c", "/dev/null", "-L", l]).ok_codes(&[2]).output()?;
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !dev.is_empty() {
            return Ok(PathBuf::from(dev));
        }
        anyhow::bail!("no filesystem with the label {l:?} found: plug in the USB disk, or format one with that label (e.g. mkfs.ext4 -L {l} /dev/sdX1)");
    }
    anyhow::bail!("the USB device {} does not exist: plug in the disk or check the URL", device.map(|d| d.display().to_string()).unwrap_or_default())
}

/// The label `rescue mkrescue` gives its ISO.
const ISO_LABEL: &str = "RESCUE";

/// Find the rescue medium holding the backup (the ISO we booted from, on a
/// CD drive or written to a USB stick): every ISO 9660 device, ours (label
/// `RESCUE`) first, is mounted read-only until one has `dir`.
fn mount_iso_medium(dir: &str, timeout: u64) -> Result<(MountGuard, PathBuf)> {
    let mut devices: Vec<String> = Vec::new();
    let scan = Cmd::new("blkid").args(["-c", "/dev/null", "-t", "TYPE=iso9660", "-o", "device"]).ok_codes(&[2]).output()?;
    devices.extend(String::from_utf8_lossy(&scan.stdout).lines().map(str::to_string));
    // Optical drives are not always in the scan (no media change event without udev).
    if let Ok(rd) = std::fs::read_dir("/dev") {
        let mut sr: Vec<String> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("sr") && n[2..].chars().all(|c| c.is_ascii_digit()) && n.len() > 2)
            .map(|n| format!("/dev/{n}"))
            .collect();
        sr.sort();
        devices.extend(sr);
    }
    let mut found = Vec::new();
    for dev in devices {
        if found.iter().any(|(d, _)| d == &dev) {
            continue;
        }
        let probe = Cmd::new("blkid").args(["-p", "-c", "/dev/null", "-o", "export"]).arg(&dev).ok_codes(&[2]).output();
        let Ok(probe) = probe else { continue };
        let text = String::from_utf8_lossy(&probe.stdout).into_owned();
        let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k).and_then(|v| v.strip_prefix('='))).map(str::to_string);
        if field("TYPE").as_deref() == Some("iso9660") {
            found.push((dev, field("LABEL").unwrap_or_default()));
        }
    }
    let candidates = order_iso_candidates(found);
    let mut tried = Vec::new();
    for dev in &candidates {
        match MountGuard::mount(dev, Some("iso9660"), &MountOptions::new("ro"), timeout) {
            Ok(g) => {
                let d = g.path().join(dir);
                if d.is_dir() {
                    tracing::info!("the backup is on the rescue medium {dev} (/{dir})");
                    return Ok((g, d));
                }
                tried.push(format!("{dev} (no /{dir} on it)"));
            }
            Err(e) => tried.push(format!("{dev} ({e:#})")),
        }
    }
    if tried.is_empty() {
        anyhow::bail!(
            "the backup is inside the rescue ISO (iso:///{dir}), but no ISO 9660 device was found: boot from the rescue ISO \
             made by `rescue mkbackup`, or attach it (CD drive or USB stick)"
        );
    }
    anyhow::bail!(
        "the backup is inside the rescue ISO (iso:///{dir}), but no ISO 9660 device holds /{dir}: tried {}. \
         Boot from the ISO that `rescue mkbackup` made (an ISO from `rescue mkrescue` alone holds no backup)",
        tried.join(", ")
    )
}

/// ISO devices to try, ours (label `RESCUE`) first, otherwise in the order found.
fn order_iso_candidates(found: Vec<(String, String)>) -> Vec<String> {
    let (mut ours, others): (Vec<_>, Vec<_>) = found.into_iter().partition(|(_, label)| label == ISO_LABEL);
    ours.extend(others);
    ours.into_iter().map(|(d, _)| d).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_scheme() {
        assert_eq!(Location::parse("file:///srv/b").unwrap(), Location::Local("/srv/b".into()));
        assert_eq!(Location::parse("/srv/b").unwrap(), Location::Local("/srv/b".into()));
        assert_eq!(Location::parse("nfs://127.0.0.1:1/x").unwrap(), Location::Nfs { host: "127.0.0.1".into(), port: Some(1), path: "/x".into() });
        assert_eq!(Location::parse("cifs://nas/share/dir").unwrap(), Location::Cifs { host: "nas".into(), path: "/share/dir".into() });
        assert_eq!(
            Location::parse("usb:///dev/disk/by-label/REAR-000").unwrap(),
            Location::Usb { device: Some("/dev/disk/by-label/REAR-000".into()), label: Some("REAR-000".into()), path: String::new() }
        );
        assert_eq!(Location::parse("usb://BACKUP/hosts").unwrap(), Location::Usb { device: None, label: Some("BACKUP".into()), path: "hosts".into() });
        assert_eq!(Location::parse("iso:///backup").unwrap(), Location::Iso { path: "backup".into() });
        assert_eq!(Location::parse("rsync://h/mod/p/").unwrap(), Location::Rsync("rsync://h/mod/p".into()));
        assert_eq!(Location::parse("h:/srv/b").unwrap(), Location::Rsync("h:/srv/b".into()));
        assert!(Location::parse("ftp://x/y").is_err());
    }

    #[test]
    fn a_file_on_a_stick_is_read_or_the_error_shows_what_is_there() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("keys")).unwrap();
        std::fs::write(d.path().join("keys/web1.key"), b"k\n").unwrap();
        std::fs::write(d.path().join("keys/empty.key"), b"").unwrap();
        let what = "/dev/sdb1 (label KEYS)";
        assert_eq!(read_file_in(d.path(), "keys/web1.key", what).unwrap(), b"k\n");
        assert_eq!(read_file_in(d.path(), "/keys/web1.key", what).unwrap(), b"k\n");
        let e = format!("{:#}", read_file_in(d.path(), "keys/web2.key", what).unwrap_err());
        assert_eq!(e, "there is no /keys/web2.key on /dev/sdb1 (label KEYS) (/keys holds empty.key, web1.key); copy the file there or correct the path");
        let e = format!("{:#}", read_file_in(d.path(), "hosts/web1.key", what).unwrap_err());
        assert!(e.contains("(no directory /hosts)"), "{e}");
        let e = format!("{:#}", read_file_in(d.path(), "web1.key", what).unwrap_err());
        assert!(e.contains("(/ holds keys)"), "{e}");
        let e = format!("{:#}", read_file_in(d.path(), "keys/empty.key", what).unwrap_err());
        assert!(e.contains("/keys/empty.key on /dev/sdb1 (label KEYS) is empty"), "{e}");
    }

    #[test]
    fn a_missing_label_says_to_plug_in_the_stick() {
        let e = format!("{:#}", resolve_usb_waiting(None, Some("RESCUE-TEST-NO-SUCH-LABEL"), Duration::ZERO).unwrap_err());
        assert!(e.contains("no filesystem with the label \"RESCUE-TEST-NO-SUCH-LABEL\" found: plug in the USB disk"), "{e}");
        let e = format!("{:#}", resolve_usb_waiting(None, Some("RESCUE-TEST-NO-SUCH-LABEL"), Duration::from_secs(1)).unwrap_err());
        assert!(e.ends_with("(waited 1 s for it)"), "{e}");
    }

    #[test]
    fn our_iso_is_tried_first() {
        let found =
            vec![("/dev/sr1".to_string(), "DEBIAN".to_string()), ("/dev/sr0".to_string(), "RESCUE".to_string()), ("/dev/sdb".to_string(), String::new())];
        assert_eq!(order_iso_candidates(found), vec!["/dev/sr0", "/dev/sr1", "/dev/sdb"]);
    }
}
