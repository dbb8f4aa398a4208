//! RHEL-family finalize on a fixture tree (tests/fixtures/rhel9, sources in
//! its README): the family is detected from the restored tree, and the
//! programs finalize runs are recorded by fakes on PATH (`chroot`,
//! `efibootmgr`: each appends its argv to a file) while the code still runs
//! them through `cmd.rs`. Also: SELinux labels through the archive on a loop
//! filesystem, and `/.autorelabel` only when they did not all come back.
//!
//! One test binary with PATH set once: the fakes must be found by every test
//! here and by no other test binary.

#![allow(clippy::unwrap_used)]

#[path = "archive_common/mod.rs"]
mod archive_common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Once;

use rescue::boot::distro::{self, FamilyId, InitramfsTool};
use rescue::boot::{self, DeviceMap, Step, Target};
use rescue::layout::Layout;

const KVER: &str = "5.14.0-427.13.1.el9_4.x86_64";
const ENTRY: &str = "boot/loader/entries/9b1ec6a8d2f74e5c8d0b3a2f1e4c5d6a-5.14.0-427.13.1.el9_4.x86_64.conf";
const KEYFILE: &str = "etc/NetworkManager/system-connections/enp1s0.nmconnection";

static FAKES: Once = Once::new();

/// The directory of the recording fakes, first on PATH. `chroot` records
/// into `ROOT/.record` (each test's tree has its own log); `efibootmgr`
/// (one test calls it) into `efibootmgr.record` beside itself.
fn fakes() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rescue-rhel-fakes-{}", std::process::id()));
    FAKES.call_once(|| {
        std::fs::create_dir_all(&dir).unwrap();
        // chroot ROOT PROG ARGS...: recorded into ROOT/.record, so each test's tree has its own log.
        let chroot = "#!/bin/sh\nroot=$1\nprintf 'chroot %s\\n' \"$*\" >>\"$root/.record\"\n";
        // efibootmgr: no entries listed; a change is recorded.
        let efibootmgr =
            "#!/bin/sh\n[ $# -eq 0 ] && { echo 'BootOrder: 0000'; exit 0; }\nprintf 'efibootmgr %s\\n' \"$*\" >>\"$(dirname \"$0\")/efibootmgr.record\"\n";
        for (name, text) in [("chroot", chroot), ("efibootmgr", efibootmgr)] {
            std::fs::write(dir.join(name), text).unwrap();
            std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![dir.clone()];
        dirs.extend(std::env::split_paths(&path));
        std::env::set_var("PATH", std::env::join_paths(dirs).unwrap());
    });
    dir
}

fn layout(name: &str) -> Layout {
    Layout::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts").join(name)).unwrap()
}

/// A copy of the fixture tree (symlinks kept), the keyfile 0600 as NetworkManager wants it.
fn tree() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rhel9/tree");
    archive_common::sh(&format!("cp -a {}/. {}", src.display(), d.path().display()));
    std::fs::set_permissions(d.path().join(KEYFILE), std::fs::Permissions::from_mode(0o600)).unwrap();
    d
}

fn target(root: &Path, uefi: bool, labels: bool) -> Target {
    let read = |rel: &str| std::fs::read_to_string(root.join(rel)).ok();
    let exists = |rel: &str| std::fs::symlink_metadata(root.join(rel)).is_ok();
    Target {
        root: root.to_path_buf(),
        uefi,
        disk_drivers: ["virtio_blk".to_string()].into(),
        force_initramfs: false,
        initramfs_conf_files: boot::initramfs_conf_files(root),
        system: distro::detect(&read, &exists),
        kernels: distro::installed_kernels(root),
        bls_entries: distro::bls_entries(root),
        selinux_labels_restored: labels,
    }
}

fn plan(l: &Layout, map: &DeviceMap, t: &Target) -> Vec<Step> {
    let root = t.root.clone();
    boot::plan(l, map, t, &|rel| std::fs::read_to_string(root.join(rel)).ok())
}

/// Run the steps as finalize does (through cmd.rs); the recorded lines.
fn execute(steps: &[Step], root: &Path) -> Vec<String> {
    let efi_record = fakes().join("efibootmgr.record");
    for s in steps {
        boot::execute(s, root).unwrap_or_else(|e| panic!("{s}: {e:#}"));
    }
    let mut log = std::fs::read_to_string(root.join(".record")).unwrap_or_default();
    log += &std::fs::read_to_string(&efi_record).unwrap_or_default();
    let _ = std::fs::remove_file(efi_record);
    log.lines().map(|l| l.replace(&root.display().to_string(), "ROOT")).collect()
}

