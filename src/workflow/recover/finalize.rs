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
use crate::plan::{NicPlan, Plan};
use crate::target::TargetRoot;

pub struct Options {
    pub force_initramfs: bool,
    /// The restore gave every labelled file its SELinux label back
    /// (`archive::SelinuxLabels::complete`); otherwise an SELinux system is relabelled.
    pub selinux_labels_restored: bool,
}

pub struct Done {
    /// What ran, with its time.
    pub steps: Vec<String>,
    pub warnings: Vec<String>,
}

fn runs_in_chroot(step: &Step) -> bool {
    crate::needs::StepKind::of(step).is_some_and(|k| k != StepKind::EfiBootEntry)
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
    let read = |rel: &str| root.join(rel).ok().and_then(|p| std::fs::read_to_string(p).ok());
    let target = Target {
        root: root.path().to_path_buf(),
        uefi,
        disk_drivers: drivers,
        force_initramfs: opts.force_initramfs,
        initramfs_conf_files: boot::initramfs_conf_files(root.path()),
        system: boot::distro::detect(&read, &|rel| present(root, rel)),
        kernels: boot::distro::installed_kernels(root.path()),
        bls_entries: boot::distro::bls_entries(root.path()),
        selinux_labels_restored: opts.selinux_labels_restored,
    };
    tracing::info!("finalize: the recovered system is of the {:?} family (os-release ID `{}`)", target.system.family, target.system.os_id);
    let map = DeviceMap { paths: plan.device_paths() };
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

    let (mut done, left) = rewrite_network(root, &plan.nics)?;
    warnings.extend(left);
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

/// Rewrite the recovered system's network config for the NICs of this
/// machine: what was rewritten (finalize steps) and what was left as it was (warnings).
fn rewrite_network(root: &TargetRoot, nics: &NicPlan) -> Result<(Vec<String>, Vec<String>)> {
    let renames = nics.renames();
    if renames.is_empty() {
        return Ok(Default::default());
    }
    let t = Instant::now();
    let dir = boot::network::RootDir::open(root.path())?;
    let planned = boot::network::plan(&dir, &renames);
    boot::network::apply(&dir, &planned).context("rewriting the network config of the recovered system")?;
    let secs = t.elapsed().as_secs_f64();
    let mut done: Vec<String> =
        planned.rewritten.iter().map(|f| format!("rewrite {} for this machine's NICs: {} ({secs:.1} s)", f.path, f.changes.join("; "))).collect();
    let mut left: Vec<String> = planned.left.iter().map(|(p, why)| format!("network config {p} left as it was: {why}")).collect();
    if done.is_empty() && left.is_empty() {
        left.push(format!(
            "no network config of the recovered system names the recorded NICs ({}); if it does elsewhere, change it by hand",
            renames.iter().map(|r| r.old_name.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    done.sort();
    Ok((done, left))
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
            nics: Default::default(),
        };
        let needs = crate::needs::recovery(&layout, &crate::image::config::ImageConfig::default(), Needs::default());
        let e = run(&layout, &needs, &plan, &plan.target_root, &Options { force_initramfs: false, selinux_labels_restored: false }).err().unwrap();
        let msg = format!("{e:#}");
        assert!(msg.contains("grub-install") && msg.contains("grub-pc") && msg.contains("No bootloader or initramfs step was run"), "{msg}");
        assert_eq!(std::fs::read_to_string(d.path().join("etc/fstab")).unwrap(), "/dev/vda2 / ext4 defaults 0 1\n");
    }

    /// A Debian server with an ifupdown bond of two virtio NICs and a VLAN on
    /// it (recorded in the test guest: tests/vm/record-network.sh) recovered
    /// onto a machine whose e1000e NICs sit in the same slots.
    #[test]
    fn the_network_config_of_a_restored_tree_follows_the_nics() {
        use crate::layout::network::Network;
        use crate::probe::source::Fixture;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/network");
        let fx = Fixture::load(&dir.join("bond-vlan-vm.json")).unwrap();
        let recorded: Network = crate::probe::network::capture_network(&fx, "/").unwrap();
        let interfaces = match &fx.files["/etc/network/interfaces"] {
            crate::probe::source::Answer::Ok(t) => t.clone(),
            other => panic!("{other:?}"),
        };
        // The guest used kernel names (net.ifnames=0), which stay kernel names on
        // new NICs; the same server with predictable names (ens5, ens6) must get
        // the new machine's names.
        let predictable = |t: &str| t.replace("eth0", "ens5").replace("eth1", "ens6");
        let net: Network = toml::from_str(&predictable(&toml::to_string(&recorded).unwrap())).unwrap();
        let interfaces_kernel_names = interfaces.clone();
        let interfaces = predictable(&interfaces);
        let present = [
            crate::inventory::PresentNic {
                name: "enp0s5".into(),
                mac: "52:54:00:ab:cd:01".into(),
                driver: Some("e1000e".into()),
                pci_path: Some("0000:00:05.0".into()),
                predicted_name: Some("enp0s5".into()),
            },
            crate::inventory::PresentNic {
                name: "enp0s6".into(),
                mac: "52:54:00:ab:cd:02".into(),
                driver: Some("e1000e".into()),
                pci_path: Some("0000:00:06.0".into()),
                predicted_name: Some("enp0s6".into()),
            },
        ];
        let nics = crate::plan::nics::map_nics(&net, &present, &Default::default()).unwrap();

        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc/network/interfaces.d")).unwrap();
        std::fs::write(d.path().join("etc/network/interfaces"), &interfaces).unwrap();
        std::fs::create_dir_all(d.path().join("etc/udev/rules.d")).unwrap();
        let rules = "SUBSYSTEM==\"net\", ACTION==\"add\", ATTR{address}==\"52:54:00:19:01:01\", NAME=\"ens5\"\n";
        std::fs::write(d.path().join("etc/udev/rules.d/70-persistent-net.rules"), rules).unwrap();
        std::fs::create_dir_all(d.path().join("etc/systemd/network")).unwrap();
        let odd = "[Match]\nName=ens6\n\n[Link]\nDescription=second port, was ens6\n";
        std::fs::write(d.path().join("etc/systemd/network/10-ens6.link"), odd).unwrap();
        let root = TargetRoot::new(d.path()).unwrap();

        let (done, left) = rewrite_network(&root, &nics).unwrap();
        let got = std::fs::read_to_string(d.path().join("etc/network/interfaces")).unwrap();
        assert_eq!(got, interfaces.replace("bond-slaves ens5 ens6", "bond-slaves enp0s5 enp0s6").replace("bond-primary ens5", "bond-primary enp0s5"));
        let rules_now = std::fs::read_to_string(d.path().join("etc/udev/rules.d/70-persistent-net.rules")).unwrap();
        assert_eq!(rules_now, rules.replace("52:54:00:19:01:01", "52:54:00:ab:cd:01").replace("\"ens5\"", "\"enp0s5\""));
        assert_eq!(std::fs::read_to_string(d.path().join("etc/systemd/network/10-ens6.link")).unwrap(), odd, "left as it was");
        assert_eq!(done.len(), 2, "{done:?}");
        assert!(done[0].starts_with("rewrite /etc/network/interfaces for this machine's NICs: ens5 -> enp0s5; ens6 -> enp0s6"), "{done:?}");
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left[0].starts_with("network config /etc/systemd/network/10-ens6.link left as it was: line 5"), "{left:?}");

        // The same NICs: nothing to do.
        let same = [
            crate::inventory::PresentNic { name: "ens5".into(), mac: "52:54:00:19:01:01".into(), ..Default::default() },
            crate::inventory::PresentNic { name: "ens6".into(), mac: "52:54:00:19:01:02".into(), ..Default::default() },
        ];
        let nics = crate::plan::nics::map_nics(&net, &same, &Default::default()).unwrap();
        assert_eq!(rewrite_network(&root, &nics).unwrap(), (vec![], vec![]));

        // As recorded (kernel names): the names stay, only the MAC in the udev rule follows.
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc/network")).unwrap();
        std::fs::write(d.path().join("etc/network/interfaces"), &interfaces_kernel_names).unwrap();
        std::fs::create_dir_all(d.path().join("etc/udev/rules.d")).unwrap();
        let rules = rules.replace("\"ens5\"", "\"eth0\"");
        std::fs::write(d.path().join("etc/udev/rules.d/70-persistent-net.rules"), &rules).unwrap();
        let root = TargetRoot::new(d.path()).unwrap();
        let nics = crate::plan::nics::map_nics(&recorded, &present, &Default::default()).unwrap();
        let (done, left) = rewrite_network(&root, &nics).unwrap();
        assert_eq!(std::fs::read_to_string(d.path().join("etc/network/interfaces")).unwrap(), interfaces_kernel_names);
        let rules_now = std::fs::read_to_string(d.path().join("etc/udev/rules.d/70-persistent-net.rules")).unwrap();
        assert_eq!(rules_now, rules.replace("52:54:00:19:01:01", "52:54:00:ab:cd:01"));
        assert!(left.is_empty() && done.len() == 1, "{done:?} {left:?}");
    }
}
