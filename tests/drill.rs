//! `rescue drill` with a fake qemu (a shell script that writes the console
//! lines a real run would, or hangs) on a small fake rescue ISO: the flow,
//! exit codes, JSON and Prometheus output, and that nothing is left behind
//! on failure and on SIGTERM/SIGINT. Needs xorriso, cpio and zstd.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rescue");
const LAYOUT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/layouts/bios-gpt-ext4.toml");

/// A fake qemu. Stage 1 (with -kernel) and stage 2 (the recovered disks)
/// behave as FAKE_QEMU_MODE says; every start appends its arguments to
/// $FAKE_QEMU_DIR/args and writes its pid to $FAKE_QEMU_DIR/pid.
const FAKE_QEMU: &str = r#"#!/bin/sh
serial=""; stage=2
for a in "$@"; do
  case "$a" in file:*) [ -z "$serial" ] && serial=${a#file:} ;; esac
  [ "$a" = -kernel ] && stage=1
  case "$a" in *drill.iso*) stage=1 ;; esac
done
echo "$*" >> "$FAKE_QEMU_DIR/args"
echo $$ > "$FAKE_QEMU_DIR/pid"
say() { echo "$1" >> "$serial"; sleep 0.3; }
case "$FAKE_QEMU_MODE-$stage" in
  sb-1|sboff-1) say "RESCUE-INIT rescue system starting"
       if [ "$FAKE_QEMU_MODE" = sb ]; then say "RESCUE-SECUREBOOT on"; else say "RESCUE-SECUREBOOT off"; fi
       say "RESCUE-READY"; say "RESCUE-RECOVER-START rescue recover --unattended"; say "RESCUE-RECOVER-OK"; say "RESCUE-POWEROFF"; exit 0 ;;
  sb-2|sboff-2) say "RESCUE-DRILL-BOOTED host=db1 kernel=6.1 uptime=3 failed-units=0 state=starting secure-boot=on"
       say "RESCUE-DRILL-DONE checks=0 passed=0"; exit 0 ;;
  hang-1) say "RESCUE-INIT rescue system starting"; exec sleep 600 ;;
  fail-1) say "RESCUE-INIT rescue system starting"; say "RESCUE-RECOVER-START rescue recover --unattended"
          say "rescue: error: recovery stopped in phase verify: the archive is damaged"
          say "RESCUE-RECOVER-FAILED exit code 3: the messages above say why"; exec sleep 600 ;;
  *-1) say "RESCUE-INIT rescue system starting"; say "RESCUE-READY"; say "RESCUE-RECOVER-START rescue recover --unattended"
       for p in verify plan storage restore finalize; do say "==> phase 1/5 $p: something"; done
       say "RESCUE-RECOVER-OK"; say "RESCUE-POWEROFF"; exit 0 ;;
  badcheck-2) say "Debian GNU/Linux 12"; say "RESCUE-DRILL-BOOTED host=web1 kernel=6.1 uptime=3 failed-units=0 state=starting"
              say "RESCUE-DRILL-CHECK 1 rc=0"; say "RESCUE-DRILL-OUT 2 no such file"; say "RESCUE-DRILL-CHECK 2 rc=1"
              say "RESCUE-DRILL-DONE checks=2 passed=1"; exit 0 ;;
  noboot-2) say "GRUB loading. error: no such device"; exec sleep 600 ;;
  *-2) say "Debian GNU/Linux 12"; say "RESCUE-DRILL-BOOTED host=web1 kernel=6.1 uptime=3 failed-units=0 state=starting"
       say "RESCUE-DRILL-CHECK 1 rc=0"; say "RESCUE-DRILL-CHECK 2 rc=0"; say "RESCUE-DRILL-DONE checks=2 passed=2"; exit 0 ;;
esac
"#;

struct Setup {
    _dir: tempfile::TempDir,
    iso: PathBuf,
    qemu: PathBuf,
    fake: PathBuf,
    work: PathBuf,
    prom: PathBuf,
}

fn require(tool: &str, package: &str) {
    let ok = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().map(|o| o.status.success()).unwrap_or(false);
    assert!(ok, "`{tool}` is not installed: apt-get install {package}");
}

