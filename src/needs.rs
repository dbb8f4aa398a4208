//! What recovering a system needs, derived from its descriptor and config:
//! the programs (each with its Debian package and why), the kernel modules
//! and the files. This is the one answer to that question:
//! - `mkrescue` builds the rescue image from it and checks the finished
//!   image tree against it ([`Needs::missing`]);
//! - `recover` checks the running rescue system against it before writing
//!   anything (verify phase), the disks it is about to wipe (plan phase), and
//!   the restored system before finalizing ([`Needs::for_steps`]).
//!
//! Every descriptor variant is matched exhaustively here, so a new
//! filesystem type or bootloader does not compile until it says what it
//! needs; a backup method says it through `Backend::rescue_needs` (a
//! required method of the trait), a URL scheme in
//! `backup::Location::rescue_needs` (an exhaustive match), and comes in as
//! the `source` of [`recovery`]. `tests/needs.rs` builds an image for each.

use std::collections::BTreeSet;
use std::fmt;

use crate::apply::Holder;
use crate::boot::distro::{self, EfiLoader, FamilyId, Tool};
use crate::boot::Step;
use crate::cmd::package_for;
use crate::image::config::ImageConfig;
use crate::layout::{BootloaderKind, FsType, Layout};

/// Where a program runs, which decides who must provide it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Runs {
    /// `rescue recover` runs it in the rescue system: the image must hold it
    /// and verify checks it is there.
    Recover,
    /// The rescue system itself needs it (init, module loading, udev, login):
    /// the image must hold it.
    Rescue,
    /// Handy in a rescue shell; the image takes it when the host has it.
    Optional,
    /// Finalize runs it chrooted in the recovered system: the backup must hold it.
    Target,
}

/// When a need applies; the image holds every one whatever the condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum When {
    Always,
    /// While udev runs in the rescue system (waiting for it after partitioning).
    Udev,
    /// When the rescue system booted with UEFI (writing the NVRAM boot entry).
    Uefi,
    /// When something of this kind is active on a disk about to be wiped.
    Active(Holder),
    /// When finalize plans this step.
    Step(StepKind),
}

/// The finalize steps that run a program, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StepKind {
    UpdateInitramfs,
    Dracut,
    GrubBios,
    GrubEfi,
    SystemdBoot,
    GrubMkconfig,
    EfiBootEntry,
}

impl StepKind {
    /// The kind of a planned step; `None` for steps that run no program.
    pub fn of(step: &Step) -> Option<StepKind> {
        match step {
            Step::RegenerateInitramfs { tool, .. } if tool == "dracut" => Some(StepKind::Dracut),
            Step::RegenerateInitramfs { .. } => Some(StepKind::UpdateInitramfs),
            Step::GrubBios { .. } => Some(StepKind::GrubBios),
            Step::GrubEfi { .. } => Some(StepKind::GrubEfi),
            Step::SystemdBoot { .. } => Some(StepKind::SystemdBoot),
            Step::GrubMkconfig { .. } => Some(StepKind::GrubMkconfig),
            Step::EfiBootEntry { .. } => Some(StepKind::EfiBootEntry),
            Step::RewriteFile { .. } | Step::KeepInitramfs { .. } | Step::PackagedEfiLoader { .. } | Step::SelinuxRelabel { .. } => None,
        }
    }
}

/// A program recovery runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// The name looked up in `PATH` (or a path, when configured so).
    pub name: String,
    /// The Debian package that ships it, when known.
    pub package: Option<&'static str>,
    pub why: String,
    pub runs: Runs,
    pub when: When,
    /// For [`Runs::Target`]: the distribution family whose program this is (`None`: any).
    pub family: Option<FamilyId>,
}

/// A file or directory recovery needs, relative to the root of the system
/// that must hold it (the rescue system, or the recovered one for [`Runs::Target`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Where it is: any one of these (with and without the /usr merge).
    pub paths: Vec<&'static str>,
    pub package: &'static str,
    pub why: String,
    pub runs: Runs,
    pub when: When,
    /// For [`Runs::Target`]: the distribution family whose file this is (`None`: any).
    pub family: Option<FamilyId>,
}

