#!/usr/bin/env bash
# A local Apogee cluster on loopback with automatic failover: three NameServers running the
# controller (a Raft group of node ids 1..3; it keeps working with one of them down) and two
# broker groups (broker-a and broker-b) of two members each (member ids 1 and 2) in controller
# mode: the controller decides which member of a group is its master, and elects the other
# when the master dies.
#
#   deploy/local-cluster.sh start    start the seven processes, wait until each serves, print
#                                    addresses and (with the apogee CLI) each group's master
#   deploy/local-cluster.sh status   each process running or stopped (exit 0 all run, 3 otherwise)
#   deploy/local-cluster.sh stop     SIGTERM (the members, then the NameServers), SIGKILL
#                                    after 60 s; exit 0, also when nothing runs
#   deploy/local-cluster.sh restart NAME
#                                    SIGTERM one process (e.g. broker-a-2), start it again
#                                    and wait until it is ready; the restart command of
#                                    `apogee cluster rolling-restart --restart-command
#                                    'deploy/local-cluster.sh restart "$APOGEE_GROUP-$APOGEE_MEMBER"'`
#
# Settings (environment):
#   APOGEE_CLUSTER_DIR        data, logs and pid files, one folder per process
#                             (default ./local-cluster; a NameServer keeps its Raft data in
#                             its folder's controller/); stop keeps the data, remove the
#                             folder to start afresh
#   APOGEE_CLUSTER_BASE_PORT  first port (default 20000): gRPC of the NameServers base+0,
#                             base+1 and base+2, of broker-a's members 1 and 2 base+10 and
#                             base+11, of broker-b's base+20 and base+21; each process's HTTP
#                             endpoint (/metrics, /healthz, /readyz) its gRPC port + 100
#   APOGEE_BIN_DIR            the folder holding apogee-nameserver and apogee-broker
#                             (default: target/release, then target/debug of this repository,
#                             then PATH); the apogee CLI beside them, when there, tells which
#                             member the controller made master
# Other APOGEE_NAMESERVER_* and APOGEE_BROKER_* variables reach every process as usual.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${APOGEE_CLUSTER_DIR:-./local-cluster}"
base="${APOGEE_CLUSTER_BASE_PORT:-20000}"
cluster_name="LocalCluster"
http_offset=100
start_timeout=60 # seconds each process may take to listen, and again to get ready
# Seconds between SIGTERM and SIGKILL: every member keeps answering for failover.drain_ms
# (35 s by default) after leaving the routes, so `stop` and `restart` take that long.
stop_timeout=60

die() {
  echo "local-cluster: $*" >&2
  exit 1
}

if ! [[ "$base" =~ ^[0-9]+$ ]] || ((base < 1024 || base + 21 + http_offset > 65535)); then
  die "APOGEE_CLUSTER_BASE_PORT=$base: want a number from 1024 to $((65535 - 21 - http_offset))"
fi

# name, kind, gRPC port, then a NameServer's controller node id, or a broker's group and
# member id (its broker_id in controller mode, for life)
processes=(
  "nameserver-0 nameserver $((base + 0)) 1"
  "nameserver-1 nameserver $((base + 1)) 2"
  "nameserver-2 nameserver $((base + 2)) 3"
  "broker-a-1 broker $((base + 10)) broker-a 1"
  "broker-a-2 broker $((base + 11)) broker-a 2"
  "broker-b-1 broker $((base + 20)) broker-b 1"
  "broker-b-2 broker $((base + 21)) broker-b 2"
)
nameservers="127.0.0.1:$((base + 0));127.0.0.1:$((base + 1));127.0.0.1:$((base + 2))"
# The controller's voters, the NameServers: "node id=gRPC address", comma-separated.
voters="1=127.0.0.1:$((base + 0)),2=127.0.0.1:$((base + 1)),3=127.0.0.1:$((base + 2))"

# An absolute path, so what is printed works from anywhere.
absolute_dir() {
  if [ -d "$dir" ]; then
    dir="$(cd "$dir" && pwd)"
  fi
}

