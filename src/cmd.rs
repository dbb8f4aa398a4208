//! The one way `rescue` runs an external program.
//!
//! Every failure names the full command line and carries the tail of its
//! stderr, so an error printed at 3 a.m. says exactly what was run and why it
//! failed. A program that is not installed gets an error naming the Debian
//! package that provides it. The warnings a program prints while it
//! succeeds are kept (see [`WarningMark`]): a recovery reports them.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use anyhow::{anyhow, Context, Result};

/// How many bytes of a failing command's stderr end up in the error.
const STDERR_TAIL: usize = 2048;

/// A command line to run, built like `std::process::Command` but always
/// reporting failures with the whole command and its stderr.
#[derive(Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    stdin: Option<Vec<u8>>,
    env: Vec<(OsString, OsString)>,
    /// Exit codes other than 0 that still count as success.
    ok_codes: Vec<i32>,
    /// Arguments that carry a secret, by index: what logs and errors show instead.
    masked: Vec<(usize, String)>,
}

/// Never shows what goes to stdin: it may be a LUKS key.
impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cmd")
            .field("program", &self.program)
            .field("args", &self.shown_args().collect::<Vec<_>>())
            .field("stdin", &self.stdin.as_ref().map(|d| format!("<{} bytes>", d.len())))
            .field("env", &self.env)
            .field("ok_codes", &self.ok_codes)
            .finish()
    }
}

/// What a finished command produced.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub code: Option<i32>,
}

