//! Which distribution family a restored system belongs to, and what its
//! bootloader and initramfs tools are called there. One table
//! ([`FAMILIES`]): finalize's plan, its execution and the needs check all
//! read their program names, paths and package names from it.
//!
//! The family is detected from the restored tree: `os-release`'s `ID`, then
//! each word of `ID_LIKE`; without an os-release, from which programs exist
//! (each family's marker).

use serde::Serialize;

/// A distribution family, as the rest of the code names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FamilyId {
    Debian,
    Rhel,
}

/// How the family's initramfs is regenerated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitramfsTool {
    /// `update-initramfs -u -k all` (initramfs-tools).
    InitramfsTools,
    /// `dracut -f --kver KVER`, once per installed kernel.
    Dracut,
}

impl InitramfsTool {
    /// The program run in the chroot.
    pub fn program(self) -> &'static str {
        match self {
            InitramfsTool::InitramfsTools => "update-initramfs",
            InitramfsTool::Dracut => "dracut",
        }
    }

    /// Found by its program in the restored tree (a Debian system may use dracut).
    fn present(exists: &dyn Fn(&str) -> bool) -> Option<InitramfsTool> {
        [InitramfsTool::InitramfsTools, InitramfsTool::Dracut]
            .into_iter()
            .find(|t| exists(&format!("usr/sbin/{}", t.program())) || exists(&format!("sbin/{}", t.program())))
    }
}

/// How GRUB gets into the ESP under UEFI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EfiLoader {
    /// `grub-install --target=x86_64-efi` (it copies the signed shim and GRUB
    /// when the signed packages are installed).
    GrubInstall,
    /// The signed shim and GRUB are files of the distribution's packages in
    /// the ESP (RHEL: shim-x64, grub2-efi-x64); grub2-install must not run
    /// (it would write an unsigned GRUB). Restored from the backup; checked.
    Packaged,
}

/// A program (or file) of a family, with the package that ships it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    pub name: &'static str,
    pub package: &'static str,
}

/// Everything finalize needs to know about one family.
#[derive(Debug)]
pub struct Family {
    pub id: FamilyId,
    /// os-release `ID` values (and `ID_LIKE` words) of the family.
    pub os_ids: &'static [&'static str],
    /// A file that only a system of this family has, for a tree without
    /// os-release (and for the needs check, which sees a file list).
    pub marker: &'static str,
    /// grub-install for BIOS, and for UEFI (the same program; Debian ships it
    /// in a package per platform).
    pub grub_bios: Tool,
    pub grub_efi: Tool,
    pub grub_mkconfig: Tool,
    /// grub.cfg, absolute in the restored system.
    pub grub_cfg: &'static str,
    /// GRUB's BIOS modules, relative, which grub-install writes.
    pub grub_bios_modules: Tool,
    /// GRUB's UEFI modules, relative (GrubInstall only).
    pub grub_efi_modules: Tool,
    pub initramfs: InitramfsTool,
    pub efi_loader: EfiLoader,
    /// Under Secure Boot with GrubInstall: the signed files grub-install copies, relative.
    pub signed_efi_files: &'static [Tool],
    /// os-release `ID` → the directory under the ESP's `EFI/`; the first is the default.
    pub efi_dirs: &'static [(&'static str, &'static str)],
    /// The UEFI boot entry's label when none was recorded.
    pub efi_label: &'static str,
}

