//! Finalize a restored system so it boots on the hardware it is now on:
//! rewrite device names that changed (fstab, crypttab, mdadm.conf, GRUB
//! defaults), regenerate the initramfs only when the new disks need drivers
//! it lacks, reinstall the bootloader, fix UEFI boot entries.
//!
//! Like storage recovery, finalizing is a plan computed first (pure, testable,
//! printable), then executed step by step in a chroot of the target.

pub mod distro;
pub mod network;
pub mod rewrite;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use sys_mount::{Mount, MountFlags, PropagationType, UnmountFlags};

use crate::cmd::Cmd;
use crate::layout::{BootloaderKind, Layout};

use self::distro::{EfiLoader, InitramfsTool, System};

/// Where a recorded disk or partition ended up on this machine.
#[derive(Debug, Clone, Default)]
pub struct DeviceMap {
    /// Recorded block id (`sda`, `sda2`, `nvme0n1p1`) → device path now (`/dev/vda`, `/dev/vda2`).
    pub paths: BTreeMap<String, String>,
}

/// What finalizing knows about the machine and the restored tree.
#[derive(Debug, Clone)]
pub struct Target {
    /// The restored root (e.g. `/mnt/local`).
    pub root: PathBuf,
    /// Whether this machine booted the rescue system with UEFI.
    pub uefi: bool,
    /// Kernel modules the disks of this machine need (from sysfs driver links).
    pub disk_drivers: BTreeSet<String>,
    /// Regenerate the initramfs whatever the check says.
    pub force_initramfs: bool,
    /// The initramfs-tools settings files of the restored system, relative,
    /// in the order mkinitramfs reads them ([`initramfs_conf_files`]).
    pub initramfs_conf_files: Vec<String>,
    /// The restored system's distribution family and tools ([`distro::detect`]).
    pub system: System,
    /// Its installed kernels ([`distro::installed_kernels`]): dracut runs once per kernel.
    pub kernels: Vec<String>,
    /// Its BootLoaderSpec entries ([`distro::bls_entries`]), relative.
    pub bls_entries: Vec<String>,
    /// Every file of the backup that had an SELinux label got it back (the
    /// restore said so; false when it could not tell).
    pub selinux_labels_restored: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// Replace device names in a file of the restored system.
    RewriteFile { path: String, changes: Vec<(String, String)> },
    /// `update-initramfs -u -k all`, or `dracut -f --kver KVER` for each of `kernels`, in the target.
    RegenerateInitramfs { tool: String, kernels: Vec<String>, reason: String },
    /// Keep the restored initramfs (and why that is safe).
    KeepInitramfs { reason: String },
    /// `grub-install --target=i386-pc` (`grub2-install` on RHEL) on each disk.
    GrubBios { program: String, disks: Vec<String> },
    /// `grub-install --target=x86_64-efi` into the ESP.
    GrubEfi { program: String, efi_dir: String, bootloader_id: String },
    /// The signed shim and GRUB of the distribution's packages, restored
    /// into the ESP directory `dir` (RHEL: `/boot/efi/EFI/redhat`): checked,
    /// never overwritten by grub2-install.
    PackagedEfiLoader { dir: String },
    /// `bootctl install`.
    SystemdBoot { esp_path: String },
    /// Regenerate grub.cfg (only when device names changed).
    GrubMkconfig { program: String, config: String },
    /// Replace the NVRAM entry of the recorded label with one for the new disk.
    EfiBootEntry { disk: String, partition: u32, label: String, loader: String },
    /// SELinux is on and the labels did not all come back: relabel on first boot.
    SelinuxRelabel { reason: String },
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::RewriteFile { path, changes } => {
                write!(f, "rewrite {path}:")?;
                for (a, b) in changes {
                    write!(f, " {a} -> {b};")?;
                }
                Ok(())
            }
            Step::RegenerateInitramfs { tool, kernels, reason } if !kernels.is_empty() => {
                write!(f, "regenerate the initramfs of {} with {tool} ({reason})", kernels.join(", "))
            }
            Step::RegenerateInitramfs { tool, reason, .. } => write!(f, "regenerate the initramfs with {tool} ({reason})"),
            Step::KeepInitramfs { reason } => write!(f, "keep the restored initramfs ({reason})"),
            Step::GrubBios { program, disks } => write!(f, "install GRUB for BIOS on {} ({program})", disks.join(", ")),
            Step::GrubEfi { program, efi_dir, bootloader_id } => write!(f, "install GRUB for UEFI into {efi_dir} as `{bootloader_id}` ({program})"),
            Step::PackagedEfiLoader { dir } => write!(f, "check the restored signed shim and GRUB in {dir}"),
            Step::SystemdBoot { esp_path } => write!(f, "install systemd-boot into {esp_path}"),
            Step::GrubMkconfig { program, config } => write!(f, "regenerate {config} ({program})"),
            Step::EfiBootEntry { disk, partition, label, loader } => {
                write!(f, "UEFI boot entry `{label}` -> {disk} partition {partition} {loader}")
            }
            Step::SelinuxRelabel { reason } => write!(f, "request an SELinux relabel on first boot ({reason})"),
        }
    }
}

