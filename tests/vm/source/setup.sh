#!/bin/bash
# Customise a debootstrapped tree into the scenario source system: a normal
# Debian 12 that boots from its own disk with GRUB, plus the scenario unit
# (run a job from a 9p share, or verify the test data after a recovery).
# Unlike the test guest (guest-setup.sh), MD and LVM keep Debian's defaults:
# the system must boot from them.
# Usage: setup.sh TREE SOURCE_FILES_DIR GUEST_FILES_DIR   (called by build-source.sh)
set -euxo pipefail
T=$1 S=$2 G=$3
echo rescue-src >"$T/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 rescue-src\n' >"$T/etc/hosts"
head -c16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/etc/machine-id"
echo 'root:rescue' | chroot "$T" chpasswd
mkdir -p "$T/etc/systemd/journald.conf.d"
printf '[Journal]\nForwardToConsole=no\n' >"$T/etc/systemd/journald.conf.d/console.conf"

install -m 0755 "$S/rescue-scenario-runner" "$T/usr/local/sbin/rescue-scenario-runner"
install -m 0755 "$S/rescue-scenario-state" "$T/usr/local/sbin/rescue-scenario-state"
install -m 0644 "$S/rescue-scenario.service" "$T/etc/systemd/system/rescue-scenario.service"
mkdir -p "$T/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/rescue-scenario.service "$T/etc/systemd/system/multi-user.target.wants/rescue-scenario.service"
ln -sf /lib/systemd/system/multi-user.target "$T/etc/systemd/system/default.target"

# Boot fast under TCG: nothing that a scenario does not need.
for u in getty@tty1.service serial-getty@ttyS0.service getty.target systemd-firstboot.service \
         apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer \
         mdmonitor.service mdmonitor-oneshot.timer mdcheck_start.timer mdcheck_continue.timer \
         systemd-timesyncd.service keyboard-setup.service console-setup.service setvtrgb.service \
         systemd-pstore.service man-db.timer systemd-tmpfiles-clean.timer systemd-binfmt.service \
         proc-sys-fs-binfmt_misc.automount sys-kernel-debug.mount sys-kernel-tracing.mount \
         dev-hugepages.mount dev-mqueue.mount sys-fs-fuse-connections.mount modprobe@fuse.service \
         modprobe@drm.service systemd-hwdb-update.service systemd-journal-catalog-update.service; do
  ln -sf /dev/null "$T/etc/systemd/system/$u"
done
install -m 0644 "$G/modprobe-blacklist.conf" "$T/etc/modprobe.d/rescue-guest-blacklist.conf"

# GRUB on the serial console, no menu delay; grub-mkconfig runs at install time
# (in a VM, where udev names the root device properly).
mkdir -p "$T/etc/default"
cat >"$T/etc/default/grub" <<'GRUB'
GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_TIMEOUT_STYLE=hidden
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=ttyS0,115200 net.ifnames=0 loglevel=4 systemd.show_status=1 no_timer_check"
GRUB_TERMINAL="serial console"
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
GRUB
# Debian's initramfs with every storage driver (MODULES=most) and the lvm2 hook.
grep -q '^MODULES=most' "$T/etc/initramfs-tools/initramfs.conf"
mount -t proc proc "$T/proc"
trap 'umount "$T/proc"' EXIT
chroot "$T" update-initramfs -u -k all
rm -f "$T/etc/resolv.conf"
