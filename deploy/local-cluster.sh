#!/usr/bin/env bash
# A local Apogee cluster on loopback: two NameServers and two broker groups
# (broker-a and broker-b), each a master (broker id 0) and a slave (broker id 1).
#
#   deploy/local-cluster.sh start    start all six processes, wait until they serve, print addresses
#   deploy/local-cluster.sh status   each process running or stopped (exit 0 all run, 3 otherwise)
#   deploy/local-cluster.sh stop     SIGTERM each (graceful), SIGKILL after 20 s
#
# Settings (environment):
#   APOGEE_CLUSTER_DIR        data, logs and pid files (default ./local-cluster)
#   APOGEE_CLUSTER_BASE_PORT  first port (default 20000): NameServers base+0 and +1, brokers
#                             base+10, +11 (broker-a master, slave), +20, +21 (broker-b);
#                             HTTP endpoints (metrics, health) those plus 100
#   APOGEE_BIN_DIR            where apogee-nameserver and apogee-broker are (default: the
#                             repository's target/release, then target/debug, then PATH)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${APOGEE_CLUSTER_DIR:-./local-cluster}"
base="${APOGEE_CLUSTER_BASE_PORT:-20000}"
cluster_name="LocalCluster"

# name  kind  grpc-port  extra (broker: group id)
processes=(
  "nameserver-0 nameserver $((base + 0))"
  "nameserver-1 nameserver $((base + 1))"
  "broker-a-0 broker $((base + 10)) broker-a 0"
  "broker-a-1 broker $((base + 11)) broker-a 1"
  "broker-b-0 broker $((base + 20)) broker-b 0"
  "broker-b-1 broker $((base + 21)) broker-b 1"
)
nameservers="127.0.0.1:$((base + 0));127.0.0.1:$((base + 1))"

die() {
  echo "local-cluster: $*" >&2
  exit 1
}

find_bin() {
  local name="$1" d
  for d in ${APOGEE_BIN_DIR:+"$APOGEE_BIN_DIR"} "$root/target/release" "$root/target/debug"; do
    if [ -x "$d/$name" ]; then
      echo "$d/$name"
      return
    fi
  done
  if command -v "$name" >/dev/null 2>&1; then
    command -v "$name"
    return
  fi
  die "cannot find $name (looked in ${APOGEE_BIN_DIR:-\$APOGEE_BIN_DIR unset}, $root/target/release, $root/target/debug and PATH); build it with: cargo build --release --bins"
}

# Whether a process runs (an exited one not yet reaped by its parent does not).
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local state
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || echo R)"
  [ "$state" != Z ]
}

pid_of() {
  local file="$dir/$1/pid"
  [ -f "$file" ] || return 1
  local pid
  pid="$(cat "$file")"
  alive "$pid" || return 1
  echo "$pid"
}

# Waits until host:port accepts TCP connections (at most 60 s); shows the log tail if not.
wait_port() {
  local name="$1" port="$2" i
  for i in $(seq 1 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    if ! pid_of "$name" >/dev/null; then
      echo "local-cluster: $name exited; the end of its log:" >&2
      tail -n 20 "$dir/$name/log" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  echo "local-cluster: $name does not listen on $port after 60 s; the end of its log:" >&2
  tail -n 20 "$dir/$name/log" >&2 || true
  return 1
}

# Whether GET /readyz on 127.0.0.1:port answers 200.
ready() {
  local reply
  reply="$( (exec 3<>"/dev/tcp/127.0.0.1/$1" &&
    printf 'GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 &&
    head -n 1 <&3) 2>/dev/null)" || return 1
  [[ "$reply" == *" 200 "* ]]
}

