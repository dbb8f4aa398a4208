//! Finalize phase: make the restored tree boot here. The steps come from
//! `boot::plan` (device names rewritten, initramfs when needed, bootloader,
//! UEFI entry); this checks that the recovered system has the programs the
//! steps run, before running any, then runs them with /dev, /proc, /sys,
//! /run (and efivarfs) bound into the target.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::boot::{self, ChrootMounts, DeviceMap, Step, Target};
use crate::cmd::Cmd;
use crate::layout::Layout;
use crate::needs::{Needs, StepKind};
use crate::plan::Plan;
use crate::target::TargetRoot;

pub struct Options {
    pub force_initramfs: bool,
}

pub struct Done {
    /// What ran, with its time.
    pub steps: Vec<String>,
    pub warnings: Vec<String>,
}

fn runs_in_chroot(step: &Step) -> bool {
    matches!(step, Step::RegenerateInitramfs { .. } | Step::GrubBios { .. } | Step::GrubEfi { .. } | Step::SystemdBoot { .. } | Step::GrubMkconfig { .. })
}

/// Whether the recovered system under `root` has `rel` (a path relative to
/// it, joined so it cannot leave the root; a symlink inside it may be
/// absolute, so existing as a link is enough).
fn present(root: &TargetRoot, rel: &str) -> bool {
    root.join(rel).is_ok_and(|p| std::fs::symlink_metadata(p).is_ok())
}

fn has_kernel(root: &TargetRoot) -> bool {
    root.join("boot")
        .and_then(|b| Ok(std::fs::read_dir(b)?))
        .map(|rd| rd.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().starts_with("vmlinuz")))
        .unwrap_or(false)
}

/// Compute and run the finalize steps for the restored tree under `root`.
pub fn run(layout: &Layout, needs: &Needs, plan: &Plan, root: &TargetRoot, opts: &Options) -> Result<Done> {
    let uefi = Path::new("/sys/firmware/efi").exists();
    let mut drivers = BTreeSet::new();
    for m in &plan.mapping {
        drivers.extend(boot::disk_drivers(&m.name));
    }
    let target = Target {
        root: root.path().to_path_buf(),
        uefi,
        disk_drivers: drivers,
        force_initramfs: opts.force_initramfs,
        initramfs_conf_files: boot::initramfs_conf_files(root.path()),
    };
    let map = DeviceMap { paths: plan.device_paths() };
    let read = |rel: &str| root.join(rel).ok().and_then(|p| std::fs::read_to_string(p).ok());
    let planned = boot::plan(layout, &map, &target, &read);
    let mut warnings = Vec::new();
    let fstab = root.join("etc/fstab")?;
    if !fstab.is_file() {
        warnings.push(format!("the restored system has no /etc/fstab ({}): it may not mount its filesystems at boot", fstab.display()));
    }

    // Every program first: a bootloader step that cannot run must not leave
    // the others half done.
    let mut steps = Vec::new();
    let mut missing = Vec::new();
    for step in planned {
        let kinds: Vec<StepKind> = StepKind::of(&step).into_iter().collect();
        let lacking = needs.missing_for_steps(&kinds, |rel| present(root, rel));
        if lacking.is_empty() {
            steps.push(step);
            continue;
        }
        if matches!(step, Step::RegenerateInitramfs { .. }) && !has_kernel(root) {
            warnings.push(format!("not done: {step}; the restored system has no kernel in /boot and no {}", lacking[0].1.what));
            continue;
        }
        for (_, m) in lacking {
            missing.push(format!("{} (for: {step}; Debian package {})", m.what, m.package.unwrap_or("unknown")));
        }
    }
    if !missing.is_empty() {
        anyhow::bail!(
            "the restored system lacks what finalizing needs: {}. No bootloader or initramfs step was run. Install the \
             package(s) with `chroot {} apt-get install ...` (after binding /dev, /proc, /sys), then install the bootloader \
             by hand, or add them to the source system and make a new backup",
            missing.join("; "),
            root.display()
        );
    }

    let mut done = Vec::new();
    let _binds = if steps.iter().any(runs_in_chroot) {
        if uefi {
            mount_efivarfs()?;
        }
        Some(ChrootMounts::new(root.path()).context("binding /dev, /proc, /sys and /run into the recovered system")?)
    } else {
        None
    };
    for step in &steps {
        let t = Instant::now();
        tracing::info!("finalize: {step}");
        boot::execute(step, root.path()).with_context(|| format!("finalize step failed: {step}"))?;
        done.push(format!("{step} ({:.1} s)", t.elapsed().as_secs_f64()));
    }
    done.extend(crate::drill::marker::install_if_drill(root.path())?); // `rescue drill` only: its boot marker (src/drill/marker.rs)
    Ok(Done { steps: done, warnings })
}