/// A fake rescue ISO: kernel (junk), initramfs with the descriptor and `config`, isolinux menu.
fn setup(config: &str) -> Setup {
    for (t, p) in [("xorriso", "xorriso"), ("cpio", "cpio"), ("zstd", "zstd")] {
        require(t, p);
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tree = d.join("tree");
    std::fs::create_dir_all(tree.join("etc/rescue")).unwrap();
    std::fs::copy(LAYOUT, tree.join("etc/rescue/layout.toml")).unwrap();
    std::fs::write(tree.join("etc/rescue/rescue.toml"), config).unwrap();
    std::fs::write(d.join("vmlinuz"), "not a kernel").unwrap();
    std::fs::write(d.join("isolinux.cfg"), "DEFAULT recover\nLABEL recover\n  KERNEL /boot/vmlinuz\n  APPEND console=tty0 console=ttyS0,115200 quiet\n")
        .unwrap();
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("cd {} && find etc | cpio -o -H newc --quiet | zstd -q > {}/initrd.img", tree.display(), d.display()))
        .status()
        .unwrap();
    assert!(st.success());
    let iso = d.join("rescue-web1.iso");
    let out = Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-R", "-V", "RESCUE", "-graft-points", "-o"])
        .arg(&iso)
        .arg(format!("boot/vmlinuz={}", d.join("vmlinuz").display()))
        .arg(format!("boot/initrd.img={}", d.join("initrd.img").display()))
        .arg(format!("isolinux/isolinux.cfg={}", d.join("isolinux.cfg").display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "xorriso: {}", String::from_utf8_lossy(&out.stderr));
    let qemu = d.join("qemu-system-x86_64");
    std::fs::write(&qemu, FAKE_QEMU).unwrap();
    std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fake = d.join("fake");
    let work = d.join("work");
    std::fs::create_dir_all(&fake).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let prom = d.join("metrics/rescue_drill.prom");
    Setup { iso, qemu, fake, work, prom, _dir: dir }
}

const GOOD_CONFIG: &str = "[backup]\nurl = \"iso:///backup\"\n[recover]\nunattended-proceed = true\n";

impl Setup {
    fn command(&self, mode: &str, extra: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.env_remove("RESCUE_CONFIG").env("FAKE_QEMU_MODE", mode).env("FAKE_QEMU_DIR", &self.fake);
        c.args(["--json", "drill", "--iso"]).arg(&self.iso).arg("--qemu").arg(&self.qemu).arg("--work-dir").arg(&self.work);
        c.arg("--prometheus").arg(&self.prom).args(extra);
        c
    }

    fn run(&self, mode: &str, extra: &[&str]) -> (i32, serde_json::Value, String) {
        let out = self.command(mode, extra).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let v = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
        (out.status.code().unwrap_or(-1), v, stderr)
    }

    fn args(&self) -> Vec<String> {
        std::fs::read_to_string(self.fake.join("args")).unwrap_or_default().lines().map(str::to_string).collect()
    }

    fn assert_clean(&self) {
        let left: Vec<_> = std::fs::read_dir(&self.work).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "left behind in the work directory: {left:?}");
        if let Ok(pid) = std::fs::read_to_string(self.fake.join("pid")) {
            let pid = pid.trim();
            // A zombie would still be there: the drill must reap it too.
            assert!(!Path::new(&format!("/proc/{pid}")).exists(), "fake qemu {pid} still exists");
        }
    }
}

