#!/usr/bin/env bash
# Measures the performance targets of docs/PERFORMANCE.md (T1-T6 and the idle broker) in one
# round, each figure next to what it is measured against, on release binaries and a standalone
# broker on this machine. Prints one line per target and keeps every JSON report.
#
# usage: tools/perf-targets.sh [ROUNDS=1]
#   APOGEE_BIN_DIR  binaries to run (default target/release; build them with
#                   `cargo build --release --bins`)
#   GRPC_CEILING    the ceiling script (default ../shared/tools/grpc-ceiling/run.sh)
#   SECS            seconds per timed workload (default 10)
#   PRELOAD         messages stored for T6 (default 10000000)
#   OUT             where the reports go (default a new temporary directory)
# The broker uses the standalone ports (9876, 10911, 5557): nothing else may hold them.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-1}
bin=${APOGEE_BIN_DIR:-target/release}
ceiling=${GRPC_CEILING:-../shared/tools/grpc-ceiling/run.sh}
secs=${SECS:-10}
preload=${PRELOAD:-10000000}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
apogee() { "$bin/apogee" "$@"; }
broker_log="$out/broker.log"
# shellcheck source=tools/standalone.sh
. tools/standalone.sh
trap stop_broker EXIT

# field FILE KEY: one value of a JSON report (nested keys with dots).
field() {
  python3 -c 'import json,sys
v=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v=v[k]
print(f"{v:.0f}" if isinstance(v, float) and v >= 100 else f"{v:.2f}" if isinstance(v, float) else v)' "$1" "$2"
}
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
rss_mib() { awk '/VmRSS/{printf "%.1f", $2/1024}' "/proc/$broker_pid/status"; }

produce() { # NAME ARGS...: a produce run, its report in $out/NAME.json
  local name=$1
  shift
  apogee -o json bench produce --broker-pid "$broker_pid" "$@" >"$out/$name.json"
}

for round in $(seq "$rounds"); do
  r="$out/r$round"
  mkdir -p "$r"
  c416=$("$ceiling" 4 16 "$secs" 1024 | sed -n 's/.*rps=\([0-9]*\).*/\1/p')
  c11=$("$ceiling" 1 1 "$secs" 1024 | sed -n 's/.*rps=\([0-9]*\).*/\1/p')

  start_broker "$r/async"
  idle_rss=$(rss_mib)
  apogee topic create bench --queues 8 >/dev/null
  produce "r$round/t1" --topic bench --connections 4 --inflight 16 --size 1024 --duration "$secs"
  produce "r$round/t1b" --topic bench --connections 1 --inflight 1 --size 1024 --duration "$secs"
  produce "r$round/t3" --topic bench --connections 4 --inflight 4 --batch 32 --size 1024 --duration "$secs"
  apogee topic create e2e --queues 8 >/dev/null
  apogee -o json bench e2e --topic e2e --rate 5000 --duration "$secs" >"$r/t4.json"
  stop_broker

  start_broker "$r/sync" APOGEE_BROKER_STORE__FLUSH=sync
  apogee topic create bench --queues 8 >/dev/null
  produce "r$round/t2" --topic bench --connections 4 --inflight 16 --size 1024 --duration "$secs"
  stop_broker

  start_broker "$r/many"
  apogee topic create bench --queues 8 >/dev/null
  produce "r$round/t1-again" --topic bench --connections 4 --inflight 16 --size 1024 --duration "$secs"
  seq 0 1249 | xargs -P 4 -I{} "$bin/apogee" topic create many-{} --queues 8 >/dev/null
  produce "r$round/t5" --topic many --topics 1250 --connections 4 --inflight 16 --size 1024 --duration "$secs"
  stop_broker

  start_broker "$r/full"
  apogee topic create small --queues 8 >/dev/null
  produce "r$round/t6-empty" --topic small --connections 4 --inflight 16 --size 256 --duration "$secs"
  produce "r$round/t6-preload" --topic small --batch 32 --connections 4 --inflight 4 --size 256 --count "$preload"
  produce "r$round/t6-full" --topic small --connections 4 --inflight 16 --size 256 --duration "$secs"
  apogee -o json bench consume --topic small --group drain --consumers 4 --batch 32 \
    --duration $((secs * 2)) >"$r/t6-drain.json"
  stop_broker
  start_broker "$r/full"
  restart_secs=$ready_secs
  stop_broker

  t1=$(field "$r/t1.json" msgs_per_sec)
  t1again=$(field "$r/t1-again.json" msgs_per_sec)
  {
    echo "round $round ($(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD))"
    echo "T1  4x16: $(field "$r/t1.json" msgs_per_sec) msg/s, p99 $(field "$r/t1.json" p99_ms) ms; ceiling 4x16 $c416 rps: $(ratio "$t1" "$c416")"
    echo "T1b 1x1: $(field "$r/t1b.json" msgs_per_sec) msg/s; ceiling 1x1 $c11 rps: $(ratio "$(field "$r/t1b.json" msgs_per_sec)" "$c11")"
    echo "T2  SYNC_FLUSH 4x16: $(field "$r/t2.json" msgs_per_sec) msg/s, p99 $(field "$r/t2.json" p99_ms) ms; T1 $t1 / $t1again: $(ratio "$(field "$r/t2.json" msgs_per_sec)" "$t1") / $(ratio "$(field "$r/t2.json" msgs_per_sec)" "$t1again")"
    echo "T3  batches of 32, 4x4: $(field "$r/t3.json" msgs_per_sec) msg/s = $(field "$r/t3.json" mb_per_sec) MB/s, p99 $(field "$r/t3.json" p99_ms) ms; $(ratio "$(field "$r/t3.json" msgs_per_sec)" "$t1")x T1"
    echo "T4  e2e at 5,000/s: p50 $(field "$r/t4.json" e2e_p50_ms) ms, p99 $(field "$r/t4.json" e2e_p99_ms) ms, max $(field "$r/t4.json" e2e_max_ms) ms; sent $(field "$r/t4.json" sent), received $(field "$r/t4.json" received), missing $(field "$r/t4.json" missing)"
    echo "T5  10,000 queues: $(field "$r/t5.json" msgs_per_sec) msg/s, RSS $(field "$r/t5.json" broker.rss_mib) MiB; T1 right before $t1again: $(ratio "$(field "$r/t5.json" msgs_per_sec)" "$t1again")"
    echo "T6  sends on $preload stored: $(field "$r/t6-full.json" msgs_per_sec) msg/s; empty store $(field "$r/t6-empty.json" msgs_per_sec): $(ratio "$(field "$r/t6-full.json" msgs_per_sec)" "$(field "$r/t6-empty.json" msgs_per_sec)")"
    echo "T6  drain by a new group: $(field "$r/t6-drain.json" msgs_per_sec) msg/s, redeliveries $(field "$r/t6-drain.json" redeliveries); $(ratio "$(field "$r/t6-drain.json" msgs_per_sec)" "$t1")x T1"
    echo "T6  restart: ready after $restart_secs s"
    echo "idle broker RSS: $idle_rss MiB"
  } | tee "$r/summary.txt"
  rm -rf "$r/async" "$r/sync" "$r/many" "$r/full"
done
echo "reports in $out"
