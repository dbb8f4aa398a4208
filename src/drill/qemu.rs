//! The drill VM: the qemu command line as data ([`VmSpec::args`], unit
//! tested), and the running qemu as a child that is always stopped ([`Vm`]
//! kills it on drop, and the kernel kills it if the drill itself dies).

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use super::disks::{Bus, DrillDisk};
use crate::cmd::Cmd;

pub const QEMU: &str = "qemu-system-x86_64";
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";
/// Firmware that enforces Secure Boot with Microsoft's keys enrolled, so the
/// distribution's signed shim boots and nothing unsigned does (package ovmf).
pub const OVMF_CODE_SECURE: &str = "/usr/share/OVMF/OVMF_CODE_4M.ms.fd";
pub const OVMF_VARS_SECURE: &str = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Accel {
    /// Software emulation: works everywhere, slow.
    Tcg,
    /// Hardware virtualization (needs a working /dev/kvm).
    Kvm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Network {
    /// No network card.
    None,
    /// qemu user-mode networking (NAT through the host; DHCP in the guest).
    User,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

impl Network {
    pub fn as_str(self) -> &'static str {
        match self {
            Network::None => "none",
            Network::User => "user",
        }
    }
}

/// UEFI firmware: the read-only code and the VM's own writable variable store.
#[derive(Debug, Clone, PartialEq)]
pub struct Uefi {
    pub code: PathBuf,
    pub vars: PathBuf,
    /// Secure Boot enforced: the firmware's SMM-protected variable store
    /// needs a q35 machine with SMM and a secure flash, or it does not start.
    pub secure: bool,
}

impl Uefi {
    /// The firmware files for `secure` (enforcing, Microsoft's keys) or plain
    /// OVMF, with the VM's own copy of the variable store in `dir`.
    pub fn copy_into(dir: &Path, secure: bool) -> Result<Uefi> {
        let (code, vars) = if secure { (OVMF_CODE_SECURE, OVMF_VARS_SECURE) } else { (OVMF_CODE, OVMF_VARS) };
        for f in [code, vars] {
            if !Path::new(f).is_file() {
                let why =
                    if secure { "rescue drill --secure-boot needs the firmware that enforces Secure Boot" } else { "the descriptor records UEFI firmware" };
                return Err(crate::error::input_error(format!("{why}, and {f} is missing: apt-get install ovmf")));
            }
        }
        let own = dir.join(Path::new(vars).file_name().unwrap_or_default());
        std::fs::copy(vars, &own).with_context(|| format!("copying {vars} to {}", own.display()))?;
        Ok(Uefi { code: code.into(), vars: own, secure })
    }
}

/// Booting a kernel directly (`-kernel/-initrd/-append`) instead of from a disk.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectBoot {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub append: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VmSpec {
    pub accel: Accel,
    pub memory_mib: u32,
    pub cpus: u32,
    pub uefi: Option<Uefi>,
    pub disks: Vec<(DrillDisk, PathBuf)>,
    pub cdrom: Option<PathBuf>,
    pub direct: Option<DirectBoot>,
    pub network: Network,
    pub serial_log: PathBuf,
}

/// A value inside a qemu `key=value,...` option: commas are doubled.
fn esc(s: &str) -> String {
    s.replace(',', ",,")
}

fn p(path: &Path) -> String {
    esc(&path.display().to_string())
}

