//! Boot tests: the image built on the host with Debian's kernel boots under
//! qemu (TCG) to the rescue banner, with the blank disks under
//! /dev/disk/by-* and the descriptor present: the ISO with SeaBIOS and with
//! OVMF (UEFI), the raw disk image with SeaBIOS and OVMF, and the PXE files
//! over TFTP (qemu's built-in server, pxelinux.0 from the directory) and
//! with -kernel/-initrd. The image's menu starts its default entry after
//! 1 s and `rescue.after=poweroff` ends the VM after the banner.

use std::path::Path;

mod image_common;

use image_common::*;

#[test]
fn iso_boots_with_seabios() {
    let b = build_shared();
    let iso = b.dir.join("rescue-imgtest.iso");
    let c = boot(Firmware::Bios, &["-cdrom", iso.to_str().unwrap()], 400);
    assert!(c.contains("ISOLINUX"), "isolinux did not start");
    assert_rescue_booted(&c, "ISO + SeaBIOS");
}

#[test]
fn iso_boots_with_ovmf() {
    let b = build_shared();
    let iso = b.dir.join("rescue-imgtest.iso");
    let c = boot(Firmware::Uefi, &["-cdrom", iso.to_str().unwrap()], 500);
    assert!(c.contains("GNU GRUB"), "GRUB (EFI) did not start");
    assert_rescue_booted(&c, "ISO + OVMF");
}

/// The PXE directory is a ready-to-use TFTP root: SeaBIOS's iPXE ROM gets
/// `pxelinux.0` from qemu's built-in DHCP/TFTP server, pxelinux loads the
/// menu, the kernel and the initrd over TFTP.
#[test]
fn pxe_directory_boots_over_tftp() {
    let b = build_shared();
    let pxe = b.dir.join("rescue-imgtest-pxe");
    for f in ["pxelinux.0", "ldlinux.c32", "menu.c32", "libutil.c32", "libcom32.c32"] {
        assert!(pxe.join(f).is_file(), "{f} missing from the PXE directory {}", pxe.display());
    }
    assert!(
        Path::new("/usr/share/qemu/pxe-virtio.rom").exists() || Path::new("/usr/lib/ipxe/qemu/pxe-virtio.rom").exists(),
        "no iPXE ROM: apt-get install ipxe-qemu"
    );
    let nic = format!("user,model=virtio-net-pci,tftp={},bootfile=pxelinux.0", pxe.display());
    let c = boot_with_nic(Firmware::Bios, &nic, &["-boot", "n"], 900);
    assert!(c.contains("PXELINUX"), "pxelinux did not start from TFTP:\n{}", &c[c.len().saturating_sub(3000)..]);
    assert_rescue_booted(&c, "PXE over TFTP");
}

#[test]
fn pxe_files_boot_with_kernel_and_initrd() {
    let b = build_shared();
    let pxe = b.dir.join("rescue-imgtest-pxe");
    let cfg = std::fs::read_to_string(pxe.join("pxelinux.cfg/default")).unwrap();
    assert!(cfg.contains("KERNEL vmlinuz") && cfg.contains("INITRD initrd.img"), "{cfg}");
    // The same command line the menus use, taken from the generated config.
    let append = cfg.lines().find(|l| l.trim_start().starts_with("APPEND console")).unwrap().trim().trim_start_matches("APPEND ").to_string();
    let c =
        boot(Firmware::Bios, &["-kernel", pxe.join("vmlinuz").to_str().unwrap(), "-initrd", pxe.join("initrd.img").to_str().unwrap(), "-append", &append], 400);
    assert_rescue_booted(&c, "PXE kernel+initrd");
    assert!(c.contains("RESCUE-NET eth0"), "no network came up via DHCP");
    // `unattended` runs `rescue recover --unattended`; this build has no
    // recover command, so it must say it failed and go on (to the shell,
    // here to rescue.after=poweroff) instead of hanging or rebooting.
    let c = boot(
        Firmware::Bios,
        &[
            "-kernel",
            pxe.join("vmlinuz").to_str().unwrap(),
            "-initrd",
            pxe.join("initrd.img").to_str().unwrap(),
            "-append",
            &format!("{append} unattended rescue.nonet"),
        ],
        400,
    );
    assert!(c.contains("RESCUE-RECOVER-START rescue recover --unattended"), "unattended recovery not started");
    let ok = c.contains("RESCUE-RECOVER-OK");
    assert!(ok || c.contains("RESCUE-RECOVER-FAILED exit code"), "no recovery result line");
    assert!(c.contains("RESCUE-NET disabled by rescue.nonet"));
}

#[test]
fn raw_disk_image_boots_with_seabios_and_ovmf() {
    let b = build_shared();
    let dir = tempfile::tempdir().unwrap();
    // A copy per boot: the firmware may write to it.
    let raw = dir.path().join("raw.img");
    std::fs::copy(b.dir.join("rescue-imgtest.raw"), &raw).unwrap();
    let drive = format!("file={},format=raw,if=ide", raw.display());
    let c = boot(Firmware::Bios, &["-drive", &drive], 400);
    assert!(c.contains("SYSLINUX"), "syslinux did not start");
    assert_rescue_booted(&c, "raw + SeaBIOS");
    let c = boot(Firmware::Uefi, &["-drive", &drive], 500);
    assert_rescue_booted(&c, "raw + OVMF");
}