/// The families, most common first; the first is the default when nothing
/// in the tree says otherwise.
pub const FAMILIES: &[Family] = &[
    Family {
        id: FamilyId::Debian,
        os_ids: &["debian", "ubuntu"],
        marker: "etc/debian_version",
        grub_bios: Tool { name: "grub-install", package: "grub-pc" },
        grub_efi: Tool { name: "grub-install", package: "grub-efi-amd64" },
        grub_mkconfig: Tool { name: "grub-mkconfig", package: "grub2-common" },
        grub_cfg: "/boot/grub/grub.cfg",
        grub_bios_modules: Tool { name: "usr/lib/grub/i386-pc", package: "grub-pc-bin" },
        grub_efi_modules: Tool { name: "usr/lib/grub/x86_64-efi", package: "grub-efi-amd64-bin" },
        initramfs: InitramfsTool::InitramfsTools,
        efi_loader: EfiLoader::GrubInstall,
        signed_efi_files: &[
            Tool { name: "usr/lib/shim/shimx64.efi.signed", package: "shim-signed" },
            Tool { name: "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed", package: "grub-efi-amd64-signed" },
        ],
        efi_dirs: &[("debian", "debian"), ("ubuntu", "ubuntu")],
        efi_label: "debian",
    },
    Family {
        id: FamilyId::Rhel,
        // ID_LIKE of Rocky/Alma/CentOS Stream is "rhel centos fedora"; RHEL's is "fedora".
        os_ids: &["rhel", "fedora", "centos", "rocky", "almalinux"],
        // Fedora, Rocky, Alma and CentOS have it too (a link to their own release file).
        marker: "etc/redhat-release",
        grub_bios: Tool { name: "grub2-install", package: "grub2-tools (RPM)" },
        grub_efi: Tool { name: "grub2-install", package: "grub2-tools (RPM)" },
        grub_mkconfig: Tool { name: "grub2-mkconfig", package: "grub2-tools (RPM)" },
        grub_cfg: "/boot/grub2/grub.cfg",
        grub_bios_modules: Tool { name: "usr/lib/grub/i386-pc", package: "grub2-pc-modules (RPM)" },
        grub_efi_modules: Tool { name: "usr/lib/grub/x86_64-efi", package: "grub2-efi-x64-modules (RPM)" },
        initramfs: InitramfsTool::Dracut,
        efi_loader: EfiLoader::Packaged,
        signed_efi_files: &[],
        efi_dirs: &[("rhel", "redhat"), ("rocky", "rocky"), ("almalinux", "almalinux"), ("centos", "centos"), ("fedora", "fedora")],
        efi_label: "Red Hat Enterprise Linux",
    },
];

impl Family {
    pub fn get(id: FamilyId) -> &'static Family {
        FAMILIES.iter().find(|f| f.id == id).unwrap_or(&FAMILIES[0])
    }
}

/// The restored system as finalize sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct System {
    pub family: FamilyId,
    /// os-release `ID` (empty when there is none).
    pub os_id: String,
    /// os-release `NAME` (empty when there is none).
    pub name: String,
    pub initramfs: InitramfsTool,
}

impl System {
    pub fn family(&self) -> &'static Family {
        Family::get(self.family)
    }

    /// The directory under the ESP's `EFI/` this system's loader lives in.
    pub fn efi_dir(&self) -> &'static str {
        let f = self.family();
        let default = f.efi_dirs.first().map_or(f.efi_label, |(_, d)| *d);
        f.efi_dirs.iter().find(|(id, _)| *id == self.os_id).map_or(default, |(_, d)| *d)
    }

    /// The UEFI boot entry's label when none was recorded: the system's NAME
    /// on RHEL-family systems (what Anaconda writes), the family's otherwise.
    pub fn efi_label(&self) -> String {
        if self.family == FamilyId::Rhel && !self.name.is_empty() {
            self.name.clone()
        } else {
            self.family().efi_label.to_string()
        }
    }
}

/// One `KEY=value` of an os-release file, unquoted.
fn os_release_value(text: &str, key: &str) -> Option<String> {
    text.lines().filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('=')).map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'').to_string()).next_back()
}

/// Detect the restored system: `read` reads a file relative to its root,
/// `exists` says whether a path (relative) exists.
pub fn detect(read: &dyn Fn(&str) -> Option<String>, exists: &dyn Fn(&str) -> bool) -> System {
    let release = read("etc/os-release").or_else(|| read("usr/lib/os-release")).unwrap_or_default();
    let os_id = os_release_value(&release, "ID").unwrap_or_default();
    let like = os_release_value(&release, "ID_LIKE").unwrap_or_default();
    let name = os_release_value(&release, "NAME").unwrap_or_default();
    let by_release = std::iter::once(os_id.as_str()).chain(like.split_whitespace()).find_map(|w| FAMILIES.iter().find(|f| f.os_ids.contains(&w)));
    let family = by_release.or_else(|| family_by_files(exists)).unwrap_or(&FAMILIES[0]);
    let initramfs = InitramfsTool::present(exists).unwrap_or(family.initramfs);
    System { family: family.id, os_id, name, initramfs }
}