# The folder holding both server binaries; cli_bin is the apogee CLI beside them, or empty.
find_bins() {
  local d b
  if [ -n "${APOGEE_BIN_DIR:-}" ]; then
    for b in apogee-nameserver apogee-broker; do
      [ -x "$APOGEE_BIN_DIR/$b" ] || die "$b not found in $APOGEE_BIN_DIR (APOGEE_BIN_DIR)"
    done
    nameserver_bin="$APOGEE_BIN_DIR/apogee-nameserver"
    broker_bin="$APOGEE_BIN_DIR/apogee-broker"
  else
    nameserver_bin=""
    for d in "$root/target/release" "$root/target/debug"; do
      if [ -x "$d/apogee-nameserver" ] && [ -x "$d/apogee-broker" ]; then
        nameserver_bin="$d/apogee-nameserver"
        broker_bin="$d/apogee-broker"
        break
      fi
    done
    if [ -z "$nameserver_bin" ] &&
      ! { nameserver_bin="$(command -v apogee-nameserver)" && broker_bin="$(command -v apogee-broker)"; }; then
      die "apogee-nameserver and apogee-broker not found in APOGEE_BIN_DIR (unset), $root/target/release, $root/target/debug or PATH: build them with cargo build --release --bins"
    fi
  fi
  cli_bin="$(dirname "$nameserver_bin")/apogee"
  [ -x "$cli_bin" ] || cli_bin=""
}

# An earlier version of this script ran static roles (folders broker-a-0 and broker-b-0, a
# master of broker id 0); its stores are not members of a controller-run group.
refuse_static_layout() {
  local old
  for old in broker-a-0 broker-b-0; do
    if [ -d "$dir/$old" ]; then
      die "$dir holds a cluster of static roles (its $old folder): stop it with the script that started it and remove $dir, or choose another APOGEE_CLUSTER_DIR"
    fi
  done
}

# Whether a process runs: it exists and is not a zombie (exited, not yet reaped).
running() {
  kill -0 "$1" 2>/dev/null || return 1
  if [ -r "/proc/$1/stat" ]; then
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }" # the state follows the command name, which is in parentheses
    [ "${stat%% *}" != Z ] || return 1
  fi
  return 0
}

# Prints the pid of a process of the cluster if it runs. Where /proc tells, the pid must
# also be an apogee server, so a pid file left from before a reboot never names another
# program.
pid_of() {
  local file="$dir/$1/pid" pid cmd
  [ -f "$file" ] || return 1
  pid="$(cat "$file")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  running "$pid" || return 1
  if [ -r "/proc/$pid/cmdline" ]; then
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmd" == *apogee-* ]] || return 1
  fi
  echo "$pid"
}

# Whether something accepts TCP connections on 127.0.0.1:port.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Whether GET /readyz on 127.0.0.1:port answers 200 (within 5 s).
ready() {
  (
    exec 3<>"/dev/tcp/127.0.0.1/$1"
    printf 'GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
    IFS=' ' read -r -t 5 _ code _ <&3
    [ "$code" = 200 ]
  ) 2>/dev/null
}

show_log() {
  echo "local-cluster: the end of $dir/$1/log:" >&2
  tail -n 20 "$dir/$1/log" >&2 || true
}

# Fails, showing the log, unless `check port` succeeds within start_timeout seconds while
# the process runs.
wait_for() {
  local name="$1" check="$2" port="$3" what="$4" pid i
  pid="$(cat "$dir/$name/pid")"
  for ((i = 0; i < start_timeout * 10; i++)); do
    "$check" "$port" && return 0
    if ! running "$pid"; then
      echo "local-cluster: $name (pid $pid) exited before it $what" >&2
      show_log "$name"
      return 1
    fi
    sleep 0.1
  done
  echo "local-cluster: $name (pid $pid) still not $what after $start_timeout s" >&2
  show_log "$name"
  return 1
}

