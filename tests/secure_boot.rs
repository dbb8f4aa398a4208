//! Secure Boot (root, qemu TCG, minutes): the rescue media boot under OVMF
//! that enforces Secure Boot, through Debian's signed shim and GRUB and the
//! signed kernel (`image.secure-boot = "auto"` with the packages installed),
//! and the rescue system says Secure Boot is on; an unsigned image is refused
//! by the same firmware (the negative control); an image signed with an own
//! key boots under firmware that trusts only that key (snakeoil); `require`
//! refuses a kernel without a signature.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

mod image_common;

use image_common::*;

/// The shared image of this binary (iso, pxe, raw) must carry the distribution's chain.
fn signed_image() -> &'static Built {
    require("sbsign", "sbsigntool");
    for f in [rescue::image::efi::SHIM_SIGNED, rescue::image::efi::GRUB_MEDIA_SIGNED, rescue::image::efi::GRUB_NET_SIGNED] {
        assert!(Path::new(f).is_file(), "{f} missing: apt-get install shim-signed grub-efi-amd64-signed (scripts/install-deps.sh)");
    }
    let b = build_shared();
    assert!(b.summary.contains("UEFI boot chain: distribution"), "the image is not on the signed chain:\n{}", b.summary);
    b
}

/// Build an ISO with extra `[image]` keys; returns (output dir, mkrescue's output).
fn build_iso(name: &str, image_keys: &str) -> (PathBuf, std::process::Output) {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("secure-boot-{name}"));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let config = base.join("rescue.toml");
    std::fs::write(&config, format!("[image]\ntimeout = 1\nkernel-cmdline = \"{TEST_CMDLINE}\"\n{image_keys}")).unwrap();
    let out = mkrescue_cmd(&config, &kernel_dir(), &base.join("out"), "iso").output().unwrap();
    (base.join("out"), out)
}

fn assert_secure_boot_on(console: &str, what: &str) {
    assert_rescue_booted(console, what);
    assert!(console.contains("RESCUE-SECUREBOOT on"), "{what}: the rescue system does not report Secure Boot on:\n{}", console_tail(console, 3000));
}

#[test]
fn iso_boots_under_enforcing_secure_boot() {
    let b = signed_image();
    let iso = b.dir.join("rescue-imgtest.iso");
    let c = boot(Firmware::SecureBootMs, &["-cdrom", iso.to_str().unwrap()], 600);
    assert_secure_boot_on(&c, "ISO + Secure Boot");
}

/// The raw image is what `output = ["usb"]` writes to the stick's boot partition.
#[test]
fn usb_disk_image_boots_under_enforcing_secure_boot() {
    let b = signed_image();
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw.img");
    std::fs::copy(b.dir.join("rescue-imgtest.raw"), &raw).unwrap();
    let c = boot(Firmware::SecureBootMs, &["-drive", &format!("file={},format=raw,if=virtio", raw.display())], 600);
    assert_secure_boot_on(&c, "USB/raw + Secure Boot");
}

/// UEFI network boot: shim as the DHCP boot file, the signed network GRUB
/// beside it, both over qemu's TFTP.
#[test]
fn pxe_boots_uefi_clients_under_enforcing_secure_boot() {
    let b = signed_image();
    let pxe = b.dir.join("rescue-imgtest-pxe");
    for f in ["bootx64.efi", "grubx64.efi"] {
        assert!(pxe.join(f).is_file(), "{f} missing from {}", pxe.display());
    }
    // The firmware's own PXE client, as on a server: qemu's iPXE option ROM
    // (romfile) hands shim a PXE protocol that shim cannot fetch GRUB through
    // ("Malformed binary after Attribute Certificate Table").
    let netdev = format!("user,id=n0,tftp={},bootfile=bootx64.efi", pxe.display());
    let c = boot_with_nic(Firmware::SecureBootMs, "none", &["-netdev", &netdev, "-device", "virtio-net-pci,netdev=n0,romfile=", "-boot", "n"], 900);
    assert_secure_boot_on(&c, "UEFI PXE + Secure Boot");
}

