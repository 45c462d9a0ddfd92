#!/usr/bin/env bash
# Issue 54's same-run table: Apogee and Apache RocketMQ 5.5 on this machine, one after the other
# in one run, each driven by the same official Java clients (the load generator Bench in
# tests/java): the 4.x client over remoting to each NameServer, the 5.x client over gRPC (Apogee's
# own gRPC port; RocketMQ's proxy, local mode, in the broker's JVM). 1 KiB bodies (SIZE).
#
#   remoting 1x1 / 4x16   synchronous single sends: 1 producer with 1 thread, 4 producers (each
#                         its own connection) with 16 threads each
#   remoting batches      batches of 16 from 4 producers x 4 threads
#   grpc 1x1 / 4x16       the same single sends with the 5.x client
#   e2e remoting / grpc   end-to-end latency: E2E_RATE sends a second, a push consumer in the
#                         same JVM (one clock), from the start of the send to the listener
#   restart               RESTART_MESSAGES stored (batches of 16), both processes stopped with
#                         SIGTERM and started again: seconds from the start command to the
#                         first successful send of a client started at the same moment
#   failover              controller mode: a NameServer running the controller and a group of
#                         two brokers (RocketMQ: tools/rocketmq-beside.sh with RMQ_CONTROLLER=1);
#                         one 4.x producer sends 1 x 1 (asking for routes every FAILOVER_POLL_MS) while
#                         the master is SIGKILLed, FAILOVER_ROUNDS times on fresh data: the
#                         time from the kill to the next acknowledged send
#
# For each scenario: messages per second over the measured window (after a warm-up), the send
# call's p50/p99, and the servers' CPU per message (user + system ticks from /proc of the
# NameServer and broker processes over the whole client run, divided by every message sent in
# it). After the send scenarios, each system's resident memory (VmRSS; VmHWM, the peak).
#
# Both systems run as a NameServer process and a broker process with ASYNC flush, ASYNC_MASTER,
# topics of 8 queues. RocketMQ's JVM heaps are tools/rocketmq-beside.sh's defaults (NameServer
# 512m, broker+proxy 1g), far below its own start scripts' 4g/8g.
#
# usage: tools/rocketmq-compare.sh [SCENARIO...]   (default all: r1x1 r4x16 rbatch g1x1 g4x16
#                                                   e2e-r e2e-g restart failover)
# environment:
#   APOGEE_BIN_DIR    Apogee's binaries (default target/release: `cargo build --release --bins`)
#   SECONDS_EACH      measured seconds of each send scenario (default 20), WARMUP (default 3)
#   E2E_RATE          end-to-end scenario's sends a second (default 1000), for SECONDS_EACH
#   RESTART_MESSAGES  messages stored before the restart (default 10000000: about 10 GiB each)
#   SIZE              body bytes (default 1024)
#   FAILOVER_ROUNDS   kills of a master per system (default 3)
#   FAILOVER_POLL_MS  the failover producer's route poll, pollNameServerInterval (default 1000)
#   OUT               logs and reports (default a new temporary directory)
# Ports: Apogee 23876 (NameServer), 23911 and 23921 (brokers), 23556-23559 (their HTTP);
# RocketMQ its script's with RMQ_PORT_BASE=26000. Needs java and mvn (deploy/dev-setup.sh) for the client and RocketMQ.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tools/standalone.sh
. tools/standalone.sh # cpu_ticks
bin=${APOGEE_BIN_DIR:-target/release}
secs=${SECONDS_EACH:-20}
warmup=${WARMUP:-3}
rate=${E2E_RATE:-1000}
restart_messages=${RESTART_MESSAGES:-10000000}
size=${SIZE:-1024}
out=$(realpath "${OUT:-$(mktemp -d)}")
scenarios=("$@")
((${#scenarios[@]})) || scenarios=(r1x1 r4x16 rbatch g1x1 g4x16 e2e-r e2e-g restart failover)
rounds=${FAILOVER_ROUNDS:-3}
route_poll_ms=${FAILOVER_POLL_MS:-1000}
for b in apogee apogee-broker apogee-nameserver; do
  [ -x "$bin/$b" ] || { echo "no $bin/$b: build with cargo build --release --bins" >&2; exit 2; }
done
mkdir -p "$out"
echo "reports and logs in $out"

if ! (cd tests/java && mvn -q -o package -DskipTests) >"$out/mvn.log" 2>&1; then
  (cd tests/java && mvn -q package -DskipTests) >"$out/mvn.log" 2>&1
fi
jar=tests/java/target/apogee-java-scenarios.jar
bench() { java -Xms512m -Xmx512m -cp "$jar" org.apogee.compat.Bench "$@"; }

export RMQ_HOME=$out/rocketmq RMQ_PORT_BASE=26000
rmq() { tools/rocketmq-beside.sh "$@"; }
eval "$(rmq env)"
rmq_namesrv=${NAMESRV:?}
rmq_grpc=${GRPC:?}

apogee_namesrv=127.0.0.1:23876
apogee_pids=()
apogee_start() {
  APOGEE_NAMESERVER_HTTP_LISTEN=127.0.0.1:23556 "$bin/apogee-nameserver" --listen "$apogee_namesrv" \
    >>"$out/apogee-nameserver.log" 2>&1 &
  apogee_pids=($!)
  APOGEE_BROKER_HTTP_LISTEN=127.0.0.1:23557 "$bin/apogee-broker" --listen 127.0.0.1:23911 \
    --nameserver "$apogee_namesrv" --data-dir "$out/apogee-data" >>"$out/apogee-broker.log" 2>&1 &
  apogee_pids+=($!)
}
apogee_ready() { curl -fs -o /dev/null http://127.0.0.1:23557/readyz; }
apogee_stop() {
  local p
  for p in "${apogee_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${apogee_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  apogee_pids=()
}
rmq_pids() { (eval "$(rmq env)" && echo "$NAMESRV_PID $BROKER_PID"); }
trap 'apogee_stop; rmq stop >/dev/null 2>&1 || true' EXIT

wait_until() { # WHAT SECONDS COMMAND...
  local what=$1 n=$(($2 * 10))
  shift 2
  until "$@"; do
    ((n-- > 0)) || { echo "$what: not within the time; see $out" >&2; exit 1; }
    sleep 0.1
  done
}

# measure SYSTEM SCENARIO PIDS -- BENCH ARGS...: runs Bench, writes $out/SYSTEM-SCENARIO.json
# with Bench's report plus the servers' CPU per message.
measure() {
  local system=$1 scenario=$2 pids=() c0 c1
  shift 2
  while [ "$1" != -- ]; do pids+=("$1"); shift; done
  shift
  c0=$(cpu_ticks "${pids[@]}")
  bench "$@" >"$out/$system-$scenario.raw" 2>"$out/$system-$scenario.log" ||
    { echo "$system $scenario failed; see $out/$system-$scenario.log" >&2; exit 1; }
  c1=$(cpu_ticks "${pids[@]}")
  python3 - "$out/$system-$scenario" "$((c1 - c0))" "$(getconf CLK_TCK)" <<'EOF'
import json, sys
path, ticks, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
report = json.loads(open(path + ".raw").read().strip().splitlines()[-1])
report["cpu_us_per_msg"] = ticks / hz * 1e6 / max(report["ok_total"], 1)
json.dump(report, open(path + ".json", "w"))
EOF
}

memory() { # SYSTEM PIDS...: resident and peak MiB of the processes together
  local system=$1 rss=0 hwm=0 p
  shift
  for p in "$@"; do
    rss=$((rss + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status")))
    hwm=$((hwm + $(awk '/^VmHWM/ {print $2}' "/proc/$p/status")))
  done
  echo "{\"rss_mib\": $((rss / 1024)), \"hwm_mib\": $((hwm / 1024))}" >"$out/$system-memory.json"
}

# run_system SYSTEM NAMESRV GRPC: every chosen scenario against one running system.
run_system() {
  local system=$1 namesrv=$2 grpc=$3 s pids
  if [ "$system" = apogee ]; then pids=("${apogee_pids[@]}"); else read -ra pids <<<"$(rmq_pids)"; fi
  local common=(--size "$size" --seconds "$secs" --warmup-secs "$warmup")
  for s in "${scenarios[@]}"; do
    case $s in
      r1x1) measure "$system" "$s" "${pids[@]}" -- send --client remoting --endpoint "$namesrv" "${common[@]}" ;;
      r4x16) measure "$system" "$s" "${pids[@]}" -- send --client remoting --endpoint "$namesrv" \
        --producers 4 --threads 16 "${common[@]}" ;;
      rbatch) measure "$system" "$s" "${pids[@]}" -- send --client remoting --endpoint "$namesrv" \
        --producers 4 --threads 4 --batch 16 "${common[@]}" ;;
      g1x1) measure "$system" "$s" "${pids[@]}" -- send --client grpc --endpoint "$grpc" "${common[@]}" ;;
      g4x16) measure "$system" "$s" "${pids[@]}" -- send --client grpc --endpoint "$grpc" \
        --producers 4 --threads 16 "${common[@]}" ;;
      e2e-r) measure "$system" "$s" "${pids[@]}" -- e2e --client remoting --endpoint "$namesrv" \
        --topic bench-e2e-r --group bench-e2e-r-g --rate "$rate" "${common[@]}" ;;
      e2e-g) measure "$system" "$s" "${pids[@]}" -- e2e --client grpc --endpoint "$grpc" \
        --topic bench-e2e-g --group bench-e2e-g-g --rate "$rate" "${common[@]}" ;;
    esac
  done
  memory "$system" "${pids[@]}"
}

