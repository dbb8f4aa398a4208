//! The rescue image: a small Linux system (kernel + initramfs) that boots
//! on the machine to recover, and its outputs (ISO, PXE directory, USB
//! disk, raw disk image). `rescue mkrescue` calls [`make_rescue`].
//!
//! The initramfs holds only what recovery of *this* layout needs: programs
//! with their libraries found by reading ELF files ([`elf`]), the kernel
//! modules' dependency closure ([`modules`]), udev, busybox, the
//! descriptor and the config without secrets ([`initramfs`]), written as a
//! cpio archive straight from a file list ([`tree`]).

pub mod boot;
pub mod config;
pub mod disk;
pub mod efi;
pub mod elf;
pub mod initramfs;
pub mod iso;
pub mod manifest;
pub mod modules;
pub mod network;
pub mod pxe;
pub mod tree;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use self::boot::Menu;
use self::config::OutputKind;
use self::manifest::{manifest_path, Manifest, OutputFile};
use crate::config::Config;
use crate::error::input_error;
use crate::layout::Layout;

/// What to build and where; defaults come from the config, flags override.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub kernel: PathBuf,
    pub modules_dir: PathBuf,
    pub layout_path: PathBuf,
    pub outputs: Vec<OutputKind>,
    pub output_dir: PathBuf,
    /// Disk for `usb` output.
    pub usb_device: Option<PathBuf>,
    /// The `rescue` executable to put into the image.
    pub rescue_binary: PathBuf,
}

/// `file:///DIR` or `/DIR` -> `/DIR`. Other schemes are not written by us.
pub fn output_dir_from_url(url: &str) -> Result<PathBuf> {
    if let Some(p) = url.strip_prefix("file://") {
        return Ok(PathBuf::from(p));
    }
    if url.starts_with('/') {
        return Ok(PathBuf::from(url));
    }
    Err(input_error(format!(
        "output-url = \"{url}\" is not supported: use file:///DIRECTORY (a local directory or a mounted share) \
         and copy the files from there with the tool of your choice"
    )))
}

/// The file names of the outputs for a host.
pub fn output_paths(dir: &Path, hostname: &str) -> (PathBuf, PathBuf, PathBuf) {
    (dir.join(format!("rescue-{hostname}.iso")), dir.join(format!("rescue-{hostname}-pxe")), dir.join(format!("rescue-{hostname}.raw")))
}

/// Build the rescue system and every requested output.
pub fn make_rescue(config: &Config, opts: &BuildOptions) -> Result<Manifest> {
    let started = Instant::now();
    let layout = Layout::load(&opts.layout_path).map_err(|e| {
        if !opts.layout_path.exists() {
            input_error(format!("there is no layout descriptor at {}: run `rescue savelayout` first, or pass --layout FILE", opts.layout_path.display()))
        } else {
            e
        }
    })?;
    if !opts.kernel.is_file() {
        return Err(input_error(format!(
            "the kernel {} does not exist: set `kernel` and `modules-dir` in the [image] section of the config, \
             or pass --kernel FILE --modules-dir DIR",
            opts.kernel.display()
        )));
    }
    if opts.outputs.is_empty() {
        return Err(input_error("no output requested: set output = [\"iso\"] (or pxe, usb, raw) in [image], or pass --output"));
    }
    if opts.outputs.contains(&OutputKind::Usb) && opts.usb_device.is_none() {
        return Err(input_error(
            "output \"usb\" needs the USB disk: pass --usb /dev/sdX or set usb-device in [image] \
             (prepare the disk once with `rescue format --usb /dev/sdX`)",
        ));
    }
    std::fs::create_dir_all(&opts.output_dir).with_context(|| format!("creating the output directory {}", opts.output_dir.display()))?;
    let work = tempfile::Builder::new()
        .prefix(".rescue-build-")
        .tempdir_in(&opts.output_dir)
        .with_context(|| format!("creating a work directory in {}", opts.output_dir.display()))?;
    let hostname = if layout.host.hostname.is_empty() { "unknown".to_string() } else { layout.host.hostname.clone() };
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();

    let mut manifest = Manifest {
        created: crate::util::now_rfc3339(),
        rescue_version: env!("CARGO_PKG_VERSION").into(),
        hostname: hostname.clone(),
        kernel: opts.kernel.display().to_string(),
        layout: opts.layout_path.display().to_string(),
        ..Default::default()
    };
    let initrd = work.path().join("initrd.img");
    let inputs = initramfs::Inputs {
        config,
        layout: &layout,
        layout_path: opts.layout_path.clone(),
        modules_dir: opts.modules_dir.clone(),
        rescue_binary: opts.rescue_binary.clone(),
    };
    initramfs::build(&inputs, &initrd, &mut manifest)?;
    manifest.initrd_bytes = std::fs::metadata(&initrd)?.len();
    tracing::info!("initramfs: {} ({} files)", crate::util::human_bytes(manifest.initrd_bytes), manifest.files.len());

    // The UEFI loaders: one set for disk-like media, found by this image's marker, one for PXE.
    let marker = format!("/boot/rescue-{id}");
    let disk_like = opts.outputs.iter().any(|o| matches!(o, OutputKind::Iso | OutputKind::Raw | OutputKind::Usb));
    let disk_efi = if disk_like { Some(efi::prepare(&config.image, &opts.kernel, efi::Medium::Disk { marker: &marker }, work.path())?) } else { None };
    let net_efi =
        if opts.outputs.contains(&OutputKind::Pxe) { Some(efi::prepare(&config.image, &opts.kernel, efi::Medium::Network, work.path())?) } else { None };
    for e in disk_efi.iter().chain(net_efi.iter()) {
        manifest.secure_boot = e.chain;
        if let Some(w) = &e.warning {
            if !manifest.warnings.contains(w) {
                tracing::warn!("{w}");
                manifest.warnings.push(w.clone());
            }
        }
    }
    tracing::info!("UEFI boot chain: {}", manifest.secure_boot);
    let iso_extra = iso_backup_graft(config, &opts.outputs);
    let menu = Menu::from_config(&config.image, &hostname);
    let (iso_path, pxe_dir, raw_path) = output_paths(&opts.output_dir, &hostname);
    let mut outputs = opts.outputs.clone();
    outputs.sort();
    outputs.dedup();
    for kind in outputs {
        match kind {
            OutputKind::Iso => {
                let efi = disk_efi.as_ref().context("UEFI loaders for the ISO")?;
                iso::write_iso(efi, &initrd, &menu, &marker, work.path(), &iso_path, &iso_extra)?;
                manifest.outputs.push(OutputFile { kind: "iso".into(), path: iso_path.display().to_string(), bytes: std::fs::metadata(&iso_path)?.len() });
            }
            OutputKind::Pxe => {
                let efi = net_efi.as_ref().context("UEFI loaders for PXE")?;
                if let Some(w) = pxe::write_pxe(efi, &initrd, &menu, &pxe_dir)? {
                    tracing::warn!("{w}");
                    manifest.warnings.push(w);
                }
                let bytes = std::fs::metadata(pxe_dir.join("initrd.img"))?.len() + std::fs::metadata(pxe_dir.join("vmlinuz"))?.len();
                manifest.outputs.push(OutputFile { kind: "pxe".into(), path: pxe_dir.display().to_string(), bytes });
            }
            OutputKind::Raw => {
                let efi = disk_efi.as_ref().context("UEFI loaders for the raw image")?;
                disk::write_raw(efi, &initrd, &menu, &marker, work.path(), &raw_path)?;
                manifest.outputs.push(OutputFile { kind: "raw".into(), path: raw_path.display().to_string(), bytes: std::fs::metadata(&raw_path)?.len() });
            }
            OutputKind::Usb => {
                let dev = opts.usb_device.as_ref().context("usb device")?;
                refuse_if_mounted(dev)?;
                let bp = disk::find_boot_partition(dev)?;
                let efi = disk_efi.as_ref().context("UEFI loaders for the USB disk")?;
                disk::write_boot_partition(&bp, efi, &initrd, &menu, &marker, work.path())?;
                manifest.outputs.push(OutputFile { kind: "usb".into(), path: dev.display().to_string(), bytes: bp.size });
            }
        }
    }
    manifest.build_seconds = started.elapsed().as_secs_f64();
    manifest.save(&manifest_path(&opts.output_dir, &hostname))?;
    Ok(manifest)
}