/// The keyfile after finalize: unchanged, still 0600 (NetworkManager
/// ignores a keyfile others can read), still a keyfile of its interface.
fn assert_keyfile_valid(root: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rhel9/tree").join(KEYFILE);
    let now = std::fs::read_to_string(root.join(KEYFILE)).unwrap();
    assert_eq!(now, std::fs::read_to_string(src).unwrap(), "finalize changed the NetworkManager keyfile");
    assert_eq!(std::fs::metadata(root.join(KEYFILE)).unwrap().permissions().mode() & 0o777, 0o600);
    let section = now.lines().skip_while(|l| *l != "[connection]").skip(1).take_while(|l| !l.starts_with('[')).collect::<Vec<_>>();
    for key in ["id=enp1s0", "type=ethernet", "interface-name=enp1s0"] {
        assert!(section.contains(&key), "[connection] lacks {key}: {section:?}");
    }
}

#[test]
fn rhel_is_detected_from_the_restored_tree() {
    let t = tree();
    let s = target(t.path(), false, true).system;
    assert_eq!((s.family, s.os_id.as_str(), s.efi_dir(), s.initramfs), (FamilyId::Rhel, "rhel", "redhat", InitramfsTool::Dracut));
    assert_eq!(distro::installed_kernels(t.path()), vec![KVER.to_string()], "usrmerge: lib -> usr/lib, one kernel");
    assert_eq!(distro::bls_entries(t.path()).len(), 2);
    // Rocky's os-release: the same family, its own ESP directory.
    std::fs::write(t.path().join("etc/os-release"), "NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n").unwrap();
    assert_eq!(target(t.path(), false, true).system.efi_dir(), "rocky");
    // No os-release at all: /etc/redhat-release says RHEL.
    std::fs::remove_file(t.path().join("etc/os-release")).unwrap();
    assert_eq!(target(t.path(), false, true).system.family, FamilyId::Rhel);
}

#[test]
fn rhel_bios_on_renamed_disks_runs_dracut_per_kernel_grub2_install_and_grub2_mkconfig() {
    let t = tree();
    let root = t.path();
    let l = layout("mbr-logical.toml");
    let mut map = DeviceMap::default();
    map.paths.insert("sda".into(), "/dev/vda".into());
    let steps = plan(&l, &map, &target(root, false, true));
    let run = execute(&steps, root);
    assert_eq!(
        run,
        vec![
            format!("chroot ROOT dracut -f --kver {KVER}"),
            "chroot ROOT grub2-install --target=i386-pc --recheck /dev/vda".to_string(),
            "chroot ROOT grub2-mkconfig -o /boot/grub2/grub.cfg".to_string(),
        ],
        "{steps:#?}"
    );
    // The BootLoaderSpec entries keep their whole command line; only the device names changed.
    let entry = std::fs::read_to_string(root.join(ENTRY)).unwrap();
    assert!(
        entry.contains("options root=/dev/vda6 ro crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=/dev/vda5 console=ttyS0,115200n8 $tuned_params\n"),
        "{entry}"
    );
    assert!(entry.contains("grub_arg --unrestricted\n") && entry.starts_with("title Red Hat Enterprise Linux"), "{entry}");
    let rescue = std::fs::read_to_string(root.join("boot/loader/entries/9b1ec6a8d2f74e5c8d0b3a2f1e4c5d6a-0-rescue.conf")).unwrap();
    assert!(rescue.contains("options root=/dev/vda6 ro ") && !rescue.contains("/dev/sda"), "{rescue}");
    let cmdline = std::fs::read_to_string(root.join("etc/kernel/cmdline")).unwrap();
    assert!(cmdline.starts_with("root=/dev/vda6 ro crashkernel="), "{cmdline}");
    assert!(std::fs::read_to_string(root.join("etc/default/grub")).unwrap().contains("resume=/dev/vda5 console=ttyS0"));
    // Labels restored: no relabel.
    assert!(!root.join(".autorelabel").exists());
    assert_keyfile_valid(root);
}

#[test]
fn rhel_uefi_keeps_the_packaged_shim_and_points_the_entry_at_its_vendor_directory() {
    let t = tree();
    let root = t.path();
    let mut l = layout("uefi-lvm-xfs.toml");
    // Booted from elsewhere: nothing recorded, the family's defaults apply.
    l.bootloader.loader = None;
    l.bootloader.efi_entries.clear();
    let mut map = DeviceMap::default();
    map.paths.insert("nvme0n1".into(), "/dev/vda".into());
    let steps = plan(&l, &map, &target(root, true, true));
    assert!(steps.contains(&Step::PackagedEfiLoader { dir: "/boot/efi/EFI/redhat".into() }), "{steps:#?}");
    assert!(!steps.iter().any(|s| matches!(s, Step::GrubEfi { .. })), "grub2-install must not replace the signed GRUB: {steps:#?}");
    let run = execute(&steps, root);
    assert_eq!(
        run,
        vec![
            format!("chroot ROOT dracut -f --kver {KVER}"),
            "efibootmgr -c -d /dev/vda -p 1 -L Red Hat Enterprise Linux -l \\EFI\\redhat\\shimx64.efi".to_string(),
        ],
        "{steps:#?}"
    );
    assert_keyfile_valid(root);

    // The ESP came back without the signed GRUB: the check says what to reinstall.
    std::fs::remove_file(root.join("boot/efi/EFI/redhat/grubx64.efi")).unwrap();
    let check = steps.iter().find(|s| matches!(s, Step::PackagedEfiLoader { .. })).unwrap();
    let e = format!("{:#}", boot::execute(check, root).unwrap_err());
    assert!(e.contains("grubx64.efi") && e.contains("dnf reinstall shim-x64 grub2-efi-x64"), "{e}");
}

