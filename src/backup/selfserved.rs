//! A backup that would be lost with the machine it protects: the
//! destination is storage this system itself serves to others, i.e. its own
//! Bacula/Bareos storage daemon's volume directory (`Archive Device` in
//! bacula-sd.conf) or a directory it exports over NFS (`/etc/exports`).
//! A backup server backed up into itself cannot be recovered: `mkbackup`
//! warns (docs/recover.md, "Recovering the backup server itself").

use std::path::{Path, PathBuf};

use super::location::Location;

/// Storage daemon configs whose `Archive Device` directories hold volumes.
const SD_CONFIGS: &[&str] = &["/etc/bacula/bacula-sd.conf", "/etc/bareos/bareos-sd.conf"];
/// Bareos' per-resource directory of device configs.
const SD_DEVICE_DIRS: &[&str] = &["/etc/bareos/bareos-sd.d/device"];
const EXPORTS: &str = "/etc/exports";
const EXPORTS_DIR: &str = "/etc/exports.d";

/// What this system serves to others, read from its configs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Served {
    /// Volume directories of its own storage daemon, with the config naming each.
    pub volume_dirs: Vec<(PathBuf, String)>,
    /// Directories it exports over NFS, with the file naming each.
    pub exports: Vec<(PathBuf, String)>,
}

impl Served {
    /// What the configs on this system say it serves.
    pub fn of_this_system() -> Served {
        let mut s = Served::default();
        let read = |p: &Path| std::fs::read_to_string(p).ok();
        let mut sd_files: Vec<PathBuf> = SD_CONFIGS.iter().map(PathBuf::from).collect();
        sd_files.extend(SD_DEVICE_DIRS.iter().flat_map(|d| conf_files(Path::new(d), "conf")));
        for f in sd_files {
            if let Some(text) = read(&f) {
                s.volume_dirs.extend(archive_devices(&text).into_iter().map(|d| (d, f.display().to_string())));
            }
        }
        let mut export_files = vec![PathBuf::from(EXPORTS)];
        export_files.extend(conf_files(Path::new(EXPORTS_DIR), "exports"));
        for f in export_files {
            if let Some(text) = read(&f) {
                s.exports.extend(exported_dirs(&text).into_iter().map(|d| (d, f.display().to_string())));
            }
        }
        s
    }

    /// Why a backup to `dest` would be lost with this system, when it would:
    /// `dest` is a local directory (or an NFS export of this host, `is_this_host`)
    /// inside a volume directory or an export this system serves.
    pub fn why_lost(&self, dest: &Location, is_this_host: impl Fn(&str) -> bool) -> Option<String> {
        let path = match dest {
            Location::Local(p) => p.clone(),
            Location::Nfs { host, path, .. } if is_this_host(host) => PathBuf::from(path),
            _ => return None,
        };
        if let Some((dir, file)) = self.volume_dirs.iter().find(|(d, _)| path.starts_with(d) || d.starts_with(&path)) {
            return Some(format!(
                "the backup goes to {}, which holds this system's own storage daemon volumes ({}, Archive Device in {file})",
                path.display(),
                dir.display()
            ));
        }
        if let Some((dir, file)) = self.exports.iter().find(|(d, _)| path.starts_with(d)) {
            return Some(format!("the backup goes to {}, which this system exports over NFS ({}, in {file})", path.display(), dir.display()));
        }
        None
    }
}

/// The warning `mkbackup` gives when a backup to `url` would be lost with
/// this system; `None` when it goes elsewhere (or is no local or NFS path).
pub fn warning_for(url: &str) -> Option<String> {
    let dest = Location::parse(url).ok()?;
    if !matches!(dest, Location::Local(_) | Location::Nfs { .. }) {
        return None;
    }
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string();
    // Only an NFS URL needs this host's addresses.
    let addresses: Vec<String> = match &dest {
        Location::Nfs { .. } => crate::cmd::Cmd::new("hostname").arg("-I").read().unwrap_or_default().split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    };
    let why = Served::of_this_system().why_lost(&dest, |h| names_this_host(h, &hostname, &addresses))?;
    Some(format!(
        "{why}: this backup would be lost with this server. Send it to storage that survives it (a USB disk, another \
         machine's NFS export, S3); see \"Recovering the backup server itself\" in docs/recover.md"
    ))
}

/// The `*.EXT` files of a directory, sorted.
fn conf_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == ext)).collect();
    v.sort();
    v
}

/// The directories of file devices in a storage daemon config: each
/// `Archive Device = DIR` (Bacula's resource syntax: keys are case- and
/// space-insensitive, values may be quoted); tape and other device nodes
/// under /dev are not directories this backup could land in.
pub fn archive_devices(text: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        // Several directives may share a line, separated by `;`.
        for part in line.split(';') {
            let Some((key, value)) = part.split_once('=') else { continue };
            let key: String = key.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
            let key = key.trim_start_matches('{');
            if key != "archivedevice" {
                continue;
            }
            let value = value.trim().trim_end_matches('}').trim().trim_matches('"');
            if value.starts_with('/') && !value.starts_with("/dev/") {
                out.push(PathBuf::from(value.trim_end_matches('/')));
            }
        }
    }
    out
}