/// Files whose device names are rewritten when disks were renamed (and
/// every BootLoaderSpec entry, [`Target::bls_entries`]: each keeps its own
/// kernel command line). `etc/kernel/cmdline`: what kernel-install writes
/// into the entries of kernels installed later.
const REWRITTEN: &[&str] = &["etc/fstab", "etc/crypttab", "etc/mdadm/mdadm.conf", "etc/mdadm.conf", "etc/default/grub", "etc/kernel/cmdline"];

/// Compute the finalize steps. `read` reads a file of the restored system
/// (relative path) and is the only way this looks at it.
pub fn plan(layout: &Layout, map: &DeviceMap, target: &Target, read: &dyn Fn(&str) -> Option<String>) -> Vec<Step> {
    let mut steps = Vec::new();
    let renames = rewrite::device_renames(layout, map);
    let mut rewrote_early_boot_files = false;
    let family = target.system.family();
    for file in REWRITTEN.iter().copied().chain(target.bls_entries.iter().map(String::as_str)) {
        if let Some(text) = read(file) {
            let (_, changes) = rewrite::apply(&text, &renames);
            if !changes.is_empty() {
                if file.contains("crypttab") || file.contains("mdadm") {
                    rewrote_early_boot_files = true;
                }
                steps.push(Step::RewriteFile { path: format!("/{file}"), changes });
            }
        }
    }

    // The initramfs: regenerating it costs minutes (rear always does; under
    // emulation it was most of its recovery time). Only when needed.
    let initramfs = target.system.initramfs;
    let regenerate = |reason: String| Step::RegenerateInitramfs {
        tool: initramfs.program().into(),
        // dracut regenerates one kernel's image a run; update-initramfs takes `-k all`.
        kernels: if initramfs == InitramfsTool::Dracut { target.kernels.clone() } else { Vec::new() },
        reason,
    };
    let confs: Vec<String> = target.initramfs_conf_files.iter().filter_map(|f| read(f)).collect();
    // dracut's default (hostonly) images carry only the old machine's drivers.
    let has = initramfs == InitramfsTool::InitramfsTools && initramfs_modules(&confs).as_deref() == Some("most");
    if target.force_initramfs {
        steps.push(regenerate("requested".into()));
    } else if rewrote_early_boot_files {
        steps.push(regenerate("crypttab or mdadm.conf changed and the initramfs carries a copy".into()));
    } else if !has && !target.disk_drivers.is_empty() {
        steps.push(regenerate(format!("the initramfs is built with only the drivers of the old machine; this one needs {}", join(&target.disk_drivers))));
    } else {
        steps.push(Step::KeepInitramfs {
            reason: if has {
                "it is built with MODULES=most, which holds the drivers of any common disk".into()
            } else {
                "the disks and the storage stack are unchanged".into()
            },
        });
    }

    let bl = &layout.bootloader;
    let new_path = |id: &str| map.paths.get(id).cloned().unwrap_or_else(|| format!("/dev/{id}"));
    match bl.kind {
        BootloaderKind::Grub2Bios => {
            let mut disks: Vec<String> = bl.boot_disks.iter().map(|d| new_path(d)).collect();
            if disks.is_empty() {
                // Put it on the disk(s) holding /boot (or /).
                let boot = layout.mounts.iter().find(|m| m.path == "/boot").or_else(|| layout.mounts.iter().find(|m| m.path == "/"));
                if let Some(m) = boot {
                    disks = layout.disks_under(&m.device).iter().map(|d| new_path(d)).collect();
                }
            }
            steps.push(Step::GrubBios { program: family.grub_bios.name.into(), disks });
        }
        BootloaderKind::Grub2Efi | BootloaderKind::SystemdBoot => {
            let esp_mount =
                bl.esp.as_ref().and_then(|esp| layout.mounts.iter().find(|m| &m.device == esp)).map(|m| m.path.clone()).unwrap_or_else(|| "/boot/efi".into());
            // The entry's label and loader when none was recorded (booted from
            // elsewhere): what this step installs.
            let (install, default_label, default_loader) = if bl.kind == BootloaderKind::SystemdBoot {
                (Step::SystemdBoot { esp_path: esp_mount }, "Linux Boot Manager".to_string(), "\\EFI\\systemd\\systemd-bootx64.efi".to_string())
            } else {
                let id = bl.loader.as_deref().and_then(|l| l.split('\\').filter(|s| !s.is_empty()).nth(1)).unwrap_or(target.system.efi_dir()).to_string();
                let step = match family.efi_loader {
                    EfiLoader::GrubInstall => Step::GrubEfi { program: family.grub_efi.name.into(), efi_dir: esp_mount, bootloader_id: id.clone() },
                    EfiLoader::Packaged => Step::PackagedEfiLoader { dir: format!("{}/EFI/{id}", esp_mount.trim_end_matches('/')) },
                };
                (step, target.system.efi_label(), format!("\\EFI\\{id}\\shimx64.efi"))
            };
            steps.push(install);
            if target.uefi {
                if let Some(esp) = bl.esp.as_ref().and_then(|e| layout.partition(e)) {
                    let label = bl.efi_entries.iter().find(|e| e.path.as_deref() == bl.loader.as_deref()).map(|e| e.label.clone()).unwrap_or(default_label);
                    let loader = bl.loader.clone().unwrap_or(default_loader);
                    steps.push(Step::EfiBootEntry { disk: new_path(&esp.disk), partition: esp.number, label, loader });
                }
            }
        }
        BootloaderKind::None => {}
    }
    if steps.iter().any(|s| matches!(s, Step::RewriteFile { path, .. } if path == "/etc/default/grub")) {
        steps.push(Step::GrubMkconfig { program: family.grub_mkconfig.name.into(), config: family.grub_cfg.into() });
    }
    let selinux =
        read("etc/selinux/config").and_then(|c| c.lines().filter_map(|l| l.trim().strip_prefix("SELINUX=")).map(|v| v.trim().to_string()).next_back());
    if selinux.as_deref().is_some_and(|mode| mode == "enforcing" || mode == "permissive") && !target.selinux_labels_restored {
        steps.push(Step::SelinuxRelabel { reason: "the restore could not give every file its SELinux label back".into() });
    }
    steps
}

