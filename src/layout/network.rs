//! The `[network]` section of the descriptor: the interfaces of the recorded
//! system (hardware identity, static addresses, bonds, VLANs, bridges), its
//! routes and DNS, and which tool configures it. The rescue system brings it
//! up (`image.network = "recorded"`); recovery onto other hardware maps the
//! recorded NICs to the present ones and rewrites the recovered system's
//! network config for their names and MACs.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Network {
    /// The tools whose config files set up the network of the recorded system
    /// (several when, e.g., netplan writes networkd files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configured_by: Vec<ConfigTool>,
    #[serde(default, rename = "interface", skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// Routes that are not the kernel's own link routes, IPv4 and IPv6.
    #[serde(default, rename = "route", skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// `nameserver` lines of /etc/resolv.conf.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// `search` domains of /etc/resolv.conf.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
}

/// A tool that configures the network from files under /etc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ConfigTool {
    /// `/etc/network/interfaces` (+ `interfaces.d`), Debian's ifupdown/ifupdown2.
    #[serde(rename = "ifupdown")]
    Ifupdown,
    /// `/etc/systemd/network/*.network`, `.netdev`, `.link`.
    #[serde(rename = "networkd")]
    Networkd,
    /// `/etc/NetworkManager/system-connections/*.nmconnection` keyfiles.
    #[serde(rename = "networkmanager")]
    NetworkManager,
    /// `/etc/netplan/*.yaml`.
    #[serde(rename = "netplan")]
    Netplan,
}

impl ConfigTool {
    pub const ALL: [ConfigTool; 4] = [ConfigTool::Ifupdown, ConfigTool::Networkd, ConfigTool::NetworkManager, ConfigTool::Netplan];

    pub fn as_str(self) -> &'static str {
        match self {
            ConfigTool::Ifupdown => "ifupdown",
            ConfigTool::Networkd => "networkd",
            ConfigTool::NetworkManager => "networkmanager",
            ConfigTool::Netplan => "netplan",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum InterfaceKind {
    /// A NIC: it has hardware (a MAC, usually a driver and a PCI path).
    #[default]
    Ethernet,
    Bond,
    Vlan,
    Bridge,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Interface {
    /// Kernel name at capture (`ens3`, `bond0`, `bond0.100`).
    pub name: String,
    #[serde(default)]
    pub kind: InterfaceKind,
    /// The NIC's permanent MAC (a bond member's own, not the bond's), lower case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Kernel driver of a NIC (`virtio_net`, `e1000e`, `ixgbe`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// PCI address of a NIC (`0000:00:03.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Static addresses with prefix length (`192.0.2.10/24`, `2001:db8::10/64`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// It had an address from DHCP (the rescue system asks DHCP on it too).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dhcp: bool,
    /// Bond: the bonding mode as the kernel names it (`active-backup`, `802.3ad`, `balance-rr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bond_mode: Option<String>,
    /// Bond or bridge: the interfaces enslaved to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// VLAN: the 802.1Q tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_id: Option<u16>,
    /// VLAN: the interface it is tagged on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Route {
    /// `default` or a prefix (`198.51.100.0/24`, `2001:db8:1::/48`).
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The interface it leaves by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
    /// An IPv6 route (`default` alone does not say which family).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ipv6: bool,
}

impl Network {
    pub fn interface(&self, name: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.name == name)
    }

    /// The NICs (interfaces with hardware), the ones a new machine must map.
    pub fn nics(&self) -> impl Iterator<Item = &Interface> {
        self.interfaces.iter().filter(|i| i.kind == InterfaceKind::Ethernet)
    }
}

/// `ADDR/PREFIX` with a prefix that fits the address family.
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (a, p) = s.split_once('/')?;
    let addr: IpAddr = a.parse().ok()?;
    let prefix: u8 = p.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some((addr, prefix))
}

/// A MAC as six colon-separated hex pairs, lower case.
pub fn normalize_mac(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split(':').collect();
    (parts.len() == 6 && parts.iter().all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))).then(|| s.to_ascii_lowercase())
}

/// One problem of the `[network]` section: the item index in
/// `[[network.interface]]`/`[[network.route]]` (when it is about one), the key, and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkProblem {
    pub table: &'static str,
    pub index: usize,
    pub key: Option<&'static str>,
    pub message: String,
}

