#!/bin/sh
# /init of the rescue system built by `rescue mkrescue`. PID 1: it must never exit.
# Settings come from /etc/rescue/image.env (written at build time).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=linux
umask 022

mkdir -p /proc /sys /dev /run /tmp /mnt /root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mount -t tmpfs -o mode=0755 dev /dev
mkdir -p /dev/pts /dev/shm /run/udev /run/lock /var/log
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p /run/udev /run/lock /run/sshd
mount -t tmpfs tmpfs /tmp
[ -d /sys/firmware/efi/efivars ] && mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/dev/null
ln -sf /proc/self/fd /dev/fd 2>/dev/null
echo 0 > /proc/sys/kernel/printk 2>/dev/null

. /etc/rescue/image.env

cmdline=$(cat /proc/cmdline)
has_arg() { case " $cmdline " in *" $1 "*) return 0;; esac; return 1; }
arg_value() { for w in $cmdline; do case "$w" in "$1"=*) echo "${w#*=}"; return 0;; esac; done; return 1; }

echo "RESCUE-INIT rescue system starting (kernel $(uname -r))"
# Secure Boot as the firmware reports it: the 5th byte of the SecureBoot variable (after 4 attribute bytes).
# efivarfs files cannot seek: read the whole variable.
sbvar=/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c
if [ -r "$sbvar" ]; then
  # shellcheck disable=SC2046 # one word a byte
  case "$(set -- $(od -An -t u1 "$sbvar"); echo "${5:-}")" in
    1) echo "RESCUE-SECUREBOOT on" ;;
    *) echo "RESCUE-SECUREBOOT off" ;;
  esac
elif [ -d /sys/firmware/efi ]; then
  echo "RESCUE-SECUREBOOT off (no SecureBoot variable)"
else
  echo "RESCUE-SECUREBOOT off (BIOS boot)"
fi
hostname "$RESCUE_HOSTNAME" 2>/dev/null

# udev: coldplug every device so drivers load and /dev/disk/by-* appear.
if [ -x "$UDEVD" ]; then
  "$UDEVD" --daemon --resolve-names=never
  udevadm trigger --type=subsystems --action=add
  udevadm trigger --type=devices --action=add
  udevadm settle --timeout=60
else
  echo "RESCUE-WARN no udevd in the image: /dev/disk/by-* will be missing"
fi

# Storage stack, file systems and the drivers a different machine may need.
loaded=0
for m in $(cat /etc/rescue/modules.load 2>/dev/null); do
  modprobe -q "$m" 2>/dev/null && loaded=$((loaded + 1))
done
echo "RESCUE-MODULES loaded $loaded modules"
[ -x "$UDEVD" ] && udevadm settle --timeout=60