impl CmdOutput {
    pub fn stdout_str(&self) -> Result<String> {
        String::from_utf8(self.stdout.clone()).context("command printed output that is not UTF-8")
    }
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Self { program: program.as_ref().to_owned(), args: Vec::new(), stdin: None, env: Vec::new(), ok_codes: Vec::new(), masked: Vec::new() }
    }

    /// An argument that carries a secret (a password in mount options):
    /// the program gets `value`, every log line and error shows `shown`.
    pub fn secret_arg(mut self, value: impl AsRef<OsStr>, shown: impl Into<String>) -> Self {
        self.masked.push((self.args.len(), shown.into()));
        self.args.push(value.as_ref().to_owned());
        self
    }

    /// The arguments as logs and errors show them (secrets masked).
    fn shown_args(&self) -> impl Iterator<Item = String> + '_ {
        self.args.iter().enumerate().map(|(i, a)| match self.masked.iter().find(|(k, _)| *k == i) {
            Some((_, shown)) => shown.clone(),
            None => a.to_string_lossy().into_owned(),
        })
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Feed these bytes to the command's standard input.
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Treat these non-zero exit codes as success too (e.g. `wipefs` or
    /// `blkid`, which exit 2 when there is simply nothing to report).
    pub fn ok_codes(mut self, codes: &[i32]) -> Self {
        self.ok_codes.extend_from_slice(codes);
        self
    }

    pub fn program(&self) -> &OsStr {
        &self.program
    }

    /// The command line as a person would type it (arguments with spaces or
    /// shell metacharacters are quoted; secrets masked). The only text of a
    /// command that reaches a log or an error.
    pub fn display(&self) -> String {
        std::iter::once(self.program.to_string_lossy().into_owned()).chain(self.shown_args()).map(|a| shell_quote(&a)).collect::<Vec<_>>().join(" ")
    }

    /// Run the command, capture stdout and stderr, and fail (with the command
    /// line and stderr tail) unless it exits 0 or with one of `ok_codes`.
    pub fn output(&self) -> Result<CmdOutput> {
        let out = self.spawn_and_wait()?;
        let code = out.status.code();
        let ok = out.status.success() || code.is_some_and(|c| self.ok_codes.contains(&c));
        if out.status.success() {
            record_warnings(self, &out.stderr);
        }
        if !ok {
            return Err(anyhow!(CommandFailed {
                command: self.display(),
                status: match code {
                    Some(c) => format!("exit status {c}"),
                    None => "killed by a signal".to_string(),
                },
                stderr: tail(&out.stderr),
            }));
        }
        Ok(CmdOutput { stdout: out.stdout, stderr: out.stderr, code })
    }

    /// Run the command and capture its output whatever its exit status (a
    /// user's hook, whose failure the caller judges); fails only when it
    /// cannot be started. `code` is `None` when a signal killed it.
    pub fn output_any_status(&self) -> Result<CmdOutput> {
        let out = self.spawn_and_wait()?;
        Ok(CmdOutput { code: out.status.code(), stdout: out.stdout, stderr: out.stderr })
    }

    /// Run and return stdout as a string.
    pub fn read(&self) -> Result<String> {
        self.output()?.stdout_str().with_context(|| format!("reading the output of `{}`", self.display()))
    }

    /// Run for the effect only.
    pub fn run(&self) -> Result<()> {
        self.output().map(|_| ())
    }

    /// Run with stdout and stderr passed through to ours (for long tools whose
    /// own progress output the user should see). The error still names the command.
    pub fn run_interactive(&self) -> Result<()> {
        let mut c = self.command();
        c.stdin(Stdio::inherit()).stdout(Stdio::inherit()).stderr(Stdio::inherit());
        let status = c.status().map_err(|e| self.spawn_error(e))?;
        if status.success() || status.code().is_some_and(|c| self.ok_codes.contains(&c)) {
            Ok(())
        } else {
            Err(anyhow!(CommandFailed { command: self.display(), status: status.to_string(), stderr: String::from("(stderr was shown above)") }))
        }
    }

    /// Start the command and return the child without waiting: for a
    /// long-running process the caller manages (a VM). `configure` may set
    /// its standard streams, process group and so on. Errors name the command.
    pub fn spawn_with(&self, configure: impl FnOnce(&mut Command)) -> Result<std::process::Child> {
        tracing::debug!(command = %self.display(), "starting");
        let mut c = self.command();
        c.stdin(Stdio::null());
        configure(&mut c);
        c.spawn().map_err(|e| self.spawn_error(e))
    }

    /// Replace this process with the command (execve): every other thread
    /// ends and every close-on-exec descriptor closes. Returns only on failure.
    pub fn exec(&self) -> anyhow::Error {
        use std::os::unix::process::CommandExt;
        tracing::debug!(command = %self.display(), "exec");
        let e = self.command().exec();
        self.spawn_error(e)
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        // Tools must speak the language we parse.
        c.env("LC_ALL", "C");
        c
    }

    fn spawn_and_wait(&self) -> Result<Output> {
        tracing::debug!(command = %self.display(), "running");
        let mut c = self.command();
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c.stdin(if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = c.spawn().map_err(|e| self.spawn_error(e))?;
        if let Some(data) = &self.stdin {
            let mut pipe = child.stdin.take().context("stdin pipe missing")?;
            let data = data.clone();
            // Write from a thread so a command that fills its stdout before
            // reading all of stdin cannot deadlock us.
            let writer = std::thread::spawn(move || pipe.write_all(&data));
            let out = child.wait_with_output().with_context(|| format!("waiting for `{}`", self.display()))?;
            let _ = writer.join();
            return Ok(out);
        }
        child.wait_with_output().with_context(|| format!("waiting for `{}`", self.display()))
    }

    fn spawn_error(&self, e: std::io::Error) -> anyhow::Error {
        let program = self.program.to_string_lossy().to_string();
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow!(ToolMissing { package: package_for(&program).map(str::to_string), program })
        } else {
            anyhow::Error::new(e).context(format!("starting `{}`", self.display()))
        }
    }
}

/// How many tool warnings are kept (the oldest go first).
const WARNINGS_KEPT: usize = 1000;

/// Warnings of commands that succeeded, numbered in the order they came.
static WARNINGS: Mutex<(u64, VecDeque<(u64, String)>)> = Mutex::new((0, VecDeque::new()));

