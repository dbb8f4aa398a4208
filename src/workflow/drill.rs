//! `rescue drill`: recover the rescue ISO into a throwaway VM, boot the
//! result, report pass/fail with the measured RTO. See docs/drill.md.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use crate::context::Ctx;
use crate::drill::disks::Bus;
use crate::drill::qemu::{Accel, Network};
use crate::drill::{self, result};
use crate::error::input_error;

pub const EXAMPLES: &str = "\
Examples:
  rescue drill                                  drill the last ISO `rescue mkrescue` built ([image] output-url)
  rescue drill --iso /srv/rescue/rescue-web1.iso --check 'test -s /srv/www/index.html'
  rescue drill --check 'systemctl is-enabled nginx' --check 'grep -q web1 /etc/hostname'
  rescue --json drill > /var/log/rescue/drill.json     the result as data
  rescue -q drill --prometheus /var/lib/prometheus/node-exporter/rescue_drill.prom
                                                for node_exporter's textfile collector
  rescue drill --accel kvm --memory 4096 --cpus 4   faster where KVM works
  rescue drill --keep                           keep the disks and console logs for a look afterwards

Cron (weekly, Sunday 04:30; exit status 1 when the drill fails):
  30 4 * * 0 root rescue -q drill --prometheus /var/lib/prometheus/node-exporter/rescue_drill.prom 2>&1 | logger -t rescue-drill

Exit status: 0 the drill passed; 1 it failed (the recovery, the boot or a check);
2 usage or input error (no ISO, unreachable backup kind, bad option); 3 runtime error
(qemu or xorriso failed, interrupted).";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The rescue ISO (default: the newest rescue-*.iso in [image] output-url).
    #[arg(long, value_name = "FILE")]
    pub iso: Option<PathBuf>,
    /// Use this descriptor for the blank disks instead of the one in the ISO.
    #[arg(long, value_name = "FILE")]
    pub layout: Option<PathBuf>,
    /// A shell command run in the recovered system after it booted (repeatable); it must exit 0.
    #[arg(long = "check", value_name = "CMD")]
    pub checks: Vec<String>,
    /// qemu accelerator.
    #[arg(long, value_enum, default_value = "tcg")]
    pub accel: Accel,
    /// VM memory in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 2048)]
    pub memory: u32,
    /// VM CPUs.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub cpus: u32,
    /// Attach every blank disk on this bus (default: the bus of each recorded disk's name: nvme*, sd*, else virtio).
    #[arg(long, value_enum)]
    pub disk_bus: Option<Bus>,
    /// Network of the rescue VM (default: none for iso://, user-mode NAT for network backups). The recovered system never gets one.
    #[arg(long, value_enum)]
    pub network: Option<Network>,
    /// Seconds from the rescue VM start to the end of the recovery.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub recover_timeout: u64,
    /// Seconds from the recovered VM start to the end of its checks.
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    pub boot_timeout: u64,
    /// Where the drill's work directory (blank disks, console logs) is made.
    #[arg(long, value_name = "DIR", default_value = "/var/tmp")]
    pub work_dir: PathBuf,
    /// Keep the work directory at the end (disks, console logs).
    #[arg(long)]
    pub keep: bool,
    /// Write the result as a node_exporter textfile (atomically).
    #[arg(long, value_name = "FILE")]
    pub prometheus: Option<PathBuf>,
    /// The qemu program (tests).
    #[arg(long, value_name = "PROGRAM", default_value = drill::qemu::QEMU, hide = true)]
    pub qemu: PathBuf,
}

/// The newest `rescue-*.iso` in `dir`.
pub fn newest_iso(dir: &Path) -> Result<PathBuf> {
    let mut isos: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .map_err(|e| input_error(format!("cannot read the image output directory {}: {e}; pass --iso FILE", dir.display())))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.file_name().map(|n| n.to_string_lossy()).is_some_and(|n| n.starts_with("rescue-") && n.ends_with(".iso")))
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    isos.sort();
    isos.pop()
        .map(|(_, p)| p)
        .ok_or_else(|| input_error(format!("no rescue-*.iso in {}: build one with `rescue mkrescue` (output iso), or pass --iso FILE", dir.display())))
}

/// `rescue-web1.iso` -> `web1`, for metrics written before the descriptor is read.
fn host_from_iso_name(iso: &Path) -> String {
    iso.file_stem().map(|s| s.to_string_lossy().trim_start_matches("rescue-").to_string()).unwrap_or_default()
}

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let r = (|| {
        let iso = match &a.iso {
            Some(p) => p.clone(),
            None => newest_iso(&crate::image::output_dir_from_url(&ctx.config.image.output_url)?)?,
        };
        if a.memory < 512 || a.cpus == 0 {
            return Err(input_error("--memory must be at least 512 (MiB) and --cpus at least 1"));
        }
        let opts = drill::Options {
            iso: iso.clone(),
            layout: a.layout.clone(),
            accel: a.accel,
            memory_mib: a.memory,
            cpus: a.cpus,
            disk_bus: a.disk_bus,
            network: a.network,
            checks: a.checks.clone(),
            recover_timeout: Duration::from_secs(a.recover_timeout),
            boot_timeout: Duration::from_secs(a.boot_timeout),
            work_parent: a.work_dir.clone(),
            keep: a.keep,
            qemu: a.qemu.clone(),
            progress: ctx.verbosity >= 0,
            echo_console: ctx.verbosity >= 1,
        };
        Ok((iso.clone(), drill::run(&opts)))
    })();
    let (iso, outcome) = match r {
        Ok(x) => x,
        Err(e) => {
            write_failure_metrics(&a, a.iso.as_deref().map(host_from_iso_name).unwrap_or_default());
            return Err(e);
        }
    };
    match outcome {
        Ok(res) => {
            if let Some(p) = &a.prometheus {
                result::write_prometheus(p, &res.prometheus())?;
            }
            if ctx.json {
                println!("{}", serde_json::to_string_pretty(&res)?);
            } else if ctx.verbosity >= 0 || !res.passed() {
                print!("{}", res.text());
            }
            Ok(if res.passed() { 0 } else { crate::error::EXIT_CHANGED })
        }
        Err(e) => {
            write_failure_metrics(&a, host_from_iso_name(&iso));
            Err(e)
        }
    }
}

/// The drill could not run: the metrics still say so (success 0).
fn write_failure_metrics(a: &Args, host: String) {
    if let Some(p) = &a.prometheus {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        if let Err(e) = result::write_prometheus(p, &result::prometheus_text(&host, false, None, &[], &[], now)) {
            eprintln!("rescue: could not write {}: {e:#}", p.display());
        }
    }
}
