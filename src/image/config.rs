//! The `[image]` section of the config file: what `rescue mkrescue` builds
//! and where it puts it. Every key is documented in docs/image.md.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ImageConfig {
    /// What to produce: any of `iso`, `pxe`, `usb`, `raw`.
    pub output: Vec<OutputKind>,
    /// Where the outputs go: `file:///DIR` or a plain directory path.
    pub output_url: String,
    /// Kernel to boot; absent: `/boot/vmlinuz-$(uname -r)`.
    pub kernel: Option<PathBuf>,
    /// Module directory of that kernel; absent: `/lib/modules/$(uname -r)`.
    pub modules_dir: Option<PathBuf>,
    /// Where firmware files named by the modules are looked up.
    pub firmware_dir: PathBuf,
    /// `needed` (layout + dissimilar hardware + loaded modules) or `all`.
    pub modules: ModulesPolicy,
    /// More module names (or aliases) to include and load at boot.
    pub extra_modules: Vec<String>,
    /// More programs (names looked up in PATH, or absolute paths) to include with their libraries.
    pub extra_programs: Vec<String>,
    /// More host files or directories to copy into the image at the same path.
    pub extra_files: Vec<PathBuf>,
    /// Seconds the boot menu waits before starting the default entry.
    pub timeout: u32,
    /// The boot menu entry started after the timeout.
    pub default_entry: BootEntry,
    /// Extra kernel command line for every boot entry (e.g. `rescue.after=poweroff`).
    pub kernel_cmdline: String,
    /// What an unattended recovery does when it succeeds.
    pub after_recover: AfterRecover,
    /// Network in the rescue system.
    pub network: NetworkMode,
    /// Static addresses (network = "static"); `mkrescue --static-net` records the host's.
    pub static_net: Vec<StaticNet>,
    /// Public keys allowed to log in as root over SSH; sshd starts only when this is set.
    pub ssh_authorized_keys: Vec<String>,
    /// zstd level for the initramfs (1-19).
    pub compression_level: i32,
    /// Size in MiB of the boot partition `rescue format --usb` creates.
    pub usb_boot_size_mib: u64,
    /// The USB disk `output = ["usb"]` writes to; absent: the disk holding the partition labelled RESCUEBOOT.
    pub usb_device: Option<PathBuf>,
    /// Let files that look like secrets (private keys, shadow) into the image.
    pub include_secrets: bool,
    /// Which UEFI boot chain the media carry: the distribution's signed one
    /// when present (`auto`), only that (`require`), or unsigned GRUB (`off`).
    pub secure_boot: SecureBoot,
    /// An own db key (unencrypted PEM) and its certificate: shim, GRUB and the
    /// kernel of the media are signed with them by `sbsign`. The key never
    /// goes into the image.
    pub signing_key: Option<PathBuf>,
    pub signing_cert: Option<PathBuf>,
}

impl Default for ImageConfig {
    fn default() -> Self {
        Self {
            output: vec![OutputKind::Iso],
            output_url: "file:///var/lib/rescue/output".into(),
            kernel: None,
            modules_dir: None,
            firmware_dir: "/lib/firmware".into(),
            modules: ModulesPolicy::Needed,
            extra_modules: Vec::new(),
            extra_programs: Vec::new(),
            extra_files: Vec::new(),
            timeout: 10,
            default_entry: BootEntry::Recover,
            kernel_cmdline: String::new(),
            after_recover: AfterRecover::Poweroff,
            network: NetworkMode::Dhcp,
            static_net: Vec::new(),
            ssh_authorized_keys: Vec::new(),
            compression_level: 9,
            usb_boot_size_mib: 1024,
            usb_device: None,
            include_secrets: false,
            secure_boot: SecureBoot::Auto,
            signing_key: None,
            signing_cert: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum OutputKind {
    Iso,
    Pxe,
    Usb,
    Raw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecureBoot {
    /// The distribution's signed chain when the host has it, else unsigned with a warning.
    Auto,
    /// Refuse to build without a signed chain (exit 3).
    Require,
    /// Unsigned GRUB: the media boot only with Secure Boot off.
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModulesPolicy {
    Needed,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootEntry {
    /// The rescue system with a shell and a banner.
    Recover,
    /// The rescue system running `rescue recover --unattended`.
    Unattended,
    /// Boot the machine's first local disk.
    Local,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AfterRecover {
    Poweroff,
    Reboot,
    Shell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkMode {
    Dhcp,
    Static,
    /// The descriptor's `[network]`: bonds, VLANs, bridges, static addresses
    /// and routes on the interfaces whose MACs are found; DHCP on the others.
    Recorded,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StaticNet {
    /// MAC address of the interface (names may differ in the rescue system).
    pub mac: String,
    /// Address with prefix length, `192.0.2.10/24`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    use super::*;

    #[test]
    fn image_section_parses() {
        let c = Config::from_toml(
            r#"
            [image]
            output = ["iso", "pxe"]
            output-url = "/srv/rescue"
            kernel = "/k/vmlinuz"
            modules = "all"
            timeout = 3
            default-entry = "unattended"
            after-recover = "reboot"
            network = "static"
            static-net = [{ mac = "52:54:00:12:34:56", address = "192.0.2.10/24", gateway = "192.0.2.1" }]
            "#,
        )
        .unwrap();
        assert_eq!(c.image.output, vec![OutputKind::Iso, OutputKind::Pxe]);
        assert_eq!(c.image.modules, ModulesPolicy::All);
        assert_eq!(c.image.default_entry, BootEntry::Unattended);
        assert_eq!(c.image.static_net[0].gateway.as_deref(), Some("192.0.2.1"));
        assert!(Config::from_toml("[image]\noutput = [\"floppy\"]\n").is_err());
    }
}