# Waits until a process is ready (at most 60 s): a broker once its store is open and a
# NameServer holds its registration.
wait_ready() {
  local name="$1" port="$2"
  for _ in $(seq 1 600); do
    ready "$port" && return 0
    pid_of "$name" >/dev/null || break
    sleep 0.1
  done
  echo "local-cluster: $name is not ready (GET http://127.0.0.1:$port/readyz); the end of its log:" >&2
  tail -n 20 "$dir/$name/log" >&2 || true
  return 1
}

start_one() {
  local name="$1" kind="$2" port="$3" group="${4:-}" id="${5:-}"
  local http=$((port + 100)) pdir="$dir/$1"
  mkdir -p "$pdir"
  if pid_of "$name" >/dev/null; then
    echo "$name already runs (pid $(pid_of "$name"))"
    return
  fi
  if [ "$kind" = nameserver ]; then
    APOGEE_NAMESERVER_HTTP_LISTEN="127.0.0.1:$http" \
      nohup "$nameserver_bin" --listen "127.0.0.1:$port" >"$pdir/log" 2>&1 &
  else
    local role=async_master
    [ "$id" = 0 ] || role=slave
    APOGEE_BROKER_HTTP_LISTEN="127.0.0.1:$http" \
      APOGEE_BROKER_CLUSTER_NAME="$cluster_name" \
      APOGEE_BROKER_BROKER_ID="$id" \
      APOGEE_BROKER_ROLE="$role" \
      nohup "$broker_bin" --listen "127.0.0.1:$port" \
      --nameserver "127.0.0.1:$((base + 0))" --nameserver "127.0.0.1:$((base + 1))" \
      --data-dir "$pdir/data" --broker-name "$group" >"$pdir/log" 2>&1 &
  fi
  echo $! >"$pdir/pid"
}

start() {
  nameserver_bin="$(find_bin apogee-nameserver)"
  broker_bin="$(find_bin apogee-broker)"
  mkdir -p "$dir"
  local p
  for p in "${processes[@]}"; do
    # shellcheck disable=SC2086 # the fields are meant to split
    start_one $p
    # Masters before their slaves, NameServers before everything: wait for each port.
    # shellcheck disable=SC2086
    set -- $p
    wait_port "$1" "$3" || die "$1 did not start"
  done
  for p in "${processes[@]}"; do
    # shellcheck disable=SC2086
    set -- $p
    wait_ready "$1" "$(($3 + 100))" || die "$1 did not get ready"
  done
  echo "Apogee local cluster $cluster_name is up (data and logs in $dir):"
  for p in "${processes[@]}"; do
    # shellcheck disable=SC2086
    set -- $p
    printf '  %-13s gRPC 127.0.0.1:%s  metrics/health http://127.0.0.1:%s  pid %s\n' \
      "$1" "$3" "$(($3 + 100))" "$(pid_of "$1")"
  done
  echo "NameServers: $nameservers"
  echo "  export APOGEE_NAMESERVER='$nameservers'"
}

stop() {
  local pid pids=()
  # Slaves first, then masters, then NameServers: each broker can still unregister.
  for ((i = ${#processes[@]} - 1; i >= 0; i--)); do
    # shellcheck disable=SC2086
    set -- ${processes[$i]}
    if pid="$(pid_of "$1")"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$1:$pid")
      # Wait for this one before the next (brokers unregister from the NameServers).
      for _ in $(seq 1 200); do
        alive "$pid" || break
        sleep 0.1
      done
      if alive "$pid"; then
        echo "local-cluster: $1 still runs 20 s after SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
      fi
      echo "stopped $1"
    fi
    rm -f "$dir/$1/pid"
  done
  [ ${#pids[@]} -gt 0 ] || echo "nothing runs"
}

status() {
  local p all=0
  for p in "${processes[@]}"; do
    # shellcheck disable=SC2086
    set -- $p
    if pid="$(pid_of "$1")"; then
      printf '%-13s running  pid %-8s gRPC 127.0.0.1:%s\n' "$1" "$pid" "$3"
    else
      printf '%-13s stopped\n' "$1"
      all=3
    fi
  done
  return "$all"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