/// A kernel module the rescue system loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub name: &'static str,
    pub why: String,
    /// Recovery cannot work without it; others (drivers of hardware that may
    /// be there, crypto accelerations) are taken when the kernel has them.
    pub required: bool,
}

/// What recovering one system needs.
#[derive(Debug, Clone, Default)]
pub struct Needs {
    pub programs: Vec<Program>,
    pub files: Vec<File>,
    pub modules: Vec<Module>,
}

/// A need that is not met: what, its package, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub what: String,
    pub package: Option<&'static str>,
    pub why: String,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.package {
            Some(p) => write!(f, "{} ({}; Debian package {p}: apt-get install {p})", self.what, self.why),
            None => write!(f, "{} ({})", self.what, self.why),
        }
    }
}

/// The rescue system's `PATH` directories, where a program must be.
pub const PATH_DIRS: &[&str] = &["usr/sbin", "usr/bin", "sbin", "bin"];

/// Everything recovering `layout` with the rescue image of `image` needs,
/// restoring with what reaching the backup needs (`source`: the backup
/// backend's answer, `Backend::rescue_needs`).
pub fn recovery(layout: &Layout, image: &ImageConfig, source: Needs) -> Needs {
    let mut n = Needs::default();
    rescue_system(&mut n, image);
    storage(&mut n, layout);
    wipe(&mut n, layout);
    n.programs.extend(source.programs);
    n.files.extend(source.files);
    n.modules.extend(source.modules);
    finalize(&mut n, layout);
    // The `[hooks]` of a recovery run under it (crate::hooks), in the rescue system.
    n.program("timeout", Runs::Recover, When::Always, "to stop a recovery hook ([hooks]) that runs too long");
    recorded_network(&mut n, layout, image);
    n.dedup();
    n
}

impl Needs {
    pub fn program(&mut self, name: &str, runs: Runs, when: When, why: impl Into<String>) {
        self.programs.push(Program { name: name.to_string(), package: package_for(name), why: why.into(), runs, when, family: None });
    }

    /// A program the recovered system must hold for a finalize step (of `family`'s systems only, when given).
    fn target(&mut self, family: Option<FamilyId>, tool: Tool, step: StepKind, why: &str) {
        let p = Program { name: tool.name.to_string(), package: Some(tool.package), why: why.into(), runs: Runs::Target, when: When::Step(step), family };
        self.programs.push(p);
    }

    /// A file the recovered system must hold for a finalize step.
    fn target_file(&mut self, family: Option<FamilyId>, file: Tool, step: StepKind, why: &str) {
        self.files.push(File { paths: vec![file.name], package: file.package, why: why.into(), runs: Runs::Target, when: When::Step(step), family });
    }

