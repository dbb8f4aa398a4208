#!/bin/bash
# A Bacula 9.6 director (sqlite catalog) and storage daemon (file volumes) for
# tests, on 127.0.0.1 with every file in one directory: nothing of /etc/bacula
# or the packages' services is used or touched. Shared by tests/bacula.rs and
# the VM scenario bios-ext4-bacula (tests/vm/run-scenario.sh).
#
# Usage: daemons.sh start DIR     start both (DIR must hold dir-resources.conf)
#        daemons.sh stop DIR      stop what `start DIR` started (SIGTERM, then SIGKILL)
#        daemons.sh free-ports N  print N TCP ports nothing listens on (below the
#                                 kernel's ephemeral range)
# DIR/dir-resources.conf: the caller's Client, FileSet and Job resources. They
# may use the Storage `File1`, the Pool `File`, the Catalog `MyCatalog` and the
# Messages `Standard` (job logs into the catalog, for `llist joblog`) this
# script defines.
# Environment for start:
#   BACULA_DIR_PORT, BACULA_SD_PORT    ports on 127.0.0.1 (required)
#   BACULA_DIRECTOR                    the director's Name (default test-dir)
#   BACULA_CONSOLE, BACULA_CONSOLE_PASSWORD  a named console with every ACL (required)
#   BACULA_DIRECTOR_PASSWORD           the default console's password (required)
#   BACULA_FD_STORAGE_ADDRESS          the storage daemon's address as the file
#                                      daemons reach it (default: 127.0.0.1; a
#                                      qemu user-mode guest reaches it at 10.0.2.2)
# Writes DIR/dir.conf, DIR/sd.conf, the catalog DIR/dir/bacula.db, volumes in
# DIR/volumes, the director's log DIR/dir/log, each daemon's output in
# DIR/bacula-{dir,sd}.out and its pid in DIR/bacula-{dir,sd}.pid.
set -euo pipefail
die() { echo "bacula/daemons.sh: ERROR: $*" >&2; exit 1; }

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_ports() {
  local n=$1 p found=()
  while ((${#found[@]} < n)); do
    p=$((20000 + RANDOM % 12000))
    listening "$p" && continue
    [[ " ${found[*]} " == *" $p "* ]] && continue
    found+=("$p")
  done
  printf '%s\n' "${found[@]}"
}

stop() {
  local d=$1 f pid
  for f in "$d"/bacula-dir.pid "$d"/bacula-sd.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || { rm -f "$f"; continue; }
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "bacula/daemons.sh: $f: $pid did not stop on SIGTERM; killing it" >&2
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
}

start() {
  local d=$1
  for t in bacula-dir bacula-sd sqlite3; do
    command -v "$t" >/dev/null || die "$t is missing: run scripts/install-deps.sh (bacula-director bacula-director-sqlite3 bacula-sd sqlite3)"
  done
  local tables=/usr/share/bacula-director/make_sqlite3_tables
  [ -f "$tables" ] || die "$tables is missing: run scripts/install-deps.sh (bacula-director-sqlite3)"
  [ -f "$d/dir-resources.conf" ] || die "$d/dir-resources.conf is missing (the Client, FileSet and Job resources)"
  : "${BACULA_DIR_PORT:?}" "${BACULA_SD_PORT:?}" "${BACULA_CONSOLE:?}" "${BACULA_CONSOLE_PASSWORD:?}" "${BACULA_DIRECTOR_PASSWORD:?}"
  local name=${BACULA_DIRECTOR:-test-dir} fdsa=${BACULA_FD_STORAGE_ADDRESS:-127.0.0.1}
  mkdir -p "$d/dir" "$d/sd" "$d/volumes"
  cat >"$d/dir.conf" <<EOF
Director {
  Name = $name
  DIRport = $BACULA_DIR_PORT
  DIRAddress = 127.0.0.1
  QueryFile = "/etc/bacula/scripts/query.sql"
  WorkingDirectory = "$d/dir"
  PidDirectory = "$d/dir"
  Maximum Concurrent Jobs = 5
  Password = "$BACULA_DIRECTOR_PASSWORD"
  Messages = Daemon
}
Console {
  Name = $BACULA_CONSOLE
  Password = "$BACULA_CONSOLE_PASSWORD"
  JobACL = "*all*"
  ClientACL = "*all*"
  StorageACL = "*all*"
  ScheduleACL = "*all*"
  PoolACL = "*all*"
  FileSetACL = "*all*"
  CatalogACL = "*all*"
  CommandACL = "*all*"
  WhereACL = "*all*"
}
Catalog {
  Name = MyCatalog
  dbname = "bacula"
  dbuser = ""
  dbpassword = ""
}
Messages {
  Name = Standard
  catalog = all, !skipped, !saved
  append = "$d/dir/log" = all, !skipped
}
Messages {
  Name = Daemon
  append = "$d/dir/log" = all, !skipped
}
Storage {
  Name = File1
  Address = 127.0.0.1
  FD Storage Address = $fdsa
  SDPort = $BACULA_SD_PORT
  Password = "sd-pw"
  Device = FileStorage
  Media Type = File
}
Pool {
  Name = File
  Pool Type = Backup
  Label Format = "Vol-"
  Maximum Volume Bytes = 4G
  Volume Retention = 365 days
  AutoPrune = yes
  Recycle = yes
}
EOF
  cat "$d/dir-resources.conf" >>"$d/dir.conf"
  cat >"$d/sd.conf" <<EOF
Storage {
  Name = test-sd
  SDPort = $BACULA_SD_PORT
  SDAddress = 127.0.0.1
  WorkingDirectory = "$d/sd"
  Pid Directory = "$d/sd"
  Maximum Concurrent Jobs = 10
}
Director {
  Name = $name
  Password = "sd-pw"
}
Device {
  Name = FileStorage
  Media Type = File
  Archive Device = "$d/volumes"
  LabelMedia = yes
  Random Access = yes
  AutomaticMount = yes
  RemovableMedia = no
  AlwaysOpen = no
}
Messages {
  Name = Standard
  director = $name = all
}
EOF
  # The catalog: Debian's table script, pointed at our directory.
  sed -e "s|cd /var/lib/bacula|cd '$d/dir'|" -e 's/XXX_DBNAME_XXX/bacula/' "$tables" | sh >"$d/catalog.out" 2>&1 ||
    { cat "$d/catalog.out" >&2; die "making the catalog failed"; }
  [ -f "$d/dir/bacula.db" ] || { cat "$d/catalog.out" >&2; die "making the catalog left no $d/dir/bacula.db"; }
  local prog conf port
  for prog in bacula-sd bacula-dir; do
    conf=$d/${prog#bacula-}.conf
    "$prog" -t -c "$conf" >"$d/$prog.out" 2>&1 || { cat "$d/$prog.out" >&2; die "$prog -t rejects $conf"; }
  done
  for prog in bacula-sd bacula-dir; do
    conf=$d/${prog#bacula-}.conf port=$BACULA_SD_PORT
    [ "$prog" = bacula-dir ] && port=$BACULA_DIR_PORT
    "$prog" -f -c "$conf" >"$d/$prog.out" 2>&1 </dev/null &
    echo $! >"$d/$prog.pid"
    for _ in $(seq 200); do listening "$port" && break; sleep 0.1; done
    listening "$port" || { cat "$d/$prog.out" >&2; stop "$d"; die "$prog did not listen on 127.0.0.1:$port within 20 s (its output above)"; }
  done
}

case "${1:-}" in
  start) (($# == 2)) || die "usage: daemons.sh start DIR"; start "$(cd "$2" && pwd)" ;;
  stop) (($# == 2)) || die "usage: daemons.sh stop DIR"; stop "$2" ;;
  free-ports) (($# == 2)) || die "usage: daemons.sh free-ports N"; free_ports "$2" ;;
  *) die "usage: daemons.sh start DIR | stop DIR | free-ports N" ;;
esac
