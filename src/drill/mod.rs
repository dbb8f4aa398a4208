//! `rescue drill`: prove that a backup restores, without touching the
//! machine it belongs to. A throwaway qemu VM with blank disks shaped like
//! the recorded ones boots the rescue image's kernel with `unattended
//! rescue.drill`, recovers, powers off; then the recovered disks boot
//! alone, and the one-shot unit that recovery installed ([`marker`]) says
//! on the serial console that the system came up, with the user's checks.
//! Every phase is timed: together they are the measured RTO.
//!
//! Everything the drill creates lives in one work directory and two qemu
//! processes; both are removed on every way out (RAII guards, signals
//! turned into an orderly stop, and qemu dies with the drill's process).

pub mod console;
pub mod disks;
pub mod image;
pub mod marker;
pub mod qemu;
pub mod result;
pub mod signal;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use self::console::{Event, Follower};
use self::disks::{Bus, DrillDisk};
use self::qemu::{Accel, DirectBoot, Network, Uefi, Vm, VmSpec};
use self::result::{CheckResult, DrillResult, Phase, SecureBootSeen};
use crate::backup::Location;
use crate::config::Config;
use crate::error::input_error;
use crate::layout::{Firmware, Layout};

/// The longest kernel command line x86 Linux takes (COMMAND_LINE_SIZE), with room to spare.
const MAX_CMDLINE: usize = 2000;
/// Console lines kept for the failure report.
const TAIL_LINES: usize = 40;

#[derive(Debug, Clone)]
pub struct Options {
    pub iso: PathBuf,
    /// Use this descriptor instead of the one in the ISO.
    pub layout: Option<PathBuf>,
    pub accel: Accel,
    pub memory_mib: u32,
    pub cpus: u32,
    pub disk_bus: Option<Bus>,
    /// Override the network the backup location implies.
    pub network: Option<Network>,
    pub checks: Vec<String>,
    /// From the VM start to the end of the recovery.
    pub recover_timeout: Duration,
    /// From the start of the recovered VM to the end of its checks.
    pub boot_timeout: Duration,
    /// Where the work directory is created.
    pub work_parent: PathBuf,
    /// Keep the work directory (disks, console logs) at the end.
    pub keep: bool,
    pub qemu: PathBuf,
    /// Run both VMs under firmware that enforces Secure Boot, booting the ISO through its signed chain.
    pub secure_boot: bool,
    /// Print progress on stderr.
    pub progress: bool,
    /// Echo every console line on stderr.
    pub echo_console: bool,
}

/// The drill was stopped by a signal; everything it made was removed.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {0}: the drill VM was stopped and its work directory removed")]
pub struct Interrupted(pub String);

fn check_signal() -> Result<()> {
    match signal::received() {
        Some(s) => Err(Interrupted(s).into()),
        None => Ok(()),
    }
}

/// What the drill needs to know before it starts a VM.
pub struct Prepared {
    pub layout: Layout,
    pub config: Config,
    pub network: Network,
    pub disks: Vec<DrillDisk>,
}

/// The network a backup location needs inside the VM, or why the drill cannot reach it.
pub fn network_for(url: &str) -> Result<Network> {
    Ok(match Location::parse(url)? {
        Location::Iso { .. } => Network::None,
        Location::Nfs { .. } | Location::Cifs { .. } | Location::Rsync(_) | Location::S3(_) => Network::User,
        Location::Usb { .. } => {
            return Err(input_error(format!(
                "the backup is on a USB disk ({url}), which the drill VM does not have; drill a copy of it instead \
                 (e.g. on NFS or in the ISO with iso:///backup)"
            )))
        }
        Location::Local(p) => {
            return Err(input_error(format!(
                "the backup location {url} is a directory of the machine being recovered ({}); the drill VM cannot see it. \
                 Use a network location (nfs://, cifs://) or iso:///backup",
                p.display()
            )))
        }
    })
}

