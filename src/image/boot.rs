//! Boot menus: the same three entries ("recover", "recover unattended",
//! "boot local disk") for isolinux/syslinux (BIOS), GRUB (UEFI and network
//! boot) and pxelinux, and the GRUB EFI executable that finds its media.

use std::path::Path;

use anyhow::{Context, Result};

use super::config::{BootEntry, ImageConfig};
use crate::cmd::Cmd;

/// What every boot menu shows.
#[derive(Debug, Clone)]
pub struct Menu {
    pub hostname: String,
    /// Seconds before the default entry starts.
    pub timeout: u32,
    pub default: BootEntry,
    /// Kernel command line of the "recover" entry (console settings + extra).
    pub cmdline: String,
}

impl Menu {
    pub fn from_config(cfg: &ImageConfig, hostname: &str) -> Self {
        // The last console= gets /dev/console: the serial line, where
        // automation and tests read the rescue system's marker lines.
        let mut cmdline = String::from("console=tty0 console=ttyS0,115200 quiet");
        if !cfg.kernel_cmdline.trim().is_empty() {
            cmdline.push(' ');
            cmdline.push_str(cfg.kernel_cmdline.trim());
        }
        Menu { hostname: hostname.to_string(), timeout: cfg.timeout, default: cfg.default_entry, cmdline }
    }

    fn default_label(&self) -> &'static str {
        match self.default {
            BootEntry::Recover => "recover",
            BootEntry::Unattended => "unattended",
            BootEntry::Local => "local",
        }
    }

    fn default_index(&self) -> u32 {
        match self.default {
            BootEntry::Recover => 0,
            BootEntry::Unattended => 1,
            BootEntry::Local => 2,
        }
    }

    /// isolinux.cfg / syslinux.cfg / pxelinux.cfg/default. `local` is the
    /// directive that boots the local disk for this loader.
    pub fn syslinux_cfg(&self, kernel: &str, initrd: &str, local: &str) -> String {
        format!(
            "SERIAL 0 115200\n\
             UI menu.c32\n\
             PROMPT 0\n\
             TIMEOUT {t}\n\
             DEFAULT {d}\n\
             MENU TITLE rescue: recovery system for {h}\n\n\
             LABEL recover\n  MENU LABEL ^recover (rescue system with a shell)\n  KERNEL {kernel}\n  INITRD {initrd}\n  APPEND {c}\n\n\
             LABEL unattended\n  MENU LABEL recover ^unattended (recreate disks and restore without questions)\n  KERNEL {kernel}\n  INITRD {initrd}\n  APPEND {c} unattended\n\n\
             LABEL local\n  MENU LABEL boot ^local disk\n  {local}\n",
            t = self.timeout.max(1) * 10,
            d = self.default_label(),
            h = self.hostname,
            c = self.cmdline,
        )
    }

    /// grub.cfg. `local` is what "boot local disk" runs.
    pub fn grub_cfg(&self, kernel: &str, initrd: &str, local: &str) -> String {
        format!(
            "serial --unit=0 --speed=115200\n\
             terminal_input console serial\n\
             terminal_output console serial\n\
             set timeout={t}\n\
             set default={d}\n\n\
             menuentry 'recover (rescue system for {h})' {{\n  linux {kernel} {c}\n  initrd {initrd}\n}}\n\
             menuentry 'recover unattended' {{\n  linux {kernel} {c} unattended\n  initrd {initrd}\n}}\n\
             menuentry 'boot local disk' {{\n  {local}\n}}\n",
            t = self.timeout,
            d = self.default_index(),
            h = self.hostname,
            c = self.cmdline,
        )
    }

    /// An iPXE script with paths relative to the script's own URL.
    pub fn ipxe_script(&self, kernel: &str, initrd: &str) -> String {
        format!(
            "#!ipxe\n\
             menu rescue: recovery system for {h}\n\
             item recover recover (rescue system with a shell)\n\
             item unattended recover unattended\n\
             item local boot local disk\n\
             choose --default {d} --timeout {ms} target && goto ${{target}}\n\
             :recover\nkernel {kernel} initrd=initrd.img {c}\ninitrd {initrd}\nboot\n\
             :unattended\nkernel {kernel} initrd=initrd.img {c} unattended\ninitrd {initrd}\nboot\n\
             :local\nexit\n",
            h = self.hostname,
            d = self.default_label(),
            ms = self.timeout * 1000,
            c = self.cmdline,
        )
    }
}