#[test]
fn autorelabel_only_when_labels_did_not_come_back() {
    let t = tree();
    let root = t.path();
    let l = layout("uefi-lvm-xfs.toml");
    let mut map = DeviceMap::default();
    map.paths.insert("nvme0n1".into(), "/dev/nvme0n1".into());
    let relabel = |steps: &[Step]| steps.iter().any(|s| matches!(s, Step::SelinuxRelabel { .. }));
    assert!(!relabel(&plan(&l, &map, &target(root, false, true))));
    let steps = plan(&l, &map, &target(root, false, false));
    assert!(relabel(&steps), "{steps:#?}");
    execute(&steps.into_iter().filter(|s| matches!(s, Step::SelinuxRelabel { .. })).collect::<Vec<_>>(), root);
    assert!(root.join(".autorelabel").is_file());
    // SELinux disabled: never.
    std::fs::write(root.join("etc/selinux/config"), "SELINUX=disabled\nSELINUXTYPE=targeted\n").unwrap();
    assert!(!relabel(&plan(&l, &map, &target(root, false, false))));
}

const LABEL: &[u8] = b"system_u:object_r:etc_t:s0";

/// An archive of a tree whose files carry SELinux labels, made by rescue on
/// a loop ext4 (the host kernel keeps `security.selinux` without SELinux on).
fn labelled_archive(dir: &Path) -> PathBuf {
    let src = archive_common::LoopFs::new(32);
    std::fs::create_dir(src.mnt.join("etc")).unwrap();
    std::fs::write(src.mnt.join("etc/hostname"), "rhel9\n").unwrap();
    std::fs::write(src.mnt.join("etc/fstab"), "# empty\n").unwrap();
    for p in ["etc", "etc/hostname", "etc/fstab"] {
        xattr::set(src.mnt.join(p), "security.selinux", LABEL).unwrap();
    }
    let out = dir.join("labelled.tar.zst");
    let mut c = archive_common::rescue();
    c.args(["archive", "create", "-C"]).arg(&src.mnt).arg(".").arg("-o").arg(&out);
    assert!(archive_common::run(c).status.success());
    out
}

fn extract(archive: &Path, target: &Path) -> rescue::archive::ExtractReport {
    let opts = rescue::archive::ExtractOptions { target: target.to_path_buf(), progress: false, total_bytes: None, keep_manifest: false, incremental: false };
    rescue::archive::extract(std::fs::File::open(archive).unwrap(), &opts).unwrap()
}

#[test]
fn selinux_labels_survive_the_archive_and_a_refusing_filesystem_is_counted() {
    archive_common::require(&[("mkfs.ext4", "e2fsprogs"), ("mount", "mount")]);
    let d = tempfile::tempdir().unwrap();
    let archive = labelled_archive(d.path());

    // Onto ext4: every label back, so finalize writes no /.autorelabel.
    let dst = archive_common::LoopFs::new(32);
    let r = extract(&archive, &dst.mnt);
    assert_eq!(xattr::get(dst.mnt.join("etc/hostname"), "security.selinux").unwrap().as_deref(), Some(LABEL));
    assert_eq!(xattr::get(dst.mnt.join("etc"), "security.selinux").unwrap().as_deref(), Some(LABEL));
    let labels = r.selinux_labels.unwrap();
    assert_eq!((labels.restored, labels.refused), (3, 0), "{r:?}");
    assert!(labels.complete());

    // Onto ramfs, which has no xattrs at all: refused, counted, relabel.
    let ram = d.path().join("ram");
    std::fs::create_dir(&ram).unwrap();
    archive_common::sh(&format!("mount -t ramfs none {}", ram.display()));
    let r = extract(&archive, &ram);
    archive_common::sh(&format!("umount {}", ram.display()));
    let labels = r.selinux_labels.unwrap();
    assert_eq!((labels.restored, labels.refused), (0, 3), "{r:?}");
    assert!(!labels.complete());
    assert!(r.warnings.iter().any(|w| w.contains("security.selinux")), "{:?}", r.warnings);
}
