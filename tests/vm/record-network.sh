#!/bin/bash
# Record the network capture fixture tests/fixtures/network/bond-vlan-vm.json
# in the test guest: two virtio NICs (qemu user networking with restrict=on:
# nothing leaves the machine), an active-backup bond of both, VLAN 42 on it
# with MTU 1400, static IPv4 and IPv6 addresses and default routes, and the
# matching ifupdown config; then `rescue savelayout --record-fixture`, which
# records every answer the probe got (`ip -j -d link`, `ip -j addr`, the
# routes, /sys/class/net, the config files). The host kernel has no bond or
# 8021q link types, so this needs the guest.
# Usage: record-network.sh [--rescue BIN]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rescue=""
if [ "${1:-}" = --rescue ]; then rescue=$2; shift 2; fi
if [ -z "$rescue" ]; then
  (cd "$root" && cargo build --quiet --bin rescue)
  rescue=$root/target/debug/rescue
fi
job=$(mktemp -d "${TMPDIR:-/var/tmp}/rescue-record-net.XXXXXX")
cat >"$job/run.sh" <<'JOB'
set -euxo pipefail
export NO_COLOR=1
modprobe bonding max_bonds=0
modprobe 8021q
ip link add bond0 type bond mode active-backup miimon 100
ip link set eth0 down; ip link set eth1 down
ip link set eth0 master bond0; ip link set eth1 master bond0
ip link set bond0 up
ip link add link bond0 name bond0.42 type vlan id 42
ip link set bond0.42 mtu 1400 up
ip addr add 198.51.100.10/24 dev bond0.42
ip -6 addr add 2001:db8:42::10/64 dev bond0.42 nodad
ip route add default via 198.51.100.1 dev bond0.42
# qemu's user network announces an IPv6 router on bond0: replace its route.
ip -6 route replace default via 2001:db8:42::1 dev bond0.42
mkdir -p /etc/network
cat >/etc/network/interfaces <<'NET'
auto lo
iface lo inet loopback

auto bond0
iface bond0 inet manual
    bond-slaves eth0 eth1
    bond-mode active-backup
    bond-miimon 100
    bond-primary eth0

auto bond0.42
iface bond0.42 inet static
    address 198.51.100.10/24
    gateway 198.51.100.1
    mtu 1400

iface bond0.42 inet6 static
    address 2001:db8:42::10/64
    gateway 2001:db8:42::1
NET
printf 'nameserver 198.51.100.53\nsearch example.org\n' >/etc/resolv.conf
ip -d -br link; ip -br addr
mkdir -p /job/out
./rescue savelayout -v --record-fixture /job/out/bond-vlan-vm.json -o /job/out/bond-vlan-vm.toml
JOB
nic() { echo --qemu-arg -netdev --qemu-arg "user,id=$1,restrict=on" --qemu-arg -device --qemu-arg "virtio-net-pci,netdev=$1,mac=$2"; }
# shellcheck disable=SC2046 # words of run-guest.sh arguments
"$here/run-guest.sh" --rescue "$rescue" --disk 64M $(nic n0 52:54:00:19:01:01) $(nic n1 52:54:00:19:01:02) "$job"
desc="Recorded by tests/vm/record-network.sh in the Debian 12 test guest (kernel 6.1, iproute2 6.1): bond0 (active-backup, miimon 100) of two virtio NICs eth0/eth1, VLAN 42 on it (MTU 1400), 198.51.100.10/24 and 2001:db8:42::10/64 with default routes, configured by ifupdown"
jq --arg d "$desc" '.description = $d' "$job/out/bond-vlan-vm.json" >"$root/tests/fixtures/network/bond-vlan-vm.json"
echo "record-network: wrote tests/fixtures/network/bond-vlan-vm.json"
rm -rf "$job"