    fn file(&mut self, paths: &[&'static str], package: &'static str, runs: Runs, when: When, why: impl Into<String>) {
        self.files.push(File { paths: paths.to_vec(), package, why: why.into(), runs, when, family: None });
    }

    pub fn module(&mut self, name: &'static str, required: bool, why: impl Into<String>) {
        self.modules.push(Module { name, why: why.into(), required });
    }

    /// One entry per program (and module, file): the one `recover` runs
    /// before the rescue system's own or a handy one, needed always before
    /// needed sometimes; a required module before an optional one.
    fn dedup(&mut self) {
        self.programs.sort_by(|a, b| (a.runs, &a.name, a.when).cmp(&(b.runs, &b.name, b.when)));
        let mut seen = BTreeSet::new();
        self.programs.retain(|p| p.runs == Runs::Target || seen.insert(p.name.clone()));
        let mut seen = BTreeSet::new();
        self.programs.retain(|p| p.runs != Runs::Target || seen.insert((p.name.clone(), p.when, p.family)));
        // A module required by the layout (vfat, efivarfs) is also among the optional drivers: required wins.
        self.modules.sort_by_key(|m| (m.name, !m.required));
        let mut seen = BTreeSet::new();
        self.modules.retain(|m| seen.insert(m.name));
        let mut seen = BTreeSet::new();
        self.files.retain(|f| seen.insert((f.paths.clone(), f.runs, f.family)));
    }

    /// The programs the rescue image must hold (all but the target's).
    pub fn image_programs(&self) -> impl Iterator<Item = &Program> {
        self.programs.iter().filter(|p| p.runs != Runs::Target)
    }

    /// The required needs of the rescue image that `has` (a path relative
    /// to the image's root) does not find: every program `recover` or the
    /// rescue system runs, in one of the [`PATH_DIRS`], and every file.
    pub fn missing_in_image(&self, has: impl Fn(&str) -> bool) -> Vec<Missing> {
        let programs = self.programs.iter().filter(|p| matches!(p.runs, Runs::Recover | Runs::Rescue));
        let mut out: Vec<Missing> = programs.filter(|p| !has_program(&p.name, &has)).map(Program::missing).collect();
        out.extend(self.files.iter().filter(|f| f.runs != Runs::Target && !f.paths.iter().any(|p| has(p))).map(File::missing));
        out
    }

    /// What `rescue recover` runs in this system now and `found` (a program
    /// name) does not find: the verify phase's check. `now` says which
    /// conditions hold ([`When`]).
    pub fn missing_for_recover(&self, now: &Now, found: impl Fn(&str) -> bool) -> Vec<Missing> {
        self.programs.iter().filter(|p| p.runs == Runs::Recover && now.holds(p.when) && !found(&p.name)).map(Program::missing).collect()
    }

    /// The needs of finalize's planned `steps` in the recovered system
    /// (programs and files relative to its root) that `has` does not find,
    /// for the distribution family its files say ([`distro::family_by_files`]).
    pub fn missing_for_steps(&self, steps: &[StepKind], has: impl Fn(&str) -> bool) -> Vec<(StepKind, Missing)> {
        let planned = |w: When| match w {
            When::Step(k) if steps.contains(&k) => Some(k),
            _ => None,
        };
        let family = distro::family_by_files(&|p: &str| has(p)).unwrap_or(&distro::FAMILIES[0]).id;
        let ours = |f: Option<FamilyId>| f.is_none_or(|f| f == family);
        let programs = self.programs.iter().filter(|p| p.runs == Runs::Target && ours(p.family) && !has_program(&p.name, &has));
        let mut out: Vec<(StepKind, Missing)> = programs.filter_map(|p| Some((planned(p.when)?, p.missing()))).collect();
        let files = self.files.iter().filter(|f| f.runs == Runs::Target && ours(f.family) && !f.paths.iter().any(|p| has(p)));
        out.extend(files.filter_map(|f| Some((planned(f.when)?, f.missing()))));
        out
    }

    /// The finalize steps that always run for this descriptor (installing its
    /// bootloader), whose needs can be checked before anything is written.
    pub fn certain_steps(layout: &Layout) -> Vec<StepKind> {
        match layout.bootloader.kind {
            BootloaderKind::None => Vec::new(),
            BootloaderKind::Grub2Bios => vec![StepKind::GrubBios],
            BootloaderKind::Grub2Efi => vec![StepKind::GrubEfi],
            BootloaderKind::SystemdBoot => vec![StepKind::SystemdBoot],
        }
    }

    /// Module names to load in the rescue system.
    pub fn module_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.modules.iter().map(|m| m.name)
    }
}

impl Program {
    fn missing(&self) -> Missing {
        Missing { what: self.name.clone(), package: self.package, why: self.why.clone() }
    }
}

impl File {
    fn missing(&self) -> Missing {
        Missing { what: format!("/{}", self.paths[0]), package: Some(self.package), why: self.why.clone() }
    }
}

/// Whether `name` is in one of the PATH directories (or is a path) of a root `has` looks in.
fn has_program(name: &str, has: &impl Fn(&str) -> bool) -> bool {
    if name.contains('/') {
        return has(name.trim_start_matches('/'));
    }
    PATH_DIRS.iter().any(|d| has(&format!("{d}/{name}")))
}

/// The conditions of [`When`] as they are now.
#[derive(Debug, Clone, Default)]
pub struct Now {
    pub udev: bool,
    pub uefi: bool,
    pub active: BTreeSet<Holder>,
}

