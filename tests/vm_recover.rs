//! End-to-end recovery scenarios (tests/vm/run-scenario.sh) under qemu TCG:
//! a cached, bootable Debian 12 (or 13: `trixie-*`) source system runs `rescue mkbackup`, blank
//! disks boot the produced ISO with `unattended`, and the recovered disks boot
//! from their own GRUB and verify the test data (RESCUE-SCENARIO-VERIFY PASS).
//!
//! Always run: scenario 1 (BIOS, GPT, ext4 root, swap, backup inside the ISO)
//! and scenario 2 (UEFI/OVMF, GPT, ESP, LVM with XFS root and /home, backup on
//! a USB disk found by its label). Scenarios 3 to 6 and `bios-ext4-bacula`
//! (the rescue image restores from a Bacula director on the host through
//! qemu's user-mode network), `bios-ext4-s3` (from Ceph RGW on the host) and
//! `bios-ext4-incr-age` (an encrypted incremental chain) need RESCUE_FULL_TESTS=1 (scripts/test.sh
//! --full); RESCUE_SCENARIOS="a b" runs only the named ones (times in
//! docs/testing.md).
//!
//! One test function on purpose: test functions of one binary may run in
//! parallel, and two TCG guests on two cores only slow each other down; the
//! scenarios run one after another and all failures are reported together.
//! Needs root, qemu-system-x86, ovmf, debootstrap; fails (never skips) when
//! they are missing. First run on a new machine builds the debootstrap tree,
//! the test guest and the source systems (see docs/testing.md for times).

use std::path::Path;
use std::process::Command;

fn require(tool: &str, package: &str) {
    let found = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file())).unwrap_or(false);
    assert!(found, "{tool} is missing: the VM scenarios need it; install it with `apt-get install {package}` (or scripts/install-deps.sh)");
}

fn require_all() {
    assert!(nix::unistd::geteuid().is_root(), "the VM scenarios need root (debootstrap, mkfs, qemu); run cargo test as root");
    require("qemu-system-x86_64", "qemu-system-x86");
    require("qemu-img", "qemu-utils");
    require("debootstrap", "debootstrap");
    require("mkfs.ext4", "e2fsprogs");
    require("zstd", "zstd");
    assert!(Path::new("/usr/share/OVMF/OVMF_CODE.fd").exists(), "/usr/share/OVMF/OVMF_CODE.fd is missing: apt-get install ovmf");
}

/// Run one scenario; Err carries the harness's message (reason + serial log tail).
fn run(scenario: &str) -> Result<String, String> {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("scenario-{scenario}"));
    let _ = std::fs::remove_dir_all(&base);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/run-scenario.sh");
    eprintln!("vm_recover: scenario {scenario} in {}", base.display());
    let out = Command::new(&script).args(["--rescue", env!("CARGO_BIN_EXE_rescue"), scenario]).arg(&base).output().expect("starting tests/vm/run-scenario.sh");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let times = std::fs::read_to_string(base.join("times")).unwrap_or_default();
    if out.status.success() {
        // Keep the logs and times, drop the big files (disks, ISO).
        for f in ["target1.img", "target2.img", "usb.img", "stick.img", "source.qcow2"] {
            let _ = std::fs::remove_file(base.join(f));
        }
        let _ = std::fs::remove_file(base.join("job/rescue"));
        // bios-ext4-bacula: the director's volumes hold the whole system.
        let _ = std::fs::remove_dir_all(base.join("bacula/volumes"));
        // bios-ext4-s3: the gateway's OSD file holds the backup.
        let _ = std::fs::remove_dir_all(base.join("rgw"));
        if let Ok(dir) = std::fs::read_dir(base.join("job/out")) {
            for iso in dir.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".iso")) {
                let _ = std::fs::remove_file(iso.path());
            }
        }
        Ok(format!("{scenario}: PASS\n{times}"))
    } else {
        let tail: Vec<&str> = stderr.lines().rev().take(120).collect::<Vec<_>>().into_iter().rev().collect();
        Err(format!("{scenario}: FAILED ({}); work directory {}\ntimes so far:\n{times}\n{}", out.status, base.display(), tail.join("\n")))
    }
}