/// Known noise: (program, part of a warning line) that says nothing a
/// person must act on.
const NOT_WARNINGS: &[(&str, &str)] = &[
    // The rescue system may run without udev; LVM waits, then works without it.
    ("lvm", "udev database"),
    // Every mkswap over old swap says so; the plan wipes signatures anyway.
    ("mkswap", "wiping old"),
    // cryptsetup creates its locking directory itself.
    ("cryptsetup", "Locking directory"),
];

/// The lines of a successful `program`'s stderr that are warnings: those
/// saying "warning" (in any case, as a word), minus [`NOT_WARNINGS`].
pub fn warning_lines(program: &str, stderr: &str) -> Vec<String> {
    let base = program.rsplit('/').next().unwrap_or(program);
    let says_warning = |l: &str| {
        let lower = l.to_ascii_lowercase();
        lower.match_indices("warning").any(|(i, _)| {
            let before = lower[..i].chars().next_back();
            let after = lower[i + "warning".len()..].chars().next();
            !before.is_some_and(|c| c.is_ascii_alphanumeric()) && !after.is_some_and(|c| c.is_ascii_alphanumeric())
        })
    };
    stderr
        .lines()
        .map(str::trim)
        .filter(|l| says_warning(l))
        .filter(|l| !NOT_WARNINGS.iter().any(|(p, noise)| *p == base && l.contains(noise)))
        .map(str::to_string)
        .collect()
}

fn record_warnings(cmd: &Cmd, stderr: &[u8]) {
    let lines = warning_lines(&cmd.program.to_string_lossy(), &String::from_utf8_lossy(stderr));
    if lines.is_empty() {
        return;
    }
    let command = cmd.display();
    let Ok(mut w) = WARNINGS.lock() else { return };
    for line in lines {
        tracing::warn!("`{command}` warned: {line}");
        w.0 += 1;
        let n = w.0;
        w.1.push_back((n, format!("`{command}`: {line}")));
        if w.1.len() > WARNINGS_KEPT {
            w.1.pop_front();
        }
    }
}

/// A point in the run from which the warnings of succeeding commands are
/// wanted: a recovery takes one when it starts and reports
/// [`WarningMark::since`] at its end.
pub struct WarningMark(u64);

impl WarningMark {
    pub fn now() -> WarningMark {
        WarningMark(WARNINGS.lock().map(|w| w.0).unwrap_or(0))
    }

    /// Each warning since the mark once, as "`COMMAND`: LINE", in order.
    pub fn since(&self) -> Vec<String> {
        let Ok(w) = WARNINGS.lock() else { return Vec::new() };
        let mut out: Vec<String> = Vec::new();
        for (_, text) in w.1.iter().filter(|(n, _)| *n > self.0) {
            if !out.contains(text) {
                out.push(text.clone());
            }
        }
        out
    }
}

/// A command ran and failed.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` failed ({status}): {stderr}")]
pub struct CommandFailed {
    pub command: String,
    pub status: String,
    pub stderr: String,
}

/// A program we need is not installed.
#[derive(Debug, thiserror::Error)]
#[error("the program `{program}` is not installed{}", match package { Some(p) => format!("; install the Debian package `{p}` (apt-get install {p})"), None => String::new() })]
pub struct ToolMissing {
    pub program: String,
    pub package: Option<String>,
}

/// Whether a program can be found in `PATH` (or is an existing path).
pub fn have_program(program: &str) -> bool {
    find_program(program).is_some()
}

/// Full path of a program found in `PATH`, the way `execvp` would find it.
pub fn find_program(program: &str) -> Option<std::path::PathBuf> {
    if program.contains('/') {
        let p = Path::new(program);
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).chain(["/usr/sbin", "/sbin"].iter().map(Into::into)).map(|d| d.join(program)).find(|p| p.is_file())
}

