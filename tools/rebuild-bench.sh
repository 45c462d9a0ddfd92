#!/usr/bin/env bash
# Measures how long `apogee-broker --rebuild-index` takes to rebuild the derived index of a
# store of N messages: fills a fresh standalone broker with `apogee bench produce`, stops it,
# then runs `apogee-broker --standalone --rebuild-index --exit-after-rebuild` on the same data
# directory and reports the rebuild's own figure (the "index rebuild complete" log line) and the
# process's wall time (open, rebuild, close).
#
# usage: tools/rebuild-bench.sh [MESSAGES=10000000]
#   APOGEE_BIN_DIR  binaries to run (default target/release; build them with
#                   `cargo build --release --bins`)
#   SIZE            body bytes per message (default 256)
#   QUEUES          queues of the topic (default 8)
#   OUT             where the data directory and logs go (default a new temporary directory;
#                   it is left behind, a 10 M store takes ~4 GB)
# The broker uses the standalone ports (9876, 10911, 5557): nothing else may hold them.
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-10000000}
bin=${APOGEE_BIN_DIR:-target/release}
size=${SIZE:-256}
queues=${QUEUES:-8}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
broker_log="$out/broker.log"
# shellcheck source=tools/standalone.sh
. tools/standalone.sh
trap stop_broker EXIT

start_broker "$out/data"
"$bin/apogee" topic create bench --queues "$queues" >/dev/null
"$bin/apogee" -o json bench produce --topic bench --batch 256 --connections 4 --inflight 4 \
  --size "$size" --count "$messages" >"$out/fill.json"
stop_broker

rebuild_log="$out/rebuild.log"
t0=$(date +%s%N)
"$bin/apogee-broker" --standalone --data-dir "$out/data" --rebuild-index --exit-after-rebuild \
  >"$rebuild_log" 2>&1
t1=$(date +%s%N)
done_line=$(grep "index rebuild complete" "$rebuild_log") || {
  echo "no rebuild in $rebuild_log" >&2
  exit 1
}
field() { sed -n "s/.* $1=\"\{0,1\}\([0-9.]*\).*/\1/p" <<<"$done_line"; }
echo "rebuilt $(field records) messages ($(field log_bytes) bytes of log, ${size}-byte bodies," \
  "$queues queues) in $(field seconds) s; process wall time" \
  "$(python3 -c "print(f'{($t1 - $t0) / 1e9:.2f}')") s; logs in $out"