fn join(s: &BTreeSet<String>) -> String {
    s.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// Debian's initramfs-tools with `MODULES=most` (its default) carries the
/// drivers for every common disk controller. The effective `MODULES` is the
/// last assignment over the settings files in the order they are read
/// (initramfs.conf, then conf.d/*): a `conf.d` file setting `dep` wins.
fn initramfs_modules(confs: &[String]) -> Option<String> {
    confs
        .iter()
        .flat_map(|c| c.lines())
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("MODULES="))
        .map(|v| v.split('#').next().unwrap_or("").trim().trim_matches(|c| c == '"' || c == '\'').to_string())
        .next_back()
}

/// initramfs-tools' settings files under the restored root, relative: its
/// `initramfs.conf`, then `conf.d/*` by name as mkinitramfs sources them
/// (package leftovers like `*.dpkg-old` and backups `*~` left out).
pub fn initramfs_conf_files(root: &Path) -> Vec<String> {
    let mut out = vec!["etc/initramfs-tools/initramfs.conf".to_string()];
    let mut extra: Vec<String> = crate::target::beneath(root, "etc/initramfs-tools/conf.d")
        .and_then(|d| Ok(std::fs::read_dir(d)?))
        .map(|rd| rd.filter_map(|e| e.ok()).filter(|e| e.path().is_file()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    extra.retain(|n| !n.ends_with('~') && !n.contains(".dpkg-"));
    extra.sort();
    out.extend(extra.into_iter().map(|n| format!("etc/initramfs-tools/conf.d/{n}")));
    out
}

/// The kernel modules the disk `/sys/block/NAME` depends on: every driver
/// along its sysfs device path (e.g. `sd`, `ahci`; `virtio_blk`; `nvme`).
pub fn disk_drivers(disk: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(mut p) = std::fs::canonicalize(format!("/sys/block/{disk}/device")) else { return out };
    loop {
        if let Ok(t) = std::fs::read_link(p.join("driver")) {
            if let Some(name) = t.file_name().and_then(|n| n.to_str()) {
                out.insert(match name {
                    "sd" => "sd_mod".to_string(),
                    "virtio-pci" => "virtio_pci".to_string(),
                    n => n.replace('-', "_"),
                });
            }
        }
        if !p.pop() || p == Path::new("/sys/devices") || p == Path::new("/") {
            break;
        }
    }
    out
}

/// Bind mounts of the rescue system's /dev, /proc, /sys, /run (and efivarfs)
/// into the target, undone in reverse order when dropped.
pub struct ChrootMounts {
    mounted: Vec<PathBuf>,
}

impl ChrootMounts {
    pub fn new(root: &Path) -> Result<ChrootMounts> {
        let mut m = ChrootMounts { mounted: Vec::new() };
        for d in ["dev", "proc", "sys", "run"] {
            let at = crate::target::beneath(root, d)?;
            std::fs::create_dir_all(&at).with_context(|| format!("creating {}", at.display()))?;
            let src = format!("/{d}");
            let mut mount = Mount::builder()
                .fstype("none")
                .flags(MountFlags::BIND | MountFlags::REC)
                .mount(&src, &at)
                .with_context(|| format!("bind-mounting {src} on {} (mount --rbind)", at.display()))?;
            m.mounted.push(at.clone());
            // Unmounting inside the target must not propagate back to the rescue system.
            let rslave = PropagationType::SLAVE | PropagationType::from_bits_retain(MountFlags::REC.bits());
            mount.set_propagation_type(rslave).with_context(|| format!("making {} a slave mount (mount --make-rslave)", at.display()))?;
        }
        Ok(m)
    }
}

impl Drop for ChrootMounts {
    fn drop(&mut self) {
        for at in self.mounted.drain(..).rev() {
            // A lazy unmount detaches the bind mount with everything below it.
            if let Err(e) = sys_mount::unmount(&at, UnmountFlags::DETACH) {
                tracing::warn!("could not unmount {}: {e:#}", at.display());
            }
        }
    }
}

/// Run one step in the target. Commands run chrooted so the restored
/// system's own GRUB, initramfs tools and configuration are used.
pub fn execute(step: &Step, root: &Path) -> Result<()> {
    let chroot = |args: &[&str]| Cmd::new("chroot").arg(root).args(args);
    match step {
        Step::RewriteFile { path, .. } => {
            let file = crate::target::beneath(root, path)?;
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let (new, _) = rewrite::apply(&text, &rewrite::RenameTable::from_changes(step));
            let mode = std::fs::metadata(&file).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777).unwrap_or(0o644);
            crate::util::write_atomic(&file, new.as_bytes(), mode)
        }
        Step::RegenerateInitramfs { tool, kernels, .. } => {
            if tool == InitramfsTool::Dracut.program() {
                if kernels.is_empty() {
                    anyhow::bail!("no kernel found in the recovered system (lib/modules/KVER with boot/vmlinuz-KVER) to run dracut for");
                }
                for k in kernels {
                    chroot(&["dracut", "-f", "--kver", k]).run()?;
                }
                Ok(())
            } else {
                chroot(&[tool.as_str(), "-u", "-k", "all"]).run()
            }
        }
        Step::KeepInitramfs { .. } => Ok(()),
        Step::GrubBios { program, disks } => {
            for d in disks {
                chroot(&[program.as_str(), "--target=i386-pc", "--recheck", d]).run()?;
            }
            Ok(())
        }
        Step::PackagedEfiLoader { dir } => {
            let at = crate::target::beneath(root, dir)?;
            let missing: Vec<&str> = ["shimx64.efi", "grubx64.efi"].into_iter().filter(|f| !at.join(f).is_file()).collect();
            if !missing.is_empty() {
                anyhow::bail!(
                    "the recovered ESP lacks {} in {}: the backup did not hold the ESP's files. Reinstall them from the \
                     distribution's packages in the recovered system (`dnf reinstall shim-x64 grub2-efi-x64` in a chroot of it)",
                    missing.join(" and "),
                    at.display()
                );
            }
            Ok(())
        }
        Step::GrubEfi { program, efi_dir, bootloader_id } => chroot(&[
            program.as_str(),
            "--target=x86_64-efi",
            &format!("--efi-directory={efi_dir}"),
            &format!("--bootloader-id={bootloader_id}"),
            // We write the NVRAM entry ourselves (replacing, not duplicating),
            // and the removable path makes a firmware with empty NVRAM boot it too.
            "--no-nvram",
            "--force-extra-removable",
        ])
        .run(),
        // --no-variables: the EfiBootEntry step writes the NVRAM entry, replacing the
        // recorded one; bootctl's own would be a second entry for the same loader.
        Step::SystemdBoot { esp_path } => chroot(&["bootctl", "install", "--no-variables", &format!("--esp-path={esp_path}")]).run(),
        Step::GrubMkconfig { program, config } => chroot(&[program.as_str(), "-o", config]).run(),
        Step::EfiBootEntry { disk, partition, label, loader } => {
            // Remove entries of the same label first: a recovery must not pile up duplicates.
            let listing = Cmd::new("efibootmgr").read().unwrap_or_default();
            for num in rewrite::efi_entries_with_label(&listing, label) {
                Cmd::new("efibootmgr").args(["-b", &num, "-B"]).run()?;
            }
            Cmd::new("efibootmgr").args(["-c", "-d", disk, "-p", &partition.to_string(), "-L", label, "-l", loader]).run()
        }
        Step::SelinuxRelabel { .. } => {
            let file = crate::target::beneath(root, ".autorelabel")?;
            std::fs::write(&file, b"").with_context(|| format!("writing {}", file.display()))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn layout(name: &str) -> Layout {
        Layout::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts").join(name)).unwrap()
    }

    fn target(uefi: bool, drivers: &[&str]) -> Target {
        Target {
            root: "/mnt/local".into(),
            uefi,
            disk_drivers: drivers.iter().map(|s| s.to_string()).collect(),
            force_initramfs: false,
            initramfs_conf_files: vec!["etc/initramfs-tools/initramfs.conf".into(), "etc/initramfs-tools/conf.d/driver-policy".into()],
            system: debian(),
            kernels: vec!["6.1.0-57-amd64".into()],
            bls_entries: Vec::new(),
            selinux_labels_restored: true,
        }
    }

    fn debian() -> System {
        System { family: distro::FamilyId::Debian, os_id: "debian".into(), name: "Debian GNU/Linux".into(), initramfs: InitramfsTool::InitramfsTools }
    }

    fn grub_bios(disks: &[&str]) -> Step {
        Step::GrubBios { program: "grub-install".into(), disks: disks.iter().map(|d| d.to_string()).collect() }
    }

    fn files(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |p| pairs.iter().find(|(k, _)| *k == p).map(|(_, v)| v.to_string())
    }

    #[test]
    fn same_hardware_keeps_initramfs_and_reinstalls_grub_on_every_mirror() {
        let l = layout("md-raid1-ext4.toml");
        let mut map = DeviceMap::default();
        map.paths.insert("sda".into(), "/dev/sda".into());
        map.paths.insert("sdb".into(), "/dev/sdb".into());
        let read = files(&[
            ("etc/fstab", "UUID=5b4c3d2e-1f0a-4b9c-8d7e-6f5a4b3c2d1e / ext4 errors=remount-ro 0 1\n"),
            ("etc/initramfs-tools/initramfs.conf", "MODULES=most\n"),
        ]);
        let steps = plan(&l, &map, &target(false, &["sd_mod", "ahci"]), &read);
        assert!(matches!(steps[0], Step::KeepInitramfs { .. }), "{steps:?}");
        assert!(steps.contains(&grub_bios(&["/dev/sda", "/dev/sdb"])), "{steps:?}");
        assert!(!steps.iter().any(|s| matches!(s, Step::RewriteFile { .. } | Step::GrubMkconfig { .. })));
    }

    #[test]
    fn a_conf_d_modules_setting_overrides_initramfs_conf() {
        let l = layout("md-raid1-ext4.toml");
        let mut map = DeviceMap::default();
        map.paths.insert("sda".into(), "/dev/vda".into());
        map.paths.insert("sdb".into(), "/dev/vdb".into());
        let read = files(&[
            ("etc/initramfs-tools/initramfs.conf", "MODULES=most\n"),
            ("etc/initramfs-tools/conf.d/driver-policy", "# only what this machine needs\nMODULES=dep\n"),
        ]);
        let steps = plan(&l, &map, &target(false, &["virtio_blk"]), &read);
        assert!(steps.iter().any(|s| matches!(s, Step::RegenerateInitramfs { reason, .. } if reason.contains("virtio_blk"))), "{steps:?}");
        assert_eq!(initramfs_modules(&["MODULES=dep\n".into(), "MODULES='most' # back\n".into()]).as_deref(), Some("most"));
        assert_eq!(initramfs_modules(&["#MODULES=dep\nBUSYBOX=auto\n".into()]), None);
    }

    #[test]
    fn initramfs_conf_files_in_the_order_mkinitramfs_reads_them() {
        let d = tempfile::tempdir().unwrap();
        let c = d.path().join("etc/initramfs-tools/conf.d");
        std::fs::create_dir_all(&c).unwrap();
        for n in ["zz-last", "10-first", "resume", "old.dpkg-old", "edit~"] {
            std::fs::write(c.join(n), "").unwrap();
        }
        assert_eq!(
            initramfs_conf_files(d.path()),
            ["initramfs.conf", "conf.d/10-first", "conf.d/resume", "conf.d/zz-last"].map(|f| format!("etc/initramfs-tools/{f}"))
        );
    }

    #[test]
    fn renamed_disk_rewrites_fstab_and_grub_defaults() {
        let l = layout("mbr-logical.toml");
        let mut map = DeviceMap::default();
        map.paths.insert("sda".into(), "/dev/vda".into());
        let read = files(&[
            ("etc/fstab", "/dev/sda6 / ext4 errors=remount-ro 0 1\nUUID=c0d1e2f3-a4b5-4c6d-8e7f-9a0b1c2d3e4f /boot ext4 defaults 0 2\n"),
            ("etc/default/grub", "GRUB_CMDLINE_LINUX=\"resume=/dev/sda5\"\n"),
            ("etc/initramfs-tools/initramfs.conf", "MODULES=dep\n"),
        ]);
        let steps = plan(&l, &map, &target(false, &["virtio_blk"]), &read);
        assert!(steps.contains(&Step::RewriteFile { path: "/etc/fstab".into(), changes: vec![("/dev/sda6".into(), "/dev/vda6".into())] }), "{steps:?}");
        assert!(steps.iter().any(|s| matches!(s, Step::RegenerateInitramfs { reason, .. } if reason.contains("virtio_blk"))), "{steps:?}");
        assert!(steps.contains(&grub_bios(&["/dev/vda"])));
        assert!(steps.contains(&Step::GrubMkconfig { program: "grub-mkconfig".into(), config: "/boot/grub/grub.cfg".into() }));
    }

    #[test]
    fn uefi_entry_replaces_the_recorded_one() {
        let l = layout("uefi-lvm-xfs.toml");
        let mut map = DeviceMap::default();
        map.paths.insert("nvme0n1".into(), "/dev/vda".into());
        let steps = plan(&l, &map, &target(true, &[]), &files(&[("etc/selinux/config", "SELINUX=enforcing\n")]));
        assert!(steps.contains(&Step::GrubEfi { program: "grub-install".into(), efi_dir: "/boot/efi".into(), bootloader_id: "debian".into() }), "{steps:?}");
        assert!(
            steps.contains(&Step::EfiBootEntry { disk: "/dev/vda".into(), partition: 1, label: "debian".into(), loader: "\\EFI\\debian\\shimx64.efi".into() }),
            "{steps:?}"
        );
        // Every label came back: no relabel.
        assert!(!steps.iter().any(|s| matches!(s, Step::SelinuxRelabel { .. })), "{steps:?}");
        // Booted with BIOS: no NVRAM to write.
        let steps = plan(&l, &map, &target(false, &[]), &files(&[]));
        assert!(!steps.iter().any(|s| matches!(s, Step::EfiBootEntry { .. })));
    }

    #[test]
    fn systemd_boot_gets_bootctl_and_its_own_entry_and_dracut_systems_get_dracut() {
        let mut l = layout("uefi-lvm-xfs.toml");
        l.bootloader.kind = BootloaderKind::SystemdBoot;
        l.bootloader.loader = None;
        let mut map = DeviceMap::default();
        map.paths.insert("nvme0n1".into(), "/dev/vda".into());
        // A system that uses dracut: dracut regenerates it, once per kernel.
        let mut t = target(true, &["virtio_blk"]);
        t.force_initramfs = true;
        t.system.initramfs = InitramfsTool::Dracut;
        let steps = plan(&l, &map, &t, &files(&[]));
        assert!(
            steps.contains(&Step::RegenerateInitramfs { tool: "dracut".into(), kernels: vec!["6.1.0-57-amd64".into()], reason: "requested".into() }),
            "{steps:?}"
        );
        assert!(steps.contains(&Step::SystemdBoot { esp_path: "/boot/efi".into() }), "{steps:?}");
        assert!(!steps.iter().any(|s| matches!(s, Step::GrubEfi { .. } | Step::GrubBios { .. })), "{steps:?}");
        assert!(
            steps.contains(&Step::EfiBootEntry {
                disk: "/dev/vda".into(),
                partition: 1,
                label: "Linux Boot Manager".into(),
                loader: "\\EFI\\systemd\\systemd-bootx64.efi".into()
            }),
            "{steps:?}"
        );
        // initramfs-tools: update-initramfs, never dracut.
        t.system.initramfs = InitramfsTool::InitramfsTools;
        let steps = plan(&l, &map, &t, &files(&[]));
        assert!(steps.iter().any(|s| matches!(s, Step::RegenerateInitramfs { tool, .. } if tool == "update-initramfs")), "{steps:?}");
    }

    #[test]
    fn changed_crypttab_forces_initramfs() {
        let l = layout("luks2-lvm.toml");
        let mut map = DeviceMap::default();
        map.paths.insert("vda".into(), "/dev/sda".into());
        let read = files(&[("etc/crypttab", "cryptroot /dev/vda3 none luks,discard\n"), ("etc/initramfs-tools/initramfs.conf", "MODULES=most\n")]);
        let steps = plan(&l, &map, &target(false, &[]), &read);
        assert!(steps.iter().any(|s| matches!(s, Step::RegenerateInitramfs { reason, .. } if reason.contains("crypttab"))), "{steps:?}");
    }
}
