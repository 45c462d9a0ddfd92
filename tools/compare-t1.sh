#!/usr/bin/env bash
# Compares T1 (unary sends of 1 KiB, 4 connections x 16 in flight, ASYNC flush) of two builds,
# over gRPC or (TRANSPORT=remoting) remoting frames,
# alternated in one run, each run as a ratio to the null gRPC server of grpc-ceiling measured
# right before it, and the broker's CPU per message (the bench report's `broker.cpu_secs`).
# Prints one line per run and the medians of each build.
#
# usage: tools/compare-t1.sh BEFORE_BIN_DIR AFTER_BIN_DIR [PAIRS=3]
#   each dir holds apogee and apogee-broker (`cargo build --release --bins`)
#   GRPC_CEILING  the ceiling script (default ../shared/tools/grpc-ceiling/run.sh)
#   SECS          seconds per run (default 10)
#   TRANSPORT     what the sends travel over: grpc (T1, the default) or remoting (the same
#                 load over RocketMQ's remoting frames)
# The broker uses the standalone ports (9876, 10911, 5557): nothing else may hold them.
set -euo pipefail
cd "$(dirname "$0")/.."
before=$1
after=$2
pairs=${3:-3}
ceiling=${GRPC_CEILING:-../shared/tools/grpc-ceiling/run.sh}
secs=${SECS:-10}
transport=${TRANSPORT:-grpc}
out=$(mktemp -d)
# shellcheck source=tools/standalone.sh
. tools/standalone.sh
trap stop_broker EXIT

# run NAME BIN_DIR: prints "<msgs_per_sec> <ceiling rps>"
run() {
  local name=$1 c
  bin=$2
  c=$("$ceiling" 4 16 "$secs" 1024 | sed -n 's/.*rps=\([0-9]*\).*/\1/p')
  rm -rf "$out/data"
  broker_log="$out/$name.log"
  start_broker "$out/data"
  "$bin/apogee" topic create bench --queues 8 >/dev/null
  "$bin/apogee" -o json bench produce --broker-pid "$broker_pid" --topic bench \
    --connections 4 --inflight 16 --size 1024 --duration "$secs" --transport "$transport" \
    >"$out/$name.json"
  stop_broker
  local rate
  rate=$(python3 -c 'import json,sys; r = json.load(open(sys.argv[1])); cpu = r["broker"]["cpu_secs"] * 1e6 / r["messages"]; print(round(r["msgs_per_sec"]), "%.1f" % cpu)' "$out/$name.json")
  echo "$rate $c"
}

results=()
for p in $(seq "$pairs"); do
  for side in before after; do
    dir=$before
    [ "$side" = after ] && dir=$after
    read -r rate cpu c < <(run "$side-$p" "$dir")
    ratio=$(python3 -c "print(f'{$rate / $c:.3f}')")
    echo "pair $p $side: T1 $rate msg/s, broker CPU $cpu us/msg, ceiling $c rps, ratio $ratio"
    results+=("$side $ratio $cpu")
  done
done
printf '%s\n' "${results[@]}" | python3 -c '
import statistics, sys
r, cpu = {}, {}
for line in sys.stdin:
    side, v, c = line.split()
    r.setdefault(side, []).append(float(v))
    cpu.setdefault(side, []).append(float(c))
b, a = statistics.median(r["before"]), statistics.median(r["after"])
print(f"median ratio before {b:.3f}, after {a:.3f}: after/before {a / b:.3f}")
cb, ca = statistics.median(cpu["before"]), statistics.median(cpu["after"])
print(f"median broker CPU per message before {cb:.1f} us, after {ca:.1f} us: after/before {ca / cb:.3f}")'
echo "reports in $out"
