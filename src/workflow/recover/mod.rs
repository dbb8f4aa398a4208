//! `rescue recover`: bring the recorded system back on this machine.
//!
//! A full recovery runs in phases, each timed and logged (see
//! docs/recover.md): verify (descriptor, tools, backup) → plan (map disks,
//! show, confirm) → storage (`apply`) → restore (`backup::Backend::restore`) →
//! finalize (`boot`) → report. Nothing is written before the plan is
//! confirmed. `--plan` only shows the plan; `--layout-only` stops after the
//! storage phase with the tree mounted; `--umount` tears that down.

mod finalize;
mod report;
mod verify;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::apply::{self, ApplyOptions};
use crate::backup::{self, CheckOptions, Pick, RestoreOptions};
use crate::config::{LuksKeySource, VerifyPolicy};
use crate::context::Ctx;
use crate::error::input_error;
use crate::hooks::{self, HookEnv, Phase};
use crate::inventory::Inventory;
use crate::layout::Layout;
use crate::plan::{self, MatchReason, Plan, PlanOptions, ResizePolicy};
use crate::secrets;
use crate::target::TargetRoot;

pub use report::{PhaseTime, Report};
pub use verify::VerifyMode;

pub const EXAMPLES: &str = "\
Examples:
  rescue recover                             recover this machine (asks before writing)
  rescue recover --unattended                no questions (the rescue image's `unattended` boot entry);
                                             needs recover.unattended-proceed = true or --yes
  rescue recover --yes --map sda=/dev/nvme0n1 --url nfs://nas/backups
  rescue --json recover --yes                the report (phases, times, bytes) as JSON on stdout
  rescue recover --plan                      show what would be done, change nothing
  rescue --json recover --plan               the plan as data
  rescue recover --layout-only --map sda=/dev/nvme0n1
                                             rebuild the disks and mount them under /mnt/local
  rescue recover --layout-only --yes --luks-key cryptroot=/root/key
  rescue recover --unattended --luks-key cryptroot=usb://KEYS/cryptroot.key
                                             the key from a USB stick labelled KEYS (mounted read-only)
  rescue recover --umount                    unmount /mnt/local and close LUKS/LVM/MD";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The layout descriptor. Default: /etc/rescue/layout.toml (in the rescue image), else STATE_DIR/layout.toml.
    #[arg(long, value_name = "FILE")]
    pub layout: Option<PathBuf>,
    /// Print the plan (with --json: as data) and change nothing.
    #[arg(long, conflicts_with_all = ["layout_only", "umount"])]
    pub plan: bool,
    /// Recreate the storage and mount it under the target root, then stop.
    #[arg(long, conflicts_with = "umount")]
    pub layout_only: bool,
    /// Recover recorded disk OLD onto device NEW (repeatable), e.g. `sda=/dev/vdb`.
    #[arg(long = "map", value_name = "OLD=NEW")]
    pub map: Vec<String>,
    /// The recorded NIC OLD (name or MAC) is NIC NEW here (name or MAC; repeatable), e.g. `ens3=enp1s0`.
    #[arg(long = "map-nic", value_name = "OLD=NEW")]
    pub map_nics: Vec<String>,
    /// Do not ask for confirmation before overwriting the mapped disks.
    #[arg(long)]
    pub yes: bool,
    /// Never ask: stop on ambiguity; proceed only with --yes or `recover.unattended-proceed = true`.
    /// Also on when the kernel command line has `unattended`.
    #[arg(long)]
    pub unattended: bool,
    /// Key for a LUKS volume, by its mapper name (repeatable): a file, e.g. `cryptroot=/root/key`, or a
    /// file on a USB stick found by its filesystem label, e.g. `cryptroot=usb://KEYS/cryptroot.key`.
    #[arg(long = "luks-key", value_name = "NAME=FILE")]
    pub luks_keys: Vec<String>,
    /// The age identity of an encrypted backup: a file, or `usb://LABEL/path` (a file on a USB stick).
    /// Default: `recover.age-identity`; without either it is asked for on the terminal.
    #[arg(long, value_name = "FILE", value_parser = LuksKeySource::parse_arg)]
    pub age_identity: Option<LuksKeySource>,
    /// Unmount the tree under the target root and close LUKS/LVM/MD of the descriptor.
    #[arg(long)]
    pub umount: bool,
    /// Where the recreated tree is mounted. Default: `recover.target-root` (/mnt/local).
    /// Absolute, normalized, not `/`.
    #[arg(long, value_name = "DIR")]
    pub target_root: Option<TargetRoot>,
    /// When the backup is read in full before writing: `auto` (only when a target disk holds
    /// data; on blank disks it is checked while restoring, in one pass) or `full` (always).
    /// Default: `recover.verify` (auto).
    #[arg(long, value_enum, value_name = "WHEN", conflicts_with_all = ["layout_only", "umount"])]
    pub verify: Option<VerifyPolicy>,
    /// How partitions follow a disk of another size. Default: `recover.resize` (last).
    #[arg(long, value_enum)]
    pub resize: Option<ResizeArg>,
    /// Where the backup is. Default: backup.url from the config, else the one the descriptor records.
    #[arg(long, value_name = "URL", conflicts_with_all = ["plan", "layout_only", "umount"])]
    pub url: Option<String>,
    /// Restore this backup file of the host (default: the newest); of an incremental chain, the chain up to and including it.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["plan", "layout_only", "umount"])]
    pub archive: Option<String>,
    /// Backup server (backup.method bacula/bareos): restore this job instead of the newest backup.
    #[arg(long, value_name = "JOBID", conflicts_with_all = ["plan", "layout_only", "umount", "restore_before"])]
    pub restore_jobid: Option<u64>,
    /// Backup server: restore the newest backup made before this date (`YYYY-MM-DD[ HH:MM[:SS]]`).
    #[arg(long, value_name = "DATE", conflicts_with_all = ["plan", "layout_only", "umount"])]
    pub restore_before: Option<String>,
    /// Leave the recovered tree mounted under the target root at the end.
    #[arg(long, conflicts_with_all = ["plan", "layout_only", "umount"])]
    pub keep_mounted: bool,
    /// Regenerate the initramfs of the recovered system even when the check says it is not needed.
    #[arg(long, conflicts_with_all = ["plan", "layout_only", "umount"])]
    pub regenerate_initramfs: bool,
    /// Read the present disks from a JSON inventory instead of sysfs (tests).
    #[arg(long, value_name = "FILE", hide = true)]
    pub inventory: Option<PathBuf>,
    /// Read the present NICs from a JSON list instead of `ip` and sysfs (tests).
    #[arg(long, value_name = "FILE", hide = true)]
    pub nic_inventory: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ResizeArg {
    Last,
    Proportional,
}

fn parse_pairs(list: &[String], what: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in list {
        let Some((k, v)) = item.split_once('=').filter(|(k, v)| !k.is_empty() && !v.is_empty()) else {
            return Err(input_error(format!("{what} {item:?} is not of the form NAME=VALUE")));
        };
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let target_root = a.target_root.clone().unwrap_or_else(|| ctx.config.recover.target_root.clone());
    let layout_path = a.layout.clone().unwrap_or_else(|| default_layout_path(ctx));
    let unattended = a.unattended || kernel_asks_unattended();
    target_root.check_no_symlink()?;

    if a.umount {
        let layout = if layout_path.exists() { Some(Layout::load(&layout_path)?) } else { None };
        let done = apply::teardown_target(&target_root, layout.as_ref())?;
        if ctx.json {
            println!("{}", serde_json::json!({ "done": done }));
        } else if done.is_empty() {
            println!("nothing that rescue mounted under {} and nothing of the descriptor open", target_root.display());
        } else {
            for d in done {
                println!("{d}");
            }
        }
        return Ok(0);
    }
    if !a.plan && !a.layout_only {
        return full_recovery(ctx, &a, &layout_path, &target_root, unattended);
    }

    let layout = Layout::load(&layout_path)?;
    let interactive = !unattended && !ctx.json && std::io::stdin().is_terminal();
    let keys = if a.plan { secrets::Keys::default() } else { read_luks_keys(ctx, &a, &layout, interactive)? };
    let protect: Vec<(PathBuf, &str)> = keys.devices.iter().map(|d| (d.clone(), "holds a LUKS key")).collect();
    let the_plan = make_plan(ctx, &a, &layout, &target_root, interactive, &protect)?;
    if a.plan {
        show_plan(ctx, &the_plan, Some(&verify_mode(ctx, &a, &the_plan)))?;
        return Ok(0);
    }
    if !ctx.json {
        print!("{the_plan}");
    }
    confirm_overwrite(ctx, &a, &the_plan, unattended, interactive)?;
    let tools = crate::cmd::WarningMark::now();
    recreate_storage(ctx, &the_plan, keys, interactive)?;
    let notes = the_plan.notes.iter().map(|n| format!("plan: {n}"));
    let warnings: Vec<String> = notes.chain(tools.since().into_iter().map(|w| format!("tool {w}"))).collect();
    if ctx.json {
        println!("{}", serde_json::json!({ "plan": the_plan, "result": "done", "warnings": warnings }));
    } else {
        print!("{}", report::warnings_text(&warnings));
        println!(
            "Storage recreated and mounted under {}. Restore files there; `rescue recover --umount` unmounts it and closes LUKS/LVM/MD.",
            target_root.display()
        );
    }
    Ok(0)
}

/// When the backup's content is checked, for writing the disks of `the_plan`.
fn verify_mode(ctx: &Ctx, a: &Args, the_plan: &Plan) -> VerifyMode {
    let policy = a.verify.unwrap_or(ctx.config.recover.verify);
    verify::mode(&the_plan.target_disks(), policy, ctx.config.recover.verify_archive, apply::holds_data)
}

/// Print the plan (with --json: as data), and when the backup is checked.
fn show_plan(ctx: &Ctx, the_plan: &Plan, mode: Option<&VerifyMode>) -> Result<()> {
    #[derive(serde::Serialize)]
    struct Shown<'a> {
        #[serde(flatten)]
        plan: &'a Plan,
        #[serde(skip_serializing_if = "Option::is_none")]
        verify: Option<&'a VerifyMode>,
    }
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&Shown { plan: the_plan, verify: mode })?);
    } else {
        print!("{the_plan}");
        if let Some(m) = mode {
            println!("{m}");
        }
    }
    Ok(())
}

