#!/usr/bin/env bash
# Issue 37's target: the remoting benchmark client of RocketMQ's Rust port
# (`client-production-benchmark`, a RocketMQ 4.x-protocol producer) against Apogee and against
# the Rust port's own NameServer and broker, one after the other on this machine in one run:
# single synchronous sends, then batches of 16, each from PRODUCERS producer processes at once.
# For each: messages per second (all producers' successes over the wall time of the slowest),
# the producers' p99 latency, and the servers' CPU per message from /proc (Apogee standalone is
# one process; the peer is its NameServer plus its broker).
#
# usage: tools/remoting-bench.sh PEER_NAMESRV PEER_BROKER BENCH_CLIENT
#   PEER_NAMESRV  the Rust port's NameServer binary (rocketmq-namesrv-rust)
#   PEER_BROKER   its broker binary (rocketmq-broker-rust)
#   BENCH_CLIENT  its benchmark client (the client-production-benchmark example)
#   built in a checkout of its repository, beforehand (this script fetches nothing):
#     cargo build --release -p rocketmq-namesrv -p rocketmq-broker --bins
#     cargo build --release -p rocketmq-client-rust --example client-production-benchmark
# environment:
#   APOGEE_BIN_DIR  Apogee's binaries (default target/release; `cargo build --release --bins`)
#   PRODUCERS       producer processes at once (default 4)
#   MESSAGES        messages each producer sends per scenario (default 20000)
#   SIZE            body bytes (default 1024)
#   OUT             where logs and reports go (default a new temporary directory)
# Both brokers flush asynchronously (their defaults) and create nothing else meanwhile. Apogee
# uses the standalone ports (9876, 10911, 5557), the peer 39876 and 30909..30912: nothing else
# may hold them.
set -euo pipefail
cd "$(dirname "$0")/.."
if (($# != 3)); then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
fi
peer_namesrv=$(realpath "$1")
peer_broker=$(realpath "$2")
bench_client=$(realpath "$3")
for b in "$peer_namesrv" "$peer_broker" "$bench_client"; do
  [ -x "$b" ] || { echo "not an executable: $b" >&2; exit 2; }
done
bin=${APOGEE_BIN_DIR:-target/release}
producers=${PRODUCERS:-4}
messages=${MESSAGES:-20000}
size=${SIZE:-1024}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
broker_log="$out/apogee.log"
# shellcheck source=tools/standalone.sh
. tools/standalone.sh
peer_pids=()
stop_peer() {
  for p in "${peer_pids[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  peer_pids=()
}
trap 'stop_broker; stop_peer' EXIT

# bench NAME NAMESRV SCENARIO BATCH PIDS...: PRODUCERS benchmark clients at once; writes
# $out/NAME.json with the totals.
bench() {
  local name=$1 namesrv=$2 scenario=$3 batch=$4
  shift 4
  local pids=("$@") clients=() i t0 t1 c0 c1
  c0=$(cpu_ticks "${pids[@]}")
  t0=$(date +%s%N)
  for i in $(seq "$producers"); do
    "$bench_client" --namesrv "$namesrv" --topic bench --producer-group "bench-$name-$i" \
      --scenario "$scenario" --message-count "$messages" --message-size "$size" \
      --batch-size "$batch" --timeout-ms 10000 --run-id "$name-$i" \
      --output-json "$out/$name-$i.json" >"$out/$name-$i.log" 2>&1 &
    clients+=($!)
  done
  local failed=0
  for c in "${clients[@]}"; do wait "$c" || failed=1; done
  t1=$(date +%s%N)
  c1=$(cpu_ticks "${pids[@]}")
  if ((failed)); then
    echo "a benchmark client of $name failed; see $out/$name-*.log" >&2
    exit 1
  fi
  python3 - "$out" "$name" "$producers" "$((t1 - t0))" "$((c1 - c0))" "$(getconf CLK_TCK)" <<'EOF'
import json, sys
out, name, n, wall_ns, ticks, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), *map(int, sys.argv[4:])
runs = [json.load(open(f"{out}/{name}-{i}.json"))["result"] for i in range(1, n + 1)]
ok = sum(r["success_count"] for r in runs)
failed = sum(r["send_failed_count"] + r["response_failed_count"] for r in runs)
report = {
    "messages": ok,
    "failed": failed,
    "msgs_per_sec": ok / (wall_ns / 1e9),
    "p99_us": max(r["latency_us"]["p99"] for r in runs),
    "server_cpu_us_per_msg": ticks / hz * 1e6 / max(ok, 1),
}
json.dump(report, open(f"{out}/{name}.json", "w"))
EOF
}

# warm_up NAMESRV: one small sync run, repeated until it succeeds (the broker registered with
# its NameServer, the topic routed), at most 60 s.
warm_up() {
  local namesrv=$1 deadline=$((SECONDS + 60))
  until "$bench_client" --namesrv "$namesrv" --topic bench --producer-group warm-up \
    --scenario sync --message-count 200 --message-size "$size" --timeout-ms 3000 \
    --output-json "$out/warm-up.json" >"$out/warm-up.log" 2>&1 &&
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["result"]
sys.exit(0 if r["success_count"] == 200 else 1)' "$out/warm-up.json"; do
    if ((SECONDS > deadline)); then
      echo "no successful warm-up send against $namesrv in 60 s; see $out/warm-up.log" >&2
      exit 1
    fi
    sleep 1
  done
}

field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
fmt() { python3 -c "print(f'{$1:,.0f}' if $1 >= 100 else f'{$1:.1f}')"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }

# Apogee: a standalone broker (its NameServer in the same process), remoting on its ports.
start_broker "$out/apogee-data"
"$bin/apogee" topic create bench --queues 8 >/dev/null
warm_up 127.0.0.1:9876
bench apogee-sync 127.0.0.1:9876 sync 1 "$broker_pid"
bench apogee-batch 127.0.0.1:9876 batch 16 "$broker_pid"
stop_broker

# The peer: its NameServer and one broker (ASYNC_MASTER, ASYNC_FLUSH), topics created on the
# first send with 8 queues like Apogee's.
mkdir -p "$out/peer/store" "$out/peer/home"
cat >"$out/peer/broker.toml" <<EOF
[broker]
listenPort = 30911
brokerIp1 = "127.0.0.1"
brokerIp2 = "127.0.0.1"
storePathRootDir = "$out/peer/store"
namesrvAddr = "127.0.0.1:39876"
autoCreateTopicEnable = true
traceTopicEnable = false
brokerPermission = 6
[broker.brokerIdentity]
brokerName = "peer-a"
brokerClusterName = "PeerCluster"
brokerId = 0
[broker.topicQueueConfig]
defaultTopicQueueNums = 8
[store]
storePathRootDir = "$out/peer/store"
brokerRole = "ASYNC_MASTER"
flushDiskType = "ASYNC_FLUSH"
haListenPort = 30912
EOF
(cd "$out/peer/home" && exec env ROCKETMQ_HOME="$out/peer/home" "$peer_namesrv" \
  --listenPort 39876 --bindAddress 127.0.0.1 --rocketmqHome "$out/peer/home" \
  --kvConfigPath "$out/peer/home/kvConfig.json" >"$out/peer-namesrv.log" 2>&1) &
peer_pids+=($!)
sleep 1
(cd "$out/peer/home" && exec env ROCKETMQ_HOME="$out/peer/home" "$peer_broker" \
  -c "$out/peer/broker.toml" -n 127.0.0.1:39876 >"$out/peer-broker.log" 2>&1) &
peer_pids+=($!)
warm_up 127.0.0.1:39876
bench peer-sync 127.0.0.1:39876 sync 1 "${peer_pids[@]}"
bench peer-batch 127.0.0.1:39876 batch 16 "${peer_pids[@]}"
stop_peer

echo "client-production-benchmark, $producers producers x $messages messages of $size B each, one run (reports in $out):"
printf '%-22s %14s %14s %12s %18s %10s\n' scenario "Apogee msg/s" "peer msg/s" ratio "CPU us/msg A/peer" "p99 us A/peer"
for s in sync batch; do
  a=$out/apogee-$s.json
  p=$out/peer-$s.json
  label=$([ $s = sync ] && echo "single sync sends" || echo "batches of 16")
  printf '%-22s %14s %14s %12s %18s %10s\n' "$label" "$(fmt "$(field "$a" msgs_per_sec)")" \
    "$(fmt "$(field "$p" msgs_per_sec)")" \
    "$(ratio "$(field "$a" msgs_per_sec)" "$(field "$p" msgs_per_sec)")" \
    "$(fmt "$(field "$a" server_cpu_us_per_msg)")/$(fmt "$(field "$p" server_cpu_us_per_msg)")" \
    "$(field "$a" p99_us)/$(field "$p" p99_us)"
done