# Network.
net_dhcp() {
  ip link set "$1" up
  if udhcpc -i "$1" -n -q -t 3 -T 2 -s /etc/rescue/udhcpc.sh >/dev/null 2>&1; then
    echo "RESCUE-NET $1 $(ip -4 -o addr show dev "$1" | awk '{print $4}') dhcp"
  fi
}
# The interface here that plays recorded interface $1 (/run/rescue-net.map: recorded present).
net_map() { awk -v n="$1" '$1 == n { print $2; exit }' /run/rescue-net.map; }
# image.network = "recorded": the lines of /etc/rescue/recorded-net (src/image/network.rs), in order.
net_recorded() {
  : > /run/rescue-net.map
  [ -f /etc/rescue/recorded-net ] || echo "RESCUE-NET no recorded network in the image: DHCP on every interface"
  # Which NIC here plays which recorded one: recover's own rules (MAC, PCI
  # address, driver order, bond members, [network-mapping]), so that other
  # hardware gets its recorded network too.
  if [ -f /etc/rescue/recorded-net ] &&
     ! rescue --config /etc/rescue/rescue.toml layout nics /etc/rescue/layout.toml > /run/rescue-net.map 2> /run/rescue-net.err; then
    sed 's/^/RESCUE-NET /' /run/rescue-net.err
    : > /run/rescue-net.map
  fi
  [ -f /etc/rescue/recorded-net ] && while read -r kind name a b; do
    case "$kind" in
      nic)
        p=$(net_map "$name")
        if [ -n "$p" ]; then echo "RESCUE-NET nic $name is $p ($(cat "/sys/class/net/$p/address" 2>/dev/null), recorded $a)"
        else echo "RESCUE-NET nic $name ($a) is not in this machine"; fi ;;
      bond|bridge)
        found=""
        for m in $(echo "$b" | tr , ' '); do p=$(net_map "$m"); [ -n "$p" ] && found="$found $p"; done
        if [ -z "$found" ]; then echo "RESCUE-NET $kind $name not made: none of $b is here"; continue; fi
        if [ "$kind" = bond ]; then
          # Through sysfs: the shell's ip may be busybox's, which cannot set a bond's
          # mode; loading bonding makes a bond0 of its own (max_bonds=1): take it over.
          modprobe -q bonding 2>/dev/null
          [ -d "/sys/class/net/$name/bonding" ] || echo "+$name" > /sys/class/net/bonding_masters
          ip link set "$name" down
          if ! echo "$a" > "/sys/class/net/$name/bonding/mode"; then
            echo "RESCUE-NET bond $name not made: cannot set mode $a in /sys/class/net/$name/bonding/mode"
            continue
          fi
        else
          modprobe -q bridge 2>/dev/null
          ip link add "$name" type bridge || continue
        fi
        for p in $found; do
          ip link set "$p" down
          if [ "$kind" = bond ]; then echo "+$p" > "/sys/class/net/$name/bonding/slaves"; else ip link set "$p" master "$name"; fi
          ip link set "$p" up
        done
        ip link set "$name" up
        echo "$name $name" >> /run/rescue-net.map
        echo "RESCUE-NET $kind $name up with$found" ;;
      vlan)
        p=$(net_map "$a")
        if [ -z "$p" ]; then echo "RESCUE-NET vlan $name not made: $a is not here"; continue; fi
        modprobe -q 8021q 2>/dev/null
        ip link set "$p" up
        ip link add link "$p" name "$name" type vlan id "$b" || continue
        ip link set "$name" up
        echo "$name $name" >> /run/rescue-net.map
        echo "RESCUE-NET vlan $name id $b on $p" ;;
      mtu)
        p=$(net_map "$name"); [ -n "$p" ] || continue
        ip link set dev "$p" mtu "$a" && echo "RESCUE-NET mtu $p $a" ;;
      addr)
        p=$(net_map "$name"); [ -n "$p" ] || continue
        ip link set "$p" up
        case "$a" in *:*) nodad=nodad ;; *) nodad= ;; esac
        ip addr add "$a" dev "$p" $nodad && echo "RESCUE-NET $p $a recorded" ;;
      dhcp)
        p=$(net_map "$name"); [ -n "$p" ] && net_dhcp "$p" ;;
      route|route6)
        p=$(net_map "$b"); [ -n "$p" ] || continue
        fam=-4; [ "$kind" = route6 ] && fam=-6
        if [ "$a" = - ]; then ip $fam route add "$name" dev "$p"; else ip $fam route add "$name" via "$a" dev "$p"; fi &&
          echo "RESCUE-NET route $name via $a dev $p" ;;
      dns) echo "nameserver $name" >> /etc/resolv.conf ;;
    esac
  done < /etc/rescue/recorded-net
  # DHCP on every interface the recorded setup does not use.
  for dev in /sys/class/net/*; do
    ifc=${dev##*/}
    [ "$ifc" = lo ] && continue
    awk -v n="$ifc" '$2 == n { f = 1 } END { exit !f }' /run/rescue-net.map && continue
    [ -e "$dev/master" ] && continue
    net_dhcp "$ifc"
  done
}
net_up() {
  case "$RESCUE_NETWORK" in
    none) return 0 ;;
    static)
      [ -f /etc/rescue/static-net ] || return 0
      while read -r mac addr gw dns; do
        for dev in /sys/class/net/*; do
          ifc=${dev##*/}
          [ "$(cat "$dev/address" 2>/dev/null)" = "$mac" ] || continue
          ip link set "$ifc" up
          ip addr add "$addr" dev "$ifc"
          [ "$gw" != "-" ] && ip route add default via "$gw" dev "$ifc"
          [ "$dns" != "-" ] && for d in $(echo "$dns" | tr , ' '); do echo "nameserver $d" >> /etc/resolv.conf; done
          echo "RESCUE-NET $ifc $addr static"
        done
      done < /etc/rescue/static-net ;;
    recorded) net_recorded ;;
    *)
      for dev in /sys/class/net/*; do
        ifc=${dev##*/}
        [ "$ifc" = lo ] && continue
        net_dhcp "$ifc"
      done ;;
  esac
}
ip link set lo up 2>/dev/null
if has_arg rescue.nonet; then echo "RESCUE-NET disabled by rescue.nonet"; else net_up; fi