#[test]
fn a_passing_drill_reports_phases_rto_checks_json_and_metrics() {
    let s = setup(GOOD_CONFIG);
    let (code, v, stderr) = s.run("pass", &["--check", "true", "--check", "test -f /srv/x"]);
    assert_eq!(code, 0, "{stderr}\n{v}");
    assert_eq!(v["result"], "pass");
    assert_eq!(v["host"], "web1");
    assert_eq!(v["firmware"], "bios");
    assert_eq!(v["disks"][0]["bus"], "virtio");
    assert_eq!(v["disks"][0]["serial"], "web1-root");
    let names: Vec<&str> = v["phases"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["rescue-boot", "recover", "reboot", "first-boot"]);
    assert_eq!(v["recover-phases"].as_array().unwrap().len(), 5);
    assert!(v["rto-seconds"].as_f64().unwrap() > 1.0);
    assert_eq!(v["checks"][1]["command"], "test -f /srv/x");
    assert_eq!(v["checks"][1]["rc"], 0);
    // Stage 1 boots the ISO's kernel with the drill words and the checks; stage 2 only the disk.
    let args = s.args();
    assert_eq!(args.len(), 2, "{args:?}");
    assert!(args[0].contains("-kernel") && args[0].contains("unattended rescue.after=poweroff rescue.drill rescue.drill.check=74727565"), "{}", args[0]);
    assert!(args[0].contains("rescue.nonet") && args[0].contains("-nic none") && args[0].contains("media=cdrom"), "{}", args[0]);
    assert!(!args[1].contains("-kernel") && !args[1].contains("cdrom") && args[1].contains("bootindex=1"), "{}", args[1]);
    let prom = std::fs::read_to_string(&s.prom).unwrap();
    assert!(prom.contains("rescue_drill_success{host=\"web1\"} 1\n") && prom.contains("phase=\"first-boot\""), "{prom}");
    s.assert_clean();
}

#[test]
fn a_failed_recovery_fails_the_drill_with_the_console_tail() {
    let s = setup(GOOD_CONFIG);
    let t = Instant::now();
    let (code, v, stderr) = s.run("fail", &[]);
    assert_eq!(code, 1, "{stderr}\n{v}");
    assert!(t.elapsed() < Duration::from_secs(30), "the drill should stop at RESCUE-RECOVER-FAILED");
    assert_eq!(v["result"], "fail");
    assert!(v["failure"].as_str().unwrap().contains("the recovery failed in the rescue VM: recovery stopped in phase verify: the archive is damaged"), "{v}");
    assert!(v["console-tail"].to_string().contains("the archive is damaged"), "{v}");
    assert!(std::fs::read_to_string(&s.prom).unwrap().contains("rescue_drill_success{host=\"web1\"} 0\n"));
    assert_eq!(s.args().len(), 1, "the recovered disks must not be booted after a failed recovery");
    s.assert_clean();
}

#[test]
fn a_failing_check_or_no_boot_fails_the_drill() {
    let s = setup(GOOD_CONFIG);
    let (code, v, stderr) = s.run("badcheck", &["--check", "true", "--check", "cat /nope"]);
    assert_eq!(code, 1, "{stderr}\n{v}");
    assert!(v["failure"].as_str().unwrap().contains("check(s) failed in the recovered system: 2 \"cat /nope\""), "{v}");
    assert_eq!(v["checks"][1]["output"][0], "no such file");
    assert_eq!(v["rto-seconds"], serde_json::Value::Null);
    s.assert_clean();
    let (code, v, _) = s.run("noboot", &["--boot-timeout", "3"]);
    assert_eq!(code, 1);
    assert!(v["failure"].as_str().unwrap().contains("did not report within 3 s"), "{v}");
    assert!(v["console-tail"].to_string().contains("GRUB loading"), "{v}");
    s.assert_clean();
}