/// The directories an `/etc/exports` file exports: the first field of each
/// entry (quoted when it has spaces), comments and continuation lines handled.
pub fn exported_dirs(text: &str) -> Vec<PathBuf> {
    let joined = text.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let dir = if let Some(rest) = line.strip_prefix('"') { rest.split('"').next().unwrap_or("") } else { line.split_whitespace().next().unwrap_or("") };
        if dir.starts_with('/') {
            out.push(PathBuf::from(if dir == "/" { dir } else { dir.trim_end_matches('/') }));
        }
    }
    out
}

/// Whether `host` (from a URL) names this machine: a loopback address,
/// `localhost`, this host's name, or one of `addresses` (this host's own).
pub fn names_this_host(host: &str, hostname: &str, addresses: &[String]) -> bool {
    let h = host.trim_matches(|c| c == '[' || c == ']');
    if h.eq_ignore_ascii_case("localhost") || h == "::1" || h.starts_with("127.") {
        return true;
    }
    let short = |n: &str| n.split('.').next().unwrap_or(n).to_ascii_lowercase();
    (!hostname.is_empty() && short(h) == short(hostname) && h.parse::<std::net::IpAddr>().is_err()) || addresses.iter().any(|a| a == h)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SD_CONF: &str = r#"
Storage {
  Name = backup1-sd
  SDPort = 9103
  WorkingDirectory = "/var/lib/bacula"
}
Device {
  Name = FileChgr1-Dev1
  Media Type = File1
  Archive Device = "/srv/bacula/volumes/"   # the pool's files
  LabelMedia = yes;
}
Device { Name = Tape; ArchiveDevice = /dev/nst0; Media Type = LTO }
# Archive Device = /old/volumes
"#;

    const EXPORTS_FILE: &str = "# /etc/exports\n/srv/exports/backups  192.0.2.0/24(rw,no_root_squash) \\\n    198.51.100.7(ro)\n\"/srv/with space\" *(ro)\n";

    #[test]
    fn volume_directories_and_exports_are_read_from_the_configs() {
        assert_eq!(archive_devices(SD_CONF), vec![PathBuf::from("/srv/bacula/volumes")]);
        assert_eq!(exported_dirs(EXPORTS_FILE), vec![PathBuf::from("/srv/exports/backups"), PathBuf::from("/srv/with space")]);
    }

    fn served() -> Served {
        Served {
            volume_dirs: archive_devices(SD_CONF).into_iter().map(|d| (d, "/etc/bacula/bacula-sd.conf".into())).collect(),
            exports: exported_dirs(EXPORTS_FILE).into_iter().map(|d| (d, "/etc/exports".into())).collect(),
        }
    }

    #[test]
    fn a_backup_into_storage_this_system_serves_is_named() {
        let s = served();
        let this = |h: &str| names_this_host(h, "backup1.example.com", &["192.0.2.5".into()]);
        let lost = |url: &str| s.why_lost(&Location::parse(url).unwrap(), this);
        let w = lost("file:///srv/bacula/volumes/rescue").unwrap();
        assert!(w.contains("storage daemon volumes") && w.contains("bacula-sd.conf"), "{w}");
        assert!(lost("file:///srv").is_some(), "a parent of the volumes holds them too");
        let w = lost("nfs://backup1/srv/exports/backups").unwrap();
        assert!(w.contains("exports over NFS") && w.contains("/etc/exports"), "{w}");
        assert!(lost("nfs://192.0.2.5/srv/exports/backups/host").is_some());
        assert!(lost("nfs://127.0.0.1/srv/exports/backups").is_some());
        assert!(lost("file:///srv/exports/backups").is_some(), "the exported directory, written locally");
        // Elsewhere: another server, another directory, external media.
        assert!(lost("nfs://nas/srv/exports/backups").is_none());
        assert!(lost("file:///mnt/usb/backups").is_none());
        assert!(lost("usb://BACKUP/rescue").is_none());
        assert!(Served::default().why_lost(&Location::parse("file:///srv/bacula/volumes").unwrap(), this).is_none());
    }

    #[test]
    fn this_host_is_known_by_name_loopback_or_address() {
        let addrs = vec!["192.0.2.5".to_string()];
        assert!(names_this_host("localhost", "backup1", &addrs));
        assert!(names_this_host("127.0.1.1", "backup1", &addrs));
        assert!(names_this_host("[::1]", "backup1", &addrs));
        assert!(names_this_host("BACKUP1.example.com", "backup1", &addrs));
        assert!(names_this_host("192.0.2.5", "backup1", &addrs));
        assert!(!names_this_host("nas", "backup1", &addrs));
        assert!(!names_this_host("192.0.2.6", "backup1", &addrs));
        assert!(!names_this_host("nas", "", &[]));
    }
}
