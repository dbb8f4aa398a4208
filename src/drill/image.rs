//! What the drill takes out of a rescue ISO: the kernel, the initramfs and
//! the boot menu's kernel command line (with xorriso), and from the
//! initramfs the descriptor and config the rescue system will use.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cmd::Cmd;
use crate::image::initramfs::{IMAGE_CONFIG, IMAGE_LAYOUT};

/// The parts of a rescue ISO the drill boots with.
#[derive(Debug, Clone)]
pub struct RescueIso {
    pub iso: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The "recover" entry's kernel command line.
    pub cmdline: String,
    /// `/etc/rescue/layout.toml` of the initramfs.
    pub layout_text: Option<String>,
    /// `/etc/rescue/rescue.toml` of the initramfs.
    pub config_text: Option<String>,
}

/// Copy the kernel, initramfs and isolinux menu out of `iso` into `dir`,
/// and read the descriptor and config from the initramfs.
pub fn open(iso: &Path, dir: &Path) -> Result<RescueIso> {
    let kernel = dir.join("vmlinuz");
    let initrd = dir.join("initrd.img");
    let menu = dir.join("isolinux.cfg");
    Cmd::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(iso)
        .args(["-extract", "/boot/vmlinuz"])
        .arg(&kernel)
        .args(["-extract", "/boot/initrd.img"])
        .arg(&initrd)
        .args(["-extract", "/isolinux/isolinux.cfg"])
        .arg(&menu)
        .run()
        .map_err(|e| {
            crate::error::input_error(format!(
                "{e:#}\n{} is not a rescue ISO made by `rescue mkrescue` (it needs /boot/vmlinuz, /boot/initrd.img and /isolinux/isolinux.cfg)",
                iso.display()
            ))
        })?;
    let menu_text = std::fs::read_to_string(&menu).with_context(|| format!("reading {}", menu.display()))?;
    let cmdline = menu_cmdline(&menu_text).unwrap_or_else(|| "console=tty0 console=ttyS0,115200 quiet".to_string());
    let mut files = files_from_initrd(&initrd, &[IMAGE_LAYOUT, IMAGE_CONFIG])?;
    Ok(RescueIso {
        iso: iso.to_path_buf(),
        kernel,
        initrd,
        cmdline,
        layout_text: files.remove(IMAGE_LAYOUT).map(|b| String::from_utf8_lossy(&b).into_owned()),
        config_text: files.remove(IMAGE_CONFIG).map(|b| String::from_utf8_lossy(&b).into_owned()),
    })
}

/// Where the ISO's UEFI loaders are (see `image::iso::write_iso`).
const ISO_SHIM: &str = "/EFI/BOOT/BOOTX64.EFI";
const ISO_GRUB: &str = "/EFI/BOOT/grubx64.efi";
/// The menu the ISO's signed GRUB reads (its El Torito image redirects there).
const ISO_GRUB_CFG: &str = "/boot/grub/grub.cfg";

/// For `--secure-boot`: refuse an ISO whose UEFI loaders carry no signature
/// (built without the signed chain), before a VM runs into the firmware's refusal.
pub fn require_signed_chain(iso: &Path, dir: &Path) -> Result<()> {
    let shim = dir.join("BOOTX64.EFI");
    let grub = dir.join("grubx64.efi");
    // xorriso fails on a path the ISO does not have: that is an unsigned image too.
    let extracted = Cmd::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(iso)
        .args(["-extract", ISO_SHIM])
        .arg(&shim)
        .args(["-extract", ISO_GRUB])
        .arg(&grub)
        .run()
        .is_ok();
    let signed = |f: &Path| crate::image::efi::pe_is_signed(f).unwrap_or(false);
    if !(extracted && signed(&shim) && signed(&grub)) {
        return Err(crate::error::input_error(format!(
            "{} has no signed UEFI boot chain (shim and GRUB in /EFI/BOOT), so firmware that enforces Secure Boot would refuse it: \
             install {} and rebuild it with `rescue mkrescue` (image.secure-boot = \"require\" makes sure), or drill without --secure-boot",
            iso.display(),
            crate::image::efi::SIGNED_CHAIN_PACKAGES
        )));
    }
    Ok(())
}

/// The drill's GRUB menu: one entry, no wait, the drill's kernel command line.
pub fn drill_grub_cfg(append: &str) -> String {
    format!(
        "serial --unit=0 --speed=115200\nterminal_input console serial\nterminal_output console serial\nset timeout=0\nset default=0\n\n\
         menuentry 'rescue drill' {{\n  linux /boot/vmlinuz {append}\n  initrd /boot/initrd.img\n}}\n"
    )
}