# restart SYSTEM NAMESRV START STOP: fills the store, stops, and times a start to the first send.
restart() {
  local system=$1 namesrv=$2 start=$3 stop=$4 t0 probe
  bench fill --client remoting --endpoint "$namesrv" --batch 16 --count "$restart_messages" \
    --size "$size" >"$out/$system-fill.json" 2>"$out/$system-fill.log"
  $stop
  t0=$(date +%s%N)
  bench probe --client remoting --endpoint "$namesrv" --seconds 600 \
    >"$out/$system-probe.raw" 2>"$out/$system-probe.log" &
  probe=$!
  $start
  wait "$probe" || { echo "$system: no send after the restart; see $out/$system-probe.log" >&2; exit 1; }
  python3 - "$out/$system" "$t0" <<'EOF'
import json, sys
path, t0_ns = sys.argv[1], int(sys.argv[2])
probe = json.loads(open(path + "-probe.raw").read().strip().splitlines()[-1])
json.dump({"restart_secs": probe["ready_at_ms"] / 1e3 - t0_ns / 1e9}, open(path + "-restart.json", "w"))
EOF
}

want() { [[ " ${scenarios[*]} " == *" $1 "* ]]; }

# Controller mode, Apogee: a NameServer running the controller, two members of group "bg".
apogee_controlled_start() {
  local dir=$1 member
  APOGEE_NAMESERVER_HTTP_LISTEN=127.0.0.1:23557 APOGEE_NAMESERVER_CONTROLLER__ENABLED=true \
    APOGEE_NAMESERVER_CONTROLLER__DATA_DIR="$dir/controller" \
    "$bin/apogee-nameserver" --listen "$apogee_namesrv" >>"$out/apogee-failover.log" 2>&1 &
  apogee_pids=($!)
  for member in 1 2; do
    APOGEE_BROKER_BROKER_ID=$member APOGEE_BROKER_FAILOVER__CONTROLLER_MODE=true \
      APOGEE_BROKER_HTTP_LISTEN="127.0.0.1:$((23557 + member))" \
      "$bin/apogee-broker" --listen "127.0.0.1:$((23901 + 10 * member))" \
      --nameserver "$apogee_namesrv" --data-dir "$dir/m$member" --broker-name bg \
      >>"$out/apogee-failover.log" 2>&1 &
    apogee_pids+=($!)
  done
}
apogee_controlled_ready() {
  curl -fs -o /dev/null http://127.0.0.1:23558/readyz && curl -fs -o /dev/null http://127.0.0.1:23559/readyz &&
    "$bin/apogee" --nameserver "$apogee_namesrv" topic create bench --queues 8 >/dev/null 2>&1
}
# apogee_master_pid: a bash command printing the pid of the member that is master.
apogee_master_pid() {
  cat <<EOF
case \$("$bin/apogee" --nameserver "$apogee_namesrv" -o json cluster list | python3 -c '
import json, sys
print(next(r["endpoint"] for r in json.load(sys.stdin) if r["role"].endswith("master")))') in
  *:23911) echo ${apogee_pids[1]} ;;
  *:23921) echo ${apogee_pids[2]} ;;