impl VmSpec {
    /// The qemu arguments (without the program).
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |v: &[&str]| a.extend(v.iter().map(|s| s.to_string()));
        let secure = self.uefi.as_ref().is_some_and(|u| u.secure);
        let machine = if secure { "q35,smm=on" } else { "pc" };
        push(&["-accel", self.accel.as_str(), "-machine", machine, "-nodefaults", "-no-reboot"]);
        push(&["-m", &self.memory_mib.to_string(), "-smp", &self.cpus.to_string()]);
        push(&["-display", "none", "-monitor", "none", "-serial", &format!("file:{}", p(&self.serial_log))]);
        match self.network {
            Network::None => push(&["-nic", "none"]),
            Network::User => push(&["-nic", "user,model=virtio-net-pci"]),
        }
        if let Some(u) = &self.uefi {
            push(&["-drive", &format!("if=pflash,format=raw,unit=0,readonly=on,file={}", p(&u.code))]);
            push(&["-drive", &format!("if=pflash,format=raw,unit=1,file={}", p(&u.vars))]);
            if u.secure {
                push(&["-global", "driver=cfi.pflash01,property=secure,value=on"]);
            }
        }
        let mut ahci_port = 0;
        for (i, (d, file)) in self.disks.iter().enumerate() {
            let id = format!("d{}", i + 1);
            push(&["-drive", &format!("file={},format=raw,if=none,id={id},cache=unsafe", p(file))]);
            let mut dev = match d.bus {
                Bus::Virtio => format!("virtio-blk-pci,drive={id},serial={}", esc(&d.serial)),
                Bus::Nvme => format!("nvme,drive={id},serial={}", esc(&d.serial)),
                Bus::Sata => {
                    if ahci_port == 0 {
                        push(&["-device", "ahci,id=ahci"]);
                    }
                    let s = format!("ide-hd,drive={id},bus=ahci.{ahci_port},serial={}", esc(&d.serial));
                    ahci_port += 1;
                    match &d.model {
                        Some(m) => format!("{s},model={}", esc(m)),
                        None => s,
                    }
                }
            };
            if d.logical_sector_size != 512 {
                dev += &format!(",logical_block_size={0},physical_block_size={0}", d.logical_sector_size);
            }
            // UEFI boots what the recovery wrote into NVRAM; a bootindex
            // would let the firmware reorder that away.
            if d.boot && self.uefi.is_none() && self.direct.is_none() {
                dev += ",bootindex=1";
            }
            push(&["-device", &dev]);
        }
        if let Some(iso) = &self.cdrom {
            // On its own AHCI controller: the rescue kernel does not see a CD
            // on the PIIX IDE controller when OVMF boots it.
            push(&["-drive", &format!("file={},format=raw,if=none,id=cd,media=cdrom,readonly=on", p(iso))]);
            // Booted by the firmware (no -kernel): the CD comes before the blank disks.
            let first = if self.direct.is_none() { ",bootindex=0" } else { "" };
            push(&["-device", "ahci,id=cdbus", "-device", &format!("ide-cd,drive=cd,bus=cdbus.0{first}")]);
        }
        if let Some(k) = &self.direct {
            push(&["-kernel", &k.kernel.display().to_string(), "-initrd", &k.initrd.display().to_string(), "-append", &k.append]);
        }
        a
    }
}

/// A running qemu. Dropping it stops the VM (SIGTERM, then SIGKILL).
pub struct Vm {
    child: Option<Child>,
    pub command: String,
    pub started: Instant,
    log: PathBuf,
}

