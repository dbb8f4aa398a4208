//! Inside a guest VM (qemu TCG, Debian kernel with dm, md, dm-crypt; udev
//! running): the MD RAID1, UEFI/LVM/XFS and LUKS2+LVM example descriptors, and
//! the descriptor captured from a VG over two PVs with a striped LV, are
//! recovered with `rescue recover --layout-only` onto blank disks, captured
//! with `savelayout` and left mounted and active; then each capture is
//! recovered again over the result of the first run (so the nested wipe of
//! mounted filesystems and active MD/LUKS/LVM is exercised), captured again
//! and torn down with `--umount`.
//!
//! Checked on the host: every identity of the example (partition GUIDs and
//! geometry, MD UUID/level/metadata/name, LUKS UUID/cipher/key size/offset,
//! PV/VG/LV UUIDs and sizes, filesystem and swap UUIDs/labels) is in the first
//! capture, and the second capture equals the first.
//!
//! Needs the VM harness `tests/vm/run-guest.sh` (or `RESCUE_VM_HARNESS=PATH`)
//! and takes minutes, so it is ignored by default:
//!   cargo test --test apply_vm -- --ignored --nocapture

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use rescue::layout::Layout;

mod common;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn harness() -> PathBuf {
    let p = std::env::var_os("RESCUE_VM_HARNESS").map(PathBuf::from).unwrap_or_else(|| root().join("tests/vm/run-guest.sh"));
    assert!(p.exists(), "the VM harness {} is missing (it comes from the `vm` branch; or set RESCUE_VM_HARNESS)", p.display());
    p
}

/// Recorded disk -> harness disk number (`DISKn` in the guest).
type DiskMap = &'static [(&'static str, u32)];

/// (scenario, descriptor under the repository root, disks)
const SCENARIOS: &[(&str, &str, DiskMap)] = &[
    ("md", "layouts/md-raid1-ext4.toml", &[("sda", 1), ("sdb", 2)]),
    ("lvm", "layouts/uefi-lvm-xfs.toml", &[("nvme0n1", 3)]),
    ("luks", "layouts/luks2-lvm.toml", &[("vda", 4)]),
    ("span", "tests/fixtures/probe/lvm-span.toml", &[("vdb", 5), ("vdc", 6)]),
];

fn descriptor(file: &str) -> Layout {
    Layout::load(&root().join(file)).unwrap()
}

/// The name the descriptor has in the job directory.
fn base(file: &str) -> &str {
    file.rsplit('/').next().unwrap_or(file)
}

const RUN_SH: &str = r#"
set -u
fail=0
# run NAME LAYOUT OUTNAME keep|umount OLD=DEV...
run() {
  local name=$1 layout=$2 out=$3 end=$4; shift 4
  local maps=() disks=() m
  for m in "$@"; do maps+=(--map "$m"); disks+=(--disk "${m#*=}"); done
  echo "== $out: recover $layout ${maps[*]}"
  if ! /job/rescue recover --layout "$layout" --layout-only --yes --unattended \
        --luks-key cryptroot=/job/key --target-root /mnt/$name "${maps[@]}" >"$OUT/$out.recover.log" 2>&1; then
    echo "recover $out failed:"; cat "$OUT/$out.recover.log"; fail=1; return
  fi
  mkdir -p /mnt/$name/etc && cp /job/$name.fstab /mnt/$name/etc/fstab
  findmnt -R /mnt/$name
  if ! /job/rescue savelayout "${disks[@]}" --root /mnt/$name -o "$OUT/$out.toml" >"$OUT/$out.save.log" 2>&1; then
    echo "savelayout $out failed:"; cat "$OUT/$out.save.log"; fail=1
  fi
  # Round one leaves everything mounted and active: round two must take it down itself.
  if [ "$end" = keep ]; then return; fi
  if ! /job/rescue recover --umount --layout "$layout" --target-root /mnt/$name >"$OUT/$out.umount.log" 2>&1; then
    echo "umount $out failed:"; cat "$OUT/$out.umount.log"; fail=1
  fi
  if findmnt -rn -o TARGET | grep -q "^/mnt/$name"; then echo "still mounted under /mnt/$name"; fail=1; fi
  dmsetup ls; cat /proc/mdstat
}
"#;