/// The negative control: the same firmware refuses unsigned GRUB, so the
/// tests above prove the signatures, not a firmware that lets anything run.
#[test]
fn an_unsigned_image_is_refused_by_enforcing_firmware() {
    let (dir, out) = build_iso("off", "secure-boot = \"off\"\n");
    assert!(out.status.success(), "mkrescue failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("UEFI boot chain: unsigned"), "{}", String::from_utf8_lossy(&out.stdout));
    let iso = dir.join("rescue-imgtest.iso");
    let c = boot(Firmware::SecureBootMs, &["-cdrom", iso.to_str().unwrap()], 300);
    assert!(!c.contains("RESCUE-INIT"), "an unsigned image booted under enforcing Secure Boot:\n{}", console_tail(&c, 3000));
    assert!(c.contains("Access Denied"), "no refusal from the firmware:\n{}", console_tail(&c, 3000));
}

/// An organisation's own db key (here the snakeoil key the firmware trusts):
/// shim, GRUB and the kernel are signed with it; the key stays out of the image.
#[test]
fn own_key_image_boots_under_firmware_that_trusts_only_that_key() {
    require("openssl", "openssl");
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("db.key");
    // The snakeoil key ships encrypted (passphrase "snakeoil", README.Debian of ovmf).
    let st =
        Command::new("openssl").args(["pkey", "-in", "/usr/share/ovmf/PkKek-1-snakeoil.key", "-passin", "pass:snakeoil", "-out"]).arg(&key).status().unwrap();
    assert!(st.success(), "openssl could not decrypt the snakeoil key (apt-get install ovmf openssl)");
    let keys_toml = format!("signing-key = \"{}\"\nsigning-cert = \"/usr/share/ovmf/PkKek-1-snakeoil.pem\"\n", key.display());
    let (dir, out) = build_iso("own-key", &keys_toml);
    assert!(out.status.success(), "mkrescue failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("UEFI boot chain: own-key"), "{}", String::from_utf8_lossy(&out.stdout));
    // The private key is in no output file (the ISO holds the initramfs, compressed, so check that unpacked too).
    let secret = std::fs::read_to_string(&key).unwrap();
    let body: String = secret.lines().filter(|l| !l.starts_with("-----")).collect();
    let needle = &body.as_bytes()[200..248];
    let iso = dir.join("rescue-imgtest.iso");
    let data = std::fs::read(&iso).unwrap();
    assert!(!data.windows(needle.len()).any(|w| w == needle), "the signing key is in the ISO");
    let root = tempfile::tempdir().unwrap();
    let st = Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(&iso)
        .args(["-extract", "/boot/initrd.img"])
        .arg(root.path().join("initrd.img"))
        .output()
        .unwrap();
    assert!(st.status.success(), "xorriso -extract: {}", String::from_utf8_lossy(&st.stderr));
    let tree = extract_initrd(&root.path().join("initrd.img"));
    for f in walk(tree.path()) {
        let d = std::fs::read(&f).unwrap_or_default();
        assert!(!d.windows(needle.len()).any(|w| w == needle), "the signing key is in the image at {}", f.display());
    }
    let c = boot(Firmware::SecureBootSnakeoil, &["-cdrom", iso.to_str().unwrap()], 600);
    assert_secure_boot_on(&c, "own-key ISO + snakeoil Secure Boot");
}

/// `require` refuses a kernel that carries no signature, before building, with exit 3.
#[test]
fn require_refuses_an_unsigned_kernel() {
    require("sbattach", "sbsigntool");
    let k = kernel_dir();
    let dir = tempfile::tempdir().unwrap();
    let unsigned = dir.path().join("vmlinuz");
    std::fs::copy(&k.0, &unsigned).unwrap();
    let st = Command::new("sbattach").arg("--remove").arg(&unsigned).output().unwrap();
    assert!(st.status.success(), "sbattach --remove: {}", String::from_utf8_lossy(&st.stderr));
    assert!(!rescue::image::efi::pe_is_signed(&unsigned).unwrap() && rescue::image::efi::pe_is_signed(&k.0).unwrap());
    let config = dir.path().join("rescue.toml");
    std::fs::write(&config, "[image]\nsecure-boot = \"require\"\n").unwrap();
    let out = mkrescue_cmd(&config, &(unsigned.clone(), k.1.clone()), &dir.path().join("out"), "iso").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("require") && err.contains("no Secure Boot signature"), "{err}");
    // auto builds it, unsigned, and says why.
    std::fs::write(&config, "[image]\nsecure-boot = \"auto\"\n").unwrap();
    let out = mkrescue_cmd(&config, &(unsigned, k.1.clone()), &dir.path().join("out"), "iso").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("UEFI boot chain: unsigned") && all.contains("no Secure Boot signature"), "{all}");
}

/// The modules in the initramfs are the distribution's signed files, which a
/// locked-down kernel (Secure Boot) loads.
#[test]
fn initramfs_modules_keep_their_signatures() {
    let b = signed_image();
    let root = extract_initrd(&b.dir.join("rescue-imgtest-pxe/initrd.img"));
    let modules: Vec<_> = walk(root.path()).into_iter().filter(|p| p.extension().is_some_and(|e| e == "ko")).collect();
    assert!(modules.len() > 10, "few modules in the initramfs: {}", modules.len());
    for m in modules {
        let d = std::fs::read(&m).unwrap();
        assert!(d.ends_with(b"~Module signature appended~\n"), "{} lost its signature", m.display());
    }
}
