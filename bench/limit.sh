#!/bin/bash
# Benchmark: the recovery against its physical limit (issue 21), scenario 1
# (bios-ext4: BIOS, GPT, swap, ext4 root, the backup inside the ISO), under
# qemu TCG, for one or more rescue executables in one run (before and after):
#
#   (a) the recovery: tests/vm/run-scenario.sh --rescue BIN bios-ext4 (the
#       source makes the ISO, blank disks boot it, `rescue recover
#       --unattended`, the recovered disk boots and verifies); its `times`
#       and the recovery's own report of its phases;
#   (b) the limit, in the same rescue system (the ISO's kernel and initrd,
#       booted by qemu to the shell, with the recovered disk and the ISO as
#       its CD): bench/limit-guest.sh makes the same filesystems with mkfs,
#       `zstd -dc ARCHIVE | tar -x` of the same archive onto them with GNU
#       tar's xattr/ACL flags, grub-install from the restored system, umount.
#       The rescue system's tar is busybox's: GNU tar and zstd are this
#       host's (Debian's), carried in with their libraries on a small disk.
#   limit = the ISO's boot to its shell (RESCUE-READY, measured in (a)) +
#   mkfs + restore + grub-install + umount; ratio = (a)'s ISO boot to
#   RESCUE-RECOVER-OK / limit.
#
#   bench/limit.sh [WORKDIR]    (as root)
#
# Environment: RESCUE_BINS, space-separated NAME=BINARY pairs (default
# "current=target/release/rescue"; release builds), e.g.
# "before=/tmp/rescue-11c27bc current=target/release/rescue". WORKDIR (default
# /var/tmp/rescue-bench-limit) gets NAME/ (the scenario's directory) and
# NAME-limit/ (serial log, times) for each. Prints a markdown table.
# STEPS (default "scenario limit"): STEPS=limit runs (b) again on the disks
# and ISO of an earlier run; STEPS= prints the table of earlier runs.
set -euo pipefail
# One compound command: bash parses it whole before running, so editing this
# file while it runs cannot break that run.
{
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=${1:-/var/tmp/rescue-bench-limit}
BINS=${RESCUE_BINS:-current=$ROOT/target/release/rescue}
STEPS=${STEPS-scenario limit}
export RESCUE_SCENARIO_TIMEOUT_SCALE=${RESCUE_SCENARIO_TIMEOUT_SCALE:-3}
for t in qemu-system-x86_64 xorriso mkfs.ext4 timeout; do
  command -v "$t" >/dev/null || { echo "$t is missing: run scripts/install-deps.sh" >&2; exit 2; }
done
mkdir -p "$W"

# limit NAME: boot NAME's rescue ISO kernel and initrd on NAME's recovered disk
# and run bench/limit-guest.sh from its shell.
limit() {
  local s="$W/$1" l="$W/$1-limit"
  local iso
  iso=$(find "$s/job/out" -maxdepth 1 -name 'rescue-*.iso' | head -n1)
  [ -n "$iso" ] && [ -f "$s/target1.img" ] || { echo "$1: no ISO or recovered disk in $s" >&2; return 1; }
  rm -rf "$l"; mkdir -p "$l/script"
  xorriso -osirrox on -indev "$iso" -extract /boot/vmlinuz "$l/vmlinuz" -extract /boot/initrd.img "$l/initrd.img" 2>/dev/null
  cp "$ROOT/bench/limit-guest.sh" "$l/script/"
  # The rescue system's tar is busybox's (no xattrs, no ACLs): GNU tar and
  # zstd come from this Debian host, with their libraries, run by their loader.
  mkdir -p "$l/script/gnu"
  local prog
  for prog in "$(command -v tar)" "$(command -v zstd)"; do
    cp -L "$prog" "$l/script/gnu/"
    ldd "$prog" | awk '/=>/ { print $3 } /ld-linux/ { print $1 }' | xargs -r cp -Lt "$l/script/gnu/"
  done
  truncate -s 16M "$l/script.img"
  mkfs.ext4 -q -F -d "$l/script" "$l/script.img"
  rm -f "$l/in"; mkfifo "$l/in"
  exec 3<>"$l/in"
  local t0 rc=0
  t0=$(date +%s.%N)
  timeout 1800 qemu-system-x86_64 -accel tcg -machine pc -nodefaults -m 2048 -smp 2 -display none -monitor none -nic none -no-reboot \
    -kernel "$l/vmlinuz" -initrd "$l/initrd.img" -append "console=tty0 console=ttyS0,115200 quiet no_timer_check" \
    -drive "file=$s/target1.img,format=raw,if=none,id=t1,cache=unsafe" -device virtio-blk-pci,drive=t1,serial=target-disk1 \
    -drive "file=$l/script.img,format=raw,if=none,id=sc,cache=unsafe" -device virtio-blk-pci,drive=sc,serial=limit-script \
    -drive "file=$iso,format=raw,if=none,id=cd,media=cdrom,readonly=on" -device ide-cd,drive=cd,bus=ide.1 \
    -serial stdio <"$l/in" >"$l/serial.log" 2>"$l/qemu.log" &
  local qpid=$!
  until grep -aq RESCUE-READY "$l/serial.log" 2>/dev/null; do
    kill -0 "$qpid" 2>/dev/null || { echo "$1: the limit VM stopped before its shell" >&2; exec 3>&-; return 1; }
    sleep 0.5
  done
  echo "boot-kernel-initrd $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')" >"$l/times"
  sleep 2
  printf '%s\n' "mkdir -p /mnt/s && mount -o ro /dev/vdb /mnt/s && sh /mnt/s/limit-guest.sh; poweroff -f" >&3
  wait "$qpid" || rc=$?
  exec 3>&-
  tr '\r' '\n' <"$l/serial.log" | sed -n 's/^LIMIT-PHASE //p' >>"$l/times"
  grep -aq LIMIT-DONE "$l/serial.log" || { echo "$1: the limit run failed (qemu status $rc); see $l/serial.log" >&2; return 1; }
}

get() { awk -v k="$2" '$1==k {v=$2} END {print v}' "$1" 2>/dev/null || true; }
names=()
for pair in $BINS; do
  name=${pair%%=*} bin=${pair#*=}
  [ -x "$bin" ] || [ -z "$STEPS" ] || { echo "$name: $bin is not an executable (cargo build --release)" >&2; exit 2; }
  names+=("$name")
  case " $STEPS " in *" scenario "*)
    echo "load-before $(cut -d' ' -f1-3 /proc/loadavg)" >"$W/$name.load"
    echo "$(date -u +%T) $name: tests/vm/run-scenario.sh --rescue $bin bios-ext4 $W/$name" >&2
    rm -rf "${W:?}/$name"
    "$ROOT/tests/vm/run-scenario.sh" --rescue "$bin" bios-ext4 "$W/$name" 2>"$W/$name.stderr" ||
      { echo "$name: the scenario FAILED:" >&2; tail -n 30 "$W/$name.stderr" >&2; } ;;
  esac
  case " $STEPS " in *" limit "*)
    echo "$(date -u +%T) $name: the limit in the same rescue system" >&2
    limit "$name" || true
    echo "load-after $(cut -d' ' -f1-3 /proc/loadavg)" >>"$W/$name.load" ;;
  esac