# Starts one process in the background unless it runs; sets launched to 1 if it started it.
start_one() {
  local name="$1" kind="$2" port="$3" group_or_node="$4" id="${5:-}"
  local http=$((port + http_offset)) pdir="$dir/$1" pid p
  launched=0
  if pid="$(pid_of "$name")"; then
    echo "$name already runs (pid $pid)"
    return
  fi
  for p in "$port" "$http"; do
    if port_open "$p"; then
      die "port $p (for $name) is taken by another program: stop it, or move the cluster with APOGEE_CLUSTER_BASE_PORT"
    fi
  done
  mkdir -p "$pdir"
  echo "--- $(date '+%Y-%m-%d %H:%M:%S') local-cluster.sh start ---" >>"$pdir/log"
  if [ "$kind" = nameserver ]; then
    # A voter of the controller's Raft group; the group forms once two of the three run.
    APOGEE_NAMESERVER_HTTP_LISTEN="127.0.0.1:$http" \
      APOGEE_NAMESERVER_CONTROLLER__ENABLED=true \
      APOGEE_NAMESERVER_CONTROLLER__NODE_ID="$group_or_node" \
      APOGEE_NAMESERVER_CONTROLLER__PEERS="$voters" \
      APOGEE_NAMESERVER_CONTROLLER__DATA_DIR="$pdir/controller" \
      nohup "$nameserver_bin" --listen "127.0.0.1:$port" >>"$pdir/log" 2>&1 </dev/null &
  else
    # A member in controller mode: broker_id is its member id; it starts fenced (no write)
    # until the controller names its group's master. It beats every 500 ms, four lease
    # renewals per 2 s lease, so a busy machine's late answer does not end the master's lease.
    APOGEE_BROKER_CLUSTER_NAME="$cluster_name" \
      APOGEE_BROKER_BROKER_ID="$id" \
      APOGEE_BROKER_FAILOVER__CONTROLLER_MODE=true \
      APOGEE_BROKER_HEARTBEAT_INTERVAL_MS="${APOGEE_BROKER_HEARTBEAT_INTERVAL_MS:-500}" \
      APOGEE_BROKER_HTTP_LISTEN="127.0.0.1:$http" \
      nohup "$broker_bin" --listen "127.0.0.1:$port" \
      --nameserver "127.0.0.1:$((base + 0))" --nameserver "127.0.0.1:$((base + 1))" \
      --nameserver "127.0.0.1:$((base + 2))" \
      --data-dir "$pdir/data" --broker-name "$group_or_node" >>"$pdir/log" 2>&1 </dev/null &
  fi
  echo $! >"$pdir/pid"
  launched=1
}

describe() {
  local name="$1" kind="$2" port="$3" group_or_node="$4" id="${5:-}"
  case "$kind" in
    nameserver) echo "NameServer, controller node $group_or_node" ;;
    *) echo "member $id of $group_or_node" ;;
  esac
}

# Prints each line of $1 indented by two spaces.
indent() {
  local line
  while IFS= read -r line; do
    echo "  $line"
  done <<<"$1"
}

# Prints the masters the controller chose ("broker-a member 1 127.0.0.1:20010" a line) as
# `apogee controller status` tells (its member table marks the master); fails when the CLI
# cannot ask.
masters() {
  "$cli_bin" --nameserver "$nameservers" --timeout 3s controller status 2>/dev/null |
    awk '$3 == "master" { print $1, "member", $2, $4 }'
}

# Waits (up to start_timeout seconds) until the controller has made a master of every group,
# then prints each; without the CLI, says how to ask.
show_masters() {
  local groups="broker-a broker-b" found i g missing
  if [ -z "$cli_bin" ]; then
    echo "Which member of each group is master the controller decides: ask it with"
    echo "  apogee --nameserver '$nameservers' controller status"
    return
  fi
  for ((i = 0; i < start_timeout * 2; i++)); do
    found="$(masters || true)"
    missing=""
    for g in $groups; do
      grep -q "^$g " <<<"$found" || missing="$missing $g"
    done
    [ -z "$missing" ] && break
    sleep 0.5
  done
  echo "Masters, as the controller chose them (ask again with: $cli_bin --nameserver '$nameservers' controller status):"
  if [ -n "$found" ]; then
    indent "$found"
  fi
  for g in $missing; do
    echo "  $g: no master yet after $start_timeout s (see the logs in $dir)"
  done
}

start() {
  find_bins
  mkdir -p "$dir"
  absolute_dir
  refuse_static_layout
  local p started=0
  # In order, each waited for until it listens before the next: the NameServers before the
  # members.
  for p in "${processes[@]}"; do
    # shellcheck disable=SC2086 # the fields are meant to split
    set -- $p
    # shellcheck disable=SC2086
    start_one $p
    if [ "$launched" = 1 ]; then
      started=$((started + 1))
      wait_for "$1" port_open "$3" "listened on 127.0.0.1:$3" ||
        die "$1 did not start; $0 stop stops the others"
    fi
  done
  # Ready: a NameServer serves; a member has recovered its store, is registered, and is its
  # group's leased master or in the group's in-sync set (the controller decides both).
  for p in "${processes[@]}"; do
    # shellcheck disable=SC2086
    set -- $p
    wait_for "$1" ready "$(($3 + http_offset))" "ready (GET http://127.0.0.1:$(($3 + http_offset))/readyz)" ||
      die "$1 did not get ready; $0 stop stops the others"
  done
  if [ "$started" = 0 ]; then
    echo "The local cluster $cluster_name already runs (data and logs in $dir):"
  else
    echo "The local cluster $cluster_name is up (data and logs in $dir):"
  fi
  for p in "${processes[@]}"; do
    # shellcheck disable=SC2086
    set -- $p
    # shellcheck disable=SC2086
    printf '  %-13s gRPC 127.0.0.1:%-6s HTTP 127.0.0.1:%-6s pid %-8s %s\n' \
      "$1" "$3" "$(($3 + http_offset))" "$(pid_of "$1" || echo '?')" "$(describe $p)"
  done
  show_masters
  echo "NameServers: $nameservers"
  echo "Each HTTP address serves /metrics (Prometheus), /healthz and /readyz."
  echo "Point the apogee CLI and clients at the NameServers:"
  echo "  export APOGEE_NAMESERVER='$nameservers'"
}

