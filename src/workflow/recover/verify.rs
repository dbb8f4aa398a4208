//! Verify phase: every program the storage plan, the data source and
//! finalize will run is present, before anything is written. What is
//! needed comes from `needs::recovery`, the answer the rescue image was
//! built from and checked against by `mkrescue`. And when the backup's
//! content is checked ([`VerifyMode`]): in full before writing, or in the
//! restore's one pass when every target disk is blank.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::backup::Backend;
use crate::cmd::find_in_path;
use crate::config::{Config, VerifyPolicy};
use crate::layout::Layout;
use crate::needs::{self, Missing, Needs, Now};
use crate::plan::Plan;

/// When the backup's content is checked in this recovery, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum VerifyMode {
    /// The verify phase read the archive's start (and opened its
    /// encryption); every member is checked against the manifest while
    /// it is restored. A failure then destroys nothing: the disks were blank.
    OnePass { why: String },
    /// The whole backup is read and checked (phase `check`) before any
    /// disk is written.
    Full { why: String },
}

impl VerifyMode {
    pub fn one_pass(&self) -> bool {
        matches!(self, VerifyMode::OnePass { .. })
    }
}

impl fmt::Display for VerifyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyMode::OnePass { why } => write!(f, "verify: one pass, content checked while restoring ({why})"),
            VerifyMode::Full { why } => write!(f, "verify: full before writing ({why})"),
        }
    }
}

/// The verify mode for writing `disks`: one pass only when every one is
/// blank (`holds_data`, what wiping it would destroy: `apply::holds_data`),
/// unless `policy` asks for the full read. `verify_archive` off
/// (`recover.verify-archive = false`) never reads the backup twice.
pub fn mode(disks: &[&Path], policy: VerifyPolicy, verify_archive: bool, holds_data: impl Fn(&Path) -> Result<Option<String>>) -> VerifyMode {
    if !verify_archive {
        return VerifyMode::OnePass { why: "recover.verify-archive = false".into() };
    }
    if policy == VerifyPolicy::Full {
        return VerifyMode::Full { why: "recover.verify = full".into() };
    }
    for d in disks {
        match holds_data(d) {
            Ok(None) => {}
            Ok(Some(what)) => return VerifyMode::Full { why: format!("{} {what}", d.display()) },
            Err(e) => return VerifyMode::Full { why: format!("{} could not be read to see whether it is blank: {e:#}", d.display()) },
        }
    }
    VerifyMode::OnePass { why: "all target disks are blank".into() }
}

/// What recovering `layout` from `source` needs.
pub fn needs_of(layout: &Layout, config: &Config, source: &dyn Backend) -> Needs {
    needs::recovery(layout, &config.image, source.rescue_needs())
}

/// Fail, naming each missing program, its Debian package and why it is
/// needed, when one that recovery runs here is not in `PATH`. Returns how
/// many were checked.
pub fn check_tools(needs: &Needs) -> Result<usize> {
    let now = Now { udev: crate::apply::udev_running(), uefi: Path::new("/sys/firmware/efi").exists(), active: BTreeSet::new() };
    let found = |p: &str| find_in_path(p).is_some();
    require(&needs.missing_for_recover(&now, found))?;
    Ok(needs.programs.iter().filter(|p| p.runs == needs::Runs::Recover && now.holds(p.when)).count())
}

/// Plan phase: the programs wiping the mapped disks runs for what is active
/// on them now (old swap, LVM/LUKS, MD arrays the rescue system started).
pub fn check_wipe_tools(plan: &Plan) -> Result<()> {
    let active: Vec<_> = plan.target_disks().iter().flat_map(|d| crate::apply::active_holders(d)).collect();
    let now = Now { active: active.iter().map(|a| a.0).collect(), ..Now::default() };
    require(&needs::for_active(&active).missing_for_recover(&now, |p| find_in_path(p).is_some()))
}

/// What the recovered system must hold to install its bootloader (the
/// steps finalize always runs), checked in the backup's file list `has`
/// (paths relative to the recovered root) before anything is written.
pub fn check_target(needs: &Needs, layout: &Layout, has: impl Fn(&str) -> bool) -> Result<()> {
    let missing = needs.missing_for_steps(&Needs::certain_steps(layout), has);
    if !missing.is_empty() {
        crate::bail_input!(
            "the backup does not hold what installing the bootloader needs in the recovered system: {}. Nothing was written. \
             Install the package(s) on the source system and make a new backup, or recover with --layout-only and install \
             the bootloader by hand",
            missing.iter().map(|(_, m)| m.to_string()).collect::<Vec<_>>().join("; ")
        );
    }
    Ok(())
}

