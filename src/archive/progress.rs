//! Progress: an indicatif bar (bytes, files, rate, ETA) when stderr is a
//! terminal on a screen, a plain line every few seconds otherwise (logs,
//! serial consoles: a redrawn bar fills a serial log with escape sequences).

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::util::human_bytes;

const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// Whether stderr is a terminal that can show a redrawn bar: a
/// pseudo-terminal or a virtual console with a `TERM` other than dumb; not a
/// pipe or file, not /dev/console or a serial line (the rescue system's
/// console, a BMC's serial-over-LAN).
fn stderr_draws_bars() -> bool {
    let stderr = std::io::stderr();
    if !stderr.is_terminal() {
        return false;
    }
    let tty = nix::unistd::ttyname(stderr.as_fd()).map(|p| p.display().to_string()).unwrap_or_default();
    draws_bars(std::env::var("TERM").ok().as_deref(), &tty)
}

fn draws_bars(term: Option<&str>, tty: &str) -> bool {
    // Only a pseudo-terminal (ssh, a terminal window) or a virtual console
    // (tty1...) is a screen; /dev/console, serial lines and a name that could
    // not be read are not.
    let vt = tty.strip_prefix("/dev/tty").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let screen = tty.starts_with("/dev/pts/") || vt;
    screen && !matches!(term, None | Some("") | Some("dumb"))
}

pub struct Progress {
    what: &'static str,
    bar: Option<ProgressBar>,
    total: Option<u64>,
    bytes: u64,
    files: u64,
    start: Instant,
    last_line: Instant,
    enabled: bool,
}

impl Progress {
    /// `total` is the expected byte count when known (ETA), `enabled` false
    /// for no output at all (library callers, tests).
    pub fn new(what: &'static str, total: Option<u64>, enabled: bool) -> Self {
        let bar = (enabled && stderr_draws_bars()).then(|| {
            let bar = match total {
                Some(t) => ProgressBar::new(t),
                None => ProgressBar::new_spinner(),
            };
            let tpl = if total.is_some() {
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {msg} {binary_bytes_per_sec} ETA {eta}"
            } else {
                "{prefix} {spinner} {bytes} {msg} {binary_bytes_per_sec} {elapsed}"
            };
            if let Ok(style) = ProgressStyle::with_template(tpl) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(what);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let now = Instant::now();
        Progress { what, bar, total, bytes: 0, files: 0, start: now, last_line: now, enabled }
    }

    /// Set the absolute byte position (e.g. compressed bytes read).
    pub fn set_bytes(&mut self, bytes: u64, files: u64) {
        self.bytes = bytes;
        self.files = files;
        self.tick();
    }

    pub fn add(&mut self, bytes: u64, files: u64) {
        self.bytes += bytes;
        self.files += files;
        self.tick();
    }

    fn tick(&mut self) {
        if !self.enabled {
            return;
        }
        if let Some(bar) = &self.bar {
            bar.set_position(self.bytes);
            if self.files % 64 == 0 {
                bar.set_message(format!("{} files", self.files));
            }
            return;
        }
        if self.last_line.elapsed() >= PLAIN_EVERY {
            self.last_line = Instant::now();
            let secs = self.start.elapsed().as_secs_f64().max(0.001);
            let rate = (self.bytes as f64 / secs) as u64;
            let eta = match self.total {
                Some(t) if rate > 0 && t > self.bytes => format!(", ETA {} s", (t - self.bytes) / rate),
                _ => String::new(),
            };
            let of = self.total.map(|t| format!(" of {}", human_bytes(t))).unwrap_or_default();
            tracing::info!("{}: {}{of}, {} files, {}/s{eta}", self.what, human_bytes(self.bytes), self.files, human_bytes(rate));
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_only_on_a_screen_terminal() {
        assert!(draws_bars(Some("xterm-256color"), "/dev/pts/3"));
        assert!(draws_bars(Some("linux"), "/dev/tty1"));
        assert!(!draws_bars(Some("vt220"), "/dev/ttyS0"));
        assert!(!draws_bars(Some("linux"), "/dev/console"));
        assert!(!draws_bars(Some("dumb"), "/dev/pts/3"));
        assert!(!draws_bars(None, "/dev/pts/3"));
        assert!(!draws_bars(Some("linux"), ""));
        assert!(!draws_bars(Some("linux"), "/dev/ttyUSB0"));
    }
}
