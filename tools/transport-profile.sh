#!/usr/bin/env bash
# Where a unary send's broker CPU goes (docs/PERFORMANCE.md, "Where a unary send's CPU goes"):
# a standalone broker under T1's load (1 KiB unary sends, 4 connections x 16 in flight, ASYNC
# flush, `apogee bench produce`), measured three ways over the same kind of run:
#   1. `perf stat` of the broker: CPU, context switches, syscalls (all, and reads/writes of
#      sockets) per message;
#   2. `perf record` with call graphs (DWARF unwinding) of the broker, then the samples' own
#      time summed by layer (tools/profile-layers.py: socket syscalls, the kernel's TCP, h2,
#      hyper, tonic, tower, prost, tokio, allocation, Apogee's broker, RocksDB, ...);
#   3. the flame graph's input (`perf script`), kept beside the report.
#
# usage: tools/transport-profile.sh [OUT_DIR]
#   APOGEE_BIN_DIR  apogee and apogee-broker with symbols (default target/profiling:
#                   `cargo build --profile profiling --bins`)
#   SECS            seconds of load per measurement (default 10)
#   FREQ            perf's sampling frequency (default 999)
#   TRANSPORT       what the sends travel over: grpc (default) or remoting; or `null`: the
#                   same measurements of the null tonic server of grpc-ceiling (GRPC_CEILING,
#                   default ../shared/tools/grpc-ceiling/run.sh) under its own client at 4 x 16,
#                   1 KiB: what a call costs a server on hyper and h2 that does nothing
# Needs perf (Debian's linux-perf) and root or perf_event_paranoid <= 1. The broker uses the
# standalone ports (9876, 10911, 5557): nothing else may hold them.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${APOGEE_BIN_DIR:-target/profiling}
secs=${SECS:-10}
freq=${FREQ:-999}
transport=${TRANSPORT:-grpc}
out=${1:-$(mktemp -d)}
mkdir -p "$out"
broker_log="$out/broker.log"
# shellcheck source=tools/standalone.sh
. tools/standalone.sh
trap stop_broker EXIT

command -v perf >/dev/null || { echo "perf is not installed (Debian: linux-perf)" >&2; exit 1; }

if [ "$transport" = null ]; then
  start_null_server
  broker_pid=$null_pid
  # bench SECS REPORT: the ceiling client's calls for SECS seconds, as a report with the
  # fields read below. The client warms up for 2 s first: perf starts after it.
  settle=2
  bench() {
    "$ceiling_bin/client" "http://127.0.0.1:$null_port" 4 16 "$1" 1024 | python3 -c '
import json, re, sys
rps = int(re.search(r"rps=(\d+)", sys.stdin.read()).group(1))
print(json.dumps({"messages": rps * int(sys.argv[1]), "msgs_per_sec": rps}))' "$1" >"$2"
  }
else
  if [ ! -x "$bin/apogee-broker" ]; then
    echo "no apogee-broker in $bin: cargo build --profile profiling --bins" >&2
    exit 1
  fi
  # bench SECS REPORT: T1's load for SECS seconds; the report's JSON in REPORT.
  bench() {
    "$bin/apogee" -o json bench produce --broker-pid "$broker_pid" --topic bench \
      --transport "$transport" --connections 4 --inflight 16 --size 1024 --duration "$1" >"$2"
  }
  start_broker "$out/data"
  "$bin/apogee" topic create bench --queues 8 >/dev/null
fi
bench 3 "$out/warmup.json"

# 1. Counts per message.
(sleep "${settle:-0}"; exec perf stat -x, -o "$out/stat.csv" \
  -e task-clock,context-switches,cpu-migrations,raw_syscalls:sys_enter \
  -e syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_readv \
  -e syscalls:sys_enter_sendto,syscalls:sys_enter_write,syscalls:sys_enter_writev \
  -e syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex \
  -p "$broker_pid" -- sleep "$secs") &
stat_pid=$!
bench "$secs" "$out/stat-run.json"
wait "$stat_pid"

# 2. Samples with call graphs.
(sleep "${settle:-0}"; exec perf record -q -F "$freq" --call-graph dwarf,16384 -o "$out/perf.data" \
  -p "$broker_pid" -- sleep "$secs" 2>/dev/null) &
record_pid=$!
bench "$secs" "$out/record-run.json"
wait "$record_pid"
stop_broker

python3 - "$out" <<'EOF'
import csv, json, sys
out = sys.argv[1]
run = json.load(open(f"{out}/stat-run.json"))
# perf stat and the bench ran side by side for the same number of seconds.
msgs = run["messages"]
print(f"perf stat over the run: {msgs} messages, {run['msgs_per_sec']:.0f} msg/s")
for row in csv.reader(open(f"{out}/stat.csv")):
    if len(row) < 3 or not row[0].strip() or row[0].startswith("#"):
        continue
    try:
        value = float(row[0])
    except ValueError:
        continue
    event = row[2]
    if event == "task-clock":
        print(f"  CPU: {value * 1000 / msgs:.1f} us per message (task-clock {value:.0f} ms)")
    else:
        print(f"  {event}: {value / msgs:.3f} per message")
EOF
perf report -i "$out/perf.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null \
  >"$out/self.txt"
us_per_msg=$(python3 -c '
import csv, json, sys
msgs = json.load(open(sys.argv[1]))["messages"]
for row in csv.reader(open(sys.argv[2])):
    if len(row) > 2 and row[2] == "task-clock":
        print(f"{float(row[0]) * 1000 / msgs:.2f}")' "$out/stat-run.json" "$out/stat.csv")
python3 tools/profile-layers.py "$out/self.txt" "$us_per_msg" | tee "$out/layers.txt"
perf script -i "$out/perf.data" 2>/dev/null >"$out/perf.script" || true
echo "reports in $out (flame graph: inferno-collapse-perf < perf.script | inferno-flamegraph)"
