//! The Debian package of rescue: its relations to other packages and the
//! files it holds besides the executable (man pages, shell completions, the
//! systemd units of `rescue schedule`, copyright, changelog, control file).
//! `scripts/build-deb.sh` builds the executable, puts it into a tree and asks
//! `rescue package-tree` (hidden) for the rest, so every file is generated from the
//! code that also uses it: the units from `schedule::files`, the pages from
//! the clap tree, the relations from [`crate::cmd::PROGRAM_PACKAGES`] (the
//! tests below fail when a program the code runs has no relation here).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The package's tree, with the executable already at usr/sbin/rescue.
    #[arg(value_name = "DIR")]
    pub root: PathBuf,
    /// The executable's shared-library dependencies, as dpkg-shlibdeps prints them (none for a static build).
    #[arg(long, default_value = "")]
    pub shlibs: String,
}

pub fn run(a: Args) -> Result<i32> {
    let man = |dir: &Path| crate::cli::write_manpages(dir);
    let completion = |shell| {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut <crate::cli::Cli as clap::CommandFactory>::command(), "rescue", &mut out);
        out
    };
    write_tree(&a.root, env!("CARGO_PKG_VERSION"), &a.shlibs, man, completion)?;
    println!("{}", a.root.display());
    Ok(0)
}

/// Where the package installs the executable.
pub const EXECUTABLE: &str = "/usr/sbin/rescue";
/// The config file the units name.
pub const CONFIG: &str = "/etc/rescue/rescue.toml";

/// What `rescue mkbackup` (capture, archive, ISO) and `rescue mkrescue` need
/// on a plain system (GPT or MBR, ext4/vfat, BIOS or UEFI, ISO and USB
/// output), and what the rescue image copies from the host so that `rescue
/// recover` has it. Without any of these, `apt install ./rescue_*.deb` on a
/// minimal Debian would not give a working `rescue mkbackup`.
/// (`util-linux`, which `mkbackup` needs first, is Essential: lintian refuses
/// an unversioned relation to it, see [`ALWAYS_THERE`].)
pub const DEPENDS: &[&str] = &[
    "mount",
    "fdisk",
    "e2fsprogs",
    "dosfstools",
    "mtools",
    "kmod",
    "udev",
    "busybox-static",
    "xorriso",
    "isolinux",
    "syslinux-common",
    "grub-common",
    "grub-pc-bin",
    "grub-efi-amd64-bin",
];

/// Storage stacks, backup locations and outputs a system may or may not
/// use: installed by default, and mkrescue says which one is missing when a
/// descriptor needs it.
pub const RECOMMENDS: &[&str] = &[
    "efibootmgr",
    "xfsprogs",
    "btrfs-progs",
    "lvm2",
    "dmsetup",
    "mdadm",
    "cryptsetup-bin",
    "rsync",
    "nfs-common",
    "cifs-utils",
    "shim-signed",
    "grub-efi-amd64-signed",
    "syslinux",
    "pxelinux",
    "binutils",
    "iproute2",
];

/// Only for some features: drills (qemu), own Secure Boot keys, backup
/// servers, SSH into the rescue system, other initramfs generators.
pub const SUGGESTS: &[&str] = &[
    "qemu-system-x86",
    "qemu-utils",
    "ovmf",
    "sbsigntool",
    "bacula-console",
    "bacula-fd",
    "openssh-server",
    "openssh-client",
    "zstd",
    "pigz",
    "cpio",
    "dracut",
    "systemd-boot",
];

/// Packages a program of [`crate::cmd::PROGRAM_PACKAGES`] comes from that
/// need no relation: Essential (`coreutils dash hostname tar util-linux`; Debian Policy
/// 3.5: no unversioned relation to an Essential package, lintian's
/// `depends-on-essential-package-without-using-version`) or always there
/// where rescue runs.
pub const ALWAYS_THERE: &[&str] = &["coreutils", "dash", "hostname", "tar", "util-linux", "systemd", "initramfs-tools"];

/// Packages outside Debian (no relation can name them usefully).
pub const NOT_IN_DEBIAN: &[&str] = &["bareos-filedaemon"];

/// The package name of an entry of `PROGRAM_PACKAGES` (`"grub-common (plus ...)"` -> `grub-common`).
pub fn package_name(entry: &str) -> &str {
    entry.split_whitespace().next().unwrap_or(entry)
}

/// The `DEBIAN/control` text. `shlibs` is what dpkg-shlibdeps computed for
/// the executable (empty for a static one); `installed_kib` the tree's size.
pub fn control(version: &str, shlibs: &str, installed_kib: u64) -> String {
    let mut depends: Vec<String> = shlibs.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
    depends.extend(DEPENDS.iter().map(|s| s.to_string()));
    format!(
        "Package: rescue\n\
         Version: {version}\n\
         Architecture: amd64\n\
         Maintainer: rescue developers <rescue@example.org>\n\
         Installed-Size: {installed_kib}\n\
         Depends: {}\n\
         Recommends: {}\n\
         Suggests: {}\n\
         Section: admin\n\
         Priority: optional\n\
         Description: bare-metal recovery for Linux\n \
         rescue records the storage layout of a Linux system (partitions, RAID,\n \
         LUKS, LVM, filesystems, boot loader) in a typed descriptor, backs the\n \
         system up as pax tar archives compressed with zstd, builds a rescue image\n \
         (ISO, PXE, USB) that holds the descriptor, and recovers the system onto\n \
         new disks unattended. It works in the spirit of Relax-and-Recover.\n",
        depends.join(", "),
        RECOMMENDS.join(", "),
        SUGGESTS.join(", ")
    )
}