impl Vm {
    /// Start `program` (qemu) with the spec's arguments; its own output goes to `log`.
    pub fn start(program: &Path, spec: &VmSpec, log: &Path) -> Result<Vm> {
        let cmd = Cmd::new(program).args(spec.args());
        let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd.spawn_with(|c| {
            use std::os::unix::process::CommandExt;
            c.stdout(Stdio::from(out)).stderr(Stdio::from(err));
            // Its own process group: a Ctrl-C on the terminal reaches the
            // drill, which stops the VM and cleans up in order.
            c.process_group(0);
            // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches
            // no memory of the parent; it makes the kernel kill qemu if the
            // drill dies without cleaning up (SIGKILL, crash).
            #[allow(unsafe_code)]
            unsafe {
                c.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        })?;
        tracing::debug!("qemu started (pid {}): {}", child.id(), cmd.display());
        Ok(Vm { child: Some(child), command: cmd.display(), started: Instant::now(), log: log.to_path_buf() })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// `Some(exit code)` once qemu has ended (-1: killed by a signal).
    pub fn try_wait(&mut self) -> Result<Option<i32>> {
        let Some(c) = self.child.as_mut() else { return Ok(Some(-1)) };
        Ok(c.try_wait().context("waiting for qemu")?.map(|s| s.code().unwrap_or(-1)))
    }

    /// What qemu itself printed (errors about its options, devices...).
    pub fn own_output(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let t = s.trim();
        t[t.len().saturating_sub(2000)..].to_string()
    }

    /// Stop the VM: SIGTERM, up to 5 s, then SIGKILL; reap it.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else { return };
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether KVM can be used here (the device opens read-write).
pub fn kvm_usable() -> bool {
    std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn disk(bus: Bus, serial: &str, boot: bool) -> DrillDisk {
        DrillDisk { recorded: "x".into(), size: 1 << 30, bus, serial: serial.into(), model: None, logical_sector_size: 512, boot }
    }

    fn spec() -> VmSpec {
        VmSpec {
            accel: Accel::Tcg,
            memory_mib: 2048,
            cpus: 2,
            uefi: None,
            disks: vec![(disk(Bus::Virtio, "web1-root", true), "/w/disk1.img".into())],
            cdrom: None,
            direct: None,
            network: Network::None,
            serial_log: "/w/console-1.log".into(),
        }
    }

    fn joined(s: &VmSpec) -> String {
        s.args().join(" ")
    }

    #[test]
    fn bios_boot_of_the_recovered_disk() {
        let a = joined(&spec());
        assert!(a.starts_with("-accel tcg -machine pc -nodefaults -no-reboot -m 2048 -smp 2"), "{a}");
        assert!(a.contains("-serial file:/w/console-1.log -nic none"), "{a}");
        assert!(
            a.contains("-drive file=/w/disk1.img,format=raw,if=none,id=d1,cache=unsafe -device virtio-blk-pci,drive=d1,serial=web1-root,bootindex=1"),
            "{a}"
        );
        assert!(!a.contains("pflash") && !a.contains("-kernel") && !a.contains("kvm"), "{a}");
    }

    #[test]
    fn rescue_boot_with_uefi_iso_and_kernel() {
        let mut s = spec();
        s.uefi = Some(Uefi { code: OVMF_CODE.into(), vars: "/w/OVMF_VARS.fd".into(), secure: false });
        s.cdrom = Some("/srv/rescue,1.iso".into());
        s.direct =
            Some(DirectBoot { kernel: "/w/vmlinuz".into(), initrd: "/w/initrd.img".into(), append: "console=ttyS0,115200 unattended rescue.drill".into() });
        s.network = Network::User;
        s.accel = Accel::Kvm;
        let a = s.args();
        let j = a.join(" ");
        assert!(
            j.contains(
                "-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd -drive if=pflash,format=raw,unit=1,file=/w/OVMF_VARS.fd"
            ),
            "{j}"
        );
        assert!(
            j.contains(
                "-drive file=/srv/rescue,,1.iso,format=raw,if=none,id=cd,media=cdrom,readonly=on -device ahci,id=cdbus -device ide-cd,drive=cd,bus=cdbus.0"
            ),
            "{j}"
        );
        assert!(j.contains("-nic user,model=virtio-net-pci") && j.starts_with("-accel kvm"), "{j}");
        // The kernel command line is one argument; no bootindex with direct boot or UEFI.
        let i = a.iter().position(|x| x == "-append").unwrap();
        assert_eq!(a[i + 1], "console=ttyS0,115200 unattended rescue.drill");
        assert!(!j.contains("bootindex"), "{j}");
        assert!(j.contains("-machine pc ") && !j.contains("smm") && !j.contains("secure"), "{j}");
    }

    #[test]
    fn secure_boot_runs_enforcing_firmware_and_boots_the_iso_itself() {
        let d = tempfile::tempdir().unwrap();
        let mut s = spec();
        s.uefi = Some(Uefi::copy_into(d.path(), true).unwrap());
        s.cdrom = Some("/w/drill.iso".into());
        let a = s.args();
        let j = a.join(" ");
        assert!(j.starts_with("-accel tcg -machine q35,smm=on -nodefaults"), "{j}");
        assert!(j.contains(&format!("unit=0,readonly=on,file={OVMF_CODE_SECURE} ")), "{j}");
        assert!(j.contains(&format!("unit=1,file={}", d.path().join("OVMF_VARS_4M.ms.fd").display())), "{j}");
        assert!(j.contains("-global driver=cfi.pflash01,property=secure,value=on"), "{j}");
        // Through shim and the ISO's signed GRUB, never a kernel handed over by qemu.
        assert!(!j.contains("-kernel") && j.contains("ide-cd,drive=cd,bus=cdbus.0,bootindex=0"), "{j}");
        // The VM's own copy of the enforcing variable store, as shipped.
        assert_eq!(std::fs::read(d.path().join("OVMF_VARS_4M.ms.fd")).unwrap(), std::fs::read(OVMF_VARS_SECURE).unwrap());
        let plain = Uefi::copy_into(d.path(), false).unwrap();
        assert_eq!((plain.code.to_str().unwrap(), plain.secure), (OVMF_CODE, false));
    }

    #[test]
    fn nvme_sata_and_4k_disks() {
        let mut s = spec();
        let mut n = disk(Bus::Nvme, "nv1", true);
        n.logical_sector_size = 4096;
        let mut sata = disk(Bus::Sata, "s,1", false);
        sata.model = Some("Samsung SSD".into());
        s.disks = vec![(n, "/w/disk1.img".into()), (sata, "/w/disk2.img".into()), (disk(Bus::Sata, "s2", false), "/w/disk3.img".into())];
        let a = s.args();
        let devs: Vec<&str> = a.windows(2).filter(|w| w[0] == "-device").map(|w| w[1].as_str()).collect();
        assert_eq!(
            devs,
            vec![
                "nvme,drive=d1,serial=nv1,logical_block_size=4096,physical_block_size=4096,bootindex=1",
                "ahci,id=ahci",
                "ide-hd,drive=d2,bus=ahci.0,serial=s,,1,model=Samsung SSD",
                "ide-hd,drive=d3,bus=ahci.1,serial=s2",
            ]
        );
    }

    #[test]
    fn a_vm_that_ends_is_reaped_and_one_that_hangs_is_killed() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("qemu.log");
        let sh = d.path().join("fake-qemu");
        std::fs::write(&sh, "#!/bin/sh\necho started >&2\nexec sleep 60\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sh, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut vm = Vm::start(&sh, &spec(), &log).unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&log).unwrap().contains("started") {
            assert!(Instant::now() < until, "the fake qemu did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(vm.try_wait().unwrap(), None);
        let pid = vm.pid().unwrap();
        let t = Instant::now();
        drop(vm);
        assert!(t.elapsed() < Duration::from_secs(4), "SIGTERM should end sleep at once");
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "qemu {pid} still there");
    }
}
