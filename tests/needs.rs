//! The rescue image holds what recovery needs, for every variant the
//! descriptor and config types can express: each variant is enumerated from
//! its type with an exhaustive `match` (a new variant does not compile until
//! it is listed here), a descriptor using it is built into a rescue tree
//! (Debian's kernel from tests/vm/prepare-kernel.sh, the initramfs is not
//! compressed), and the tree is checked
//! - against `needs::recovery`, as mkrescue checks it, and
//! - against what the code that runs recovery calls for that variant: the
//!   mkfs program `apply` runs, the module the kernel asks for (`fs-TYPE`,
//!   `md-LEVEL`, `dm-crypt`), the mount helper of a URL scheme, the programs
//!   of the finalize steps `boot::plan` makes.

#![allow(clippy::unwrap_used)]

mod image_common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rescue::backup::BackupMethod;
use rescue::backup::Location;
use rescue::boot::{self, DeviceMap, Step, Target};
use rescue::config::Config;
use rescue::image::initramfs::{self, Built, Inputs};
use rescue::image::manifest::Manifest;
use rescue::image::modules::ModuleIndex;
use rescue::layout::{BootloaderKind, Firmware, FsType, Layout, TableType, LUKS_VERSIONS, LVM_SEGMENT_TYPES, RAID_LEVELS};
use rescue::needs::{self, Runs, StepKind};

// ------------------------------------------------------------ the variants

fn next_fs(f: FsType) -> Option<FsType> {
    match f {
        FsType::Ext2 => Some(FsType::Ext3),
        FsType::Ext3 => Some(FsType::Ext4),
        FsType::Ext4 => Some(FsType::Xfs),
        FsType::Xfs => Some(FsType::Vfat),
        FsType::Vfat => Some(FsType::Btrfs),
        FsType::Btrfs => None,
    }
}

fn next_bootloader(b: BootloaderKind) -> Option<BootloaderKind> {
    match b {
        BootloaderKind::None => Some(BootloaderKind::Grub2Bios),
        BootloaderKind::Grub2Bios => Some(BootloaderKind::Grub2Efi),
        BootloaderKind::Grub2Efi => Some(BootloaderKind::SystemdBoot),
        BootloaderKind::SystemdBoot => None,
    }
}

fn next_table(t: TableType) -> Option<TableType> {
    match t {
        TableType::Gpt => Some(TableType::Msdos),
        TableType::Msdos => None,
    }
}

fn next_method(m: BackupMethod) -> Option<BackupMethod> {
    match m {
        BackupMethod::Archive => Some(BackupMethod::Bacula),
        BackupMethod::Bacula => Some(BackupMethod::Bareos),
        BackupMethod::Bareos => None,
    }
}

/// A URL of the next scheme, from the parsed location of one.
fn next_url(url: &str) -> Option<&'static str> {
    match Location::parse(url).expect("sample URL parses") {
        Location::Local(_) => Some("nfs://nas/export/backups"),
        Location::Nfs { .. } => Some("cifs://nas/share/backups"),
        Location::Cifs { .. } => Some("usb://BACKUP/backups"),
        Location::Usb { .. } => Some("iso:///backup"),
        Location::Iso { .. } => Some("rsync://backup/module/hosts"),
        Location::Rsync(_) => Some("s3://backups/hosts"),
        Location::S3(_) => None,
    }
}

fn all<T: Copy>(first: T, next: impl Fn(T) -> Option<T>) -> Vec<T> {
    std::iter::successors(Some(first), |x| next(*x)).collect()
}

// ------------------------------------------------------------ building

fn layout(name: &str) -> Layout {
    Layout::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts").join(name)).expect("example layout loads")
}

