//! Boot tests: the image built on the host with Debian's kernel boots under
//! qemu (TCG) to the rescue banner, with the blank disks under
//! /dev/disk/by-* and the descriptor present: the ISO with SeaBIOS and with
//! OVMF (UEFI), the raw disk image with SeaBIOS and OVMF, and the PXE files
//! over TFTP (qemu's built-in server, pxelinux.0 from the directory) and
//! with -kernel/-initrd. The image's menu starts its default entry after
//! 1 s and `rescue.after=poweroff` ends the VM after the banner.

use std::path::Path;
use std::process::Command;

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
    assert!(c.contains("PXELINUX"), "pxelinux did not start from TFTP:\n{}", console_tail(&c, 3000));
    assert_rescue_booted(&c, "PXE over TFTP");
}

/// The same directory for UEFI clients: OVMF gets `bootx64.efi` (GRUB) over
/// TFTP, which reads `grub.cfg` and then the kernel and the initrd from the
/// directory it came from.
#[test]
fn pxe_directory_boots_uefi_clients_over_tftp() {
    let b = build_shared();
    let pxe = b.dir.join("rescue-imgtest-pxe");
    assert!(pxe.join("bootx64.efi").is_file(), "bootx64.efi missing from the PXE directory {}", pxe.display());
    // The firmware's own PXE client (romfile= leaves qemu's iPXE ROM out), as on
    // a server: shim cannot fetch GRUB through iPXE's PXE protocol.
    let netdev = format!("user,id=n0,tftp={},bootfile=bootx64.efi", pxe.display());
    let c = boot_with_nic(Firmware::Uefi, "none", &["-netdev", &netdev, "-device", "virtio-net-pci,netdev=n0,romfile=", "-boot", "n"], 900);
    assert!(c.contains("GNU GRUB") || c.contains("recover (rescue system for"), "GRUB did not start from TFTP:\n{}", console_tail(&c, 3000));
    assert_rescue_booted(&c, "UEFI PXE over TFTP");
}

