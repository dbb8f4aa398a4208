//! Which present NIC takes the place of which recorded one, and the name the
//! recovered system will give it.
//!
//! Order of evidence: an explicit mapping (`--map-nic`, then the config's
//! `[network-mapping]`), the same MAC (the same card), the same PCI address
//! (another card in the same slot), then per driver the same number of
//! recorded and present NICs, paired in PCI order. What remains is paired
//! only when that cannot be wrong: one recorded NIC and one present NIC, or
//! the members of one bond onto as many NICs (any order gives the same
//! bond). Otherwise the caller gets the candidates, and an unattended run
//! stops, as it does for disks.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::inventory::PresentNic;
use crate::layout::network::{normalize_mac, Interface, InterfaceKind, Network};

/// A recorded NIC and what it is on this machine. Names or MACs that stay
/// the same are `None` on the new side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct NicRename {
    pub old_name: String,
    pub new_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_mac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_mac: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NicReason {
    Explicit,
    SameMac,
    SamePciPath,
    /// Same driver, as many recorded as present NICs of it: in PCI order.
    DriverOrder,
    /// Members of one bond onto as many NICs: in PCI order.
    BondMembers,
    /// The only recorded NIC left and the only present one.
    OnlyOne,
}

impl std::fmt::Display for NicReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NicReason::Explicit => "mapped explicitly",
            NicReason::SameMac => "same MAC",
            NicReason::SamePciPath => "same PCI address",
            NicReason::DriverOrder => "same driver, in PCI order",
            NicReason::BondMembers => "members of the same bond, in PCI order",
            NicReason::OnlyOne => "the only NIC left on both sides",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct NicAssignment {
    pub recorded: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_mac: Option<String>,
    /// The NIC's name in the rescue system.
    pub present: String,
    pub mac: String,
    /// The name the recovered system gives it.
    pub new_name: String,
    pub reason: NicReason,
}

/// The NIC mapping of a recovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub struct NicPlan {
    pub assignments: Vec<NicAssignment>,
    /// Recorded NICs with no NIC here: their config stays as it was.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unmatched: Vec<String>,
}

impl NicPlan {
    pub fn is_empty(&self) -> bool {
        self.assignments.is_empty() && self.unmatched.is_empty()
    }

    /// The renames the recovered system's config needs (none on the same hardware).
    pub fn renames(&self) -> Vec<NicRename> {
        self.assignments
            .iter()
            .map(|a| NicRename { old_name: a.recorded.clone(), new_name: a.new_name.clone(), old_mac: a.recorded_mac.clone(), new_mac: Some(a.mac.clone()) })
            .filter(|r| r.old_name != r.new_name || r.old_mac != r.new_mac)
            .collect()
    }
}

impl std::fmt::Display for NicPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for a in &self.assignments {
            let old_mac = a.recorded_mac.as_deref().unwrap_or("no MAC");
            writeln!(f, "  {} ({old_mac}) -> {} ({}), named {} in the recovered system: {}", a.recorded, a.present, a.mac, a.new_name, a.reason)?;
        }
        for u in &self.unmatched {
            writeln!(f, "  {u}: no NIC left on this machine; its config is kept as it was")?;
        }
        Ok(())
    }
}

/// The NIC mapping could not be completed without help.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NicProblem {
    /// Recorded NIC and the present NICs it could be.
    pub ambiguous: Vec<(String, Vec<String>)>,
    pub errors: Vec<String>,
}

impl std::fmt::Display for NicProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut lines = self.errors.clone();
        for (nic, candidates) in &self.ambiguous {
            lines.push(format!(
                "recorded NIC {nic} could be any of {}; choose with --map-nic {nic}=NAME (or [network-mapping] in the config)",
                candidates.join(", ")
            ));
        }
        f.write_str(&lines.join("\n"))
    }
}