/// Full path of a program exactly as [`Cmd`] will find it: in `PATH` only
/// (`find_program` also looks in the sbin directories, for image building).
pub fn find_in_path(program: &str) -> Option<std::path::PathBuf> {
    if program.contains('/') {
        let p = Path::new(program);
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/bin:/usr/bin".into());
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

/// The programs we call and the Debian package that ships each: the one
/// table behind the "not installed" messages ([`package_for`]) and the
/// Debian package's Depends/Recommends/Suggests (`crate::package`, whose
/// test fails when a program here has no relation there). Where the
/// package is not simply a name, the note follows it in parentheses.
pub const PROGRAM_PACKAGES: &[(&[&str], &str)] = &[
    (&["sfdisk"], "fdisk"),
    (&["blkid", "lsblk", "wipefs", "partx", "findmnt", "mkswap", "blockdev"], "util-linux"),
    (&["mount", "umount", "losetup", "swapon", "swapoff"], "mount"),
    (&["mkfs.ext2", "mkfs.ext3", "mkfs.ext4", "dumpe2fs", "tune2fs", "e2fsck", "mke2fs"], "e2fsprogs"),
    (&["mkfs.xfs", "xfs_info", "xfs_db", "xfs_admin"], "xfsprogs"),
    (&["mkfs.btrfs", "btrfs", "btrfstune"], "btrfs-progs"),
    (&["mkfs.vfat", "mkfs.fat", "fatlabel", "fsck.vfat"], "dosfstools"),
    (&["mcopy", "mdir", "mmd"], "mtools"),
    (&["lvm", "pvcreate", "vgcreate", "lvcreate", "vgchange", "pvs", "vgs", "lvs"], "lvm2"),
    (&["mdadm"], "mdadm"),
    (&["cryptsetup"], "cryptsetup-bin"),
    (&["efibootmgr"], "efibootmgr"),
    (&["grub-install", "grub-mkconfig", "grub-mkimage", "grub-mkrescue"], "grub-common (plus grub-pc-bin or grub-efi-amd64-bin)"),
    (&["xorriso"], "xorriso"),
    (&["rsync"], "rsync"),
    (&["chroot"], "coreutils"),
    (&["update-initramfs"], "initramfs-tools"),
    (&["dracut"], "dracut"),
    (&["bootctl"], "systemd-boot"),
    (&["bconsole"], "bacula-console"),
    (&["bacula-fd"], "bacula-fd"),
    (&["bareos-fd"], "bareos-filedaemon (from Bareos' repository)"),
    (&["tar"], "tar"),
    (&["zstd"], "zstd"),
    (&["pigz"], "pigz"),
    (&["cpio"], "cpio"),
    (&["qemu-system-x86_64"], "qemu-system-x86"),
    (&["qemu-img"], "qemu-utils"),
    (&["udevadm"], "udev"),
    (&["kmod", "modprobe", "depmod", "insmod", "rmmod", "lsmod", "modinfo"], "kmod"),
    (&["dmsetup"], "dmsetup"),
    (&["timeout", "cat"], "coreutils"),
    (&["sh"], "dash"),
    (&["systemctl"], "systemd"),
    (&["ip"], "iproute2"),
    (&["hostname"], "hostname"),
    (&["syslinux"], "syslinux"),
    (&["sbsign"], "sbsigntool"),
    (&["objcopy"], "binutils"),
    (&["busybox"], "busybox-static"),
    (&["sshd"], "openssh-server"),
    (&["ssh-keygen"], "openssh-client"),
    (&["resize2fs"], "e2fsprogs"),
    (&["xfs_repair"], "xfsprogs"),
    (&["mount.nfs"], "nfs-common"),
    (&["mount.cifs"], "cifs-utils"),
];

/// The Debian package that ships a program we call, for error messages.
pub fn package_for(program: &str) -> Option<&'static str> {
    let base = program.rsplit('/').next().unwrap_or(program);
    PROGRAM_PACKAGES.iter().find(|(programs, _)| programs.contains(&base)).map(|(_, package)| *package)
}

fn tail(stderr: &[u8]) -> String {
    let start = stderr.len().saturating_sub(STDERR_TAIL);
    let s = String::from_utf8_lossy(&stderr[start..]).trim().to_string();
    if s.is_empty() {
        "(no output on stderr)".to_string()
    } else {
        s
    }
}

/// Quote a word for display the way a shell would need it.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn failure_names_command_and_stderr() {
        let err = Cmd::new("sh").args(["-c", "echo boom >&2; exit 3"]).run().unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("`sh -c 'echo boom >&2; exit 3'`"), "{msg}");
        assert!(msg.contains("exit status 3"), "{msg}");
        assert!(msg.contains("boom"), "{msg}");
    }

    #[test]
    fn missing_program_names_package() {
        let err = Cmd::new("mkfs.xfs-does-not-exist").run().unwrap_err();
        assert!(err.downcast_ref::<ToolMissing>().is_some());
        let err = Cmd::new("/nonexistent/sfdisk").run().unwrap_err();
        assert!(format!("{err:#}").contains("apt-get install fdisk"), "{err:#}");
    }

    #[test]
    fn debug_output_hides_stdin() {
        let c = Cmd::new("cryptsetup").args(["open", "--key-file", "-"]).stdin("s3cret passphrase");
        let d = format!("{c:?}");
        assert!(!d.contains("s3cret") && d.contains("<17 bytes>") && d.contains("cryptsetup"), "{d}");
    }

    #[test]
    fn warnings_of_succeeding_commands_are_kept_from_a_mark() {
        let mark = WarningMark::now();
        Cmd::new("sh").args(["-c", "echo 'WARNING: Not enough clusters for a 32 bit FAT!' >&2; echo fine >&2"]).run().unwrap();
        Cmd::new("sh").args(["-c", "echo 'sh: warning: twice' >&2"]).run().unwrap();
        Cmd::new("sh").args(["-c", "echo 'sh: warning: twice' >&2"]).run().unwrap();
        // A failing command's stderr is in its error, not a warning.
        let _ = Cmd::new("sh").args(["-c", "echo 'warning: failed' >&2; exit 1"]).run();
        let got = mark.since();
        assert!(
            got.contains(
                &"`sh -c 'echo '\\''WARNING: Not enough clusters for a 32 bit FAT!'\\'' >&2; echo fine >&2'`: WARNING: Not enough clusters for a 32 bit FAT!"
                    .to_string()
            ),
            "{got:?}"
        );
        assert_eq!(got.iter().filter(|w| w.ends_with("sh: warning: twice")).count(), 1, "{got:?}");
        assert!(!got.iter().any(|w| w.contains("failed") || w.ends_with("fine")), "{got:?}");
    }

    #[test]
    fn what_counts_as_a_warning() {
        let lines = warning_lines(
            "/sbin/mkfs.fat",
            "mkfs.fat 4.2 (2021-01-31)\nmkfs.fat: Warning: lowercase labels might not work properly\n\
             WARNING: Number of clusters for 32 bit FAT is less then suggested minimum.\nno warnings here\nforewarning\n",
        );
        assert_eq!(
            lines,
            ["mkfs.fat: Warning: lowercase labels might not work properly", "WARNING: Number of clusters for 32 bit FAT is less then suggested minimum."]
        );
        assert_eq!(warning_lines("grub-install", "Installing for i386-pc platform.\ngrub-install: warning: Embedding is not possible.\n").len(), 1);
        assert!(warning_lines("lvm", "  WARNING: Device /dev/vda not initialized in udev database even after waiting 10000000 microseconds.\n").is_empty());
        assert_eq!(warning_lines("lvm", "  WARNING: Couldn't find device with uuid x.\n").len(), 1);
    }

    #[test]
    fn ok_codes_and_stdin() {
        Cmd::new("sh").args(["-c", "exit 2"]).ok_codes(&[2]).run().unwrap();
        let out = Cmd::new("cat").stdin("hello").read().unwrap();
        assert_eq!(out, "hello");
    }
}
