//! Shared helpers of the image tests: Debian's kernel, one shared image
//! build, running the binary, loop devices, booting qemu (TCG only).
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub const BIN: &str = env!("CARGO_BIN_EXE_rescue");
pub const LAYOUT_FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/image/layout.toml");
/// The test images' extra kernel command line: power off after the banner,
/// and `no_timer_check`, because on a loaded host a TCG guest's timer can
/// miss the kernel's IO-APIC check ("IO-APIC + timer doesn't work!", a panic
/// seen in CI-like runs at load 17).
pub const TEST_CMDLINE: &str = "rescue.after=poweroff no_timer_check";

/// Fail (never skip) when a tool the test needs is missing.
pub fn require(tool: &str, package: &str) {
    let ok = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().map(|o| o.status.success()).unwrap_or(false);
    assert!(ok, "`{tool}` is not installed: apt-get install {package} (or run scripts/install-deps.sh)");
}

/// Debian's kernel unpacked by tests/vm/prepare-kernel.sh: (vmlinuz, modules dir).
pub fn kernel_dir() -> (PathBuf, PathBuf) {
    static K: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    K.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/prepare-kernel.sh");
        let out = Command::new("bash").arg(&script).output().expect("running tests/vm/prepare-kernel.sh");
        assert!(out.status.success(), "tests/vm/prepare-kernel.sh failed: {}", String::from_utf8_lossy(&out.stderr));
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string());
        let modules = std::fs::read_dir(dir.join("lib/modules")).unwrap().next().unwrap().unwrap().path();
        let ver = modules.file_name().unwrap().to_string_lossy().to_string();
        (dir.join(format!("boot/vmlinuz-{ver}")), modules)
    })
    .clone()
}

/// Run the binary, expect success, return stdout.
pub fn rescue(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "rescue {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

pub fn mkrescue_cmd(cfg: &Path, k: &(PathBuf, PathBuf), out: &Path, outputs: &str) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--config").arg(cfg).args(["mkrescue", "--layout", LAYOUT_FIXTURE, "--kernel"]).arg(&k.0);
    c.arg("--modules-dir").arg(&k.1).arg("--output").arg(outputs).arg("--output-dir").arg(out);
    c
}

pub struct Built {
    pub dir: PathBuf,
    pub config: PathBuf,
    /// mkrescue's stdout (the summary).
    pub summary: String,
    pub seconds: f64,
}

/// One image (iso, pxe, raw) per test binary, in target/tmp. Its menu
/// starts the default entry after 1 s and powers off after the banner.
pub fn build_shared() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| {
        for (t, p) in [
            ("xorriso", "xorriso"),
            ("grub-mkimage", "grub-common"),
            ("mkfs.vfat", "dosfstools"),
            ("mcopy", "mtools"),
            ("syslinux", "syslinux"),
            ("busybox", "busybox-static"),
            ("udevadm", "udev"),
        ] {
            require(t, p);
        }
        let k = kernel_dir();
        // One directory per test binary, replaced on each run (never piles up).
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_stem().unwrap().to_string_lossy().split('-').next().unwrap_or("image").to_string();
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("shared-{name}"));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let config = base.join("rescue.toml");
        std::fs::write(&config, format!("[backup]\nurl = \"nfs://backup:hunter2@nas/export\"\n[image]\ntimeout = 1\nkernel-cmdline = \"{TEST_CMDLINE}\"\n"))
            .unwrap();
        let dir = base.join("out");
        let t = std::time::Instant::now();
        let out = mkrescue_cmd(&config, &k, &dir, "iso,pxe,raw").output().unwrap();
        let seconds = t.elapsed().as_secs_f64();
        assert!(out.status.success(), "mkrescue failed: {}", String::from_utf8_lossy(&out.stderr));
        Built { dir, config, summary: String::from_utf8_lossy(&out.stdout).to_string(), seconds }
    })
}

/// Unpack an initramfs (zstd cpio) into a temporary directory.
pub fn extract_initrd(initrd: &Path) -> tempfile::TempDir {
    require("cpio", "cpio");
    require("zstd", "zstd");
    let root = tempfile::tempdir().unwrap();
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -dc '{}' | (cd '{}' && cpio -id --quiet --no-absolute-filenames 2>/dev/null)", initrd.display(), root.path().display()))
        .status()
        .unwrap();
    assert!(st.success());
    root
}

/// Regular files under a directory (symlinks not followed).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                todo.push(e.path());
            } else if ft.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

pub fn find_file(dir: &Path, name: &str) -> bool {
    walk(dir).iter().any(|p| p.file_name().is_some_and(|n| n == name))
}

/// A loop device on a file we made, detached on drop.
pub struct Loop {
    pub dev: PathBuf,
}

