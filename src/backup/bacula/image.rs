//! What a rescue image needs to be restored by a backup server: the file
//! daemon (the director connects to it to write the files), bconsole (to
//! ask for the restore), the daemon's config and the console password.
//! The director backend hands these to `image::initramfs` through
//! `Backend::image_parts` (the programs themselves through `Backend::rescue_needs`);
//! the rescue init starts the daemon from `RESCUE_FD*` in image.env.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::config::{Director, ServerConfig, DEFAULT_PASSWORD_FILE};
use crate::backup::ImageParts;
use crate::error::input_error;

/// The names and places that differ between Bacula and Bareos.
struct Flavour {
    fd: &'static str,
    /// Config candidates, first existing wins: (what to copy, what `-c` takes).
    /// Bareos has one file, or (newer versions) a `bareos-fd.d` directory
    /// that `-c` finds through its parent.
    configs: &'static [(&'static str, &'static str)],
    /// Directories the daemon needs at run time (working and pid directories).
    dirs: &'static str,
}

fn flavour(method: Director) -> Flavour {
    match method {
        Director::Bacula => {
            Flavour { fd: "bacula-fd", configs: &[("/etc/bacula/bacula-fd.conf", "/etc/bacula/bacula-fd.conf")], dirs: "/var/lib/bacula /run/bacula" }
        }
        Director::Bareos => Flavour {
            fd: "bareos-fd",
            configs: &[("/etc/bareos/bareos-fd.conf", "/etc/bareos/bareos-fd.conf"), ("/etc/bareos/bareos-fd.d", "/etc/bareos")],
            dirs: "/var/lib/bareos /run/bareos",
        },
    }
}

/// The file daemon's program name.
pub fn file_daemon(method: Director) -> &'static str {
    flavour(method).fd
}

/// What to add to the image for the director `method` of `cfg`.
pub fn image_parts(cfg: &ServerConfig, method: Director) -> Result<ImageParts> {
    let fl = flavour(method);
    let (fd_config, fd_arg) = match &cfg.fd_config {
        // A configured `.d` directory is found by the daemon through its parent.
        Some(p) if p.is_dir() && p.extension().is_some_and(|e| e == "d") => (p.clone(), p.parent().unwrap_or(Path::new("/")).to_path_buf()),
        Some(p) => (p.clone(), p.clone()),
        None => fl.configs.iter().find(|(copy, _)| Path::new(copy).exists()).map(|(c, a)| (PathBuf::from(c), PathBuf::from(a))).ok_or_else(|| {
            input_error(format!(
                "the {} file daemon's config ({}) is not on this system: install and configure the {} package, or set backup.server.fd-config",
                method.product(),
                fl.configs.iter().map(|c| c.0).collect::<Vec<_>>().join(" or "),
                fl.fd
            ))
        })?,
    };
    if !fd_config.exists() {
        return Err(input_error(format!("backup.server.fd-config = {} does not exist", fd_config.display())));
    }
    let password = std::fs::read(&cfg.password_file).map_err(|e| {
        input_error(format!(
            "cannot read the console password file {} ({e}); the rescue system needs it to ask the director for the restore",
            cfg.password_file.display()
        ))
    })?;
    // The programs (file daemon, bconsole) come from `needs::recovery`.
    let mut parts = ImageParts::default();
    // The fd config directory as a whole (Bareos splits it in .d directories).
    parts.host_paths.push(fd_config.clone());
    // The image's config loses `password-file` (a secret-looking key): the
    // file goes to the default place, where the rescue system looks.
    parts.files.push((PathBuf::from(DEFAULT_PASSWORD_FILE), password, 0o600));
    parts.secrets.push(format!("{DEFAULT_PASSWORD_FILE} (the {} console password, from {})", method.product(), cfg.password_file.display()));
    parts.secrets.push(format!("{} (the {} file daemon's config with the director's password)", fd_config.display(), method.product()));
    let fd = crate::cmd::find_program(fl.fd).unwrap_or_else(|| Path::new("/usr/sbin").join(fl.fd));
    parts.env.push(("RESCUE_FD", fd.display().to_string()));
    parts.env.push(("RESCUE_FD_CONF", fd_arg.display().to_string()));
    parts.env.push(("RESCUE_FD_DIRS", fl.dirs.to_string()));
    // /run is a fresh tmpfs at boot (the init makes those); the rest is made here too.
    parts.dirs.extend(fl.dirs.split(' ').filter(|d| !d.starts_with("/run")).map(PathBuf::from));
    Ok(parts)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bacula_parts_name_the_daemon_and_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let fdconf = dir.path().join("bacula-fd.conf");
        std::fs::write(&fdconf, "FileDaemon { Name = x-fd }\n").unwrap();
        let mut c = ServerConfig { password_file: pw, fd_config: Some(fdconf.clone()), ..Default::default() };
        let p = image_parts(&c, Director::Bacula).unwrap();
        assert_eq!(p.files[0].0, PathBuf::from(DEFAULT_PASSWORD_FILE));
        assert_eq!(p.files[0].2, 0o600);
        assert!(p.env.iter().any(|(k, v)| *k == "RESCUE_FD_CONF" && v == &fdconf.display().to_string()));
        assert!(image_parts(&c, Director::Bareos).unwrap().env.iter().any(|(k, v)| *k == "RESCUE_FD" && v.ends_with("/bareos-fd")));
        // Bareos' config directory: copied whole, `-c` gets its parent.
        let d = dir.path().join("bareos/bareos-fd.d");
        std::fs::create_dir_all(d.join("client")).unwrap();
        c.fd_config = Some(d.clone());
        let p = image_parts(&c, Director::Bareos).unwrap();
        assert_eq!(p.host_paths, vec![d]);
        assert!(p.env.iter().any(|(k, v)| *k == "RESCUE_FD_CONF" && v == &dir.path().join("bareos").display().to_string()));
        assert!(p.env.iter().any(|(k, v)| *k == "RESCUE_FD" && v.ends_with("/bareos-fd")));
    }
}