/// Check the image's descriptor and config and derive the VM from them.
pub fn prepare(layout: Layout, config_text: Option<&str>, opts: &Options) -> Result<Prepared> {
    let config = Config::from_toml(config_text.unwrap_or("")).context("in the config inside the rescue image (/etc/rescue/rescue.toml)")?;
    if !config.recover.unattended_proceed {
        return Err(input_error(
            "the rescue image's config does not let an unattended recovery write to disks: build the image with \
             `[recover] unattended-proceed = true` in the config (rescue mkrescue); the drill boots it with `unattended`",
        ));
    }
    let url = config.backup.url.clone().or_else(|| layout.backup.as_ref().map(|b| b.url.clone()).filter(|u| !u.is_empty()));
    let network = match (opts.network, url) {
        (Some(n), _) => n,
        (None, Some(u)) => network_for(&u)?,
        (None, None) => {
            return Err(input_error(
                "the rescue image knows no backup location (no backup.url in its config, none recorded in the descriptor): \
                 there is nothing to restore",
            ))
        }
    };
    let disks = disks::plan(&layout, opts.disk_bus)?;
    Ok(Prepared { layout, config, network, disks })
}

/// Progress lines on stderr, with the time since the drill started.
struct Say {
    on: bool,
    t0: Instant,
}

impl Say {
    fn line(&self, msg: &str) {
        if self.on {
            eprintln!("drill [{:>6.1} s] {msg}", self.t0.elapsed().as_secs_f64());
        }
    }
}

enum Ended {
    /// The event handler asked to stop.
    Stopped,
    /// qemu exited with this code.
    Exited(i32),
    TimedOut,
}