/// The rescue init mounts efivarfs when booted with UEFI; make sure, since
/// grub-install and efibootmgr need it.
fn mount_efivarfs() -> Result<()> {
    let at = Path::new("/sys/firmware/efi/efivars");
    if !at.is_dir() {
        return Ok(());
    }
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if mounts.lines().any(|l| l.split_whitespace().nth(1) == Some("/sys/firmware/efi/efivars")) {
        return Ok(());
    }
    Cmd::new("mount").args(["-t", "efivarfs", "efivarfs"]).arg(at).run()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_looked_up_in_the_target() {
        let layout = Layout::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts/bios-gpt-ext4.toml")).unwrap();
        let needs = crate::needs::recovery(&layout, &crate::image::config::ImageConfig::default(), Needs::default());
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("usr/sbin")).unwrap();
        std::fs::write(d.path().join("usr/sbin/grub-install"), "").unwrap();
        let root = TargetRoot::new(d.path()).unwrap();
        let lacking = needs.missing_for_steps(&[StepKind::GrubBios], |rel| present(&root, rel));
        assert_eq!(lacking.len(), 1, "{lacking:?}");
        assert_eq!((lacking[0].1.what.as_str(), lacking[0].1.package), ("/usr/lib/grub/i386-pc", Some("grub-pc-bin")));
        std::fs::create_dir_all(d.path().join("usr/lib/grub/i386-pc")).unwrap();
        assert!(needs.missing_for_steps(&[StepKind::GrubBios], |rel| present(&root, rel)).is_empty());
        assert!(!has_kernel(&root));
    }

    #[test]
    fn a_restored_system_without_grub_stops_before_any_step() {
        let layout = Layout::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts/bios-gpt-ext4.toml")).unwrap();
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        // A device name that changed: the fstab rewrite is planned but must not run either.
        std::fs::write(d.path().join("etc/fstab"), "/dev/vda2 / ext4 defaults 0 1\n").unwrap();
        let plan = Plan {
            host: layout.host.hostname.clone(),
            target_root: TargetRoot::new(d.path()).unwrap(),
            resize: Default::default(),
            mapping: Vec::new(),
            resized: Vec::new(),
            devices: [("vda".to_string(), "/dev/sdz".into()), ("vda2".to_string(), "/dev/sdz2".into())].into_iter().collect(),
            notes: Vec::new(),
            operations: Vec::new(),
        };
        let needs = crate::needs::recovery(&layout, &crate::image::config::ImageConfig::default(), Needs::default());
        let e = run(&layout, &needs, &plan, &plan.target_root, &Options { force_initramfs: false }).err().unwrap();
        let msg = format!("{e:#}");
        assert!(msg.contains("grub-install") && msg.contains("grub-pc") && msg.contains("No bootloader or initramfs step was run"), "{msg}");
        assert_eq!(std::fs::read_to_string(d.path().join("etc/fstab")).unwrap(), "/dev/vda2 / ext4 defaults 0 1\n");
    }
}