/// A copy of `iso` at `out` whose GRUB menu is `grub_cfg`, with its boot
/// images (El Torito BIOS and EFI, hybrid MBR/GPT) as they were: under
/// Secure Boot the kernel must come through shim and signed GRUB from the
/// ISO itself, so its command line can only change in the menu.
pub fn remaster(iso: &Path, grub_cfg: &str, out: &Path) -> Result<()> {
    let cfg = out.with_extension("grub.cfg");
    std::fs::write(&cfg, grub_cfg).with_context(|| format!("writing {}", cfg.display()))?;
    let _ = std::fs::remove_file(out);
    remaster_cmd(iso, &cfg, out).run().with_context(|| format!("making the drill's copy of {} with its own boot menu", iso.display()))
}

fn remaster_cmd(iso: &Path, cfg: &Path, out: &Path) -> Cmd {
    Cmd::new("xorriso").arg("-indev").arg(iso).arg("-outdev").arg(out).arg("-map").arg(cfg).arg(ISO_GRUB_CFG).args(["-boot_image", "any", "replay"])
}

/// The APPEND line of the first menu entry ("recover").
pub fn menu_cmdline(isolinux_cfg: &str) -> Option<String> {
    isolinux_cfg.lines().find_map(|l| l.trim().strip_prefix("APPEND ")).map(|s| s.trim().to_string())
}

/// The rescue kernel command line for a drill: the menu's, without what
/// the drill decides itself, plus `unattended`, the drill words, and the
/// serial console last (it becomes /dev/console, which the drill reads).
pub fn drill_cmdline(menu: &str, extra: &[String]) -> String {
    let mut words: Vec<String> = menu
        .split_whitespace()
        .filter(|w| !(*w == "unattended" || w.starts_with("rescue.after=") || w.starts_with("rescue.drill") || w.starts_with("console=ttyS0")))
        .map(str::to_string)
        .collect();
    // The drill's VM is emulated (TCG) on a host that may be busy: there the
    // kernel's IO-APIC timer check can miss its tick and panic the boot.
    if !words.iter().any(|w| w == "no_timer_check") {
        words.push("no_timer_check".into());
    }
    words.extend(["unattended".to_string(), "rescue.after=poweroff".to_string()]);
    words.extend(extra.iter().cloned());
    words.push("console=ttyS0,115200".into());
    words.join(" ")
}