esac
EOF
}

# failover_round SYSTEM ROUND NAMESRV MASTER_PID_COMMAND: a producer for 30 s that SIGKILLs the
# master (the pid the bash command prints) 12 s in; writes $out/SYSTEM-failover-ROUND.json with
# the seconds from the kill to the next acknowledged send.
failover_round() {
  local system=$1 round=$2 namesrv=$3 master_cmd=$4
  bench failover --client remoting --endpoint "$namesrv" --seconds 30 --size "$size" \
    --kill-after-secs 12 --master-pid-command "$master_cmd" --route-poll-ms "$route_poll_ms" \
    >"$out/$system-failover-$round.raw" 2>"$out/$system-failover-$round.log" ||
    { echo "$system failover round $round failed; see $out/$system-failover-$round.log" >&2; exit 1; }
  tail -n 1 "$out/$system-failover-$round.raw" >"$out/$system-failover-$round.json"
}

failover_apogee() {
  local round
  for round in $(seq "$rounds"); do
    apogee_controlled_start "$out/apogee-failover-$round"
    wait_until "Apogee's controlled group ready" 120 apogee_controlled_ready
    failover_round apogee "$round" "$apogee_namesrv" "$(apogee_master_pid)"
    apogee_stop
  done
}

failover_rocketmq() {
  local round
  for round in $(seq "$rounds"); do
    RMQ_CONTROLLER=1 RMQ_HOME=$out/rocketmq-failover-$round rmq start >>"$out/rocketmq-failover.log"
    RMQ_CONTROLLER=1 RMQ_HOME=$out/rocketmq-failover-$round rmq topic bench 8 >/dev/null
    failover_round rocketmq "$round" "$rmq_namesrv" \
      "RMQ_CONTROLLER=1 RMQ_HOME=$out/rocketmq-failover-$round tools/rocketmq-beside.sh master-pid"
    RMQ_CONTROLLER=1 RMQ_HOME=$out/rocketmq-failover-$round rmq stop >/dev/null
  done
}


