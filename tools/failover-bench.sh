#!/usr/bin/env bash
# The steady-state cost of controller mode: one broker group of two members on this machine,
# measured as static SYNC_MASTER + slave (the configured roles of earlier releases) and as
# controller mode (a NameServer with the controller embedded, both members controlled: every
# send acknowledged once the committed in-sync set holds it, each answer lease-checked),
# alternating the two ROUNDS times on fresh data directories. Prints one line per run:
# msg/s and p99 at 4 connections x 16 in flight and at 1 x 1, and the CPU the two brokers
# spent per message (from /proc), then the controller / static ratios of the medians.
#
# usage: tools/failover-bench.sh [ROUNDS=2]
#   APOGEE_BIN_DIR  binaries to run (default target/release; `cargo build --release --bins`)
#   SECS            seconds per timed workload (default 15)
#   OUT             where the reports and logs go (default a new temporary directory)
# Uses the loopback ports 19876 (NameServer), 19911 and 19921 (brokers), 19977-19979 (HTTP).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
bin=${APOGEE_BIN_DIR:-target/release}
secs=${SECS:-15}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
ns=127.0.0.1:19876
pids=()

stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap stop_all EXIT

apogee() { "$bin/apogee" --nameserver "$ns" "$@"; }

# shellcheck source=tools/standalone.sh
. tools/standalone.sh

# start MODE DIR: a NameServer and two brokers of group "bg" in MODE (static | controller).
start() {
  local mode=$1 dir=$2 log="$2/log"
  mkdir -p "$dir"
  if [ "$mode" = controller ]; then
    APOGEE_NAMESERVER_HTTP_LISTEN=127.0.0.1:19977 \
      APOGEE_NAMESERVER_CONTROLLER__ENABLED=true \
      APOGEE_NAMESERVER_CONTROLLER__DATA_DIR="$dir/controller" \
      "$bin/apogee-nameserver" --listen "$ns" >>"$log" 2>&1 &
    pids+=("$!")
    for member in 1 2; do
      APOGEE_BROKER_BROKER_ID=$member APOGEE_BROKER_FAILOVER__CONTROLLER_MODE=true \
        APOGEE_BROKER_STORE__FLUSH=async \
        APOGEE_BROKER_HTTP_LISTEN="127.0.0.1:$((19977 + member))" \
        "$bin/apogee-broker" --listen "127.0.0.1:$((19901 + 10 * member))" --nameserver "$ns" \
        --data-dir "$dir/m$member" --broker-name bg >>"$log" 2>&1 &
      pids+=("$!")
    done
  else
    APOGEE_NAMESERVER_HTTP_LISTEN=127.0.0.1:19977 \
      "$bin/apogee-nameserver" --listen "$ns" >>"$log" 2>&1 &
    pids+=("$!")
    APOGEE_BROKER_ROLE=sync_master APOGEE_BROKER_STORE__FLUSH=async \
      APOGEE_BROKER_HTTP_LISTEN=127.0.0.1:19978 \
      "$bin/apogee-broker" --listen 127.0.0.1:19911 --nameserver "$ns" \
      --data-dir "$dir/m1" --broker-name bg >>"$log" 2>&1 &
    pids+=("$!")
    APOGEE_BROKER_ROLE=slave APOGEE_BROKER_BROKER_ID=1 APOGEE_BROKER_STORE__FLUSH=async \
      APOGEE_BROKER_HTTP_LISTEN=127.0.0.1:19979 \
      "$bin/apogee-broker" --listen 127.0.0.1:19921 --nameserver "$ns" \
      --data-dir "$dir/m2" --broker-name bg >>"$log" 2>&1 &
    pids+=("$!")
  fi
  # Ready: both members answer /readyz (in controller mode: the leased master and a member of
  # the committed in-sync set), and the topic exists. The warm-up run absorbs the rest.
  for _ in $(seq 240); do
    if curl -fs -o /dev/null http://127.0.0.1:19978/readyz &&
      curl -fs -o /dev/null http://127.0.0.1:19979/readyz &&
      apogee topic create bench --queues 8 >/dev/null 2>&1; then
      return
    fi
    sleep 0.5
  done
  echo "failover-bench: the $mode group did not get ready; see $log" >&2
  exit 1
}

# run MODE ROUND: both workloads on a fresh group; prints one line.
run() {
  local mode=$1 round=$2 dir="$out/$1-$2"
  start "$mode" "$dir"
  local brokers=("${pids[1]}" "${pids[2]}")
  # Warm-up, until a run sees no error (a SYNC_MASTER refuses while its slave is not in sync).
  local i
  for i in $(seq 20); do
    if apogee -o json bench produce --topic bench --duration 3s --connections 4 --inflight 16 \
      --size 1024 >"$dir/warm-up.json" 2>&1; then
      break
    fi
    [ "$i" = 20 ] && { echo "failover-bench: $mode warm-up kept failing; see $dir" >&2; exit 1; }
    sleep 1
  done
  local t0 t1
  t0=$(cpu_ticks "${brokers[@]}")
  apogee -o json bench produce --topic bench --duration "${secs}s" --connections 4 --inflight 16 \
    --size 1024 >"$dir/4x16.json"
  t1=$(cpu_ticks "${brokers[@]}")
  apogee -o json bench produce --topic bench --duration "${secs}s" --connections 1 --inflight 1 \
    --size 1024 >"$dir/1x1.json"
  python3 - "$mode" "$round" "$dir" "$((t1 - t0))" "$(getconf CLK_TCK)" <<'EOF' | tee -a "$out/summary.txt"
import json, sys
mode, rnd, d, ticks, hz = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
a = json.load(open(f"{d}/4x16.json")); b = json.load(open(f"{d}/1x1.json"))
cpu_us = ticks / hz * 1e6 / max(a["messages"], 1)
print(f"{mode:10} round {rnd}: 4x16 {a['msgs_per_sec']:8.0f} msg/s p99 {a['p99_ms']:6.2f} ms, "
      f"{cpu_us:5.1f} us broker CPU/msg | 1x1 {b['msgs_per_sec']:6.0f} msg/s p99 {b['p99_ms']:5.2f} ms "
      f"| errors {a['errors']} + {b['errors']}")
EOF
  stop_all
}

for r in $(seq "$rounds"); do
  run static "$r"
  run controller "$r"
done
python3 - "$out/summary.txt" <<'EOF'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\w+)\s+round \d+: 4x16\s+(\d+) msg/s.*1x1\s+(\d+) msg/s", line)
    if m:
        rows.setdefault(m[1], []).append((int(m[2]), int(m[3])))
s, c = rows.get("static"), rows.get("controller")
if s and c:
    r16 = statistics.median(x[0] for x in c) / statistics.median(x[0] for x in s)
    r1 = statistics.median(x[1] for x in c) / statistics.median(x[1] for x in s)
    print(f"controller / static SYNC_MASTER (medians): 4x16 {r16:.2f}, 1x1 {r1:.2f}")
EOF
echo "failover-bench: reports and logs in $out" >&2
