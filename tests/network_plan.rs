//! `rescue recover --plan` with a descriptor that records a network: the plan
//! shows which NIC here takes the place of each recorded one, an ambiguity
//! stops an unattended run and `--map-nic` decides it. The present disks and
//! NICs come from JSON inventories, so this needs no root and no hardware.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::rescue;

/// The descriptor `layouts/bios-gpt-ext4.toml` with the network of the VM
/// scenario's source: bond0 (active-backup over ens3, ens4), VLAN 100 on it.
fn layout_with_network(dir: &Path) -> PathBuf {
    let base = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts/bios-gpt-ext4.toml")).unwrap();
    let net = r#"
[network]
configured-by = ["ifupdown"]
nameservers = ["192.0.2.53"]

[[network.interface]]
name = "ens3"
mac = "52:54:00:12:34:01"
driver = "virtio_net"
pci-path = "0000:00:03.0"

[[network.interface]]
name = "ens4"
mac = "52:54:00:12:34:02"
driver = "virtio_net"
pci-path = "0000:00:04.0"

[[network.interface]]
name = "bond0"
kind = "bond"
bond-mode = "active-backup"
members = ["ens3", "ens4"]

[[network.interface]]
name = "bond0.100"
kind = "vlan"
vlan-id = 100
parent = "bond0"
addresses = ["192.0.2.10/24"]

[[network.route]]
to = "default"
via = "192.0.2.1"
dev = "bond0.100"
"#;
    let f = dir.join("layout.toml");
    std::fs::write(&f, format!("{base}{net}")).unwrap();
    f
}

fn write_json(dir: &Path, name: &str, v: serde_json::Value) -> String {
    let f = dir.join(name);
    std::fs::write(&f, v.to_string()).unwrap();
    f.display().to_string()
}

fn plan(dir: &Path, nics: serde_json::Value, extra: &[&str]) -> (bool, i32, String) {
    let layout = layout_with_network(dir);
    let disks = write_json(
        dir,
        "disks.json",
        serde_json::json!({ "disks": [{ "name": "sdx", "path": "/dev/sdx", "size": 21474836480u64, "logical-sector-size": 512 }] }),
    );
    let nics = write_json(dir, "nics.json", nics);
    let root = dir.join("target");
    let mut args = vec![
        "recover",
        "--plan",
        "--layout",
        layout.to_str().unwrap(),
        "--inventory",
        &disks,
        "--nic-inventory",
        &nics,
        "--target-root",
        root.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = rescue(dir, &args);
    (o.status.success(), o.status.code().unwrap_or(-1), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

#[test]
fn the_plan_shows_the_nic_mapping() {
    let tmp = tempfile::tempdir().unwrap();
    let nics = serde_json::json!([
        { "name": "enp0s4", "mac": "52:54:00:ab:cd:02", "driver": "e1000e", "pci-path": "0000:00:04.0", "predicted-name": "enp0s4" },
        { "name": "enp0s3", "mac": "52:54:00:ab:cd:01", "driver": "e1000e", "pci-path": "0000:00:03.0", "predicted-name": "enp0s3" },
    ]);
    let (ok, _, out) = plan(tmp.path(), nics, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("Network interfaces (the recovered system's config is rewritten for them):"), "{out}");
    assert!(out.contains("  ens3 (52:54:00:12:34:01) -> enp0s3 (52:54:00:ab:cd:01), named enp0s3 in the recovered system: same PCI address"), "{out}");
    assert!(out.contains("  ens4 (52:54:00:12:34:02) -> enp0s4 (52:54:00:ab:cd:02), named enp0s4 in the recovered system: same PCI address"), "{out}");

    // The same NICs: by MAC, nothing to rename.
    let (ok, _, out) =
        plan(tmp.path(), serde_json::json!([{ "name": "ens3", "mac": "52:54:00:12:34:01" }, { "name": "ens4", "mac": "52:54:00:12:34:02" }]), &[]);
    assert!(ok && out.contains("same MAC"), "{out}");
}

#[test]
fn an_ambiguous_nic_stops_and_map_nic_decides() {
    let tmp = tempfile::tempdir().unwrap();
    // Three NICs of another driver in other slots: which two hold the bond?
    let nics = serde_json::json!([
        { "name": "enp1s0", "mac": "52:54:00:ab:cd:01", "driver": "e1000e", "pci-path": "0000:01:00.0" },
        { "name": "enp2s0", "mac": "52:54:00:ab:cd:02", "driver": "e1000e", "pci-path": "0000:02:00.0" },
        { "name": "enp3s0", "mac": "52:54:00:ab:cd:03", "driver": "e1000e", "pci-path": "0000:03:00.0" },
    ]);
    let (ok, code, out) = plan(tmp.path(), nics.clone(), &["--unattended"]);
    assert!(!ok && code == 2, "exit {code}: {out}");
    assert!(out.contains("cannot map the recorded network interfaces; nothing was written"), "{out}");
    assert!(out.contains("recorded NIC ens3 could be any of enp1s0 (52:54:00:ab:cd:01, e1000e), enp2s0"), "{out}");
    assert!(out.contains("--map-nic ens3=NAME"), "{out}");

    let (ok, _, out) = plan(tmp.path(), nics, &["--unattended", "--map-nic", "ens3=enp3s0", "--map-nic", "52:54:00:12:34:02=enp1s0"]);
    assert!(ok, "{out}");
    assert!(out.contains("ens3 (52:54:00:12:34:01) -> enp3s0 (52:54:00:ab:cd:03), named enp3s0 in the recovered system: mapped explicitly"), "{out}");
    assert!(out.contains("ens4 (52:54:00:12:34:02) -> enp1s0"), "{out}");
}

/// `n` e1000e NICs eth0.. in slots 5.. with the scenario target's MACs, listed last first.
fn e1000e_nics(n: usize) -> serde_json::Value {
    (0..n)
        .rev()
        .map(|i| serde_json::json!({ "name": format!("eth{i}"), "mac": format!("52:54:00:19:02:0{}", i + 1), "driver": "e1000e", "pci-path": format!("0000:00:0{}.0", i + 5) }))
        .collect()
}

/// `rescue layout nics`, which the rescue init maps NICs with: the VM scenario's
/// target (e1000e NICs with other MACs in other slots) gets the bond members,
/// and an ambiguity fails with what to name in `[network-mapping]`.
#[test]
fn layout_nics_maps_the_bond_members_onto_other_nics() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = layout_with_network(tmp.path());
    let nics = |n: usize| {
        let inv = write_json(tmp.path(), &format!("nics{n}.json"), e1000e_nics(n));
        rescue(tmp.path(), &["layout", "nics", layout.to_str().unwrap(), "--nic-inventory", &inv])
    };
    let o = nics(2);
    let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{out}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ens3 eth0\nens4 eth1\n", "{out}");

    // Three NICs for a bond of two: which two?
    let o = nics(3);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && o.stdout.is_empty(), "{err}");
    assert!(err.contains("cannot map the NICs recorded in") && err.contains("[network-mapping]"), "{err}");
}
