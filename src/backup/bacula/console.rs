//! Talking to the director through `bconsole`: a private config file made
//! from `[backup.server]` (the password only ever lands in that 0600 file
//! inside a 0700 directory, removed when the console is dropped), commands
//! on stdin, and the failures every caller must tell apart: unreachable,
//! authentication refused, no answer in time.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::config::{Director, ServerConfig};
use super::parse::{self, JobInfo, Record};
use crate::cmd::{find_program, Cmd};
use crate::error::input_error;

/// The director could not be reached at all (nothing listening, no route, name unknown).
#[derive(Debug, thiserror::Error)]
#[error("the {product} director {address}:{port} is unreachable: {reason}. Check backup.server.address and port, this system's network (ip addr, ip route) and that the director runs there")]
pub struct DirectorUnreachable {
    pub product: &'static str,
    pub address: String,
    pub port: u16,
    pub reason: String,
}

/// The director answered but refused the console's password or name.
#[derive(Debug, thiserror::Error)]
#[error("the {product} director {address}:{port} refused the console{console}: \"{message}\". Check the password in backup.server.password-file and backup.server.console-name against the director's Console/Director resource")]
pub struct AuthRefused {
    pub product: &'static str,
    pub address: String,
    pub port: u16,
    pub console: String,
    pub message: String,
}

/// A console session factory for one director.
pub struct Console {
    method: Director,
    bconsole: PathBuf,
    address: String,
    port: u16,
    console_name: Option<String>,
    timeout: u64,
    /// Holds `bconsole.conf`; removed on drop.
    dir: tempfile::TempDir,
}

/// A value as a quoted string of the daemons' config language.
fn conf_quote(s: &str) -> Result<String> {
    if s.contains(['\n', '\r', '\0']) {
        bail!("a value for the bconsole config contains a line break");
    }
    Ok(format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
}

/// A value passed on a console command line (`client=...`): quoted when needed.
pub fn arg_quote(s: &str) -> Result<String> {
    if s.is_empty() || s.contains(['"', '\n', '\r', '\0']) {
        return Err(input_error(format!("{s:?} cannot be passed to the director (empty or contains a quote or line break)")));
    }
    Ok(if s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:/@+".contains(c)) { s.to_string() } else { format!("\"{s}\"") })
}

/// The bconsole program for the method: the configured one, or Bacula's
/// (`/usr/sbin/bconsole`) / Bareos' (`/usr/bin/bconsole`) found in PATH.
pub fn bconsole_program(cfg: &ServerConfig, method: Director) -> Result<PathBuf> {
    if let Some(p) = &cfg.bconsole {
        return if p.is_file() { Ok(p.clone()) } else { Err(input_error(format!("backup.server.bconsole = {} does not exist", p.display()))) };
    }
    let package = if method == Director::Bareos { "bareos-bconsole" } else { "bacula-console" };
    find_program("bconsole").ok_or_else(|| anyhow!(crate::cmd::ToolMissing { program: "bconsole".into(), package: Some(package.into()) }))
}

/// The console password: the first line of the password file.
fn read_password(path: &Path) -> Result<String> {
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o077 != 0 {
            tracing::warn!("the console password file {} is readable by others (mode {:o}): chmod 600 it", path.display(), m.permissions().mode() & 0o777);
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        input_error(format!(
            "cannot read the console password from {} ({e}): put the password of the director's Console (or Director) resource there, mode 0600, and set backup.server.password-file",
            path.display()
        ))
    })?;
    let pw = text.lines().next().unwrap_or("").trim_end_matches('\r').to_string();
    if pw.is_empty() {
        return Err(input_error(format!("the console password file {} is empty", path.display())));
    }
    Ok(pw)
}

