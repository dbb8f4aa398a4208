//! The command line: one clap-derive tree. Each command's arguments and code
//! live in `workflow::<command>`; this file only wires them together.

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use crate::config::{Config, DEFAULT_CONFIG_PATH};
use crate::context::Ctx;
use crate::error::{exit_code_for, EXIT_INPUT};
use crate::workflow;

const ABOUT: &str = "Bare-metal recovery for Linux: record the storage layout, build a rescue image, back up, recover.";

const LONG_ABOUT: &str = "\
rescue records how a server's storage is built (disks, partitions, RAID, LUKS, LVM,
filesystems, mounts, bootloader) in a readable TOML descriptor, and uses it to bring
the server back on the same or on different hardware.

Exit codes: 0 success; 1 changed / check failed / completed with warnings (where the
command says so); 2 usage or input error; 3 runtime failure.";

const EXAMPLES: &str = "\
Examples:
  rescue savelayout                      record the layout to /var/lib/rescue/layout.toml
  rescue checklayout || rescue mkrescue  record the layout and rebuild the image when recovery would differ
  rescue layout show /var/lib/rescue/layout.toml
  rescue dump                            effective config and what rescue sees on this system";

#[derive(Debug, Parser)]
#[command(name = "rescue", version, about = ABOUT, long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct Cli {
    /// Config file.
    #[arg(long, global = true, value_name = "FILE", env = "RESCUE_CONFIG")]
    pub config: Option<PathBuf>,
    /// More output (-vv for trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print data as JSON on stdout (for commands whose output is data).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Record the storage layout of this system in a descriptor file.
    #[command(after_long_help = workflow::savelayout::EXAMPLES)]
    Savelayout(workflow::savelayout::Args),
    /// Would recovery from the saved descriptor differ from this system now? (exit 0 no, 1 yes, 2 error).
    #[command(after_long_help = workflow::checklayout::EXAMPLES)]
    Checklayout(workflow::checklayout::Args),
    /// Recover this machine: recreate the storage, restore the backup, make it boot (--plan shows the storage plan).
    #[command(after_long_help = workflow::recover::EXAMPLES)]
    Recover(workflow::recover::Args),
    /// Prove that the backup restores: recover the rescue ISO into a throwaway VM and boot the result.
    #[command(after_long_help = workflow::drill::EXAMPLES)]
    Drill(workflow::drill::Args),
    /// Record the layout, then build the rescue image (ISO, PXE, USB, raw disk) holding it (exit 1: data in no backup).
    #[command(after_long_help = workflow::mkrescue::EXAMPLES)]
    Mkrescue(workflow::mkrescue::Args),
    /// Prepare a USB disk as bootable rescue media with room for backups.
    #[command(after_long_help = workflow::format::EXAMPLES)]
    Format(workflow::format::Args),
    /// Install a timer that refreshes the rescue image when the layout changes.
    #[command(after_long_help = workflow::schedule::EXAMPLES)]
    Schedule(workflow::schedule::Args),
    /// Show the effective configuration and what rescue finds on this system.
    #[command(after_long_help = workflow::dump::EXAMPLES)]
    Dump(workflow::dump::Args),
    /// Work with descriptor files: validate, show.
    #[command(subcommand)]
    Layout(workflow::layoutcmd::LayoutCommand),
    /// Archives: create, extract, list, verify (pax tar, zstd or gzip; GNU tar reads them).
    #[command(subcommand)]
    Archive(workflow::archive::ArchiveCommand),
    /// Record the layout, back up to backup.url and build the rescue image, in that order.
    #[command(after_long_help = workflow::mkbackup::EXAMPLES)]
    Mkbackup(workflow::mkbackup::Args),
    /// Back up the filesystems recorded in the descriptor to backup.url (no rescue image).
    #[command(after_long_help = workflow::mkbackuponly::EXAMPLES)]
    Mkbackuponly(workflow::mkbackuponly::Args),
    /// Restore the newest backup into a prepared target root (default /mnt/local).
    #[command(after_long_help = workflow::restoreonly::EXAMPLES)]
    Restoreonly(workflow::restoreonly::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_long_help = "Example:\n  rescue completions bash > /etc/bash_completion.d/rescue")]
    Completions { shell: clap_complete::Shell },
    /// Write man pages for rescue and every subcommand into DIR.
    #[command(after_long_help = "Example:\n  rescue manpages /usr/local/share/man/man8")]
    Manpages { dir: PathBuf },
    /// Write the Debian package's files besides the executable (scripts/build-deb.sh).
    #[command(hide = true, after_long_help = "Example:\n  rescue package-tree target/deb/tree")]
    PackageTree(workflow::package::Args),
}