impl Now {
    pub fn holds(&self, w: When) -> bool {
        match w {
            When::Always => true,
            When::Udev => self.udev,
            When::Uefi => self.uefi,
            When::Active(h) => self.active.contains(&h),
            When::Step(_) => false,
        }
    }
}

/// The rescue system's own programs, modules and files.
fn rescue_system(n: &mut Needs, image: &ImageConfig) {
    let why = "the rescue system's shell and init";
    n.program("busybox", Runs::Rescue, When::Always, why);
    for p in ["kmod", "modprobe", "insmod", "rmmod", "lsmod", "modinfo"] {
        n.program(p, Runs::Rescue, When::Always, "to load the kernel modules of the rescue system");
    }
    n.program("udevadm", Runs::Rescue, When::Always, "udev makes /dev/disk/by-* in the rescue system");
    n.program("blkid", Runs::Rescue, When::Always, "to find filesystems by label and type");
    n.file(
        &["usr/lib/udev/rules.d/60-persistent-storage.rules", "lib/udev/rules.d/60-persistent-storage.rules"],
        "udev",
        Runs::Rescue,
        When::Always,
        "udev's rules for the /dev/disk/by-* names the descriptor and fstab use",
    );
    for p in ["lsblk", "partx", "losetup", "findmnt", "swapon", "sgdisk", "parted", "tar", "zstd", "gzip", "xz", "fsck.vfat", "e2fsck", "ip", "ping", "less"] {
        n.program(p, Runs::Optional, When::Always, "handy in a rescue shell");
    }
    if !image.ssh_authorized_keys.is_empty() {
        n.program("sshd", Runs::Rescue, When::Always, "image.ssh-authorized-keys: log in to the rescue system over SSH");
        n.program("ssh-keygen", Runs::Rescue, When::Always, "to make the rescue system's SSH host keys");
    }
    for p in &image.extra_programs {
        n.program(p, Runs::Rescue, When::Always, "image.extra-programs");
    }
    if image.network == crate::image::config::NetworkMode::Recorded {
        n.program("ip", Runs::Rescue, When::Always, "image.network = \"recorded\": brings up the recorded bonds, VLANs, addresses and routes");
    }
    for m in DISSIMILAR_HARDWARE {
        n.module(m, false, "a driver a different machine may need for its disks, network or the rescue medium");
    }
}

/// The kernel modules the recorded network needs in the rescue system
/// (`image.network = "recorded"`), by the kinds of interface it has.
fn recorded_network(n: &mut Needs, layout: &Layout, image: &ImageConfig) {
    use crate::layout::network::InterfaceKind;
    let Some(net) = layout.network.as_ref().filter(|_| image.network == crate::image::config::NetworkMode::Recorded) else { return };
    for (kind, module) in [(InterfaceKind::Bond, "bonding"), (InterfaceKind::Vlan, "8021q"), (InterfaceKind::Bridge, "bridge")] {
        if net.interfaces.iter().any(|i| i.kind == kind) {
            n.module(module, true, format!("image.network = \"recorded\": the recorded network has a {kind:?}").to_lowercase());
        }
    }
}

/// Drivers a *different* machine may need to see its disks and network:
/// virtual machines, NVMe, SATA, SAS/RAID HBAs, USB storage, common NICs,
/// and the rescue medium itself.
const DISSIMILAR_HARDWARE: &[&str] = &[
    // virtual machines
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "virtio_net",
    "vmw_pvscsi",
    "vmxnet3",
    "hv_storvsc",
    "hv_netvsc",
    "xen_blkfront",
    "xen_netfront",
    // disks and controllers
    "nvme",
    "ahci",
    "ata_piix",
    "ata_generic",
    "sd_mod",
    "sr_mod",
    "mpt3sas",
    "megaraid_sas",
    "hpsa",
    "aacraid",
    "smartpqi",
    "mptsas",
    // USB sticks and disks
    "xhci_pci",
    "ehci_pci",
    "ohci_pci",
    "uhci_hcd",
    "usb_storage",
    "uas",
    // common NICs
    "e1000",
    "e1000e",
    "igb",
    "igc",
    "ixgbe",
    "i40e",
    "ice",
    "r8169",
    "tg3",
    "bnx2",
    "bnx2x",
    "bnxt_en",
    // the rescue media itself, backup disks, loop-mounted images
    "isofs",
    "cdrom",
    "loop",
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "nls_iso8859_1",
    "nls_utf8",
    "efivarfs",
];