impl Console {
    /// Prepare a console for the configured director; checks the settings
    /// and that something listens at the address, but does not log in yet.
    pub fn open(cfg: &ServerConfig, method: Director) -> Result<Console> {
        let address = cfg
            .address
            .clone()
            .filter(|a| !a.trim().is_empty())
            .ok_or_else(|| input_error("backup.server.address is not set: name the director's host (docs/bareos.md)"))?;
        let bconsole = bconsole_program(cfg, method)?;
        let password = read_password(&cfg.password_file)?;
        let director = cfg.director_name.clone().unwrap_or_else(|| format!("{}-dir", method.product().to_ascii_lowercase()));
        let mut text = format!(
            "# Written by rescue for one session; removed afterwards.\nDirector {{\n  Name = {}\n  DIRport = {}\n  Address = {}\n  Password = {}\n}}\n",
            conf_quote(&director)?,
            cfg.port,
            conf_quote(&address)?,
            conf_quote(&password)?
        );
        if let Some(c) = &cfg.console_name {
            text.push_str(&format!(
                "Console {{\n  Name = {}\n  Password = {}\n  Director = {}\n}}\n",
                conf_quote(c)?,
                conf_quote(&password)?,
                conf_quote(&director)?
            ));
        }
        let base = ["/run", "/tmp"].iter().map(Path::new).find(|d| d.is_dir()).unwrap_or(Path::new("/tmp"));
        let dir = tempfile::Builder::new()
            .prefix(".rescue-bconsole-")
            .tempdir_in(base)
            .with_context(|| format!("creating a private directory in {}", base.display()))?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        let conf = dir.path().join("bconsole.conf");
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&conf).with_context(|| format!("creating {}", conf.display()))?;
        f.write_all(text.as_bytes()).with_context(|| format!("writing {}", conf.display()))?;
        drop(f);
        let console = Console { method, bconsole, address, port: cfg.port, console_name: cfg.console_name.clone(), timeout: cfg.connect_timeout.max(1), dir };
        console.check_reachable()?;
        Ok(console)
    }

    pub fn method(&self) -> Director {
        self.method
    }

    pub fn address(&self) -> String {
        format!("{}:{}", self.address, self.port)
    }

    /// A TCP connect of our own: bconsole itself retries a refused
    /// connection for a long time before it gives up.
    fn check_reachable(&self) -> Result<()> {
        use std::net::{TcpStream, ToSocketAddrs};
        let unreachable = |reason: String| DirectorUnreachable { product: self.method.product(), address: self.address.clone(), port: self.port, reason };
        let addrs: Vec<_> =
            (self.address.as_str(), self.port).to_socket_addrs().map_err(|e| unreachable(format!("the name does not resolve ({e})")))?.collect();
        let mut last = String::from("no address");
        for a in addrs {
            match TcpStream::connect_timeout(&a, std::time::Duration::from_secs(self.timeout)) {
                Ok(_) => return Ok(()),
                Err(e) => last = format!("{e} (after at most {} s)", self.timeout),
            }
        }
        Err(unreachable(last).into())
    }

    /// Run console commands (one per line) in one session; the whole output.
    /// `extra` seconds are added to the time limit (for `wait`-like commands).
    pub fn run(&self, commands: &[String], extra: u64) -> Result<String> {
        let conf = self.dir.path().join("bconsole.conf");
        let limit = self.timeout + extra + 10;
        let mut input = commands.join("\n");
        input.push_str("\nquit\n");
        let cmd = Cmd::new("timeout").arg(limit.to_string()).arg(&self.bconsole).args(["-n", "-c"]).arg(&conf).stdin(input).ok_codes(&[1, 124, 137]);
        let out = cmd.output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let all = format!("{text}\n{}", String::from_utf8_lossy(&out.stderr));
        let lower = all.to_ascii_lowercase();
        // Bacula: "Director authorization problem."; Bareos: "Authorization key rejected", "... authentication failed".
        if ["authorization problem", "authentication failed", "rejected hello", "authorization key rejected"].iter().any(|w| lower.contains(w)) {
            let message = all
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("Connecting to") && !l.starts_with("For help"))
                .take(3)
                .collect::<Vec<_>>()
                .join(" ");
            return Err(AuthRefused {
                product: self.method.product(),
                address: self.address.clone(),
                port: self.port,
                console: self.console_name.as_ref().map(|c| format!(" {c:?}")).unwrap_or_else(|| " (default console)".into()),
                message,
            }
            .into());
        }
        if matches!(out.code, Some(124) | Some(137)) {
            bail!(
                "the {} director {} did not answer within {limit} s (`{}`); raise backup.server.connect-timeout if it is just slow",
                self.method.product(),
                self.address(),
                commands.join("; ")
            );
        }
        if lower.contains("failed to connect to director") || (out.code == Some(1) && !text.contains("1000 OK")) {
            return Err(DirectorUnreachable {
                product: self.method.product(),
                address: self.address.clone(),
                port: self.port,
                reason: parse::director_answer(&all, "", 4),
            }
            .into());
        }
        Ok(text)
    }

    /// Log in and return the director's greeting (`1000 OK: ... Version: ...`).
    pub fn hello(&self) -> Result<String> {
        let out = self.run(&["version".into()], 0)?;
        let line = out.lines().find(|l| l.starts_with("1000 OK")).or_else(|| out.lines().find(|l| l.contains("Version:")));
        Ok(line.unwrap_or("").trim().to_string())
    }

    /// Job records of a `list`-like command (`llist jobs client=X`,
    /// `llist jobid=N`): Bareos answers in JSON (`.api 2`), Bacula in text.
    pub fn jobs(&self, command: &str) -> Result<Vec<JobInfo>> {
        let records: Vec<Record> = if self.method == Director::Bareos {
            let out = self.run(&[".api 2".into(), command.into()], 0)?;
            parse::json_records(&out, "jobs")
        } else {
            parse::llist_records(&self.run(&[command.into()], 0)?)
        };
        Ok(records.iter().filter_map(JobInfo::from_record).collect())
    }

    /// The error and termination lines of a job's log.
    pub fn job_problems(&self, jobid: u64) -> Vec<String> {
        let cmd = format!("llist joblog jobid={jobid}");
        let out = if self.method == Director::Bareos { self.run(&[".api 2".into(), cmd], 0) } else { self.run(&[cmd], 0) };
        out.map(|o| parse::joblog_problems(&o)).unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(conf_quote(r#"pa"ss\w"#).unwrap(), r#""pa\"ss\\w""#);
        assert!(conf_quote("a\nb").is_err());
        assert_eq!(arg_quote("web1-fd").unwrap(), "web1-fd");
        assert_eq!(arg_quote("Linux All").unwrap(), "\"Linux All\"");
        assert!(arg_quote("x\" yes").is_err());
    }

    #[test]
    fn missing_password_file_and_address_are_input_errors() {
        let mut cfg = ServerConfig { address: Some("127.0.0.1".into()), bconsole: Some("/bin/true".into()), ..Default::default() };
        cfg.password_file = "/nonexistent/pw".into();
        let e = Console::open(&cfg, Director::Bacula).err().unwrap();
        assert!(format!("{e:#}").contains("/nonexistent/pw"), "{e:#}");
        assert_eq!(crate::error::exit_code_for(&e), 2);
        cfg.address = None;
        let e = Console::open(&cfg, Director::Bacula).err().unwrap();
        assert!(format!("{e:#}").contains("backup.server.address"), "{e:#}");
    }
}
