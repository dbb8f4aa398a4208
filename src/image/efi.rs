//! The UEFI loaders of the rescue media and which chain of trust they carry.
//!
//! Every UEFI output (the ISO's El Torito image, the USB/raw disk's boot
//! partition, the PXE directory) gets its loaders from [`prepare`], so the
//! choice between the distribution's signed chain, an organisation's own key
//! and unsigned GRUB is made once, by `image.secure-boot`:
//!
//! - **distribution**: Debian's `shimx64.efi.signed` (signed by Microsoft's
//!   UEFI CA) as `BOOTX64.EFI`, which starts Debian's signed monolithic GRUB
//!   (`gcdx64.efi.signed` for media, `grubnetx64.efi.signed` for the network)
//!   as `grubx64.efi` beside it, which boots the distribution's signed kernel
//!   through shim's verifier. Signed GRUB cannot carry our embedded config: it
//!   reads `/boot/grub/grub.cfg` of the medium it came from, or of the
//!   filesystem that has `/.disk/info`, or `grub.cfg` beside itself (network).
//! - **own key**: the same chain with Debian's unsigned shim (whose vendor
//!   certificate still trusts Debian's GRUB and kernel) signed by the
//!   organisation's db key with `sbsign`, and GRUB and the kernel signed with
//!   it as well. The key stays on the host: only signed files go into the image.
//! - **unsigned**: GRUB built by `grub-mkimage` with an embedded config, as
//!   before; firmware that enforces Secure Boot refuses it.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::config::{ImageConfig, SecureBoot};
use crate::cmd::Cmd;

/// Debian's shim, signed by Microsoft's UEFI CA (package shim-signed).
pub const SHIM_SIGNED: &str = "/usr/lib/shim/shimx64.efi.signed";
/// shim's MOK manager, signed (package shim-helpers-amd64-signed, pulled in by shim-signed).
pub const MM_SIGNED: &str = "/usr/lib/shim/mmx64.efi.signed";
/// Debian's shim and MOK manager, unsigned (package shim-unsigned), for signing with an own key.
pub const SHIM_UNSIGNED: &str = "/usr/lib/shim/shimx64.efi";
pub const MM_UNSIGNED: &str = "/usr/lib/shim/mmx64.efi";
/// Debian's signed GRUB for removable media and for network boot (package grub-efi-amd64-signed).
pub const GRUB_MEDIA_SIGNED: &str = "/usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed";
pub const GRUB_NET_SIGNED: &str = "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed";
/// The Debian packages of the signed chain, for messages.
pub const SIGNED_CHAIN_PACKAGES: &str = "shim-signed grub-efi-amd64-signed";

/// The chain of trust an image's UEFI loaders carry (in the manifest and `rescue dump`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Chain {
    /// shim and GRUB signed by the distribution, the distribution's signed kernel.
    Distribution,
    /// shim, GRUB and the kernel signed with `image.signing-key`.
    OwnKey,
    /// GRUB built by grub-mkimage, signed by no one: Secure Boot must be off.
    #[default]
    Unsigned,
}

impl std::fmt::Display for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Chain::Distribution => "distribution (Debian's signed shim and GRUB, signed kernel)",
            Chain::OwnKey => "own-key (shim, GRUB and kernel signed with image.signing-key)",
            Chain::Unsigned => "unsigned (GRUB from grub-mkimage; boots only with Secure Boot off)",
        })
    }
}

/// Where the loaders go: a disk-like medium (ISO, USB, raw), whose GRUB finds
/// the filesystem holding the file `marker`, or the network (PXE), whose GRUB
/// reads `grub.cfg` from the directory it was loaded from.
pub enum Medium<'a> {
    Disk { marker: &'a str },
    Network,
}