fn run_all(scenarios: &[&str]) {
    require_all();
    if scenarios.iter().any(|s| s.ends_with("-bacula")) {
        // The director and storage daemon run on the host (tests/bacula/daemons.sh);
        // bios-ext4-bacula-server runs its own in the guest.
        require("bacula-dir", "bacula-director");
        require("bacula-sd", "bacula-sd");
        require("sqlite3", "sqlite3");
        let tables = Path::new("/usr/share/bacula-director/make_sqlite3_tables");
        assert!(tables.exists(), "{} is missing: apt-get install bacula-director-sqlite3 (or scripts/install-deps.sh)", tables.display());
    }
    if scenarios.iter().any(|s| s.ends_with("-s3")) {
        // Ceph RGW on the host (tests/s3/ceph-rgw.sh); the host checks the ISO with these.
        for (tool, package) in [("ceph-mon", "ceph-mon"), ("ceph-mgr", "ceph-mgr"), ("ceph-osd", "ceph-osd"), ("radosgw", "radosgw")] {
            require(tool, package);
        }
        for (tool, package) in [("curl", "curl"), ("xorriso", "xorriso"), ("cpio", "cpio"), ("uuidgen", "uuid-runtime")] {
            require(tool, package);
        }
        assert!(Path::new("/usr/bin/aws").exists(), "/usr/bin/aws is missing: apt-get install awscli (or scripts/install-deps.sh)");
    }
    if scenarios.iter().any(|s| s.ends_with("-incr-age")) {
        // The host makes the age identity and looks for it in the ISO.
        for (tool, package) in [("age-keygen", "age"), ("xorriso", "xorriso"), ("cpio", "cpio")] {
            require(tool, package);
        }
    }
    if scenarios.iter().any(|s| s.contains("bond-vlan")) {
        // The namespace pings and fetches from the recovered system.
        require("busybox", "busybox-static");
        require("curl", "curl");
    }
    let results: Vec<Result<String, String>> = scenarios.iter().map(|s| run(s)).collect();
    for r in results.iter().flatten() {
        eprintln!("{r}");
    }
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} recovery scenarios failed:\n\n{}",
        failed.len(),
        scenarios.len(),
        failed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n\n")
    );
}

const ALWAYS: &[&str] = &["bios-ext4", "uefi-lvm-xfs"];
/// MD RAID1 with GRUB on both members, LUKS2 holding LVM (the key read from a
/// USB stick at recovery), btrfs with subvolumes and a default subvolume, the
/// ext4 system onto a larger SATA disk and onto a smaller NVMe disk, the ext4
/// system restored by a Bacula director on the host, an MBR disk with logical
/// partitions and an ext2 /boot, the UEFI system onto a disk with 4096-byte
/// sectors (its FAT32 ESP grown to stay FAT32), scenarios 1 and 2 with a
/// Debian 13 (trixie) source whose own tools build the rescue image, and a
/// bond with a VLAN and a static address backed up to NFS and recovered onto
/// other NICs, in a network namespace (issue 19), and the ext4 system backed
/// up to and restored from S3 (Ceph RGW on the host), the rescue image
/// holding only a read-only key (issue 17), and the ext4 system recovered
/// from an encrypted incremental chain on a USB stick (a full backup and two
/// incrementals with additions, deletions and renames between them), the age
/// identity read from a second stick that only the recovery sees (issue 18),
/// and the Bacula server itself (director with its sqlite catalog, storage
/// daemon with its file volumes, file daemon) backed up to a USB disk with a catalog-dump hook: after the
/// recovery its director lists the jobs from before and restores a file from
/// a pre-disaster volume with the recorded checksum (issue 23).
const FULL: &[&str] = &[
    "bios-md-raid1",
    "luks2-lvm",
    "btrfs-subvol",
    "bios-ext4-to-sata-larger",
    "bios-ext4-to-nvme-smaller",
    "bios-ext4-bacula",
    "bios-mbr-logical",
    "uefi-lvm-xfs-to-4kn",
    "trixie-bios-ext4",
    "trixie-uefi-lvm-xfs",
    "bios-ext4-bond-vlan-nfs",
    "bios-ext4-s3",
    "bios-ext4-incr-age",
    "bios-ext4-bacula-server",
];

/// Scenarios 1 and 2 always; 3 to 6 and bios-ext4-bacula too with RESCUE_FULL_TESTS=1
/// (scripts/test.sh --full). RESCUE_SCENARIOS="name name..." runs only those.
#[test]
fn vm_recover_scenarios() {
    let picked = std::env::var("RESCUE_SCENARIOS").unwrap_or_default();
    let mut list: Vec<&str> = if picked.trim().is_empty() { ALWAYS.to_vec() } else { picked.split_whitespace().collect() };
    if picked.trim().is_empty() && std::env::var("RESCUE_FULL_TESTS").as_deref() == Ok("1") {
        list.extend(FULL);
    } else if picked.trim().is_empty() {
        eprintln!("vm_recover: scenarios {FULL:?} not run (RESCUE_FULL_TESTS=1 or scripts/test.sh --full runs them)");
    }
    run_all(&list);
}