/// The descriptor of the rescue image, else the saved one.
fn default_layout_path(ctx: &Ctx) -> PathBuf {
    let image = Path::new(crate::image::initramfs::IMAGE_LAYOUT);
    if image.is_file() {
        image.to_path_buf()
    } else {
        ctx.config.layout_path()
    }
}

/// `unattended` as a word of the kernel command line (the rescue image's boot entry).
fn kernel_asks_unattended() -> bool {
    std::fs::read_to_string("/proc/cmdline").map(|c| cmdline_has_word(&c, "unattended")).unwrap_or(false)
}

fn cmdline_has_word(cmdline: &str, word: &str) -> bool {
    cmdline.split_whitespace().any(|w| w == word)
}

/// The LUKS keys of the descriptor's volumes (`recover.luks-keys`, then
/// `--luks-key`), read now: a missing stick or file stops before any write.
fn read_luks_keys(ctx: &Ctx, a: &Args, layout: &Layout, interactive: bool) -> Result<secrets::Keys> {
    let mut sources = ctx.config.recover.luks_keys.clone();
    for (name, value) in parse_pairs(&a.luks_keys, "--luks-key")? {
        sources.insert(name, LuksKeySource::parse(&value)?);
    }
    let volumes: Vec<String> = layout.luks.iter().map(|l| l.name.clone()).collect();
    let wait = std::time::Duration::from_secs(ctx.config.backup.timeout);
    secrets::read_keys(&sources, &volumes, interactive, wait, ctx.config.backup.timeout * 3)
}