/// The rescue binary without debug sections, made once (the debug build is
/// large; the image build would strip it for every variant).
fn rescue_binary() -> PathBuf {
    static B: OnceLock<PathBuf> = OnceLock::new();
    B.get_or_init(|| {
        image_common::require("objcopy", "binutils");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("needs-rescue-bin");
        let st = std::process::Command::new("objcopy").arg("--strip-debug").arg(image_common::BIN).arg(&out).status().expect("objcopy");
        assert!(st.success(), "objcopy --strip-debug failed");
        out
    })
    .clone()
}

/// Tools the host must have to build every variant's tree, with their packages.
fn require_host_tools() {
    for (t, p) in [
        ("busybox", "busybox-static"),
        ("udevadm", "udev"),
        ("mkfs.xfs", "xfsprogs"),
        ("mkfs.vfat", "dosfstools"),
        ("mkfs.btrfs", "btrfs-progs"),
        ("mdadm", "mdadm"),
        ("cryptsetup", "cryptsetup-bin"),
        ("lvm", "lvm2"),
        ("dmsetup", "dmsetup"),
        ("efibootmgr", "efibootmgr"),
        ("mount.nfs", "nfs-common"),
        ("mount.cifs", "cifs-utils"),
        ("rsync", "rsync"),
        ("bacula-fd", "bacula-fd"),
        ("bconsole", "bacula-console"),
        ("modinfo", "kmod"),
    ] {
        image_common::require(t, p);
    }
}

/// Build the rescue tree of `layout` with `config`; the test's scratch directory too.
fn build(layout: &Layout, config: &Config) -> (Built, tempfile::TempDir) {
    let work = tempfile::tempdir().unwrap();
    let layout_path = work.path().join("layout.toml");
    std::fs::write(&layout_path, layout.to_toml().unwrap()).unwrap();
    let (_, modules_dir) = image_common::kernel_dir();
    let inputs = Inputs { config, layout, layout_path, modules_dir, rescue_binary: rescue_binary() };
    let built = initramfs::build_tree(&inputs, work.path(), &mut Manifest::default()).unwrap_or_else(|e| panic!("building the rescue tree: {e:#}"));
    (built, work)
}

/// Whether the tree has a program in the rescue system's PATH.
fn has_program(b: &Built, name: &str) -> bool {
    needs::PATH_DIRS.iter().any(|d| {
        let p = Path::new("/").join(d).join(name);
        b.tree.resolve_all(&p).is_ok_and(|r| b.tree.get(&r).is_some())
    })
}

/// Whether the tree has the module the kernel asks for by `request` (a name or alias), or the kernel has it built in.
fn has_module(b: &Built, request: &str) -> bool {
    let idx: &ModuleIndex = &b.modules;
    if idx.is_builtin(request) {
        return true;
    }
    let dir = PathBuf::from("/lib/modules").join(idx.version());
    idx.file_of(request).is_some_and(|f| b.tree.contains(&dir.join(f)))
}

/// The built tree holds everything `needs` says, and what `programs` and
/// `modules` (from the code that runs recovery) name.
fn check(what: &str, layout: &Layout, config: &Config, programs: &[&str], modules: &[&str]) -> Built {
    let (b, _work) = build(layout, config);
    let missing = initramfs::missing_in_tree(&b.tree, &b.needs, &b.modules);
    assert!(missing.is_empty(), "{what}: the tree lacks {missing:?}");
    // What recovery of this layout runs in the rescue system, verify's set.
    for p in b.needs.programs.iter().filter(|p| p.runs == Runs::Recover) {
        assert!(has_program(&b, &p.name), "{what}: {} ({}) not in the tree", p.name, p.why);
        assert!(p.package.is_some() || p.name.contains('/'), "{what}: {} has no Debian package", p.name);
    }
    for p in programs {
        assert!(has_program(&b, p), "{what}: {p} not in the tree");
    }
    for m in modules {
        assert!(has_module(&b, m), "{what}: the kernel's {m} not in the tree");
    }
    b
}

fn setup() {
    require_host_tools();
    image_common::kernel_dir();
}

// ------------------------------------------------------------ the tests