fn summary(l: &Layout) -> BTreeSet<String> {
    let u = |s: &str| s.to_ascii_lowercase().replace([':', '-'], "");
    let mut out = BTreeSet::new();
    for d in &l.disks {
        out.insert(format!("disk guid={:?} sig={:?} table={:?}", d.disk_guid, d.mbr_signature, d.table));
    }
    for p in &l.partitions {
        out.insert(format!(
            "partition {} start={} size={} type={} uuid={:?} label={:?}",
            p.number,
            p.start,
            p.size,
            p.type_id.to_ascii_uppercase(),
            p.uuid.as_deref().map(u),
            p.label
        ));
    }
    for r in &l.raids {
        out.insert(format!("raid {} uuid={} level={} metadata={} name={:?} devices={}", r.name, u(&r.uuid), r.level, r.metadata, r.array_name, r.raid_devices));
    }
    for k in &l.luks {
        out.insert(format!("luks {} uuid={} v{} cipher={} key={} offset={:?}", k.name, u(&k.uuid), k.version, k.cipher, k.key_size, k.offset));
    }
    for pv in &l.lvm_pvs {
        out.insert(format!("pv uuid={} vg={}", pv.uuid, pv.vg));
    }
    for vg in &l.lvm_vgs {
        out.insert(format!("vg {} uuid={} extent={}", vg.name, vg.uuid, vg.extent_size));
    }
    for lv in &l.lvm_lvs {
        out.insert(format!(
            "lv {} uuid={} size={} type={} stripes={} stripe-size={:?}",
            lv.id(),
            lv.uuid,
            lv.size,
            lv.segment_type,
            lv.stripes,
            lv.stripe_size
        ));
    }
    for f in &l.filesystems {
        out.insert(format!("fs {} uuid={} label={:?}", f.fstype, u(&f.uuid), f.label));
    }
    for s in &l.swaps {
        out.insert(format!("swap uuid={:?}", s.uuid.as_deref().map(u)));
    }
    for m in &l.mounts {
        out.insert(format!("mount {} options={} subvol={:?}", m.path, m.options, m.subvol));
    }
    out
}

#[test]
#[ignore = "boots a VM for minutes: cargo test --test apply_vm -- --ignored"]
fn md_lvm_luks_recovered_and_recaptured_in_a_guest() {
    assert!(rescue::util::is_root(), "this test needs root (qemu, loop devices)");
    let h = harness();
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path();
    std::fs::write(job.join("key"), "correct horse battery staple").unwrap();
    let mut script = String::from(RUN_SH);
    for (name, file, disks) in SCENARIOS {
        let l = descriptor(file);
        std::fs::copy(root().join(file), job.join(base(file))).unwrap();
        std::fs::write(job.join(format!("{name}.fstab")), common::fstab_for(&l)).unwrap();
        let maps: Vec<String> = disks.iter().map(|(old, n)| format!("{old}=$DISK{n}")).collect();
        script += &format!("run {name} /job/{} {name}-1 keep {}\n", base(file), maps.join(" "));
    }
    // Second round: the captures, over the first round's result.
    for (name, _, disks) in SCENARIOS {
        let maps: Vec<String> = disks.iter().map(|(_, n)| format!("$(basename $DISK{n})=$DISK{n}")).collect();
        script += &format!("run {name} $OUT/{name}-1.toml {name}-2 umount {}\n", maps.join(" "));
    }
    script += "exit $fail\n";
    std::fs::write(job.join("run.sh"), script).unwrap();

    let bin = PathBuf::from(env!("CARGO_BIN_EXE_rescue"));
    let started = std::time::Instant::now();
    let out = Command::new(&h)
        .args(["--rescue", bin.to_str().unwrap(), "--timeout", "2400", "--mem", "3072"])
        .args(["--disk", "10G:sata", "--disk", "10G:sata", "--disk", "50G:nvme", "--disk", "20G:virtio", "--disk", "1G:virtio", "--disk", "1G:virtio"])
        .arg(job)
        .output()
        .unwrap();
    let log = std::fs::read_to_string(job.join("out/run.log")).unwrap_or_default();
    println!("VM run: {:?}, exit {:?}\n{log}", started.elapsed(), out.status.code());
    assert!(
        out.status.success(),
        "the guest job failed ({:?}):\n{}\n{}\n{log}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for (name, file, _) in SCENARIOS {
        let orig = descriptor(file);
        let first = Layout::load(&job.join(format!("out/{name}-1.toml"))).unwrap();
        let second = Layout::load(&job.join(format!("out/{name}-2.toml"))).unwrap();
        let (want, got) = (summary(&orig), summary(&first));
        let missing: Vec<&String> = want.difference(&got).collect();
        assert!(
            missing.is_empty(),
            "{name}: identities of {file} not found in the capture of the recovered system:\n  {}\ncaptured:\n  {}",
            missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n  "),
            got.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n  ")
        );
        let changes = rescue::layout::diff::compare(&first, &second);
        assert!(
            changes.is_empty(),
            "{name}: recovering the capture again changed it:\n{}",
            changes.iter().map(|c| format!("  {c}")).collect::<Vec<_>>().join("\n")
        );
    }
}

#[test]
fn vm_scenarios_use_example_descriptors() {
    // Cheap guard so the ignored test's inputs stay valid.
    for (_, file, disks) in SCENARIOS {
        let l = descriptor(file);
        for (old, _) in *disks {
            assert!(l.disk(old).is_some(), "{file} has no disk {old}");
        }
    }
}
