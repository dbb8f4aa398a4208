#!/bin/sh
# udhcpc event script of the rescue system: configure the address, the
# default route and DNS from the DHCP answer.
case "$1" in
  deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    if [ -n "$router" ]; then
      ip route del default dev "$interface" 2>/dev/null
      for r in $router; do ip route add default via "$r" dev "$interface" && break; done
    fi
    : > /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done ;;
esac
exit 0