#[test]
fn every_filesystem_type_and_swap() {
    setup();
    for fs in all(FsType::Ext2, next_fs) {
        let mut l = layout("bios-gpt-ext4.toml");
        let f = &mut l.filesystems[0];
        f.fstype = fs;
        f.ext = None;
        // The program `apply` runs to make it.
        // A vfat filesystem is made with the FAT geometry the plan chose (here for 512 MiB).
        let fat = rescue::plan::fat::choose(32, None, 512 << 20, 512);
        let fat = if fs == FsType::Vfat { fat.as_ref() } else { None };
        let mkfs = rescue::apply::mkfs_command(Path::new("/dev/vda2"), f, &[], true, 512, fat).unwrap();
        let mkfs = mkfs.program().to_string_lossy().into_owned();
        let b = check(&format!("filesystem {fs}"), &l, &Config::default(), &[&mkfs, "mkswap"], &[&format!("fs-{fs}")]);
        assert!(!l.swaps.is_empty() && has_program(&b, "mkswap"));
    }
}

#[test]
fn every_md_level_luks_version_and_lvm_segment_type() {
    setup();
    for level in RAID_LEVELS {
        let mut l = layout("md-raid1-ext4.toml");
        l.raids[0].level = level.to_string();
        check(&format!("RAID {level}"), &l, &Config::default(), &["mdadm"], &["md-mod", &format!("md-{level}")]);
    }
    for v in LUKS_VERSIONS {
        let mut l = layout("luks2-lvm.toml");
        l.luks[0].version = *v;
        check(&format!("LUKS{v}"), &l, &Config::default(), &["cryptsetup"], &["dm-mod", "dm-crypt"]);
    }
    for t in LVM_SEGMENT_TYPES {
        let mut l = layout("uefi-lvm-xfs.toml");
        for lv in &mut l.lvm_lvs {
            lv.segment_type = t.to_string();
            lv.stripes = if *t == "striped" { 2 } else { 1 };
        }
        check(&format!("LVM {t}"), &l, &Config::default(), &["lvm"], &["dm-mod"]);
    }
    for t in all(TableType::Gpt, next_table) {
        let mut l = layout("bios-gpt-ext4.toml");
        l.disks[0].table = Some(t);
        check(&format!("{t:?} table"), &l, &Config::default(), &["sfdisk", "partx", "wipefs"], &[]);
    }
}

