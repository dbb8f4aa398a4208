//! `image.network = "recorded"`: the descriptor's `[network]` as the lines
//! the rescue init (`init.sh`, `net_recorded`) reads to bring it up. One item
//! per line, whitespace-separated, an interface after what it sits on:
//!
//! ```text
//! nic NAME MAC            the recorded NIC, found here by its MAC
//! bond NAME MODE MEMBERS  members comma-separated
//! bridge NAME - MEMBERS
//! vlan NAME PARENT ID
//! mtu NAME BYTES          after the interface exists, before its addresses
//! addr NAME ADDRESS/PREFIX
//! dhcp NAME
//! route TO VIA|- DEV      (route6 for IPv6)
//! dns ADDRESS
//! ```

use std::collections::BTreeSet;

use crate::layout::network::{Interface, InterfaceKind, Network};

/// Where the image carries the lines.
pub const RECORDED_NET: &str = "/etc/rescue/recorded-net";

/// Interfaces ordered so that each comes after its members and parent.
fn in_dependency_order(net: &Network) -> Vec<&Interface> {
    let mut out: Vec<&Interface> = Vec::new();
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    // Validation refuses references to unknown interfaces; a cycle cannot be
    // placed and is left out after as many passes as there are interfaces.
    for _ in 0..=net.interfaces.len() {
        for i in &net.interfaces {
            let ready = i.members.iter().chain(i.parent.iter()).all(|d| placed.contains(d.as_str()));
            if ready && placed.insert(&i.name) {
                out.push(i);
            }
        }
    }
    out
}

/// The lines for `net`.
pub fn recorded_net(net: &Network) -> String {
    let mut s = String::new();
    for i in in_dependency_order(net) {
        let members = i.members.join(",");
        match i.kind {
            InterfaceKind::Ethernet => {
                if let Some(mac) = &i.mac {
                    s += &format!("nic {} {mac}\n", i.name);
                }
            }
            InterfaceKind::Bond => s += &format!("bond {} {} {members}\n", i.name, i.bond_mode.as_deref().unwrap_or("active-backup")),
            InterfaceKind::Bridge => s += &format!("bridge {} - {members}\n", i.name),
            InterfaceKind::Vlan => {
                if let (Some(p), Some(id)) = (&i.parent, i.vlan_id) {
                    s += &format!("vlan {} {p} {id}\n", i.name);
                }
            }
        }
        // A VLAN's MTU cannot exceed its parent's: the parent's line came first.
        if let Some(mtu) = i.mtu {
            s += &format!("mtu {} {mtu}\n", i.name);
        }
    }
    for i in &net.interfaces {
        for a in &i.addresses {
            s += &format!("addr {} {a}\n", i.name);
        }
        if i.dhcp {
            s += &format!("dhcp {}\n", i.name);
        }
    }
    for r in &net.routes {
        let Some(dev) = &r.dev else { continue };
        s += &format!("{} {} {} {dev}\n", if r.ipv6 { "route6" } else { "route" }, r.to, r.via.as_deref().unwrap_or("-"));
    }
    for d in &net.nameservers {
        s += &format!("dns {d}\n");
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_vlan_on_a_bond_comes_after_both_nics_and_the_bond() {
        let fx =
            crate::probe::source::Fixture::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/network/bond-vlan-vm.json")).unwrap();
        let mut net = crate::probe::network::capture_network(&fx, "/").unwrap();
        // Listed parent-last in the descriptor: the lines still come in order.
        net.interfaces.reverse();
        assert_eq!(
            recorded_net(&net),
            "nic eth1 52:54:00:19:01:02\n\
             nic eth0 52:54:00:19:01:01\n\
             bond bond0 active-backup eth0,eth1\n\
             vlan bond0.42 bond0 42\n\
             mtu bond0.42 1400\n\
             addr bond0.42 198.51.100.10/24\n\
             addr bond0.42 2001:db8:42::10/64\n\
             route default 198.51.100.1 bond0.42\n\
             route6 default 2001:db8:42::1 bond0.42\n\
             dns 198.51.100.53\n"
        );
    }

    #[test]
    fn the_image_carries_ip_and_the_modules_of_the_recorded_kinds() {
        use crate::image::config::NetworkMode;
        use crate::needs::{recovery, Needs, Runs};
        let fx =
            crate::probe::source::Fixture::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/network/bond-vlan-vm.json")).unwrap();
        let mut layout = crate::layout::Layout::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts/bios-gpt-ext4.toml")).unwrap();
        layout.network = Some(crate::probe::network::capture_network(&fx, "/").unwrap());
        let mut config = crate::config::Config::default();
        let required = |config: &crate::config::Config| -> Vec<&'static str> {
            let n = recovery(&layout, &config.image, Needs::default());
            let mut v: Vec<&'static str> =
                n.modules.iter().filter(|m| m.required && ["bonding", "8021q", "bridge"].contains(&m.name)).map(|m| m.name).collect();
            if n.programs.iter().any(|p| p.name == "ip" && p.runs == Runs::Rescue) {
                v.push("ip");
            }
            v.sort();
            v
        };
        assert!(required(&config).is_empty(), "DHCP needs none of them");
        config.image.network = NetworkMode::Recorded;
        assert_eq!(required(&config), ["8021q", "bonding", "ip"]);
    }
}
