//! The interactive LUKS passphrase prompt of `rescue recover`, driven through a
//! pseudo-terminal like a person at the console: as root, on a loop disk this
//! test creates, `rescue recover --layout-only` (no `--yes`, no key file) asks
//! to type YES, then for the new volume's passphrase twice without echo; a
//! mismatch and an empty passphrase are refused and asked again.
//!
//! The host kernel has no device-mapper, so the recovery stops at
//! `cryptsetup open` (the VM scenarios open LUKS for real). What the prompt
//! produced is checked on the disk: the LUKS2 header carries the recorded UUID
//! and accepts the typed passphrase (`cryptsetup open --test-passphrase` needs
//! no device-mapper), and rejects the mismatched one. The passphrase never
//! appears on the terminal, and it is asked once: the open after the format
//! reuses it instead of prompting again.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::console::Console;
use common::*;

const UUID: &str = "5e3a0c1d-7b2f-4e6a-9c8d-0f1e2d3c4b5a";
const GOOD: &str = "correct horse battery";
const TYPO: &str = "correct horse batterx";

/// A recorded disk "vdz" (64 MiB, GPT) with one partition holding LUKS2
/// (pbkdf2, quick to format) and an ext4 filesystem inside it.
fn layout(disk_bytes: u64) -> String {
    let sectors = disk_bytes / 512;
    format!(
        r#"version = 1

[host]
hostname = "vault"
kernel = "6.1.0-fixture-amd64"
arch = "x86_64"
firmware = "bios"
captured-at = "2026-11-26T10:00:00Z"
rescue-version = "0.1.0"

[[disk]]
name = "vdz"
path = "/dev/vdz"
size = {disk_bytes}
table = "gpt"
disk-guid = "0E1D2C3B-4A59-4867-9F8E-7D6C5B4A3929"

[[partition]]
name = "vdz1"
disk = "vdz"
number = 1
start = 2048
size = {size}
type = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
uuid = "3B4C5D6E-7F8A-4B9C-8D0E-2F3A4B5C6D7F"

[[luks]]
name = "cryptdata"
device = "vdz1"
version = 2
uuid = "{UUID}"
cipher = "aes-xts-plain64"
key-size = 512
hash = "sha256"
pbkdf = "pbkdf2"
sector-size = 512

[[filesystem]]
device = "cryptdata"
type = "ext4"
uuid = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6e"
label = "data"

[bootloader]
kind = "none"
"#,
        size = sectors - 2048 - 34
    )
}

fn passphrase_opens(dev: &str, pass: &str) -> bool {
    let mut c = Command::new("cryptsetup")
        .args(["open", "--test-passphrase", "--key-file", "-", dev])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(pass.as_bytes()).unwrap();
    c.wait().unwrap().success()
}

#[test]
fn luks_passphrase_is_asked_twice_without_echo_and_formats_the_volume() {
    require_root();
    require_tools(&["cryptsetup", "sfdisk", "wipefs", "blkid", "losetup"]);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let disk = LoopDisk::new(dir.path(), "luks", 64);
    let lay = dir.path().join("layout.toml");
    std::fs::write(&lay, layout(64 << 20)).unwrap();
    let cfg = local_config(dir.path());
    let target = dir.path().join("mnt");

    let mut cmd = Command::new(rescue_bin());
    cmd.arg("--config").arg(&cfg).args(["recover", "--layout-only", "--layout"]).arg(&lay);
    cmd.arg("--map").arg(format!("vdz={}", disk.dev)).arg("--target-root").arg(&target);
    let mut con = Console::spawn(&mut cmd);

    con.expect("Type YES to continue: ");
    con.type_line("YES");
    // A typo in the second entry: refused, asked again.
    con.expect("Passphrase for the new LUKS volume cryptdata: ");
    con.type_line(GOOD);
    con.expect("Again: ");
    con.type_line(TYPO);
    con.expect("The passphrases differ; try again.");
    // An empty passphrase: refused.
    con.expect("Passphrase for the new LUKS volume cryptdata: ");
    con.type_line("");
    con.expect("Again: ");
    con.type_line("");
    con.expect("An empty passphrase is not allowed.");
    con.expect("Passphrase for the new LUKS volume cryptdata: ");
    con.type_line(GOOD);
    con.expect("Again: ");
    con.type_line(GOOD);
    let (status, rest) = con.finish();

    // No device-mapper on the host: the open fails, after the format.
    assert!(!status.success(), "recover cannot open LUKS without device-mapper here, yet it succeeded:\n{rest}");
    assert!(rest.contains("cryptsetup") && rest.contains("open"), "expected the failing `cryptsetup open` in the error:\n{rest}");
    assert!(!rest.contains("Passphrase for the new LUKS volume"), "the passphrase was asked again for the open:\n{rest}");
    assert!(!rest.contains(GOOD) && !rest.contains(TYPO), "a passphrase was echoed or logged:\n{rest}");

    let part = disk.part(1);
    assert!(Path::new(&part).exists(), "partition {part} missing");
    let dump = sh(&format!("cryptsetup luksDump {part}"));
    assert!(dump.contains("Version:       \t2"), "not LUKS2:\n{dump}");
    assert!(dump.contains(UUID), "recorded UUID {UUID} not in the header:\n{dump}");
    assert!(passphrase_opens(&part, GOOD), "the typed passphrase does not open {part}");
    assert!(!passphrase_opens(&part, TYPO), "the mismatched passphrase opens {part}");
    let logs = sh(&format!("cat {}/log/* 2>/dev/null || true", dir.path().display()));
    assert!(!logs.contains(GOOD), "the passphrase is in the log");
}