# SIGTERM to the named processes at once, then waits for all; SIGKILL to any still
# running after stop_timeout seconds. Removes their pid files.
stop_tier() {
  local name pid i stopping=()
  for name in "$@"; do
    if pid="$(pid_of "$name")"; then
      kill -TERM "$pid" 2>/dev/null || true
      stopping+=("$name:$pid")
    fi
  done
  for ((i = 0; i < stop_timeout * 10; i++)); do
    local left=0 entry
    for entry in ${stopping[@]+"${stopping[@]}"}; do
      running "${entry#*:}" && left=1
    done
    [ "$left" = 0 ] && break
    sleep 0.1
  done
  for entry in ${stopping[@]+"${stopping[@]}"}; do
    name="${entry%%:*}" pid="${entry#*:}"
    if running "$pid"; then
      echo "local-cluster: $name (pid $pid) still runs $stop_timeout s after SIGTERM: SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "stopped $name"
    stopped=$((stopped + 1))
  done
  for name in "$@"; do
    rm -f "$dir/$name/pid"
  done
}

stop() {
  absolute_dir
  stopped=0
  # Members unregister from the NameServers as they stop, so those stop last. The members
  # stop together: none is left for the controller to make master.
  stop_tier broker-a-1 broker-a-2 broker-b-1 broker-b-2
  stop_tier nameserver-0 nameserver-1 nameserver-2
  if [ "$stopped" = 0 ]; then
    echo "nothing runs (pid files in $dir)"
  fi
}

# Stops the process named $1 (SIGTERM, SIGKILL after stop_timeout), starts it again and
# waits until it listens and is ready.
restart() {
  local name="${1:-}" p found=""
  for p in "${processes[@]}"; do
    [ "${p%% *}" = "$name" ] && found="$p"
  done
  [ -n "$found" ] || die "restart: no process named '$name' (one of: $(for p in "${processes[@]}"; do printf '%s ' "${p%% *}"; done))"
  find_bins
  absolute_dir
  stopped=0
  stop_tier "$name"
  # shellcheck disable=SC2086 # the fields are meant to split
  set -- $found
  # shellcheck disable=SC2086
  start_one $found
  wait_for "$1" port_open "$3" "listened on 127.0.0.1:$3" || die "$1 did not start again"
  wait_for "$1" ready "$(($3 + http_offset))" "ready (GET http://127.0.0.1:$(($3 + http_offset))/readyz)" ||
    die "$1 did not get ready again"
  echo "restarted $1 (pid $(pid_of "$1" || echo '?')), ready"
}

status() {
  absolute_dir
  local p pid code=0
  for p in "${processes[@]}"; do
    # shellcheck disable=SC2086
    set -- $p
    if pid="$(pid_of "$1")"; then
      # shellcheck disable=SC2086
      printf '%-13s running  pid %-8s gRPC 127.0.0.1:%-6s HTTP 127.0.0.1:%-6s %s\n' \
        "$1" "$pid" "$3" "$(($3 + http_offset))" "$(describe $p)"
    else
      printf '%-13s stopped\n' "$1"
      code=3
    fi
  done
  # With everything running and the CLI at hand: the controller's choice of masters.
  local found
  if [ "$code" = 0 ] && found="$(find_bins 2>/dev/null && [ -n "$cli_bin" ] && masters)" &&
    [ -n "$found" ]; then
    echo "masters, as the controller chose them:"
    indent "$found"
  fi
  return "$code"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  restart) restart "${2:-}" ;;
  -h | --help | help) sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//' ;;
  *)
    echo "usage: $0 start|stop|status|restart NAME" >&2
    exit 2
    ;;
esac