# --- Apogee ---------------------------------------------------------------------------------
apogee_start
wait_until "Apogee ready" 60 apogee_ready
for t in bench bench-e2e-r bench-e2e-g; do
  "$bin/apogee" --nameserver "$apogee_namesrv" topic create "$t" --queues 8 >/dev/null
done
run_system apogee "$apogee_namesrv" "$apogee_namesrv"
if want restart; then
  restart apogee "$apogee_namesrv" apogee_start apogee_stop
fi
apogee_stop
if want failover; then
  failover_apogee
fi

# --- Apache RocketMQ ------------------------------------------------------------------------
rmq start >"$out/rocketmq-start.log"
for t in bench bench-e2e-r bench-e2e-g; do rmq topic "$t" 8 NORMAL >/dev/null; done
for g in bench-e2e-r-g bench-e2e-g-g; do rmq group "$g" >/dev/null; done
run_system rocketmq "$rmq_namesrv" "$rmq_grpc"
if want restart; then
  restart rocketmq "$rmq_namesrv" "rmq start" "rmq stop" >/dev/null
fi
rmq stop >/dev/null
if want failover; then
  failover_rocketmq
fi

# --- the table ------------------------------------------------------------------------------
python3 - "$out" "$size" "$secs" "$rate" "$restart_messages" "${scenarios[@]}" <<'EOF'
import json, os, sys
out, size, secs, rate, restart_messages, *scenarios = sys.argv[1:]
names = {
    "r1x1": "4.x remoting, sync 1 x 1",
    "r4x16": "4.x remoting, sync 4 x 16",
    "rbatch": "4.x remoting, batches of 16, 4 x 4",
    "g1x1": "5.x gRPC, sync 1 x 1",
    "g4x16": "5.x gRPC, sync 4 x 16",
    "e2e-r": f"4.x push consumer, end to end at {rate}/s",
    "e2e-g": f"5.x push consumer, end to end at {rate}/s",
}
def load(system, what):
    path = f"{out}/{system}-{what}.json"
    return json.load(open(path)) if os.path.exists(path) else None
