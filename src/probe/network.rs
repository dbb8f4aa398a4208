//! Capture of the network: interfaces, addresses and routes from `ip -j`
//! (parsed by pure functions below), NIC hardware from /sys/class/net, DNS
//! from resolv.conf, and which tool's config files set the network up.
//!
//! Only what a recovery can bring back is recorded: NICs (interfaces with a
//! MAC that are not a software device), bonds, VLANs and bridges. Loopback,
//! veth, tun/tap, ifb, wireguard... are left out, and so are the kernel's
//! own link routes and what DHCP or router advertisements gave.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Deserialize;

use super::source::SystemView;
use crate::layout::network::{normalize_mac, ConfigTool, Interface, InterfaceKind, Network, Route};

/// One entry of `ip -j -d link`.
#[derive(Debug, Clone, Deserialize)]
pub struct IpLink {
    pub ifname: String,
    #[serde(default)]
    pub link_type: String,
    #[serde(default)]
    pub address: Option<String>,
    /// The permanent MAC, shown when it differs from `address` (a bond member).
    #[serde(default)]
    pub permaddr: Option<String>,
    #[serde(default)]
    pub mtu: Option<u32>,
    /// The bond or bridge this interface is enslaved to.
    #[serde(default)]
    pub master: Option<String>,
    /// The lower device (a VLAN's parent).
    #[serde(default)]
    pub link: Option<String>,
    #[serde(default)]
    pub linkinfo: Option<LinkInfo>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct LinkInfo {
    #[serde(default)]
    pub info_kind: Option<String>,
    #[serde(default)]
    pub info_data: Option<serde_json::Value>,
    #[serde(default)]
    pub info_slave_kind: Option<String>,
    #[serde(default)]
    pub info_slave_data: Option<serde_json::Value>,
}

/// One entry of `ip -j addr`.
#[derive(Debug, Clone, Deserialize)]
pub struct IpAddrEntry {
    pub ifname: String,
    #[serde(default)]
    pub addr_info: Vec<AddrInfo>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AddrInfo {
    pub family: String,
    pub local: String,
    pub prefixlen: u8,
    #[serde(default)]
    pub scope: String,
    /// Given by DHCP (v4) or autoconfiguration (v6): it has a lifetime.
    #[serde(default)]
    pub dynamic: bool,
}

/// One entry of `ip -j route` / `ip -j -6 route`.
#[derive(Debug, Clone, Deserialize)]
pub struct IpRoute {
    pub dst: String,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub dev: Option<String>,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub metric: Option<u32>,
    /// Absent for unicast routes.
    #[serde(rename = "type", default)]
    pub route_type: Option<String>,
}

/// The kind of interface recovery deals with, or None for one it leaves out.
fn kind_of(l: &IpLink) -> Option<InterfaceKind> {
    match l.linkinfo.as_ref().and_then(|i| i.info_kind.as_deref()) {
        Some("bond") => Some(InterfaceKind::Bond),
        Some("vlan") => Some(InterfaceKind::Vlan),
        Some("bridge") => Some(InterfaceKind::Bridge),
        None if l.link_type == "ether" => Some(InterfaceKind::Ethernet),
        _ => None,
    }
}

/// The interfaces of `ip -j -d link` output, with kind, MAC, MTU, bond
/// mode, VLAN id and parent, and members (without hardware or addresses).
pub fn parse_links(json: &str) -> Result<Vec<Interface>> {
    let links: Vec<IpLink> = serde_json::from_str(json).context("parsing the output of `ip -j -d link`")?;
    let mut out: Vec<Interface> = Vec::new();
    for l in &links {
        let Some(kind) = kind_of(l) else { continue };
        let info = l.linkinfo.clone().unwrap_or_default();
        let data = |key: &str| info.info_data.as_ref().and_then(|d| d.get(key)).cloned();
        // A bond member's `address` is the bond's: its own is the permanent one.
        let slave_perm = info.info_slave_data.as_ref().and_then(|d| d.get("perm_hwaddr")).and_then(|v| v.as_str()).map(str::to_string);
        let mac = if kind == InterfaceKind::Ethernet { l.permaddr.clone().or(slave_perm).or(l.address.clone()).and_then(|m| normalize_mac(&m)) } else { None };
        out.push(Interface {
            name: l.ifname.clone(),
            kind,
            mac,
            mtu: l.mtu.filter(|m| *m != 1500),
            bond_mode: (kind == InterfaceKind::Bond).then(|| data("mode").and_then(|v| v.as_str().map(str::to_string))).flatten(),
            vlan_id: (kind == InterfaceKind::Vlan).then(|| data("id").and_then(|v| v.as_u64()).and_then(|v| u16::try_from(v).ok())).flatten(),
            parent: (kind == InterfaceKind::Vlan).then(|| l.link.clone()).flatten(),
            ..Default::default()
        });
    }
    // Members go to their master, when both are recorded.
    let recorded: Vec<String> = out.iter().map(|i| i.name.clone()).collect();
    for l in &links {
        let Some(master) = &l.master else { continue };
        if !recorded.contains(&l.ifname) {
            continue;
        }
        if let Some(m) = out.iter_mut().find(|i| &i.name == master && matches!(i.kind, InterfaceKind::Bond | InterfaceKind::Bridge)) {
            m.members.push(l.ifname.clone());
        }
    }
    Ok(out)
}

/// Static global addresses (and whether DHCP gave one) per interface, from `ip -j addr`.
pub fn parse_addresses(json: &str) -> Result<BTreeMap<String, (Vec<String>, bool)>> {
    let entries: Vec<IpAddrEntry> = serde_json::from_str(json).context("parsing the output of `ip -j addr`")?;
    let mut out = BTreeMap::new();
    for e in entries {
        let mut addrs = Vec::new();
        let mut dhcp = false;
        for a in e.addr_info.iter().filter(|a| a.scope == "global") {
            if a.dynamic {
                dhcp |= a.family == "inet";
            } else {
                addrs.push(format!("{}/{}", a.local, a.prefixlen));
            }
        }
        out.insert(e.ifname, (addrs, dhcp));
    }
    Ok(out)
}

/// Routes worth recording from `ip -j route` (or `-6`): not the kernel's own,
/// not DHCP's or router advertisements', unicast, via a recorded interface.
pub fn parse_routes(json: &str, ipv6: bool, recorded: &[&str]) -> Result<Vec<Route>> {
    let routes: Vec<IpRoute> = serde_json::from_str(json).context("parsing the output of `ip -j route`")?;
    Ok(routes
        .into_iter()
        .filter(|r| !matches!(r.protocol.as_deref(), Some("kernel" | "dhcp" | "ra" | "redirect")))
        .filter(|r| r.route_type.as_deref().is_none_or(|t| t == "unicast"))
        .filter(|r| r.dev.as_deref().is_some_and(|d| recorded.contains(&d)))
        .filter(|r| !(ipv6 && r.dst.starts_with("fe80:")))
        .map(|r| Route {
            to: r.dst,
            via: r.gateway,
            dev: r.dev,
            // 1024 is what the kernel gives an IPv6 route without a metric.
            metric: r.metric.filter(|m| !(ipv6 && *m == 1024)),
            ipv6,
        })
        .collect())
}

/// Nameservers and search domains of a resolv.conf.
pub fn parse_resolv_conf(text: &str) -> (Vec<String>, Vec<String>) {
    let mut servers = Vec::new();
    let mut search = Vec::new();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        match w.next() {
            Some("nameserver") => servers.extend(w.next().filter(|s| s.parse::<std::net::IpAddr>().is_ok()).map(str::to_string)),
            Some("search") | Some("domain") => search.extend(w.map(str::to_string)),
            _ => {}
        }
    }
    search.dedup();
    (servers, search)
}

/// The PCI address in a /sys/class/net link (`../../devices/pci0000:00/0000:00:03.0/virtio2/net/eth0`):
/// the last component of the PCI form `DDDD:BB:SS.F`.
pub fn pci_path_of(link: &str) -> Option<String> {
    let is_pci = |c: &str| {
        let b = c.as_bytes();
        b.len() == 12 && b[4] == b':' && b[7] == b':' && b[10] == b'.' && c.chars().enumerate().all(|(i, ch)| matches!(i, 4 | 7 | 10) || ch.is_ascii_hexdigit())
    };
    link.split('/').rev().find(|c| is_pci(c)).map(str::to_string)
}

/// Whether an ifupdown interfaces file configures anything but loopback.
fn ifupdown_configures(text: &str) -> bool {
    text.lines().any(|l| {
        let mut w = l.split_whitespace();
        w.next() == Some("iface") && w.next().is_some_and(|n| n != "lo")
    })
}

/// The tools whose config files under `root` set up the network.
pub fn config_tools(sys: &dyn SystemView, root: &str) -> Vec<ConfigTool> {
    let root = root.trim_end_matches('/');
    let list = |d: &str| sys.list_dir(&format!("{root}{d}")).unwrap_or_default();
    let has = |d: &str, exts: &[&str]| list(d).iter().any(|f| exts.iter().any(|e| f.ends_with(e)));
    let mut out = Vec::new();
    for tool in ConfigTool::ALL {
        let found = match tool {
            ConfigTool::Ifupdown => {
                let main = sys.read(&format!("{root}/etc/network/interfaces")).unwrap_or_default();
                ifupdown_configures(&main)
                    || list("/etc/network/interfaces.d")
                        .iter()
                        .any(|f| ifupdown_configures(&sys.read(&format!("{root}/etc/network/interfaces.d/{f}")).unwrap_or_default()))
            }
            ConfigTool::Networkd => has("/etc/systemd/network", &[".network", ".netdev"]),
            ConfigTool::NetworkManager => has("/etc/NetworkManager/system-connections", &[".nmconnection"]),
            ConfigTool::Netplan => has("/etc/netplan", &[".yaml", ".yml"]),
        };
        if found {
            out.push(tool);
        }
    }
    out
}

/// The network of the running system, its config files read under `root`.
pub fn capture_network(sys: &dyn SystemView, root: &str) -> Result<Network> {
    let mut interfaces = parse_links(&sys.run(&["ip", "-j", "-d", "link"]).context("listing the network interfaces")?)?;
    let addrs = parse_addresses(&sys.run(&["ip", "-j", "addr"]).context("listing the network addresses")?)?;
    for itf in &mut interfaces {
        if let Some((a, dhcp)) = addrs.get(&itf.name) {
            itf.addresses = a.clone();
            itf.dhcp = *dhcp;
        }
        if itf.kind == InterfaceKind::Ethernet {
            let base = format!("/sys/class/net/{}", itf.name);
            itf.pci_path = sys.read_link(&base).ok().and_then(|l| pci_path_of(&l));
            itf.driver = sys.read_link(&format!("{base}/device/driver")).ok().and_then(|l| l.rsplit('/').next().map(str::to_string));
        }
    }
    let names: Vec<&str> = interfaces.iter().map(|i| i.name.as_str()).collect();
    let mut routes = parse_routes(&sys.run(&["ip", "-j", "route"]).context("listing the IPv4 routes")?, false, &names)?;
    // A host without IPv6 answers with an error: no IPv6 routes.
    if let Ok(v6) = sys.run(&["ip", "-j", "-6", "route"]) {
        routes.extend(parse_routes(&v6, true, &names)?);
    }
    let root_t = root.trim_end_matches('/');
    let (mut nameservers, search) = parse_resolv_conf(&sys.read(&format!("{root_t}/etc/resolv.conf")).unwrap_or_default());
    // systemd-resolved's stub: the real servers are in its own file.
    if nameservers.iter().all(|s| s.starts_with("127.")) {
        if let Ok(t) = sys.read("/run/systemd/resolve/resolv.conf") {
            nameservers = parse_resolv_conf(&t).0;
        }
    }
    Ok(Network { configured_by: config_tools(sys, root), interfaces, routes, nameservers, search })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::probe::source::Fixture;

    fn fixture(name: &str) -> Fixture {
        Fixture::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/network").join(name)).unwrap()
    }

    #[test]
    fn a_virtio_nic_with_static_v4_and_v6() {
        let net = capture_network(&fixture("host-static.json"), "/").unwrap();
        assert_eq!(net.interfaces.len(), 1, "lo and ifb are left out: {net:?}");
        let eth = &net.interfaces[0];
        assert_eq!((eth.name.as_str(), eth.kind), ("eth0", InterfaceKind::Ethernet));
        assert_eq!(eth.mac.as_deref(), Some("02:fc:00:00:00:01"));
        assert_eq!((eth.driver.as_deref(), eth.pci_path.as_deref()), (Some("virtio_net"), Some("0000:00:03.0")));
        assert_eq!(eth.mtu, Some(1400));
        assert_eq!(eth.addresses, ["192.0.2.2/24", "fd00::2/64"]);
        assert!(!eth.dhcp);
        let r: Vec<(&str, Option<&str>, bool)> = net.routes.iter().map(|r| (r.to.as_str(), r.via.as_deref(), r.ipv6)).collect();
        assert_eq!(r, [("default", Some("192.0.2.1"), false), ("default", Some("fd00::1"), true)], "no kernel or fe80 routes");
        assert!(crate::layout::network::check(&net).is_empty());
    }

    #[test]
    fn a_bridge_with_static_routes() {
        let net = capture_network(&fixture("bridge-netns.json"), "/").unwrap();
        let names: Vec<&str> = net.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["br0"], "veth devices are left out");
        let br = &net.interfaces[0];
        assert_eq!(br.kind, InterfaceKind::Bridge);
        assert!(br.members.is_empty() && br.mac.is_none());
        assert_eq!(br.addresses, ["198.51.100.7/24", "2001:db8:51::7/64"]);
        let r = net.routes.iter().find(|r| r.to == "203.0.113.0/24").unwrap();
        assert_eq!((r.via.as_deref(), r.metric, r.dev.as_deref()), (Some("198.51.100.254"), Some(50), Some("br0")));
        assert_eq!(net.routes.len(), 3, "{:?}", net.routes);
        assert!(crate::layout::network::check(&net).is_empty());
    }