# Backup server (backup.method bacula/bareos): the file daemon, so the director can restore into this system.
if [ -n "$RESCUE_FD" ] && [ -x "$RESCUE_FD" ]; then
  for d in $RESCUE_FD_DIRS; do mkdir -p "$d"; done
  if "$RESCUE_FD" -c "$RESCUE_FD_CONF"; then
    echo "RESCUE-FD started $RESCUE_FD"
  else
    echo "RESCUE-WARN $RESCUE_FD did not start: a restore from the backup server will fail (check $RESCUE_FD_CONF)"
  fi
fi

# SSH, only when the build put authorized keys in.
if [ -s /root/.ssh/authorized_keys ] && [ -x /usr/sbin/sshd ]; then
  ssh-keygen -A >/dev/null 2>&1
  /usr/sbin/sshd -f /etc/ssh/sshd_config && echo "RESCUE-SSHD started"
fi

# The banner: what this is and how to recover. Marker lines start with RESCUE-.
echo
echo "RESCUE-BANNER rescue $RESCUE_VERSION rescue system for $RESCUE_HOSTNAME (built $RESCUE_BUILT)"
if [ -f /etc/rescue/layout.toml ]; then
  echo "RESCUE-LAYOUT present /etc/rescue/layout.toml"
else
  echo "RESCUE-LAYOUT missing /etc/rescue/layout.toml"
fi
for kind in by-id by-path by-uuid by-label; do
  for l in /dev/disk/$kind/*; do
    [ -e "$l" ] || [ -L "$l" ] || continue
    echo "RESCUE-DISK $kind/${l##*/} -> $(readlink -f "$l")"
  done
done
for b in /sys/block/*; do
  n=${b##*/}
  case "$n" in loop*|ram*|zram*) continue;; esac
  echo "RESCUE-BLOCK $n $(( $(cat "$b/size") * 512 )) bytes"
done
cat <<BANNER

  This is the rescue system of $RESCUE_HOSTNAME.
  To recover:            rescue recover
  Without questions:     rescue recover --unattended
  See the plan first:    rescue recover --plan
  The descriptor:        /etc/rescue/layout.toml      the config: /etc/rescue/rescue.toml
  Power off / reboot:    poweroff -f / reboot -f

BANNER
echo "RESCUE-READY"

finish() {
  sync
  case "$1" in
    reboot) echo "RESCUE-REBOOT"; reboot -f ;;
    poweroff) echo "RESCUE-POWEROFF"; poweroff -f ;;
  esac
}

if has_arg unattended; then
  echo "RESCUE-RECOVER-START rescue recover --unattended"
  rescue --config /etc/rescue/rescue.toml recover --unattended
  rc=$?
  if [ $rc -eq 0 ]; then
    echo "RESCUE-RECOVER-OK"
    finish "$RESCUE_AFTER_RECOVER"
  else
    echo "RESCUE-RECOVER-FAILED exit code $rc: the messages above say why; fix it in the shell and run 'rescue recover' again"
  fi
fi

case "$(arg_value rescue.after)" in
  poweroff) finish poweroff ;;
  reboot) finish reboot ;;
esac

# A shell on the console, forever.
while true; do
  setsid cttyhack sh -l
  echo "(the shell exited; starting a new one. Use 'poweroff -f' or 'reboot -f' to leave.)"
done