impl Loop {
    pub fn attach(file: &Path) -> Loop {
        let out = Command::new("losetup").args(["-f", "--show"]).arg(file).output().unwrap();
        assert!(out.status.success(), "losetup: {}", String::from_utf8_lossy(&out.stderr));
        Loop { dev: PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()) }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// The kernel command line of the PXE directory's default entry (the same
/// one the menus use), from its `pxelinux.cfg/default`.
pub fn pxe_append(pxe: &Path) -> String {
    let cfg = std::fs::read_to_string(pxe.join("pxelinux.cfg/default")).unwrap();
    cfg.lines().find(|l| l.trim_start().starts_with("APPEND console")).unwrap().trim().trim_start_matches("APPEND ").to_string()
}

/// Firmware for a boot.
pub enum Firmware {
    Bios,
    Uefi,
    /// OVMF enforcing Secure Boot with Microsoft's keys enrolled (Debian's shim boots).
    SecureBootMs,
    /// OVMF enforcing Secure Boot with the snakeoil test key as PK, KEK and db.
    SecureBootSnakeoil,
}

/// Boot qemu (TCG, never KVM) with two blank virtio disks (serials blank1,
/// blank2), under `timeout`, and return the serial console output.
pub fn boot(fw: Firmware, media: &[&str], secs: u32) -> String {
    boot_with_nic(fw, "user,model=virtio-net-pci", media, secs)
}

/// [`boot`] with this `-nic` (e.g. qemu's built-in TFTP server for PXE).
pub fn boot_with_nic(fw: Firmware, nic: &str, media: &[&str], secs: u32) -> String {
    require("qemu-system-x86_64", "qemu-system-x86");
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = ["-accel", "tcg", "-m", "1024", "-smp", "2", "-nographic", "-no-reboot", "-nic", nic].iter().map(|s| s.to_string()).collect();
    let ovmf = match fw {
        Firmware::Bios => None,
        Firmware::Uefi => Some(("OVMF_CODE.fd", "OVMF_VARS.fd")),
        Firmware::SecureBootMs => Some(("OVMF_CODE_4M.ms.fd", "OVMF_VARS_4M.ms.fd")),
        Firmware::SecureBootSnakeoil => Some(("OVMF_CODE_4M.snakeoil.fd", "OVMF_VARS_4M.snakeoil.fd")),
    };
    if let Some((code, vars_template)) = ovmf {
        let code = format!("/usr/share/OVMF/{code}");
        assert!(Path::new(&code).exists(), "{code} missing: apt-get install ovmf");
        let vars = dir.path().join("vars.fd");
        std::fs::copy(format!("/usr/share/OVMF/{vars_template}"), &vars).unwrap();
        if matches!(fw, Firmware::SecureBootMs | Firmware::SecureBootSnakeoil) {
            // Enforcing firmware keeps its variables in SMM: q35 with SMM and a secure flash.
            args.extend(["-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on"].map(String::from));
        }
        args.extend(["-drive".into(), format!("if=pflash,format=raw,unit=0,readonly=on,file={code}")]);
        args.extend(["-drive".into(), format!("if=pflash,format=raw,unit=1,file={}", vars.display())]);
    }
    for (i, serial) in ["blank1", "blank2"].iter().enumerate() {
        let f = dir.path().join(format!("{serial}.raw"));
        std::fs::File::create(&f).unwrap().set_len(1 << 30).unwrap();
        args.extend(["-drive".into(), format!("file={},format=raw,if=none,id=d{i}", f.display())]);
        args.extend(["-device".into(), format!("virtio-blk-pci,drive=d{i},serial={serial}")]);
    }
    args.extend(media.iter().map(|s| s.to_string()));
    let mut attempt = 1;
    loop {
        let out = Command::new("timeout").arg(secs.to_string()).arg("qemu-system-x86_64").args(&args).output().unwrap();
        // The console, then how qemu ended, so a failed assertion that prints the
        // tail also says whether the VM timed out (124), crashed or powered off.
        let mut console = String::from_utf8_lossy(&out.stdout).replace('\r', "");
        console.push_str(&format!(
            "\n--- qemu ended: {} (124 = killed after {secs} s); its stderr: {}\n",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
        // Once (CI, 2026-11-26) a TCG boot ended early, well inside its time
        // limit, without the rescue system's markers and with nothing kept to
        // say why. A VM that quits before /init got to RESCUE-READY, without
        // being timed out, is booted once more, loudly: a real fault of the
        // image fails both times, and the first console is on stderr.
        if attempt == 1 && !console.contains("RESCUE-READY") && out.status.code() != Some(124) {
            eprintln!("WARNING: qemu ended before the rescue system was ready; booting once more. First console:\n{}", console_tail(&console, 6000));
            attempt += 1;
            continue;
        }
        return console;
    }
}

/// The last `n` bytes of a console, for assertion messages.
pub fn console_tail(console: &str, n: usize) -> &str {
    let mut start = console.len().saturating_sub(n);
    while !console.is_char_boundary(start) {
        start += 1;
    }
    &console[start..]
}

/// The marker lines every boot must show: banner, descriptor, both blank disks by id.
pub fn assert_rescue_booted(console: &str, what: &str) {
    let tail: String = console.lines().filter(|l| l.starts_with("RESCUE-")).collect::<Vec<_>>().join("\n");
    assert!(console.contains("RESCUE-BANNER rescue") && console.contains("for imgtest"), "{what}: no banner:\n{}", console_tail(console, 4000));
    assert!(console.contains("RESCUE-LAYOUT present /etc/rescue/layout.toml"), "{what}: descriptor missing:\n{tail}");
    assert!(console.contains("RESCUE-DISK by-id/virtio-blank1 -> /dev/vd"), "{what}: blank disk 1 not under /dev/disk/by-id:\n{tail}");
    assert!(console.contains("RESCUE-DISK by-id/virtio-blank2 -> /dev/vd"), "{what}: blank disk 2 not under /dev/disk/by-id:\n{tail}");
    assert!(console.contains("RESCUE-DISK by-path/"), "{what}: no /dev/disk/by-path:\n{tail}");
    assert!(console.contains("RESCUE-POWEROFF"), "{what}: did not reach the end of /init:\n{tail}\n{}", console_tail(console, 1500));
}