    #[test]
    fn a_vlan_on_a_bond_of_two_nics() {
        // Recorded in the test guest (tests/vm/record-network.sh).
        let net = capture_network(&fixture("bond-vlan-vm.json"), "/").unwrap();
        let names: Vec<&str> = net.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["eth0", "eth1", "bond0", "bond0.42"]);
        let get = |n: &str| net.interface(n).unwrap();
        let bond = get("bond0");
        assert_eq!((bond.kind, bond.bond_mode.as_deref()), (InterfaceKind::Bond, Some("active-backup")));
        assert_eq!(bond.members, ["eth0", "eth1"]);
        assert!(bond.addresses.is_empty() && bond.mtu.is_none());
        // The members' own MACs, not the bond's (which both show as `address`).
        assert_eq!(get("eth0").mac.as_deref(), Some("52:54:00:19:01:01"));
        assert_eq!(get("eth1").mac.as_deref(), Some("52:54:00:19:01:02"));
        assert_eq!((get("eth1").driver.as_deref(), get("eth1").pci_path.as_deref()), (Some("virtio_net"), Some("0000:00:06.0")));
        let vlan = get("bond0.42");
        assert_eq!((vlan.kind, vlan.vlan_id, vlan.parent.as_deref()), (InterfaceKind::Vlan, Some(42), Some("bond0")));
        assert_eq!(vlan.mtu, Some(1400));
        assert_eq!(vlan.addresses, ["198.51.100.10/24", "2001:db8:42::10/64"]);
        let r: Vec<(&str, Option<&str>, Option<&str>, bool)> = net.routes.iter().map(|r| (r.to.as_str(), r.via.as_deref(), r.dev.as_deref(), r.ipv6)).collect();
        assert_eq!(
            r,
            [("default", Some("198.51.100.1"), Some("bond0.42"), false), ("default", Some("2001:db8:42::1"), Some("bond0.42"), true)],
            "no kernel, link-local or router-advertised routes"
        );
        assert_eq!(net.nameservers, ["198.51.100.53"]);
        assert_eq!(net.search, ["example.org"]);
        assert_eq!(net.configured_by, [ConfigTool::Ifupdown]);
        assert!(crate::layout::network::check(&net).is_empty(), "{:?}", crate::layout::network::check(&net));
    }

    #[test]
    fn the_section_round_trips_and_older_descriptors_load() {
        use crate::layout::Layout;
        let mut l = Layout::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts/bios-gpt-ext4.toml")).unwrap();
        assert!(l.network.is_none(), "a descriptor without [network] loads");
        l.network = Some(capture_network(&fixture("bond-vlan-vm.json"), "/").unwrap());
        let text = l.to_toml().unwrap();
        assert!(text.contains("[[network.interface]]") && text.contains("configured-by = [\"ifupdown\"]"), "{text}");
        assert_eq!(Layout::from_toml(&text).unwrap(), l);
        let bad = text.replacen("members = [\"eth0\", \"eth1\"]", "members = [\"eth0\", \"ens9\"]", 1);
        let e = format!("{:#}", Layout::from_toml(&bad).unwrap_err());
        let line = bad.lines().position(|x| x.contains("ens9")).unwrap() + 1;
        assert!(e.contains("`ens9`, which is not a [[network.interface]]"), "{e}");
        assert!(e.contains(&format!("line {line}:")), "the error names the members line {line}: {e}");
    }

    #[test]
    fn resolved_stub_and_config_tools() {
        let (s, d) = parse_resolv_conf("# x\nnameserver 127.0.0.53\noptions edns0\nsearch a.example b.example\n");
        assert_eq!((s, d), (vec!["127.0.0.53".to_string()], vec!["a.example".to_string(), "b.example".to_string()]));
        assert!(!ifupdown_configures("auto lo\niface lo inet loopback\nsource /etc/network/interfaces.d/*\n"));
        assert!(ifupdown_configures("iface ens3 inet dhcp\n"));
        assert_eq!(pci_path_of("../../devices/pci0000:00/0000:00:1c.0/0000:01:00.0/net/enp1s0").as_deref(), Some("0000:01:00.0"));
        assert_eq!(pci_path_of("../../devices/virtual/net/bond0"), None);
    }
}