/// The family whose marker file exists (the needs check, which sees a file
/// list, not file contents).
pub fn family_by_files(exists: &dyn Fn(&str) -> bool) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| exists(f.marker))
}

/// The kernels installed in the restored tree: module directories
/// (`lib/modules/KVER` or `usr/lib/modules/KVER`, usrmerge) that have a
/// `boot/vmlinuz-KVER`. Sorted.
pub fn installed_kernels(root: &std::path::Path) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    for dir in ["usr/lib/modules", "lib/modules"] {
        let Ok(d) = crate::target::beneath(root, dir) else { continue };
        let Ok(rd) = std::fs::read_dir(d) else { continue };
        for e in rd.flatten() {
            let kver = e.file_name().to_string_lossy().into_owned();
            if crate::target::beneath(root, &format!("boot/vmlinuz-{kver}")).is_ok_and(|p| p.is_file()) {
                out.insert(kver);
            }
        }
    }
    out.into_iter().collect()
}

/// The BootLoaderSpec entries of the restored system, relative
/// (`boot/loader/entries/*.conf`), sorted.
pub fn bls_entries(root: &std::path::Path) -> Vec<String> {
    let Ok(d) = crate::target::beneath(root, "boot/loader/entries") else { return Vec::new() };
    let Ok(rd) = std::fs::read_dir(d) else { return Vec::new() };
    let mut v: Vec<String> = rd
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".conf"))
        .map(|n| format!("boot/loader/entries/{n}"))
        .collect();
    v.sort();
    v
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sys(release: &'static str, files: &'static [&'static str]) -> System {
        detect(&|p| (p == "etc/os-release" && !release.is_empty()).then(|| release.to_string()), &|p| files.contains(&p))
    }

    #[test]
    fn os_release_id_and_id_like_pick_the_family() {
        let rocky = sys("NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n", &[]);
        assert_eq!((rocky.family, rocky.efi_dir(), rocky.initramfs), (FamilyId::Rhel, "rocky", InitramfsTool::Dracut));
        let rhel = sys("NAME=\"Red Hat Enterprise Linux\"\nID=\"rhel\"\nID_LIKE=\"fedora\"\n", &[]);
        assert_eq!((rhel.efi_dir(), rhel.efi_label().as_str()), ("redhat", "Red Hat Enterprise Linux"));
        let alma = sys("ID=\"almalinux\"\nID_LIKE=\"rhel centos fedora\"\n", &[]);
        assert_eq!(alma.efi_dir(), "almalinux");
        let centos = sys("ID=\"centos\"\nID_LIKE=\"rhel fedora\"\n", &[]);
        assert_eq!(centos.efi_dir(), "centos");
        // A derivative known only by its ID_LIKE: the family's default directory.
        let other = sys("ID=\"someel\"\nID_LIKE=\"rhel fedora\"\n", &[]);
        assert_eq!((other.family, other.efi_dir()), (FamilyId::Rhel, "redhat"));
        let trixie = sys("PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nID=debian\n", &["usr/sbin/update-initramfs"]);
        assert_eq!((trixie.family, trixie.efi_dir(), trixie.efi_label().as_str()), (FamilyId::Debian, "debian", "debian"));
    }

    #[test]
    fn without_os_release_the_programs_decide() {
        assert_eq!(sys("", &["etc/redhat-release"]).family, FamilyId::Rhel);
        assert_eq!(sys("", &["etc/debian_version"]).family, FamilyId::Debian);
        assert_eq!(sys("", &[]).family, FamilyId::Debian);
        // A Debian system that uses dracut: dracut it is.
        assert_eq!(sys("ID=debian\n", &["usr/sbin/dracut"]).initramfs, InitramfsTool::Dracut);
    }

    #[test]
    fn every_family_has_a_default_efi_dir_and_its_own_marker() {
        for f in FAMILIES {
            assert!(!f.efi_dirs.is_empty(), "{:?}", f.id);
            assert_eq!(family_by_files(&|p| p == f.marker).map(|g| g.id), Some(f.id), "{:?}", f.id);
            assert_eq!(Family::get(f.id).id, f.id);
        }
    }
}
