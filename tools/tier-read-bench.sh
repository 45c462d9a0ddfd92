#!/usr/bin/env bash
# A cold consumer reading from the object-store tier beside a hot one, in one run on this
# machine: a standalone broker tiering to moto's S3 server (loopback) with no local copy kept
# (tier.local_retention_bytes = 0). It fills topic `cold` with MB megabytes of 4 KiB messages,
# waits until every sealed segment is in the bucket and off the local disk, then measures:
#   1. the hot path alone: `bench e2e` on topic `hot` at RATE msg/s (its p99 send-to-receive);
#   2. the same beside a new consumer group draining `cold` from its first offset with
#      batches of 32: the cold consumer's MB/s (bodies) and the hot p99 beside it.
# It first does the same on a broker without a tier, the cold messages read from its local
# disk: what the two consumers do to each other on this machine without the bucket.
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

# measure LABEL [VAR=VALUE ...]: a fresh broker with those settings; fills `cold`, waits
# until (with a tier) every sealed segment is in the bucket and off the local disk, then runs
# the hot path alone and beside the cold consumer. Leaves $work/LABEL-*.json.
measure() {
  local label=$1
  shift
  start_broker "$work/$label" APOGEE_BROKER_STORE__SEGMENT_BYTES="$segment" \
    APOGEE_BROKER_STORE__RETENTION_CHECK_MS=500 "$@"
  "$bin/apogee" topic create cold --queues 8 >/dev/null
  "$bin/apogee" topic create hot --queues 8 >/dev/null
  "$bin/apogee" topic create filler --queues 8 >/dev/null
  "$bin/apogee" -o json bench produce --topic cold --connections 4 --inflight 16 --size 4096 \
    --count "$count" >/dev/null
  # One more segment's worth on `filler` seals the last cold bytes into a segment of their own.
  "$bin/apogee" -o json bench produce --topic filler --connections 2 --inflight 8 --size 4096 \
    --count $((segment / 4096 + 1000)) >/dev/null
  if [ "$label" = tiered ]; then
    echo "filled $count messages of 4 KiB; waiting for the tier to hold them and the disk to drop them" >&2
    for _ in $(seq 6000); do
      local_files=$(find "$work/$label/broker/commitlog" -type f | wc -l)
      [ "$(metric apogee_tier_offload_lag_bytes)" = 0 ] && [ "$local_files" -le 1 ] && break
      sleep 0.2
    done
    tiered=$(metric apogee_tier_tiered_bytes)
    local_files=$(find "$work/$label/broker/commitlog" -type f | wc -l)
    [ "$local_files" -le 1 ] || { echo "the local copies were not dropped ($local_files files)" >&2; exit 1; }
  fi
  e2e "$work/$label-hot-alone.json"
  fetched0=$(metric apogee_tier_fetched_bytes_total)
  "$bin/apogee" -o json bench consume --topic cold --group cold --consumers 4 --batch 32 \
    --count "$count" >"$work/$label-cold.json" &
  cold_pid=$!
  e2e "$work/$label-hot-beside.json"
  wait "$cold_pid"
  fetched=$(($(metric apogee_tier_fetched_bytes_total) - fetched0))
  stop_broker
}

e2e() { # OUT: the hot path at the set rate
  "$bin/apogee" -o json bench e2e --topic hot --group hot --rate "$rate" --size 1024 \
    --duration "$secs" >"$1"
}

count=$((mb * 1000000 / 4096))
tiered=0
# The same cold read from the local disk first (no tier): what the consumer and the hot path
# do beside each other on this machine without the bucket.
measure local
# shellcheck disable=SC2046 # tier_env's settings, one word each
measure tiered APOGEE_BROKER_TIER__LOCAL_RETENTION_BYTES=0 $(tier_env)
python3 - "$work" "$tiered" "$fetched" "$count" <<'PY'
import json, sys
work, tiered, fetched, count = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
load = lambda n: json.load(open(f"{work}/{n}.json"))
print(f"tier held {tiered / 1e6:,.0f} MB; {fetched / 1e6:,.0f} MB fetched from the bucket")
for label, where in (("local", "the local disk"), ("tiered", "the bucket")):
    alone, beside, cold = load(f"{label}-hot-alone"), load(f"{label}-hot-beside"), load(f"{label}-cold")
    mbps = cold["msgs_per_sec"] * 4096 / 1e6
    print(f"from {where}: the cold group acknowledged {cold['acked']:,} of {count:,} at "
          f"{cold['msgs_per_sec']:,.0f} msg/s = {mbps:,.1f} MB/s of bodies; hot e2e p99 alone "
          f"{alone['e2e_p99_ms']:.2f} ms, beside it {beside['e2e_p99_ms']:.2f} ms "
          f"({beside['e2e_p99_ms'] / alone['e2e_p99_ms']:.2f}x); missing {alone['missing']} / "
          f"{beside['missing']}")
PY
