#!/bin/bash
# Customise a debootstrapped tree into the VM test guest: boot straight to the
# job runner, no auto-assembly of MD/LVM, no needless services, fresh initramfs.
# Usage: guest-setup.sh TREE GUESTFILES_DIR   (called by build-guest.sh)
set -euxo pipefail
T=$1 G=$2
echo rescue-guest >"$T/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 rescue-guest\n' >"$T/etc/hosts"
# Root is a throwaway snapshot: no fsck, no journal flush to disk.
echo '/dev/vda / ext4 rw 0 0' >"$T/etc/fstab"
head -c16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/etc/machine-id"
mkdir -p "$T/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nForwardToConsole=no\n' >"$T/etc/systemd/journald.conf.d/volatile.conf"

install -m 0755 "$G/rescue-job-runner" "$T/usr/local/sbin/rescue-job-runner"
install -m 0644 "$G/rescue-job.service" "$T/etc/systemd/system/rescue-job.service"
mkdir -p "$T/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/rescue-job.service "$T/etc/systemd/system/multi-user.target.wants/rescue-job.service"
ln -sf /lib/systemd/system/multi-user.target "$T/etc/systemd/system/default.target"

# Boot fast: nothing runs that a test did not ask for.
for u in getty@tty1.service serial-getty@ttyS0.service getty.target systemd-firstboot.service \
         apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer \
         lvm2-monitor.service mdmonitor.service mdmonitor-oneshot.timer mdcheck_start.timer \
         mdcheck_continue.timer systemd-timesyncd.service keyboard-setup.service console-setup.service \
         setvtrgb.service systemd-pstore.service systemd-random-seed.service man-db.timer \
         systemd-tmpfiles-clean.timer systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
         proc-sys-fs-binfmt_misc.mount sys-kernel-debug.mount sys-kernel-tracing.mount dev-hugepages.mount \
         dev-mqueue.mount sys-fs-fuse-connections.mount modprobe@fuse.service modprobe@drm.service \
         systemd-journal-flush.service systemd-update-utmp.service systemd-update-utmp-runlevel.service \
         blk-availability.service ldconfig.service systemd-hwdb-update.service \
         systemd-journal-catalog-update.service systemd-user-sessions.service; do
  ln -sf /dev/null "$T/etc/systemd/system/$u"
done

mkdir -p "$T/etc/systemd/system-generators"
for g in systemd-gpt-auto-generator systemd-getty-generator systemd-hibernate-resume-generator \
         systemd-rc-local-generator systemd-sysv-generator systemd-integritysetup-generator \
         systemd-veritysetup-generator systemd-bless-boot-generator systemd-cryptsetup-generator; do
  ln -sf /dev/null "$T/etc/systemd/system-generators/$g"
done
install -m 0644 "$G/modprobe-blacklist.conf" "$T/etc/modprobe.d/rescue-guest-blacklist.conf"

# MD: never assemble on our own (neither the kernel nor udev nor initramfs);
# tests assemble explicitly, so a disk from a previous step is left as found.
mkdir -p "$T/etc/mdadm"
printf 'AUTO -all\nHOMEHOST <ignore>\nMAILADDR root\n' >"$T/etc/mdadm/mdadm.conf"
mkdir -p "$T/etc/udev/rules.d"
ln -sf /dev/null "$T/etc/udev/rules.d/64-md-raid-assembly.rules"
# LVM: no event auto-activation and no dmeventd monitoring; `vgchange -ay` still works.
sed -i 's/^\(\s*\)# auto_activation_volume_list = .*/&\n\1auto_activation_volume_list = []/' "$T/etc/lvm/lvm.conf"
sed -i 's/^\(\s*\)monitoring = 1/\1monitoring = 0/' "$T/etc/lvm/lvm.conf"
grep -q '^\s*auto_activation_volume_list = \[\]' "$T/etc/lvm/lvm.conf"

# Initramfs: must mount /dev/vda (virtio_blk, ext4): MODULES=most has them.
grep -q '^MODULES=most' "$T/etc/initramfs-tools/initramfs.conf"
mount -t proc proc "$T/proc"
trap 'umount "$T/proc"' EXIT
chroot "$T" update-initramfs -u -k all
kver=$(ls "$T/lib/modules" | sort -V | tail -n1)
chroot "$T" lsinitramfs "/boot/initrd.img-$kver" >"$T/tmp/initrd.list"
grep -q '/virtio_blk.ko' "$T/tmp/initrd.list"
grep -q '/ext4.ko' "$T/tmp/initrd.list"
rm -f "$T/tmp/initrd.list"

# The fast initrd (busybox + virtio_blk + ext4) that run-guest.sh boots by default.
"$(dirname "$0")/fast-initrd.sh" "$T" "$kver" "$T/tmp/initrd-fast.img"
rm -f "$T/etc/resolv.conf"