/// The contents of the named files (absolute paths) of a zstd-compressed
/// (or uncompressed) cpio newc initramfs.
pub fn files_from_initrd(initrd: &Path, wanted: &[&str]) -> Result<BTreeMap<String, Vec<u8>>> {
    let f = std::fs::File::open(initrd).with_context(|| format!("opening {}", initrd.display()))?;
    let mut head = std::io::BufReader::new(f);
    let is_zstd = {
        use std::io::BufRead;
        head.fill_buf().with_context(|| format!("reading {}", initrd.display()))?.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
    };
    let mut reader: Box<dyn Read> = if is_zstd {
        Box::new(zstd::stream::read::Decoder::with_buffer(head).with_context(|| format!("reading {} (zstd)", initrd.display()))?)
    } else {
        Box::new(head)
    };
    let mut out = BTreeMap::new();
    loop {
        let mut entry = cpio::NewcReader::new(reader).with_context(|| format!("reading the cpio archive {}", initrd.display()))?;
        if entry.entry().is_trailer() {
            break;
        }
        let name = format!("/{}", entry.entry().name().trim_start_matches("./").trim_start_matches('/'));
        if wanted.contains(&name.as_str()) {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).with_context(|| format!("reading {name} from {}", initrd.display()))?;
            out.insert(name, data);
            reader = entry.finish()?;
            if out.len() == wanted.len() {
                break;
            }
        } else {
            reader = entry.finish()?;
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_drill_command_line_keeps_the_image_options() {
        let menu = crate::image::boot::Menu {
            hostname: "web1".into(),
            timeout: 5,
            default: crate::image::config::BootEntry::Recover,
            cmdline: "console=tty0 console=ttyS0,115200 quiet rescue.nonet rescue.after=reboot".into(),
        };
        let cfg = menu.syslinux_cfg("/boot/vmlinuz", "/boot/initrd.img", "LOCALBOOT 0x80");
        let base = menu_cmdline(&cfg).unwrap();
        assert_eq!(base, "console=tty0 console=ttyS0,115200 quiet rescue.nonet rescue.after=reboot");
        let line = drill_cmdline(&base, &crate::drill::marker::cmdline_words(&["true".into()]));
        assert_eq!(
            line,
            "console=tty0 quiet rescue.nonet no_timer_check unattended rescue.after=poweroff rescue.drill rescue.drill.check=74727565 console=ttyS0,115200"
        );
    }

    #[test]
    fn the_remaster_replaces_the_menu_and_replays_the_boot_images() {
        let c = remaster_cmd(Path::new("/srv/rescue-web1.iso"), Path::new("/w/drill.grub.cfg"), Path::new("/w/drill.iso")).display();
        assert!(c.contains("-indev /srv/rescue-web1.iso -outdev /w/drill.iso -map /w/drill.grub.cfg /boot/grub/grub.cfg -boot_image any replay"), "{c}");
        let cfg = drill_grub_cfg("quiet unattended rescue.drill console=ttyS0,115200");
        assert!(cfg.contains("set timeout=0\n") && cfg.contains("  linux /boot/vmlinuz quiet unattended rescue.drill console=ttyS0,115200\n"), "{cfg}");
        assert_eq!(cfg.matches("menuentry").count(), 1, "{cfg}");
    }

    /// A real ISO with an EFI El Torito image: the copy has the new menu,
    /// every other file and the boot image; the original is untouched.
    #[test]
    fn remaster_of_a_real_iso() {
        let xorriso = crate::cmd::find_program("xorriso");
        assert!(xorriso.is_some(), "xorriso is missing: apt-get install xorriso");
        let d = tempfile::tempdir().unwrap();
        let tree = d.path().join("tree");
        std::fs::create_dir_all(tree.join("boot/grub")).unwrap();
        std::fs::write(tree.join("boot/grub/grub.cfg"), "old menu\n").unwrap();
        std::fs::write(tree.join("boot/vmlinuz"), "kernel").unwrap();
        std::fs::write(tree.join("boot/efiboot.img"), vec![0u8; 64 * 1024]).unwrap();
        let iso = d.path().join("rescue.iso");
        Cmd::new("xorriso")
            .args(["-as", "mkisofs", "-quiet", "-R", "-o"])
            .arg(&iso)
            .args(["-e", "boot/efiboot.img", "-no-emul-boot"])
            .arg(&tree)
            .run()
            .unwrap();
        let out = d.path().join("drill.iso");
        remaster(&iso, &drill_grub_cfg("unattended"), &out).unwrap();
        let read = |from: &Path, path: &str| {
            let to = d.path().join("x");
            let _ = std::fs::remove_file(&to);
            Cmd::new("xorriso").args(["-osirrox", "on", "-indev"]).arg(from).args(["-extract", path]).arg(&to).run().unwrap();
            std::fs::read_to_string(&to).unwrap_or_default()
        };
        assert!(read(&out, "/boot/grub/grub.cfg").contains("linux /boot/vmlinuz unattended"));
        assert_eq!(read(&out, "/boot/vmlinuz"), "kernel");
        assert_eq!(read(&iso, "/boot/grub/grub.cfg"), "old menu\n");
        let report = Cmd::new("xorriso").args(["-indev"]).arg(&out).args(["-report_el_torito", "plain"]).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&report.stdout), String::from_utf8_lossy(&report.stderr));
        assert!(text.contains("UEFI"), "the EFI boot image was lost: {text}");
        // And it has no signed chain: --secure-boot refuses it.
        let e = require_signed_chain(&out, d.path()).unwrap_err();
        assert!(format!("{e:#}").contains("has no signed UEFI boot chain"), "{e:#}");
    }

    #[test]
    fn files_are_read_from_a_zstd_cpio() {
        let mut t = crate::image::tree::Tree::new();
        t.add_bytes(Path::new(IMAGE_LAYOUT), b"version = 1\n".to_vec(), 0o600).unwrap();
        t.add_bytes(Path::new("/etc/other"), vec![7u8; 5000], 0o600).unwrap();
        t.add_bytes(Path::new(IMAGE_CONFIG), b"[recover]\n".to_vec(), 0o600).unwrap();
        let mut cpio = Vec::new();
        t.write_cpio(&mut cpio, |_, _| Ok(())).unwrap();
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("initrd.img");
        std::fs::write(&p, zstd::encode_all(&cpio[..], 3).unwrap()).unwrap();
        let files = files_from_initrd(&p, &[IMAGE_LAYOUT, IMAGE_CONFIG]).unwrap();
        assert_eq!(files[IMAGE_LAYOUT], b"version = 1\n");
        assert_eq!(files[IMAGE_CONFIG], b"[recover]\n");
        std::fs::write(&p, &cpio).unwrap();
        assert_eq!(files_from_initrd(&p, &[IMAGE_LAYOUT]).unwrap().len(), 1);
        assert!(files_from_initrd(&p, &["/missing"]).unwrap().is_empty());
    }
}