/// GRUB modules the EFI loader carries (no module directory on the media).
const GRUB_EFI_MODULES: &[&str] = &[
    "part_gpt",
    "part_msdos",
    "fat",
    "iso9660",
    "ext2",
    "search",
    "search_fs_file",
    "search_label",
    "normal",
    "configfile",
    "linux",
    "echo",
    "test",
    "serial",
    "terminal",
    "efi_gop",
    "efi_uga",
    "all_video",
    "sleep",
    "reboot",
    "halt",
    "ls",
    "cat",
    "chain",
    "gzio",
];

/// What the network loader carries on top of [`GRUB_EFI_MODULES`]: the
/// firmware's network card and TFTP.
const GRUB_NET_MODULES: &[&str] = &["efinet", "net", "tftp"];

/// Build the UEFI network loader of the PXE directory: GRUB for x86_64 UEFI
/// that reads `grub.cfg` from the directory it was itself loaded from over
/// TFTP (`$cmdpath`, e.g. `(tftp,10.0.2.2)/rescue`), which the config's
/// `$prefix/vmlinuz` paths then follow.
pub fn grub_efi_net(out: &Path, work: &Path) -> Result<()> {
    grub_mkimage(out, work, "grub-net-early.cfg", "set prefix=$cmdpath\nconfigfile $cmdpath/grub.cfg\n", "", GRUB_NET_MODULES)
}

/// Build `BOOTX64.EFI`: GRUB for x86_64 UEFI with an embedded config that
/// finds the media holding the file `marker` and reads its /boot/grub/grub.cfg.
pub fn grub_efi(out: &Path, marker: &str, work: &Path) -> Result<()> {
    grub_mkimage(out, work, "grub-early.cfg", &grub_redirect(marker), "/boot/grub", &[])
}

/// A grub.cfg that reads the menu (`/boot/grub/grub.cfg`) of the filesystem
/// holding the file `marker`: embedded in our own GRUB, or beside signed GRUB.
pub fn grub_redirect(marker: &str) -> String {
    format!("search --no-floppy --file --set=root {marker}\nset prefix=($root)/boot/grub\nconfigfile ($root)/boot/grub/grub.cfg\n")
}

/// `grub-mkimage` for x86_64 UEFI: [`GRUB_EFI_MODULES`] and `extra`, with the
/// early config `early` (written to `work/name`) and the prefix `prefix`.
fn grub_mkimage(out: &Path, work: &Path, name: &str, early: &str, prefix: &str, extra: &[&str]) -> Result<()> {
    let cfg = work.join(name);
    std::fs::write(&cfg, early).with_context(|| format!("writing {}", cfg.display()))?;
    Cmd::new("grub-mkimage").args(["-O", "x86_64-efi", "-p", prefix, "-c"]).arg(&cfg).arg("-o").arg(out).args(GRUB_EFI_MODULES).args(extra).run()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn menus_have_three_entries_and_the_default() {
        let mut cfg = ImageConfig { timeout: 3, default_entry: BootEntry::Unattended, ..Default::default() };
        cfg.kernel_cmdline = "rescue.after=poweroff".into();
        let m = Menu::from_config(&cfg, "web1");
        let s = m.syslinux_cfg("/boot/vmlinuz", "/boot/initrd.img", "LOCALBOOT 0x80");
        assert!(s.contains("TIMEOUT 30\n") && s.contains("DEFAULT unattended\n"), "{s}");
        assert!(s.contains("APPEND console=tty0 console=ttyS0,115200 quiet rescue.after=poweroff unattended\n"), "{s}");
        let g = m.grub_cfg("/boot/vmlinuz", "/boot/initrd.img", "exit");
        assert!(g.contains("set default=1\n") && g.contains("set timeout=3\n"), "{g}");
        assert_eq!(g.matches("menuentry").count(), 3);
    }
}
