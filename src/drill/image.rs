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
