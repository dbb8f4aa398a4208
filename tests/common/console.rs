//! A pseudo-terminal around a running `rescue`: the tests type answers to
//! its prompts like a person at the console and read what it shows.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// The terminal side of a running `rescue`: everything it printed so far,
/// and a way to answer.
pub struct Console {
    master: std::fs::File,
    rx: Receiver<Vec<u8>>,
    seen: String,
    child: Child,
}

impl Console {
    pub fn spawn(cmd: &mut Command) -> Console {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let slave: OwnedFd = pty.slave;
        let child = cmd
            .stdin(Stdio::from(slave.as_fd().try_clone_to_owned().unwrap()))
            .stdout(Stdio::from(slave.as_fd().try_clone_to_owned().unwrap()))
            .stderr(Stdio::from(slave))
            .spawn()
            .expect("start rescue");
        let master = std::fs::File::from(pty.master);
        let mut reader = master.try_clone().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once the child and every slave copy are gone.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Console { master, rx, seen: String::new(), child }
    }

    /// Wait until the output since the last match contains `what`.
    pub fn expect(&mut self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(i) = self.seen.find(what) {
                self.seen.drain(..i + what.len());
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(b) => self.seen.push_str(&String::from_utf8_lossy(&b)),
                Err(_) => panic!("no {what:?} on the terminal within 60 s; it shows:\n{}", self.seen),
            }
        }
    }

    pub fn type_line(&mut self, line: &str) {
        self.master.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    /// Wait for the exit; returns the status and the rest of the output.
    pub fn finish(mut self) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "rescue did not exit within 120 s; terminal:\n{}", self.seen);
            std::thread::sleep(Duration::from_millis(100));
        };
        while let Ok(b) = self.rx.recv_timeout(Duration::from_millis(500)) {
            self.seen.push_str(&String::from_utf8_lossy(&b));
        }
        (status, self.seen)
    }
}
