//! The rescue init's `net_recorded` (src/image/init.sh, `image.network =
//! "recorded"`) run in its own mount and network namespace on the lines
//! `image::network::recorded_net` writes: a recorded NIC found by its MAC, a
//! bridge over it, static IPv4/IPv6 addresses, routes and DNS, a recorded NIC
//! that is not there, and DHCP on the interface the recorded setup leaves
//! unused. The host kernel has bridges and veth but no bond or VLAN link
//! types: those run in the VM scenario.

#![allow(clippy::unwrap_used)]

mod common;

use rescue::layout::network::{Interface, InterfaceKind, Network, Route};

#[test]
fn the_recorded_network_comes_up_on_the_nics_found_by_mac() {
    common::require_root();
    common::require_tools(&["unshare", "ip", "busybox", "mount"]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let net = Network {
        interfaces: vec![
            Interface { name: "ens3".into(), mac: Some("52:54:00:12:34:01".into()), ..Default::default() },
            Interface { name: "ens4".into(), mac: Some("52:54:00:12:34:02".into()), ..Default::default() },
            Interface {
                name: "br0".into(),
                kind: InterfaceKind::Bridge,
                members: vec!["ens3".into(), "ens4".into()],
                addresses: vec!["198.51.100.7/24".into(), "2001:db8:51::7/64".into()],
                mtu: Some(1400),
                ..Default::default()
            },
        ],
        routes: vec![
            Route { to: "default".into(), via: Some("198.51.100.1".into()), dev: Some("br0".into()), ..Default::default() },
            Route { to: "203.0.113.0/24".into(), via: Some("198.51.100.254".into()), dev: Some("br0".into()), ..Default::default() },
            Route { to: "default".into(), via: Some("2001:db8:51::1".into()), dev: Some("br0".into()), ipv6: true, ..Default::default() },
        ],
        nameservers: vec!["198.51.100.53".into()],
        ..Default::default()
    };
    assert!(rescue::layout::network::check(&net).is_empty());
    std::fs::write(dir.join("recorded-net"), rescue::image::network::recorded_net(&net)).unwrap();

    // init.sh's network functions, as the image carries them.
    let init = include_str!("../src/image/init.sh");
    let start = init.find("# Network.\n").unwrap();
    let end = init.find("net_up() {").unwrap();
    std::fs::write(dir.join("functions.sh"), &init[start..end]).unwrap();
    // DHCP is a stub that records which interface asked and gets nothing.
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::write(dir.join("bin/udhcpc"), format!("#!/bin/sh\necho \"$2\" >> {}/dhcp-asked\nexit 1\n", dir.display())).unwrap();
    std::fs::set_permissions(dir.join("bin/udhcpc"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // The NIC mapping is `rescue layout nics` (plan::nics tests its rules): here
    // it found ens3 and not ens4, and init must build on what it says.
    std::fs::write(dir.join("bin/rescue"), "#!/bin/sh\necho 'ens3 v0'\n").unwrap();
    std::fs::set_permissions(dir.join("bin/rescue"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // The rescue system's awk is busybox's (and /etc, where the host's awk link lives, is a tmpfs here).
    std::os::unix::fs::symlink(rescue::cmd::find_program("busybox").unwrap(), dir.join("bin/awk")).unwrap();
    let script = format!(
        "set -e\n\
         mount -t tmpfs tmpfs /run\n\
         mount -t tmpfs tmpfs /etc\n\
         mount -t sysfs sysfs /sys\n\
         mkdir /etc/rescue\n\
         cp {d}/recorded-net /etc/rescue/recorded-net\n\
         ip link set lo up\n\
         ip link add v0 address 52:54:00:12:34:01 type veth peer name v1 address 52:54:00:99:99:99\n\
         export PATH={d}/bin:$PATH\n\
         . {d}/functions.sh\n\
         set +e\n\
         net_recorded\n\
         echo '== addr'; ip -j addr show dev br0\n\
         echo; echo '== link'; ip -o link show dev br0\n\
         echo; echo '== master'; cat /sys/class/net/v0/master/uevent | grep INTERFACE\n\
         echo '== route'; ip route show; ip -6 route show default\n\
         echo '== dns'; cat /etc/resolv.conf\n",
        d = dir.display()
    );
    let out = std::process::Command::new("unshare").args(["--mount", "--net", "--propagation", "private", "sh", "-c", &script]).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    for line in [
        "RESCUE-NET nic ens3 is v0 (52:54:00:12:34:01, recorded 52:54:00:12:34:01)",
        "RESCUE-NET nic ens4 (52:54:00:12:34:02) is not in this machine",
        "RESCUE-NET bridge br0 up with v0",
        "RESCUE-NET mtu br0 1400",
        "RESCUE-NET br0 198.51.100.7/24 recorded",
        "RESCUE-NET br0 2001:db8:51::7/64 recorded",
        "RESCUE-NET route default via 198.51.100.1 dev br0",
        "RESCUE-NET route 203.0.113.0/24 via 198.51.100.254 dev br0",
        "RESCUE-NET route default via 2001:db8:51::1 dev br0",
        "INTERFACE=br0",
        "default via 198.51.100.1 dev br0",
        "203.0.113.0/24 via 198.51.100.254 dev br0",
        "nameserver 198.51.100.53",
    ] {
        assert!(text.lines().any(|l| l.trim() == line || l.starts_with(line)), "missing {line:?} in:\n{text}");
    }
    assert!(text.lines().any(|l| l.contains(": br0:") && l.contains(" mtu 1400 ")), "the recorded MTU is on br0:\n{text}");
    assert!(text.contains("\"local\":\"198.51.100.7\"") && text.contains("\"local\":\"2001:db8:51::7\""), "{text}");
    assert_eq!(std::fs::read_to_string(dir.join("dhcp-asked")).unwrap(), "v1\n", "DHCP only on the interface the recorded setup left unused");
}