/// Recreating the storage stack (`apply`).
fn storage(n: &mut Needs, layout: &Layout) {
    if !layout.disks.is_empty() {
        let disks = layout.disks.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ");
        n.program("wipefs", Runs::Recover, When::Always, format!("to wipe the target disks ({disks})"));
        n.program("blockdev", Runs::Recover, When::Always, "to make the kernel re-read the partition tables");
    }
    if layout.disks.iter().any(|d| d.table.is_some()) {
        n.program("sfdisk", Runs::Recover, When::Always, "to write partition tables");
        n.program("partx", Runs::Recover, When::Always, "to make the kernel see the new partitions");
    }
    n.program("udevadm", Runs::Recover, When::Udev, "to wait for udev after partitioning");
    for f in &layout.filesystems {
        let on = format!("to make the {} filesystem on {}", f.fstype, f.device);
        // `apply::mkfs_command` runs `mkfs.TYPE`.
        n.program(&format!("mkfs.{}", f.fstype), Runs::Recover, When::Always, on);
        match f.fstype {
            FsType::Ext2 | FsType::Ext3 | FsType::Ext4 => {
                n.module("ext4", true, format!("the ext4 driver mounts ext2/3/4 ({})", f.device));
                n.program("e2fsck", Runs::Optional, When::Always, "to check ext filesystems by hand");
                n.program("tune2fs", Runs::Optional, When::Always, "to inspect ext filesystems by hand");
                n.program("resize2fs", Runs::Optional, When::Always, "to resize ext filesystems by hand");
            }
            FsType::Xfs => {
                n.module("xfs", true, format!("to mount the xfs filesystem on {}", f.device));
                for p in ["xfs_repair", "xfs_db", "xfs_admin"] {
                    n.program(p, Runs::Optional, When::Always, "to inspect or repair xfs by hand");
                }
            }
            FsType::Vfat => {
                // vfat always loads its iocharset, by default "ascii" in Debian's kernels (CONFIG_FAT_DEFAULT_IOCHARSET).
                n.module("vfat", true, format!("to mount the vfat filesystem on {}", f.device));
                for m in ["nls_cp437", "nls_ascii", "nls_iso8859_1"] {
                    n.module(m, true, "the character sets a vfat mount loads");
                }
                n.program("fatlabel", Runs::Optional, When::Always, "to inspect vfat by hand");
            }
            FsType::Btrfs => {
                n.module("btrfs", true, format!("to mount the btrfs filesystem on {}", f.device));
                n.program("btrfs", Runs::Recover, When::Always, format!("to create the subvolumes on {}", f.device));
            }
        }
    }
    for s in &layout.swaps {
        n.program("mkswap", Runs::Recover, When::Always, format!("to make the swap space on {}", s.device));
    }
    for r in &layout.raids {
        n.program("mdadm", Runs::Recover, When::Always, format!("to create the RAID array {}", r.name));
        n.module("md_mod", true, format!("the MD driver for the RAID array {}", r.name));
        n.module(raid_module(&r.level), true, format!("the {} personality for the RAID array {}", r.level, r.name));
        n.file(
            &["usr/lib/udev/rules.d/63-md-raid-arrays.rules", "lib/udev/rules.d/63-md-raid-arrays.rules"],
            "mdadm",
            Runs::Rescue,
            When::Always,
            "udev's names for RAID arrays (/dev/md/NAME, by-id)",
        );
    }
    for l in &layout.luks {
        n.program("cryptsetup", Runs::Recover, When::Always, format!("to create the LUKS{} volume {}", l.version, l.name));
        n.module("dm_mod", true, format!("device-mapper, under the LUKS volume {}", l.name));
        n.module("dm_crypt", true, format!("the encryption target of the LUKS volume {}", l.name));
        for m in ["xts", "aesni_intel", "essiv", "sha256_ssse3", "sha512_ssse3", "algif_skcipher", "algif_hash"] {
            n.module(m, false, "ciphers and hashes LUKS volumes commonly use");
        }
    }
    for vg in &layout.lvm_vgs {
        n.program("lvm", Runs::Recover, When::Always, format!("to create the volume group {}", vg.name));
        for m in ["dm_mod", "dm_snapshot", "dm_mirror", "dm_zero"] {
            n.module(m, m == "dm_mod", format!("device-mapper, under the volume group {}", vg.name));
        }
    }
    for lv in &layout.lvm_lvs {
        if let Some(m) = lvm_segment_module(&lv.segment_type) {
            n.module(m, true, format!("the {} segments of the logical volume {}", lv.segment_type, lv.id()));
        }
    }
    if !layout.luks.is_empty() || !layout.lvm_vgs.is_empty() {
        n.file(
            &["usr/lib/udev/rules.d/55-dm.rules", "lib/udev/rules.d/55-dm.rules"],
            "dmsetup",
            Runs::Rescue,
            When::Always,
            "udev's /dev/mapper names for LUKS and LVM volumes",
        );
    }
    if !layout.mounts.is_empty() {
        n.program("mount", Runs::Recover, When::Always, "to mount the recreated filesystems");
        n.program("umount", Runs::Recover, When::Always, "to unmount them at the end");
    }
}

