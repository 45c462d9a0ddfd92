#!/usr/bin/env bash
# A cold consumer reading from the object-store tier beside a hot one, in one run on this
# machine: a standalone broker tiering to moto's S3 server (loopback) with no local copy kept
# (tier.local_retention_bytes = 0). It fills topic `cold` with MB megabytes of 4 KiB messages,
# waits until every sealed segment is in the bucket and off the local disk, then measures:
#   1. the hot path alone: `bench e2e` on topic `hot` at RATE msg/s (its p99 send-to-receive);
#   2. the same beside a new consumer group draining `cold` from its first offset with
#      batches of 32: the cold consumer's MB/s (bodies) and the hot p99 beside it.
# Issue 58's targets: the cold consumer at least 100 MB/s, the hot p99 moved by less than 20 %.
#
# usage: tools/tier-read-bench.sh
#   APOGEE_BIN_DIR   apogee and apogee-broker (default target/release)
#   MB               megabytes of bodies in the cold topic (default 256)
#   RATE             the hot topic's messages a second (default 2000)
#   SECS             seconds of the hot runs (default 20)
#   SEGMENT_BYTES    the commit log's segment size (default 64 MiB)
#   MOTO_SERVER      moto's server (default the one deploy/dev-setup.sh installs)
# moto is a Python server: its own speed bounds what the cold consumer reads on loopback
# (each 4 MiB piece of the read cache is one ranged GET).
# The broker uses the standalone ports (9876, 10911, 5557): nothing else may hold them.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${APOGEE_BIN_DIR:-target/release}
mb=${MB:-256}
rate=${RATE:-2000}
secs=${SECS:-20}
segment=${SEGMENT_BYTES:-67108864}
work=$(mktemp -d)
broker_log="$work/broker.log"
# shellcheck source=tools/standalone.sh
. tools/standalone.sh
# shellcheck source=tools/moto.sh
. tools/moto.sh

cleanup() {
  stop_broker
  stop_moto
  rm -rf "$work"
}
trap cleanup EXIT

start_moto

# shellcheck disable=SC2046 # tier_env's settings, one word each
start_broker "$work/broker" APOGEE_BROKER_STORE__SEGMENT_BYTES="$segment" \
  APOGEE_BROKER_STORE__RETENTION_CHECK_MS=500 \
  APOGEE_BROKER_TIER__LOCAL_RETENTION_BYTES=0 $(tier_env)
"$bin/apogee" topic create cold --queues 8 >/dev/null
"$bin/apogee" topic create hot --queues 8 >/dev/null
"$bin/apogee" topic create filler --queues 8 >/dev/null
count=$((mb * 1000000 / 4096))
"$bin/apogee" -o json bench produce --topic cold --connections 4 --inflight 16 --size 4096 \
  --count "$count" >"$work/fill.json"
# One more segment's worth on `filler` seals the last cold bytes into a segment of their own.
"$bin/apogee" -o json bench produce --topic filler --connections 2 --inflight 8 --size 4096 \
  --count $((segment / 4096 + 1000)) >/dev/null
echo "filled $count messages of 4 KiB; waiting for the tier to hold them and the disk to drop them" >&2
for _ in $(seq 6000); do
  local_files=$(find "$work/broker/commitlog" -type f | wc -l)
  [ "$(metric apogee_tier_offload_lag_bytes)" = 0 ] && [ "$local_files" -le 1 ] && break
  sleep 0.2
done
tiered=$(metric apogee_tier_tiered_bytes)
local_files=$(find "$work/broker/commitlog" -type f | wc -l)
[ "$local_files" -le 1 ] || { echo "the local copies were not dropped ($local_files files)" >&2; exit 1; }

e2e() { # OUT: the hot path at the set rate
  "$bin/apogee" -o json bench e2e --topic hot --group hot --rate "$rate" --size 1024 \
    --duration "$secs" >"$1"
}
e2e "$work/hot-alone.json"
fetched0=$(metric apogee_tier_fetched_bytes_total)
"$bin/apogee" -o json bench consume --topic cold --group cold --consumers 4 --batch 32 \
  --count "$count" >"$work/cold.json" &
cold_pid=$!
e2e "$work/hot-beside.json"
wait "$cold_pid"
fetched=$(($(metric apogee_tier_fetched_bytes_total) - fetched0))
stop_broker
python3 - "$work" "$tiered" "$fetched" "$count" <<'PY'
import json, sys
work, tiered, fetched, count = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
load = lambda n: json.load(open(f"{work}/{n}.json"))
alone, beside, cold = load("hot-alone"), load("hot-beside"), load("cold")
mbps = cold["msgs_per_sec"] * 4096 / 1e6
print(f"tier held {tiered / 1e6:,.0f} MB; the cold group acknowledged {cold['acked']:,} of "
      f"{count:,} at {cold['msgs_per_sec']:,.0f} msg/s = {mbps:,.1f} MB/s of bodies, "
      f"{fetched / 1e6:,.0f} MB fetched from the bucket")
print(f"hot e2e p99 alone {alone['e2e_p99_ms']:.2f} ms, beside the cold consumer "
      f"{beside['e2e_p99_ms']:.2f} ms ({beside['e2e_p99_ms'] / alone['e2e_p99_ms']:.2f}x); "
      f"missing {alone['missing']} / {beside['missing']}")
PY
