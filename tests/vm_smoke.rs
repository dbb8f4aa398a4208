//! Smoke test of the VM harness (tests/vm/): boots the cached Debian 12 guest
//! under qemu TCG with two blank virtio disks, and inside it checks what the
//! host cannot do: udev names (/dev/disk/by-id), an LVM volume group, an MD
//! RAID1 array and a LUKS2 mapping, plus that our `rescue` binary runs there.
//!
//! Slow (first run builds the guest: minutes; later runs ~1-2 min). One test
//! function on purpose: test binaries run one after another, so this never
//! overlaps another heavy test. Needs root, qemu-system-x86, debootstrap; it
//! fails (never skips) when they are missing.

use std::path::Path;
use std::process::Command;

const JOB: &str = r#"#!/bin/bash
set -euxo pipefail
./rescue --version >"$OUT/rescue-version"
# LVM: a VG with one LV on the first disk.
pvcreate -y "$DISK1"
vgcreate smokevg "$DISK1"
lvcreate -y -L 64M -n lv1 smokevg
mkfs.ext4 -q /dev/smokevg/lv1
lvm lvs --reportformat json --units b --nosuffix -o lv_name,vg_name,lv_size >"$OUT/lvs.json"
# MD RAID1 over two partitions of the second disk.
printf 'label: gpt\n,64M\n,64M\n' | sfdisk -q "$DISK2"
udevadm settle
ls /dev/disk/by-id >"$OUT/by-id"
mdadm --create /dev/md0 --run --level=1 --raid-devices=2 --metadata=1.2 "${DISK2}1" "${DISK2}2"
mdadm --detail --export /dev/md0 >"$OUT/md0.export"
# LUKS2 on the RAID array (cheap PBKDF: TCG is slow).
printf 'smoke-key' >/tmp/key
cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file /tmp/key /dev/md0
cryptsetup open --key-file /tmp/key /dev/md0 smokecrypt
udevadm settle
lsblk -J -b -O >"$OUT/lsblk.json"
cryptsetup close smokecrypt
mdadm --stop /dev/md0
vgchange -an smokevg
echo smoke-ok >"$OUT/done"
"#;

fn require(tool: &str, package: &str) {
    let found = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file())).unwrap_or(false);
    assert!(found, "{tool} is missing: the VM tests need it; install it with `apt-get install {package}` (or scripts/install-deps.sh)");
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("reading {}: {e}", dir.join(name).display()))
}

/// Every `name` in an lsblk -J tree, depth first.
fn lsblk_names(v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    if let Some(devs) = v.get("blockdevices").or_else(|| v.get("children")).and_then(|d| d.as_array()) {
        for d in devs {
            let name = d["name"].as_str().unwrap_or_default().to_string();
            let ty = d["type"].as_str().unwrap_or_default().to_string();
            out.push((name, ty));
            lsblk_names(d, out);
        }
    }
}

#[test]
fn vm_smoke() {
    assert!(nix::unistd::geteuid().is_root(), "the VM tests need root (debootstrap, mkfs, qemu); run cargo test as root");
    require("qemu-system-x86_64", "qemu-system-x86");
    require("debootstrap", "debootstrap");
    require("mkfs.ext4", "e2fsprogs");
    require("zstd", "zstd");

    let job = tempfile::Builder::new().prefix("rescue-vm-smoke.").tempdir().expect("creating a temporary job directory");
    std::fs::write(job.path().join("run.sh"), JOB).expect("writing run.sh");
    let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/run-guest.sh");
    let status = Command::new(&harness)
        .args(["--disk", "1G", "--disk", "1G", "--timeout", "1200", "--rescue", env!("CARGO_BIN_EXE_rescue")])
        .arg(job.path())
        .status()
        .expect("starting tests/vm/run-guest.sh");
    let out = job.path().join("out");
    if !status.success() {
        let log = std::fs::read_to_string(out.join("run.log")).unwrap_or_default();
        panic!("the VM job failed ({status}); run.log:\n{log}");
    }
    assert_eq!(read(&out, "done").trim(), "smoke-ok");
    assert!(read(&out, "rescue-version").contains("rescue"), "rescue --version printed nothing useful in the guest");

    let disks = read(&out, "disks");
    assert!(disks.contains("DISK1=/dev/vd") && disks.contains("DISK2=/dev/vd"), "extra disks not found in the guest: {disks}");
    let by_id = read(&out, "by-id");
    assert!(by_id.lines().any(|l| l == "virtio-rt-disk1"), "udev did not make /dev/disk/by-id/virtio-rt-disk1: {by_id}");
    assert!(by_id.lines().any(|l| l == "virtio-rt-disk2-part1"), "no by-id link for disk 2 partition 1: {by_id}");

    let lvs: serde_json::Value = serde_json::from_str(&read(&out, "lvs.json")).expect("lvs.json is JSON");
    let lv = &lvs["report"][0]["lv"][0];
    assert_eq!(lv["lv_name"], "lv1");
    assert_eq!(lv["vg_name"], "smokevg");
    assert_eq!(lv["lv_size"], "67108864");

    let md = read(&out, "md0.export");
    assert!(md.contains("MD_LEVEL=raid1"), "md0 is not RAID1: {md}");
    assert!(md.contains("MD_DEVICES=2"), "md0 does not have 2 devices: {md}");

    let lsblk: serde_json::Value = serde_json::from_str(&read(&out, "lsblk.json")).expect("lsblk.json is JSON");
    let mut names = Vec::new();
    lsblk_names(&lsblk, &mut names);
    for (name, ty) in [("smokevg-lv1", "lvm"), ("md0", "raid1"), ("smokecrypt", "crypt")] {
        assert!(names.iter().any(|(n, t)| n == name && t == ty), "lsblk in the guest shows no {ty} device {name}: {names:?}");
    }

    let boot: f64 = read(&out, "boot-seconds").trim().parse().expect("boot-seconds is a number");
    eprintln!("vm_smoke: guest booted to the job in {boot} s");
}