/// The MD personality module of a RAID level (`layout::RAID_LEVELS`).
pub fn raid_module(level: &str) -> &'static str {
    match level {
        "raid0" => "raid0",
        "raid1" => "raid1",
        "raid10" => "raid10",
        "raid4" | "raid5" | "raid6" => "raid456",
        "linear" => "linear",
        _ => "md_mod",
    }
}

/// The device-mapper target an LVM segment type needs beyond dm_mod, if any.
fn lvm_segment_module(segment_type: &str) -> Option<&'static str> {
    match segment_type {
        "striped" => Some("dm_mod"),
        t if t.starts_with("thin") => Some("dm_thin_pool"),
        t if t.starts_with("raid") => Some("dm_raid"),
        t if t.starts_with("cache") => Some("dm_cache"),
        _ => None,
    }
}

/// Taking down what is active on a target disk before wiping it. Only what
/// the rescue system can have started: device-mapper when it has LVM or
/// cryptsetup, MD arrays when it has mdadm. (Swap in use is refused, not
/// turned off.)
fn wipe(n: &mut Needs, layout: &Layout) {
    if !layout.luks.is_empty() || !layout.lvm_vgs.is_empty() {
        n.program(
            holder_program(Holder::DeviceMapper),
            Runs::Recover,
            When::Active(Holder::DeviceMapper),
            "to remove old LVM or LUKS devices on a target disk",
        );
    }
    if !layout.raids.is_empty() {
        n.program(holder_program(Holder::Md), Runs::Recover, When::Active(Holder::Md), "to stop old RAID arrays on a target disk");
    }
}

/// The program that takes down a holder.
pub fn holder_program(h: Holder) -> &'static str {
    match h {
        Holder::DeviceMapper => "dmsetup",
        Holder::Md => "mdadm",
    }
}

/// What the plan phase needs to take down the holders active on a target
/// disk (`apply::active_holders`): a program for each, with why.
pub fn for_active(active: &[(Holder, String)]) -> Needs {
    let mut n = Needs::default();
    for (h, why) in active {
        n.program(holder_program(*h), Runs::Recover, When::Active(*h), why.clone());
    }
    n.dedup();
    n
}

