//! `rescue mkrescue`: record the storage layout (as `mkbackup` does), then
//! build the rescue image (ISO, PXE, USB, raw disk) holding it; or build from
//! a given descriptor (`--layout FILE`). Says, and exits 1, when a recorded
//! filesystem is in no backup. See docs/image.md.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Deserialize;

use super::savelayout::{recapture, CaptureArgs};
use crate::config::Config;
use crate::context::Ctx;
use crate::error::{input_error, EXIT_CHANGED, EXIT_OK};
use crate::image::config::{NetworkMode, OutputKind, StaticNet};
use crate::image::manifest::{manifest_path, Manifest};
use crate::image::{self, BuildOptions};
use crate::layout::recovery::{backup_gaps, BackupGap, MountScope};

pub const EXAMPLES: &str = "\
Examples:
  rescue mkrescue                         record the layout, build what [image] output says (an ISO by default)
  rescue mkrescue --layout layout.toml    build from that descriptor, recording nothing
  rescue mkrescue --output iso,pxe --output-dir /srv/rescue
  rescue mkrescue --kernel /boot/vmlinuz-6.1.0-28-amd64 --modules-dir /lib/modules/6.1.0-28-amd64
  rescue mkrescue --output usb --usb /dev/sdc   (after `rescue format --usb /dev/sdc`)
  rescue mkrescue --manifest              show what went into the last image";

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub image: ImageArgs,
    #[command(flatten)]
    pub capture: CaptureArgs,
    /// Build from this descriptor instead of recording the layout now.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["disks", "root"])]
    pub layout: Option<PathBuf>,
    /// Do not build: show the manifest of the last image built into the output directory.
    #[arg(long)]
    pub manifest: bool,
}

/// What to build and from which kernel; shared by `mkrescue` and `mkbackup`.
#[derive(Debug, Clone, clap::Args)]
pub struct ImageArgs {
    /// Kernel to boot (default: [image] kernel, else /boot/vmlinuz-$(uname -r)).
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// That kernel's module directory (default: [image] modules-dir, else /lib/modules/$(uname -r)).
    #[arg(long, value_name = "DIR")]
    pub modules_dir: Option<PathBuf>,
    /// Outputs, comma-separated: iso, pxe, usb, raw (default: [image] output).
    #[arg(long, value_delimiter = ',', value_enum)]
    pub output: Vec<OutputArg>,
    /// Directory for the outputs (default: from [image] output-url).
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// USB disk for the usb output, prepared by `rescue format --usb`.
    #[arg(long, value_name = "DEV")]
    pub usb: Option<PathBuf>,
    /// Give the rescue system this host's current static addresses (matched by MAC) instead of DHCP.
    #[arg(long)]
    pub static_net: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OutputArg {
    Iso,
    Pxe,
    Usb,
    Raw,
}

impl From<OutputArg> for OutputKind {
    fn from(o: OutputArg) -> Self {
        match o {
            OutputArg::Iso => OutputKind::Iso,
            OutputArg::Pxe => OutputKind::Pxe,
            OutputArg::Usb => OutputKind::Usb,
            OutputArg::Raw => OutputKind::Raw,
        }
    }
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let layout_path = args.layout.clone().unwrap_or_else(|| ctx.config.layout_path());
    if args.manifest {
        let output_dir = output_dir(&ctx.config, &args.image)?;
        let layout = crate::layout::Layout::load(&layout_path).ok();
        let host = layout.map(|l| l.host.hostname).unwrap_or_default();
        let path = manifest_path(&output_dir, if host.is_empty() { "unknown" } else { &host });
        let m = Manifest::load(&path).map_err(|e| input_error(format!("{e:#}; build an image with `rescue mkrescue` first")))?;
        if ctx.json {
            println!("{}", serde_json::to_string_pretty(&m)?);
        } else {
            print!("{}", m.summary());
            println!("files in the initramfs ({}):", m.files.len());
            for f in &m.files {
                println!("  {:<8} {}{}", f.kind, f.path, f.from.as_ref().map(|s| format!("  ({s})")).unwrap_or_default());
            }
        }
        return Ok(0);
    }
    let recorded = match &args.layout {
        Some(_) => None,
        None => Some(record_layout(ctx, &args.capture)?),
    };
    let build_from = recorded.as_ref().map(|r| r.pending.clone()).unwrap_or(layout_path);
    let built = build(&ctx.config, &args.image, build_from);
    if let (Err(_), Some(r)) = (&built, &recorded) {
        // Nothing holds the recorded layout: the saved descriptor stays as it was.
        let _ = std::fs::remove_file(&r.pending);
    }
    let (mut m, output_dir) = built?;
    let mut gaps = Vec::new();
    if let Some(r) = recorded {
        m.layout = r.commit(&output_dir, &m)?;
        gaps = r.gaps;
    }
    if ctx.json {
        let mut short = m.clone();
        short.files.clear();
        println!("{}", serde_json::to_string_pretty(&Summary { image: &short, backup_gaps: &gaps })?);
    } else {
        print!("{}", m.summary());
        println!("  manifest {}", manifest_path(&output_dir, &m.hostname).display());
        for g in &gaps {
            println!("WARNING: {g}");
        }
        if !gaps.is_empty() {
            println!("The image recreates the layout, but it cannot restore data that no backup holds: run `rescue mkbackup`.");
        }
    }
    Ok(if gaps.is_empty() { EXIT_OK } else { EXIT_CHANGED })
}

/// `--json`: the manifest (without its file list) and what no backup holds.
#[derive(serde::Serialize)]
#[serde(rename_all = "kebab-case")]
struct Summary<'a> {
    #[serde(flatten)]
    image: &'a Manifest,
    backup_gaps: &'a [BackupGap],
}