/// Map the disks (asking when interactive and ambiguous) and compute the plan. No side effects.
/// `protect`: devices (and why) whose disks must never be targets.
fn make_plan(ctx: &Ctx, a: &Args, layout: &Layout, target_root: &TargetRoot, interactive: bool, protect: &[(PathBuf, &str)]) -> Result<Plan> {
    let mut map: BTreeMap<String, String> = ctx.config.mapping.clone();
    map.extend(parse_pairs(&a.map, "--map")?);
    let resize = match a.resize {
        Some(ResizeArg::Last) => ResizePolicy::Last,
        Some(ResizeArg::Proportional) => ResizePolicy::Proportional,
        None => ctx.config.recover.resize,
    };
    let mut opts = PlanOptions { resize, map, target_root: target_root.clone() };
    let inv = match &a.inventory {
        Some(f) => {
            let text = std::fs::read_to_string(f).with_context(|| format!("reading the inventory {}", f.display()))?;
            serde_json::from_str(&text).with_context(|| format!("parsing the inventory {}", f.display()))?
        }
        None => Inventory::read_live(target_root)?,
    };
    let mut inv = inv;
    for (dev, why) in protect {
        protect_disk(&mut inv, dev, why);
    }
    let mut chosen = Vec::new();
    let mapping = loop {
        match plan::map(layout, &inv, &opts) {
            Ok(m) => break m,
            Err(problem) if interactive && problem.errors.is_empty() && problem.missing.is_empty() => {
                let amb = &problem.ambiguous[0];
                let dev = ask_choice(layout, &amb.disk, &amb.candidates)?;
                opts.map.insert(amb.disk.clone(), dev.clone());
                chosen.push(amb.disk.clone());
            }
            Err(problem) => return Err(input_error(format!("cannot map the recorded disks:\n{problem}"))),
        }
    };
    let mapping = mapping
        .into_iter()
        .map(|mut m| {
            if chosen.contains(&m.recorded) {
                m.reason = MatchReason::Chosen;
            }
            m
        })
        .collect();
    let mut the_plan = plan::build_with_mapping(layout, &inv, &opts, mapping)?;
    map_nics(ctx, a, layout, &mut the_plan)?;
    Ok(the_plan)
}