/// Kernel names (`eth0`): the recorded system did not use predictable names
/// (`net.ifnames=0`), so the new ones are kernel names too.
fn is_kernel_name(name: &str) -> bool {
    name.strip_prefix("eth").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The name the recovered system gives `p`: what udev's predictable naming
/// computes, or a kernel name in PCI order when the recorded system used those.
fn new_name(rec: &Interface, p: &PresentNic, present: &[PresentNic]) -> String {
    if is_kernel_name(&rec.name) {
        if is_kernel_name(&p.name) {
            return p.name.clone();
        }
        let mut order: Vec<&PresentNic> = present.iter().collect();
        order.sort_by(|a, b| a.pci_path.cmp(&b.pci_path).then(a.name.cmp(&b.name)));
        let i = order.iter().position(|o| o.name == p.name).unwrap_or(0);
        return format!("eth{i}");
    }
    p.predicted_name.clone().unwrap_or_else(|| p.name.clone())
}

/// Map every recorded NIC of `net` to a present NIC. `explicit`: recorded
/// name or MAC → present name or MAC.
pub fn map_nics(net: &Network, present: &[PresentNic], explicit: &BTreeMap<String, String>) -> Result<NicPlan, NicProblem> {
    let recorded: Vec<&Interface> = net.nics().collect();
    let mut problem = NicProblem::default();
    let mut pairs: Vec<(&Interface, &PresentNic, NicReason)> = Vec::new();
    let mut used: BTreeSet<&str> = BTreeSet::new();
    let same_mac = |a: Option<&str>, b: &str| a.and_then(normalize_mac).is_some_and(|a| normalize_mac(b).as_deref() == Some(a.as_str()));

    for (old, new) in explicit {
        let Some(rec) = recorded.iter().find(|r| &r.name == old || same_mac(r.mac.as_deref(), old)) else {
            problem.errors.push(format!("--map-nic {old}={new}: {old} is not a recorded NIC (name or MAC)"));
            continue;
        };
        let Some(p) = present.iter().find(|p| &p.name == new || same_mac(Some(&p.mac), new)) else {
            problem.errors.push(format!("--map-nic {old}={new}: there is no NIC {new} on this machine (name or MAC; `ip link` lists them)"));
            continue;
        };
        if !used.insert(&p.name) {
            problem.errors.push(format!("--map-nic {old}={new}: {} is already the target of another recorded NIC", p.name));
            continue;
        }
        pairs.push((rec, p, NicReason::Explicit));
    }
    let taken = |pairs: &[(&Interface, &PresentNic, NicReason)], r: &Interface| pairs.iter().any(|(x, _, _)| x.name == r.name);

    // The same card, then the same slot.
    type Key = fn(&Interface, &PresentNic) -> bool;
    let rules: [(Key, NicReason); 2] = [
        (|r, p| r.mac.as_deref().is_some_and(|m| normalize_mac(&p.mac).as_deref() == Some(m)), NicReason::SameMac),
        (|r, p| r.pci_path.is_some() && r.pci_path == p.pci_path, NicReason::SamePciPath),
    ];
    for (matches, reason) in rules {
        for r in &recorded {
            if taken(&pairs, r) {
                continue;
            }
            let found: Vec<&PresentNic> = present.iter().filter(|p| !used.contains(p.name.as_str()) && matches(r, p)).collect();
            if let [p] = found[..] {
                used.insert(&p.name);
                pairs.push((r, p, reason));
            }
        }
    }

    // Per driver, as many on both sides: in PCI order.
    let by_pci = |a: &&PresentNic, b: &&PresentNic| a.pci_path.cmp(&b.pci_path).then(a.name.cmp(&b.name));
    let drivers: BTreeSet<&str> = recorded.iter().filter(|r| !taken(&pairs, r)).filter_map(|r| r.driver.as_deref()).collect();
    for d in drivers {
        let mut recs: Vec<&Interface> = recorded.iter().copied().filter(|r| !taken(&pairs, r) && r.driver.as_deref() == Some(d)).collect();
        let mut here: Vec<&PresentNic> = present.iter().filter(|p| !used.contains(p.name.as_str()) && p.driver.as_deref() == Some(d)).collect();
        if !recs.is_empty() && recs.len() == here.len() {
            recs.sort_by(|a, b| a.pci_path.cmp(&b.pci_path).then(a.name.cmp(&b.name)));
            here.sort_by(by_pci);
            for (r, p) in recs.into_iter().zip(here) {
                used.insert(&p.name);
                pairs.push((r, p, NicReason::DriverOrder));
            }
        }
    }

    // What is left pairs only when any pairing gives the same system.
    let mut recs: Vec<&Interface> = recorded.iter().copied().filter(|r| !taken(&pairs, r)).collect();
    let mut here: Vec<&PresentNic> = present.iter().filter(|p| !used.contains(p.name.as_str())).collect();
    let mut unmatched = Vec::new();
    if !recs.is_empty() {
        let bond_of = |r: &Interface| net.interfaces.iter().find(|b| b.kind == InterfaceKind::Bond && b.members.contains(&r.name)).map(|b| b.name.clone());
        let one_bond = {
            let bonds: BTreeSet<Option<String>> = recs.iter().map(|r| bond_of(r)).collect();
            bonds.len() == 1 && bonds.iter().all(Option::is_some) && recs.iter().all(|r| r.addresses.is_empty())
        };
        if here.is_empty() {
            unmatched = recs.iter().map(|r| r.name.clone()).collect();
        } else if recs.len() == 1 && here.len() == 1 {
            pairs.push((recs[0], here[0], NicReason::OnlyOne));
        } else if one_bond && recs.len() == here.len() {
            recs.sort_by(|a, b| a.pci_path.cmp(&b.pci_path).then(a.name.cmp(&b.name)));
            here.sort_by(by_pci);
            for (r, p) in recs.into_iter().zip(here) {
                pairs.push((r, p, NicReason::BondMembers));
            }
        } else {
            let names: Vec<String> =
                here.iter().map(|p| format!("{} ({}{})", p.name, p.mac, p.driver.as_deref().map(|d| format!(", {d}")).unwrap_or_default())).collect();
            problem.ambiguous = recs.iter().map(|r| (r.name.clone(), names.clone())).collect();
        }
    }
    if !problem.errors.is_empty() || !problem.ambiguous.is_empty() {
        return Err(problem);
    }
    // Recorded order, so the plan reads like the descriptor.
    pairs.sort_by_key(|(r, _, _)| recorded.iter().position(|x| x.name == r.name));
    let assignments = pairs
        .into_iter()
        .map(|(r, p, reason)| NicAssignment {
            recorded: r.name.clone(),
            recorded_mac: r.mac.clone(),
            present: p.name.clone(),
            mac: normalize_mac(&p.mac).unwrap_or_else(|| p.mac.clone()),
            new_name: new_name(r, p, present),
            reason,
        })
        .collect();
    Ok(NicPlan { assignments, unmatched })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn nic(name: &str, mac: &str, driver: &str, pci: &str) -> Interface {
        Interface { name: name.into(), mac: Some(mac.into()), driver: Some(driver.into()), pci_path: Some(pci.into()), ..Default::default() }
    }

    fn here(name: &str, mac: &str, driver: &str, pci: &str, predicted: &str) -> PresentNic {
        PresentNic { name: name.into(), mac: mac.into(), driver: Some(driver.into()), pci_path: Some(pci.into()), predicted_name: Some(predicted.into()) }
    }

    /// The source of the VM scenario: a bond of two virtio NICs with a VLAN on it.
    fn bonded() -> Network {
        let mut n = Network {
            interfaces: vec![
                nic("ens3", "52:54:00:12:34:01", "virtio_net", "0000:00:03.0"),
                nic("ens4", "52:54:00:12:34:02", "virtio_net", "0000:00:04.0"),
                Interface {
                    name: "bond0".into(),
                    kind: InterfaceKind::Bond,
                    bond_mode: Some("active-backup".into()),
                    members: vec!["ens3".into(), "ens4".into()],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        n.interfaces.push(Interface {
            name: "bond0.100".into(),
            kind: InterfaceKind::Vlan,
            vlan_id: Some(100),
            parent: Some("bond0".into()),
            addresses: vec!["192.0.2.10/24".into()],
            ..Default::default()
        });
        n
    }

    fn summary(p: &NicPlan) -> Vec<(String, String, String, NicReason)> {
        p.assignments.iter().map(|a| (a.recorded.clone(), a.present.clone(), a.new_name.clone(), a.reason)).collect()
    }

    #[test]
    fn same_hardware_maps_by_mac_and_renames_nothing() {
        let present =
            [here("ens4", "52:54:00:12:34:02", "virtio_net", "0000:00:04.0", "ens4"), here("ens3", "52:54:00:12:34:01", "virtio_net", "0000:00:03.0", "ens3")];
        let p = map_nics(&bonded(), &present, &BTreeMap::new()).unwrap();
        assert!(p.assignments.iter().all(|a| a.reason == NicReason::SameMac), "{p:?}");
        assert!(p.renames().is_empty());
    }

    #[test]
    fn other_cards_in_the_same_slots_map_by_pci_address() {
        let present =
            [here("enp0s3", "52:54:00:ab:cd:01", "e1000e", "0000:00:03.0", "enp0s3"), here("enp0s4", "52:54:00:ab:cd:02", "e1000e", "0000:00:04.0", "enp0s4")];
        let p = map_nics(&bonded(), &present, &BTreeMap::new()).unwrap();
        assert_eq!(
            summary(&p),
            [
                ("ens3".into(), "enp0s3".into(), "enp0s3".into(), NicReason::SamePciPath),
                ("ens4".into(), "enp0s4".into(), "enp0s4".into(), NicReason::SamePciPath)
            ]
        );
        let r = p.renames();
        assert_eq!((r[0].old_mac.as_deref(), r[0].new_mac.as_deref()), (Some("52:54:00:12:34:01"), Some("52:54:00:ab:cd:01")));
        assert!(
            p.to_string().contains("ens3 (52:54:00:12:34:01) -> enp0s3 (52:54:00:ab:cd:01), named enp0s3 in the recovered system: same PCI address"),
            "{p}"
        );
    }

    #[test]
    fn bond_members_in_other_slots_pair_in_pci_order() {
        let present =
            [here("enp2s0", "52:54:00:ab:cd:02", "e1000e", "0000:02:00.0", "enp2s0"), here("enp1s0", "52:54:00:ab:cd:01", "e1000e", "0000:01:00.0", "enp1s0")];
        let p = map_nics(&bonded(), &present, &BTreeMap::new()).unwrap();
        assert_eq!(
            summary(&p),
            [
                ("ens3".into(), "enp1s0".into(), "enp1s0".into(), NicReason::BondMembers),
                ("ens4".into(), "enp2s0".into(), "enp2s0".into(), NicReason::BondMembers)
            ]
        );
    }

    #[test]
    fn nics_with_their_own_addresses_are_ambiguous_and_an_explicit_map_decides() {
        let net = Network {
            interfaces: vec![
                Interface { addresses: vec!["192.0.2.10/24".into()], ..nic("ens3", "52:54:00:12:34:01", "virtio_net", "0000:00:03.0") },
                Interface { addresses: vec!["198.51.100.10/24".into()], ..nic("ens4", "52:54:00:12:34:02", "virtio_net", "0000:00:04.0") },
            ],
            ..Default::default()
        };
        let present =
            [here("enp1s0", "52:54:00:ab:cd:01", "e1000e", "0000:01:00.0", "enp1s0"), here("enp2s0", "52:54:00:ab:cd:02", "e1000e", "0000:02:00.0", "enp2s0")];
        let e = map_nics(&net, &present, &BTreeMap::new()).unwrap_err();
        assert_eq!(e.ambiguous.len(), 2);
        let msg = e.to_string();
        assert!(msg.contains("recorded NIC ens3 could be any of enp1s0 (52:54:00:ab:cd:01, e1000e), enp2s0") && msg.contains("--map-nic ens3=NAME"), "{msg}");
        // One explicit pair leaves one on each side.
        let map: BTreeMap<String, String> = [("ens3".to_string(), "52:54:00:AB:CD:02".to_string())].into();
        let p = map_nics(&net, &present, &map).unwrap();
        assert_eq!(
            summary(&p),
            [("ens3".into(), "enp2s0".into(), "enp2s0".into(), NicReason::Explicit), ("ens4".into(), "enp1s0".into(), "enp1s0".into(), NicReason::OnlyOne)]
        );
        let bad: BTreeMap<String, String> = [("ens9".to_string(), "enp1s0".to_string())].into();
        assert!(map_nics(&net, &present, &bad).unwrap_err().to_string().contains("ens9 is not a recorded NIC"));
    }

    #[test]
    fn same_driver_pairs_in_pci_order_kernel_names_stay_kernel_names_and_missing_nics_are_kept() {
        let net = Network {
            interfaces: vec![nic("eth0", "52:54:00:12:34:01", "igb", "0000:03:00.0"), nic("eth1", "52:54:00:12:34:02", "igb", "0000:03:00.1")],
            ..Default::default()
        };
        let present = [
            here("enp5s0f1", "52:54:00:ab:cd:02", "igb", "0000:05:00.1", "enp5s0f1"),
            here("enp5s0f0", "52:54:00:ab:cd:01", "igb", "0000:05:00.0", "enp5s0f0"),
        ];
        let p = map_nics(&net, &present, &BTreeMap::new()).unwrap();
        assert_eq!(
            summary(&p),
            [
                ("eth0".into(), "enp5s0f0".into(), "eth0".into(), NicReason::DriverOrder),
                ("eth1".into(), "enp5s0f1".into(), "eth1".into(), NicReason::DriverOrder)
            ]
        );
        let p = map_nics(&net, &present[..0], &BTreeMap::new()).unwrap();
        assert_eq!(p.unmatched, ["eth0", "eth1"]);
        assert!(p.renames().is_empty());
    }
}