/// Read the console of `vm` until the handler says stop, qemu exits, or the deadline.
fn follow(vm: &mut Vm, con: &mut Follower, deadline: Instant, echo: bool, mut on: impl FnMut(Event, Instant) -> bool) -> Result<Ended> {
    loop {
        check_signal()?;
        let exited = vm.try_wait()?;
        for line in con.poll()? {
            if echo {
                eprintln!("  | {line}");
            }
            if let Some(ev) = console::parse_line(&line) {
                if on(ev, Instant::now()) {
                    return Ok(Ended::Stopped);
                }
            }
        }
        if let Some(code) = exited {
            con.flush_partial();
            return Ok(Ended::Exited(code));
        }
        if Instant::now() >= deadline {
            return Ok(Ended::TimedOut);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Seconds from `a` to `b`, to a tenth (what the reports show).
fn secs(a: Instant, b: Instant) -> f64 {
    (b.saturating_duration_since(a).as_secs_f64() * 10.0).round() / 10.0
}

/// How the rescue VM starts: the ISO as its CD, and the kernel handed over
/// by qemu with the drill's command line. Under `--secure-boot` the firmware
/// must verify what it starts, so the VM boots a copy of the ISO through its
/// own shim and signed GRUB, whose menu carries the drill's command line.
fn rescue_boot(opts: &Options, img: &image::RescueIso, append: String, dir: &Path) -> Result<(PathBuf, Option<DirectBoot>)> {
    if opts.secure_boot {
        let copy = dir.join("drill.iso");
        image::remaster(&opts.iso, &image::drill_grub_cfg(&append), &copy)?;
        Ok((copy, None))
    } else {
        Ok((opts.iso.clone(), Some(DirectBoot { kernel: img.kernel.clone(), initrd: img.initrd.clone(), append })))
    }
}

/// Run a drill of the rescue ISO `opts.iso`.
pub fn run(opts: &Options) -> Result<DrillResult> {
    signal::install()?;
    let t0 = Instant::now();
    let say = Say { on: opts.progress, t0 };
    let started = crate::util::now_rfc3339();
    if !opts.iso.is_file() {
        return Err(input_error(format!("the rescue ISO {} does not exist: build one with `rescue mkrescue`, or pass --iso FILE", opts.iso.display())));
    }
    if crate::cmd::find_in_path(&opts.qemu.to_string_lossy()).is_none() {
        return Err(crate::cmd::ToolMissing {
            program: opts.qemu.display().to_string(),
            package: crate::cmd::package_for("qemu-system-x86_64").map(str::to_string),
        }
        .into());
    }
    if opts.accel == Accel::Kvm && !qemu::kvm_usable() {
        return Err(input_error("--accel kvm: /dev/kvm cannot be opened read-write here; use --accel tcg"));
    }
    std::fs::create_dir_all(&opts.work_parent).with_context(|| format!("creating {}", opts.work_parent.display()))?;
    let work = tempfile::Builder::new()
        .prefix("rescue-drill-")
        .tempdir_in(&opts.work_parent)
        .with_context(|| format!("creating the drill's work directory in {}", opts.work_parent.display()))?;
    let dir = work.path().to_path_buf();
    say.line(&format!("reading {} (work directory {})", opts.iso.display(), dir.display()));
    let img = image::open(&opts.iso, &dir)?;
    check_signal()?;
    let layout = match &opts.layout {
        Some(p) => Layout::load(p)?,
        None => {
            let text = img.layout_text.as_deref().ok_or_else(|| {
                input_error(format!("{} holds no descriptor (/etc/rescue/layout.toml in its initramfs); pass --layout FILE", opts.iso.display()))
            })?;
            Layout::from_toml(text).context("in the descriptor inside the rescue image")?
        }
    };
    let prep = prepare(layout, img.config_text.as_deref(), opts)?;
    let host = prep.layout.host.hostname.clone();
    let uefi_fw = prep.layout.host.firmware == Firmware::Uefi;
    if opts.secure_boot {
        if !uefi_fw {
            return Err(input_error(format!(
                "--secure-boot: the descriptor records BIOS firmware for {host}, and Secure Boot is a UEFI feature; drill without --secure-boot"
            )));
        }
        image::require_signed_chain(&opts.iso, &dir)?;
    }

    let mut extra = marker::cmdline_words(&opts.checks);
    if prep.network == Network::None {
        extra.push("rescue.nonet".into());
    }
    let append = image::drill_cmdline(&img.cmdline, &extra);
    if append.len() > MAX_CMDLINE {
        return Err(input_error(format!(
            "the checks make the rescue kernel command line {} bytes long (the limit is about {MAX_CMDLINE}): use fewer or shorter --check commands \
             (e.g. one script that is part of the backup)",
            append.len()
        )));
    }
    // One variable store for both VMs: the recovery writes its boot entry there.
    let uefi = if uefi_fw { Some(Uefi::copy_into(&dir, opts.secure_boot)?) } else { None };
    let (cdrom, direct) = rescue_boot(opts, &img, append, &dir)?;
    let files = disks::create_files(&prep.disks, &dir)?;
    let disk_list: Vec<(DrillDisk, PathBuf)> = prep.disks.iter().cloned().zip(files).collect();
    for (d, _) in &disk_list {
        say.line(&format!("blank disk for {}: {} on {}, serial {}", d.recorded, crate::util::human_bytes(d.size), d.bus, d.serial));
    }

    let mut res = DrillResult {
        result: "fail".into(),
        host: host.clone(),
        iso: opts.iso.display().to_string(),
        firmware: if uefi_fw { "uefi" } else { "bios" }.into(),
        secure_boot: opts.secure_boot.then(SecureBootSeen::default),
        started,
        timestamp: 0.0,
        disks: prep.disks.clone(),
        phases: Vec::new(),
        recover_phases: Vec::new(),
        rto_seconds: None,
        booted: None,
        checks: opts.checks.iter().map(|c| CheckResult { command: c.clone(), rc: None, output: Vec::new() }).collect(),
        failure: None,
        console_tail: Vec::new(),
        kept: None,
    };

    // Stage 1: the rescue system recovers onto the blank disks.
    let spec = VmSpec {
        accel: opts.accel,
        memory_mib: opts.memory_mib,
        cpus: opts.cpus,
        uefi: uefi.clone(),
        disks: disk_list.clone(),
        cdrom: Some(cdrom),
        direct,
        network: prep.network,
        serial_log: dir.join("console-rescue.log"),
    };
    say.line(&format!("starting the rescue VM ({}, {} MiB, {} CPUs, network {})", opts.accel.as_str(), opts.memory_mib, opts.cpus, prep.network.as_str()));
    let mut vm = Vm::start(&opts.qemu, &spec, &dir.join("qemu-rescue.log"))?;
    let vm_start = vm.started;
    let mut con = Follower::new(&spec.serial_log, TAIL_LINES);
    let mut recover_start = None;
    let mut recover_end = None;
    let mut failed: Option<String> = None;
    let mut phase_marks: Vec<(String, Instant)> = Vec::new();
    let mut rescue_error: Option<String> = None;
    let mut rescue_secure_boot = None;
    let ended = follow(&mut vm, &mut con, vm_start + opts.recover_timeout, opts.echo_console, |ev, at| {
        match ev {
            Event::RescueInit => say.line("rescue kernel and initramfs loaded, /init running"),
            Event::RescueReady => say.line("rescue system up"),
            Event::RescueSecureBoot(on) => {
                rescue_secure_boot = Some(on);
                say.line(&format!("rescue system: Secure Boot {}", if on { "on" } else { "off" }));
            }
            Event::RecoverStart => {
                recover_start = Some(at);
                say.line("unattended recovery started");
            }
            Event::RecoverPhase { name } => {
                say.line(&format!("recover: phase {name}"));
                phase_marks.push((name, at));
            }
            Event::RecoverOk => {
                recover_end = Some(at);
                say.line("recovery finished");
            }
            Event::RescueError(e) => rescue_error = Some(console::shorten(&e)),
            Event::RecoverFailed(why) => {
                failed = Some(match rescue_error.take() {
                    Some(e) => format!("the recovery failed in the rescue VM: {e}"),
                    None => format!("the recovery failed in the rescue VM: {why}"),
                });
                return true;
            }
            Event::KernelPanic(m) => {
                failed = Some(format!("the rescue kernel panicked: {m}"));
                return true;
            }
            Event::RescueEnd => say.line("rescue system powering off"),
            _ => {}
        }
        false
    })?;
    if let Some(rs) = recover_start {
        res.phases.push(Phase { name: "rescue-boot".into(), seconds: secs(vm_start, rs) });
        let end = recover_end.unwrap_or_else(Instant::now);
        res.phases.push(Phase { name: "recover".into(), seconds: secs(rs, end) });
        for (i, (name, at)) in phase_marks.iter().enumerate() {
            let next = phase_marks.get(i + 1).map(|(_, t)| *t).unwrap_or(end);
            res.recover_phases.push(Phase { name: name.clone(), seconds: secs(*at, next) });
        }
    }
    if failed.is_none() && recover_end.is_none() {
        failed = Some(match ended {
            Ended::TimedOut => format!("the recovery did not finish within {} s (--recover-timeout)", opts.recover_timeout.as_secs()),
            Ended::Exited(code) if code != 0 => format!("qemu failed (exit status {code}): {}\ncommand: {}", vm.own_output(), vm.command),
            _ => "the rescue VM ended before the recovery finished".to_string(),
        });
    }
    if recover_end.is_some() && failed.is_none() && !matches!(ended, Ended::Exited(_)) {
        // Recovered: give the rescue system time to sync and power off.
        let deadline = Instant::now() + Duration::from_secs(120);
        if let Ended::TimedOut = follow(&mut vm, &mut con, deadline, opts.echo_console, |_, _| false)? {
            say.line("the rescue VM did not power off within 120 s after the recovery; stopping it");
        }
    }
    vm.stop();
    if let Some(sb) = res.secure_boot.as_mut() {
        sb.rescue = rescue_secure_boot;
        if failed.is_none() && rescue_secure_boot != Some(true) {
            failed = sb.failure();
        }
    }
    if let Some(f) = failed {
        return Ok(finish(res, f, con.tail(), work, opts, &say));
    }
    let recovered_at = recover_end.unwrap_or_else(Instant::now);

    // Stage 2: the recovered disks boot alone.
    let spec2 = VmSpec { cdrom: None, direct: None, network: Network::None, serial_log: dir.join("console-boot.log"), ..spec };
    say.line("booting the recovered disks (no network)");
    let mut vm2 = Vm::start(&opts.qemu, &spec2, &dir.join("qemu-boot.log"))?;
    res.phases.push(Phase { name: "reboot".into(), seconds: secs(recovered_at, vm2.started) });
    let boot_start = vm2.started;
    let mut con2 = Follower::new(&spec2.serial_log, TAIL_LINES);
    let mut booted_at = None;
    let mut booted: Option<BTreeMap<String, String>> = None;
    let mut done: Option<(usize, usize)> = None;
    let mut failed = None;
    let checks = &mut res.checks;
    let ended = follow(&mut vm2, &mut con2, boot_start + opts.boot_timeout, opts.echo_console, |ev, at| {
        match ev {
            Event::Booted { fields } => {
                booted_at = Some(at);
                say.line(&format!("the recovered system is up: {}", fields.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")));
                booted = Some(fields);
            }
            Event::CheckOutput { n, text } => {
                if let Some(c) = checks.get_mut(n.wrapping_sub(1)) {
                    c.output.push(text);
                }
            }
            Event::Check { n, rc } => {
                if let Some(c) = checks.get_mut(n.wrapping_sub(1)) {
                    c.rc = Some(rc);
                    say.line(&format!("check {n} {:?}: {}", c.command, if rc == 0 { "ok".to_string() } else { format!("FAILED (exit {rc})") }));
                }
            }
            Event::Done { checks, passed } => {
                done = Some((checks, passed));
                return true;
            }
            Event::KernelPanic(m) => {
                failed = Some(format!("the recovered system's kernel panicked: {m}"));
                return true;
            }
            _ => {}
        }
        false
    })?;
    if let Some(b) = booted_at {
        res.phases.push(Phase { name: "first-boot".into(), seconds: secs(boot_start, b) });
    }
    res.booted = booted.clone();
    if let Some(sb) = res.secure_boot.as_mut() {
        sb.recovered = booted.as_ref().and_then(|b| b.get("secure-boot")).map(|v| v == "on");
        if failed.is_none() && booted.is_some() {
            failed = sb.failure();
        }
    }
    if failed.is_none() {
        failed = match (&booted, done, &ended) {
            (None, _, Ended::TimedOut) => Some(format!(
                "the recovered system did not report within {} s (--boot-timeout): it did not boot, or not to multi-user.target",
                opts.boot_timeout.as_secs()
            )),
            (None, _, Ended::Exited(code)) if *code != 0 => Some(format!("qemu failed (exit status {code}): {}\ncommand: {}", vm2.own_output(), vm2.command)),
            (None, _, _) => Some("the recovered system's VM ended without the drill marker: it did not boot (see the console lines)".into()),
            (Some(_), None, _) => Some("the recovered system booted but its checks did not finish (timeout or power loss)".into()),
            (Some(_), Some(_), _) => None,
        };
    }
    if done.is_some() {
        // The marker powers off; wait a little for a clean end.
        let _ = follow(&mut vm2, &mut con2, Instant::now() + Duration::from_secs(30), opts.echo_console, |_, _| false)?;
    }
    vm2.stop();
    if failed.is_none() {
        let got = booted.as_ref().and_then(|b| b.get("host")).cloned().unwrap_or_default();
        let short = |h: &str| h.split('.').next().unwrap_or("").to_string();
        if !host.is_empty() && short(&got) != short(&host) {
            failed = Some(format!("the recovered system calls itself {got:?}, the descriptor records {host:?}: is this the right backup?"));
        }
    }
    if failed.is_none() {
        let bad: Vec<String> = res.checks.iter().enumerate().filter(|(_, c)| c.rc != Some(0)).map(|(i, c)| format!("{} {:?}", i + 1, c.command)).collect();
        if !bad.is_empty() {
            failed = Some(format!("check(s) failed in the recovered system: {}", bad.join(", ")));
        }
    }
    if let Some(f) = failed {
        return Ok(finish(res, f, con2.tail(), work, opts, &say));
    }
    // The sum of the phases (each rounded), so the parts add up to the whole.
    res.rto_seconds = booted_at.map(|_| (res.phases.iter().map(|p| p.seconds).sum::<f64>() * 10.0).round() / 10.0);
    res.result = "pass".into();
    Ok(finish_ok(res, work, opts))
}

fn now_unix() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn keep_or_remove(work: tempfile::TempDir, opts: &Options) -> Option<String> {
    if opts.keep {
        Some(work.keep().display().to_string())
    } else {
        drop(work);
        None
    }
}

fn finish(mut res: DrillResult, failure: String, tail: Vec<String>, work: tempfile::TempDir, opts: &Options, say: &Say) -> DrillResult {
    say.line(&format!("FAILED: {failure}"));
    res.failure = Some(failure);
    res.console_tail = tail;
    res.kept = keep_or_remove(work, opts);
    res.timestamp = now_unix();
    res
}

fn finish_ok(mut res: DrillResult, work: tempfile::TempDir, opts: &Options) -> DrillResult {
    res.kept = keep_or_remove(work, opts);
    res.timestamp = now_unix();
    res
}