/// Every semantic problem of the `[network]` section.
pub fn check(net: &Network) -> Vec<NetworkProblem> {
    let mut out = Vec::new();
    let mut err = |table: &'static str, index: usize, key: Option<&'static str>, message: String| out.push(NetworkProblem { table, index, key, message });
    let names: BTreeSet<&str> = net.interfaces.iter().map(|i| i.name.as_str()).collect();
    let mut seen = BTreeSet::new();
    let mut enslaved: BTreeSet<&str> = BTreeSet::new();
    const IF: &str = "network.interface";
    for (i, itf) in net.interfaces.iter().enumerate() {
        let n = &itf.name;
        if n.is_empty() || n.len() > 15 || n.contains(['/', ' ', ':']) {
            err(IF, i, Some("name"), format!("network interface {n:?}: not a kernel interface name (1 to 15 characters, no `/`, `:` or space)"));
        }
        if !seen.insert(n.as_str()) {
            err(IF, i, Some("name"), format!("network interface `{n}` is listed twice"));
        }
        if let Some(m) = &itf.mac {
            if normalize_mac(m).as_deref() != Some(m.as_str()) {
                err(IF, i, Some("mac"), format!("network interface `{n}`: mac {m:?} is not six lower-case hex pairs (52:54:00:12:34:56)"));
            }
        }
        for a in &itf.addresses {
            if parse_cidr(a).is_none() {
                err(IF, i, Some("addresses"), format!("network interface `{n}`: address {a:?} is not ADDRESS/PREFIX (192.0.2.10/24, 2001:db8::10/64)"));
            }
        }
        match itf.kind {
            InterfaceKind::Bond if itf.bond_mode.as_deref().unwrap_or("").is_empty() => {
                err(IF, i, Some("bond-mode"), format!("bond `{n}` has no bond-mode (active-backup, 802.3ad, balance-rr...)"))
            }
            InterfaceKind::Vlan if itf.vlan_id.is_none_or(|v| v == 0 || v > 4094) || itf.parent.is_none() => {
                err(IF, i, None, format!("VLAN `{n}` needs vlan-id (1 to 4094) and parent"))
            }
            _ => {}
        }
        if !matches!(itf.kind, InterfaceKind::Bond | InterfaceKind::Bridge) && !itf.members.is_empty() {
            err(IF, i, Some("members"), format!("network interface `{n}`: only a bond or a bridge has members"));
        }
        if itf.kind != InterfaceKind::Vlan && (itf.parent.is_some() || itf.vlan_id.is_some()) {
            err(IF, i, None, format!("network interface `{n}`: only a VLAN has vlan-id and parent"));
        }
        let refs = itf.members.iter().map(|m| (m, "members")).chain(itf.parent.iter().map(|p| (p, "parent")));
        for (m, key) in refs {
            if !names.contains(m.as_str()) {
                err(IF, i, Some(key), format!("network interface `{n}` refers to `{m}`, which is not a [[network.interface]]"));
            }
        }
        for m in &itf.members {
            if !enslaved.insert(m.as_str()) {
                err(IF, i, Some("members"), format!("network interface `{m}` is a member of more than one bond or bridge"));
            }
        }
    }
    for (i, r) in net.routes.iter().enumerate() {
        if r.to != "default" && parse_cidr(&r.to).is_none() {
            err("network.route", i, Some("to"), format!("route to {:?}: not `default` or ADDRESS/PREFIX", r.to));
        }
        if let Some(v) = &r.via {
            if v.parse::<IpAddr>().is_err() {
                err("network.route", i, Some("via"), format!("route to {}: gateway {v:?} is not an IP address", r.to));
            }
        }
        if let Some(d) = &r.dev {
            if !names.contains(d.as_str()) {
                err("network.route", i, Some("dev"), format!("route to {}: interface `{d}` is not a [[network.interface]]", r.to));
            }
        }
    }
    for s in &net.nameservers {
        if s.parse::<IpAddr>().is_err() {
            err("network", 0, Some("nameservers"), format!("nameserver {s:?} is not an IP address"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cidr_and_mac_forms() {
        assert_eq!(parse_cidr("192.0.2.10/24").map(|(_, p)| p), Some(24));
        assert_eq!(parse_cidr("2001:db8::1/64").map(|(_, p)| p), Some(64));
        assert!(parse_cidr("192.0.2.10/33").is_none() && parse_cidr("192.0.2.10").is_none());
        assert_eq!(normalize_mac("52:54:00:AB:cd:01").as_deref(), Some("52:54:00:ab:cd:01"));
        assert!(normalize_mac("52:54:00:ab:cd").is_none() && normalize_mac("52-54-00-ab-cd-01").is_none());
    }

    #[test]
    fn a_bond_member_that_is_not_recorded_is_an_error() {
        let net = Network {
            interfaces: vec![
                Interface {
                    name: "bond0".into(),
                    kind: InterfaceKind::Bond,
                    bond_mode: Some("active-backup".into()),
                    members: vec!["ens3".into(), "ens4".into()],
                    ..Default::default()
                },
                Interface { name: "ens3".into(), mac: Some("52:54:00:00:00:01".into()), ..Default::default() },
                Interface { name: "bond0.100".into(), kind: InterfaceKind::Vlan, vlan_id: Some(100), ..Default::default() },
            ],
            routes: vec![Route { to: "default".into(), via: Some("192.0.2.1".into()), dev: Some("br9".into()), ..Default::default() }],
            ..Default::default()
        };
        let msgs: Vec<String> = check(&net).into_iter().map(|p| p.message).collect();
        assert!(msgs.iter().any(|m| m.contains("`ens4`, which is not")), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("VLAN `bond0.100` needs vlan-id (1 to 4094) and parent")), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("interface `br9`")), "{msgs:?}");
        assert_eq!(msgs.len(), 3, "{msgs:?}");
    }
}