/// With `backup.url = "iso:///DIR"` the staged backups (`backup.iso-dir`/DIR)
/// go into the ISO as `/DIR`, where recovery finds them on the boot medium.
pub fn iso_backup_graft(config: &Config, outputs: &[OutputKind]) -> Vec<(String, PathBuf)> {
    let Some(url) = config.backup.url.as_deref() else { return Vec::new() };
    let Ok(crate::backup::Location::Iso { path }) = crate::backup::Location::parse(url) else { return Vec::new() };
    if !outputs.contains(&OutputKind::Iso) {
        tracing::warn!("backup.url is {url}, but no ISO is built (output = {outputs:?}): the rescue media will not hold the backup");
        return Vec::new();
    }
    let staged = config.backup.iso_dir.join(path.trim_start_matches('/'));
    if !staged.is_dir() {
        tracing::warn!(
            "backup.url is {url}, but nothing is staged in {}: this ISO holds no backup (run `rescue mkbackup`, or `rescue mkbackuponly` before `rescue mkrescue`)",
            staged.display()
        );
        return Vec::new();
    }
    let dest = path.trim_start_matches('/').trim_end_matches('/').to_string();
    if dest.is_empty() {
        tracing::warn!("backup.url is {url}: name a directory (iso:///backup); the ISO holds no backup");
        return Vec::new();
    }
    tracing::info!("the ISO includes the staged backups of {} as /{dest}", staged.display());
    vec![(dest, staged)]
}

/// Refuse to write to a disk (or any of its partitions) that is mounted or
/// held by device-mapper/MD.
pub fn refuse_if_mounted(dev: &Path) -> Result<()> {
    let real = std::fs::canonicalize(dev).with_context(|| format!("{} does not exist", dev.display()))?;
    let name = real.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    for line in mounts.lines() {
        let src = line.split_whitespace().next().unwrap_or("");
        let src_real = std::fs::canonicalize(src).unwrap_or_else(|_| PathBuf::from(src));
        let s = src_real.to_string_lossy();
        let r = real.to_string_lossy();
        if s == r || (s.starts_with(&*r) && s[r.len()..].trim_start_matches('p').chars().all(|c| c.is_ascii_digit())) && s.len() > r.len() {
            return Err(input_error(format!(
                "{} is mounted ({}); unmount it first",
                dev.display(),
                line.split_whitespace().take(2).collect::<Vec<_>>().join(" on ")
            )));
        }
    }
    let sys = Path::new("/sys/class/block").join(&name);
    let busy = |p: &Path| std::fs::read_dir(p.join("holders")).map(|mut d| d.next().is_some()).unwrap_or(false);
    if busy(&sys) {
        return Err(input_error(format!("{} is in use by device-mapper or MD (see {}/holders)", dev.display(), sys.display())));
    }
    if let Ok(rd) = std::fs::read_dir(&sys) {
        for e in rd.filter_map(|e| e.ok()) {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&name) && busy(&e.path()) {
                return Err(input_error(format!("the partition {n} of {} is in use by device-mapper or MD", dev.display())));
            }
        }
    }
    Ok(())
}
