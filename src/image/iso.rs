//! The ISO output: a hybrid ISO 9660 image made by xorriso that boots on
//! BIOS (isolinux, also when written to a USB stick) and on UEFI (an El
//! Torito EFI image holding GRUB), from a CD or as a disk.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::boot::{grub_redirect, Menu};
use super::efi::{Chain, EfiBoot};
use crate::cmd::Cmd;

/// Where Debian's isolinux and syslinux modules are.
pub const ISOLINUX_DIR: &str = "/usr/lib/ISOLINUX";
pub const SYSLINUX_BIOS_MODULES: &str = "/usr/lib/syslinux/modules/bios";
pub const MENU_MODULES: &[&str] = &["ldlinux.c32", "menu.c32", "libutil.c32", "libcom32.c32", "chain.c32"];

/// The host file for a syslinux module, or an error naming the package.
pub fn syslinux_module(name: &str) -> Result<PathBuf> {
    let p = Path::new(SYSLINUX_BIOS_MODULES).join(name);
    if p.is_file() {
        Ok(p)
    } else {
        anyhow::bail!("{} is missing; install the Debian package syslinux-common (apt-get install syslinux-common)", p.display())
    }
}

/// Make a small FAT image holding the UEFI loaders in `EFI/BOOT/` and, for
/// signed GRUB (which reads `/boot/grub/grub.cfg` of the medium it came
/// from), a `grub.cfg` that finds the ISO by `marker` and reads its menu.
pub fn efi_fat_image(efi: &EfiBoot, marker: &str, work: &Path, out: &Path) -> Result<()> {
    let mut size = std::fs::metadata(&efi.first)?.len();
    for (_, f) in &efi.beside {
        size += std::fs::metadata(f)?.len();
    }
    let kib = (size / 1024 + 1024).max(2048);
    let _ = std::fs::remove_file(out);
    Cmd::new("mkfs.vfat").args(["-C", "-n", "RESCUE_EFI"]).arg(out).arg(kib.to_string()).run()?;
    let img = out.display().to_string();
    let mtools = |prog: &str| Cmd::new(prog).env("MTOOLS_SKIP_CHECK", "1").args(["-i", &img]);
    mtools("mmd").args(["::/EFI", "::/EFI/BOOT"]).run()?;
    mtools("mcopy").arg(&efi.first).arg("::/EFI/BOOT/BOOTX64.EFI").run()?;
    for (name, f) in &efi.beside {
        mtools("mcopy").arg(f).arg(format!("::/EFI/BOOT/{name}")).run()?;
    }
    if efi.chain != Chain::Unsigned {
        let redirect = work.join("efi-redirect.cfg");
        std::fs::write(&redirect, grub_redirect(marker))?;
        mtools("mmd").args(["::/boot", "::/boot/grub"]).run()?;
        mtools("mcopy").arg(&redirect).arg("::/boot/grub/grub.cfg").run()?;
    }
    Ok(())
}

/// Write the ISO to `out` (mode 0600). `extra` are (path in ISO, host path)
/// pairs (e.g. a backup archive for `iso:///backup`).
pub fn write_iso(efi: &EfiBoot, initrd: &Path, menu: &Menu, marker: &str, work: &Path, out: &Path, extra: &[(String, PathBuf)]) -> Result<()> {
    let kernel = &efi.kernel;
    let stage = work.join("iso");
    let isolinux = stage.join("isolinux");
    std::fs::create_dir_all(&isolinux)?;
    let isolinux_bin = Path::new(ISOLINUX_DIR).join("isolinux.bin");
    if !isolinux_bin.is_file() {
        anyhow::bail!("{} is missing; install the Debian package isolinux (apt-get install isolinux)", isolinux_bin.display());
    }
    // A copy: -boot-info-table patches the boot file.
    std::fs::copy(&isolinux_bin, isolinux.join("isolinux.bin"))?;
    for m in MENU_MODULES {
        std::fs::copy(syslinux_module(m)?, isolinux.join(m))?;
    }
    std::fs::write(isolinux.join("isolinux.cfg"), menu.syslinux_cfg("/boot/vmlinuz", "/boot/initrd.img", "LOCALBOOT 0x80"))?;
    std::fs::write(stage.join("marker"), format!("{marker}\n"))?;
    std::fs::write(stage.join("grub.cfg"), menu.grub_cfg("/boot/vmlinuz", "/boot/initrd.img", "exit"))?;
    efi_fat_image(efi, marker, &stage, &stage.join("efiboot.img"))?;

    let hybrid_mbr = Path::new(ISOLINUX_DIR).join("isohdpfx.bin");
    let tmp = out.with_extension("iso.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut graft = vec![
        format!("isolinux={}", isolinux.display()),
        format!("boot/vmlinuz={}", kernel.display()),
        format!("boot/initrd.img={}", initrd.display()),
        format!("boot/efiboot.img={}", stage.join("efiboot.img").display()),
        format!("boot/grub/grub.cfg={}", stage.join("grub.cfg").display()),
        format!("{}={}", marker.trim_start_matches('/'), stage.join("marker").display()),
        format!("EFI/BOOT/BOOTX64.EFI={}", efi.first.display()),
        // Signed GRUB's own fallback: the filesystem with /.disk/info holds /boot/grub.
        format!(".disk/info={}", stage.join("marker").display()),
    ];
    for (name, f) in &efi.beside {
        graft.push(format!("EFI/BOOT/{name}={}", f.display()));
    }
    for (dest, src) in extra {
        graft.push(format!("{}={}", dest.trim_start_matches('/'), src.display()));
    }
    // Backup archives can be larger than 4 GiB: ISO level 3 splits such files.
    let level: &[&str] = if extra.is_empty() { &[] } else { &["-iso-level", "3"] };
    Cmd::new("xorriso")
        .args(["-as", "mkisofs", "-quiet"])
        .args(level)
        .arg("-o")
        .arg(&tmp)
        .args(["-V", "RESCUE", "-R", "-J", "-l", "-graft-points", "-isohybrid-mbr"])
        .arg(&hybrid_mbr)
        .args(["-c", "isolinux/boot.cat", "-b", "isolinux/isolinux.bin", "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table"])
        .args(["-eltorito-alt-boot", "-e", "boot/efiboot.img", "-no-emul-boot", "-isohybrid-gpt-basdat"])
        .args(&graft)
        .run()
        .context("making the ISO image")?;
    set_private(&tmp)?;
    std::fs::rename(&tmp, out).with_context(|| format!("moving the ISO into place at {}", out.display()))?;
    Ok(())
}

/// Output files hold the system's descriptor and config: owner only.
pub fn set_private(p: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).with_context(|| format!("setting mode 0600 on {}", p.display()))
}
