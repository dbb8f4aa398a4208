//! `rescue schedule`: keep the rescue image current. Installs a systemd
//! timer (or a cron line where systemd is not running) that runs
//! `rescue checklayout || rescue mkrescue`, and optionally `rescue mkbackup`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cmd::{shell_quote, Cmd};
use crate::context::Ctx;

pub const EXAMPLES: &str = "\
Examples:
  rescue schedule                         show what --install would write
  rescue schedule --install               daily refresh of the rescue image (systemd timer)
  rescue schedule --install --mkbackup-calendar 'Sun 02:00'
  rescue schedule --install --root /tmp/sysroot --method cron";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write the files (and enable the timer when writing to /). Without it, print them.
    #[arg(long)]
    pub install: bool,
    /// Root directory to write under (for images and tests).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// systemd timer or cron line (auto: systemd when it runs the system).
    #[arg(long, value_enum, default_value = "auto")]
    pub method: Method,
    /// When to refresh the image (systemd OnCalendar syntax; cron gets the daily time).
    #[arg(long, value_name = "WHEN", default_value = "daily")]
    pub calendar: String,
    /// Also run `rescue mkbackup` at this time (systemd OnCalendar syntax).
    #[arg(long, value_name = "WHEN")]
    pub mkbackup_calendar: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    Auto,
    Systemd,
    Cron,
}

/// The shell command the timer (or cron) runs to keep the image current:
/// rebuild it when recovery would differ. `mkrescue` records the layout
/// itself, so the image then holds the change, and the next check passes.
pub fn refresh_command(rescue: &Path, config: &Path) -> String {
    let bin = shell_quote(&rescue.display().to_string());
    let cfg = shell_quote(&config.display().to_string());
    format!("{bin} --config {cfg} checklayout || {bin} --config {cfg} mkrescue")
}

/// The files to write, as (path under root, content).
pub fn files(rescue: &Path, config: &Path, method: Method, calendar: &str, mkbackup: Option<&str>) -> Vec<(PathBuf, String)> {
    let bin = shell_quote(&rescue.display().to_string());
    let cfg = shell_quote(&config.display().to_string());
    let refresh = refresh_command(rescue, config);
    match method {
        Method::Cron => {
            let mut text = format!(
                "# Written by `rescue schedule --install`: keep the rescue image current.\n\
                 SHELL=/bin/sh\nPATH=/usr/sbin:/usr/bin:/sbin:/bin\n\
                 17 3 * * * root {refresh} 2>&1 | logger -t rescue\n"
            );
            if mkbackup.is_some() {
                text += &format!("47 2 * * 0 root {bin} --config {cfg} mkbackup 2>&1 | logger -t rescue\n");
            }
            vec![("etc/cron.d/rescue".into(), text)]
        }
        _ => {
            let mut v = vec![
                (
                    "etc/systemd/system/rescue-mkrescue.service".into(),
                    format!(
                        "# Written by `rescue schedule --install`.\n[Unit]\nDescription=Refresh the rescue image when the storage layout changed\n\
                         Documentation=man:rescue-mkrescue(8)\n\n[Service]\nType=oneshot\nExecStart=/bin/sh -c {}\n",
                        shell_quote(&refresh)
                    ),
                ),
                (
                    "etc/systemd/system/rescue-mkrescue.timer".into(),
                    format!(
                        "# Written by `rescue schedule --install`.\n[Unit]\nDescription=Refresh the rescue image regularly\n\n\
                         [Timer]\nOnCalendar={calendar}\nPersistent=true\nRandomizedDelaySec=15min\n\n[Install]\nWantedBy=timers.target\n"
                    ),
                ),
            ];
            if let Some(when) = mkbackup {
                v.push((
                    "etc/systemd/system/rescue-mkbackup.service".into(),
                    format!(
                        "# Written by `rescue schedule --install`.\n[Unit]\nDescription=Back up this system with rescue\n\
                         Documentation=man:rescue-mkbackup(8)\n\n[Service]\nType=oneshot\nExecStart={} --config {} mkbackup\n",
                        rescue.display(),
                        config.display()
                    ),
                ));
                v.push((
                    "etc/systemd/system/rescue-mkbackup.timer".into(),
                    format!(
                        "# Written by `rescue schedule --install`.\n[Unit]\nDescription=Back up this system regularly\n\n\
                         [Timer]\nOnCalendar={when}\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n"
                    ),
                ));
            }
            v
        }
    }
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let method = match args.method {
        Method::Auto if args.root.join("run/systemd/system").is_dir() || (args.root != Path::new("/") && args.root.join("etc/systemd/system").is_dir()) => {
            Method::Systemd
        }
        Method::Auto => Method::Cron,
        m => m,
    };
    let rescue = std::env::current_exe().context("finding the rescue executable")?;
    let config = std::fs::canonicalize(&ctx.config_path).unwrap_or_else(|_| ctx.config_path.clone());
    let files = files(&rescue, &config, method, &args.calendar, args.mkbackup_calendar.as_deref());
    if !args.install {
        for (p, text) in &files {
            println!("# {}\n{text}", args.root.join(p).display());
        }
        println!("# (nothing written: add --install)");
        return Ok(0);
    }
    for (p, text) in &files {
        let path = args.root.join(p);
        crate::util::write_atomic(&path, text.as_bytes(), 0o644)?;
        println!("wrote {}", path.display());
    }
    if method == Method::Systemd {
        let mut timers = vec!["rescue-mkrescue.timer"];
        if args.mkbackup_calendar.is_some() {
            timers.push("rescue-mkbackup.timer");
        }
        if args.root == Path::new("/") {
            Cmd::new("systemctl").arg("daemon-reload").run()?;
            Cmd::new("systemctl").args(["enable", "--now"]).args(&timers).run()?;
            println!("enabled {}; logs: journalctl -u rescue-mkrescue", timers.join(" "));
        } else {
            println!("not enabled (not the running system): run `systemctl enable {}` inside it", timers.join(" "));
        }
    }
    Ok(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_units_run_the_refresh_and_optionally_mkbackup() {
        let (bin, cfg) = (Path::new("/usr/bin/rescue"), Path::new("/etc/rescue/rescue.toml"));
        let refresh = refresh_command(bin, cfg);
        assert_eq!(refresh, "/usr/bin/rescue --config /etc/rescue/rescue.toml checklayout || /usr/bin/rescue --config /etc/rescue/rescue.toml mkrescue");
        let f = files(bin, cfg, Method::Systemd, "daily", Some("Sun 02:00"));
        let text = |name: &str| f.iter().find(|(p, _)| p.ends_with(name)).map(|(_, t)| t.clone()).unwrap();
        assert!(text("rescue-mkrescue.service").contains(&shell_quote(&refresh)));
        assert!(text("rescue-mkbackup.service").contains("ExecStart=/usr/bin/rescue --config /etc/rescue/rescue.toml mkbackup"));
        assert!(text("rescue-mkbackup.timer").contains("OnCalendar=Sun 02:00"));
        assert_eq!(files(bin, cfg, Method::Systemd, "daily", None).len(), 2, "no mkbackup unit unless asked");
        let cron = files(bin, cfg, Method::Cron, "daily", Some("Sun 02:00"));
        assert!(cron[0].1.contains(&refresh) && cron[0].1.contains("mkbackup 2>&1"), "{}", cron[0].1);
    }
}