/// The UEFI boot files of one output.
#[derive(Debug)]
pub struct EfiBoot {
    pub chain: Chain,
    /// The file the firmware starts (`BOOTX64.EFI` on media, the DHCP boot file for PXE).
    pub first: PathBuf,
    /// Files that must sit beside it, by name (`grubx64.efi` that shim starts, `mmx64.efi`).
    pub beside: Vec<(&'static str, PathBuf)>,
    /// The kernel the menus boot: the given one, or a copy signed with the own key.
    pub kernel: PathBuf,
    /// Why the chain is not the signed one, for the manifest's warnings.
    pub warning: Option<String>,
}

/// Which chain `cfg` gives with this host's files and this kernel, without
/// building anything (for `rescue dump` and [`prepare`]). Errors only for
/// `secure-boot = "require"` when no signed chain can be made.
pub fn choose(cfg: &ImageConfig, kernel: &Path) -> Result<(Chain, Option<String>)> {
    if cfg.secure_boot == SecureBoot::Off {
        return Ok((Chain::Unsigned, None));
    }
    let missing = |files: &[&str]| files.iter().filter(|f| !Path::new(f).is_file()).map(|f| f.to_string()).collect::<Vec<_>>();
    if cfg.signing_key.is_some() || cfg.signing_cert.is_some() {
        let (Some(key), Some(cert)) = (&cfg.signing_key, &cfg.signing_cert) else {
            return Err(crate::error::input_error("image.signing-key and image.signing-cert go together: set both (PEM files), or neither"));
        };
        for f in [key, cert] {
            if !f.is_file() {
                return Err(crate::error::input_error(format!("{} (image.signing-key/-cert) does not exist", f.display())));
            }
        }
        let gone = missing(&[SHIM_UNSIGNED, MM_UNSIGNED, GRUB_MEDIA_SIGNED, GRUB_NET_SIGNED]);
        if !gone.is_empty() {
            anyhow::bail!("signing the rescue media with image.signing-key needs {}: apt-get install shim-unsigned grub-efi-amd64-signed", gone.join(", "));
        }
        if crate::cmd::find_program("sbsign").is_none() {
            anyhow::bail!("image.signing-key is set but sbsign is not installed: apt-get install sbsigntool");
        }
        return Ok((Chain::OwnKey, None));
    }
    let gone = missing(&[SHIM_SIGNED, MM_SIGNED, GRUB_MEDIA_SIGNED, GRUB_NET_SIGNED]);
    let signed_kernel = pe_is_signed(kernel).with_context(|| format!("reading the kernel {}", kernel.display()))?;
    let why = if !gone.is_empty() {
        Some(format!("the distribution's signed boot chain is not installed ({} missing): apt-get install {SIGNED_CHAIN_PACKAGES}", gone.join(", ")))
    } else if !signed_kernel {
        Some(format!("the kernel {} carries no Secure Boot signature, so the signed chain could not boot it", kernel.display()))
    } else {
        None
    };
    match (why, cfg.secure_boot) {
        (None, _) => Ok((Chain::Distribution, None)),
        (Some(why), SecureBoot::Require) => {
            anyhow::bail!("image.secure-boot = \"require\", but {why}; or set image.signing-key and image.signing-cert to sign with your own key")
        }
        (Some(why), _) => Ok((Chain::Unsigned, Some(format!("the UEFI loaders are unsigned and will not boot with Secure Boot enforced: {why}")))),
    }
}

/// Make the UEFI loaders for one output in `work` (see the module doc).
pub fn prepare(cfg: &ImageConfig, kernel: &Path, medium: Medium<'_>, work: &Path) -> Result<EfiBoot> {
    let (chain, warning) = choose(cfg, kernel)?;
    let grub_signed = match medium {
        Medium::Disk { .. } => GRUB_MEDIA_SIGNED,
        Medium::Network => GRUB_NET_SIGNED,
    };
    let dir = work.join(match medium {
        Medium::Disk { .. } => "efi-disk",
        Medium::Network => "efi-net",
    });
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let boot =
        match chain {
            Chain::Unsigned => {
                let first = dir.join("BOOTX64.EFI");
                match medium {
                    Medium::Disk { marker } => super::boot::grub_efi(&first, marker, &dir)?,
                    Medium::Network => super::boot::grub_efi_net(&first, &dir)?,
                }
                EfiBoot { chain, first, beside: Vec::new(), kernel: kernel.to_path_buf(), warning }
            }
            Chain::Distribution => EfiBoot {
                chain,
                first: SHIM_SIGNED.into(),
                beside: vec![("grubx64.efi", grub_signed.into()), ("mmx64.efi", MM_SIGNED.into())],
                kernel: kernel.to_path_buf(),
                warning,
            },
            Chain::OwnKey => {
                let (Some(key), Some(cert)) = (&cfg.signing_key, &cfg.signing_cert) else {
                    anyhow::bail!("own-key chain without image.signing-key and image.signing-cert");
                };
                let sign =
                    |src: &Path, name: &str| -> Result<PathBuf> {
                        let out = dir.join(name);
                        Cmd::new("sbsign").arg("--key").arg(key).arg("--cert").arg(cert).arg("--output").arg(&out).arg(src).run().with_context(|| {
                            format!("signing {} with {} (image.signing-key; an unencrypted PEM key is needed)", src.display(), key.display())
                        })?;
                        Ok(out)
                    };
                EfiBoot {
                    chain,
                    first: sign(Path::new(SHIM_UNSIGNED), "shimx64.efi")?,
                    beside: vec![("grubx64.efi", sign(Path::new(grub_signed), "grubx64.efi")?), ("mmx64.efi", sign(Path::new(MM_UNSIGNED), "mmx64.efi")?)],
                    kernel: sign(kernel, "vmlinuz")?,
                    warning,
                }
            }
        };
    Ok(boot)
}

/// Whether a PE/COFF file (an EFI binary, a kernel with an EFI stub) carries
/// an Authenticode signature: its certificate table (data directory 4) is
/// not empty. Not a verification: the firmware and shim do that.
pub fn pe_is_signed(path: &Path) -> Result<bool> {
    let mut head = Vec::with_capacity(4096);
    std::fs::File::open(path)?.take(4096).read_to_end(&mut head)?;
    let u16_at = |o: usize| head.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| head.get(o..o + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    if head.get(..2) != Some(b"MZ") {
        return Ok(false);
    }
    let Some(pe) = u32_at(0x3c).map(|v| v as usize) else { return Ok(false) };
    if head.get(pe..pe + 4) != Some(b"PE\0\0") {
        return Ok(false);
    }
    let opt = pe + 24;
    // PE32+ (0x20b) and PE32 (0x10b) differ in where the data directories start.
    let (count_at, dirs_at) = match u16_at(opt) {
        Some(0x20b) => (opt + 108, opt + 112),
        Some(0x10b) => (opt + 92, opt + 96),
        _ => return Ok(false),
    };
    if u32_at(count_at).unwrap_or(0) < 5 {
        return Ok(false);
    }
    Ok(u32_at(dirs_at + 4 * 8 + 4).unwrap_or(0) > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PE32+ header with the certificate table's size set to `cert_size`.
    fn pe(cert_size: u32) -> Vec<u8> {
        let mut v = vec![0u8; 512];
        v[..2].copy_from_slice(b"MZ");
        v[0x3c..0x40].copy_from_slice(&64u32.to_le_bytes());
        v[64..68].copy_from_slice(b"PE\0\0");
        let opt = 64 + 24;
        v[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        v[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
        let cert = opt + 112 + 32;
        v[cert..cert + 4].copy_from_slice(&0x1000u32.to_le_bytes());
        v[cert + 4..cert + 8].copy_from_slice(&cert_size.to_le_bytes());
        v
    }

    #[test]
    fn a_signature_is_a_non_empty_certificate_table() {
        let d = tempfile::tempdir().unwrap();
        for (size, signed) in [(0, false), (1200, true)] {
            let f = d.path().join(format!("pe-{size}"));
            std::fs::write(&f, pe(size)).unwrap();
            assert_eq!(pe_is_signed(&f).unwrap(), signed, "cert size {size}");
        }
        let f = d.path().join("elf");
        std::fs::write(&f, b"\x7fELF and more").unwrap();
        assert!(!pe_is_signed(&f).unwrap());
        let mut short = pe(1200);
        short.truncate(100);
        std::fs::write(&f, short).unwrap();
        assert!(!pe_is_signed(&f).unwrap(), "a cut header is not signed (and no panic)");
    }

    #[test]
    fn off_is_unsigned_and_a_key_needs_its_cert() {
        let k = Path::new("/nonexistent/vmlinuz");
        let off = ImageConfig { secure_boot: SecureBoot::Off, ..Default::default() };
        assert_eq!(choose(&off, k).unwrap().0, Chain::Unsigned);
        let half = ImageConfig { signing_key: Some("/etc/key.pem".into()), ..Default::default() };
        let e = format!("{:#}", choose(&half, k).unwrap_err());
        assert!(e.contains("go together"), "{e}");
    }
}