const COPYRIGHT: &str = "\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: rescue

Files: *
Copyright: 2025-2026 rescue developers
License: GPL-3+
 This program is free software: you can redistribute it and/or modify it
 under the terms of the GNU General Public License as published by the Free
 Software Foundation, either version 3 of the License, or (at your option)
 any later version.
 .
 On Debian systems, the complete text of the GNU General Public License
 version 3 can be found in `/usr/share/common-licenses/GPL-3'.
";

/// Write every file of the package except the executable into `root` (the
/// package's tree; the executable already at `root/usr/sbin/rescue`), the
/// control file last, sized from the finished tree.
pub fn write_tree(
    root: &Path,
    version: &str,
    shlibs: &str,
    man: impl Fn(&Path) -> Result<()>,
    completion: impl Fn(clap_complete::Shell) -> Vec<u8>,
) -> Result<()> {
    let exe = root.join(EXECUTABLE.trim_start_matches('/'));
    if !exe.is_file() {
        anyhow::bail!("{} is missing: put the rescue executable there first (scripts/build-deb.sh does)", exe.display());
    }
    // Man pages, gzipped as Debian policy wants them (maximal, no timestamp).
    let man_dir = root.join("usr/share/man/man8");
    let raw = tempfile::tempdir().context("creating a temporary directory for the man pages")?;
    man(raw.path())?;
    std::fs::create_dir_all(&man_dir).with_context(|| format!("creating {}", man_dir.display()))?;
    for e in std::fs::read_dir(raw.path())? {
        let e = e?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&std::fs::read(e.path())?)?;
        write_file(&man_dir.join(format!("{}.gz", e.file_name().to_string_lossy())), &gz.finish()?)?;
    }
    for (shell, path) in [
        (clap_complete::Shell::Bash, "usr/share/bash-completion/completions/rescue"),
        (clap_complete::Shell::Zsh, "usr/share/zsh/vendor-completions/_rescue"),
        (clap_complete::Shell::Fish, "usr/share/fish/vendor_completions.d/rescue.fish"),
    ] {
        write_file(&root.join(path), &completion(shell))?;
    }
    for (path, text) in units() {
        write_file(&root.join(path), text.as_bytes())?;
    }
    let doc = root.join("usr/share/doc/rescue");
    write_file(&doc.join("copyright"), COPYRIGHT.as_bytes())?;
    let changelog = format!(
        "rescue ({version}) unstable; urgency=medium\n\n  * Built from the rescue source tree.\n\n -- rescue developers <rescue@example.org>  Tue, 01 Dec 2026 00:00:00 +0000\n"
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(changelog.as_bytes())?;
    // A native package (no Debian revision in the version): changelog.gz, not changelog.Debian.gz.
    write_file(&doc.join("changelog.gz"), &gz.finish()?)?;
    let kib = tree_bytes(root)?.div_ceil(1024);
    write_file(&root.join("DEBIAN/control"), control(version, shlibs, kib).as_bytes())
}

/// The systemd units `rescue schedule` installs, as the package ships them:
/// in the package's unit directory, not enabled (`systemctl enable --now
/// rescue-mkrescue.timer`, or `rescue schedule --install` to change the times).
pub fn units() -> Vec<(PathBuf, String)> {
    crate::workflow::schedule::files(Path::new(EXECUTABLE), Path::new(CONFIG), crate::workflow::schedule::Method::Systemd, "daily", Some("Sun 02:00"))
        .into_iter()
        .map(|(p, text)| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            (PathBuf::from("lib/systemd/system").join(name), text)
        })
        .collect()
}

fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    std::fs::write(path, data).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).with_context(|| format!("setting the mode of {}", path.display()))
}