/// Map the recorded NICs to this machine's, into the plan. An ambiguity
/// stops (`--map-nic` decides); NICs that cannot be read leave the
/// recovered system's network config as it was, with a note.
fn map_nics(ctx: &Ctx, a: &Args, layout: &Layout, the_plan: &mut Plan) -> Result<()> {
    let Some(net) = layout.network.as_ref().filter(|n| n.nics().next().is_some()) else { return Ok(()) };
    let present = match &a.nic_inventory {
        Some(f) => crate::inventory::read_nics_file(f)?,
        None => match crate::inventory::read_nics_live() {
            Ok(p) => p,
            Err(e) => {
                the_plan.notes.push(format!("the NICs of this machine could not be read ({e:#}): the recovered system's network config is kept as it was"));
                return Ok(());
            }
        },
    };
    let mut map = ctx.config.network_mapping.clone();
    map.extend(parse_pairs(&a.map_nics, "--map-nic")?);
    the_plan.nics =
        plan::nics::map_nics(net, &present, &map).map_err(|p| input_error(format!("cannot map the recorded network interfaces; nothing was written:\n{p}")))?;
    Ok(())
}

/// Mark the disk holding `dev` (the backup's device, a key stick) busy, so it is never mapped.
/// `why`: what it holds, for the message ("holds the backup").
fn protect_disk(inv: &mut Inventory, dev: &Path, why: &str) {
    // `/dev/disk/by-label/X` is a link to the node; a partition counts for its disk.
    let disk = crate::util::disk_of_device(dev).unwrap_or_else(|| dev.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    for d in inv.disks.iter_mut().filter(|d| d.name == disk) {
        d.busy.push(format!("{why} ({})", dev.display()));
    }
}

/// Ask before overwriting, or check that unattended mode may proceed.
fn confirm_overwrite(ctx: &Ctx, a: &Args, the_plan: &Plan, unattended: bool, interactive: bool) -> Result<()> {
    if a.yes {
        return Ok(());
    }
    let disks: Vec<String> = the_plan.target_disks().iter().map(|d| d.display().to_string()).collect();
    if unattended || !interactive {
        if unattended && ctx.config.recover.unattended_proceed {
            return Ok(());
        }
        return Err(input_error(format!(
            "not overwriting {} without confirmation: pass --yes{}; nothing was written",
            disks.join(", "),
            if unattended { ", or set recover.unattended-proceed = true in the rescue image's config" } else { "" }
        )));
    }
    if !confirm(&disks)? {
        return Err(input_error("cancelled; nothing was written"));
    }
    Ok(())
}

/// Execute the storage plan; the tree stays mounted under the target root.
fn recreate_storage(ctx: &Ctx, the_plan: &Plan, keys: secrets::Keys, interactive: bool) -> Result<()> {
    let luks_keys = keys.keys;
    let ask = |name: &str| ask_passphrase(name);
    let quiet = ctx.verbosity < 0 || ctx.json;
    let progress = |i: usize, n: usize, op: &plan::Operation| {
        tracing::debug!("[{}/{n}] {op}", i + 1);
        if !quiet {
            eprintln!("[{}/{n}] {op}", i + 1);
        }
    };
    let apply_opts = ApplyOptions { luks_keys, ask_key: if interactive { Some(&ask) } else { None }, progress: &progress };
    apply::apply(the_plan, &apply_opts)
}

/// What a person does next when a phase failed. `mounted`: the tree was
/// left mounted under the target root (`--keep-mounted`).
fn next_step(phase: &str, root: &Path, mounted: bool) -> String {
    let root = root.display();
    match phase {
        "verify" | "plan" => "nothing was written to any disk. Fix the cause above and run `rescue recover` again".into(),
        "storage" => "the target disks are partly rebuilt (what was opened is closed again). Fix the cause and run \
                      `rescue recover` again: it wipes the target disks and starts over"
            .into(),
        "restore" if mounted => format!(
            "the storage is rebuilt and mounted under {root}, the data is incomplete and no bootloader was installed. \
             Fix the cause and run `rescue recover` again (it starts over), or restore by hand with `rescue restoreonly`"
        ),
        "restore" => "the target disks hold new, empty-or-partial filesystems and no bootloader was installed (they do not \
                      boot); everything was unmounted and closed again. Fix the cause (e.g. another backup with --archive NAME \
                      or --url URL) and run `rescue recover` again: it starts over"
            .into(),
        _ => format!(
            "the data is restored under {root} (still mounted), but the system may not boot yet. Fix the cause (e.g. in \
             `chroot {root}`) or run `rescue recover` again; `rescue recover --umount` unmounts everything"
        ),
    }
}

/// Whether the tree is unmounted (LUKS closed, VGs deactivated) at the end:
/// after success, and after a failed restore (the data is unusable, a re-run
/// starts over), unless `--keep-mounted`. After a failed finalize the tree
/// stays mounted for a fix in `chroot`.
fn tear_down_after(failed_phase: Option<&str>, keep_mounted: bool) -> bool {
    !keep_mounted && matches!(failed_phase, None | Some("restore"))
}

/// The whole recovery, phase by phase. The report is printed (and with
/// `--json` written as data) whether it succeeds or not.
fn full_recovery(ctx: &Ctx, a: &Args, layout_path: &Path, target_root: &TargetRoot, unattended: bool) -> Result<i32> {
    let started = Instant::now();
    let log_mark = report::LogMark::now(&ctx.config.log_dir);
    let tools = crate::cmd::WarningMark::now();
    let quiet = ctx.verbosity < 0;
    let progress = !quiet && !ctx.json;
    let mut rep = Report::new(layout_path, target_root.path(), unattended);
    let interactive = !unattended && !ctx.json && std::io::stdin().is_terminal();
    let mut phases = report::Phases::new(quiet);
    let age_key = secrets::age_key(&ctx.config, a.age_identity.clone(), interactive);
    let terminal = interactive.then_some(&secrets::Terminal as &dyn backup::Ask);

    let result = (|| -> Result<()> {
        let (layout, needs, source, used, keys) = phases.run(&mut rep, "verify", "descriptor, tools, backup", |rep| {
            let layout = Layout::load(layout_path).map_err(|e| {
                if layout_path.exists() {
                    e
                } else {
                    input_error(format!(
                        "there is no layout descriptor at {}: boot the rescue image made by `rescue mkbackup`/`rescue mkrescue`, \
                         or pass --layout FILE",
                        layout_path.display()
                    ))
                }
            })?;
            rep.host = layout.host.hostname.clone();
            let pick = Pick { archive: a.archive.clone(), jobid: a.restore_jobid, before: a.restore_before.clone() };
            let source = backup::for_recovery(&ctx.config.backup, a.url.as_deref(), &layout)?;
            // Before the backup's storage is reached and any disk touched: a failure stops here.
            let env = HookEnv { target_root: target_root.path().to_path_buf(), archive: Some(source.describe()), ..Default::default() };
            rep.hooks.extend(hooks::run(&ctx.config.hooks, Phase::PreRecover, &env)?);
            let needs = verify::needs_of(&layout, &ctx.config, source.as_ref());
            let tools = verify::check_tools(&needs)?;
            tracing::info!("descriptor {} of {} is valid; {} programs present", layout_path.display(), layout.host.hostname, tools);
            // Before the long archive check: a missing key stick is found in seconds.
            let keys = read_luks_keys(ctx, a, &layout, interactive)?;
            // The archive's start (and its encryption) now; its content
            // after the plan, in full or while restoring (`VerifyMode`).
            let opts = CheckOptions { verify: false, progress, keys: &age_key, ask: terminal };
            let used = source.check(Some(&layout), &pick, &opts)?;
            rep.backup = Some(used.clone());
            Ok((layout, needs, source, used, keys))
        })?;

        let the_plan = phases.run(&mut rep, "plan", "map disks, show the plan", |rep| {
            let mut protect: Vec<(PathBuf, &str)> = keys.devices.iter().map(|d| (d.clone(), "holds a LUKS key")).collect();
            protect.extend(age_key.device().map(|d| (d, "holds the age identity")));
            if let Some(dev) = rep.backup.as_ref().and_then(|b| b.device.clone()) {
                protect.push((dev, "holds the backup"));
            }
            let p = make_plan(ctx, a, &layout, target_root, interactive, &protect)?;
            rep.mapping = p.mapping.iter().map(report::MappedDisk::from).collect();
            rep.nics = p.nics.assignments.clone();
            rep.warnings.extend(p.notes.iter().map(|n| format!("plan: {n}")));
            verify::check_wipe_tools(&p)?;
            let mode = verify_mode(ctx, a, &p);
            tracing::info!("{mode}");
            if !ctx.json {
                show_plan(ctx, &p, Some(&mode))?;
            }
            rep.verify_mode = Some(mode);
            confirm_overwrite(ctx, a, &p, unattended, interactive)?;
            Ok(p)
        })?;

        let one_pass = rep.verify_mode.as_ref().is_some_and(VerifyMode::one_pass);
        let mut used = used;
        // Only a backup the verify phase could have read but did not (an archive) is read again.
        if !one_pass && used.unread {
            phases.add_one();
            used = phases.run(&mut rep, "check", "read the whole backup against its manifest before writing", |rep| {
                let opts = CheckOptions { verify: true, progress, keys: &age_key, ask: terminal };
                let mut used = source.check(Some(&layout), &used.pick, &opts)?;
                if let Some(paths) = used.listing.take() {
                    verify::check_target(&needs, &layout, |p| paths.contains(p))?;
                }
                rep.backup = Some(used.clone());
                Ok(used)
            })?;
        }

        phases.run(&mut rep, "storage", "partitions, RAID, LUKS, LVM, filesystems, mounts", |_| recreate_storage(ctx, &the_plan, keys, interactive))?;

        let mut selinux_labels_restored = false;
        phases.run(&mut rep, "restore", "the data", |rep| {
            let from = backup_name(rep).unwrap_or_default();
            let why = match &rep.verify_mode {
                Some(VerifyMode::OnePass { why }) => format!(" (checked in the restore's one pass: {why})"),
                _ if used.unread => " (it was not read before the disks were rewritten)".to_string(),
                _ => String::new(),
            };
            let restored = source
                .restore(Some(&layout), &used.pick, target_root.path(), &RestoreOptions { progress, keys: &age_key, ask: terminal })
                .with_context(|| format!("the data could not be restored from {from}{why}"))?;
            let r = restored.files();
            rep.restored = Some(report::Restored { entries: r.entries, bytes: r.bytes });
            if let Some(b) = rep.backup.as_mut().filter(|_| one_pass) {
                b.verified = r.manifest_checked && r.damaged.is_empty();
            }
            selinux_labels_restored = r.selinux_labels.is_some_and(|l| l.complete());
            rep.warnings.extend(r.refused.iter().map(|s| format!("restore: refused member {s}")));
            rep.warnings.extend(r.warnings.iter().map(|s| format!("restore: {s}")));
            if !r.manifest_checked {
                rep.warnings.push("restore: the archive has no manifest; file checksums were not checked".into());
            }
            if !r.damaged.is_empty() {
                anyhow::bail!(
                    "{} restored files differ from the backup's checksums (first: {}){why}; the backup medium or this machine's \
                     disks return bad data. The bootloader was not installed",
                    r.damaged.len(),
                    r.damaged[0]
                );
            }
            Ok(())
        })?;

        phases.run(&mut rep, "finalize", "fstab, initramfs, bootloader", |rep| {
            let opts = finalize::Options { force_initramfs: a.regenerate_initramfs, selinux_labels_restored };
            let done = finalize::run(&layout, &needs, &the_plan, target_root, &opts)?;
            rep.warnings.extend(done.warnings);
            rep.finalize = done.steps;
            // In the recovered system, now complete; its failure is a warning (the system is recovered).
            let env = HookEnv {
                target_root: target_root.path().to_path_buf(),
                archive: backup_name(rep),
                result: None,
                chroot: Some(target_root.path().to_path_buf()),
            };
            let _binds = match ctx.config.hooks.post_recover {
                Some(_) => Some(
                    crate::boot::ChrootMounts::new(target_root.path())
                        .context("binding /dev, /proc, /sys and /run into the recovered system for the post-recover hook")?,
                ),
                None => None,
            };
            if let Some(h) = hooks::run(&ctx.config.hooks, Phase::PostRecover, &env)? {
                if !h.ok() {
                    rep.warnings.push(h.failure());
                }
                rep.hooks.push(h);
            }
            Ok(())
        })?;
        Ok(())
    })();

    rep.add_tool_warnings(&tools);
    rep.finish(started, &phases, result.as_ref().err(), |p| next_step(p, target_root.path(), a.keep_mounted));
    let mut code = match &result {
        Ok(()) => 0,
        Err(e) => crate::error::exit_code_for(e),
    };
    // The log goes into the recovered system (when its tree is there) and
    // into the rescue system's log directory.
    if result.is_ok() {
        match rep.write_into(target_root, &log_mark) {
            Ok(p) => rep.log = Some(p),
            Err(e) => rep.warnings.push(format!("could not write the recovery log into the recovered system: {e:#}")),
        }
    }
    let _ = rep.write_to_dir(&ctx.config.log_dir, &log_mark);
    if tear_down_after(rep.failed_phase.as_deref(), a.keep_mounted) {
        let t = Instant::now();
        let layout = Layout::load(layout_path).ok();
        match apply::teardown_target(target_root, layout.as_ref()) {
            Ok(done) => tracing::debug!("unmounted: {done:?}"),
            Err(e) => {
                rep.warnings.push(format!("unmounting {} failed: {e:#}; run `rescue recover --umount`", target_root.display()));
                code = crate::error::EXIT_FAILURE;
                if let Some(p) = &rep.failed_phase {
                    rep.next_step = Some(next_step(p, target_root.path(), true));
                }
            }
        }
        rep.unmount_seconds = Some(t.elapsed().as_secs_f64());
        rep.add_tool_warnings(&tools);
    }
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else if !quiet || result.is_err() {
        eprint!("{}", rep.text());
    }
    match result {
        Ok(()) => Ok(code),
        Err(e) => {
            // The cause first, then what to do: the last lines a person reads.
            let phase = rep.failed_phase.clone().unwrap_or_default();
            let what_now = rep.next_step.clone().unwrap_or_else(|| next_step(&phase, target_root.path(), a.keep_mounted));
            let msg = format!("recovery stopped in phase {phase}: {e:#}\nWhat now: {what_now}");
            Err(if crate::error::exit_code_for(&e) == crate::error::EXIT_INPUT { input_error(msg) } else { anyhow::anyhow!(msg) })
        }
    }
}

/// The backup the verify phase found: its URL and archive.
fn backup_name(rep: &Report) -> Option<String> {
    rep.backup.as_ref().map(|b| format!("{}{}", b.url, b.archive.as_ref().map(|a| format!(" {a}")).unwrap_or_default()))
}

fn ask_choice(layout: &Layout, disk: &str, candidates: &[PathBuf]) -> Result<String> {
    let size = layout.disk(disk).map(|d| crate::util::human_bytes(d.size)).unwrap_or_default();
    loop {
        eprintln!("Recorded disk {disk} ({size}) could go to more than one disk:");
        for (i, c) in candidates.iter().enumerate() {
            eprintln!("  {}) {}", i + 1, c.display());
        }
        eprint!("Number of the disk to use for {disk} (or q to stop): ");
        let _ = std::io::stderr().flush();
        let ans = secrets::read_line()?;
        if ans == "q" || ans.is_empty() {
            return Err(input_error(format!("no disk chosen for {disk}; nothing was written")));
        }
        if let Some(c) = ans.parse::<usize>().ok().and_then(|n| candidates.get(n.wrapping_sub(1))) {
            return Ok(c.display().to_string());
        }
    }
}

fn confirm(disks: &[String]) -> Result<bool> {
    eprint!("This erases ALL data on {}. Type YES to continue: ", disks.join(", "));
    let _ = std::io::stderr().flush();
    Ok(secrets::read_line()? == "YES")
}

/// Ask for a LUKS passphrase twice, without echo.
fn ask_passphrase(name: &str) -> Result<Vec<u8>> {
    loop {
        let a = secrets::read_hidden(&format!("Passphrase for the new LUKS volume {name}: "))?;
        let b = secrets::read_hidden("Again: ")?;
        if a.is_empty() {
            eprintln!("An empty passphrase is not allowed.");
        } else if a != b {
            eprintln!("The passphrases differ; try again.");
        } else {
            return Ok(a.into_bytes());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::inventory::PresentDisk;

    #[test]
    fn unattended_is_a_whole_word_of_the_kernel_command_line() {
        assert!(cmdline_has_word("BOOT_IMAGE=/boot/vmlinuz console=ttyS0 unattended quiet\n", "unattended"));
        assert!(!cmdline_has_word("rescue.unattended=0 quiet", "unattended"));
    }

    #[test]
    fn a_failed_restore_is_torn_down_and_says_so() {
        assert!(tear_down_after(None, false) && tear_down_after(Some("restore"), false));
        assert!(!tear_down_after(Some("finalize"), false), "kept mounted for a fix in chroot");
        assert!(!tear_down_after(Some("restore"), true) && !tear_down_after(None, true), "--keep-mounted");
        let root = Path::new("/mnt/local");
        let gone = next_step("restore", root, false);
        assert!(gone.contains("no bootloader was installed") && gone.contains("unmounted") && !gone.contains("/mnt/local"), "{gone}");
        let kept = next_step("restore", root, true);
        assert!(kept.contains("mounted under /mnt/local") && kept.contains("no bootloader was installed"), "{kept}");
        assert!(next_step("finalize", root, false).contains("chroot /mnt/local"));
    }

    #[test]
    fn the_disk_holding_the_backup_is_never_a_target() {
        let disk = |n: &str| PresentDisk { name: n.into(), path: format!("/dev/{n}").into(), size: 1 << 30, logical_sector_size: 512, ..Default::default() };
        let mut inv = Inventory { disks: vec![disk("sdzz"), disk("sdzy")] };
        protect_disk(&mut inv, Path::new("/dev/sdzz"), "holds the backup");
        assert_eq!(inv.disks[0].busy, vec!["holds the backup (/dev/sdzz)".to_string()]);
        assert!(inv.disks[1].busy.is_empty());
        // Through a link (`/dev/disk/by-label/X`): the node it points to.
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("sdzy"), "").unwrap();
        std::os::unix::fs::symlink(d.path().join("sdzy"), d.path().join("BACKUP")).unwrap();
        protect_disk(&mut inv, &d.path().join("BACKUP"), "holds a LUKS key");
        assert_eq!(inv.disks[1].busy.len(), 1, "{:?}", inv.disks[1]);
        assert!(inv.disks[1].busy[0].starts_with("holds a LUKS key ("), "{:?}", inv.disks[1]);
    }
}