/// Finalize: what runs in the rescue system, and what it runs chrooted in
/// the recovered one.
fn finalize(n: &mut Needs, layout: &Layout) {
    n.program("chroot", Runs::Recover, When::Always, "to run the recovered system's own initramfs and bootloader tools");
    n.target(None, Tool { name: "update-initramfs", package: "initramfs-tools" }, StepKind::UpdateInitramfs, "to regenerate the initramfs");
    n.target(None, Tool { name: "dracut", package: "dracut" }, StepKind::Dracut, "to regenerate the initramfs");
    // Each family's names (boot::distro): the recovered system's family picks its own.
    for f in distro::FAMILIES {
        let fam = Some(f.id);
        // Planned whenever /etc/default/grub names a renamed device, whatever the recorded bootloader.
        n.target(fam, f.grub_mkconfig, StepKind::GrubMkconfig, "to regenerate grub.cfg after device names changed");
        match layout.bootloader.kind {
            BootloaderKind::Grub2Bios => {
                n.target(fam, f.grub_bios, StepKind::GrubBios, "to install GRUB for BIOS");
                n.target_file(fam, f.grub_bios_modules, StepKind::GrubBios, "GRUB's BIOS modules, which grub-install writes");
            }
            BootloaderKind::Grub2Efi if f.efi_loader == EfiLoader::GrubInstall => {
                n.target(fam, f.grub_efi, StepKind::GrubEfi, "to install GRUB for UEFI");
                n.target_file(fam, f.grub_efi_modules, StepKind::GrubEfi, "GRUB's UEFI modules, which grub-install writes");
                if layout.bootloader.shim {
                    for file in f.signed_efi_files {
                        n.target_file(fam, *file, StepKind::GrubEfi, "the signed shim and GRUB of the recorded Secure Boot chain");
                    }
                }
            }
            _ => {}
        }
    }
    match layout.bootloader.kind {
        BootloaderKind::Grub2Efi => efi_entry(n),
        BootloaderKind::SystemdBoot => {
            n.target(None, Tool { name: "bootctl", package: "systemd-boot" }, StepKind::SystemdBoot, "to install systemd-boot");
            let efi = Tool { name: "usr/lib/systemd/boot/efi/systemd-bootx64.efi", package: "systemd-boot-efi" };
            n.target_file(None, efi, StepKind::SystemdBoot, "the systemd-boot EFI binary bootctl copies to the ESP");
            efi_entry(n);
        }
        BootloaderKind::None | BootloaderKind::Grub2Bios => {}
    }
}