done

echo
printf '| seconds |'; for n in "${names[@]}"; do printf ' %s |' "$n"; done; echo
printf '|---|'; for _ in "${names[@]}"; do printf -- '---|'; done; echo
declare -A v
for n in "${names[@]}"; do
  s="$W/$n/times" l="$W/$n-limit/times"
  v[$n.boot]=$(get "$s" recover-ready)
  # The harness may miss a line printed just before qemu exits: then qemu's exit.
  v[$n.ok]=$(get "$s" recover-ok)
  [ -n "${v[$n.ok]}" ] || v[$n.ok]=$(get "$s" recover-boot-and-restore)
  v[$n.mkfs]=$(get "$l" mkfs) v[$n.restore]=$(get "$l" restore) v[$n.grub]=$(get "$l" grub-install) v[$n.umount]=$(get "$l" umount)
  v[$n.limit]=$(awk -v a="${v[$n.boot]:-x}" -v b="${v[$n.mkfs]:-x}" -v c="${v[$n.restore]:-x}" -v d="${v[$n.grub]:-x}" -v e="${v[$n.umount]:-x}" \
    'BEGIN { if (a b c d e ~ /x/) print ""; else printf "%.1f", a + b + c + d + e }')
  v[$n.ratio]=$(awk -v a="${v[$n.ok]:-x}" -v b="${v[$n.limit]:-x}" 'BEGIN { if (a b ~ /x/ || b == 0) print ""; else printf "%.2fx", a / b }')
  v[$n.kboot]=$(get "$l" boot-kernel-initrd)
  v[$n.result]=$(cat "$W/$n/result" 2>/dev/null || echo "no result")
done
row() { printf '| %s |' "$1"; for n in "${names[@]}"; do printf ' %s |' "${v[$n.$2]:--}"; done; echo; }
row '(a) recovery: ISO boot to RESCUE-RECOVER-OK (or to power-off)' ok
row '(b) ISO boot to the shell (RESCUE-READY, in (a))' boot
row '(b) mkfs (ext4 + swap, same UUIDs)' mkfs
row '(b) `zstd -dc \| tar -x` of the same archive' restore
row '(b) grub-install (chroot)' grub
row '(b) umount (writes back)' umount
row '(b) limit: the sum' limit
row 'recovery / limit' ratio
row 'limit VM: kernel+initrd boot to the shell (for reference)' kboot
row 'scenario result' result
echo
for n in "${names[@]}"; do
  echo "$n: load average $(sed -n 's/^load-before //p' "$W/$n.load") -> $(sed -n 's/^load-after //p' "$W/$n.load");" \
    "times: $(tr '\n' ' ' <"$W/$n/times" 2>/dev/null)"
  if [ -f "$W/$n/recover-report.txt" ]; then
    echo "$n: the recovery's report:"
    sed 's/^/    /' "$W/$n/recover-report.txt"
  fi
done
exit 0
}
