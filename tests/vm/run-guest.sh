#!/bin/bash
# Boot the cached Debian 12 test guest (qemu TCG) with blank disks and run a job.
#
# Usage: run-guest.sh [options] JOBDIR
#   JOBDIR/run.sh is run as root inside the guest (cwd /job, the 9p share of
#   JOBDIR); results go to JOBDIR/out/ (run.log, exit-status, disks, serial.log,
#   boot-seconds). Exit status = the job's exit status; 124 = timeout, 125 = the
#   guest never reported one (boot failure: see the serial log tail printed).
# Options:
#   --disk SIZE[:virtio|sata|nvme]  add a blank sparse raw disk (repeatable; DISK1,
#                                   DISK2... in the guest, serial rt-diskN)
#   --disk-image FILE[:TYPE]        attach an existing raw image instead (read-write)
#   --disk-dir DIR                  where blank disks are created (kept); default a
#                                   temporary directory removed at exit
#   --uefi                          boot with OVMF (direct kernel boot through UEFI)
#   --ovmf-vars FILE                writable OVMF_VARS copy to use (kept; for reuse)
#   --rescue BIN | --no-rescue      binary copied to JOBDIR/rescue (default: cargo
#                                   build of this worktree, target/debug/rescue)
#   --timeout SECONDS               whole-run limit (default $RESCUE_VM_TIMEOUT or 900)
#   --mem MB (2048)  --smp N (2)    guest size
#   --append ARGS                   extra kernel command-line arguments
#   --debian-initrd                 boot Debian's own initrd instead of the small one
#   --image-dir DIR                 boot DIR/vmlinuz, DIR/initrd-fast.img and DIR/root.img
#                                   instead of the cached test guest (a tree whose
#                                   /sbin/init runs the job the same way, e.g.
#                                   tests/package/init; initrd: tests/vm/fast-initrd.sh)
#   --qemu-arg ARG                  one more qemu argument (repeatable; e.g. a NIC)
# Environment: RESCUE_TEST_CACHE (cache dir), TMPDIR (qemu snapshot overlay).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
die() { echo "run-guest: ERROR: $*" >&2; exit 2; }

disks=() uefi=0 rescue="" no_rescue=0 timeout_s=${RESCUE_VM_TIMEOUT:-900} mem=2048 smp=2
disk_dir="" vars="" append="" initrd=initrd-fast.img image_dir="" extra=()
while (($#)); do
  case "$1" in
    --disk) disks+=("new:$2"); shift 2 ;;
    --disk-image) disks+=("img:$2"); shift 2 ;;
    --disk-dir) disk_dir=$2; shift 2 ;;
    --uefi) uefi=1; shift ;;
    --ovmf-vars) vars=$2; shift 2 ;;
    --rescue) rescue=$2; shift 2 ;;
    --no-rescue) no_rescue=1; shift ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --smp) smp=$2; shift 2 ;;
    --append) append=$2; shift 2 ;;
    --debian-initrd) initrd=initrd.img; shift ;;
    --image-dir) image_dir=$2; shift 2 ;;
    --qemu-arg) extra+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) break ;;
  esac
