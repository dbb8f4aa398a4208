//! As root on a loop disk: LVM metadata with the recorded UUIDs. The host
//! kernel has no device-mapper, so nothing is activated here; but `pvcreate`
//! and `vgcfgrestore` only write metadata, and `lvm vgs/lvs` read it back.
//! This checks the VG/LV metadata the `CreateVg`/`CreateLv` operations write
//! (UUIDs, extent size, sizes, linear allocation across two PVs, a striped LV).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use common::*;
use rescue::apply::lvm::{pv_geometry, VgState};
use rescue::cmd::Cmd;

#[test]
fn volume_group_with_recorded_uuids_on_loop_pvs() {
    require_root();
    require_tools(&["lvm"]);
    let tmp = tempfile::tempdir().unwrap();
    let a = LoopDisk::new(tmp.path(), "pv-a", 64);
    let b = LoopDisk::new(tmp.path(), "pv-b", 64);
    let vg_name = format!("rescuetest{}", a.dev.trim_start_matches("/dev/loop"));
    // Make sure no VG of that name lingers from an aborted run, and remove it at the end.
    struct Cleanup(String, Vec<String>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = Cmd::new("lvm").args(["vgremove", "-ff", "--yes", &self.0]).run();
            for d in &self.1 {
                let _ = Cmd::new("wipefs").args(["-a", "-q", d]).run();
            }
        }
    }
    let _c = Cleanup(vg_name.clone(), vec![a.dev.clone(), b.dev.clone()]);
    let pvs = [(a.dev.clone(), "Pv1aBc-2DeF-3gHi-4JkL-5mNo-6PqR-7sTuVw"), (b.dev.clone(), "Pv2aBc-2DeF-3gHi-4JkL-5mNo-6PqR-7sTuVw")];
    for (dev, uuid) in &pvs {
        Cmd::new("lvm").args(["pvcreate", "--yes", "-ff", "--uuid", uuid, "--norestorefile", dev]).run().unwrap();
    }
    let devs: Vec<PathBuf> = pvs.iter().map(|p| PathBuf::from(&p.0)).collect();
    let geo = pv_geometry(&devs).unwrap();
    let list = pvs.iter().zip(geo).map(|(p, (s, z))| (PathBuf::from(&p.0), p.1.to_string(), s, z)).collect();
    let mut vg = VgState::new(&vg_name, "Vg1aBc-2DeF-3gHi-4JkL-5mNo-6PqR-7sTuVw", 4 << 20, list).unwrap();
    vg.restore(tmp.path()).unwrap();
    // Two stripes of 2 extents, 64 KiB each, at the start of both PVs (as the plan orders it: striped first).
    vg.add_lv("fast", "Lv3aBc-2DeF-3gHi-4JkL-5mNo-6PqR-7sTuVw", 16 << 20, 2, 64 << 10).unwrap();
    vg.restore(tmp.path()).unwrap();
    vg.add_lv("root", "Lv1aBc-2DeF-3gHi-4JkL-5mNo-6PqR-7sTuVw", 40 << 20, 1, 0).unwrap();
    vg.restore(tmp.path()).unwrap();
    // 60 MiB does not fit on what is left of the first PV: it spans both.
    vg.add_lv("data", "Lv2aBc-2DeF-3gHi-4JkL-5mNo-6PqR-7sTuVw", 60 << 20, 1, 0).unwrap();
    vg.restore(tmp.path()).unwrap();

    let out = Cmd::new("lvm")
        .args(["vgs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "vg_name,vg_uuid,vg_extent_size,pv_count,lv_count", &vg_name])
        .read()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let row = &v["report"][0]["vg"][0];
    assert_eq!(row["vg_uuid"], "Vg1aBc-2DeF-3gHi-4JkL-5mNo-6PqR-7sTuVw", "{out}");
    assert_eq!(row["vg_extent_size"], (4u64 << 20).to_string(), "{out}");
    assert_eq!(row["pv_count"], "2");
    assert_eq!(row["lv_count"], "3");
    let out = Cmd::new("lvm")
        .args(["lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "lv_name,lv_uuid,lv_size,seg_count,segtype,stripes,stripe_size", &vg_name])
        .read()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let lvs = v["report"][0]["lv"].as_array().unwrap();
    let find = |n: &str| lvs.iter().find(|l| l["lv_name"] == n).unwrap_or_else(|| panic!("no LV {n} in {out}"));
    assert_eq!(find("root")["lv_uuid"], "Lv1aBc-2DeF-3gHi-4JkL-5mNo-6PqR-7sTuVw");
    assert_eq!(find("root")["lv_size"], (40u64 << 20).to_string());
    assert_eq!(find("data")["lv_uuid"], "Lv2aBc-2DeF-3gHi-4JkL-5mNo-6PqR-7sTuVw");
    assert_eq!(find("data")["lv_size"], (60u64 << 20).to_string());
    assert_eq!(find("data")["seg_count"], "2");
    let fast = find("fast");
    assert_eq!((&fast["lv_uuid"], &fast["lv_size"]), (&"Lv3aBc-2DeF-3gHi-4JkL-5mNo-6PqR-7sTuVw".into(), &(16u64 << 20).to_string().into()), "{out}");
    assert_eq!((&fast["segtype"], &fast["stripes"], &fast["stripe_size"]), (&"striped".into(), &"2".into(), &(64u64 << 10).to_string().into()), "{out}");
    let out = Cmd::new("lvm").args(["pvs", "--reportformat", "json", "-o", "pv_name,pv_uuid,vg_name"]).args(&devs).read().unwrap();
    assert!(out.contains("Pv1aBc-2DeF-3gHi-4JkL-5mNo-6PqR-7sTuVw") && out.contains("Pv2aBc-2DeF-3gHi-4JkL-5mNo-6PqR-7sTuVw"), "{out}");
}