#[test]
fn every_bootloader_and_its_finalize_steps() {
    setup();
    for kind in all(BootloaderKind::None, next_bootloader) {
        for shim in [false, true] {
            if shim && kind != BootloaderKind::Grub2Efi {
                continue;
            }
            let mut l = layout("uefi-lvm-xfs.toml");
            l.bootloader.kind = kind;
            l.bootloader.shim = shim;
            l.host.firmware = if kind == BootloaderKind::Grub2Bios { Firmware::Bios } else { Firmware::Uefi };
            let what = format!("{kind:?}{}", if shim { " with shim" } else { "" });
            // Every step finalize can plan for it, booted with UEFI, disks renamed.
            let map = DeviceMap { paths: [("nvme0n1".to_string(), "/dev/vda".to_string())].into_iter().collect() };
            // And for every distribution family: its own program names.
            for family in boot::distro::FAMILIES {
                let system = boot::distro::System { family: family.id, os_id: String::new(), name: String::new(), initramfs: family.initramfs };
                let target = Target {
                    root: "/mnt/local".into(),
                    uefi: true,
                    disk_drivers: ["virtio_blk".to_string()].into(),
                    force_initramfs: true,
                    initramfs_conf_files: vec!["etc/initramfs-tools/initramfs.conf".into()],
                    system,
                    kernels: vec!["6.12.57+deb13-amd64".into()],
                    bls_entries: Vec::new(),
                    selinux_labels_restored: false,
                };
                let read = |p: &str| match p {
                    "etc/default/grub" => Some("GRUB_CMDLINE_LINUX=\"resume=/dev/nvme0n1p3\"\n".to_string()),
                    "etc/initramfs-tools/initramfs.conf" => Some("MODULES=dep\n".to_string()),
                    _ => None,
                };
                let steps = boot::plan(&l, &map, &target, &read);
                let b = check(&what, &l, &Config::default(), &["chroot"], &[]);
                // The recovered system holds its release file and nothing else.
                let only_marker = |p: &str| p == family.marker;
                for step in &steps {
                    let Some(k) = needs::StepKind::of(step) else { continue };
                    if k == StepKind::EfiBootEntry {
                        // Runs in the rescue system: the image has its program and efivarfs.
                        assert!(has_program(&b, "efibootmgr") && has_module(&b, "efivarfs"), "{what}: {step}");
                    } else {
                        // Runs chrooted in the recovered system: needs knows what it must find there, under this family's names.
                        let lacking = b.needs.missing_for_steps(&[k], only_marker);
                        assert!(!lacking.is_empty(), "{what} {:?}: nothing is known about what `{step}` needs in the recovered system", family.id);
                        assert!(lacking.iter().all(|(_, m)| m.package.is_some()), "{what}: {lacking:?}");
                        let program = match step {
                            Step::GrubBios { program, .. } | Step::GrubEfi { program, .. } | Step::GrubMkconfig { program, .. } => Some(program),
                            _ => None,
                        };
                        if let Some(p) = program {
                            assert!(lacking.iter().any(|(_, m)| &m.what == p), "{what} {:?}: `{step}` runs {p}, needs asks for {lacking:?}", family.id);
                        }
                    }
                }
            }
            let b = check(&what, &l, &Config::default(), &["chroot"], &[]);
            if kind != BootloaderKind::None {
                assert!(!needs::Needs::certain_steps(&l).is_empty(), "{what}");
            }
            if shim {
                let files: Vec<String> = b.needs.missing_for_steps(&[StepKind::GrubEfi], |_| false).into_iter().map(|(_, m)| m.what).collect();
                assert!(files.iter().any(|f| f.contains("shimx64.efi.signed")) && files.iter().any(|f| f.contains("grubx64.efi.signed")), "{files:?}");
            }
        }
    }
}

#[test]
fn every_backup_url_scheme_and_method() {
    setup();
    let l = layout("bios-gpt-ext4.toml");
    for url in std::iter::successors(Some("file:///srv/backup"), |u| next_url(u)) {
        let mut c = Config::default();
        c.backup.url = Some(url.to_string());
        let (programs, modules): (&[&str], &[&str]) = match Location::parse(url).unwrap() {
            Location::Local(_) => (&[], &[]),
            Location::Nfs { .. } => (&["mount.nfs", "mount"], &["fs-nfs"]),
            Location::Cifs { .. } => (&["mount.cifs", "mount"], &["fs-cifs"]),
            Location::Usb { .. } | Location::Iso { .. } => (&["blkid", "mount"], &["fs-vfat", "fs-iso9660"]),
            Location::Rsync(_) => (&["rsync"], &[]),
            // rescue's own S3 client: the network the image always has.
            Location::S3(_) => (&[], &[]),
        };
        check(url, &l, &c, programs, modules);
        // The descriptor's recorded backup counts when the config names none.
        let mut recorded = l.clone();
        recorded.backup = Some(rescue::layout::BackupRecord { url: url.to_string(), ..Default::default() });
        let names = |n: needs::Needs| n.programs.into_iter().map(|p| p.name).collect::<Vec<_>>();
        let recorded_needs = rescue::backup::rescue_needs_of(&Config::default().backup, &recorded);
        assert_eq!(names(recorded_needs), names(Location::parse(url).unwrap().rescue_needs(url)), "{url}");
    }
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "s3cret\n").unwrap();
    let fd_conf = dir.path().join("fd.conf");
    std::fs::write(&fd_conf, "FileDaemon { Name = x-fd }\n").unwrap();
    for method in all(BackupMethod::Archive, next_method) {
        let mut c = Config::default();
        c.backup.method = method;
        c.backup.url = Some("file:///srv/backup".into());
        c.backup.server.password_file = pw.clone();
        c.backup.server.fd_config = Some(fd_conf.clone());
        let programs: &[&str] = match method {
            BackupMethod::Archive => &[],
            BackupMethod::Bacula => &["bacula-fd", "bconsole", "timeout"],
            BackupMethod::Bareos => &["bareos-fd", "bconsole", "timeout"],
        };
        if method == BackupMethod::Bareos {
            bareos_stand_in();
        }
        check(&format!("backup method {method:?}"), &l, &c, programs, &[]);
    }
}