#[test]
fn pxe_files_boot_with_kernel_and_initrd() {
    let b = build_shared();
    let pxe = b.dir.join("rescue-imgtest-pxe");
    let cfg = std::fs::read_to_string(pxe.join("pxelinux.cfg/default")).unwrap();
    assert!(cfg.contains("KERNEL vmlinuz") && cfg.contains("INITRD initrd.img"), "{cfg}");
    // The same command line the menus use, taken from the generated config.
    let append = pxe_append(&pxe);
    let c =
        boot(Firmware::Bios, &["-kernel", pxe.join("vmlinuz").to_str().unwrap(), "-initrd", pxe.join("initrd.img").to_str().unwrap(), "-append", &append], 400);
    assert_rescue_booted(&c, "PXE kernel+initrd");
    assert!(c.contains("RESCUE-NET eth0"), "no network came up via DHCP");
    // `unattended` runs `rescue recover --unattended`; with the fixture's
    // NFS backup and no network it cannot succeed, so it must say it failed
    // and go on (to the shell, here to rescue.after=poweroff) instead of
    // hanging or rebooting.
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
    assert!(c.contains("RESCUE-RECOVER-START rescue recover --unattended"), "unattended recovery not started:\n{}", console_tail(&c, 4000));
    let ok = c.contains("RESCUE-RECOVER-OK");
    assert!(ok || c.contains("RESCUE-RECOVER-FAILED exit code"), "no recovery result line:\n{}", console_tail(&c, 4000));
    assert!(c.contains("RESCUE-NET disabled by rescue.nonet"), "{}", console_tail(&c, 4000));
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

/// Kills qemu when the test ends, also on panic.
struct Vm(std::process::Child);
impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// With `ssh-authorized-keys` set, the rescue system starts sshd after DHCP
/// and root logs in with the matching key (qemu user networking forwards a
/// port of the host's 127.0.0.1 to the guest's port 22); host keys are made
/// at boot, never taken from the build host. Without keys no sshd is put in
/// (checked on the shared image).
#[test]
fn ssh_login_with_the_configured_key() {
    require("ssh", "openssh-client");
    require("sshd", "openssh-server");
    let shared = extract_initrd(&build_shared().dir.join("rescue-imgtest-pxe/initrd.img"));
    assert!(!shared.path().join("usr/sbin/sshd").exists(), "sshd is in an image built without ssh-authorized-keys");

    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let key = dir.path().join("id_ed25519");
    let st = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "rescue-test", "-f"]).arg(&key).status().unwrap();
    assert!(st.success(), "ssh-keygen failed");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let cfg = dir.path().join("rescue.toml");
    std::fs::write(&cfg, format!("[image]\ntimeout = 1\nssh-authorized-keys = [\"{}\"]\n", public.trim())).unwrap();
    let out = mkrescue_cmd(&cfg, &kernel_dir(), &dir.path().join("out"), "pxe").output().unwrap();
    assert!(out.status.success(), "mkrescue failed: {}", String::from_utf8_lossy(&out.stderr));
    let pxe = dir.path().join("out/rescue-imgtest-pxe");
    let root = extract_initrd(&pxe.join("initrd.img"));
    assert!(root.path().join("usr/sbin/sshd").is_file(), "sshd missing from the image");
    assert_eq!(std::fs::read_to_string(root.path().join("root/.ssh/authorized_keys")).unwrap().trim(), public.trim());
    let host_keys: Vec<_> = walk(root.path()).into_iter().filter(|p| p.to_string_lossy().contains("ssh_host_")).collect();
    assert!(host_keys.is_empty(), "host keys of the build host in the image: {host_keys:?}");

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let append = pxe_append(&pxe);
    let serial = dir.path().join("serial.log");
    let vm = Vm(Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", "1024", "-smp", "2", "-display", "none", "-monitor", "none", "-no-reboot"])
        .args(["-nic", &format!("user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:{port}-:22")])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-kernel")
        .arg(pxe.join("vmlinuz"))
        .arg("-initrd")
        .arg(pxe.join("initrd.img"))
        .args(["-append", &append])
        .spawn()
        .unwrap());
    let console = || std::fs::read_to_string(&serial).unwrap_or_default().replace('\r', "");
    let t = std::time::Instant::now();
    while !console().contains("RESCUE-READY") {
        assert!(t.elapsed().as_secs() < 600, "no RESCUE-READY within 600 s:\n{}", console());
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
    let c = console();
    assert!(c.contains("RESCUE-NET eth0") || c.contains("RESCUE-NET en"), "no DHCP address:\n{c}");
    assert!(c.contains("RESCUE-SSHD started"), "sshd did not start:\n{c}");
    let ssh = |user_key: &Path| {
        Command::new("ssh")
            .arg("-i")
            .arg(user_key)
            .args(["-p", &port.to_string(), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
            .args(["-o", "ConnectTimeout=60", "-o", "LogLevel=ERROR", "root@127.0.0.1", "grep ^version /etc/rescue/layout.toml; rescue --version"])
            .output()
            .unwrap()
    };
    let mut last = None;
    for _ in 0..5 {
        let o = ssh(&key);
        if o.status.success() {
            last = Some(o);
            break;
        }
        eprintln!("ssh failed, retrying: {}", String::from_utf8_lossy(&o.stderr));
        std::thread::sleep(std::time::Duration::from_secs(10));
    }
    let o = last.unwrap_or_else(|| panic!("ssh root@127.0.0.1:{port} with the configured key never succeeded; console:\n{}", console()));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("version = 1") && text.contains("rescue "), "unexpected ssh output:\n{text}");
    // Another key is refused.
    let other = dir.path().join("other");
    Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&other).status().unwrap();
    assert!(!ssh(&other).status.success(), "a key that is not configured logged in");
    drop(vm);
}
