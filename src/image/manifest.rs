//! What went into a rescue image, written next to it as JSON
//! (`rescue-HOST.manifest.json`) and shown by `rescue mkrescue --manifest`
//! and `rescue dump`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct Manifest {
    pub created: String,
    pub rescue_version: String,
    pub hostname: String,
    pub kernel: String,
    pub kernel_version: String,
    pub layout: String,
    pub initrd_bytes: u64,
    /// Uncompressed size of the files in the initramfs.
    pub content_bytes: u64,
    pub build_seconds: f64,
    pub outputs: Vec<OutputFile>,
    /// The chain of trust of the UEFI loaders (image.secure-boot).
    pub secure_boot: super::efi::Chain,
    pub programs: Vec<String>,
    /// Useful programs not installed on the host (the image works without them).
    pub programs_missing: Vec<String>,
    pub libraries: Vec<String>,
    pub busybox_applets: usize,
    pub modules: Vec<String>,
    /// Module names asked for that this kernel does not have.
    pub modules_unknown: Vec<String>,
    pub firmware: Vec<String>,
    /// Firmware named by the modules but not present on the host.
    pub firmware_missing: Vec<String>,
    /// Config keys left out of the image's config because they are secrets.
    pub config_removed: Vec<String>,
    /// Secret-looking files that went in because `include-secrets = true`.
    pub secrets_included: Vec<String>,
    pub warnings: Vec<String>,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct OutputFile {
    /// iso, pxe, usb, raw, initrd.
    pub kind: String,
    pub path: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FileEntry {
    pub path: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

impl Manifest {
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        crate::util::write_atomic(path, text.as_bytes(), 0o600)
    }

    pub fn load(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading the image manifest {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing the image manifest {}", path.display()))
    }

    /// A few lines for a person: what the image is and what went in.
    pub fn summary(&self) -> String {
        use crate::util::human_bytes;
        let mut s = String::new();
        s += &format!("rescue image of {} built {} by rescue {}\n", self.hostname, self.created, self.rescue_version);
        s += &format!("  kernel {} ({})\n", self.kernel_version, self.kernel);
        s += &format!("  descriptor {}\n", self.layout);
        s += &format!("  UEFI boot chain: {}\n", self.secure_boot);
        s += &format!(
            "  initrd {} compressed, {} of files; built in {:.1} s\n",
            human_bytes(self.initrd_bytes),
            human_bytes(self.content_bytes),
            self.build_seconds
        );
        for o in &self.outputs {
            s += &format!("  {:<6} {} ({})\n", o.kind, o.path, human_bytes(o.bytes));
        }
        s += &format!("  programs ({}): {}\n", self.programs.len(), self.programs.join(" "));
        if !self.programs_missing.is_empty() {
            s += &format!("  not on this system, left out: {}\n", self.programs_missing.join(" "));
        }
        s += &format!("  libraries: {}, busybox applets: {}\n", self.libraries.len(), self.busybox_applets);
        s += &format!("  kernel modules: {}, firmware files: {}", self.modules.len(), self.firmware.len());
        if !self.firmware_missing.is_empty() {
            s += &format!(" ({} named by modules but not installed)", self.firmware_missing.len());
        }
        s += "\n";
        if self.config_removed.is_empty() {
            s += "  config: copied whole (no secrets found)\n";
        } else {
            s += &format!("  config: left out as secrets: {}\n", self.config_removed.join(", "));
        }
        if self.secrets_included.is_empty() {
            s += "  secrets in the image: none (no /etc/shadow, no private keys)\n";
        } else {
            s += &format!("  SECRETS IN THE IMAGE (include-secrets = true): {}\n", self.secrets_included.join(", "));
        }
        for w in &self.warnings {
            s += &format!("  warning: {w}\n");
        }
        s
    }
}

/// The manifest's file name for a host.
pub fn manifest_path(dir: &Path, hostname: &str) -> PathBuf {
    dir.join(format!("rescue-{hostname}.manifest.json"))
}

/// The manifest of the last image built into the configured output
/// directory for the host named in the saved descriptor, if any.
pub fn last_manifest(config: &crate::config::Config) -> Option<(PathBuf, Manifest)> {
    let dir = super::output_dir_from_url(&config.image.output_url).ok()?;
    let host = crate::layout::Layout::load(&config.layout_path()).ok().map(|l| l.host.hostname).filter(|h| !h.is_empty())?;
    let path = manifest_path(&dir, &host);
    Manifest::load(&path).ok().map(|m| (path, m))
}
