//! The PXE output: kernel, initrd and ready-to-use network boot configs
//! (pxelinux, GRUB, iPXE) in one directory, to be served by TFTP or HTTP.

use std::path::Path;

use anyhow::{Context, Result};

use super::boot::Menu;
use super::efi::EfiBoot;
use super::iso::{set_private, syslinux_module, MENU_MODULES};

/// Debian's pxelinux (package pxelinux).
pub const PXELINUX: &str = "/usr/lib/PXELINUX/pxelinux.0";

/// The UEFI network loader in the PXE directory (DHCP boot file for UEFI clients).
pub const EFI_LOADER: &str = "bootx64.efi";

/// Write `dir/{vmlinuz,initrd.img,pxelinux.cfg/default,grub.cfg,boot.ipxe}`,
/// `bootx64.efi` (the UEFI loader of `efi`: shim, with the signed network
/// GRUB as `grubx64.efi` beside it, or our own GRUB; either reads `grub.cfg`
/// from the directory it was loaded from) and, when the host has Debian's pxelinux, `pxelinux.0`
/// with the syslinux modules its menu loads: the directory is then a
/// ready-to-use TFTP root for UEFI clients (DHCP boot file `bootx64.efi`)
/// and BIOS ones (`pxelinux.0`). Paths in pxelinux.cfg and boot.ipxe are
/// relative to `dir`, which is meant to be the TFTP root (or a directory the
/// HTTP URL points at); grub.cfg's follow `$prefix`. Returns a warning when
/// pxelinux.0 is missing.
pub fn write_pxe(efi: &EfiBoot, initrd: &Path, menu: &Menu, dir: &Path) -> Result<Option<String>> {
    std::fs::create_dir_all(dir.join("pxelinux.cfg")).with_context(|| format!("creating {}", dir.display()))?;
    for (src, name) in [(efi.kernel.as_path(), "vmlinuz"), (initrd, "initrd.img")] {
        let dest = dir.join(name);
        std::fs::copy(src, &dest).with_context(|| format!("copying {} to {}", src.display(), dest.display()))?;
        set_private(&dest)?;
    }
    std::fs::create_dir_all(dir.join("grub")).with_context(|| format!("creating {}/grub", dir.display()))?;
    let files = [
        ("pxelinux.cfg/default", menu.syslinux_cfg("vmlinuz", "initrd.img", "LOCALBOOT 0")),
        // Debian's signed network GRUB reads $prefix/grub.cfg, its prefix being
        // /grub on the TFTP server: lead it to the menu beside the loaders.
        ("grub/grub.cfg", "set prefix=$cmdpath\nconfigfile $cmdpath/grub.cfg\n".to_string()),
        // Signed GRUB keeps its own built-in prefix: the files are where it was loaded from.
        ("grub.cfg", format!("set prefix=$cmdpath\n{}", menu.grub_cfg("$prefix/vmlinuz", "$prefix/initrd.img", "exit"))),
        ("boot.ipxe", menu.ipxe_script("vmlinuz", "initrd.img")),
    ];
    for (name, text) in files {
        crate::util::write_atomic(&dir.join(name), text.as_bytes(), 0o600)?;
    }
    let loaders = std::iter::once((EFI_LOADER, &efi.first)).chain(efi.beside.iter().map(|(n, f)| (*n, f)));
    for (name, src) in loaders {
        let dest = dir.join(name);
        std::fs::copy(src, &dest).with_context(|| format!("copying the UEFI loader {} to {}", src.display(), dest.display()))?;
    }
    if !Path::new(PXELINUX).is_file() {
        return Ok(Some(format!(
            "{PXELINUX} is missing, so {} has no pxelinux.0: install the Debian package pxelinux (apt-get install pxelinux) \
             and run mkrescue again, or serve pxelinux.cfg/default with your own pxelinux.0 (or boot.ipxe / grub.cfg)",
            dir.display()
        )));
    }
    let mut binaries = vec![(Path::new(PXELINUX).to_path_buf(), "pxelinux.0")];
    for m in MENU_MODULES {
        binaries.push((syslinux_module(m)?, m));
    }
    for (src, name) in binaries {
        let dest = dir.join(name);
        std::fs::copy(&src, &dest).with_context(|| format!("copying {} to {}", src.display(), dest.display()))?;
    }
    Ok(None)
}
