//! The PXE output: kernel, initrd and ready-to-use network boot configs
//! (pxelinux, GRUB, iPXE) in one directory, to be served by TFTP or HTTP.

use std::path::Path;

use anyhow::{Context, Result};

use super::boot::Menu;
use super::iso::set_private;

/// Write `dir/{vmlinuz,initrd.img,pxelinux.cfg/default,grub.cfg,boot.ipxe}`.
/// Paths in the configs are relative to `dir`, which is meant to be the
/// TFTP root (or a directory the HTTP URL points at).
pub fn write_pxe(kernel: &Path, initrd: &Path, menu: &Menu, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir.join("pxelinux.cfg")).with_context(|| format!("creating {}", dir.display()))?;
    for (src, name) in [(kernel, "vmlinuz"), (initrd, "initrd.img")] {
        let dest = dir.join(name);
        std::fs::copy(src, &dest).with_context(|| format!("copying {} to {}", src.display(), dest.display()))?;
        set_private(&dest)?;
    }
    let files = [
        ("pxelinux.cfg/default", menu.syslinux_cfg("vmlinuz", "initrd.img", "LOCALBOOT 0")),
        ("grub.cfg", menu.grub_cfg("vmlinuz", "initrd.img", "exit")),
        ("boot.ipxe", menu.ipxe_script("vmlinuz", "initrd.img")),
    ];
    for (name, text) in files {
        crate::util::write_atomic(&dir.join(name), text.as_bytes(), 0o600)?;
    }
    Ok(())
}