/// Parse, run, print the error chain once, and return the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_INPUT } else { 0 };
        }
    };
    let verbosity = if cli.quiet { -1 } else { cli.verbose.min(3) as i8 };
    let (config_path, explicit) = match &cli.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    };
    let config = match Config::load(&config_path, explicit) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rescue: error: {e:#}");
            return exit_code_for(&e);
        }
    };
    let log_dir = match &cli.command {
        // Pure file and help commands do not need a log.
        Command::Completions { .. } | Command::Manpages { .. } | Command::PackageTree(_) | Command::Layout(_) => None,
        _ => Some(config.log_dir.clone()),
    };
    crate::logging::init(verbosity, log_dir.as_deref(), command_name(&cli.command));
    let ctx = Ctx { config, config_path, json: cli.json, verbosity };
    match run(&ctx, cli.command) {
        Ok(code) => code,
        Err(e) => {
            tracing::debug!("error: {e:?}");
            eprintln!("rescue: error: {e:#}");
            exit_code_for(&e)
        }
    }
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Savelayout(_) => "savelayout",
        Command::Checklayout(_) => "checklayout",
        Command::Recover(_) => "recover",
        Command::Drill(_) => "drill",
        Command::Dump(_) => "dump",
        Command::Mkrescue(_) => "mkrescue",
        Command::Format(_) => "format",
        Command::Schedule(_) => "schedule",
        Command::Layout(_) => "layout",
        Command::Archive(_) => "archive",
        Command::Mkbackup(_) => "mkbackup",
        Command::Mkbackuponly(_) => "mkbackuponly",
        Command::Restoreonly(_) => "restoreonly",
        Command::Completions { .. } => "completions",
        Command::Manpages { .. } => "manpages",
        Command::PackageTree(_) => "package-tree",
    }
}

fn run(ctx: &Ctx, command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Savelayout(a) => workflow::savelayout::run(ctx, a),
        Command::Checklayout(a) => workflow::checklayout::run(ctx, a),
        Command::Recover(a) => workflow::recover::run(ctx, a),
        Command::Drill(a) => workflow::drill::run(ctx, a),
        Command::Dump(a) => workflow::dump::run(ctx, a),
        Command::Mkrescue(a) => workflow::mkrescue::run(ctx, a),
        Command::Format(a) => workflow::format::run(ctx, a),
        Command::Schedule(a) => workflow::schedule::run(ctx, a),
        Command::Layout(c) => workflow::layoutcmd::run(ctx, c),
        Command::Archive(c) => workflow::archive::run(ctx, c),
        Command::Mkbackup(a) => workflow::mkbackup::run(ctx, a),
        Command::Mkbackuponly(a) => workflow::mkbackuponly::run(ctx, a),
        Command::Restoreonly(a) => workflow::restoreonly::run(ctx, a),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "rescue", &mut std::io::stdout());
            Ok(0)
        }
        Command::Manpages { dir } => {
            write_manpages(&dir)?;
            Ok(0)
        }
        Command::PackageTree(a) => workflow::package::run(a),
    }
}

/// One man page for `rescue` and one per subcommand (`rescue-savelayout.8`...).
pub fn write_manpages(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cmd = Cli::command();
    let mut pages = vec![("rescue".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages.push((format!("rescue-{}", sub.get_name()), sub.clone().name(format!("rescue-{}", sub.get_name()))));
    }
    for (name, c) in pages {
        let mut buf = Vec::new();
        clap_mangen::Man::new(c).section("8").render(&mut buf)?;
        let path = dir.join(format!("{name}.8"));
        std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