/// Apparent size of the files under `dir` (DEBIAN excluded), for Installed-Size.
fn tree_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let t = e.file_type()?;
        if t.is_dir() && e.file_name() != "DEBIAN" {
            total += tree_bytes(&e.path())?;
        } else if t.is_file() {
            total += e.metadata()?.len();
        }
    }
    Ok(total)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::cmd::PROGRAM_PACKAGES;
    use crate::needs::Runs;

    fn related() -> Vec<&'static str> {
        DEPENDS.iter().chain(RECOMMENDS).chain(SUGGESTS).copied().collect()
    }

    /// Every program the code runs, by the table that names its package,
    /// has its package among the relations (or is always there).
    #[test]
    fn every_program_package_is_a_relation() {
        let related = related();
        for (programs, entry) in PROGRAM_PACKAGES {
            let p = package_name(entry);
            assert!(
                related.contains(&p) || ALWAYS_THERE.contains(&p) || NOT_IN_DEBIAN.contains(&p),
                "{programs:?} come from {p}, which is not in the package's Depends, Recommends or Suggests (src/package.rs)"
            );
        }
        // "grub-common (plus grub-pc-bin or grub-efi-amd64-bin)": the notes' packages too.
        for (_, entry) in PROGRAM_PACKAGES.iter().filter(|(_, e)| e.contains("(plus")) {
            for word in entry.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).filter(|w| w.contains('-')) {
                assert!(related.contains(&word), "{word} (from {entry:?}) is not a relation");
            }
        }
    }

    /// Every program the source runs by a literal name (`Cmd::new("...")`)
    /// is in the table, so the test above covers it.
    #[test]
    fn every_literal_command_is_in_the_table() {
        let mut missing = Vec::new();
        let mut todo = vec![PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    todo.push(p);
                    continue;
                }
                if p.extension().is_none_or(|x| x != "rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap();
                // Code only: the unit tests below `#[cfg(test)]` run made-up programs.
                let code = text.split("#[cfg(test)]").next().unwrap_or("");
                for part in code.split("Cmd::new(\"").skip(1) {
                    let name = part.split('"').next().unwrap_or("");
                    if crate::cmd::package_for(name).is_none() {
                        missing.push(format!("{name} ({})", p.display()));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "programs run by name but not in cmd::PROGRAM_PACKAGES: {missing:?}");
    }

    /// What recovery of each example descriptor needs (the image copies it
    /// from the host) is a relation; for a plain BIOS or UEFI ext4 system a Depends.
    #[test]
    fn recovery_needs_are_relations_and_a_plain_system_needs_only_depends() {
        let related = related();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts");
        for e in std::fs::read_dir(&dir).unwrap() {
            let file = e.unwrap().path();
            let layout = crate::layout::Layout::load(&file).unwrap();
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let plain = name == "bios-gpt-ext4.toml";
            for url in ["iso:///backup", "nfs://nas/b"] {
                let reaching = crate::backup::Location::parse(url).unwrap().rescue_needs(url);
                let needs = crate::needs::recovery(&layout, &crate::image::config::ImageConfig::default(), reaching);
                let programs =
                    needs.programs.iter().filter(|p| matches!(p.runs, Runs::Recover | Runs::Rescue)).filter_map(|p| p.package.map(|k| (p.name.clone(), k)));
                let files = needs.files.iter().filter(|f| f.runs != Runs::Target).map(|f| (f.paths[0].to_string(), f.package));
                for (what, entry) in programs.chain(files) {
                    let p = package_name(entry);
                    assert!(related.contains(&p) || ALWAYS_THERE.contains(&p), "{name}: {what} comes from {p}, not a relation of the package");
                    if plain && url.starts_with("iso") {
                        assert!(
                            DEPENDS.contains(&p) || ALWAYS_THERE.contains(&p),
                            "{name}: {what} comes from {p}, which a plain system needs: make it a Depends"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_units_are_the_ones_schedule_installs() {
        let u = units();
        let names: Vec<String> = u.iter().map(|(p, _)| p.display().to_string()).collect();
        assert_eq!(
            names,
            [
                "lib/systemd/system/rescue-mkrescue.service",
                "lib/systemd/system/rescue-mkrescue.timer",
                "lib/systemd/system/rescue-mkbackup.service",
                "lib/systemd/system/rescue-mkbackup.timer"
            ]
        );
        assert!(u[0].1.contains("/usr/sbin/rescue --config /etc/rescue/rescue.toml checklayout"), "{}", u[0].1);
        assert!(u[3].1.contains("OnCalendar=Sun 02:00") && u[3].1.contains("WantedBy=timers.target"), "{}", u[3].1);
        // lintian: systemd-service-file-missing-documentation-key.
        for (p, text) in u.iter().filter(|(p, _)| p.extension().is_some_and(|x| x == "service")) {
            assert!(text.contains("\nDocumentation=man:rescue-"), "{} has no Documentation= key:\n{text}", p.display());
        }
    }

    #[test]
    fn control_fields() {
        let c = control("0.1.0", "libc6 (>= 2.34), libgcc-s1 (>= 4.2)", 12345);
        assert!(c.contains("\nDepends: libc6 (>= 2.34), libgcc-s1 (>= 4.2), mount, fdisk,"), "{c}");
        assert!(c.contains("\nInstalled-Size: 12345\n") && c.contains("\nRecommends: efibootmgr,"), "{c}");
        let c = control("0.1.0", "", 1);
        assert!(c.contains("\nDepends: mount, "), "{c}");
        // Essential packages are never an unversioned relation (lintian error).
        assert!(!c.contains("util-linux"), "{c}");
        // Every continuation line of the description starts with a space.
        let desc = c.split("Description: ").nth(1).unwrap();
        assert!(desc.lines().skip(1).all(|l| l.starts_with(' ')), "{desc}");
    }
}
