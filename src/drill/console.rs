//! The drill VM's serial console: qemu writes it to a file, [`Follower`]
//! reads the new complete lines as they arrive, and [`parse_line`] turns the
//! marker lines of the rescue init, of `rescue recover` and of the drill's
//! boot marker into [`Event`]s.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Something the console said that the drill acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The rescue system's /init started (kernel and initramfs loaded).
    RescueInit,
    /// The rescue system is up (banner printed).
    RescueReady,
    /// What the rescue system's /init read from the SecureBoot EFI variable.
    RescueSecureBoot(bool),
    /// The unattended recovery started.
    RecoverStart,
    /// `rescue recover` started a phase (`==> phase 2/5 plan: ...`).
    RecoverPhase {
        name: String,
    },
    RecoverOk,
    RecoverFailed(String),
    /// The rescue system powers off or reboots.
    RescueEnd,
    /// The recovered system's marker unit ran.
    Booted {
        fields: BTreeMap<String, String>,
    },
    /// A user check finished.
    Check {
        n: usize,
        rc: i32,
    },
    /// An output line of a user check.
    CheckOutput {
        n: usize,
        text: String,
    },
    /// All checks ran.
    Done {
        checks: usize,
        passed: usize,
    },
    /// The kernel gave up.
    KernelPanic(String),
    /// `rescue` printed its error (`rescue: error: ...`).
    RescueError(String),
}

/// `key=value` words; a word without `=` is ignored.
fn fields(s: &str) -> BTreeMap<String, String> {
    s.split_whitespace().filter_map(|w| w.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The event a console line carries, if any. Markers may follow other
/// output on the same line (kernel or systemd messages interleave).
pub fn parse_line(line: &str) -> Option<Event> {
    if let Some(i) = line.find("Kernel panic - not syncing") {
        return Some(Event::KernelPanic(line[i..].trim().to_string()));
    }
    if let Some(i) = line.find("rescue: error: ") {
        return Some(Event::RescueError(line[i + "rescue: error: ".len()..].trim().to_string()));
    }
    if let Some(i) = line.find("==> phase ") {
        // `==> phase 3/5 storage: partitions, ...`
        let rest = &line[i + "==> phase ".len()..];
        let (_, after) = rest.split_once(' ')?;
        let name = after.split(':').next()?.trim();
        return (!name.is_empty()).then(|| Event::RecoverPhase { name: name.to_string() });
    }
    let i = line.find("RESCUE-")?;
    let m = &line[i..];
    let (word, rest) = m.split_once(' ').unwrap_or((m, ""));
    Some(match word {
        "RESCUE-INIT" => Event::RescueInit,
        "RESCUE-READY" => Event::RescueReady,
        "RESCUE-SECUREBOOT" => Event::RescueSecureBoot(rest.split_whitespace().next() == Some("on")),
        "RESCUE-RECOVER-START" => Event::RecoverStart,
        "RESCUE-RECOVER-OK" => Event::RecoverOk,
        "RESCUE-RECOVER-FAILED" => Event::RecoverFailed(rest.trim().to_string()),
        "RESCUE-POWEROFF" | "RESCUE-REBOOT" => Event::RescueEnd,
        "RESCUE-DRILL-BOOTED" => Event::Booted { fields: fields(rest) },
        "RESCUE-DRILL-CHECK" => {
            let (n, rest) = rest.split_once(' ')?;
            let rc = fields(rest).get("rc")?.parse().ok()?;
            Event::Check { n: n.parse().ok()?, rc }
        }
        "RESCUE-DRILL-OUT" => {
            let (n, text) = rest.split_once(' ').unwrap_or((rest, ""));
            Event::CheckOutput { n: n.parse().ok()?, text: text.to_string() }
        }
        "RESCUE-DRILL-DONE" => {
            let f = fields(rest);
            Event::Done { checks: f.get("checks")?.parse().ok()?, passed: f.get("passed")?.parse().ok()? }
        }
        _ => return None,
    })
}

/// Reads the lines a VM appends to its serial log file.
pub struct Follower {
    path: PathBuf,
    pos: u64,
    partial: Vec<u8>,
    tail: VecDeque<String>,
    keep: usize,
}

impl Follower {
    pub fn new(path: &Path, keep: usize) -> Follower {
        Follower { path: path.to_path_buf(), pos: 0, partial: Vec::new(), tail: VecDeque::new(), keep }
    }

    /// The complete lines written since the last call (carriage returns and
    /// escape sequences removed). A missing file is no output yet.
    pub fn poll(&mut self) -> Result<Vec<String>> {
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading the VM console {}", self.path.display())),
        };
        f.seek(SeekFrom::Start(self.pos))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).with_context(|| format!("reading the VM console {}", self.path.display()))?;
        self.pos += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        let mut lines = Vec::new();
        while let Some(nl) = self.partial.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.partial.drain(..=nl).collect();
            let line = clean(&String::from_utf8_lossy(&raw));
            self.tail.push_back(shorten(&line));
            if self.tail.len() > self.keep {
                self.tail.pop_front();
            }
            lines.push(line);
        }
        Ok(lines)
    }

    /// What is left after the last newline (a prompt, a line being written).
    pub fn flush_partial(&mut self) -> Option<String> {
        if self.partial.is_empty() {
            return None;
        }
        let line = clean(&String::from_utf8_lossy(&std::mem::take(&mut self.partial)));
        self.tail.push_back(shorten(&line));
        Some(line)
    }

    /// The last lines seen (up to `keep`).
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }
}