/// Bareos is not in Debian: a copy of Bacula's file daemon named
/// `bareos-fd` stands in for it on PATH (the image only copies it).
fn bareos_stand_in() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if rescue::cmd::find_program("bareos-fd").is_some() {
            return;
        }
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("needs-bareos");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(rescue::cmd::find_program("bacula-fd").unwrap(), dir.join("bareos-fd")).unwrap();
        let path = std::env::var("PATH").unwrap_or_default();
        std::env::set_var("PATH", format!("{}:{path}", dir.display()));
    });
}

/// The layout of issue 15 (MBR, primary ext2 /boot, logical /, xfs /var by
/// LABEL, swap): its image holds what recovering it needs with no
/// extra-programs, and an image without mkfs.ext2 (what the old program
/// list built) is refused by mkrescue's check, naming the program and its package.
#[test]
fn mbr_logical_ext2_boot_image_holds_mkfs_ext2_and_the_old_image_is_refused() {
    setup();
    let l = layout("mbr-logical.toml");
    let boot = l.mounts.iter().find(|m| m.path == "/boot").unwrap();
    assert_eq!(l.filesystem_on(&boot.device).unwrap().fstype, FsType::Ext2);
    let var = l.mounts.iter().find(|m| m.path == "/var").unwrap();
    assert!(var.source.starts_with("LABEL=") && l.filesystem_on(&var.device).unwrap().fstype == FsType::Xfs, "{var:?}");
    assert!(!l.swaps.is_empty() && l.partitions.iter().any(|p| p.kind == rescue::layout::PartitionKind::Logical));
    let c = Config::default();
    assert!(c.image.extra_programs.is_empty());
    let mut b = check("mbr-logical", &l, &c, &["mkfs.ext2", "mkfs.xfs", "mkswap", "sfdisk"], &["fs-ext2", "fs-xfs"]);
    initramfs::check_tree(&b.tree, &b.needs, &b.modules).unwrap();
    // recover's verify check, run against the image tree (udev running, BIOS, old swap/LVM/MD active on the disk).
    let now = needs::Now { udev: true, uefi: false, active: [rescue::apply::Holder::DeviceMapper, rescue::apply::Holder::Md].into() };
    let lacking = b.needs.missing_for_recover(&now, |p| has_program(&b, p));
    assert!(lacking.is_empty(), "verify would stop: {lacking:?}");

    // The old image: mkfs.ext2 missing.
    let at = needs::PATH_DIRS.iter().map(|d| Path::new("/").join(d).join("mkfs.ext2")).find(|p| b.tree.get(&b.tree.resolve(p).unwrap()).is_some()).unwrap();
    let at = b.tree.resolve(&at).unwrap();
    b.tree.remove(&at).unwrap();
    let e = initramfs::check_tree(&b.tree, &b.needs, &b.modules).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("mkfs.ext2") && msg.contains("e2fsprogs") && msg.contains("ext2 filesystem on sda1") && msg.contains("No image was written"), "{msg}");
    assert_eq!(rescue::error::exit_code_for(&e), 3);
}