fn wait_for(p: &Path, secs: u64) {
    let until = Instant::now() + Duration::from_secs(secs);
    while !p.exists() {
        assert!(Instant::now() < until, "{} did not appear", p.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal_test(sig: &str) {
    let s = setup(GOOD_CONFIG);
    let mut child: Child = s.command("hang", &[]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for(&s.fake.join("pid"), 60);
    let qemu_pid = std::fs::read_to_string(s.fake.join("pid")).unwrap().trim().to_string();
    assert!(Path::new(&format!("/proc/{qemu_pid}")).exists());
    // The work directory exists while the VM runs.
    assert_eq!(std::fs::read_dir(&s.work).unwrap().count(), 1);
    let st = Command::new("kill").args([&format!("-{sig}"), &child.id().to_string()]).status().unwrap();
    assert!(st.success());
    let t = Instant::now();
    let out = loop {
        if let Some(_st) = child.try_wait().unwrap() {
            break child.wait_with_output().unwrap();
        }
        assert!(t.elapsed() < Duration::from_secs(20), "the drill did not stop after {sig}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&format!("interrupted by {sig}")), "{stderr}");
    assert!(std::fs::read_to_string(&s.prom).unwrap().contains("rescue_drill_success{host=\"web1\"} 0\n"));
    s.assert_clean();
}

#[test]
fn sigterm_stops_the_vm_and_removes_everything() {
    signal_test("SIGTERM");
}

#[test]
fn sigint_stops_the_vm_and_removes_everything() {
    signal_test("SIGINT");
}

#[test]
fn input_errors_exit_2_before_any_vm() {
    let s = setup("[backup]\nurl = \"iso:///backup\"\n");
    let (code, _, stderr) = s.run("pass", &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("unattended-proceed = true"), "{stderr}");
    let s2 = setup("[backup]\nurl = \"usb:///dev/disk/by-label/REAR-000\"\n[recover]\nunattended-proceed = true\n");
    let (code, _, stderr) = s2.run("pass", &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("USB disk"), "{stderr}");
    let out = Command::new(BIN).args(["drill", "--iso", "/nonexistent/rescue-x.iso", "--qemu", s.qemu.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    for st in [&s, &s2] {
        assert!(st.args().is_empty(), "qemu must not start on an input error");
        st.assert_clean();
    }
    let help = Command::new(BIN).args(["drill", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("Examples:") && help.contains("--prometheus") && help.contains("Cron"), "{help}");
}

/// `--secure-boot`: enforcing firmware, the ISO booted through its own
/// signed chain (a remastered copy, no -kernel), and the drill counts only
/// when the rescue system saw Secure Boot on: firmware that silently did
/// not enforce it fails the drill. Refused before any VM for a BIOS system
/// and for an ISO without the signed chain.
#[test]
fn secure_boot_drill_needs_the_signed_chain_and_enforcing_firmware() {
    let s = setup(GOOD_CONFIG);
    let uefi = concat!(env!("CARGO_MANIFEST_DIR"), "/layouts/uefi-lvm-xfs.toml");
    // A BIOS system: refused.
    let (code, _, stderr) = s.run("sb", &["--secure-boot"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("Secure Boot is a UEFI feature"), "{stderr}");
    // No signed loaders in the ISO: refused, no VM started.
    let (code, _, stderr) = s.run("sb", &["--secure-boot", "--layout", uefi]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("has no signed UEFI boot chain"), "{stderr}");
    assert!(s.args().is_empty(), "a VM was started: {:?}", s.args());
    s.assert_clean();

    // Debian's signed shim and GRUB in /EFI/BOOT, as mkrescue puts them.
    let (shim, grub) = ("/usr/lib/shim/shimx64.efi.signed", "/usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed");
    for (f, pkg) in [(shim, "shim-signed"), (grub, "grub-efi-amd64-signed")] {
        assert!(Path::new(f).is_file(), "{f} is missing: apt-get install {pkg}");
    }
    let signed = s.iso.with_extension("signed.iso");
    let out = Command::new("xorriso")
        .arg("-indev")
        .arg(&s.iso)
        .arg("-outdev")
        .arg(&signed)
        .args(["-map", shim, "/EFI/BOOT/BOOTX64.EFI", "-map", grub, "/EFI/BOOT/grubx64.efi"])
        .output()
        .unwrap();
    assert!(out.status.success(), "xorriso: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::rename(&signed, &s.iso).unwrap();

    let (code, v, stderr) = s.run("sb", &["--secure-boot", "--layout", uefi]);
    assert_eq!(code, 0, "{stderr}\n{v}");
    assert_eq!((v["secure-boot"]["rescue"].as_bool(), v["secure-boot"]["recovered"].as_bool()), (Some(true), Some(true)), "{v}");
    let args = s.args();
    assert_eq!(args.len(), 2, "{args:?}");
    for a in &args {
        assert!(a.contains("-machine q35,smm=on") && a.contains("OVMF_CODE_4M.ms.fd") && a.contains("driver=cfi.pflash01,property=secure,value=on"), "{a}");
        assert!(!a.contains("-kernel"), "{a}");
    }
    assert!(args[0].contains("drill.iso") && args[0].contains("bootindex=0"), "{}", args[0]);
    s.assert_clean();

    // The rescue system booted with Secure Boot off: not an enforcing drill.
    let (code, v, stderr) = s.run("sboff", &["--secure-boot", "--layout", uefi]);
    assert_eq!(code, 1, "{stderr}\n{v}");
    assert!(v["failure"].as_str().unwrap().contains("Secure Boot was not enforced (rescue system: off"), "{v}");
    s.assert_clean();
}