/// What a terminal would show of a line: the text after the last carriage
/// return (progress bars redraw themselves), without ANSI escape sequences
/// and other control characters.
pub fn clean(s: &str) -> String {
    let shown = s.split('\r').map(strip_controls).rfind(|seg| !seg.trim().is_empty()).unwrap_or_default();
    shown.trim_end().to_string()
}

/// A line for the report: at most [`MAX_LINE`] characters (its start, where the message is).
pub fn shorten(s: &str) -> String {
    if s.chars().count() <= MAX_LINE {
        s.to_string()
    } else {
        s.chars().take(MAX_LINE - 3).chain("...".chars()).collect()
    }
}

fn strip_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ params final-byte; other escapes: ESC + one char.
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        } else if c == '\t' || !c.is_control() {
            out.push(c);
        }
    }
    out
}

/// Longest console line kept.
pub const MAX_LINE: usize = 500;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn markers_of_the_rescue_init_and_recover() {
        assert_eq!(parse_line("RESCUE-INIT rescue system starting (kernel 6.1.0-56-amd64)"), Some(Event::RescueInit));
        assert_eq!(parse_line("RESCUE-READY"), Some(Event::RescueReady));
        assert_eq!(parse_line("RESCUE-RECOVER-START rescue recover --unattended"), Some(Event::RecoverStart));
        assert_eq!(parse_line("==> phase 4/5 restore: the data"), Some(Event::RecoverPhase { name: "restore".into() }));
        assert_eq!(parse_line("RESCUE-RECOVER-OK"), Some(Event::RecoverOk));
        assert_eq!(
            parse_line("RESCUE-RECOVER-FAILED exit code 3: the messages above say why"),
            Some(Event::RecoverFailed("exit code 3: the messages above say why".into()))
        );
        assert_eq!(parse_line("RESCUE-POWEROFF"), Some(Event::RescueEnd));
        assert_eq!(
            parse_line("rescue: error: recovery stopped in phase verify: bad archive"),
            Some(Event::RescueError("recovery stopped in phase verify: bad archive".into()))
        );
        assert_eq!(parse_line("RESCUE-BANNER rescue 0.1.0"), None);
        assert_eq!(parse_line("just a line"), None);
        assert!(matches!(parse_line("[   12.3] Kernel panic - not syncing: VFS: Unable to mount root"), Some(Event::KernelPanic(m)) if m.contains("VFS")));
    }

    #[test]
    fn markers_of_the_recovered_system() {
        let Some(Event::Booted { fields }) =
            parse_line("[  OK  ] Started x.RESCUE-DRILL-BOOTED host=web1 kernel=6.1.0-50-amd64 uptime=41.2 failed-units=0 state=running")
        else {
            panic!("not parsed")
        };
        assert_eq!(fields["host"], "web1");
        assert_eq!(fields["failed-units"], "0");
        assert_eq!(parse_line("RESCUE-DRILL-CHECK 2 rc=1"), Some(Event::Check { n: 2, rc: 1 }));
        assert_eq!(parse_line("RESCUE-DRILL-OUT 2 cat: /x: No such file"), Some(Event::CheckOutput { n: 2, text: "cat: /x: No such file".into() }));
        assert_eq!(parse_line("RESCUE-DRILL-DONE checks=2 passed=1"), Some(Event::Done { checks: 2, passed: 1 }));
        assert_eq!(parse_line("RESCUE-DRILL-CHECK x rc=1"), None);
        assert_eq!(parse_line("RESCUE-DRILL-DONE checks=2"), None);
    }

    #[test]
    fn follower_returns_complete_lines_once() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("console.log");
        let mut f = Follower::new(&p, 3);
        assert!(f.poll().unwrap().is_empty());
        let mut w = std::fs::File::create(&p).unwrap();
        w.write_all(b"\x1b[0;32mone\x1b[0m\r\ntw").unwrap();
        assert_eq!(f.poll().unwrap(), vec!["one"]);
        w.write_all(b"o\r\nthree\nfour\nfive\npartial").unwrap();
        assert_eq!(f.poll().unwrap(), vec!["two", "three", "four", "five"]);
        assert_eq!(f.tail(), vec!["three", "four", "five"]);
        assert_eq!(f.flush_partial().as_deref(), Some("partial"));
        assert_eq!(clean("restoring 1 MiB\r\x1b[2Krestoring 2 MiB\r\x1b[1A\r\n"), "restoring 2 MiB");
        assert_eq!(shorten(&"x".repeat(2000)).len(), MAX_LINE);
        // A long error line is still recognized (the tail keeps it short).
        let long = format!("verifying [==>  ] 3 MiB\r\x1b[2Krescue: error: the archive is damaged: {}", "f ".repeat(1000));
        let mut w2 = std::fs::File::create(d.path().join("long.log")).unwrap();
        writeln!(w2, "{long}").unwrap();
        let mut f2 = Follower::new(&d.path().join("long.log"), 3);
        let got = f2.poll().unwrap();
        assert!(matches!(parse_line(&got[0]), Some(Event::RescueError(e)) if e.starts_with("the archive is damaged")));
        assert_eq!(f2.tail()[0].chars().count(), MAX_LINE);
    }
}