done
(($# == 1)) || die "usage: run-guest.sh [options] JOBDIR (see --help)"
job=$(cd "$1" && pwd) || die "job directory $1 does not exist"
[ -f "$job/run.sh" ] || die "$job/run.sh is missing: the job directory must contain the script to run"
[ "$(id -u)" = 0 ] || die "must run as root"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is missing: apt-get install qemu-system-x86 (or scripts/install-deps.sh)"
if ((uefi)); then
  [ -r /usr/share/OVMF/OVMF_CODE.fd ] || die "/usr/share/OVMF/OVMF_CODE.fd is missing: apt-get install ovmf"
fi

if [ -n "$image_dir" ]; then
  img=$(cd "$image_dir" && pwd) || die "image directory $image_dir does not exist"
  for f in vmlinuz "$initrd" root.img; do [ -f "$img/$f" ] || die "$img/$f is missing: --image-dir needs vmlinuz, $initrd and root.img"; done
else
  img=$("$here/build-guest.sh") || die "building the guest image failed (see above)"
fi

if ((!no_rescue)); then
  if [ -z "$rescue" ]; then
    root=$(cd "$here/../.." && pwd)
    (cd "$root" && cargo build --quiet --bin rescue) || die "cargo build failed in $root"
    rescue="$root/target/debug/rescue"
  fi
  [ -x "$rescue" ] || die "rescue binary $rescue does not exist or is not executable"
  cp "$rescue" "$job/rescue.tmp" && mv "$job/rescue.tmp" "$job/rescue"
fi

rm -rf "$job/out"; mkdir -p "$job/out"
serial="$job/out/serial.log"
tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/rescue-vm.XXXXXX")
qpid=""
cleanup() {
  [ -n "$qpid" ] && kill "$qpid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
if [ -z "$disk_dir" ]; then disk_dir="$tmp/disks"; fi
mkdir -p "$disk_dir"

args=(-accel tcg -machine pc -nodefaults -m "$mem" -smp "$smp" -display none -monitor none -nic none
      -no-reboot -serial "file:$serial"
      -kernel "$img/vmlinuz" -initrd "$img/$initrd"
      -append "console=ttyS0,115200 root=/dev/vda rw panic=-1 raid=noautodetect net.ifnames=0 fsck.mode=skip loglevel=4 systemd.show_status=1 no_timer_check $append"
      -drive "file=$img/root.img,format=raw,if=none,id=root,snapshot=on"
      -device "virtio-blk-pci,drive=root,serial=rt-root"
      -virtfs "local,path=$job,mount_tag=job,security_model=none")
ahci=0 n=0
for d in "${disks[@]}"; do
  n=$((n + 1))
  kind=${d%%:*} spec=${d#*:}
  type=virtio
  case "$spec" in *:virtio|*:sata|*:nvme) type=${spec##*:}; spec=${spec%:*} ;; esac
  if [ "$kind" = new ]; then
    file="$disk_dir/disk$n.img"
    rm -f "$file"; truncate -s "$spec" "$file" || die "cannot create disk $n of size $spec in $disk_dir"
  else
    file=$(realpath "$spec"); [ -f "$file" ] || die "disk image $spec does not exist"
  fi
  args+=(-drive "file=$file,format=raw,if=none,id=d$n,cache=unsafe")
  case "$type" in
    virtio) args+=(-device "virtio-blk-pci,drive=d$n,serial=rt-disk$n") ;;
    nvme) args+=(-device "nvme,drive=d$n,serial=rt-disk$n") ;;
    sata)
      if ((ahci == 0)); then args+=(-device ahci,id=ahci); fi
      ((ahci < 6)) || die "at most 6 SATA disks"
      args+=(-device "ide-hd,drive=d$n,bus=ahci.$ahci,serial=rt-disk$n"); ahci=$((ahci + 1)) ;;
  esac
done
if ((uefi)); then
  if [ -z "$vars" ]; then vars="$tmp/OVMF_VARS.fd"; fi
  [ -f "$vars" ] || cp /usr/share/OVMF/OVMF_VARS.fd "$vars"
  args+=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd"
         -drive "if=pflash,format=raw,unit=1,file=$vars")
fi

args+=("${extra[@]}")
echo "qemu-system-x86_64 ${args[*]}" >"$job/out/qemu-cmdline"
t0=$(date +%s.%N)
since() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
TMPDIR=$tmp timeout --kill-after=10 "$timeout_s" qemu-system-x86_64 "${args[@]}" >"$job/out/qemu.log" 2>&1 &
qpid=$!
booted=""
while kill -0 "$qpid" 2>/dev/null; do
  if [ -z "$booted" ] && grep -q 'RESCUE-JOB: run.sh begin' "$serial" 2>/dev/null; then
    booted=$(since)
    echo "$booted" >"$job/out/boot-seconds"
    echo "run-guest: guest booted to the job in $booted s" >&2
  fi
  sleep 0.5
done
qrc=0; wait "$qpid" || qrc=$?
qpid=""
total=$(since)
echo "$total" >"$job/out/total-seconds"
if [ -f "$job/out/exit-status" ]; then
  rc=$(cat "$job/out/exit-status")
  echo "run-guest: job exited with status $rc after $total s (log: $job/out/run.log)" >&2
  exit "$rc"
fi
echo "run-guest: the guest did not report an exit status (qemu status $qrc after $total s). Last serial lines ($serial):" >&2
tail -n 40 "$serial" >&2 || true
cat "$job/out/qemu.log" >&2 || true
[ "$qrc" = 124 ] && exit 124
exit 125
