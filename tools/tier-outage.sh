#!/usr/bin/env bash
# The object store unresponsive for a minute under load (issue 58's long fault run; CI runs a
# shorter outage in tests/tests/integration/tier.rs): a standalone broker tiering to moto's
# S3 server takes T1's sends for SECS seconds; OUTAGE seconds into the run moto is frozen
# (SIGSTOP: connections open, no answer, as a hung or partitioned store) for OUTAGE_SECS,
# then thawed. It prints the send rate and errors before, during and after the outage
# (from three back-to-back runs of `bench produce`), and then waits until every sealed
# segment is uploaded and verified. Nothing may fail: a send error or a segment that never
# reaches the bucket exits 1.
#
# usage: tools/tier-outage.sh
#   APOGEE_BIN_DIR   apogee and apogee-broker (default target/release)
#   OUTAGE_SECS      how long the store is frozen (default 60)
#   SEGMENT_BYTES    the commit log's segment size (default 16 MiB, so the outage seals many)
#   MOTO_SERVER      moto's server (default the one deploy/dev-setup.sh installs)
# The broker uses the standalone ports (9876, 10911, 5557): nothing else may hold them.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${APOGEE_BIN_DIR:-target/release}
outage=${OUTAGE_SECS:-60}
segment=${SEGMENT_BYTES:-16777216}
work=$(mktemp -d)
broker_log="$work/broker.log"
# shellcheck source=tools/standalone.sh
. tools/standalone.sh
# shellcheck source=tools/moto.sh
. tools/moto.sh

cleanup() {
  [ -n "$moto_pid" ] && kill -CONT "$moto_pid" 2>/dev/null || true
  stop_broker
  stop_moto
  rm -rf "$work"
}
trap cleanup EXIT

start_moto
# shellcheck disable=SC2046 # tier_env's settings, one word each
start_broker "$work/data" APOGEE_BROKER_STORE__SEGMENT_BYTES="$segment" \
  APOGEE_BROKER_TIER__RETRY_MAX_MS=5000 $(tier_env)
"$bin/apogee" topic create bench --queues 8 >/dev/null

phase() { # LABEL SECS: T1's sends for SECS seconds
  "$bin/apogee" -o json bench produce --topic bench --connections 4 --inflight 16 --size 1024 \
    --duration "$2" >"$work/$1.json"
}

phase before 20
kill -STOP "$moto_pid"
echo "the object store is frozen for $outage s" >&2
phase during "$outage"
lag_during=$(metric apogee_tier_offload_lag_bytes)
failures=$(metric apogee_tier_upload_failures_total)
kill -CONT "$moto_pid"
phase after 20
t0=$(date +%s)
caught_up=""
for _ in $(seq 3000); do
  if [ "$(metric apogee_tier_offload_lag_bytes)" = 0 ]; then caught_up=$(($(date +%s) - t0)); break; fi
  sleep 0.2
done
sealed=$(($(find "$work/data/broker/commitlog" -type f | wc -l) - 1))
status=$("$bin/apogee" -o json tier status)
stop_broker
python3 - "$work" "$lag_during" "$failures" "${caught_up:-never}" "$sealed" "$status" <<'PY'
import json, sys
work, lag, failures, caught_up, sealed, status = sys.argv[1:]
row = json.loads(status)[0]
bad = False
for name in ("before", "during", "after"):
    r = json.load(open(f"{work}/{name}.json"))
    print(f"{name:>6}: {r['msgs_per_sec']:,.0f} msg/s, p99 {r['p99_ms']:.2f} ms, "
          f"{r['messages']:,} acknowledged, {r['errors']} errors")
    bad |= r["errors"] > 0
print(f"at the end of the outage: {int(lag) / 1e6:,.1f} MB waiting, {failures} failed uploads so far")
print(f"caught up {caught_up} s after the last sends; tiered {row['tiered_segments']} of "
      f"{sealed} sealed segments, last error {row['last_error']}")
bad |= caught_up == "never" or row["tiered_segments"] != int(sealed)
sys.exit(1 if bad else 0)
PY