fn efi_entry(n: &mut Needs) {
    n.program("efibootmgr", Runs::Recover, When::Uefi, "to write the UEFI boot entry");
    n.module("efivarfs", true, "to write the UEFI boot entry");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// What reaching the backup at `url` needs.
    fn reaching(url: &str) -> Needs {
        crate::backup::Location::parse(url).unwrap().rescue_needs(url)
    }

    fn layout(name: &str) -> Layout {
        Layout::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts").join(name)).unwrap()
    }

    fn names(n: &Needs, runs: Runs) -> Vec<&str> {
        n.programs.iter().filter(|p| p.runs == runs).map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn each_stack_brings_its_programs_and_modules() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            ("bios-gpt-ext4.toml", &["mkfs.ext4", "mkswap", "sfdisk", "partx", "wipefs", "chroot"], &["ext4"]),
            ("uefi-lvm-xfs.toml", &["lvm", "mkfs.xfs", "mkfs.vfat", "efibootmgr", "dmsetup"], &["xfs", "dm_mod", "vfat", "efivarfs"]),
            ("md-raid1-ext4.toml", &["mdadm", "mkfs.ext4"], &["md_mod", "raid1", "ext4"]),
            ("luks2-lvm.toml", &["cryptsetup", "lvm"], &["dm_crypt", "dm_mod"]),
            ("btrfs-subvolumes.toml", &["mkfs.btrfs", "btrfs"], &["btrfs"]),
        ];
        for (file, programs, modules) in cases {
            let l = layout(file);
            let n = recovery(&l, &ImageConfig::default(), reaching("nfs://nas/b"));
            let p = names(&n, Runs::Recover);
            for want in programs.iter().chain(&["mount.nfs", "mount"]) {
                assert!(p.contains(want), "{file}: {want} not in {p:?}");
            }
            let m: Vec<&str> = n.module_names().collect();
            for want in modules.iter().chain(&["nfs"]) {
                assert!(m.contains(want), "{file}: {want} not in {m:?}");
            }
            assert!(n.programs.iter().filter(|p| p.runs != Runs::Optional && !p.name.contains('/')).all(|p| p.package.is_some()), "{file}: {:?}", n.programs);
        }
        let n = recovery(&layout("bios-gpt-ext4.toml"), &ImageConfig::default(), Needs::default());
        let p = names(&n, Runs::Recover);
        assert!(!p.contains(&"mdadm") && !p.contains(&"cryptsetup") && !p.contains(&"lvm") && !p.contains(&"dmsetup"), "{p:?}");
    }

    #[test]
    fn an_ext2_boot_needs_mkfs_ext2() {
        let mut l = layout("bios-gpt-ext4.toml");
        l.filesystems[0].fstype = FsType::Ext2;
        let n = recovery(&l, &ImageConfig::default(), Needs::default());
        let p = n.programs.iter().find(|p| p.name == "mkfs.ext2").unwrap();
        assert_eq!((p.runs, p.package), (Runs::Recover, Some("e2fsprogs")));
        assert!(p.why.contains("ext2 filesystem"), "{p:?}");
    }

    #[test]
    fn a_module_the_layout_requires_stays_required() {
        let l = layout("uefi-lvm-xfs.toml");
        let n = recovery(&l, &ImageConfig::default(), Needs::default());
        for m in ["vfat", "efivarfs", "nls_ascii"] {
            let found: Vec<&Module> = n.modules.iter().filter(|x| x.name == m).collect();
            assert!(found.len() == 1 && found[0].required, "{m}: {found:?}");
        }
    }

    #[test]
    fn verify_checks_what_holds_now() {
        let l = layout("uefi-lvm-xfs.toml");
        let n = recovery(&l, &ImageConfig::default(), reaching("file:///b"));
        let none = |_: &str| false;
        let bios: Vec<String> = n.missing_for_recover(&Now::default(), none).into_iter().map(|m| m.what).collect();
        assert!(!bios.contains(&"efibootmgr".into()) && !bios.contains(&"udevadm".into()) && !bios.contains(&"dmsetup".into()), "{bios:?}");
        let now = Now { udev: true, uefi: true, active: [Holder::DeviceMapper].into() };
        let uefi: Vec<String> = n.missing_for_recover(&now, none).into_iter().map(|m| m.what).collect();
        assert!(uefi.contains(&"efibootmgr".into()) && uefi.contains(&"udevadm".into()) && uefi.contains(&"dmsetup".into()), "{uefi:?}");
        // Target programs are never looked for in the rescue system.
        assert!(!uefi.contains(&"grub-install".into()), "{uefi:?}");
    }

    #[test]
    fn finalize_steps_need_their_target_programs_and_files() {
        let l = layout("bios-gpt-ext4.toml");
        let n = recovery(&l, &ImageConfig::default(), Needs::default());
        assert_eq!(Needs::certain_steps(&l), vec![StepKind::GrubBios]);
        let root = ["usr/sbin/grub-install"];
        let lacking = n.missing_for_steps(&[StepKind::GrubBios], |p| root.contains(&p));
        assert_eq!(lacking.len(), 1, "{lacking:?}");
        assert_eq!((lacking[0].1.what.as_str(), lacking[0].1.package), ("/usr/lib/grub/i386-pc", Some("grub-pc-bin")));
        let root = ["usr/sbin/grub-install", "usr/lib/grub/i386-pc"];
        assert!(n.missing_for_steps(&[StepKind::GrubBios], |p| root.contains(&p)).is_empty());
        let lacking = n.missing_for_steps(&[StepKind::UpdateInitramfs], |p| root.contains(&p));
        assert_eq!(lacking[0].1.package, Some("initramfs-tools"));
    }

    #[test]
    fn every_step_kind_is_known() {
        assert_eq!(StepKind::of(&Step::GrubBios { program: "grub2-install".into(), disks: vec![] }), Some(StepKind::GrubBios));
        assert_eq!(StepKind::of(&Step::RegenerateInitramfs { tool: "dracut".into(), kernels: vec![], reason: String::new() }), Some(StepKind::Dracut));
        assert_eq!(StepKind::of(&Step::SelinuxRelabel { reason: String::new() }), None);
    }
}