print(f"Apogee and Apache RocketMQ, one run, {size} B bodies, {secs} s each (reports in {out})")
print(f"{'scenario':40} {'msg/s A':>10} {'msg/s R':>10} {'A/R':>6} {'p50/p99 us A':>16} {'p50/p99 us R':>16} {'CPU us/msg A':>12} {'R':>7} {'R/A':>6}")
for s in scenarios:
    a, r = load("apogee", s), load("rocketmq", s)
    if not a or not r or s == "restart":
        continue
    print(f"{names[s]:40} {a['msgs_per_sec']:>10,.0f} {r['msgs_per_sec']:>10,.0f} {a['msgs_per_sec'] / max(r['msgs_per_sec'], 1e-9):>6.2f}"
          f" {str(a['p50_us']) + '/' + str(a['p99_us']):>16} {str(r['p50_us']) + '/' + str(r['p99_us']):>16}"
          f" {a['cpu_us_per_msg']:>12.1f} {r['cpu_us_per_msg']:>7.1f} {r['cpu_us_per_msg'] / max(a['cpu_us_per_msg'], 1e-9):>6.2f}")
a, r = load("apogee", "memory"), load("rocketmq", "memory")
if a and r:
    print(f"resident after the send scenarios, NameServer + broker: Apogee {a['rss_mib']} MiB (peak {a['hwm_mib']}),"
          f" RocketMQ {r['rss_mib']} MiB (peak {r['hwm_mib']}), R/A {r['rss_mib'] / max(a['rss_mib'], 1):.1f}")
a, r = load("apogee", "restart"), load("rocketmq", "restart")
if a and r:
    fa, fr = load("apogee", "fill"), load("rocketmq", "fill")
    print(f"restart with {int(restart_messages):,} stored (filled at {fa['msgs_per_sec']:,.0f} / {fr['msgs_per_sec']:,.0f} msg/s):"
          f" Apogee {a['restart_secs']:.1f} s, RocketMQ {r['restart_secs']:.1f} s to the first send")
def rounds(system, field):
    found, i = [], 1
    while (r := load(system, f"failover-{i}")) is not None:
        found.append(r[field])
        i += 1
    return found
a, r = rounds("apogee", "first_write_secs"), rounds("rocketmq", "first_write_secs")
if a and r:
    show = lambda xs: ", ".join(f"{x:.2f}" for x in xs)
    median = lambda xs: sorted(xs)[len(xs) // 2]
    fa, fr = rounds("apogee", "failed"), rounds("rocketmq", "failed")
    print(f"failover, master SIGKILLed, seconds to the next acknowledged send: Apogee {show(a)};"
          f" RocketMQ {show(r)} (median A {median(a):.2f} s, R {median(r):.2f} s;"
          f" failed sends, median A {median(fa)}, R {median(fr)})")
EOF
