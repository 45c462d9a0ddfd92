#!/usr/bin/env bash
# Issue 38's scale target for the web console: with TOPICS topics, CONSUMER_GROUPS consumer
# groups and BROKERS broker groups (default 10,000, 2,000 and 4), each list page answers in
# under 300 ms and the cluster page in under 500 ms. Starts one NameServer and BROKERS master
# brokers (each its own data dir) on release binaries, creates the topics and groups with the
# `apogee` CLI (PARALLEL invocations at once), then times what the console's pages and the
# admin calls behind them cost at that size:
#   - the creation (seconds, creates per second, and the CPU the servers spent on it);
#   - `apogee topic list`, `group list`, `group describe`, ... (the admin calls the console
#     makes, each in a new CLI process: its start and connection are in the figure);
#   - each console page, fetched with curl ROUNDS times (authentication off on loopback);
#   - the NameServer's and the brokers' RSS (VmRSS) once everything exists.
# Prints one markdown table (page, median ms, max ms, HTTP status, bytes) and keeps the logs.
#
# usage: tools/console-scale.sh
#   APOGEE_BIN_DIR  binaries to run (default $CARGO_TARGET_DIR/release, else target/release;
#                   build them with `cargo build --release --bins`)
#   TOPICS          topics to create (default 10000)   QUEUES   queues per topic (default 8)
#   CONSUMER_GROUPS consumer groups (default 2000)     BROKERS  broker groups (default 4)
#   PARALLEL        CLI invocations at once while creating (default 8)
#   ROUNDS          fetches of each page and runs of each list command (default 5)
#   BASE_PORT       first port (default 23000): the NameServer's gRPC base+0 and HTTP (where
#                   the console is served) base+1; broker i (0, 1, ...) gRPC base+10+i and
#                   HTTP base+40+i
#   CONSOLE_URL     the console's root (default http://127.0.0.1:<base+1>/console)
#   OUT             logs and data (default a new temporary directory); the data dirs are
#                   removed on exit unless KEEP_DATA=1
# Nothing else may hold the ports.
set -euo pipefail
cd "$(dirname "$0")/.."
if (($# != 0)); then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
fi
bin=${APOGEE_BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}
topics=${TOPICS:-10000}
queues=${QUEUES:-8}
groups=${CONSUMER_GROUPS:-2000}
brokers=${BROKERS:-4}
parallel=${PARALLEL:-8}
rounds=${ROUNDS:-5}
base=${BASE_PORT:-23000}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
for b in apogee apogee-nameserver apogee-broker; do
  [ -x "$bin/$b" ] || { echo "$b not found in $bin: cargo build --release --bins" >&2; exit 2; }
done
if ((brokers < 1 || brokers > 30)); then
  echo "BROKERS=$brokers: want 1 to 30" >&2
  exit 2
fi
ns_addr="127.0.0.1:$base"
ns_http="127.0.0.1:$((base + 1))"
console=${CONSOLE_URL:-http://$ns_http/console}
apogee() { "$bin/apogee" --nameserver "$ns_addr" "$@"; }
# shellcheck source=tools/standalone.sh
. tools/standalone.sh # cpu_ticks

pids=()
stop_all() {
  local p
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do
    wait "$p" 2>/dev/null || true
  done
  pids=()
  if [ "${KEEP_DATA:-0}" != 1 ]; then
    rm -rf "$out/data"
  fi
}
trap stop_all EXIT

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
now_ns() { date +%s%N; }

# wait_ready NAME PID HTTP_ADDR LOG: until GET /readyz answers 200 (at most 60 s), while the
# process runs.
wait_ready() {
  local name=$1 pid=$2 http=$3 log=$4
  for _ in $(seq 600); do
    if curl -fs -o /dev/null "http://$http/readyz"; then
      return
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name exited; the end of $log:" >&2
      tail -n 20 "$log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "$name not ready after 60 s; see $log" >&2
  exit 1
}

ports=("$base" "$((base + 1))")
for i in $(seq 0 $((brokers - 1))); do
  ports+=("$((base + 10 + i))" "$((base + 40 + i))")
done
for p in "${ports[@]}"; do
  if port_open "$p"; then
    echo "port $p is taken: stop what holds it, or choose another BASE_PORT" >&2
    exit 2
  fi
done

APOGEE_NAMESERVER_HTTP_LISTEN="$ns_http" "$bin/apogee-nameserver" --listen "$ns_addr" \
  >"$out/nameserver.log" 2>&1 &
ns_pid=$!
pids+=("$ns_pid")
wait_ready nameserver "$ns_pid" "$ns_http" "$out/nameserver.log"
broker_pids=()
for i in $(seq 0 $((brokers - 1))); do
  name=scale-broker-$i
  mkdir -p "$out/data/$name"
  APOGEE_BROKER_HTTP_LISTEN="127.0.0.1:$((base + 40 + i))" "$bin/apogee-broker" \
    --listen "127.0.0.1:$((base + 10 + i))" --nameserver "$ns_addr" \
    --data-dir "$out/data/$name" --broker-name "$name" >"$out/$name.log" 2>&1 &
  pids+=($!)
  broker_pids+=($!)
done
for i in $(seq 0 $((brokers - 1))); do
  wait_ready "scale-broker-$i" "${broker_pids[$i]}" "127.0.0.1:$((base + 40 + i))" \
    "$out/scale-broker-$i.log"
done

# ns_metric NAME: one counter of the NameServer's /metrics.
ns_metric() {
  curl -fs "http://$ns_http/metrics" |
    awk -v m="$1" '{ name = $1; sub(/\{.*/, "", name) } name == m { printf "%.0f", $2 }'
}

# create KIND COUNT ARGS...: COUNT `apogee KIND create scale-KIND-N ARGS...`, PARALLEL at
# once; prints the seconds they took, the CPU seconds the NameServer and the brokers spent
# meanwhile, and the registrations (with their MiB) the NameServer received meanwhile (a
# broker registers again, with all its topics and groups, when they change). Failures are
# kept in $out/create-KIND.log.
create() {
  local kind=$1 count=$2 t0 ns0 b0 r0 rb0
  shift 2
  r0=$(ns_metric apogee_nameserver_registrations_total)
  rb0=$(ns_metric apogee_nameserver_registration_bytes_total)
  ns0=$(cpu_ticks "$ns_pid")
  b0=$(cpu_ticks "${broker_pids[@]}")
  t0=$(now_ns)
  if ! seq 0 $((count - 1)) |
    xargs -P "$parallel" -I{} "$bin/apogee" --nameserver "$ns_addr" "$kind" create \
      "scale-$kind-{}" "$@" >/dev/null 2>"$out/create-$kind.log"; then
    echo "some $kind creates failed; see $out/create-$kind.log" >&2
    exit 1
  fi
  python3 -c "print(f'{($(now_ns) - $t0) / 1e9:.1f}', \
    f'{($(cpu_ticks "$ns_pid") - $ns0) / $(getconf CLK_TCK):.1f}', \
    f'{($(cpu_ticks "${broker_pids[@]}") - $b0) / $(getconf CLK_TCK):.1f}', \
    $(ns_metric apogee_nameserver_registrations_total) - $r0, \
    f'{($(ns_metric apogee_nameserver_registration_bytes_total) - $rb0) / 2**20:.0f}')"
}
read -r topic_secs topic_ns_cpu topic_broker_cpu topic_regs topic_reg_mib \
  < <(create topic "$topics" --queues "$queues")
read -r group_secs group_ns_cpu group_broker_cpu group_regs group_reg_mib \
  < <(create group "$groups")
listed_topics=$(apogee -o jsonl topic list | wc -l)
listed_groups=$(apogee -o jsonl group list | grep -c '"scale-group-' || true)
if ((listed_topics < topics || listed_groups != groups)); then
  echo "listed $listed_topics topics and $listed_groups scale groups;" \
    "created $topics and $groups" >&2
  exit 1
fi

rss_mib() { awk '/VmRSS/{printf "%.0f", $2/1024}' "/proc/$1/status"; }
broker_rss() {
  local p list=()
  for p in "${broker_pids[@]}"; do list+=("$(rss_mib "$p")"); done
  (
    IFS=/
    echo "${list[*]}"
  )
}
rss_after_create="NameServer $(rss_mib "$ns_pid") MiB, brokers $(broker_rss) MiB"

rows=()
# row LABEL FILE: a table row from FILE's lines "seconds status bytes", one per round.
row() {
  rows+=("$(python3 - "$1" "$2" <<'EOF'
import statistics, sys
label, path = sys.argv[1], sys.argv[2]
runs = [line.split() for line in open(path) if line.strip()]
ms = [float(r[0]) * 1000 for r in runs]
statuses = "/".join(sorted({r[1] for r in runs}))
size = max(int(r[2]) for r in runs)
fmt = lambda v: f"{v:.1f}" if v < 10 else f"{v:.0f}"
print(f"| {label} | {fmt(statistics.median(ms))} | {fmt(max(ms))} | {statuses} | {size} |")
EOF
  )")
}

# time_command LABEL ARGS...: ROUNDS runs of `apogee -o json ARGS...`.
time_command() {
  local label=$1 t0 status bytes f
  shift
  f="$out/times-cli-${label// /-}.txt"
  : >"$f"
  for _ in $(seq "$rounds"); do
    t0=$(now_ns)
    status=ok
    bytes=$(apogee -o json "$@" 2>>"$out/cli-errors.log" | wc -c) || status=failed
    echo "$(python3 -c "print(($(now_ns) - $t0) / 1e9)") $status $bytes" >>"$f"
  done
  row "\`apogee $label\`" "$f"
}

# time_page PATH: ROUNDS fetches of the console page PATH.
time_page() {
  local path=$1 f
  f="$out/times-page-$(echo "$path" | tr -c 'a-zA-Z0-9\n' '-').txt"
  : >"$f"
  for _ in $(seq "$rounds"); do
    curl -s -o /dev/null -w '%{time_total} %{http_code} %{size_download}\n' "$console$path" \
      >>"$f" || echo "0 failed 0" >>"$f"
  done
  row "$path" "$f"
}

one_topic=scale-topic-$((topics / 2))
one_group=scale-group-$((groups / 2))
time_command "cluster list" cluster list
time_command "topic list" topic list
time_command "group list" group list
time_command "topic status $one_topic" topic status "$one_topic"
time_command "group describe $one_group" group describe "$one_group"
time_command "txn list" txn list
time_command "schedule list" schedule list
for path in /cluster /topics "/topics?filter=topic-12" "/topics?page=20" /groups \
  "/groups?filter=group-12" "/topics/$one_topic" "/groups/$one_group" /transactions \
  /scheduled /rates; do
  time_page "$path"
done

commit=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
echo "$(date -u +%Y-%m-%dT%H:%MZ), $commit, $(nproc) cores; logs in $out"
rate() { python3 -c "print(f'{$1 / $2:.0f}')"; }
echo "$brokers broker groups, $parallel CLI invocations at once:"
echo "  $topics topics of $queues queues created in $topic_secs s" \
  "($(rate "$topics" "$topic_secs")/s); CPU meanwhile: NameServer $topic_ns_cpu s," \
  "brokers $topic_broker_cpu s; $topic_regs registrations of $topic_reg_mib MiB"
echo "  $groups groups created in $group_secs s ($(rate "$groups" "$group_secs")/s);" \
  "CPU meanwhile: NameServer $group_ns_cpu s, brokers $group_broker_cpu s;" \
  "$group_regs registrations of $group_reg_mib MiB"
echo "RSS after creating: $rss_after_create; after the pages: NameServer" \
  "$(rss_mib "$ns_pid") MiB, brokers $(broker_rss) MiB"
echo
echo "| page | median ms | max ms | HTTP status | bytes |"
echo "|---|---:|---:|---|---:|"
printf '%s\n' "${rows[@]}"