fn require(missing: &[Missing]) -> Result<()> {
    if !missing.is_empty() {
        anyhow::bail!(
            "programs recovery needs are not installed here: {}. Nothing was written. Install them in this system, \
             or install them on the source system and make a new rescue image (`rescue mkrescue`)",
            missing.iter().map(|m| m.to_string()).collect::<Vec<_>>().join("; ")
        );
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_only_when_every_target_disk_is_blank() {
        let (a, b) = (Path::new("/dev/sdy"), Path::new("/dev/sdz"));
        let blank = |_: &Path| Ok(None);
        let m = mode(&[a, b], VerifyPolicy::Auto, true, blank);
        assert!(m.one_pass() && m.to_string() == "verify: one pass, content checked while restoring (all target disks are blank)", "{m}");
        let b_holds = |d: &Path| Ok((d == b).then(|| "holds a partition table or filesystem signature (gpt)".to_string()));
        let m = mode(&[a, b], VerifyPolicy::Auto, true, b_holds);
        assert_eq!(m.to_string(), "verify: full before writing (/dev/sdz holds a partition table or filesystem signature (gpt))");
        let unreadable = |_: &Path| anyhow::bail!("permission denied");
        let m = mode(&[a], VerifyPolicy::Auto, true, unreadable);
        assert!(!m.one_pass() && m.to_string().contains("could not be read") && m.to_string().contains("permission denied"), "{m}");
        assert!(!mode(&[a], VerifyPolicy::Full, true, blank).one_pass(), "recover.verify = full");
        assert!(mode(&[a], VerifyPolicy::Full, false, b_holds).one_pass(), "verify-archive = false never reads twice");
        let json = serde_json::to_value(mode(&[a], VerifyPolicy::Auto, true, blank)).unwrap();
        assert_eq!(json, serde_json::json!({ "mode": "one-pass", "why": "all target disks are blank" }));
    }

    #[test]
    fn the_source_decides_the_transport_programs() {
        let l = Layout::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts/uefi-lvm-xfs.toml")).unwrap();
        let c = Config::default();
        let names = |url: &str| {
            let source = crate::backup::open(&c.backup, Some(url)).unwrap();
            needs_of(&l, &c, source.as_ref()).programs.into_iter().map(|p| p.name).collect::<Vec<_>>()
        };
        assert!(names("nfs://nas/b").contains(&"mount.nfs".into()));
        assert!(names("cifs://nas/b/c").contains(&"mount.cifs".into()));
        assert!(names("h:/srv/b").contains(&"rsync".into()));
        let local = names("file:///b");
        assert!(!local.contains(&"mount.nfs".into()) && !local.contains(&"rsync".into()), "{local:?}");
    }

    #[test]
    fn a_backup_without_grub_stops_in_verify() {
        let l = Layout::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts/bios-gpt-ext4.toml")).unwrap();
        let c = Config::default();
        let n = needs_of(&l, &c, crate::backup::open(&c.backup, Some("file:///b")).unwrap().as_ref());
        let e = check_target(&n, &l, |p| p == "usr/sbin/grub-install").unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("/usr/lib/grub/i386-pc") && msg.contains("grub-pc-bin") && msg.contains("Nothing was written"), "{msg}");
        check_target(&n, &l, |p| ["usr/sbin/grub-install", "usr/lib/grub/i386-pc"].contains(&p)).unwrap();
    }

    #[test]
    fn the_checked_archive_lists_the_bootloader_files_of_the_recovered_root() {
        let l = Layout::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts/bios-gpt-ext4.toml")).unwrap();
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("usr/sbin")).unwrap();
        std::fs::create_dir_all(root.join("usr/lib/grub/i386-pc")).unwrap();
        std::fs::write(root.join("usr/sbin/grub-install"), "#!/bin/sh\n").unwrap();
        let file = d.path().join("dest").join(crate::backup::host_dir_name(&l)).join("backup-20261201-000000.tar.zst");
        let sources = [crate::archive::Source { path: root.clone(), name: Vec::new() }];
        crate::backup::write_archive_file(&sources, &file, &crate::archive::CreateOptions::default()).unwrap();
        let c = Config::default();
        let source = crate::backup::open(&c.backup, Some(&format!("file://{}", d.path().join("dest").display()))).unwrap();
        let needs = needs_of(&l, &c, source.as_ref());
        let opts = crate::backup::CheckOptions { verify: true, progress: false, keys: &crate::archive::age::NoIdentity, ask: None };
        let used = source.check(Some(&l), &crate::backup::Pick::default(), &opts).unwrap();
        assert!(used.verified && !used.unread, "{used:?}");
        assert_eq!(used.pick.archive.as_deref(), Some("backup-20261201-000000.tar.zst"), "the restore takes the archive checked");
        let listing = used.listing.unwrap();
        check_target(&needs, &l, |p| listing.contains(p)).unwrap();
        std::fs::remove_dir(root.join("usr/lib/grub/i386-pc")).unwrap();
        crate::backup::write_archive_file(&sources, &file, &crate::archive::CreateOptions::default()).unwrap();
        let listing = source.check(Some(&l), &crate::backup::Pick::default(), &opts).unwrap().listing.unwrap();
        let e = check_target(&needs, &l, |p| listing.contains(p)).unwrap_err();
        assert!(format!("{e:#}").contains("grub-pc-bin"), "{e:#}");
    }

    #[test]
    fn an_encrypted_backup_is_checked_with_its_identity_before_any_disk_is_touched() {
        use crate::archive::age::{EncryptConfig, NoIdentity};
        use crate::backup::{CheckOptions, Pick};
        use crate::config::LuksKeySource;
        use crate::secrets::AgeKey;
        use age::secrecy::ExposeSecret;
        let d = tempfile::tempdir().unwrap();
        let l = Layout::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts/bios-gpt-ext4.toml")).unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hostname"), "web1\n").unwrap();
        let id = age::x25519::Identity::generate();
        let encrypt = EncryptConfig { recipients: vec![id.to_public().to_string()], passphrase_file: None }.load().unwrap();
        let file = d.path().join("b").join(crate::backup::host_dir_name(&l)).join("backup-20261202-000000.tar.zst.age");
        let sources = [crate::archive::Source { path: root, name: Vec::new() }];
        crate::backup::write_archive_file(&sources, &file, &crate::archive::CreateOptions { encrypt, ..Default::default() }).unwrap();
        let key_file = d.path().join("key.txt");
        std::fs::write(&key_file, id.to_string().expose_secret()).unwrap();
        let wrong_file = d.path().join("wrong.txt");
        std::fs::write(&wrong_file, age::x25519::Identity::generate().to_string().expose_secret()).unwrap();

        let c = Config::default();
        let source = crate::backup::open(&c.backup, Some(&format!("file://{}", d.path().join("b").display()))).unwrap();
        let check = |keys: &dyn crate::archive::age::IdentitySource| {
            source.check(Some(&l), &Pick::default(), &CheckOptions { verify: true, progress: false, keys, ask: None })
        };
        let key = |p: &Path| AgeKey::new(Some(LuksKeySource::File(p.to_path_buf())), false, std::time::Duration::ZERO, 1);
        let used = check(&key(&key_file)).unwrap();
        assert!(used.verified && used.pick.archive.as_deref() == Some("backup-20261202-000000.tar.zst.age"), "{used:?}");
        assert!(used.listing.unwrap().contains("etc/hostname"));
        for (keys, says) in [
            (key(&wrong_file), "does not open"),
            (key(&d.path().join("absent")), "cannot be read"),
            (AgeKey::new(None, false, std::time::Duration::ZERO, 1), "nobody to ask"),
        ] {
            let e = check(&keys).unwrap_err();
            let m = format!("{e:#}");
            assert!(m.contains(says) && m.contains("nothing was written"), "{m}");
            assert_eq!(crate::error::exit_code_for(&e), 2, "{m}");
        }
        let e = check(&NoIdentity).unwrap_err();
        assert!(format!("{e:#}").contains("--age-identity"), "{e:#}");

        // One flipped byte in the payload: damaged, named as such.
        let mut bytes = std::fs::read(&file).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x40;
        std::fs::write(&file, bytes).unwrap();
        let e = check(&key(&key_file)).unwrap_err();
        let m = format!("{e:#}");
        assert!(m.contains("is damaged") && m.contains("fails age's authentication") && m.contains("Nothing was written"), "{m}");
    }
}