/// The layout mkrescue recorded: written next to the saved descriptor, and
/// put in its place only once an image holds it, so that a build that fails
/// (or is killed) never leaves a saved descriptor `checklayout` finds current.
struct Recorded {
    pending: PathBuf,
    saved: PathBuf,
    /// Recorded mounts the recorded backup does not hold.
    gaps: Vec<BackupGap>,
}

/// Step 1: record the layout now, keeping the backup the saved descriptor records.
fn record_layout(ctx: &Ctx, capture: &CaptureArgs) -> Result<Recorded> {
    let saved = ctx.config.layout_path();
    let (_, cap) = recapture(ctx, capture, &saved)?;
    if !cap.warnings.is_empty() {
        tracing::warn!("{} warning(s) during capture; the descriptor is usable but incomplete where they say", cap.warnings.len());
    }
    let pending = saved.with_extension("toml.new");
    cap.layout.save(&pending)?;
    tracing::info!("layout recorded in {} (saved as {} once the image is built)", pending.display(), saved.display());
    let gaps = match crate::backup::configured(&ctx.config.backup, None, crate::backup::recorded_url(&cap.layout))? {
        Some(b) if !b.follows_the_descriptor() => {
            tracing::info!("the data is held by the {}: not checked against the layout", b.describe());
            Vec::new()
        }
        _ => backup_gaps(&cap.layout, &MountScope::new(&ctx.config.capture.exclude_mounts)),
    };
    Ok(Recorded { pending, saved, gaps })
}

impl Recorded {
    /// The image holds the recorded layout: make it the saved descriptor (and
    /// say so in the manifest). Returns the saved descriptor's path.
    fn commit(&self, output_dir: &std::path::Path, m: &Manifest) -> Result<String> {
        std::fs::rename(&self.pending, &self.saved)
            .with_context(|| format!("saving the recorded layout: renaming {} to {}", self.pending.display(), self.saved.display()))?;
        let mut m = m.clone();
        m.layout = self.saved.display().to_string();
        m.save(&manifest_path(output_dir, &m.hostname))?;
        Ok(m.layout)
    }
}

fn output_dir(config: &Config, args: &ImageArgs) -> Result<PathBuf> {
    match &args.output_dir {
        Some(d) => Ok(d.clone()),
        None => image::output_dir_from_url(&config.image.output_url),
    }
}

/// Build the rescue image of the descriptor at `layout_path`; the manifest and the output directory.
pub fn build(config: &Config, args: &ImageArgs, layout_path: PathBuf) -> Result<(Manifest, PathBuf)> {
    let cfg = &config.image;
    let output_dir = output_dir(config, args)?;
    let release = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).context("reading the running kernel's release")?;
    let kernel = args.kernel.clone().or_else(|| cfg.kernel.clone()).unwrap_or_else(|| PathBuf::from(format!("/boot/vmlinuz-{release}")));
    let modules_dir = args.modules_dir.clone().or_else(|| cfg.modules_dir.clone()).unwrap_or_else(|| PathBuf::from(format!("/lib/modules/{release}")));
    let outputs: Vec<OutputKind> = if args.output.is_empty() { cfg.output.clone() } else { args.output.iter().map(|&o| o.into()).collect() };
    let mut config = config.clone();
    if args.static_net {
        config.image.static_net = host_static_net()?;
        config.image.network = NetworkMode::Static;
    }
    let opts = BuildOptions {
        kernel,
        modules_dir,
        layout_path,
        outputs,
        output_dir,
        usb_device: args.usb.clone().or_else(|| cfg.usb_device.clone()),
        rescue_binary: std::env::current_exe().context("finding the rescue executable to put into the image")?,
    };
    let m = image::make_rescue(&config, &opts)?;
    Ok((m, opts.output_dir))
}

#[derive(Deserialize)]
struct IpLink {
    ifname: String,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    link_type: Option<String>,
    #[serde(default)]
    addr_info: Vec<IpAddr>,
}
#[derive(Deserialize)]
struct IpAddr {
    family: String,
    local: String,
    prefixlen: u32,
    #[serde(default)]
    scope: Option<String>,
}
#[derive(Deserialize)]
struct IpRoute {
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    dev: Option<String>,
}

/// The host's global IPv4 addresses by MAC, its default gateway and DNS servers.
fn host_static_net() -> Result<Vec<StaticNet>> {
    let links: Vec<IpLink> = serde_json::from_str(&crate::cmd::Cmd::new("ip").args(["-j", "addr", "show"]).read()?).context("parsing `ip -j addr show`")?;
    let routes: Vec<IpRoute> = serde_json::from_str(&crate::cmd::Cmd::new("ip").args(["-j", "-4", "route", "show", "default"]).read()?)
        .context("parsing `ip -j route show default`")?;
    let dns: Vec<String> = std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver").map(|s| s.trim().to_string()))
        .filter(|s| !s.starts_with("127."))
        .collect();
    let mut out = Vec::new();
    for l in links.iter().filter(|l| l.link_type.as_deref() == Some("ether")) {
        let Some(mac) = &l.address else { continue };
        for a in l.addr_info.iter().filter(|a| a.family == "inet" && a.scope.as_deref() == Some("global")) {
            let gateway = routes.iter().find(|r| r.dev.as_deref() == Some(l.ifname.as_str())).and_then(|r| r.gateway.clone());
            out.push(StaticNet { mac: mac.clone(), address: format!("{}/{}", a.local, a.prefixlen), gateway, dns: dns.clone() });
        }
    }
    if out.is_empty() {
        return Err(input_error("--static-net: this host has no global IPv4 address on an Ethernet interface to record"));
    }
    Ok(out)
}
